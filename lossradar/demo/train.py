"""The demo's training loop: a small GPT on the blended data, through the public trainer_hook API.

Per optimizer step (the path a Megatron user takes, on CPU):

1. the global batch of the step comes from the megatron-core BlendedDataset, in blend order;
   from the corruption step on, one channel's samples are corrupted;
2. per micro-batch: logits -> per-token loss -> ``hook.accumulate(loss, loss_mask, dataset_id)``;
   the backward loss is ``out.loss_sum / tokens_in_global_batch`` (the reweighted token mean);
3. clip, AdamW step, then ``report = hook.step()``; run metrics (``lm_loss``, ``lr``,
   ``grad_norm``) and channel metrics go to the sink and to ``on_step``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lossradar.demo.corrupt import Corruption, corrupt_batch
from lossradar.demo.megatron_data import DemoData, batch_at
from lossradar.demo.model import GPTConfig, TinyGPT, per_token_loss

StepCallback = Callable[[int, Mapping[str, float], Mapping[str, Mapping[str, float]]], None]


@dataclass(kw_only=True, slots=True)
class TrainConfig:
    """Hyper-parameters of a demo training run."""

    steps: int = 300
    """optimizer steps."""
    batch_size: int = 16
    """samples per global batch."""
    micro_batches: int = 2
    """micro-batches per step (``batch_size`` must be divisible by it)."""
    lr: float = 3e-3
    """peak learning rate (linear warm-up, cosine decay to 10 %)."""
    warmup_steps: int = 20
    """linear warm-up steps."""
    weight_decay: float = 0.1
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """gradient-norm clip."""
    seed: int = 1234
    """model initialisation seed (the data order is fixed by the blend's seed)."""
    device: str = "cpu"
    """torch device for model and loss (``cpu``, ``cuda``, ``npu``...)."""
    corruption: Corruption | None = None
    """corrupt one channel from a step on, or None."""
    model: GPTConfig = field(default_factory=GPTConfig)
    """shape of the GPT."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1 or self.micro_batches < 1 or self.batch_size % self.micro_batches:
            raise ValueError(
                f"batch_size={self.batch_size} must be a positive multiple of "
                f"micro_batches={self.micro_batches}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")

    def lr_at(self, step: int) -> float:
        """``lr * (step+1)/warmup`` during warm-up, then cosine from ``lr`` to ``lr/10``."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def build_model(cfg: TrainConfig, vocab_size: int) -> TinyGPT:
    """The GPT initialised from ``cfg.seed`` (same seed -> bit-identical weights)."""
    shape = GPTConfig(
        vocab_size=vocab_size,
        seq_length=cfg.model.seq_length,
        d_model=cfg.model.d_model,
        n_layers=cfg.model.n_layers,
        n_heads=cfg.model.n_heads,
    )
    torch.manual_seed(cfg.seed)
    return TinyGPT(shape).to(cfg.device)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms and embeddings of rank < 2."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


@dataclass(kw_only=True, slots=True)
class TrainResult:
    """What a run leaves behind."""

    model: TinyGPT
    steps: int
    seconds: float
    tokens: int
    last_channel_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    last_run_metrics: dict[str, float] = field(default_factory=dict)


def train(
    cfg: TrainConfig,
    data: DemoData,
    *,
    hook: Any,
    sink: Any = None,
    on_step: StepCallback | None = None,
    model: TinyGPT | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``cfg.steps`` steps; ``hook`` is a ``trainer_hook.ChannelLoss`` over ``data.channels``.

    ``sink`` (a ``MetricSink``) gets every step's metrics; ``on_step`` too (the progress bar).
    """
    model = model or build_model(cfg, data.vocab_size)
    optimizer = make_optimizer(model, cfg)
    corrupt_id = data.channels.index(cfg.corruption.channel) if cfg.corruption else -1
    micro = cfg.batch_size // cfg.micro_batches
    start = time.perf_counter()
    tokens_seen = 0
    run_metrics: dict[str, float] = {}
    channel_metrics: dict[str, dict[str, float]] = {}
    step = 0
    for step in range(cfg.steps):
        if should_stop is not None and should_stop():
            break
        lr = cfg.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = batch_at(data.train, step, cfg.batch_size)
        if cfg.corruption is not None and step >= cfg.corruption.step:
            corrupt_batch(
                batch,
                channel_id=corrupt_id,
                kind=cfg.corruption.kind,
                eod=data.eod,
                foreign_tokens=data.foreign_tokens,
                rng=np.random.default_rng([cfg.seed, step]),
            )
        batch_tokens = max(1.0, float(batch["loss_mask"].sum()))  # host-side data, no device sync
        tokens_seen += int(batch_tokens)
        for m in range(cfg.micro_batches):
            rows = slice(m * micro, (m + 1) * micro)
            tokens = batch["tokens"][rows].to(cfg.device)
            labels = batch["labels"][rows].to(cfg.device)
            mask = batch["loss_mask"][rows].to(cfg.device)
            channel_ids = batch["dataset_id"][rows].to(cfg.device)
            loss = per_token_loss(model(tokens), labels)
            out = hook.accumulate(loss, mask, channel_ids)
            (out.loss_sum / batch_tokens).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        report = hook.step()
        run_metrics = dict(report.run_metrics())  # host sync: every step is a logging step
        run_metrics["lr"] = lr
        run_metrics["grad_norm"] = float(grad_norm)
        channel_metrics = {k: dict(v) for k, v in report.channel_metrics().items()}
        if sink is not None:
            sink.log_step(step, run_metrics, channel_metrics, wall_time=time.time())
        if on_step is not None:
            on_step(step, run_metrics, channel_metrics)
    return TrainResult(
        model=model,
        steps=step + 1,
        seconds=time.perf_counter() - start,
        tokens=tokens_seen,
        last_channel_metrics=channel_metrics,
        last_run_metrics=run_metrics,
    )
