"""schemathesis over the OpenAPI document against ``pdfqa serve``, authenticated: no 5xx.

Every operation of ``/api/docs/openapi.json`` is called with generated (valid and invalid)
inputs, NUL characters included, with a logged-in user's bearer token, and schemathesis's
``not_a_server_error`` check fails the run on any 5xx. The suite runs a short pass
(``PDFQA_FUZZ_EXAMPLES``, default 10 examples per operation); ``make fuzz`` runs a longer one.
Operations that end the session (log out, log out everywhere, change the password) are left out
so the token stays valid for the rest of the run; their inputs are covered by the integration
tests. So is the admins' live feed, an endless stream.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from pdfqa.settings import Settings
from tests.e2e.conftest import BIN, Process, environment, free_port, register, wait_healthy

pytestmark = pytest.mark.e2e


def test_schemathesis_finds_no_server_error(
    settings: Settings, processes: list[Process], tmp_path: Path
) -> None:
    port = free_port()
    server = Process(
        [str(BIN / "pdfqa"), "serve", "--port", str(port)],
        environment(settings, PDFQA_AUTH_RATE_PER_MINUTE="100000"),
        tmp_path / "serve.log",
    )
    processes.append(server)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, server)
    with httpx.Client(base_url=base, timeout=30) as http:
        headers = register(http)
    examples = os.environ.get("PDFQA_FUZZ_EXAMPLES", "10")
    out = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{base}/api/docs/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: {headers['Authorization']}",
            "--max-examples",
            examples,
            "--generation-allow-x00",
            "true",
            "--exclude-path-regex",
            # The admin feed is an endless stream by design (the fuzzing user may be the
            # database's first user, hence an admin); its rules are tested in test_operations.
            "(/auth/(logout|logout-everywhere|password)|/admin/events)$",
            "--request-timeout",
            "30",
            "--seed",
            "9",
            "--generation-database",
            "none",  # nothing written into the working tree
            "--no-color",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=1500,
        cwd=tmp_path,
    )
    report = out.stdout + out.stderr
    print(report[-4000:])
    assert out.returncode == 0, report[-8000:] + "\n--- server log ---\n" + server.output()[-8000:]
    assert "Traceback" not in server.output(), server.output()[-8000:]
