"""Page-level OCR: which pages need it, and reading them with rapidocr, in the sandboxed child.

**Which pages.** :func:`needs_ocr` decides from what pdfium found on the page: no text layer on
a page that draws something (a scan, an image, text turned into outlines); fewer characters
than ``min_chars_per_sq_in`` for the page's area (counted up to a Letter page's: slides are
often drawn on huge pages with little text) on a page that holds an image (a scan with a
stamped page number); or a text layer that is garbage (:func:`is_garbage`: a broken font
encoding yields replacement characters, private-use code points or control characters). A page
that is blank (draws nothing) never goes to OCR. On a page with a thin but real text layer,
that text is kept and OCR adds the lines it does not hold (:func:`merge`).

**Reading.** :class:`OcrReader` renders the page with pypdfium2 at ``scale`` (2: 144 dpi, the
longest side capped at :data:`MAX_SIDE_PX`, where rapidocr would shrink it anyway) and runs
rapidocr's PP-OCRv6 detection and recognition models on onnxruntime. The models come in
rapidocr's wheel: they are passed by path, so rapidocr never tries to download anything. Each
line comes back with its box as fractions of the page, for the viewer's highlights.

The child that runs it lowers its priority (``nice``) and caps each page's CPU time
(``RLIMIT_CPU`` raised page by page), on top of the sandbox's memory and wall-clock limits.
"""

from __future__ import annotations

import itertools
import os
import resource
import unicodedata
from pathlib import Path
from typing import Any, Final

import msgspec

from pdfqa.extract.pages import MAX_PAGE_CHARS, OcrLine, PageText, normalize

__all__ = [
    "BUNDLED_LANGUAGES",
    "MAX_SIDE_PX",
    "OcrConfig",
    "OcrReader",
    "POINTS_PER_INCH",
    "engine_params",
    "is_garbage",
    "merge",
    "min_chars",
    "needs_ocr",
    "page_objects",
]

MAX_SIDE_PX: Final = 2000
"""Longest side of a rendered page; rapidocr shrinks larger images to this before detection."""
GARBAGE_SHARE: Final = 0.3
"""A text layer with more than this share of unreadable characters is garbage."""
MIN_GARBAGE_SAMPLE: Final = 20
"""Fewer visible characters than this are not judged (too few to tell)."""
POINTS_PER_INCH: Final = 72.0
LETTER_SQ_IN: Final = 8.5 * 11
"""The most page area the thin-text rule counts."""

BUNDLED_LANGUAGES: Final = (
    "en fr german de es it pt nl ca da fi sv no is pl cs sk sl hr bs rs_latin hu ro lt lv et tr "
    "az uz sq ga cy eu gl oc lb mt la mi ms id tl sw qu rm ku af vi ch chinese_cht japan french"
).split()
"""Languages the bundled PP-OCRv6 recognition model reads (one model for all of them)."""


class OcrConfig(msgspec.Struct, frozen=True):
    """How the OCR child reads pages (from the ``ocr_*`` settings)."""

    scale: float = 2.0
    """Render scale (1 = 72 dpi)."""
    page_cpu_s: int = 120
    """CPU seconds one page may use."""
    nice: int = 10
    """Added to the child's nice value, so text PDFs keep the CPU while a scan is read."""
    idle: bool = True
    """Run at the idle scheduling class where the OS has one (Linux ``SCHED_IDLE``): the child
    only gets CPU time nothing else in the machine wants. A page's wall-clock limit then counts
    only the time the child was given (:mod:`pdfqa.extract.sandbox`)."""
    threads: int = 0
    """onnxruntime threads per model run; 0: onnxruntime's default (one per core)."""
    language: str = "en"
    """Recognition language; a bundled one unless ``rec_model`` is set."""
    det_model: str | None = None
    """Path of another detection model (ONNX); None: the bundled PP-OCRv6 small one."""
    rec_model: str | None = None
    """Path of another recognition model (ONNX); None: the bundled PP-OCRv6 small one."""
    rec_keys: str | None = None
    """Dictionary file of ``rec_model``, when it does not carry its own."""
    ocr_version: str = "PP-OCRv6"
    """The PP-OCR generation of the models (``PP-OCRv5`` for rapidocr's per-language models)."""


# --- which pages need OCR ----------------------------------------------------------------------


def is_garbage(text: str) -> bool:
    """A text layer of mostly unreadable characters (a font without a usable encoding)."""
    visible = list(itertools.islice((c for c in text if not c.isspace()), 5000))
    if len(visible) < MIN_GARBAGE_SAMPLE:
        return False
    bad = 0
    for c in visible:
        category = unicodedata.category(c)
        if c == "\ufffd" or category in {"Co", "Cn", "Cc", "Cs"}:
            bad += 1
    return bad / len(visible) > GARBAGE_SHARE


def needs_ocr(
    text: str,
    *,
    width_pt: float,
    height_pt: float,
    images: int,
    drawings: int,
    min_chars_per_sq_in: float,
) -> bool:
    """Whether OCR should read a page (see the module doc); ``text`` is pdfium's text."""
    chars = sum(1 for c in text if not c.isspace())
    if chars == 0:
        return images + drawings > 0
    if is_garbage(text):
        return True
    return images > 0 and chars < min_chars(width_pt, height_pt, min_chars_per_sq_in)


def min_chars(width_pt: float, height_pt: float, per_sq_in: float) -> float:
    """The fewest characters a page with an image must hold to be read from its text layer."""
    area_sq_in = (width_pt / POINTS_PER_INCH) * (height_pt / POINTS_PER_INCH)
    return per_sq_in * min(area_sq_in, LETTER_SQ_IN)


def merge(text_layer: str, lines: list[OcrLine]) -> str:
    """A thin text layer, kept as it is, then the OCR lines it does not already hold."""
    if not text_layer.strip() or is_garbage(text_layer):
        return "\n".join(line.text for line in lines)
    known = _squash(text_layer)
    extra = [line.text for line in lines if _squash(line.text) not in known]
    return "\n".join([text_layer.strip(), *extra])


def _squash(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def page_objects(page: Any) -> tuple[int, int]:
    """(images, other drawn objects) on a pypdfium2 page; images inside forms count too."""
    import pypdfium2.raw as pdfium_c

    images = drawings = 0

    def walk(count: int, get: Any, depth: int) -> None:
        nonlocal images, drawings
        for i in range(count):
            obj = get(i)
            kind = pdfium_c.FPDFPageObj_GetType(obj)
            if kind == pdfium_c.FPDF_PAGEOBJ_IMAGE:
                images += 1
            elif kind == pdfium_c.FPDF_PAGEOBJ_FORM and depth < 4:
                walk(
                    pdfium_c.FPDFFormObj_CountObjects(obj),
                    lambda j, form=obj: pdfium_c.FPDFFormObj_GetObject(form, j),
                    depth + 1,
                )
            elif kind in (pdfium_c.FPDF_PAGEOBJ_PATH, pdfium_c.FPDF_PAGEOBJ_SHADING):
                drawings += 1

    walk(
        pdfium_c.FPDFPage_CountObjects(page.raw),
        lambda j: pdfium_c.FPDFPage_GetObject(page.raw, j),
        0,
    )
    return images, drawings


# --- reading pages -----------------------------------------------------------------------------


def _bundled_model(prefix: str) -> str:
    import rapidocr

    folder = Path(rapidocr.__file__).parent / "models"
    found = sorted(folder.glob(f"{prefix}*.onnx"))
    if not found:
        raise RuntimeError(f"rapidocr's bundled model {prefix}* is missing from {folder}")
    return str(found[0])


def engine_params(config: OcrConfig) -> dict[str, Any]:
    """rapidocr's parameters: every model by path (no download, ever), quiet logs."""
    from rapidocr import EngineType, LangDet, LangRec, ModelType, OCRVersion

    if config.rec_model is None and config.language not in BUNDLED_LANGUAGES:
        raise ValueError(
            f"OCR language {config.language!r} is not one the bundled model reads; set "
            "PDFQA_OCR_REC_MODEL to a recognition model for it (see the README)"
        )
    version = OCRVersion(config.ocr_version)
    params: dict[str, Any] = {
        "Global.log_level": "error",
        "Global.max_side_len": MAX_SIDE_PX,
        "Det.engine_type": EngineType.ONNXRUNTIME,
        "Det.lang_type": LangDet.MULTI if version is OCRVersion.PPOCRV6 else LangDet.CH,
        "Det.model_type": ModelType.SMALL if version is OCRVersion.PPOCRV6 else ModelType.MOBILE,
        "Det.ocr_version": version,
        "Det.model_path": config.det_model or _bundled_model("PP-OCRv6_det_small"),
        "Cls.engine_type": EngineType.ONNXRUNTIME,
        "Cls.model_path": _bundled_model("ch_ppocr_mobile_v2.0_cls"),
        "Rec.engine_type": EngineType.ONNXRUNTIME,
        "Rec.ocr_version": version,
        "Rec.model_type": ModelType.SMALL if version is OCRVersion.PPOCRV6 else ModelType.MOBILE,
        "Rec.model_path": config.rec_model or _bundled_model("PP-OCRv6_rec_small"),
    }
    if config.rec_model is None:
        params["Rec.lang_type"] = LangRec.CH  # the multilingual model is routed as "ch"
    else:
        params["Rec.lang_type"] = LangRec(config.language)
    if config.rec_keys is not None:
        params["Rec.rec_keys_path"] = config.rec_keys
    if config.threads > 0:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = config.threads
        params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
    return params


class OcrReader:
    """Per-child OCR state: the pdfium document and the rapidocr engine (loaded once)."""

    def __init__(self, pdf: Any, config: OcrConfig, cpu_hard_s: int) -> None:
        if config.nice:
            os.nice(config.nice)
        if config.idle and hasattr(os, "SCHED_IDLE"):  # before onnxruntime starts its threads
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        from rapidocr import RapidOCR

        self._pdf = pdf
        self._config = config
        self._cpu_hard_s = cpu_hard_s
        self._engine = RapidOCR(params=engine_params(config))
        # rapidocr loads its models on first use: load them now, while the child starts (under
        # the open timeout), so that a page's time and CPU limits measure reading it alone.
        for load in ("_load_det_model", "_load_cls_model", "_load_rec_model"):
            getattr(self._engine, load)()

    def read(self, number: int) -> PageText:
        self._limit_cpu()
        page = self._pdf[number - 1]
        try:
            width, height = page.get_width(), page.get_height()  # as shown: rotation applied
            longest = max(width, height, 1.0)
            scale = min(self._config.scale, MAX_SIDE_PX / longest)
            bitmap = page.render(scale=scale)
            try:
                image = bitmap.to_numpy()
                px_h, px_w = image.shape[0], image.shape[1]
                result = self._engine(image)
            finally:
                bitmap.close()
            textpage = page.get_textpage()
            try:
                text_layer = normalize(textpage.get_text_range())
            finally:
                textpage.close()
        finally:
            page.close()
        found = _lines(result, px_w, px_h)
        text = merge(text_layer, found)[:MAX_PAGE_CHARS]
        return PageText(number, text, "ocr", lines=found)

    def _limit_cpu(self) -> None:
        """Give the next page ``page_cpu_s`` more CPU seconds (SIGXCPU beyond: the parent sees
        the child die and skips the page), never beyond the document's budget."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = int(usage.ru_utime + usage.ru_stime) + 1
        soft = min(used + self._config.page_cpu_s, self._cpu_hard_s)
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _lines(result: Any, px_w: int, px_h: int) -> list[OcrLine]:
    """rapidocr's lines, boxes as page fractions, in reading order."""
    boxes = getattr(result, "boxes", None)
    txts = getattr(result, "txts", None) or ()
    scores = getattr(result, "scores", None) or ()
    found: list[OcrLine] = []
    if boxes is not None:
        for box, text, score in zip(boxes, txts, scores, strict=False):
            clean = " ".join(str(text).split())
            if not clean:
                continue
            xs = [float(p[0]) for p in box]
            ys = [float(p[1]) for p in box]
            found.append(
                OcrLine(
                    text=clean,
                    x0=_fraction(min(xs), px_w),
                    y0=_fraction(min(ys), px_h),
                    x1=_fraction(max(xs), px_w),
                    y1=_fraction(max(ys), px_h),
                    score=round(float(score), 4),
                )
            )
    return _reading_order(found)


def _fraction(value: float, size: int) -> float:
    return round(min(1.0, max(0.0, value / max(size, 1))), 5)


def _reading_order(found: list[OcrLine]) -> list[OcrLine]:
    """Top to bottom; lines whose vertical middles are within half a line height are one row,
    read left to right."""
    rows: list[list[OcrLine]] = []
    for line in sorted(found, key=lambda ln: (ln.y0 + ln.y1) / 2):
        middle = (line.y0 + line.y1) / 2
        if rows:
            last = rows[-1][0]
            if abs(middle - (last.y0 + last.y1) / 2) < (last.y1 - last.y0) / 2:
                rows[-1].append(line)
                continue
        rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda ln: ln.x0)]
