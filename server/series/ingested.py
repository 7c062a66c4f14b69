"""What ingest listeners (the alert engine) receive: the points of one series just written.

Listeners live in ``app.state.ingest_listeners`` and are called, inside the ingest transaction
after the points are written and before the commit, as::

    listener(session=session, run=run, series=[IngestedSeries(...), ...])

``run`` is the `server.db.models.Run` (``last_step`` already updated; its ``channels`` are
loaded when first read). A listener that raises rolls the whole batch back (the client gets a
500 and retries), so its own writes commit atomically with the points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.series.chunks import FloatArray, IntArray


@dataclass(kw_only=True, slots=True)
class IngestedSeries:
    """Points of one series in one batch, sorted by step, one per step (the last one sent)."""

    metric: str
    """Metric name, e.g. ``loss`` or ``lm_loss``."""
    channel: str | None
    """Channel name; ``None`` for run-level metrics."""
    steps: IntArray
    """int64 numpy array of steps, ascending."""
    values: FloatArray
    """float64 numpy array; NaN and +-Inf as sent."""
    wall_times: FloatArray
    """float64 numpy array of UNIX times in seconds."""


IngestListener = Callable[..., Any]
"""``listener(*, session, run, series: list[IngestedSeries]) -> None``."""
