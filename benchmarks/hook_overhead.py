"""Overhead of trainer_hook.ChannelLoss on a small GPT training step on CPU.

Measured side by side in one run, interleaved (A B B A ...), in CPU time of this process
(``time.process_time``, torch on ``--threads`` threads, default 1), which other processes on a
shared machine disturb far less than wall time. Ratios use medians; the fastest runs are printed
too:

- step: forward + backward of one optimizer step (M micro-batches), plain Megatron-style loss
  ``sum(loss * mask)`` versus ``ChannelLoss.accumulate`` + ``ChannelLoss.step()`` with
  channel-level reweighting on (no logging: the report is not converted);
- loss: the loss function alone on precomputed per-token losses (plain vs accumulate, plus the
  per-step ``step()`` amortised over the micro-batches);
- collectives per step: every torch.distributed collective is wrapped and counted on a 2-rank
  ``fake`` process group (a single process; the collectives are no-ops), without sample-level
  reweighting; the count with sample-level reweighting is printed too;
- host syncs per step: calls of Tensor.item/tolist/cpu/numpy/__bool__/__float__/__int__ during
  non-logging steps (and, printed separately, on a logging step).

Usage: ``python benchmarks/hook_overhead.py [--steps 40] [--threads 1]``. The last line is
``hook_overhead step_ratio=<x> loss_ratio=<x> collectives_per_step=<n> host_syncs_per_step=<n>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer_hook import ChannelLoss, ChannelReweightConfig, SampleReweightConfig

CHANNELS = ["finance/credit", "finance/news", "math", "general"]


class TinyGPT(nn.Module):
    """Decoder-only transformer: token + learned position embeddings, pre-LN blocks."""

    def __init__(self, vocab: int, dim: int, layers: int, heads: int, seq: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(seq, dim)
        block = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(seq))

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-token cross-entropy ``[B, L]``."""
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        h = self.blocks(self.tok(tokens) + self.pos(pos), mask=self.causal, is_causal=True)
        logits = self.head(self.norm(h))
        return F.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten(), reduction="none"
        ).view_as(labels)


def make_batches(args: argparse.Namespace) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    out: list[tuple[torch.Tensor, ...]] = []
    for _ in range(args.micro):
        tokens = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g)
        labels = torch.roll(tokens, -1, dims=1)
        mask = (torch.rand(args.batch, args.seq, generator=g) > 0.1).float()
        ids = torch.randint(0, len(CHANNELS), (args.batch,), generator=g).to(torch.int16)
        out.append((tokens, labels, mask, ids))
    return out


def plain_loss(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Megatron's loss_func: the masked token-loss sum."""
    return torch.sum(per_token.view(-1) * mask.view(-1))


def train_step(
    model: nn.Module, batches: list[tuple[torch.Tensor, ...]], hook: ChannelLoss | None
) -> None:
    for tokens, labels, mask, ids in batches:
        per_token = model(tokens, labels)
        loss = (
            plain_loss(per_token, mask)
            if hook is None
            else hook.accumulate(per_token, mask, ids).loss_sum
        )
        loss.backward()
    if hook is not None:
        hook.step()
    model.zero_grad(set_to_none=True)


def interleaved(
    fns: dict[str, Callable[[], None]], reps: int, warmup: int
) -> dict[str, list[float]]:
    """Time each function ``reps`` times, alternating the order every round."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(reps):
        for name in names if i % 2 == 0 else reversed(names):
            t0 = time.process_time()
            fns[name]()
            times[name].append(time.process_time() - t0)
    return times


_COLLECTIVES = (
    "all_reduce",
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_object",
    "broadcast",
    "reduce",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "all_to_all",
    "barrier",
)
_SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


@contextmanager
def counting(counts: dict[str, int]) -> Iterator[None]:
    """Count collectives (torch.distributed functions) and host syncs (Tensor conversions)."""
    saved_dist = {n: getattr(dist, n) for n in _COLLECTIVES if hasattr(dist, n)}
    saved_tensor = {n: getattr(torch.Tensor, n) for n in _SYNCS}

    def wrap(fn: Callable[..., object], key: str) -> Callable[..., object]:
        def counted(*args: object, **kwargs: object) -> object:
            counts[key] += 1
            return fn(*args, **kwargs)

        return counted

    try:
        for n, fn in saved_dist.items():
            setattr(dist, n, wrap(fn, "collectives"))
        for n, fn in saved_tensor.items():
            setattr(torch.Tensor, n, wrap(fn, "host_syncs"))
        yield
    finally:
        for n, fn in saved_dist.items():
            setattr(dist, n, fn)
        for n, fn in saved_tensor.items():
            setattr(torch.Tensor, n, fn)


def count_per_step(
    args: argparse.Namespace, batches: list[tuple[torch.Tensor, ...]], sample: bool
) -> tuple[float, float, int]:
    """Collectives and host syncs per non-logging step, and host syncs of one logging step."""
    hook = ChannelLoss(
        channels=CHANNELS,
        group=dist.group.WORLD,
        sample_reweight=SampleReweightConfig() if sample else None,
        channel_reweight=ChannelReweightConfig(),
    )
    g = torch.Generator().manual_seed(1)
    losses = [torch.rand(args.batch, args.seq, generator=g) for _ in batches]
    steps = 5
    counts = {"collectives": 0, "host_syncs": 0}
    with counting(counts):
        for _ in range(steps):
            for loss, (_, _, mask, ids) in zip(losses, batches, strict=True):
                hook.accumulate(loss, mask, ids)
            report = hook.step()
    log_counts = {"collectives": 0, "host_syncs": 0}
    with counting(log_counts):
        report.run_metrics()
        report.channel_metrics()
    return counts["collectives"] / steps, counts["host_syncs"] / steps, log_counts["host_syncs"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="timed steps per variant")
    parser.add_argument("--micro", type=int, default=4, help="micro-batches per step")
    parser.add_argument("--batch", type=int, default=4, help="micro-batch size")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = TinyGPT(args.vocab, args.dim, args.layers, args.heads, args.seq)
    batches = make_batches(args)
    hook = ChannelLoss(
        channels=CHANNELS, channel_reweight=ChannelReweightConfig(), reduce_dtype=torch.float64
    )
    steps = interleaved(
        {
            "plain": lambda: train_step(model, batches, None),
            "hook": lambda: train_step(model, batches, hook),
        },
        reps=args.steps,
        warmup=3,
    )
    step_plain, step_hook = statistics.median(steps["plain"]), statistics.median(steps["hook"])
    min_plain, min_hook = min(steps["plain"]), min(steps["hook"])
    assert hook.state_dict()["channel_reweight"] is not None

    g = torch.Generator().manual_seed(2)
    losses = [
        torch.rand(args.batch, args.seq, generator=g).requires_grad_() for _ in range(args.micro)
    ]
    loss_hook = ChannelLoss(channels=CHANNELS, channel_reweight=ChannelReweightConfig())

    def loss_plain_fn() -> None:
        for loss, (_, _, mask, _) in zip(losses, batches, strict=True):
            plain_loss(loss, mask)

    def loss_hook_fn() -> None:
        for loss, (_, _, mask, ids) in zip(losses, batches, strict=True):
            loss_hook.accumulate(loss, mask, ids)
        loss_hook.step()

    loss_times = interleaved(
        {"plain": loss_plain_fn, "hook": loss_hook_fn}, reps=20 * args.steps, warmup=20
    )
    loss_plain, loss_h = (statistics.median(loss_times[k]) for k in ("plain", "hook"))

    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=2)
    try:
        coll, syncs, log_syncs = count_per_step(args, batches, sample=False)
        coll_sample, syncs_sample, _ = count_per_step(args, batches, sample=True)
    finally:
        dist.destroy_process_group()

    tokens = args.micro * args.batch * args.seq
    print(
        f"small GPT: {args.layers} layers, dim {args.dim}, vocab {args.vocab}; step = "
        f"{args.micro} micro-batches x [{args.batch}, {args.seq}] = {tokens} tokens; "
        f"{args.threads} thread(s); {args.steps} interleaved steps per variant"
    )
    print(f"step plain  {step_plain * 1e3:9.3f} ms CPU (median; fastest {min_plain * 1e3:.3f})")
    print(
        f"step hook   {step_hook * 1e3:9.3f} ms CPU (median; fastest {min_hook * 1e3:.3f}) "
        "channel reweighting on, no logging"
    )
    print(f"loss plain  {loss_plain * 1e6:9.1f} us CPU per step ({args.micro} micro-batches)")
    print(f"loss hook   {loss_h * 1e6:9.1f} us CPU accumulate x {args.micro} + step()")
    cost = loss_h - loss_plain
    print(
        f"hook cost per step {cost * 1e3:.3f} ms = {cost / step_plain * 100:.2f}% of a plain step"
    )
    print(
        f"collectives/step: {coll:g} (channel reweighting), {coll_sample:g} (plus sample "
        f"reweighting: 1 + one per micro-batch); host syncs/step: {syncs:g} and {syncs_sample:g}; "
        f"host syncs of a logging step's report: {log_syncs}"
    )
    print(
        f"hook_overhead step_ratio={step_hook / step_plain:.4f} "
        f"loss_ratio={loss_h / loss_plain:.2f} collectives_per_step={coll:g} "
        f"host_syncs_per_step={syncs:g}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
