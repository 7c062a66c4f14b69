"""Fixtures of the sink tests: an in-process stand-in server and sender settings for tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(token="secret").start()
    yield r
    r.stop()


def fast_settings(tmp_path: Path, url: str, **over: Any) -> dict[str, Any]:
    """Sender settings with short intervals and backoff so tests run in seconds."""
    settings: dict[str, Any] = {
        "url": url,
        "token": "secret",
        "run_key": "test-run",
        "spool_dir": tmp_path / "spool",
        "drain_interval_s": 0.01,
        "send_interval_s": 0.01,
        "timeout_s": 1.0,
        "backoff_base_s": 0.02,
        "backoff_max_s": 0.1,
        "exit_timeout_s": 5.0,
    }
    settings.update(over)
    return settings
