"""The S3-compatible file store (AWS S3, MinIO, ...), with aiobotocore.

Same interface as :class:`~pdfqa.store.files.LocalFileStore`. Uploads stream in parts
(multipart upload, :data:`PART` bytes at a time): a file is never held whole in memory, only
one part. Nothing is visible under the key until :meth:`commit`; :meth:`abort` leaves nothing.
Reads stream the object; :meth:`local_copy` downloads it to a temporary file for the extractor
(pdfium reads a path) and removes it afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import ClientError

from pdfqa.settings import Settings
from pdfqa.store.files import FileWriter, StoredFile

__all__ = ["PART", "S3FileStore", "open_s3_store"]

PART = 8 * 1024 * 1024
"""Size of one multipart part (S3's minimum is 5 MiB, but for the last)."""
DOWNLOAD_BLOCK = 1024 * 1024


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


class _S3Writer:
    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self._buffer = bytearray()
        self._digest = hashlib.sha256()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    async def write(self, data: bytes | memoryview) -> None:
        self._buffer += data
        if len(self._buffer) >= PART:
            await self._send_part()

    async def _hash(self, block: bytes) -> None:
        # hashlib releases the GIL: hashing a part runs beside the event loop.
        await anyio.to_thread.run_sync(self._digest.update, block)
        self._size += len(block)

    async def _send_part(self) -> None:
        block, self._buffer = bytes(self._buffer), bytearray()
        await self._hash(block)
        if self._upload_id is None:
            started = await self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType="application/pdf"
            )
            self._upload_id = started["UploadId"]
        number = len(self._parts) + 1
        sent = await self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=block,
        )
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    async def commit(self) -> StoredFile:
        if self._upload_id is None:  # smaller than one part: one PUT
            block, self._buffer = bytes(self._buffer), bytearray()
            await self._hash(block)
            await self._client.put_object(
                Bucket=self._bucket, Key=self._key, Body=block, ContentType="application/pdf"
            )
        else:
            if self._buffer:
                await self._send_part()
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        return StoredFile(size=self._size, sha256=self._digest.hexdigest())

    async def abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is not None:
            with contextlib.suppress(ClientError):
                await self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
                )
            self._upload_id = None


class S3FileStore:
    """Files as objects ``<prefix><key>.pdf`` in one bucket."""

    def __init__(self, client: Any, bucket: str, prefix: str, temp_dir: Path) -> None:
        self._client, self.bucket, self.prefix = client, bucket, prefix
        self._temp_dir = temp_dir

    def _key(self, key: str) -> str:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"invalid file key {key!r}")
        return f"{self.prefix}{key}.pdf"

    async def ensure_bucket(self) -> None:
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if not _missing(exc):
                raise
            await self._client.create_bucket(Bucket=self.bucket)

    async def writer(self, key: str) -> FileWriter:
        return _S3Writer(self._client, self.bucket, self._key(key))

    async def _get(self, key: str) -> Any:
        try:
            return await self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(f"s3://{self.bucket}/{self._key(key)}") from exc
            raise

    async def read(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        obj = await self._get(key)
        async with obj["Body"] as body:
            async for data in body.iter_chunks(chunk_size):
                yield data

    @contextlib.asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        obj = await self._get(key)
        await anyio.Path(self._temp_dir).mkdir(parents=True, exist_ok=True)
        path = self._temp_dir / f"{key}.{uuid.uuid4().hex[:8]}.pdf"
        try:
            async with obj["Body"] as body, await anyio.open_file(path, "wb") as f:
                async for data in body.iter_chunks(DOWNLOAD_BLOCK):
                    await f.write(data)
            yield path
        finally:
            await anyio.Path(path).unlink(missing_ok=True)

    async def exists(self, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        await self._client.delete_object(Bucket=self.bucket, Key=self._key(key))


@contextlib.asynccontextmanager
async def open_s3_store(settings: Settings) -> AsyncIterator[S3FileStore]:
    """An S3 client for the process's lifetime, and the bucket created when missing."""
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=Config(
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"},
            # Checksums only when S3 requires them: S3-compatible servers vary.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    ) as client:
        temp = settings.data_dir / "tmp"
        store = S3FileStore(client, settings.s3_bucket, settings.s3_prefix, temp)
        await store.ensure_bucket()
        yield store
