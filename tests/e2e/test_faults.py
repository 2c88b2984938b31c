"""Faults, against real processes and real services: processes killed mid-ingestion, SIGTERM with
streams open, Redis and PostgreSQL going away.

Tests that stop Redis or PostgreSQL start their own servers on free ports (``redis-server``;
``initdb`` + ``pg_ctl`` run as the ``postgres`` user): the machine's servers are never touched.
The measured recovery times are printed (``-rP`` shows them); the only time limits asserted are
the product's promises (a dead worker's job is taken again within 60 s; a SIGTERM ends the
process within its graceful timeouts).
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pdfqa.settings import Settings
from tests.e2e.conftest import (
    BIN,
    Process,
    environment,
    free_port,
    register,
    sse_lines,
    wait_healthy,
)
from tests.e2e.test_processes import count_points

pytestmark = pytest.mark.e2e

BIG = "lyft_2021.pdf"  # 238 pages (tables off: ~10 s idle): make faults' longer document
SHORT = "DeepSeek_R1.pdf"  # 22 pages: make test's, caught after its first pages

PICKUP_S = 60.0


def serve(
    env: dict[str, str], log: Path, processes: list[Process], *extra: str
) -> tuple[Process, str]:
    """Start ``pdfqa serve``; the ``processes`` fixture stops it whatever happens."""
    port = int(env["PDFQA_PORT"])
    proc = Process([str(BIN / "pdfqa"), "serve", *extra], env, log)
    processes.append(proc)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, proc)
    return proc, base


def post_pdf(http: httpx.Client, headers: dict[str, str], path: Path) -> httpx.Response:
    with path.open("rb") as f:
        return http.post(
            "/api/v1/uploads", files={"file": (path.name, f, "application/pdf")}, headers=headers
        )


def wait_for(
    http: httpx.Client, headers: dict[str, str], upload_id: str, done: Any, within: float
) -> dict[str, Any]:
    """Poll the upload until ``done(body)`` holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            body = http.get(f"/api/v1/uploads/{upload_id}", headers=headers).json()
        except httpx.TransportError:
            body = {}
        if body and done(body):
            return body
        time.sleep(0.05)
    pytest.fail(f"upload {upload_id} never reached the expected state: {body}")


def mid_way(body: dict[str, Any]) -> bool:
    """Some pages stored, the rest still to do: the moment to kill."""
    if body.get("status") in ("ready", "failed"):
        pytest.fail(f"the upload finished before it could be interrupted: {body}")
    return bool(body.get("pages_done", 0) >= 2)


def ready_or_failed(body: dict[str, Any]) -> bool:
    return body.get("status") in ("ready", "failed")


def reference_chunks(http: httpx.Client, headers: dict[str, str], path: Path, proc: Process) -> int:
    """The chunk count of an uninterrupted ingestion of the same file on the same server."""
    r = post_pdf(http, headers, path)
    assert r.status_code == 202, r.text
    body = wait_for(http, headers, r.json()["id"], ready_or_failed, 600)
    assert body["status"] == "ready", (body, proc.output()[-3000:])
    return int(body["chunks"])


@pytest.fixture(scope="session")
def exported_models(settings: Settings) -> Path:
    """The embedding model exported to ONNX once (a minute on a busy machine), for every server."""
    from pdfqa.embeddings import create_embedder

    async def export() -> None:
        async with httpx.AsyncClient() as http:
            embedder = create_embedder(settings, http)
            await embedder.start()
            await embedder.aclose()

    asyncio.run(export())
    return settings.data_dir / "models"


@pytest.fixture
def fault_env(settings: Settings, tmp_path: Path, exported_models: Path) -> dict[str, str]:
    # A data folder of its own (files, vectors), with the already exported model in it.
    shutil.copytree(exported_models, tmp_path / "data" / "models")
    return environment(
        settings,
        PDFQA_DATA_DIR=str(tmp_path / "data"),
        PDFQA_PORT=str(free_port()),
        PDFQA_SHUTDOWN_TIMEOUT_S="10",
        PDFQA_RECONCILE_INTERVAL_S="5",
        PDFQA_EXTRACT_TABLES="false",
    )


def test_sigkill_of_pdfqa_serve_mid_ingestion_then_restart_resumes_exactly(
    processes: list[Process],
    fault_env: dict[str, str],
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
) -> None:
    server, base = serve(fault_env, tmp_path / "serve-1.log", processes)
    with httpx.Client(base_url=base, timeout=30) as http:
        headers = register(http)
        r = post_pdf(http, headers, corpus / SHORT)
        assert r.status_code == 202, r.text
        upload_id = r.json()["id"]
        before = wait_for(http, headers, upload_id, mid_way, 300)
        assert before["status"] == "processing"
    server.proc.kill()
    server.proc.wait()
    killed_at = time.monotonic()

    server, base = serve(fault_env, tmp_path / "serve-2.log", processes)
    healthy_at = time.monotonic()
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            resumed = wait_for(
                http, headers, upload_id, lambda b: b["updated_at"] != before["updated_at"], 120
            )
            picked_up_s = time.monotonic() - killed_at
            after_restart_s = time.monotonic() - healthy_at
            body = wait_for(http, headers, upload_id, ready_or_failed, 600)
            ready_s = time.monotonic() - killed_at
            assert body["status"] == "ready", (body, server.output()[-3000:])
            assert "resuming after page" in server.output()
            expected = reference_chunks(http, headers, corpus / SHORT, server)
        print(
            f"SIGKILL serve: taken again {picked_up_s:.1f} s after the kill "
            f"({after_restart_s:.1f} s after the restarted server answered), ready {ready_s:.1f} s"
        )
        assert resumed["status"] in ("processing", "ready")
        assert after_restart_s < PICKUP_S  # the lease (20 s) expired; the restart's own time aside
        assert body["chunks"] == expected
    finally:
        server.stop()
    # No duplicate points: exactly one point per chunk.
    assert asyncio.run(count_points(settings, Path(fault_env["PDFQA_DATA_DIR"]), upload_id)) == (
        expected
    )


@pytest.mark.faults
def test_sigkill_of_a_separate_worker_mid_ingestion_then_a_new_worker_resumes(
    processes: list[Process],
    fault_env: dict[str, str],
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
) -> None:
    api, base = serve(fault_env, tmp_path / "api.log", processes, "--no-worker")
    worker = Process([str(BIN / "pdfqa"), "worker"], fault_env, tmp_path / "worker-1.log")
    processes.append(worker)
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            headers = register(http)
            r = post_pdf(http, headers, corpus / BIG)
            assert r.status_code == 202, r.text
            upload_id = r.json()["id"]
            wait_for(http, headers, upload_id, lambda b: b["pages_done"] >= 20, 300)
            worker.proc.kill()
            worker.proc.wait()
            killed_at = time.monotonic()
            worker = Process([str(BIN / "pdfqa"), "worker"], fault_env, tmp_path / "worker-2.log")
            processes.append(worker)
            body = wait_for(http, headers, upload_id, ready_or_failed, 600)
            ready_s = time.monotonic() - killed_at
            assert body["status"] == "ready", (body, worker.output()[-3000:])
            assert "resuming after page" in worker.output()
            expected = reference_chunks(http, headers, corpus / BIG, worker)
            print(f"SIGKILL worker: ready {ready_s:.1f} s after the kill")
            assert body["chunks"] == expected
        assert worker.stop() == 0, worker.output()[-3000:]
    finally:
        worker.stop()
        api.stop()
    assert asyncio.run(count_points(settings, Path(fault_env["PDFQA_DATA_DIR"]), upload_id)) == (
        expected
    )


def test_sigterm_with_streams_open_exits_in_bounded_time_and_the_job_resumes(
    processes: list[Process], fault_env: dict[str, str], corpus: Path, tmp_path: Path
) -> None:
    server, base = serve(fault_env, tmp_path / "serve-1.log", processes)
    streams: list[list[str]] = [[], [], []]
    with httpx.Client(base_url=base, timeout=30) as http:
        headers = register(http)
        r = post_pdf(http, headers, corpus / SHORT)
        assert r.status_code == 202, r.text
        upload_id = r.json()["id"]

        def follow(into: list[str]) -> None:
            timeout = httpx.Timeout(10, read=120)
            with (
                httpx.Client(base_url=base, timeout=timeout) as own,
                own.stream("GET", f"/api/v1/uploads/{upload_id}/events", headers=headers) as resp,
            ):
                try:
                    for line in sse_lines(resp.iter_text()):
                        if line.startswith("event:"):
                            into.append(line.split(":", 1)[1].strip())
                except httpx.HTTPError as exc:  # counted: the assertion below shows it
                    into.append(f"broken: {type(exc).__name__}")

        readers = [threading.Thread(target=follow, args=(s,), daemon=True) for s in streams]
        for t in readers:
            t.start()
        wait_for(http, headers, upload_id, mid_way, 300)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(60)
    exit_s = time.monotonic() - started
    for t in readers:
        t.join(10)
    print(f"SIGTERM with 3 streams open: exited in {exit_s:.1f} s")
    assert exit_s < 2 * 10 + 10  # two graceful timeouts (requests, then jobs) and some slack
    assert all(s and s[-1] == "closing" for s in streams), streams
    # The job stopped at once (the page being read and the batch being embedded are dropped,
    # however busy the machine is: nothing waits for them), recorded its checkpoint and went
    # back to the queue; it was never cancelled at the limit.
    out = server.output()
    assert "stopped at a page boundary" in out, out[-3000:]
    assert "will be run again" not in out, out[-3000:]

    server, base = serve(fault_env, tmp_path / "serve-2.log", processes)
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            body = wait_for(http, headers, upload_id, ready_or_failed, 600)
            assert body["status"] == "ready", (body, server.output()[-3000:])
            assert "resuming after page" in server.output()
            expected = reference_chunks(http, headers, corpus / SHORT, server)
            assert body["chunks"] == expected
    finally:
        server.stop()


# --- Redis and PostgreSQL of the test's own ---------------------------------------------------


def test_redis_stopped_and_started_mid_run(
    processes: list[Process],
    fault_env: dict[str, str],
    corpus: Path,
    tmp_path: Path,
    own_redis: tuple[int, Any],
) -> None:
    port, control = own_redis
    env = dict(fault_env, PDFQA_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    server, base = serve(env, tmp_path / "serve.log", processes)
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            headers = register(http)
            r = post_pdf(http, headers, corpus / "DeepSeek_R1.pdf")
            assert r.status_code == 202, r.text
            running = r.json()["id"]
            wait_for(http, headers, running, lambda b: b["status"] != "queued", 300)

            control("stop")
            outage = time.monotonic()
            during = post_pdf(http, headers, corpus / "quivr_sample.pdf")
            assert during.status_code == 503, during.text
            assert during.headers["content-type"].startswith("application/problem+json")
            listed = http.get("/api/v1/uploads", headers=headers).json()["items"]
            assert [u["id"] for u in listed] == [running]  # nothing half-made
            ready = http.get("/ready")
            assert ready.status_code == 503
            assert ready.json()["checks"]["redis"].startswith("error")
            assert http.get("/health").status_code == 200
            time.sleep(3)  # an outage of a few seconds, longer than redis-py's retries
            control("start")  # empty: a restart without persistence loses every job

            body = wait_for(http, headers, running, ready_or_failed, 600)
            assert body["status"] == "ready", (body, server.output()[-3000:])
            after = post_pdf(http, headers, corpus / "quivr_sample.pdf")
            assert after.status_code == 202, after.text
            done = wait_for(http, headers, after.json()["id"], ready_or_failed, 120)
            assert done["status"] == "ready", (done, server.output()[-3000:])
            recovered_s = time.monotonic() - outage
            # Every queue's worker is back: each restarts on its own backoff (at most 30 s), so
            # one that failed more often during the outage (the idle ocr queue's) may come
            # back after the uploads are done.
            deadline = time.monotonic() + 60
            checks = http.get("/ready").json()["checks"]
            while checks["worker"] != "ok" and time.monotonic() < deadline:
                time.sleep(0.25)
                checks = http.get("/ready").json()["checks"]
            assert checks["worker"] == "ok", checks
            workers_s = time.monotonic() - outage
        print(
            f"Redis outage: every upload ready {recovered_s:.1f} s and every worker running "
            f"{workers_s:.1f} s after Redis stopped"
        )
    finally:
        server.stop()


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL's initdb is not installed under /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


def _as_postgres(*args: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True)


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, Any]]:
    pg = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="pdfqa-pg-", dir="/tmp"))
    data = root / "data"
    postgres = pwd.getpwnam("postgres")
    os.chown(root, postgres.pw_uid, postgres.pw_gid)
    port = free_port()
    _as_postgres(str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"

    def control(action: str) -> None:
        if action == "stop":
            _as_postgres(str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop", "-w")
        else:
            _as_postgres(
                str(pg / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "log"),
                "start",
                "-w",
            )

    control("start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/pdfqa", control
    finally:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(pg / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.faults
def test_postgresql_unreachable_answers_503_and_ready_says_so(
    processes: list[Process],
    fault_env: dict[str, str],
    tmp_path: Path,
    own_postgres: tuple[str, Any],
) -> None:
    dsn, control = own_postgres
    env = dict(fault_env, PDFQA_DATABASE_URL=dsn, PDFQA_DB_ACQUIRE_TIMEOUT_S="2")
    server, base = serve(env, tmp_path / "serve.log", processes)
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            headers = register(http)
            assert http.get("/api/v1/uploads", headers=headers).status_code == 200
            control("stop")
            started = time.monotonic()
            r = http.get("/api/v1/uploads", headers=headers)
            answered_s = time.monotonic() - started
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert "try again" in r.json()["detail"]
            ready = http.get("/ready")
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"].startswith("error"), ready.json()
            assert http.get("/health").status_code == 200
            control("start")
            for _ in range(100):
                if http.get("/ready").status_code == 200:
                    break
                time.sleep(0.2)
            assert http.get("/api/v1/uploads", headers=headers).status_code == 200
        print(f"PostgreSQL down: 503 after {answered_s:.2f} s")
    finally:
        server.stop()


def wait_for_output(proc: Process, text: str, within: float) -> None:
    """Until ``text`` appears in the process's log (it exiting first fails the test)."""
    deadline = time.monotonic() + within
    while text not in proc.output():
        if proc.proc.poll() is not None:
            pytest.fail(f"the process exited early:\n{proc.output()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} never appeared:\n{proc.output()[-3000:]}")
        time.sleep(0.1)


def test_a_separate_worker_that_cannot_reach_redis_exits_non_zero(
    processes: list[Process],
    fault_env: dict[str, str],
    tmp_path: Path,
    own_redis: tuple[int, Any],
) -> None:
    """`pdfqa worker` gives up after PDFQA_WORKER_GIVE_UP_S without Redis and exits 1, so that
    its supervisor (systemd, compose, Kubernetes) restarts it."""
    port, control = own_redis
    env = dict(fault_env, PDFQA_REDIS_URL=f"redis://127.0.0.1:{port}/0", PDFQA_WORKER_GIVE_UP_S="3")
    worker = Process([str(BIN / "pdfqa"), "worker"], env, tmp_path / "worker.log")
    processes.append(worker)
    wait_for_output(worker, "worker serving", 300)
    control("stop")
    stopped = time.monotonic()
    code = worker.proc.wait(120)
    gave_up_s = time.monotonic() - stopped
    out = worker.output()
    print(f"worker without Redis: exited with {code} {gave_up_s:.1f} s after Redis stopped")
    assert code == 1, out[-3000:]
    assert "worker gives up: Redis unreachable" in out, out[-3000:]
    assert "restarting in" in out  # it tried to recover first
