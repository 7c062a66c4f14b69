"""Reading series back: filters, incremental polling, min/max downsampling, latest values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.series.chunks import CHUNK_STEPS

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def h(auth: Auth) -> dict[str, str]:
    return auth("read", "write")


@pytest.fixture
def run_id(client: TestClient, h: dict[str, str]) -> int:
    run = client.post("/api/v1/runs", json={"key": "r"}, headers=h).json()
    series = [
        {
            "metric": "loss",
            "channel": "fin",
            "steps": list(range(10)),
            "values": [float(s) for s in range(10)],
            "wall_times": [1000.0 + s for s in range(10)],
        },
        {"metric": "loss", "channel": "gen", "steps": [0, 5], "values": [7.0, 8.0]},
        {"metric": "weight", "channel": "fin", "steps": [9], "values": [1.5]},
        {"metric": "lm_loss", "channel": None, "steps": [0, 9], "values": [3.0, "NaN"]},
    ]
    assert (
        client.post(
            f"/api/v1/runs/{run['id']}/points", json={"series": series}, headers=h
        ).status_code
        == 200
    )
    return int(run["id"])


def get(client: TestClient, run_id: int, h: dict[str, str], **params: Any) -> dict[str, Any]:
    resp = client.get(f"/api/v1/runs/{run_id}/series", params=params, headers=h)
    assert resp.status_code == 200, resp.text
    return resp.json()


def names(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(s["metric"], s["channel"]) for s in body["series"]]


def test_all_series_sorted_by_metric_then_channel(
    client: TestClient, run_id: int, h: dict[str, str]
) -> None:
    body = get(client, run_id, h)
    assert body["run_id"] == run_id
    assert body["last_step"] == 9
    assert names(body) == [("lm_loss", None), ("loss", "fin"), ("loss", "gen"), ("weight", "fin")]


def test_metric_and_channel_filters(client: TestClient, run_id: int, h: dict[str, str]) -> None:
    assert names(get(client, run_id, h, metric="loss")) == [("loss", "fin"), ("loss", "gen")]
    assert names(get(client, run_id, h, metric=["loss", "weight"], channel="fin")) == [
        ("loss", "fin"),
        ("weight", "fin"),
    ]
    run_level = get(client, run_id, h, channel="")
    assert names(run_level) == [("lm_loss", None)]
    assert run_level["series"][0]["values"] == [3.0, "NaN"]
    assert get(client, run_id, h, metric="nope")["series"] == []


def test_step_ranges_and_incremental_polling(
    client: TestClient, run_id: int, h: dict[str, str]
) -> None:
    s = get(client, run_id, h, metric="loss", channel="fin", start_step=3, end_step=6)["series"][0]
    assert s["steps"] == [3, 4, 5, 6]
    assert s["values"] == [3.0, 4.0, 5.0, 6.0]
    assert s["wall_times"] == [1003.0, 1004.0, 1005.0, 1006.0]
    polled = get(client, run_id, h, metric="loss", channel="fin", after_step=7)["series"][0]
    assert polled["steps"] == [8, 9]
    empty = get(client, run_id, h, metric="loss", after_step=9)["series"]
    assert [x["steps"] for x in empty] == [[], []]
    assert get(client, run_id, h, start_step=5, end_step=4)["series"][0]["steps"] == []
    resp = client.get(f"/api/v1/runs/{run_id}/series", params={"max_points": 1}, headers=h)
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["query", "max_points"]


def test_latest_values_per_channel(client: TestClient, run_id: int, h: dict[str, str]) -> None:
    latest = client.get(f"/api/v1/runs/{run_id}/latest", headers=h).json()
    assert latest == {
        "step": 9,
        "run": {"lm_loss": {"step": 9, "value": "NaN"}},
        "channels": {
            "fin": {"loss": {"step": 9, "value": 9.0}, "weight": {"step": 9, "value": 1.5}},
            "gen": {"loss": {"step": 5, "value": 8.0}},
        },
    }


def ingest_long(client: TestClient, h: dict[str, str], n: int, spikes: dict[int, Any]) -> int:
    run_id = int(client.post("/api/v1/runs", json={"key": f"long-{n}"}, headers=h).json()["id"])
    values: list[Any] = [2.0 - 1e-6 * s for s in range(n)]
    for step, v in spikes.items():
        values[step] = v
    resp = client.post(
        f"/api/v1/runs/{run_id}/points",
        json={
            "series": [
                {
                    "metric": "loss",
                    "channel": "fin",
                    "steps": list(range(n)),
                    "values": values,
                    "wall_times": [float(s) for s in range(n)],
                }
            ]
        },
        headers=h,
    )
    assert resp.status_code == 200
    return run_id


def test_downsampling_from_fine_block_summaries_keeps_the_spike_and_the_nan(
    client: TestClient, h: dict[str, str]
) -> None:
    # 3,000 points, 100 points -> 50 buckets: more than the 12 chunks, fewer than the 188
    # 16-step blocks, so each bucket is 3-4 whole blocks (tests/server/test_fine_summaries.py)
    run_id = ingest_long(client, h, 3000, {1234: 50.0, 2500: "NaN", 10: -3.0})
    s = get(client, run_id, h, max_points=100)["series"][0]
    assert s["downsampled"] is True
    assert len(s["steps"]) == 100
    assert s["steps"] == sorted(s["steps"])
    got = dict(zip(s["steps"], s["values"], strict=True))
    assert got[1234] == 50.0
    assert got[2500] == "NaN"
    assert got[10] == -3.0
    # bucket 0 (steps 0-63): min is the -3.0 dip, max is step 0; last bucket keeps step 2999
    assert s["steps"][:2] == [0, 10]
    assert got[2999] == 2.0 - 1e-6 * 2999
    assert s["wall_times"][s["steps"].index(1234)] == 1234.0
    small = get(client, run_id, h, max_points=3000)["series"][0]
    assert small["downsampled"] is False
    assert len(small["steps"]) == 3000


def test_downsampling_from_chunk_summaries_keeps_the_spike(
    client: TestClient, h: dict[str, str]
) -> None:
    # 40 chunks of 256 steps; max_points=20 -> 10 buckets of 4 whole chunks each
    n = 40 * CHUNK_STEPS
    run_id = ingest_long(client, h, n, {5000: 9.0, 7777: "Infinity", 300: -1.0})
    s = get(client, run_id, h, max_points=20)["series"][0]
    assert s["downsampled"] is True
    got = dict(zip(s["steps"], s["values"], strict=True))
    assert got[5000] == 9.0
    assert got[7777] == "Infinity"
    assert got[300] == -1.0
    # each bucket of 4 chunks keeps its max (first step, values fall) and min (last step)
    bucket = 4 * CHUNK_STEPS
    expected_steps = set()
    for b in range(10):
        lo, hi = b * bucket, (b + 1) * bucket - 1
        expected_steps |= {lo, hi}
    expected_steps -= {0, 4 * CHUNK_STEPS - 1}  # bucket 0: min is the -1.0 at 300
    expected_steps |= {0, 300}
    expected_steps -= {4 * bucket, 5 * bucket - 1}  # bucket 4 holds 5000 (max); min still last
    expected_steps |= {5000, 5 * bucket - 1}
    expected_steps -= {7 * bucket}  # bucket 7 holds 7777 = +Inf (max)
    expected_steps |= {7777}
    assert set(s["steps"]) == expected_steps
    assert s["wall_times"] == [float(x) for x in s["steps"]]
    # a window cutting chunks at both ends decodes the edge chunks
    window = get(client, run_id, h, max_points=20, start_step=100, end_step=9000)["series"][0]
    assert window["downsampled"] is True
    assert min(window["steps"]) >= 100
    assert max(window["steps"]) <= 9000
    wgot = dict(zip(window["steps"], window["values"], strict=True))
    assert wgot[300] == -1.0
    assert wgot[5000] == 9.0
    assert wgot[7777] == "Infinity"
    assert 100 in wgot  # the max of the first, partial chunk
