"""How fast, and how cleanly, the alert engine catches a bad channel on real training curves.

Records (once; cached under ``benchmarks/out/alerts/``) real small-GPT training runs on real
text through the demo pipeline (``lossradar.demo.record``): one run per corruption kind, the
corrupted channel switching to bad data at ``--onset``, plus ``--clean`` clean runs with other
seeds. Then replays every run through the engine with default thresholds, step by step, as the
server would on ingest.

- delay: first step at which any alert on the corrupted channel is *firing*, minus the onset;
- false alarm: any firing alert in a clean run, before the onset, or on another channel.

Side by side, the same runs through a baseline rule (the channel's loss over the mean of the
others, EWMA z-score), to show why the engine judges a channel against its own trend.

    python benchmarks/alerts_eval.py                  # record if needed (~15 min on 2 cores)
    python benchmarks/alerts_eval.py --steps 100 --onset 50 --clean 3 --jobs 2

Last line: ``alerts kinds=<n> max_delay_steps=<n> mean_delay_steps=<x> false_alarms=<n>
clean_runs=<n>``.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.alerts.engine import RunAlertState, RunRules, StepPoints, evaluate  # noqa: E402

KINDS = ("shuffle", "language", "duplicate", "empty")
CHANNEL = "finance"
CLEAN_SEEDS = (11, 22, 33, 44, 55)


def _model() -> Any:
    from lossradar.demo.model import GPTConfig

    return GPTConfig(seq_length=128, d_model=64, n_layers=2, n_heads=2)


@dataclass
class Firing:
    step: int
    channel: str | None
    rule: str


def recording_path(out: Path, *, steps: int, seed: int, corruption: str | None) -> Path:
    name = f"{corruption.replace('@', '-').replace(':', '-') if corruption else 'clean'}"
    return out / f"{name}-seed{seed}-steps{steps}.jsonl"


def _wire(value: float) -> float | str:
    return (
        value
        if math.isfinite(value)
        else str(value).replace("inf", "Infinity").replace("nan", "NaN")
    )


def record(job: tuple[Path, int, int, str | None]) -> Path:
    """Record one run in ``lossradar.demo.record``'s JSONL format, with a small GPT (one torch
    thread, so several jobs share the cores): d_model 64, 2 layers, sequences of 128 tokens,
    16 rows per step (about 5 of them finance)."""
    import json
    import time

    import torch

    from lossradar.demo.corrupt import Corruption
    from lossradar.demo.megatron_data import prepare_data
    from lossradar.demo.sources import CHANNELS, TARGET_SHARES
    from lossradar.demo.train import TrainConfig, train
    from trainer_hook import ChannelLoss

    path, steps, seed, corruption = job
    torch.set_num_threads(1)
    print(f"recording {path.name} ...", flush=True)
    spec = Corruption.parse(corruption, CHANNELS) if corruption else None
    cfg = TrainConfig(steps=steps, seed=seed, corruption=spec, batch_size=16, model=_model())
    data = prepare_data(num_samples=steps * cfg.batch_size, seq_length=cfg.model.seq_length)
    hook = ChannelLoss(channels=list(data.channels))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        meta = {
            "seed": seed,
            "steps": steps,
            "corruption": corruption,
            "channels": list(data.channels),
            "target_shares": dict(TARGET_SHARES),
        }
        f.write(json.dumps({"meta": meta}) + "\n")

        def write_step(step: int, run: Any, channels: Any) -> None:
            line = {
                "step": step,
                "wall_time": time.time(),
                "run": {k: _wire(float(v)) for k, v in run.items()},
                "channels": {
                    c: {k: _wire(float(v)) for k, v in m.items()} for c, m in channels.items()
                },
            }
            f.write(json.dumps(line) + "\n")
            f.flush()

        train(cfg, data, hook=hook, on_step=write_step)
    tmp.rename(path)
    return path


def record_missing(jobs: list[tuple[Path, int, int, str | None]], workers: int) -> None:
    """Record the runs not cached yet, ``workers`` at a time."""
    missing = [j for j in jobs if not j[0].exists()]
    if not missing:
        return
    if workers <= 1:
        for job in missing:
            record(job)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(record, missing, chunksize=1)


def replay(path: Path) -> tuple[dict[str, Any], list[Firing]]:
    """Feed a recording to the engine (defaults) one step at a time; collect firings."""
    from lossradar.demo.record import read_recording

    meta, records = read_recording(path)
    rules = RunRules(channels={c: meta["target_shares"].get(c) for c in meta["channels"]})
    state = RunAlertState()
    firings: list[Firing] = []
    for rec in records:
        points = StepPoints(
            step=rec["step"], run=rec["run"], channels=rec["channels"], wall_time=rec["wall_time"]
        )
        for t in evaluate(state, [points], rules, now=rec["wall_time"]):
            if t.event.kind == "firing":
                firings.append(Firing(t.event.step, t.channel, t.rule))
    return meta, firings


def ratio_baseline(path: Path, *, onset: int, z: float = 6.0) -> int | None:
    """First step (>= 20) where loss(ch) / mean(loss others) is ``z`` EW-sigmas above its mean;
    returns the firing step of the corrupted channel, or None."""
    from lossradar.demo.record import read_recording

    _, records = read_recording(path)
    stats: dict[str, tuple[float, float, int]] = {}
    for rec in records:
        losses = {c: m["loss"] for c, m in rec["channels"].items() if "loss" in m}
        for c, x in losses.items():
            others = [v for k, v in losses.items() if k != c and math.isfinite(v)]
            if not others or not math.isfinite(x):
                continue
            r = x / (sum(others) / len(others))
            mean, var, n = stats.get(c, (r, 0.0, 0))
            if n >= 20 and var > 0 and (r - mean) / math.sqrt(var) > z and c == CHANNEL:
                return int(rec["step"])
            d = r - mean
            stats[c] = (mean + 0.1 * d, 0.9 * (var + 0.1 * d * d), n + 1)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--onset", type=int, default=50)
    parser.add_argument("--clean", type=int, default=3, help="clean runs (different seeds)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of the corrupted runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "alerts")
    parser.add_argument("--jobs", type=int, default=2, help="runs recorded in parallel")
    args = parser.parse_args(argv)
    if not 20 < args.onset < args.steps:
        parser.error("--onset must be after the warm-up (20) and before --steps")
    if not 1 <= args.clean <= len(CLEAN_SEEDS):
        parser.error(f"--clean must be 1..{len(CLEAN_SEEDS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    specs = [f"{CHANNEL}@{args.onset}:{kind}" for kind in KINDS]
    jobs = [
        (
            recording_path(args.out, steps=args.steps, seed=args.seed, corruption=spec),
            args.steps,
            args.seed,
            spec,
        )
        for spec in specs
    ] + [
        (
            recording_path(args.out, steps=args.steps, seed=seed, corruption=None),
            args.steps,
            seed,
            None,
        )
        for seed in CLEAN_SEEDS[: args.clean]
    ]
    record_missing(jobs, args.jobs)

    delays: list[int] = []
    baseline: list[str] = []
    false_alarms = 0
    print(f"{'run':<28} {'first firing on ' + CHANNEL:<34} {'delay':>5}  baseline  false alarms")
    for kind in KINDS:
        spec = f"{CHANNEL}@{args.onset}:{kind}"
        path = recording_path(args.out, steps=args.steps, seed=args.seed, corruption=spec)
        _, firings = replay(path)
        wrong = [f for f in firings if f.step < args.onset or f.channel != CHANNEL]
        hits = [f for f in firings if f.step >= args.onset and f.channel == CHANNEL]
        false_alarms += len(wrong)
        delay = hits[0].step - args.onset if hits else args.steps - args.onset
        delays.append(delay)
        base = ratio_baseline(path, onset=args.onset)
        base_text = "miss" if base is None or base < args.onset else str(base - args.onset)
        baseline.append(base_text)
        first = f"step {hits[0].step} {hits[0].rule}" if hits else "none (counted as miss)"
        extra = ", ".join(f"{f.step}:{f.channel}:{f.rule}" for f in wrong[:4])
        print(f"{kind:<28} {first:<34} {delay:>5}  {base_text:>8}  {len(wrong)} {extra}")
    for seed in CLEAN_SEEDS[: args.clean]:
        path = recording_path(args.out, steps=args.steps, seed=seed, corruption=None)
        _, firings = replay(path)
        false_alarms += len(firings)
        extra = ", ".join(f"{f.step}:{f.channel}:{f.rule}" for f in firings[:4])
        print(
            f"{'clean seed ' + str(seed):<28} {'-':<34} {'-':>5}  {'-':>8}  {len(firings)} {extra}"
        )
    mean_delay = sum(delays) / len(delays)
    caught = sum(1 for b in baseline if b != "miss")
    print(
        f"baseline (ratio to other channels): caught {caught}/{len(KINDS)}, "
        f"delays {', '.join(baseline)}; engine caught all with max delay {max(delays)}"
    )
    print(
        f"alerts kinds={len(KINDS)} max_delay_steps={max(delays)} "
        f"mean_delay_steps={mean_delay:.1f} false_alarms={false_alarms} clean_runs={args.clean}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
