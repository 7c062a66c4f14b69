"""Settings from the environment, with safe defaults and errors that say how to fix them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.settings import DEFAULT_SQLITE_PATH, Settings


def test_safe_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "HOST", "PORT", "OPEN_READS", "MAX_BODY_BYTES"):
        monkeypatch.delenv(f"LOSSRADAR_{name}", raising=False)
    s = Settings()
    assert s.database_url == f"sqlite:///{DEFAULT_SQLITE_PATH}"
    assert Path.home() / ".local/share/lossradar/lossradar.db" == DEFAULT_SQLITE_PATH
    assert (s.host, s.port, s.open_reads, s.max_body_bytes) == ("127.0.0.1", 8765, False, 2**25)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSRADAR_DATABASE_URL", "postgresql+psycopg://u:p@db/lossradar")
    monkeypatch.setenv("LOSSRADAR_OPEN_READS", "true")
    monkeypatch.setenv("LOSSRADAR_PORT", "9000")
    s = Settings()
    assert (s.database_url, s.open_reads, s.port) == (
        "postgresql+psycopg://u:p@db/lossradar",
        True,
        9000,
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("database_url", "mysql://x/y", "must be a sqlite:/// or postgresql+psycopg:// URL"),
        ("max_body_bytes", 10, "use at least 1024"),
        ("port", 70000, "is not a TCP port"),
    ],
)
def test_bad_values_say_what_to_do(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings(**{field: value})
