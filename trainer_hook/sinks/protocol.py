"""The interface every metric sink implements, and the record it carries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

RunMetrics = Mapping[str, float]
ChannelMetrics = Mapping[str, Mapping[str, float]]


@runtime_checkable
class MetricSink(Protocol):
    """Where the logging rank sends a step's reduced metrics (docs/architecture.md).

    `log_step` takes plain Python numbers already on the host, costs microseconds and never
    raises. `flush(timeout)` returns True when everything logged so far reached its destination.
    """

    def log_step(
        self,
        step: int,
        run_metrics: RunMetrics,
        channel_metrics: ChannelMetrics,
        wall_time: float | None = None,
    ) -> None: ...

    def flush(self, timeout: float | None = None) -> bool: ...

    def close(self, timeout: float | None = None) -> None: ...


def count_points(run_metrics: RunMetrics, channel_metrics: ChannelMetrics) -> int:
    """Number of (metric, channel) points in one step."""
    return len(run_metrics) + sum(len(m) for m in channel_metrics.values())
