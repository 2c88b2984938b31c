"""Small PDFs written by hand for tests: a page of text lines in Helvetica."""

from __future__ import annotations

_PIECE = 8000


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_pdf(lines: list[str], *, prefix: bytes = b"") -> bytes:
    """A one-page PDF showing ``lines`` (Latin-1 text), optionally after ``prefix`` bytes.

    A line longer than a PDF string may be (pdfium reads at most 32 KB of one) is shown as
    several strings on the same baseline, which a reader takes for one line.
    """
    stream = "BT /F1 11 Tf 50 780 Td 14 TL\n"
    for line in lines:
        pieces = [line[i : i + _PIECE] for i in range(0, len(line), _PIECE)] or [""]
        stream += "T*\n" + "".join(f"({_escape(piece)}) Tj\n" for piece in pieces)
    content = (stream + "ET\n").encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"endstream",
    ]
    out = bytearray(prefix + b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out) - len(prefix))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out) - len(prefix)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def mixed_pdf(pages: list[tuple[list[str], bool]], *, scale: float = 2.0) -> bytes:
    """A PDF of ``text_pdf`` pages, in order; a page marked True is rendered to an image first
    (``scale`` x 72 dpi) and placed as the only thing on its page: a scan, without a text layer.
    """
    import io

    import pypdfium2 as pdfium

    out = pdfium.PdfDocument.new()
    for lines, as_image in pages:
        source = pdfium.PdfDocument(text_pdf(lines))
        if not as_image:
            out.import_pages(source)
            continue
        page = source[0]
        width, height = page.get_size()
        bitmap = page.render(scale=scale, grayscale=True)
        target = out.new_page(width, height)
        image = pdfium.PdfImage.new(out)
        image.set_bitmap(bitmap)
        image.set_matrix(pdfium.PdfMatrix().scale(width, height))
        target.insert_obj(image)
        target.gen_content()
    buffer = io.BytesIO()
    out.save(buffer)
    return buffer.getvalue()
