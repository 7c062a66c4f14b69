"""The sink of ranks that do not log: it does nothing, fast."""

from __future__ import annotations

from collections.abc import Mapping


class NullSink:
    """MetricSink that discards everything (non-logging ranks, or no destination configured)."""

    def log_step(
        self,
        step: int,
        run_metrics: Mapping[str, float],
        channel_metrics: Mapping[str, Mapping[str, float]],
        wall_time: float | None = None,
    ) -> None:
        """Discard the step."""

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing to flush."""
        return True

    def close(self, timeout: float | None = None) -> None:
        """Nothing to close."""
