"""Record the per-step channel metrics of a real demo training run to JSONL, without a server.

Used by ``benchmarks/alerts_eval.py`` (alert engine) to replay real runs, clean and corrupted::

    from lossradar.demo.record import record_run, read_recording

    path = record_run(
        "runs/finance_shuffle.jsonl",
        steps=200,                        # optimizer steps (~0.6 s each on 2 cores)
        seed=1234,                        # model initialisation (data order is fixed)
        corruption="finance@100:shuffle", # CHANNEL@STEP:KIND or None for a clean run;
                                          # KIND: shuffle | language | duplicate | empty
        channel_reweight=None,            # a trainer_hook.ChannelReweightConfig or None
    )
    meta, records = read_recording(path)

File format: line 1 is ``{"meta": {...}}`` (seed, steps, corruption, channels, target_shares,
batch_size, seq_length); then one line per step::

    {"step": 0, "wall_time": 1764370000.1,
     "run": {"lm_loss": 9.02, "lr": 0.00015, "grad_norm": 1.3, ...},
     "channels": {"finance": {"loss": 9.03, "tokens": 1280.0, ...}, "math": {...}, ...}}

Metric names are those of docs/architecture.md; a channel with no tokens in a step is absent from
that step's ``channels``. Non-finite values are written as the strings ``"NaN"``, ``"Infinity"``,
``"-Infinity"`` and read back as floats.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lossradar.demo.corrupt import Corruption
from lossradar.demo.sources import CHANNELS, TARGET_SHARES


def _wire(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _unwire(value: Any) -> float:
    return float(value)  # float("NaN"), float("Infinity") parse


def record_run(
    path: str | os.PathLike[str],
    *,
    steps: int = 200,
    seed: int = 1234,
    corruption: str | None = "finance@100:shuffle",
    channel_reweight: Any = None,
    device: str = "cpu",
    batch_size: int = 16,
) -> Path:
    """Train a demo run and write its per-step metrics to ``path`` (JSONL); returns the path."""
    from lossradar.demo.megatron_data import prepare_data
    from lossradar.demo.train import TrainConfig, train
    from trainer_hook import ChannelLoss

    spec = Corruption.parse(corruption, CHANNELS) if corruption else None
    cfg = TrainConfig(steps=steps, seed=seed, corruption=spec, device=device, batch_size=batch_size)
    data = prepare_data(num_samples=steps * batch_size, seq_length=cfg.model.seq_length)
    hook = ChannelLoss(channels=list(data.channels), channel_reweight=channel_reweight)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        meta = {
            "seed": seed,
            "steps": steps,
            "corruption": spec.spec() if spec else None,
            "channels": list(data.channels),
            "target_shares": dict(TARGET_SHARES),
            "batch_size": batch_size,
            "seq_length": cfg.model.seq_length,
        }
        f.write(json.dumps({"meta": meta}) + "\n")

        def write_step(
            step: int,
            run: Mapping[str, float],
            channels: Mapping[str, Mapping[str, float]],
        ) -> None:
            line = {
                "step": step,
                "wall_time": time.time(),
                "run": {k: _wire(float(v)) for k, v in run.items()},
                "channels": {
                    c: {k: _wire(float(v)) for k, v in m.items()} for c, m in channels.items()
                },
            }
            f.write(json.dumps(line) + "\n")

        train(cfg, data, hook=hook, on_step=write_step)
    return out


def read_recording(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(meta, records)`` of a file written by :func:`record_run` (values as floats)."""
    meta: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            if "meta" in obj:
                meta = obj["meta"]
                continue
            obj["run"] = {k: _unwire(v) for k, v in obj["run"].items()}
            obj["channels"] = {
                c: {k: _unwire(v) for k, v in m.items()} for c, m in obj["channels"].items()
            }
            records.append(obj)
    return meta, records
