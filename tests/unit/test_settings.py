"""Settings come from PDFQA_* variables only, typed, and the README documents every one."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from pdfqa.settings import Settings, load_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_environment_values_are_typed() -> None:
    settings = load_settings(
        {
            "PDFQA_PORT": "9001",
            "PDFQA_EMBEDDED_WORKER": "false",
            "PDFQA_DATA_DIR": "/srv/pdfqa",
            "PDFQA_PAGE_TIMEOUT_S": "2.5",
            "PDFQA_QDRANT_URL": "http://qdrant:6333",
            "HOME": "/root",  # not ours: ignored
        }
    )
    assert settings.port == 9001
    assert settings.embedded_worker is False
    assert settings.data_dir == Path("/srv/pdfqa")
    assert settings.page_timeout_s == 2.5
    assert settings.qdrant_url == "http://qdrant:6333"
    assert settings.database_url == Settings().database_url


def test_unknown_or_malformed_variables_are_errors() -> None:
    with pytest.raises(ValueError, match="PDFQA_PROT"):
        load_settings({"PDFQA_PROT": "1"})
    with pytest.raises(msgspec.ValidationError):
        load_settings({"PDFQA_PORT": "eighty"})
    with pytest.raises(msgspec.ValidationError):
        load_settings({"PDFQA_EMBEDDING_PROVIDER": "cohere"})


def test_the_readme_documents_every_setting_with_its_default() -> None:
    text = README.read_text()
    defaults = Settings()
    for name in Settings.__struct_fields__:
        rows = [line for line in text.splitlines() if line.startswith(f"| `PDFQA_{name.upper()}`")]
        row = rows[0] if rows else None
        assert row is not None, f"PDFQA_{name.upper()} is not documented in the README"
        value = getattr(defaults, name)
        if value is not None and not isinstance(value, Path):
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            expected = f"`{shown}`" if shown else "*(empty)*"
            assert expected in row, f"README shows the wrong default for PDFQA_{name.upper()}"


def test_the_arq_worker_settings_are_not_resolved_at_import() -> None:
    """``arq pdfqa.jobs.worker.WorkerSettings`` reads the environment (and PostgreSQL) only when
    arq first reads the settings; importing the module opens nothing."""
    from pdfqa.jobs.worker import WorkerSettings

    assert isinstance(WorkerSettings, dict)  # arq takes a dict as it is
    assert dict.__len__(WorkerSettings) == 0  # nothing filled in yet
