"""The one function that decides which sink a rank gets."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from trainer_hook.sinks.http_sender import HttpSender
from trainer_hook.sinks.jsonl import JsonlSink
from trainer_hook.sinks.multi import MultiSink
from trainer_hook.sinks.null import NullSink
from trainer_hook.sinks.protocol import MetricSink
from trainer_hook.sinks.tensorboard import TensorBoardSink

log = logging.getLogger(__name__)


def is_global_last_rank() -> bool:
    """True on the rank that logs: Megatron's global last rank (which holds the loss of the last
    pipeline stage), or the only process when torch.distributed is not initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return bool(dist.get_rank() == dist.get_world_size() - 1)
    return True


def select_sink(
    is_logging_rank: bool,
    *,
    url: str | None = None,
    jsonl_path: str | Path | None = None,
    tensorboard_dir: str | Path | None = None,
    **sender_settings: Any,
) -> MetricSink:
    """The sink for this rank: a NullSink on every rank but the logging one; there, an HttpSender
    when a server URL is given (`url=` or $LOSSRADAR_URL), plus a JsonlSink / TensorBoardSink
    for the paths given, fanned out by a MultiSink when more than one applies.
    `sender_settings` go to SenderConfig (token, run_key, channels, ...) and are unused when
    there is no server URL, so one call serves jobs with and without a server."""
    if not is_logging_rank:
        return NullSink()
    sinks: list[MetricSink] = []
    if url or os.environ.get("LOSSRADAR_URL"):
        sinks.append(HttpSender(url=url, **sender_settings))
    if jsonl_path is not None:
        sinks.append(JsonlSink(jsonl_path))
    if tensorboard_dir is not None:
        sinks.append(TensorBoardSink(tensorboard_dir))
    if not sinks:
        log.warning(
            "lossradar: no metric destination (set LOSSRADAR_URL, or pass jsonl_path= or "
            "tensorboard_dir=); metrics of this run are not recorded"
        )
        return NullSink()
    return sinks[0] if len(sinks) == 1 else MultiSink(sinks)
