"""Batch ingest: idempotent, last write wins, all-or-nothing, NaN/Inf, gzip, 413, 422."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.settings import Settings

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def w(auth: Auth) -> dict[str, str]:
    return auth("read", "write")


@pytest.fixture
def run_id(client: TestClient, w: dict[str, str]) -> int:
    resp = client.post("/api/v1/runs", json={"key": "r", "channels": [{"name": "fin"}]}, headers=w)
    return int(resp.json()["id"])


def post(client: TestClient, run_id: int, series: list[dict[str, Any]], headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/runs/{run_id}/points", json={"series": series}, headers=headers)


def read(client: TestClient, run_id: int, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    resp = client.get(f"/api/v1/runs/{run_id}/series", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return {(s["metric"], s["channel"]): s for s in resp.json()["series"]}


def test_ingest_then_read_back_exactly(client: TestClient, run_id: int, w: dict[str, str]) -> None:
    resp = post(
        client,
        run_id,
        [
            {
                "metric": "loss",
                "channel": "fin",
                "steps": [10, 11, 12],
                "values": [2.5, 2.25, 2.0],
                "wall_times": [100.0, 101.0, 102.5],
            },
            {
                "metric": "lm_loss",
                "channel": None,
                "steps": [10, 11, 12],
                "values": [3, 2, 1],
                "wall_times": [100.0, 101.0, 102.5],
            },
        ],
        w,
    )
    assert resp.status_code == 200
    assert resp.json() == {"accepted": 6, "last_step": 12}
    series = read(client, run_id, w)
    assert series[("loss", "fin")] == {
        "metric": "loss",
        "channel": "fin",
        "steps": [10, 11, 12],
        "values": [2.5, 2.25, 2.0],
        "wall_times": [100.0, 101.0, 102.5],
        "downsampled": False,
    }
    assert series[("lm_loss", None)]["values"] == [3.0, 2.0, 1.0]


def test_nan_and_inf_are_stored_and_returned_faithfully(
    client: TestClient, run_id: int, w: dict[str, str]
) -> None:
    values = ["NaN", "Infinity", "-Infinity", 1e308, -0.0, 5e-324]
    post(
        client,
        run_id,
        [{"metric": "loss", "channel": "fin", "steps": list(range(6)), "values": values}],
        w,
    )
    got = read(client, run_id, w)[("loss", "fin")]["values"]
    assert got == ["NaN", "Infinity", "-Infinity", 1e308, -0.0, 5e-324]
    latest = client.get(f"/api/v1/runs/{run_id}/latest", headers=w).json()
    assert latest == {
        "step": 5,
        "run": {},
        "channels": {"fin": {"loss": {"step": 5, "value": 5e-324}}},
    }


def test_retry_is_idempotent_and_last_write_wins(
    client: TestClient, run_id: int, w: dict[str, str]
) -> None:
    batch = [
        {
            "metric": "loss",
            "channel": "fin",
            "steps": [1, 2, 3],
            "values": [1.0, 2.0, 3.0],
            "wall_times": [1.0, 2.0, 3.0],
        }
    ]
    assert post(client, run_id, batch, w).json() == {"accepted": 3, "last_step": 3}
    assert post(client, run_id, batch, w).json() == {"accepted": 3, "last_step": 3}
    s = read(client, run_id, w)[("loss", "fin")]
    assert (s["steps"], s["values"]) == ([1, 2, 3], [1.0, 2.0, 3.0])
    # an overlapping later batch overwrites steps 2-3 and adds 4; within a batch the later
    # of two points at one step wins
    post(
        client,
        run_id,
        [
            {
                "metric": "loss",
                "channel": "fin",
                "steps": [3, 2, 4, 3],
                "values": [30.0, 20.0, 40.0, 31.0],
                "wall_times": [9, 9, 9, 9],
            }
        ],
        w,
    )
    s = read(client, run_id, w)[("loss", "fin")]
    assert s["steps"] == [1, 2, 3, 4]
    assert s["values"] == [1.0, 20.0, 31.0, 40.0]
    assert s["wall_times"] == [1.0, 9.0, 9.0, 9.0]
    # an older step arriving late does not move last_step back
    assert (
        post(
            client, run_id, [{"metric": "lr", "channel": None, "steps": [0], "values": [0.1]}], w
        ).json()["last_step"]
        == 4
    )


def test_points_across_many_chunks_merge_in_order(
    client: TestClient, run_id: int, w: dict[str, str]
) -> None:
    # odd steps first, then even steps, spanning several 256-step chunks
    odd = list(range(1, 1200, 2))
    even = list(range(0, 1200, 2))
    post(
        client,
        run_id,
        [{"metric": "loss", "channel": "fin", "steps": odd, "values": [float(s) for s in odd]}],
        w,
    )
    post(
        client,
        run_id,
        [{"metric": "loss", "channel": "fin", "steps": even, "values": [float(s) for s in even]}],
        w,
    )
    s = read(client, run_id, w)[("loss", "fin")]
    assert s["steps"] == list(range(1200))
    assert s["values"] == [float(i) for i in range(1200)]


def test_a_bad_series_rejects_the_whole_batch(
    client: TestClient, run_id: int, w: dict[str, str]
) -> None:
    resp = post(
        client,
        run_id,
        [
            {"metric": "loss", "channel": "fin", "steps": [1, 2], "values": [1.0, 2.0]},
            {"metric": "tokens", "channel": "fin", "steps": [1, 2], "values": [1.0, "lots"]},
        ],
        w,
    )
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "series", 1, "values", 1]
    assert "'lots'" in resp.json()["detail"][0]["msg"]
    assert read(client, run_id, w) == {}
    assert client.get(f"/api/v1/runs/{run_id}", headers=w).json()["last_step"] is None


def test_a_failing_listener_rolls_back_the_batch(
    client: TestClient, run_id: int, w: dict[str, str]
) -> None:
    def crash(**_: Any) -> None:
        raise RuntimeError("listener crashed mid-request")

    client.app.state.ingest_listeners.append(crash)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="mid-request"):
        post(
            client, run_id, [{"metric": "loss", "channel": "fin", "steps": [1], "values": [1.0]}], w
        )
    client.app.state.ingest_listeners.clear()  # type: ignore[attr-defined]
    assert read(client, run_id, w) == {}
    assert client.get(f"/api/v1/runs/{run_id}", headers=w).json()["last_step"] is None


@pytest.mark.parametrize(
    ("series", "loc", "msg"),
    [
        ({"channel": "a", "steps": [1], "values": [1]}, ["metric"], "non-empty string"),
        ({"metric": "", "steps": [1], "values": [1]}, ["metric"], "non-empty string"),
        ({"metric": "m", "channel": 3, "steps": [1], "values": [1]}, ["channel"], "or null"),
        ({"metric": "m", "steps": [1, 2.5], "values": [1, 2]}, ["steps", 1], "integer step"),
        ({"metric": "m", "steps": [1, True], "values": [1, 2]}, ["steps", 1], "integer step"),
        ({"metric": "m", "steps": [-1], "values": [1]}, ["steps", 0], "outside"),
        ({"metric": "m", "steps": "1", "values": [1]}, ["steps"], "list of integers"),
        (
            {"metric": "m", "steps": [1, 2], "values": [1]},
            ["values"],
            "has 1 items but steps has 2",
        ),
        ({"metric": "m", "steps": [1], "values": [None]}, ["values", 0], "got None"),
        ({"metric": "m", "steps": [1], "values": ["nan"]}, ["values", 0], "got 'nan'"),
        (
            {"metric": "m", "steps": [1], "values": [1], "wall_times": ["x"]},
            ["wall_times", 0],
            "UNIX time",
        ),
        (
            {"metric": "m", "steps": [1], "values": [1], "wall_times": [1, 2]},
            ["wall_times"],
            "has 2 items",
        ),
        ({"metric": "m", "steps": [1], "values": [1], "extra": 1}, ["extra"], "unknown field"),
    ],
)
def test_malformed_series_are_422_naming_the_field(
    client: TestClient,
    run_id: int,
    w: dict[str, str],
    series: dict[str, Any],
    loc: list[Any],
    msg: str,
) -> None:
    resp = post(client, run_id, [series], w)
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"][0]
    assert detail["loc"] == ["body", "series", 0, *loc]
    assert msg in detail["msg"]


def test_malformed_bodies(client: TestClient, run_id: int, w: dict[str, str]) -> None:
    url = f"/api/v1/runs/{run_id}/points"
    resp = client.post(url, content=b"{not json", headers=w)
    assert resp.status_code == 422
    assert "not valid JSON" in resp.json()["detail"][0]["msg"]
    resp = client.post(url, json=[1, 2], headers=w)
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "series"]
    twice = {"metric": "m", "channel": None, "steps": [1], "values": [1]}
    resp = client.post(url, json={"series": [twice, twice]}, headers=w)
    assert resp.status_code == 422
    assert "appears twice" in resp.text
    resp = client.post(url, content=b"x", headers={**w, "Content-Encoding": "br"})
    assert resp.status_code == 415
    resp = client.post(url, content=b"not gzip", headers={**w, "Content-Encoding": "gzip"})
    assert resp.status_code == 400
    assert "invalid gzip" in resp.text


def test_gzip_bodies_are_accepted(client: TestClient, run_id: int, w: dict[str, str]) -> None:
    body = json.dumps(
        {"series": [{"metric": "loss", "channel": "fin", "steps": [5], "values": ["NaN"]}]}
    ).encode()
    resp = client.post(
        f"/api/v1/runs/{run_id}/points",
        content=gzip.compress(body),
        headers={**w, "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert resp.json() == {"accepted": 1, "last_step": 5}
    assert read(client, run_id, w)[("loss", "fin")]["values"] == ["NaN"]


def test_oversized_bodies_are_413_before_and_after_gzip(
    client: TestClient, run_id: int, w: dict[str, str]
) -> None:
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    settings.max_body_bytes = 4096
    url = f"/api/v1/runs/{run_id}/points"
    big = json.dumps(
        {"series": [{"metric": "m", "steps": list(range(2000)), "values": [0] * 2000}]}
    ).encode()
    assert len(big) > 4096
    resp = client.post(url, content=big, headers=w)
    assert resp.status_code == 413
    assert "LOSSRADAR_MAX_BODY_BYTES=4096" in resp.text
    # a zip bomb: small on the wire, far over the limit once inflated
    bomb = gzip.compress(b'{"series": [' + b" " * 1_000_000 + b"]}")
    assert len(bomb) < 4096
    resp = client.post(url, content=bomb, headers={**w, "Content-Encoding": "gzip"})
    assert resp.status_code == 413
    assert "after gzip decompression" in resp.text
    assert read(client, run_id, w) == {}
    metrics = client.get("/metrics").text
    assert 'lossradar_ingest_requests_total{outcome="too_large"} 2.0' in metrics
