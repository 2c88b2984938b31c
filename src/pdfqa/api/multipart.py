"""Reads one file field of a ``multipart/form-data`` request as a stream, never the whole body.

python-multipart's push parser is fed the request body piece by piece; the bytes of the wanted
field come out as they arrive, so a 100 MB upload costs a few hundred kilobytes of memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from litestar import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from pdfqa.errors import InvalidInput

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["FilePart", "file_part"]

MAX_HEADER_BYTES = 16 * 1024
"""A part's headers larger than this are refused (a filename needs far less)."""
MALFORMED = "The upload is not well-formed multipart/form-data."


class FilePart:
    """The file field's name as sent, and its bytes as an async iterator."""

    def __init__(self, filename: str | None, data: AsyncIterator[memoryview]) -> None:
        self.filename = filename
        self.data = data


class _Collector:
    """Callbacks for the push parser: remembers headers, buffers the wanted field's bytes."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.in_field = False
        self.found = False
        self.done_field = False
        self.filename: str | None = None
        self.out: list[memoryview] = []

    def on_part_begin(self) -> None:
        self.headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]
        self._check_size()

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]
        self._check_size()

    def _check_size(self) -> None:
        if len(self.header_field) + len(self.header_value) > MAX_HEADER_BYTES:
            raise InvalidInput("A part header of the upload is too long.")

    def on_header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self.in_field = name == self.field and not self.found
        if self.in_field:
            self.found = True
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw is not None else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_field:
            self.out.append(memoryview(data)[start:end])  # no copy

    def on_part_end(self) -> None:
        if self.in_field:
            self.in_field = False
            self.done_field = True

    def complete(self) -> bool:
        """Whether the whole field has been read."""
        return self.done_field

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }


async def file_part(request: Request[Any, Any, Any], field: str = "file") -> FilePart:
    """Advance the body until the ``field`` part starts; its bytes then stream as read."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary or len(boundary) > 200:
        raise InvalidInput("Send the file as multipart/form-data in a field named 'file'.")
    collector = _Collector(field)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
    except (FormParserError, ValueError) as exc:
        raise InvalidInput(MALFORMED) from exc
    body = request.stream()

    def write(piece: bytes) -> None:
        try:
            parser.write(piece)
        except (FormParserError, ValueError) as exc:
            raise InvalidInput(MALFORMED) from exc

    # Read until the field's headers have been seen (other fields before it are skipped).
    async for piece in body:
        write(piece)
        if collector.found:
            break
    else:
        try:
            parser.finalize()
        except (FormParserError, ValueError) as exc:
            raise InvalidInput(MALFORMED) from exc
    if not collector.found:
        raise InvalidInput(f"The request has no '{field}' field.")

    async def data() -> AsyncIterator[memoryview]:
        first, collector.out = collector.out, []
        for chunk in first:
            if chunk:
                yield chunk
        if not collector.complete():
            async for piece in body:
                write(piece)
                out, collector.out = collector.out, []
                for chunk in out:
                    if chunk:
                        yield chunk
                if collector.complete():
                    break
            if not collector.complete():
                raise InvalidInput("The upload ended before the file was complete.")

    return FilePart(collector.filename, data())
