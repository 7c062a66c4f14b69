"""Writing one step's channel metrics where Megatron users look: TensorBoard, W&B, the console,
and lossradar metric sinks. Runs on the global last rank, on logging steps only.

Absent channels (no tokens in the step) have no entry in ``channel_metrics`` and so get no
scalar at that step: never a 0 or a NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

# TensorBoard tag = f"{TAGS[metric]}/{channel}": one chart section per metric, channels inside.
TAGS = {
    "loss": "channel-loss",
    "loss_sample_mean": "channel-loss-sample-mean",
    "tokens": "channel-tokens",
    "samples": "channel-samples",
    "token_share": "channel-token-share",
    "weight": "channel-weight",
}
RUN_TAG = "channel-run"


def scalar_dict(
    run_metrics: Mapping[str, float], channel_metrics: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """All scalars of a step as ``{tag: value}`` (the W&B ``log`` payload)."""
    out: dict[str, float] = {}
    for name, metrics in channel_metrics.items():
        for metric, value in metrics.items():
            out[f"{TAGS.get(metric, 'channel-' + metric)}/{name}"] = float(value)
    for metric, value in run_metrics.items():
        out[f"{RUN_TAG}/{metric}"] = float(value)
    return out


def console_line(
    iteration: int,
    channel_metrics: Mapping[str, Mapping[str, float]],
    names: Sequence[str],
    target_shares: Sequence[float | None],
) -> str:
    """One compact line: ``channels @ 100 | web 2.3141 52%/50% w1.00 | code - | ...``.

    Per channel: loss, actual/target token share, weight; ``-`` for a channel absent this step.
    """
    parts = [f" channels @ {iteration}"]
    for name, target in zip(names, target_shares, strict=True):
        m = channel_metrics.get(name)
        if m is None:
            parts.append(f"{name} -")
            continue
        loss = m.get("loss", math.nan)
        share = m.get("token_share")
        text = f"{name} {loss:.4f}"
        if share is not None:
            text += f" {100 * share:.0f}%" + (f"/{100 * target:.0f}%" if target is not None else "")
        if "weight" in m:
            text += f" w{m['weight']:.2f}"
        parts.append(text)
    return " | ".join(parts)


def write_step(
    *,
    iteration: int,
    run_metrics: Mapping[str, float],
    channel_metrics: Mapping[str, Mapping[str, float]],
    tensorboard_writer: Any = None,
    wandb_writer: Any = None,
    sinks: Sequence[Any] = (),
    console: str | None = None,
) -> None:
    """Send one step to every destination; one failing destination never stops the others and
    nothing raises (a training run must not die for its metrics)."""
    scalars = scalar_dict(run_metrics, channel_metrics)
    if tensorboard_writer is not None:
        try:
            for tag, value in scalars.items():
                tensorboard_writer.add_scalar(tag, value, iteration)
        except Exception:
            log.exception("lossradar: TensorBoard write failed at iteration %d", iteration)
    if wandb_writer is not None:
        try:
            wandb_writer.log(scalars, iteration)
        except Exception:
            log.exception("lossradar: W&B log failed at iteration %d", iteration)
    for sink in sinks:
        try:
            sink.log_step(iteration, run_metrics, channel_metrics)
        except Exception:
            log.exception("lossradar: sink %r failed at iteration %d", sink, iteration)
    if console is not None:
        print(console, flush=True)
