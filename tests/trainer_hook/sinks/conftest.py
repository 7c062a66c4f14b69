"""Fixtures of the sink tests: an in-process stand-in server and sender settings for tests."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .receiver import Receiver

CHANNELS = [f"ch{i:02d}" for i in range(16)]
CHANNEL_METRICS = ["loss", "tokens", "samples", "token_share"]


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


def step_metrics(step: int) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Deterministic metrics of one step: 2 run metrics + 16 channels x 4 metrics, with a NaN
    loss at step 7 and channel ch03 absent on odd steps (as the contract says)."""
    run = {"lm_loss": 10.0 / (step + 1), "lr": 1e-4 * step}
    channels = {}
    for i, c in enumerate(CHANNELS):
        if c == "ch03" and step % 2:
            continue
        loss = math.nan if (step == 7 and i == 0) else 5.0 + i / (step + 1)
        channels[c] = {
            "loss": loss,
            "tokens": float(100 + i + step),
            "samples": 2.0,
            "token_share": (100 + i + step) / 1700.0,
        }
    return run, channels


def expected_points(steps: range) -> dict[tuple[str, str | None, int], float]:
    out: dict[tuple[str, str | None, int], float] = {}
    for s in steps:
        run, channels = step_metrics(s)
        for m, v in run.items():
            out[(m, None, s)] = v
        for c, ms in channels.items():
            for m, v in ms.items():
                out[(m, c, s)] = v
    return out


def same_points(got: dict[Any, float], want: dict[Any, float]) -> bool:
    """Equal key sets and values, NaN equal to NaN."""
    if got.keys() != want.keys():
        return False
    return all((math.isnan(want[k]) and math.isnan(got[k])) or got[k] == want[k] for k in want)
