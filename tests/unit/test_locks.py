"""The lock files pin, with hashes, every dependency pyproject.toml declares (make lock)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\", line):
            pins[_name(match[1])] = match[2]
    return pins


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", []), ("requirements-dev.lock", ["dev"])]
)
def test_every_declared_dependency_is_pinned_with_hashes(lock: str, extras: list[str]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in extras:
        declared += project["optional-dependencies"][extra]
    text = (ROOT / lock).read_text()
    pins = _pins(ROOT / lock)
    missing = [r for r in declared if _name(r) not in pins]
    assert not missing, f"{lock} is stale: run make lock ({missing})"
    assert pins["torch"] == "2.13.0+cpu"
    # Every pinned line is followed by at least one hash.
    for match in re.finditer(r"^\S+==\S+ \\\n(?!    --hash=sha256:)", text, re.M):
        pytest.fail(f"{lock}: {match[0].strip()} has no hash")


def test_every_dependency_has_an_upper_bound() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    # pdfminer.six is calendar-versioned (no majors); pdfplumber<0.12 bounds it.
    unbounded = [r for r in declared if "<" not in r and "==" not in r and "pdfminer" not in r]
    assert not unbounded
