"""Base of the file sinks: log_step appends to a deque, a daemon thread does the writing."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping

from trainer_hook.sinks.wire import Record

log = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[BackgroundSink] = weakref.WeakSet()


class BackgroundSink:
    """Defers `_write(records)` to a lazily started daemon thread; fork-safe (a forked child's
    copy goes inert), flushed and closed at exit, never raises into the caller.

    Memory is bounded by `max_queue_steps`: beyond it, log_step writes synchronously.
    """

    interval_s = 0.2

    def __init__(self, *, max_queue_steps: int = 10_000) -> None:
        if max_queue_steps < 1:
            raise ValueError(f"max_queue_steps must be >= 1, got {max_queue_steps}")
        self._max_queue = max_queue_steps
        self._queue: deque[Record] = deque()
        self._lock = threading.Lock()  # serialises _write between the thread and a full queue
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = "new"
        self._busy = False
        _LIVE.add(self)
        atexit.register(self.close)

    def _write(self, records: list[Record]) -> None:
        """Write records to the destination (thread side)."""
        raise NotImplementedError

    def _flush_io(self) -> None:
        """Push buffered output to the destination."""

    def _close_io(self) -> None:
        """Release the destination."""

    def log_step(
        self,
        step: int,
        run_metrics: Mapping[str, float],
        channel_metrics: Mapping[str, Mapping[str, float]],
        wall_time: float | None = None,
    ) -> None:
        """Queue one step (copies the dicts). Never raises."""
        try:
            if self._state != "running":
                if self._state != "new":
                    return
                self._thread = threading.Thread(
                    target=self._loop, name=f"lossradar-{type(self).__name__}", daemon=True
                )
                self._thread.start()
                self._state = "running"
            record = (
                step,
                time.time() if wall_time is None else wall_time,
                dict(run_metrics),
                {c: dict(m) for c, m in channel_metrics.items()},
            )
            self._queue.append(record)
            if len(self._queue) > self._max_queue:
                self._drain()
        except Exception:
            log.exception("lossradar %s: log_step failed", type(self).__name__)

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything queued and flush the destination; False on timeout or error."""
        if self._state != "running":
            return self._state in ("new", "closed")
        if not self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            return False
        try:
            self._drain_locked()
            self._flush_io()
            return not self._queue
        except Exception:
            log.exception("lossradar %s: flush failed", type(self).__name__)
            return False
        finally:
            self._lock.release()

    def close(self, timeout: float | None = None) -> None:
        """Flush, stop the thread and release the destination."""
        atexit.unregister(self.close)
        if self._state != "running":
            if self._state == "new":
                self._state = "closed"
            return
        self.flush(timeout)
        self._state = "closed"
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        try:
            with self._lock:
                self._drain_locked()
                self._close_io()
        except Exception:
            log.exception("lossradar %s: close failed", type(self).__name__)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        try:
            with self._lock:
                self._drain_locked()
        except Exception:
            log.exception("lossradar %s: write failed", type(self).__name__)

    def _drain_locked(self) -> None:
        records = []
        while self._queue:
            records.append(self._queue.popleft())
        if records:
            self._write(records)

    def _after_fork_in_child(self) -> None:
        self._queue = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        if self._state == "running":
            self._state = "inert"


def _after_fork_in_child() -> None:
    for sink in list(_LIVE):
        sink._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
