"""Wire encoding of batches and the retry delays."""

from __future__ import annotations

import gzip
import json
import math
import random

import pytest

from trainer_hook.sinks.backoff import Backoff
from trainer_hook.sinks.wire import (
    line_points,
    line_to_record,
    record_to_line,
    records_body,
    wire_value,
)


def test_record_line_is_strict_json_with_its_point_count_first() -> None:
    record = (2, 20.0, {"lm_loss": math.nan}, {"fin": {"loss": math.inf, "tokens": 3.0}})
    line = record_to_line(record)
    assert line == (
        b'{"n":3,"s":2,"t":20.0,"r":{"lm_loss":"NaN"},"c":{"fin":{"loss":"Infinity","tokens":3.0}}}\n'
    )
    assert line_points(line) == (line[:-1], 3)
    got = line_to_record(line)
    assert got[:2] == (2, 20.0)
    assert math.isnan(got[2]["lm_loss"])
    assert got[3] == {"fin": {"loss": math.inf, "tokens": 3.0}}


@pytest.mark.parametrize(
    "value", ["abc", None, [1.0], {"x": 1.0}], ids=["str", "none", "list", "dict"]
)
def test_a_value_that_is_not_a_number_is_refused(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        record_to_line((1, 1.0, {"x": value}, {}))  # type: ignore[dict-item]
    with pytest.raises((TypeError, ValueError)):
        record_to_line((1, 1.0, {}, {"c": {"x": value}}))  # type: ignore[dict-item]


def test_numbers_of_other_types_and_value_like_names_are_converted() -> None:
    np = pytest.importorskip("numpy")
    record = (np.int64(3), 2, {"x": np.float32(0.5), "ok": True, 'a:"b': 1}, {":null": {"m": 2}})
    assert record_to_line(record) == (  # type: ignore[arg-type]
        b'{"n":4,"s":3,"t":2.0,"r":{"x":0.5,"ok":1.0,"a:\\"b":1.0},"c":{":null":{"m":2.0}}}\n'
    )


def test_old_spool_lines_are_re_encoded_for_the_wire() -> None:
    old = b'{"s":1,"t":1.0,"r":{"a":NaN},"c":{"x":{"m":-Infinity}}}\n'
    assert line_points(old) == (
        b'{"n":2,"s":1,"t":1.0,"r":{"a":"NaN"},"c":{"x":{"m":"-Infinity"}}}',
        2,
    )
    with pytest.raises(ValueError, match="Expecting value"):
        line_points(b"garbage\n")


def test_records_body_is_the_lines_joined_and_gzipped() -> None:
    lines = [record_to_line((s, 1.0, {"a": float(s)}, {}))[:-1] for s in range(3)]
    body = json.loads(gzip.decompress(records_body(lines)))
    assert body == {
        "records": [{"n": 1, "s": s, "t": 1.0, "r": {"a": float(s)}, "c": {}} for s in range(3)]
    }


def test_wire_value() -> None:
    assert wire_value(-math.inf) == "-Infinity"
    assert wire_value(0.25) == 0.25


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets() -> None:
    b = Backoff(base_s=1.0, max_s=8.0, rng=random.Random(0))
    delays = [b.next_delay() for _ in range(6)]
    caps = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, caps, strict=True))
    assert len(set(delays)) == 6  # jittered
    b.reset()
    assert 0.5 <= b.next_delay() <= 1.0
    with pytest.raises(ValueError, match="base_s <= max_s"):
        Backoff(base_s=2.0, max_s=1.0)
