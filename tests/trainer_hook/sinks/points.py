"""Deterministic metrics of a simulated run and how to compare them with what a server holds."""

from __future__ import annotations

import math
from typing import Any

CHANNELS = [f"ch{i:02d}" for i in range(16)]
CHANNEL_METRICS = ["loss", "tokens", "samples", "token_share"]


def step_metrics(
    step: int, shift: float = 0.0
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Deterministic metrics of one step: 2 run metrics + 16 channels x 4 metrics, with a NaN
    loss at step 7 and channel ch03 absent on odd steps (as the contract says). `shift` is added
    to the losses (a re-run of the step after a resume logs other values)."""
    run = {"lm_loss": 10.0 / (step + 1) + shift, "lr": 1e-4 * step}
    channels = {}
    for i, c in enumerate(CHANNELS):
        if c == "ch03" and step % 2:
            continue
        loss = math.nan if (step == 7 and i == 0) else 5.0 + i / (step + 1) + shift
        channels[c] = {
            "loss": loss,
            "tokens": float(100 + i + step),
            "samples": 2.0,
            "token_share": (100 + i + step) / 1700.0,
        }
    return run, channels


Key = tuple[str, str | None, int]


def expected_points(steps: range, shift: float = 0.0) -> dict[Key, float]:
    """(metric, channel, step) -> value of what `step_metrics` logs for `steps`."""
    out: dict[Key, float] = {}
    for s in steps:
        run, channels = step_metrics(s, shift)
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


def server_points(url: str, token: str, run_key: str) -> dict[Key, float]:
    """Every point the lossradar server holds for a run, read through the REST API; fails if
    a (metric, channel, step) appears twice."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    run = httpx.get(f"{url}/api/v1/runs/by-key/{run_key}", headers=headers, timeout=30)
    run.raise_for_status()
    resp = httpx.get(f"{url}/api/v1/runs/{run.json()['id']}/series", headers=headers, timeout=60)
    resp.raise_for_status()
    out: dict[Key, float] = {}
    for s in resp.json()["series"]:
        assert not s["downsampled"]
        assert len(s["steps"]) == len(set(s["steps"])), f"duplicate steps in {s['metric']}"
        for step, value in zip(s["steps"], s["values"], strict=True):
            out[(s["metric"], s["channel"], step)] = float(value)
    return out
