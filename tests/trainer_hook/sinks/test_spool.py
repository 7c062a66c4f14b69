"""The spool file: order, commit, torn-tail repair, compaction, replay accounting."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from trainer_hook.sinks.spool import COMMITTED, RECORDS, Spool, SpoolLockedError
from trainer_hook.sinks.wire import Record, line_to_record, record_to_line


def rec(step: int, n_channels: int = 2) -> Record:
    channels = {f"c{i}": {"loss": step + i / 10} for i in range(n_channels)}
    return (step, 100.0 + step, {"lm_loss": float(step)}, channels)


def steps(lines: list[bytes]) -> list[int]:
    return [line_to_record(line)[0] for line in lines]


def open_spool(path: Path, compact_bytes: int = 1 << 30) -> Spool:
    spool = Spool(path, fsync_interval_s=0.0, compact_bytes=compact_bytes)
    spool.open()
    return spool


def test_batches_come_back_in_order_and_commit_advances(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append(b"".join(record_to_line(rec(s)) for s in range(10)))
    records, end, points, replayed = spool.read_batch(max_points=9, max_records=100)
    assert steps(records) == [0, 1, 2]  # 3 points per record, 9 at most
    assert (points, replayed) == (9, 0)
    assert steps(spool.read_batch(9, 100)[0])[0] == 0  # not committed: read again
    spool.commit(end)
    records, end, _, _ = spool.read_batch(max_points=1, max_records=100)
    assert steps(records) == [3]  # at least one record even above max_points
    records, end, _, _ = spool.read_batch(max_points=10**6, max_records=4)
    assert steps(records) == [3, 4, 5, 6]
    assert (tmp_path / COMMITTED).read_text() == f"{spool.committed}\n"
    spool.close()


def test_reopen_replays_uncommitted_records_and_counts_them(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append(b"".join(record_to_line(rec(s)) for s in range(4)))
    _, end, _, _ = spool.read_batch(max_points=6, max_records=100)
    spool.commit(end)  # steps 0, 1 acknowledged
    spool.close()
    again = open_spool(tmp_path)
    again.append(record_to_line(rec(4)))
    records, _, points, replayed = again.read_batch(max_points=100, max_records=100)
    assert steps(records) == [2, 3, 4]
    assert (points, replayed) == (9, 6)
    again.close()


def test_torn_last_line_is_cut(tmp_path: Path) -> None:
    line = record_to_line(rec(0))
    (tmp_path / RECORDS).write_bytes(line + line[:10])  # killed mid-write
    spool = open_spool(tmp_path)
    assert spool.written == len(line)
    assert (tmp_path / RECORDS).read_bytes() == line
    spool.append(record_to_line(rec(1)))
    assert steps(spool.read_batch(100, 100)[0]) == [0, 1]
    spool.close()


def test_committed_offset_past_the_end_restarts_at_zero(tmp_path: Path) -> None:
    (tmp_path / RECORDS).write_bytes(record_to_line(rec(5)))
    (tmp_path / COMMITTED).write_text("999999\n")
    spool = open_spool(tmp_path)
    assert spool.committed == 0
    assert steps(spool.read_batch(100, 100)[0]) == [5]
    spool.close()


def test_fully_acknowledged_spool_is_compacted(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, compact_bytes=200)
    spool.append(b"".join(record_to_line(rec(s)) for s in range(5)))
    _, end, _, _ = spool.read_batch(max_points=6, max_records=100)
    spool.commit(end)  # not everything acknowledged: no compaction
    assert (tmp_path / RECORDS).stat().st_size == spool.written > 200
    _, end, _, _ = spool.read_batch(max_points=100, max_records=100)
    spool.commit(end)
    assert (tmp_path / RECORDS).stat().st_size == 0
    assert (spool.written, spool.committed) == (0, 0)
    assert (tmp_path / COMMITTED).read_text() == "0\n"
    spool.append(record_to_line(rec(9)))
    assert steps(spool.read_batch(100, 100)[0]) == [9]
    spool.close()


def test_a_second_process_cannot_own_the_spool(tmp_path: Path) -> None:
    first = open_spool(tmp_path)
    with pytest.raises(SpoolLockedError, match="in use by another process"):
        open_spool(tmp_path)
    first.close()
    open_spool(tmp_path).close()  # released on close


def test_corrupt_line_is_skipped_and_long_lines_are_read_whole(tmp_path: Path) -> None:
    big = rec(2, n_channels=40_000)  # one line of ~1.3 MB, longer than a read chunk
    data = record_to_line(rec(0)) + b"garbage\n" + record_to_line(big)
    (tmp_path / RECORDS).write_bytes(data)
    spool = open_spool(tmp_path)
    records, end, points, _ = spool.read_batch(max_points=10**9, max_records=100)
    assert steps(records) == [0, 2]
    assert points == 3 + 40_001
    assert end == len(data)
    spool.close()


def test_nan_and_infinity_survive_the_spool(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append(record_to_line((1, 0.0, {"a": math.nan, "b": math.inf, "c": -math.inf}, {})))
    (line,) = spool.read_batch(100, 100)[0]
    assert line == b'{"n":3,"s":1,"t":0.0,"r":{"a":"NaN","b":"Infinity","c":"-Infinity"},"c":{}}'
    record = line_to_record(line)
    assert math.isnan(record[2]["a"])
    assert record[2]["b"] == math.inf
    assert record[2]["c"] == -math.inf
    spool.close()


def test_lines_of_an_older_version_are_replayed_in_the_wire_form(tmp_path: Path) -> None:
    old = b'{"s":4,"t":1.5,"r":{"a":NaN},"c":{"x":{"m":2.0,"k":-Infinity}}}\n'
    (tmp_path / RECORDS).write_bytes(old + record_to_line(rec(5)))
    spool = open_spool(tmp_path)
    lines, _, points, replayed = spool.read_batch(100, 100)
    assert lines[0] == b'{"n":3,"s":4,"t":1.5,"r":{"a":"NaN"},"c":{"x":{"m":2.0,"k":"-Infinity"}}}'
    assert lines[1] == record_to_line(rec(5))[:-1]
    assert (points, replayed) == (6, 6)
    spool.close()
