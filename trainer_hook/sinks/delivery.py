"""The sender thread of the HTTP sender: registers the run, POSTs spooled steps in batches,
commits what the server accepted, and decides what each failure means.

| answer | action |
|---|---|
| 2xx | count, commit the spool offset, next batch at once |
| no answer (refused, reset, timeout), 5xx, 408/409/425/429, 401/403 | retry after a backoff |
| 404 | register the run again, then retry |
| 413 | halve the batch size |
| other 4xx | resend the batch one step per request; a step refused alone goes to rejected.jsonl |

A batch is the steps' spool lines, joined and gzipped (`wire.records_body`): this thread never
decodes or encodes a point. The run is registered once; channels first seen in points are added
to the run by the server.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import dataclass

from trainer_hook.sinks.backoff import Backoff
from trainer_hook.sinks.config import SenderConfig
from trainer_hook.sinks.counters import SenderCounters
from trainer_hook.sinks.ratelimit import RateLimitedLog
from trainer_hook.sinks.spool import Spool
from trainer_hook.sinks.transport import HttpTransport, TransportError
from trainer_hook.sinks.wire import LINE_ERRORS, line_to_record, records_body

log = logging.getLogger(__name__)

RETRYABLE_4XX = {408, 409, 425, 429}
Fresh = deque[tuple[int, int, int, bytes, int]]
"""The writer's hand-off of just-spooled steps: (spool generation, start offset, end offset,
line without its newline, points). The writer only appends, the sender only pops."""

FRESH_MAX_STEPS = 64
"""The hand-off keeps at most this many steps; the rest are read back from the spool (when the
sender is behind: an outage, a backlog). It saves the sender a read of what was just written."""


@dataclass(slots=True)
class Batch:
    """One POST: its steps' lines, gzipped body, spool end offset and point counts."""

    lines: list[bytes]
    body: bytes
    end: int
    points: int
    replayed: int


class Delivery:
    """Everything the sender thread does; `run()` is its body."""

    def __init__(
        self,
        *,
        config: SenderConfig,
        transport: HttpTransport,
        counters: SenderCounters,
        spool: Spool,
        fresh: Fresh,
        stop: threading.Event,
        wake: threading.Event,
    ) -> None:
        self.config, self.transport, self.counters = config, transport, counters
        self.spool, self.fresh, self.stop, self.wake = spool, fresh, stop, wake
        self.run_id: int | None = None
        self.backoff = Backoff(base_s=config.backoff_base_s, max_s=config.backoff_max_s)
        self.batch: Batch | None = None
        self.one_by_one_until = -1  # spool offset up to which steps go one per request
        self.max_points = config.batch_max_points
        self.warn_net = RateLimitedLog(log, logging.WARNING)
        self.warn_auth = RateLimitedLog(log, logging.ERROR, 10.0)

    def run(self) -> None:
        """Send until `stop` is set; never raises."""
        while not self.stop.is_set():
            try:
                delay = self.send_once()
            except Exception:
                log.exception("lossradar sender: sender error")
                delay = self.backoff.next_delay()
            if delay > 0:
                self.wake.wait(delay)
                self.wake.clear()

    def send_once(self) -> float:
        """Register if needed, build or reuse a batch, POST it; return the delay before the
        next call."""
        spool = self.spool
        if self.batch is None:
            self.batch = self._next_batch()
            if self.batch is None:
                return self.config.send_interval_s
        batch = self.batch
        if self.run_id is None and not self._register():
            return self.backoff.next_delay()
        try:
            resp = self.transport.post(
                f"/api/v1/runs/{self.run_id}/points", batch.body, gzipped=True
            )
        except TransportError as exc:
            self.counters.failed_requests += 1
            self.warn_net("lossradar sender: server unreachable (%s); spooling and retrying", exc)
            return self.backoff.next_delay()
        status = resp.status
        if 200 <= status < 300:
            self.counters.sent += batch.points  # before the commit that flush() waits for
            self.counters.replayed += batch.replayed
            self._done(batch)
            self.backoff.reset()
            return 0.0
        if status == 404:  # the run is gone or unknown: register again
            self.run_id = None
            self.counters.failed_requests += 1
            return self.backoff.next_delay()
        if status == 413 and len(batch.lines) > 1:
            self.max_points = max(1, batch.points // 2)
            self.batch = None
            return 0.0
        if 400 <= status < 500 and status not in RETRYABLE_4XX | {401, 403}:
            if len(batch.lines) > 1:  # find the bad step: resend this range one by one
                self.one_by_one_until = batch.end
                self.batch = None
                return 0.0
            spool.reject(batch.lines[0] + b"\n")
            self.counters.rejected += batch.points
            self._done(batch)
            log.error(
                "lossradar sender: the server refused step %s (HTTP %d: %s); kept in %s",
                _step_of(batch.lines[0]),
                status,
                resp.body,
                spool.directory / "rejected.jsonl",
            )
            return 0.0
        self.counters.failed_requests += 1
        warn = self.warn_auth if status in (401, 403) else self.warn_net
        warn(
            "lossradar sender: server answered HTTP %d (%s); spooling and retrying",
            status,
            resp.body,
        )
        return self.backoff.next_delay()

    def _done(self, batch: Batch) -> None:
        self.spool.commit(batch.end)
        if batch.end >= self.one_by_one_until:
            self.one_by_one_until = -1
        self.batch = None

    def _next_batch(self) -> Batch | None:
        """The next steps to send: from the writer's hand-off when it continues the committed
        offset, else (replay, backlog) from the spool file."""
        spool = self.spool
        max_steps = 1 if spool.committed < self.one_by_one_until else self.config.batch_max_steps
        lines, end, points = self._take_fresh(max_steps)
        replayed = 0
        if not lines:
            lines, end, points, replayed = spool.read_batch(self.max_points, max_steps)
        if not lines:
            if end > spool.committed:  # only corrupt lines (logged): step over them
                spool.commit(end)
            return None
        return Batch(lines, records_body(lines), end, points, replayed)

    def _take_fresh(self, max_steps: int) -> tuple[list[bytes], int, int]:
        """Steps from the hand-off that start exactly at the committed offset:
        (lines, end offset, points); none when the hand-off does not continue it."""
        fresh, generation, end = self.fresh, self.spool.generation, self.spool.committed
        lines: list[bytes] = []
        points = 0
        while fresh and len(lines) < max_steps:
            gen, start, stop, line, n = fresh[0]
            if gen != generation or stop <= end:
                fresh.popleft()  # already sent (read from the file) or before a compaction
                continue
            if start != end or (lines and points + n > self.max_points):
                break
            fresh.popleft()
            lines.append(line)
            points += n
            end = stop
        return lines, end, points

    def _register(self) -> bool:
        """Create or get the run by key (POST /api/v1/runs) with the configured channels."""
        cfg = self.config
        body = {
            "key": cfg.run_key,
            "name": cfg.run_name or cfg.run_key,
            "project": cfg.project,
            "tags": list(cfg.tags),
            "config": dict(cfg.run_config),
            "channels": cfg.channel_entries(),
        }
        try:
            resp = self.transport.post("/api/v1/runs", json.dumps(body).encode(), gzipped=False)
        except TransportError as exc:
            self.counters.failed_requests += 1
            self.warn_net("lossradar sender: cannot register the run yet (%s); spooling", exc)
            return False
        if resp.status in (200, 201) and isinstance(resp.body, dict) and "id" in resp.body:
            self.run_id = int(resp.body["id"])
            return True
        self.counters.failed_requests += 1
        self.warn_auth(
            "lossradar sender: run registration answered HTTP %d (%s); spooling and retrying",
            resp.status,
            resp.body,
        )
        return False


def _step_of(line: bytes) -> object:
    """The step of a spool line, for a log message (the line itself when it does not parse)."""
    try:
        return line_to_record(line)[0]
    except LINE_ERRORS:
        return line[:80]
