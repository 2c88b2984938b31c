"""Where uploaded PDFs are kept: an interface, and the local-directory implementation.

An S3-compatible store can implement :class:`FileStore` without touching its callers: the API
writes through :meth:`FileStore.writer`, the worker reads through :meth:`FileStore.local_copy`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import anyio

__all__ = ["FileStore", "FileWriter", "LocalFileStore"]


class FileWriter(Protocol):
    """Receives an upload in pieces; nothing is visible under the key until :meth:`commit`."""

    async def write(self, data: bytes) -> None: ...
    async def commit(self) -> None: ...
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
    def __init__(self, final: Path) -> None:
        self._final = final
        self._temp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")
        self._file: anyio.AsyncFile[bytes] | None = None

    async def write(self, data: bytes) -> None:
        if self._file is None:
            self._file = await anyio.open_file(self._temp, "wb")
        await self._file.write(data)

    async def commit(self) -> None:
        if self._file is None:
            self._file = await anyio.open_file(self._temp, "wb")
        await self._file.aclose()
        await anyio.to_thread.run_sync(os.replace, self._temp, self._final)

    async def abort(self) -> None:
        if self._file is not None:
            await self._file.aclose()
        await anyio.Path(self._temp).unlink(missing_ok=True)


class LocalFileStore:
    """Files under one directory, written to a temporary name and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"invalid file key {key!r}")
        return self.root / f"{key}.pdf"

    async def writer(self, key: str) -> FileWriter:
        await anyio.Path(self.root).mkdir(parents=True, exist_ok=True)
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
