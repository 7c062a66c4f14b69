"""The HTTP sender: log_step appends to a deque; background threads spool, batch, gzip and POST.

Threads (started by the first log_step, so a process may fork before logging):

- the *writer* moves queued steps into the spool file every `drain_interval_s`;
- the *sender* (`delivery.py`) registers the run, then reads the spool from its committed
  offset, POSTs batches of up to `batch_max_points` points gzipped, and commits the offset when
  the server accepts.

Every step goes through the spool (write-ahead), so a server outage, a slow server, a crash or a
SIGKILL of the training process loses nothing the writer has seen (at most `drain_interval_s` of
steps in memory are at risk on SIGKILL); the next start with the same run key replays the spool in
order before new data. Retries back off exponentially with jitter. The training thread never
waits for the network or the disk: `log_step` only copies the step's dicts into a deque. Only
when the queue holds `max_queue_steps` unwritten steps (the disk stalls) does `log_step` write to
the spool itself; only if that fails too (disk full) is the step dropped and logged loudly.
"""

from __future__ import annotations

import _thread
import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any, cast

from trainer_hook.sinks.config import SenderConfig
from trainer_hook.sinks.counters import SenderCounters
from trainer_hook.sinks.delivery import FRESH_MAX_STEPS, Delivery, Fresh
from trainer_hook.sinks.gil import yield_gil
from trainer_hook.sinks.ratelimit import RateLimitedLog
from trainer_hook.sinks.spool import Spool, SpoolLockedError
from trainer_hook.sinks.transport import HttpTransport
from trainer_hook.sinks.wire import Record, record_points, record_to_line

log = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[HttpSender] = weakref.WeakSet()


class HttpSender:
    """MetricSink that delivers every logged point to a lossradar server exactly once."""

    def __init__(self, config: SenderConfig | None = None, **settings: Any) -> None:
        if config is None:
            config = SenderConfig(**settings)
        elif settings:
            raise TypeError("pass either a SenderConfig or keyword settings, not both")
        self.config = config
        assert config.url is not None
        self._transport = HttpTransport(config.url, config.token, config.timeout_s)
        self.counters = SenderCounters()
        self._reset_state()
        self._warn_disk = RateLimitedLog(log, logging.ERROR, 10.0)
        self._warn_drop = RateLimitedLog(log, logging.ERROR, 10.0)
        _LIVE.add(self)
        atexit.register(self._at_exit)

    def _reset_state(self) -> None:
        self._state = "new"  # new -> running -> closed; "inert" in a forked child; "failed"
        self._queue: deque[Record] = deque()
        self._max_queue = self.config.max_queue_steps
        self._unwritten: list[Record] = []
        # steps the writer just spooled, handed to the sender so it need not re-read them
        self._fresh: Fresh = deque()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_writer = threading.Event()
        self._wake_sender = threading.Event()
        self._threads: list[threading.Thread] = []
        self._spool: Spool | None = None
        self._delivery: Delivery | None = None
        self._warned_state = False

    # ---- the training thread --------------------------------------------------------------

    def log_step(
        self,
        step: int,
        run_metrics: Mapping[str, float],
        channel_metrics: Mapping[str, Mapping[str, float]],
        wall_time: float | None = None,
    ) -> None:
        """Queue one step's points (plain floats). Microseconds; never raises, never blocks."""
        try:
            if self._state != "running" and not self._start():
                return
            # copy: the caller may reuse its dicts (dict.copy is the fast path for plain dicts)
            # the outer dict is cloned whole, then its values replaced (no dict grown key by key)
            channels = cast("dict[str, dict[str, float]]", dict(channel_metrics))
            for name, m in channels.items():
                channels[name] = m.copy() if type(m) is dict else dict(m)
            run: dict[str, float] = (
                run_metrics.copy() if type(run_metrics) is dict else dict(run_metrics)
            )
            when = time.time() if wall_time is None else wall_time
            record = (step, when, run, channels)
            # points are counted (`queued`) by the writer: each touch of the 17 dicts or of a
            # counter shared with the other threads costs the training thread microseconds
            if len(self._queue) < self._max_queue:
                self._queue.append(record)
            else:
                self._spill(record)
        except Exception:
            log.exception("lossradar sender: log_step failed (training continues)")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every step logged so far (and any replay) is acknowledged by the server,
        at most `timeout` seconds (None: forever). False on timeout: the rest is in the spool."""
        try:
            if self._state != "running":
                if self._state == "failed":
                    self._drop_queued()
                return self._state == "new"
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._spool is None:  # the writer thread is opening it
                if self._state == "failed":
                    self._drop_queued()
                if self._state != "running" or not _sleep_until(deadline, 0.002):
                    return False
            self._wake_writer.set()
            while not self._all_spooled():
                if not _sleep_until(deadline, 0.002):
                    break
                self._wake_writer.set()
            spool = self._spool
            spool.fsync()
            self._wake_sender.set()
            while not self._all_spooled() or spool.pending_bytes() > 0:
                if not _sleep_until(deadline, 0.005):
                    return False
            return True
        except Exception:
            log.exception("lossradar sender: flush failed")
            return False

    def close(self, timeout: float | None = None) -> None:
        """Flush for up to `timeout` seconds (default `exit_timeout_s`), stop the threads and close
        the spool. What the server has not acknowledged stays spooled for the next start."""
        try:
            atexit.unregister(self._at_exit)
            if self._state != "running":
                if self._state == "new":
                    self._state = "closed"
                if self._state == "failed":
                    self._drop_queued()
                return
            ok = self.flush(self.config.exit_timeout_s if timeout is None else timeout)
            self._state = "closed"
            self._stop.set()
            self._wake_writer.set()
            self._wake_sender.set()
            # the writer has drained (flush); the sender only reads the spool and replaces the
            # committed offset atomically, so it may be left mid-request as a daemon thread
            for thread, limit in zip(list(self._threads), (5.0, 1.0), strict=False):
                if thread.is_alive():  # a sender thread not started yet sees _stop and ends
                    thread.join(timeout=limit)
            spool = self._spool
            if spool is not None:
                if not ok:
                    log.warning(
                        "lossradar sender: closing with %d bytes not yet acknowledged; they stay "
                        "in %s and are sent by the next start of run %r",
                        spool.pending_bytes(),
                        spool.directory,
                        self.config.run_key,
                    )
                if not any(t.is_alive() for t in self._threads):
                    spool.close()
            self._transport.close()
        except Exception:
            log.exception("lossradar sender: close failed")

    def _all_spooled(self) -> bool:
        """True when no logged step waits in memory (checked under the writer's lock, so a
        step being moved from the queue to the spool is not missed)."""
        with self._write_lock:
            return not self._queue and not self._unwritten

    @property
    def run_id(self) -> int | None:
        """The server's id of the run, once registered."""
        return None if self._delivery is None else self._delivery.run_id

    def _at_exit(self) -> None:
        self.close()

    def _start(self) -> bool:
        """Start the writer thread on first use (in this process); it opens the spool and
        starts the sender thread.

        `Thread.start()` waits until the new thread runs, 0.4-3 ms on a busy machine: a
        throwaway low-level thread (`_thread.start_new_thread` returns at once) does that wait,
        so the first log_step costs the training thread no more than the others.
        """
        if self._state != "new":
            if not self._warned_state:
                self._warned_state = True
                log.warning("lossradar sender: log_step on a %s sender is ignored", self._state)
            return False
        self._state = "running"
        writer = threading.Thread(target=self._writer_main, name="lossradar-writer", daemon=True)
        self._threads = [writer]
        _thread.start_new_thread(self._start_writer, (writer,))
        return True

    def _start_writer(self, writer: threading.Thread) -> None:
        try:
            writer.start()
        except Exception:  # no thread can be started: nothing will ever drain the queue
            log.exception("lossradar sender: cannot start the writer thread; logging is off")
            self._state = "failed"
            self._drop_queued()

    def _writer_main(self) -> None:
        spool = self._open_spool()
        if spool is None:
            self._state = "failed"
            self._drop_queued()
            return
        self._delivery = Delivery(
            config=self.config,
            transport=self._transport,
            counters=self.counters,
            spool=spool,
            fresh=self._fresh,
            stop=self._stop,
            wake=self._wake_sender,
        )
        sender = threading.Thread(target=self._delivery.run, name="lossradar-sender", daemon=True)
        self._threads.append(sender)  # before _spool is set: close() waits for _spool
        self._spool = spool
        sender.start()
        self._writer_loop()

    def _drop_queued(self) -> None:
        """Count and forget what is queued when there is no spool to write it to."""
        lost = 0
        while self._queue:
            try:
                lost += record_points(self._queue.popleft())
            except IndexError:
                break
        if lost:
            self.counters.queued += lost
            self.counters.dropped += lost
            log.error("lossradar sender: DROPPED %d points: the spool could not be opened", lost)

    def _open_spool(self) -> Spool | None:
        """The run's spool, or a private one when another process owns it; None on failure."""
        cfg = self.config
        directory = cfg.run_spool_dir
        try:
            try:
                spool = Spool(
                    directory,
                    fsync_interval_s=cfg.fsync_interval_s,
                    compact_bytes=cfg.compact_bytes,
                )
                spool.open()
            except SpoolLockedError:
                log.error(
                    "lossradar sender: run key %r is already logging from another live process; "
                    "give each job its own LOSSRADAR_RUN_KEY. Spooling to a private directory.",
                    cfg.run_key,
                )
                spool = Spool(
                    directory / f"pid-{os.getpid()}",
                    fsync_interval_s=cfg.fsync_interval_s,
                    compact_bytes=cfg.compact_bytes,
                )
                spool.open()
        except Exception:
            log.exception("lossradar sender: cannot open the spool in %s", directory)
            return None
        return spool

    def _spill(self, record: Record) -> None:
        """The queue is full: write it and `record` to the spool from this thread, in order."""
        if self._spool is None:  # still opening: keep it in memory
            self._queue.append(record)
            return
        with self._write_lock:
            spooled_before = self.counters.spooled
            if self._write_unwritten(extra=record, pause=False):
                self.counters.spilled += self.counters.spooled - spooled_before
                return
            self._unwritten.pop()  # `record` (counted as queued): dropped
        n = record_points(record)
        self.counters.dropped += n
        self._warn_drop(
            "lossradar sender: DROPPED %d points of step %s (%d dropped in all): the queue is "
            "full and the spool %s cannot be written (disk full?)",
            n,
            record[0],
            self.counters.dropped,
            self._spool.directory,
        )

    # ---- the writer thread ---------------------------------------------------------------

    def _writer_loop(self) -> None:
        while True:
            self._wake_writer.wait(self.config.drain_interval_s)
            self._wake_writer.clear()
            stopping = self._stop.is_set()
            try:
                with self._write_lock:
                    self._write_unwritten()
            except Exception:
                log.exception("lossradar sender: writer error")
            if stopping:
                return

    def _write_unwritten(self, extra: Record | None = None, *, pause: bool = True) -> bool:
        """Move queued steps (and `extra`) to the spool; caller holds `_write_lock`. Returns
        False if the spool write failed (the steps stay in memory for the next try). `pause`:
        leave the GIL to the training thread before each step (the writer thread does; the
        training thread itself, spilling a full queue, does not)."""
        queue, unwritten, limit = self._queue, self._unwritten, self.config.max_queue_steps
        taken = len(unwritten)
        while queue and len(unwritten) < limit:
            unwritten.append(queue.popleft())
        if extra is not None:
            unwritten.append(extra)
        if not unwritten:
            return True
        lines: list[bytes] = []
        counts: list[int] = []
        for i, record in enumerate(unwritten):
            if pause:
                yield_gil()
            n = record_points(record)
            # `queued` counts a step once, when it leaves the queue (a failed write keeps it in
            # `unwritten` for the next try, already counted)
            if i >= taken:
                self.counters.queued += n
            try:
                line = record_to_line(record, n)
            except (TypeError, ValueError):
                self.counters.invalid += n
                log.error("lossradar sender: step %r has a non-numeric value; skipped", record[0])
                continue
            lines.append(line)
            counts.append(n)
        assert self._spool is not None
        try:
            generation, offset = self._spool.append(b"".join(lines))
        except OSError as exc:
            self._warn_disk(
                "lossradar sender: cannot write the spool %s (%s); %d steps wait in memory",
                self._spool.directory,
                exc,
                len(unwritten) + len(queue),
            )
            return False
        unwritten.clear()
        self.counters.spooled += sum(counts)
        fresh = self._fresh
        for line, n in zip(lines, counts, strict=True):
            if len(fresh) >= FRESH_MAX_STEPS:
                break
            end = offset + len(line)
            fresh.append((generation, offset, end, line[:-1], n))
            offset = end
        return True

    # ---- fork ------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """A forked child never touches the parent's spool or threads: a sender that had started
        goes inert; one that had not is reset so the child may start its own."""
        if self._state == "new":
            self._reset_state()
        else:
            state = self._state
            self._reset_state()
            self._state = "inert" if state == "running" else state


def _sleep_until(deadline: float | None, step: float) -> bool:
    """Sleep `step` seconds unless past `deadline`; False when the deadline has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        return False
    time.sleep(step)
    return True


def _after_fork_in_child() -> None:
    for sender in list(_LIVE):
        sender._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
