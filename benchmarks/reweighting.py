"""Uniform vs channel-level vs sample-level loss reweighting at an equal token budget.

Every strategy trains the demo GPT (~1.9 M parameters, seq 256) on the demo blend
(finance : math : code : general = 3 : 2 : 2 : 3, real text, megatron-core BlendedDataset) for the
same steps and batch, so all see the same tokens. The comparison is **paired**: within a seed,
every strategy starts from the same initialisation and sees the same sample order (the blend is
built with that seed); figures are differences against uniform *within* the seed, averaged over
seeds (unpaired seed-to-seed noise is as large as the effect on this budget).

Held-out loss per channel is in **nats per character** (tokenization density differs by
channel): ``sum of held-out token losses / characters of held-out text``.

Strategies (``trainer_hook`` API):

- ``uniform``: ``ChannelLoss`` without reweighting (the plain token mean);
- ``channel:progress``: ``ChannelReweightConfig(strategy="progress", targets=domains)``: channels
  that learned little get more weight, the domain channels never fall below 1;
- ``channel:doremi``: ``ChannelReweightConfig(strategy="doremi", prior=target shares,
  reference_losses=...)``; the reference model of DoReMi is the one trained on the prior mixture,
  which is this seed's uniform run: its per-channel training loss over its last ``REF_WINDOW``
  steps is the reference (so uniform runs first);
- ``sample:linupper``: ``SampleReweightConfig(strategy="linupper")`` (Sow et al., 2025).

Figures: for each strategy and channel, ``improvement = uniform - strategy`` (nats/char, > 0 is
better). The **domain gain** is the mean improvement over finance, math and code of the best
channel-level strategy (by that mean); ``general_change`` is that strategy's general held-out loss
minus uniform's (> 0 is worse); the spread is the standard deviation over seeds of the paired
domain gain.

Usage: ``python benchmarks/reweighting.py [--steps 360] [--seeds 3] [--batch-size 16]``.
Last line: ``reweighting domain_gain_nats_per_char=<x> general_change_nats_per_char=<x> seeds=<n>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections import deque
from collections.abc import Mapping
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lossradar.demo.evaluate import heldout_nats_per_char
from lossradar.demo.megatron_data import prepare_data
from lossradar.demo.sources import CHANNELS, TARGET_SHARES
from lossradar.demo.train import TrainConfig, build_model, train
from trainer_hook import ChannelLoss, ChannelReweightConfig, SampleReweightConfig

DOMAINS = ("finance", "math", "code")
STRATEGIES = ("uniform", "channel:progress", "channel:doremi", "sample:linupper")
REF_WINDOW = 30  #: last steps of the uniform run whose mean channel loss is DoReMi's reference


def make_hook(strategy: str, warmup: int, reference: list[float] | None) -> ChannelLoss:
    prior = [TARGET_SHARES[c] for c in CHANNELS]
    channel = sample = None
    if strategy == "channel:progress":
        channel = ChannelReweightConfig(
            strategy="progress", prior=prior, targets=list(DOMAINS), warmup_steps=warmup
        )
    elif strategy == "channel:doremi":
        channel = ChannelReweightConfig(
            strategy="doremi", prior=prior, reference_losses=reference, warmup_steps=warmup
        )
    elif strategy == "sample:linupper":
        sample = SampleReweightConfig(strategy="linupper", warmup_steps=warmup)
    elif strategy != "uniform":
        raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    return ChannelLoss(channels=list(CHANNELS), channel_reweight=channel, sample_reweight=sample)


class RecentLosses:
    """``on_step`` callback keeping each channel's training loss over the last REF_WINDOW steps."""

    def __init__(self) -> None:
        self.window: deque[Mapping[str, Mapping[str, float]]] = deque(maxlen=REF_WINDOW)

    def __call__(self, step: int, run: object, channels: Mapping[str, Mapping[str, float]]) -> None:
        self.window.append(channels)

    def mean(self) -> list[float]:
        """Mean loss per channel (in CHANNELS order) over the window."""
        return [statistics.fmean(m[c]["loss"] for m in self.window if c in m) for c in CHANNELS]


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Held-out nats/char per channel for every strategy, paired on ``seed``."""
    data = prepare_data(num_samples=args.steps * args.batch_size, seed=seed)
    out: dict[str, dict[str, float]] = {}
    reference: list[float] | None = None
    for strategy in args.strategies:
        cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, seed=seed, lr=args.lr)
        model = build_model(cfg, data.vocab_size)  # same seed -> identical initialisation
        start = time.perf_counter()
        recent = RecentLosses()
        hook = make_hook(strategy, args.warmup, reference)
        train(cfg, data, hook=hook, model=model, on_step=recent)
        if strategy == "uniform":
            reference = recent.mean()
        out[strategy] = heldout_nats_per_char(
            model, data.heldout, seq_length=cfg.model.seq_length, max_tokens=args.eval_tokens
        )
        shown = " ".join(f"{c} {v:.4f}" for c, v in out[strategy].items())
        print(
            f"seed {seed} {strategy:<17} {time.perf_counter() - start:6.0f} s  {shown}", flush=True
        )
    return out


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=360)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=20, help="reweighting warm-up steps")
    p.add_argument("--eval-tokens", type=int, default=32768, help="held-out tokens per channel")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if "uniform" not in args.strategies:
        p.error("--strategies must include uniform (the baseline of the paired differences)")
    args.strategies.sort(key=lambda s: s != "uniform")  # uniform first: DoReMi's reference
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    seeds = [1234 + i for i in range(args.seeds)]
    print(
        f"reweighting benchmark: {args.seeds} seeds x {len(args.strategies)} strategies, "
        f"{args.steps} steps x {args.batch_size} x 256 tokens each, torch threads "
        f"{torch.get_num_threads()}",
        flush=True,
    )
    results = [run_seed(seed, args) for seed in seeds]

    def improvement(strategy: str, channel: str) -> list[float]:
        return [r["uniform"][channel] - r[strategy][channel] for r in results]

    def domain_gain(strategy: str) -> list[float]:
        per_seed = zip(*(improvement(strategy, c) for c in DOMAINS), strict=True)
        return [statistics.fmean(v) for v in per_seed]

    print()
    print("held-out nats/char: uniform (mean over seeds), then paired improvement vs uniform")
    print("(mean +- sd over seeds; > 0 = better than uniform)")
    header = f"{'strategy':<18}" + "".join(f"{c:>17}" for c in CHANNELS) + f"{'domains':>17}"
    print(header)
    uni = [statistics.fmean(r["uniform"][c] for r in results) for c in CHANNELS]
    uni_dom = statistics.fmean(statistics.fmean(r["uniform"][c] for c in DOMAINS) for r in results)
    print(f"{'uniform':<18}" + "".join(f"{v:>17.4f}" for v in uni) + f"{uni_dom:>17.4f}")
    for strategy in args.strategies:
        if strategy == "uniform":
            continue
        cells = [_mean_sd(improvement(strategy, c)) for c in CHANNELS]
        cells.append(_mean_sd(domain_gain(strategy)))
        print(f"{strategy:<18}" + "".join(f"{m:>+10.4f} ±{s:.4f}" for m, s in cells))
    unpaired = [statistics.fmean(r["uniform"][c] for c in DOMAINS) for r in results]
    print(
        f"\nunpaired seed-to-seed sd of uniform's domain loss: {_mean_sd(unpaired)[1]:.4f} "
        "nats/char (what an unpaired comparison would have to beat)"
    )
    channel_strategies = [s for s in args.strategies if s.startswith("channel:")]
    if not channel_strategies:
        print(
            "reweighting domain_gain_nats_per_char=nan general_change_nats_per_char=nan "
            f"seeds={args.seeds}"
        )
        return 0
    best = max(channel_strategies, key=lambda s: statistics.fmean(domain_gain(s)))
    gain, spread = _mean_sd(domain_gain(best))
    general_change = -statistics.fmean(improvement(best, "general"))
    print(
        f"best channel-level strategy: {best}; domain gain {gain:+.4f} nats/char, paired spread "
        f"(sd over seeds) {spread:.4f}; general change {general_change:+.4f} (> 0 = worse); "
        f"target: gain > spread and general change <= gain / 2: "
        f"{'met' if gain > spread and general_change <= gain / 2 else 'not met'}"
    )
    print(
        f"reweighting domain_gain_nats_per_char={gain:.4f} "
        f"general_change_nats_per_char={general_change:.4f} seeds={args.seeds}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
