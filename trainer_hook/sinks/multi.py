"""Fan one step out to several sinks (e.g. the server and TensorBoard)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from trainer_hook.sinks.protocol import MetricSink

log = logging.getLogger(__name__)


class MultiSink:
    """MetricSink that forwards every call to each of `sinks`; one failing sink spares the rest."""

    def __init__(self, sinks: Sequence[MetricSink]) -> None:
        self.sinks = list(sinks)

    def log_step(
        self,
        step: int,
        run_metrics: Mapping[str, float],
        channel_metrics: Mapping[str, Mapping[str, float]],
        wall_time: float | None = None,
    ) -> None:
        """Forward the step to every sink (with one wall time for all)."""
        wall_time = time.time() if wall_time is None else wall_time
        for sink in self.sinks:
            try:
                sink.log_step(step, run_metrics, channel_metrics, wall_time)
            except Exception:
                log.exception("lossradar: sink %s failed in log_step", type(sink).__name__)

    def flush(self, timeout: float | None = None) -> bool:
        """Flush each sink, sharing `timeout`; True when all succeeded."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for sink in self.sinks:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ok = sink.flush(left) and ok
        return ok

    def close(self, timeout: float | None = None) -> None:
        """Close each sink, sharing `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for sink in self.sinks:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            sink.close(left)
