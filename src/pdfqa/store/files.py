"""Where uploaded PDFs are kept: an interface, and the local-directory implementation.

An S3-compatible store can implement :class:`FileStore` without touching its callers: the API
writes through :meth:`FileStore.writer`, the worker reads through :meth:`FileStore.local_copy`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import anyio
import msgspec

__all__ = ["FileStore", "FileWriter", "LocalFileStore", "StoredFile"]


class StoredFile(msgspec.Struct, frozen=True):
    """What a committed file is: its size and SHA-256."""

    size: int
    sha256: str


class FileWriter(Protocol):
    """Receives an upload in pieces; nothing is visible under the key until :meth:`commit`."""

    async def write(self, data: bytes | memoryview) -> None: ...
    async def commit(self) -> StoredFile:
        """Make the file visible under its key; returns its size and digest."""
        ...

    async def abort(self) -> None: ...


class FileStore(Protocol):
    """Stores uploaded files by key."""

    async def writer(self, key: str) -> FileWriter:
        """Start writing the file ``key``."""
        ...

    def local_copy(self, key: str) -> contextlib.AbstractAsyncContextManager[Path]:
        """A local path holding the file for as long as the context lasts."""
        ...

    def read(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """The file's bytes, in pieces."""
        ...

    async def exists(self, key: str) -> bool: ...
    async def delete(self, key: str) -> None:
        """Remove the file; a missing file is not an error."""
        ...


class _LocalWriter:
    """Collects pieces into blocks of ``BLOCK`` bytes and writes each block in one thread hop
    (a hop per small network read would cost more than the upload itself)."""

    BLOCK = 1024 * 1024

    def __init__(self, final: Path) -> None:
        self._final = final
        self._temp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")
        self._pieces: list[bytes | memoryview] = []
        self._buffered = 0
        self._started = False
        self._digest = hashlib.sha256()
        self._size = 0

    async def write(self, data: bytes | memoryview) -> None:
        self._pieces.append(data)
        self._buffered += len(data)
        if self._buffered >= self.BLOCK:
            await self._flush()

    async def _flush(self, final: Path | None = None) -> None:
        pieces, self._pieces, self._buffered = self._pieces, [], 0
        mode = "ab" if self._started else "wb"
        self._started = True
        self._size += sum(map(len, pieces))
        # Hashing runs in the thread too: hashlib releases the GIL, so it uses another core.
        await anyio.to_thread.run_sync(_write, self._temp, mode, pieces, self._digest, final)

    async def commit(self) -> StoredFile:
        await self._flush(final=self._final)
        return StoredFile(size=self._size, sha256=self._digest.hexdigest())

    async def abort(self) -> None:
        self._pieces = []
        await anyio.Path(self._temp).unlink(missing_ok=True)


def _write(
    path: Path, mode: str, pieces: list[bytes | memoryview], digest: Any, final: Path | None
) -> None:
    """Append ``pieces`` to ``path`` (hashing them); then, if ``final`` is given, rename to it."""
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(mode) as f:
        for piece in pieces:
            digest.update(piece)
            f.write(piece)
    if final is not None:
        os.replace(path, final)


class LocalFileStore:
    """Files under one directory, written to a temporary name and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"invalid file key {key!r}")
        return self.root / f"{key}.pdf"

    async def writer(self, key: str) -> FileWriter:
        return _LocalWriter(self._path(key))

    @contextlib.asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        path = self._path(key)
        if not await anyio.Path(path).exists():
            raise FileNotFoundError(path)
        yield path

    async def read(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        async with await anyio.open_file(self._path(key), "rb") as f:
            while data := await f.read(chunk_size):
                yield data

    async def exists(self, key: str) -> bool:
        return await anyio.Path(self._path(key)).exists()

    async def delete(self, key: str) -> None:
        await anyio.Path(self._path(key)).unlink(missing_ok=True)
