"""Wire encoding of batches and the retry delays."""

from __future__ import annotations

import gzip
import json
import math
import random

import pytest

from trainer_hook.sinks.backoff import Backoff
from trainer_hook.sinks.wire import build_points_body, gzip_json, gzip_points_body, wire_value


def test_points_body_groups_series_and_last_write_wins() -> None:
    records = [
        (1, 10.0, {"lm_loss": 2.0}, {"fin": {"loss": 3.0}}),
        (2, 20.0, {"lm_loss": math.nan}, {"fin": {"loss": math.inf}, "gen": {"loss": 1.0}}),
        (1, 30.0, {"lm_loss": 2.5}, {}),  # step 1 logged again after a resume
    ]
    body = build_points_body(records)
    assert body == {
        "series": [
            {
                "metric": "lm_loss",
                "channel": None,
                "steps": [1, 2],
                "values": [2.5, "NaN"],
                "wall_times": [30.0, 20.0],
            },
            {
                "metric": "loss",
                "channel": "fin",
                "steps": [1, 2],
                "values": [3.0, "Infinity"],
                "wall_times": [10.0, 20.0],
            },
            {
                "metric": "loss",
                "channel": "gen",
                "steps": [2],
                "values": [1.0],
                "wall_times": [20.0],
            },
        ]
    }
    assert json.loads(gzip.decompress(gzip_json(body))) == body
    assert gzip_points_body(body, pause=lambda: None) == gzip_json(body)


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
