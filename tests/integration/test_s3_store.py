"""The S3-compatible file store against a real S3 server: moto's ``moto_server``, started
here on a free port (it speaks the S3 HTTP API; no client is mocked). The store round-trips a
file streamed in parts, and a whole upload, ingestion, download and delete runs on it."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from pdfqa.api.app import create_app
from pdfqa.resources import Resources
from pdfqa.settings import Settings
from pdfqa.store.s3files import PART, S3FileStore, open_s3_store
from tests.integration.conftest import login, on_app, run_jobs, upload

Client = AsyncTestClient[Litestar]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url, timeout=1.0)
                break
            except httpx.TransportError:
                if server.poll() is not None:
                    pytest.fail("moto_server exited at start")
                time.sleep(0.1)
        else:
            pytest.fail("moto_server did not start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


@pytest.fixture
def s3_settings(settings: Settings, s3_endpoint: str) -> Settings:
    return msgspec.structs.replace(
        settings,
        queue_name=f"{settings.queue_name}:{uuid.uuid4().hex[:8]}",
        file_store="s3",
        s3_endpoint_url=s3_endpoint,
        s3_bucket=f"pdfqa-{uuid.uuid4().hex[:8]}",
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
    )


@pytest.fixture
async def store(s3_settings: Settings) -> AsyncIterator[S3FileStore]:
    async with open_s3_store(s3_settings) as store:
        yield store


async def test_a_file_streamed_in_parts_round_trips(store: S3FileStore) -> None:
    data = b"%PDF-1.7\n" + os.urandom(2 * PART + 12345)  # three parts, the last one short
    writer = await store.writer("big")
    for i in range(0, len(data), 300_000):
        await writer.write(data[i : i + 300_000])
    assert not await store.exists("big")  # nothing visible before the commit
    stored = await writer.commit()
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert await store.exists("big")
    back = b"".join([piece async for piece in store.read("big")])
    assert back == data
    async with store.local_copy("big") as path:
        assert path.read_bytes() == data
    assert not path.exists()  # the temporary copy is gone
    await store.delete("big")
    assert not await store.exists("big")
    await store.delete("big")  # a missing file is not an error
    with pytest.raises(FileNotFoundError):
        async with store.local_copy("big"):
            pass


async def test_an_aborted_or_small_upload(store: S3FileStore) -> None:
    writer = await store.writer("aborted")
    await writer.write(b"x" * (PART + 10))  # one part sent
    await writer.abort()
    assert not await store.exists("aborted")
    writer = await store.writer("small")
    await writer.write(b"%PDF-1.4 tiny")
    stored = await writer.commit()
    assert stored.size == 13
    assert b"".join([p async for p in store.read("small")]) == b"%PDF-1.4 tiny"
    with pytest.raises(ValueError, match="invalid file key"):
        await store.writer("../escape")


@pytest.fixture
async def client(s3_settings: Settings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(s3_settings), timeout=60) as client:
        yield client


async def test_the_whole_ingestion_runs_on_s3(client: Client, corpus: Path) -> None:
    res: Resources = client.app.state.resources
    assert isinstance(res.files, S3FileStore)
    headers = await login(client)
    pdf = corpus / "quivr_sample.pdf"
    accepted = await upload(client, headers, pdf)
    assert on_app(client, res.files.exists, accepted["id"])
    assert on_app(client, run_jobs, res) == 1
    body = (await client.get(f"/api/v1/uploads/{accepted['id']}", headers=headers)).json()
    assert body["status"] == "ready", body
    assert body["chunks"] > 0
    assert on_app(client, res.vectors.count, upload_id=accepted["id"]) == body["chunks"]
    r = await client.get(f"/api/v1/uploads/{accepted['id']}/file", headers=headers)
    assert r.status_code == 200
    assert r.content == pdf.read_bytes()
    r = await client.delete(f"/api/v1/uploads/{accepted['id']}", headers=headers)
    assert r.status_code == 204
    assert on_app(client, run_jobs, res, "default") == 1
    assert not on_app(client, res.files.exists, accepted["id"])
