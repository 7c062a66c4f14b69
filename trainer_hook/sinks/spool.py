"""The sender's local append-only spool: every logged step is written here before it is sent.

Layout of one run's spool directory (default `~/.cache/lossradar/spool/<run key>/`):

- `records.jsonl`: one JSON line per logged step (see `wire.py`), appended in log order;
- `committed`: the byte offset of the first record the server has not yet acknowledged,
  replaced atomically (write to a temporary file, then `os.replace`);
- `rejected.jsonl`: records the server refused as invalid (4xx), kept for inspection;
- `lock`: `flock`-ed by the process that owns the spool.

Durability: each batch of records is `write()`n and flushed to the kernel at once, so it survives
a SIGKILL of the training process; it is `fsync`ed at most every `fsync_interval_s` seconds and on
`flush()`/`close()`, so a machine crash loses at most that interval. The committed offset is not
fsynced: a stale offset only re-sends records, and the server's last-write-wins on
(run, metric, channel, step) makes the re-send harmless.

Recovery on open: a torn last line (killed mid-write) is cut off; a committed offset beyond the
end (killed during compaction) restarts at 0. Records between the committed offset and the end
were logged by an earlier process of the same run: they are replayed first, in order.

Compaction: once every record is acknowledged and the file exceeds `compact_bytes`, it is
truncated to zero and the offset reset, so a weeks-long run keeps a small file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from pathlib import Path

from trainer_hook.sinks.gil import yield_gil
from trainer_hook.sinks.wire import LINE_ERRORS, line_points

log = logging.getLogger(__name__)

RECORDS = "records.jsonl"
COMMITTED = "committed"
REJECTED = "rejected.jsonl"
LOCK = "lock"


class SpoolLockedError(RuntimeError):
    """Another live process owns this spool directory."""


class Spool:
    """Append-only record file with a committed read offset. One writer thread appends; one
    sender thread reads and commits; `lock` guards the file position against compaction."""

    def __init__(self, directory: Path, *, fsync_interval_s: float, compact_bytes: int) -> None:
        self.directory = directory
        self.fsync_interval_s = fsync_interval_s
        self.compact_bytes = compact_bytes
        self.lock = threading.Lock()
        self.written = 0  # bytes of complete records in the file
        self.committed = 0  # offset of the first unacknowledged record
        self.replay_end = 0  # records before this offset came from an earlier process
        self.generation = 0  # +1 on each compaction (offsets restart at 0)
        self._last_fsync = time.monotonic()
        self._lock_fd = -1
        self._fd = -1
        self._reader: int = -1

    def open(self) -> None:
        """Take the directory's lock, repair a torn tail and read the committed offset."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise SpoolLockedError(f"spool {self.directory} is in use by another process") from exc
        path = self.directory / RECORDS
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._reader = os.open(path, os.O_RDONLY)
        self.written = _repair_torn_tail(self._fd)
        self.committed = self._read_committed()
        if self.committed > self.written:
            self.committed = 0
        self.replay_end = self.written
        if self.written > self.committed:
            log.info(
                "lossradar spool %s: replaying %d bytes left by an earlier process",
                self.directory,
                self.written - self.committed,
            )

    def append(self, data: bytes) -> tuple[int, int]:
        """Append complete lines; return (generation, offset where they start). On failure
        (e.g. ENOSPC) the file is cut back to its last complete record and the OSError
        propagates; nothing half-written stays."""
        with self.lock:
            start = self.written
            try:
                view = memoryview(data)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
            except OSError:
                try:
                    os.ftruncate(self._fd, self.written)
                except OSError:
                    log.exception("lossradar spool: could not cut back a failed write")
                raise
            self.written += len(data)
            if time.monotonic() - self._last_fsync >= self.fsync_interval_s:
                self._fsync_locked()
            return self.generation, start

    def read_batch(self, max_points: int, max_records: int) -> tuple[list[bytes], int, int, int]:
        """Read records from the committed offset: up to `max_points` points (at least one record)
        and `max_records` records. Returns (lines as they go on the wire, end offset, points,
        replayed points). Corrupt lines are skipped with an error log."""
        with self.lock:
            start, end = self.committed, self.written
        lines: list[bytes] = []
        points = replayed = 0
        offset = start
        chunk_size = 1 << 20
        while offset < end and len(lines) < max_records:
            chunk = os.pread(self._reader, min(end - offset, chunk_size), offset)
            pos = 0
            while len(lines) < max_records:
                nl = chunk.find(b"\n", pos)
                if nl < 0:
                    break
                try:
                    line, n = line_points(chunk[pos:nl])
                except LINE_ERRORS:
                    log.error("lossradar spool: skipping a corrupt line at offset %d", offset + pos)
                    pos = nl + 1
                    continue
                if lines and points + n > max_points:
                    return lines, offset + pos, points, replayed
                lines.append(line)
                points += n
                if offset + pos < self.replay_end:
                    replayed += n
                pos = nl + 1
                if len(lines) % 16 == 0:
                    yield_gil()  # let the training thread take the GIL
            if pos == 0:  # a line longer than the chunk (complete lines end at `end`)
                chunk_size *= 2
                continue
            offset += pos
        return lines, offset, points, replayed

    def commit(self, offset: int) -> None:
        """Mark everything before `offset` acknowledged; compact when all is acknowledged."""
        with self.lock:
            self.committed = offset
            if offset >= self.written and self.written >= self.compact_bytes:
                os.ftruncate(self._fd, 0)
                self.written = self.committed = self.replay_end = 0
                self.generation += 1
                offset = 0
        self._write_committed(offset)

    def reject(self, data: bytes) -> None:
        """Keep records the server refused as invalid in `rejected.jsonl`."""
        with open(self.directory / REJECTED, "ab") as f:
            f.write(data)

    def pending_bytes(self) -> int:
        """Bytes written but not yet acknowledged."""
        return self.written - self.committed

    def fsync(self) -> None:
        """Force written records to stable storage."""
        with self.lock:
            self._fsync_locked()

    def close(self) -> None:
        """fsync, close the files and release the directory lock."""
        if self._fd >= 0:
            try:
                self.fsync()
            except OSError:
                log.exception("lossradar spool: fsync on close failed")
            os.close(self._fd)
            os.close(self._reader)
            self._fd = self._reader = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = -1

    def _fsync_locked(self) -> None:
        os.fsync(self._fd)
        self._last_fsync = time.monotonic()

    def _read_committed(self) -> int:
        try:
            text = (self.directory / COMMITTED).read_text().strip()
            return int(text) if text else 0
        except FileNotFoundError:
            return 0
        except ValueError:
            log.error("lossradar spool: bad committed offset in %s; replaying all", self.directory)
            return 0

    def _write_committed(self, offset: int) -> None:
        tmp = self.directory / f"{COMMITTED}.tmp"
        tmp.write_text(f"{offset}\n")
        os.replace(tmp, self.directory / COMMITTED)


def _repair_torn_tail(fd: int) -> int:
    """Cut a last line without its newline (the process died mid-write); return the new size."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            good = start + nl + 1
            if good != size:
                log.warning("lossradar spool: cutting a torn record of %d bytes", size - good)
                os.ftruncate(fd, good)
            return good
        end = start
    if size:
        os.ftruncate(fd, 0)
    return 0
