"""``pdfqa worker --queue NAME`` as real processes: one per queue, each reporting its own
heartbeat to the jobs dashboard, both stopping cleanly on SIGTERM."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from pdfqa.settings import Settings
from tests.e2e.conftest import BIN, Process, environment, free_port, wait_healthy

pytestmark = pytest.mark.e2e

ADMIN = "queues-admin@example.com"


def _data_dir(settings: Settings, path: Path) -> Path:
    """A data directory of its own (the embedded vector store admits one process), sharing the
    session's exported model."""
    path.mkdir()
    models = settings.data_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    (path / "models").symlink_to(models, target_is_directory=True)
    return path


def test_one_worker_per_queue_each_with_its_own_heartbeat(
    settings: Settings, tmp_path: Path, processes: list[Process]
) -> None:
    env = environment(settings, PDFQA_ADMIN_EMAILS=ADMIN)
    port = free_port()
    api = Process(
        [str(BIN / "pdfqa"), "serve", "--port", str(port), "--no-worker"],
        {**env, "PDFQA_DATA_DIR": str(_data_dir(settings, tmp_path / "api"))},
        tmp_path / "api.log",
    )
    processes.append(api)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, api)
    workers = {
        queue: Process(
            [str(BIN / "pdfqa"), "worker", "--queue", queue],
            {**env, "PDFQA_DATA_DIR": str(_data_dir(settings, tmp_path / queue))},
            tmp_path / f"worker-{queue}.log",
        )
        for queue in ("ingest", "default")
    }
    processes.extend(workers.values())
    with httpx.Client(base_url=base, timeout=30) as http:
        credentials = {"email": ADMIN, "password": "a long password"}
        r = http.post("/api/v1/auth/register", json=credentials)
        assert r.status_code in (201, 409), r.text
        token = http.post("/api/v1/auth/login", json=credentials).json()["token"]
        http.cookies.clear()
        admin = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 300
        listed: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            listed = http.get("/api/v1/admin/workers", headers=admin).json()
            if len(listed) == 2:
                break
            for p in workers.values():
                assert p.proc.poll() is None, p.output()[-3000:]
            time.sleep(0.5)
        assert sorted(w["queue"] for w in listed) == ["default", "ingest"], listed
        pids = {w["queue"]: w["pid"] for w in listed}
        assert pids == {q: p.proc.pid for q, p in workers.items()}
        for queue, p in workers.items():
            assert p.stop() == 0, p.output()[-3000:]
            line = next(x for x in p.output().splitlines() if "serving queue(s)" in x)
            other = "default" if queue == "ingest" else "ingest"
            assert f":{queue}" in line, line
            assert f":{other}" not in line, line
        # Both stopped cleanly: their records are gone at once, not after their TTL.
        assert http.get("/api/v1/admin/workers", headers=admin).json() == []
