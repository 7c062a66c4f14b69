"""The HTTP sender's own counters. Each field has exactly one writing thread, so no lock."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(kw_only=True, slots=True)
class SenderCounters:
    """Points (one metric of one channel at one step) by what happened to them."""

    queued: int = 0
    """Taken by log_step; counted when the writer takes the step from the in-memory queue (the
    writer thread, or log_step when spilling; both hold the writer's lock), so it trails
    log_step by at most `drain_interval_s`, and is exact after `flush()`."""
    spooled: int = 0
    """Written to the spool file (writer thread, or log_step when spilling; both hold the
    writer's lock)."""
    spilled: int = 0
    """Of `spooled`, written by log_step itself because the in-memory queue was full."""
    sent: int = 0
    """Acknowledged by the server, replayed ones included (sender thread)."""
    replayed: int = 0
    """Acknowledged points that an earlier process of the run had spooled (sender thread)."""
    rejected: int = 0
    """Refused by the server as invalid (4xx); kept in rejected.jsonl (sender thread)."""
    invalid: int = 0
    """Not convertible to float, never spooled (writer thread); see the error log."""
    dropped: int = 0
    """Lost: the queue was full and the spool could not be written (disk full)."""
    failed_requests: int = 0
    """POSTs that got no answer or a retryable error (each followed by a backoff)."""

    def as_dict(self) -> dict[str, int]:
        """A snapshot of all counters."""
        return asdict(self)
