"""How fast, and how cleanly, the alert engine catches a bad channel on real training curves.

Records (once; cached under ``benchmarks/out/alerts/``) real small-GPT training runs on real
text through the demo pipeline (``lossradar.demo``: data, model, corruption, loop): a clean
prefix up to ``--onset``, then from it one branch per corruption kind of the finance channel
and one clean branch, plus ``--clean - 1`` clean runs with other seeds. Then replays every run
through the engine with default thresholds, step by step, as the server would on ingest.

- delay: first step at which any alert on the corrupted channel is *firing*, minus the onset;
- false alarm: any firing alert in a clean run, before the onset, or on another channel.

Side by side, the same runs through a baseline rule (the channel's loss over the mean of the
others, EWMA z-score), to show why the engine judges a channel against its own trend.

    python benchmarks/alerts_eval.py                  # record if needed (~10 min on 2 cores)
    python benchmarks/alerts_eval.py --steps 160 --onset 120 --clean 3 --jobs 3

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


@dataclass
class Firing:
    step: int
    channel: str | None
    rule: str


def recording_path(out: Path, *, steps: int, seed: int, corruption: str | None) -> Path:
    name = f"{corruption.replace('@', '-').replace(':', '-') if corruption else 'clean'}"
    return out / f"{name}-seed{seed}-steps{steps}.jsonl"


def prefix_path(out: Path, seed: int, onset: int, steps: int) -> Path:
    """The shared clean prefix (steps 0..onset-1) of the runs with ``seed``, and its state."""
    return out / f"prefix-seed{seed}-onset{onset}-steps{steps}.jsonl"


def _model() -> Any:
    from lossradar.demo.model import GPTConfig

    return GPTConfig(seq_length=128, d_model=64, n_layers=2, n_heads=2)


def _wire(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


@dataclass
class Job:
    """Train ``seed`` from ``start`` (0, or the shared prefix) to ``steps``; write ``path``."""

    path: Path
    steps: int
    seed: int
    corruption: str | None
    schedule: int  # the run's planned length (learning-rate schedule)
    start: int = 0  # > 0: resume from the prefix snapshot (same seed, clean until start)
    snapshot: Path | None = None  # prefix jobs: save the state here at ``steps``


def run_job(job: Job) -> Path:
    """One recording in ``lossradar.demo.record``'s JSONL format (one torch thread, so several
    jobs share the cores). The demo's data, GPT, corruption and loop, with a smaller model
    (d_model 64, 2 layers, 128 tokens), lr 1e-2, 16 rows per step (about 5 finance)."""
    import json
    import time

    import numpy as np
    import torch

    from lossradar.demo.corrupt import Corruption, corrupt_batch
    from lossradar.demo.megatron_data import batch_at, prepare_data
    from lossradar.demo.model import per_token_loss
    from lossradar.demo.sources import CHANNELS, TARGET_SHARES
    from lossradar.demo.train import TrainConfig, build_model, make_optimizer
    from trainer_hook import ChannelLoss

    torch.set_num_threads(1)
    spec = Corruption.parse(job.corruption, CHANNELS) if job.corruption else None
    cfg = TrainConfig(
        steps=job.schedule,
        seed=job.seed,
        corruption=spec,
        batch_size=16,
        lr=1e-2,
        warmup_steps=10,
        model=_model(),
    )
    data = prepare_data(num_samples=job.schedule * cfg.batch_size, seq_length=cfg.model.seq_length)
    model = build_model(cfg, data.vocab_size)
    optimizer = make_optimizer(model, cfg)
    hook = ChannelLoss(channels=list(data.channels))
    lines: list[str] = []
    if job.start:
        prefix = prefix_path(job.path.parent, job.seed, job.start, job.schedule)
        while not (prefix.with_suffix(".pt").exists() and prefix.with_suffix(".jsonl").exists()):
            time.sleep(2.0)
        state = torch.load(prefix.with_suffix(".pt"), weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        hook.load_state_dict(state["hook"])
        lines = prefix.with_suffix(".jsonl").read_text().splitlines()[1:]
    print(f"recording {job.path.name} from step {job.start} ...", flush=True)
    corrupt_id = data.channels.index(spec.channel) if spec else -1
    for step in range(job.start, job.steps):
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(step)
        batch = batch_at(data.train, step, cfg.batch_size)
        if spec is not None and step >= spec.step:
            corrupt_batch(
                batch,
                channel_id=corrupt_id,
                kind=spec.kind,
                eod=data.eod,
                foreign_tokens=data.foreign_tokens,
                rng=np.random.default_rng([cfg.seed, step]),
            )
        total = max(1.0, float(batch["loss_mask"].sum()))
        out = hook.accumulate(
            per_token_loss(model(batch["tokens"]), batch["labels"]),
            batch["loss_mask"],
            batch["dataset_id"],
        )
        (out.loss_sum / total).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        report = hook.step()
        channels = {
            c: {k: _wire(float(v)) for k, v in m.items()}
            for c, m in report.channel_metrics().items()
        }
        run = {k: _wire(float(v)) for k, v in report.run_metrics().items()}
        lines.append(
            json.dumps({"step": step, "wall_time": time.time(), "run": run, "channels": channels})
        )
    meta = {
        "seed": job.seed,
        "steps": job.steps,
        "corruption": job.corruption,
        "channels": list(data.channels),
        "target_shares": dict(TARGET_SHARES),
    }
    text = "\n".join([json.dumps({"meta": meta}), *lines]) + "\n"
    if job.snapshot is not None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "hook": hook.state_dict(),
        }
        torch.save(state, job.snapshot.with_suffix(".tmp"))
        job.snapshot.with_suffix(".tmp").rename(job.snapshot)
    tmp = job.path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.rename(job.path)
    return job.path


def record_missing(jobs: list[Job], workers: int) -> None:
    """Record the runs not cached yet, ``workers`` at a time (prefix first)."""
    missing = [j for j in jobs if not j.path.exists()]
    if not missing:
        return
    if workers <= 1:
        for job in missing:
            run_job(job)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(run_job, missing, chunksize=1)


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
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--onset", type=int, default=120)
    parser.add_argument("--clean", type=int, default=3, help="clean runs (different seeds)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of the corrupted runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "alerts")
    parser.add_argument("--jobs", type=int, default=3, help="runs recorded in parallel")
    args = parser.parse_args(argv)
    if not 20 < args.onset < args.steps:
        parser.error("--onset must be after the warm-up (20) and before --steps")
    if not 1 <= args.clean <= len(CLEAN_SEEDS) + 1:
        parser.error(f"--clean must be 1..{len(CLEAN_SEEDS) + 1}")
    args.out.mkdir(parents=True, exist_ok=True)
    # one clean prefix up to the onset, shared by the corrupted runs and one clean run of the
    # same seed (training is deterministic); other clean runs are full runs of other seeds
    prefix = prefix_path(args.out, args.seed, args.onset, args.steps)
    clean_paths = [recording_path(args.out, steps=args.steps, seed=args.seed, corruption=None)]
    jobs = [Job(prefix, args.onset, args.seed, None, args.steps, 0, prefix.with_suffix(".pt"))]
    for seed in CLEAN_SEEDS[: args.clean - 1]:
        clean_paths.append(recording_path(args.out, steps=args.steps, seed=seed, corruption=None))
        jobs.append(Job(clean_paths[-1], args.steps, seed, None, args.steps))
    for spec in [None] + [f"{CHANNEL}@{args.onset}:{kind}" for kind in KINDS]:
        path = recording_path(args.out, steps=args.steps, seed=args.seed, corruption=spec)
        jobs.append(Job(path, args.steps, args.seed, spec, args.steps, args.onset))
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
    for path in clean_paths:
        seed = int(path.name.split("-seed")[1].split("-")[0])
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
        f"delays {', '.join(baseline)}; engine: delays {', '.join(map(str, delays))}"
    )
    print(
        f"alerts kinds={len(KINDS)} max_delay_steps={max(delays)} "
        f"mean_delay_steps={mean_delay:.1f} false_alarms={false_alarms} clean_runs={args.clean}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
