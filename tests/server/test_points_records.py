"""The records form of a points batch (one object per step, as the trainer hook's sender
writes it): grouped into series exactly, checked point counts, errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.test_points_api import read, run_id, w

__all__ = ["run_id", "w"]  # fixtures shared with the series form's tests


def post(client: TestClient, run_id: int, body: dict[str, Any], w: dict[str, str]) -> Any:
    return client.post(f"/api/v1/runs/{run_id}/points", json=body, headers=w)


def test_records_are_stored_as_series_exactly(
    client: TestClient, run_id: int, w: dict[str, str]
) -> None:
    records = [
        {
            "n": 3,
            "s": 5,
            "t": 100.5,
            "r": {"lm_loss": 2.5},
            "c": {"fin": {"loss": "NaN", "tok": 7}},
        },
        {"s": 6, "t": 101.0, "r": {"lm_loss": "Infinity"}, "c": {"gen": {"loss": 1.25}}},
        {"n": 1, "s": 5, "t": 102.0, "r": {"lm_loss": 2.0}},  # step 5 again: the later wins
    ]
    resp = post(client, run_id, {"records": records}, w)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 6, "last_step": 6}
    series = read(client, run_id, w)
    assert series[("lm_loss", None)]["steps"] == [5, 6]
    assert series[("lm_loss", None)]["values"] == [2.0, "Infinity"]
    assert series[("lm_loss", None)]["wall_times"] == [102.0, 101.0]
    assert series[("loss", "fin")]["values"] == ["NaN"]
    assert series[("tok", "fin")]["values"] == [7.0]
    assert series[("loss", "gen")]["values"] == [1.25]
    channels = client.get(f"/api/v1/runs/{run_id}", headers=w).json()["channels"]
    assert [c["name"] for c in channels] == ["fin", "gen"]  # gen added by its first points


def test_records_and_series_in_one_body_merge_records_last(
    client: TestClient, run_id: int, w: dict[str, str]
) -> None:
    body = {
        "series": [{"metric": "m", "channel": None, "steps": [1, 2], "values": [1.0, 2.0]}],
        "records": [{"s": 2, "t": 9.0, "r": {"m": 20.0}}, {"s": 3, "t": 9.0, "r": {"m": 30.0}}],
    }
    assert post(client, run_id, body, w).status_code == 200
    assert read(client, run_id, w)[("m", None)]["values"] == [1.0, 20.0, 30.0]


def test_missing_wall_time_is_the_time_received(
    client: TestClient, run_id: int, w: dict[str, str]
) -> None:
    assert post(client, run_id, {"records": [{"s": 1, "r": {"m": 1.0}}]}, w).status_code == 200
    (wall,) = read(client, run_id, w)[("m", None)]["wall_times"]
    assert wall > 1.7e9


@pytest.mark.parametrize(
    ("record", "loc", "msg"),
    [
        ([1], [], "must be an object"),
        ({"r": {}}, ["s"], "must be an integer step, got None"),
        ({"s": 1.5}, ["s"], "must be an integer step"),
        ({"s": -1}, ["s"], "outside [0, 9007199254740992)"),
        ({"s": 1, "t": "now"}, ["t"], "UNIX time"),
        ({"s": 1, "x": 1}, ["x"], "unknown field"),
        ({"s": 1, "r": [1.0]}, ["r"], "must be an object {metric: value}"),
        ({"s": 1, "r": {"m": "abc"}}, ["r", "m"], "must be a number"),
        ({"s": 1, "r": {"m": True}}, ["r", "m"], "must be a number"),
        ({"s": 1, "r": {"": 1.0}}, ["r", ""], "metric names are 1 to 255 characters"),
        ({"s": 1, "c": []}, ["c"], "must be an object {channel: {metric: value}}"),
        ({"s": 1, "c": {"fin": 1.0}}, ["c", "fin"], "must be an object {metric: value}"),
        ({"s": 1, "c": {"fin": {"m": None}}}, ["c", "fin", "m"], "must be a number"),
        ({"s": 1, "c": {"x" * 256: {"m": 1}}}, ["c", "x" * 256], "channel names are"),
        ({"n": 3, "s": 1, "r": {"m": 1.0}}, ["n"], "says 3 points, the record has 1"),
    ],
)
def test_malformed_records_are_422_naming_the_field(
    client: TestClient,
    run_id: int,
    w: dict[str, str],
    record: Any,
    loc: list[Any],
    msg: str,
) -> None:
    good = {"s": 0, "r": {"m": 1.0}}
    resp = post(client, run_id, {"records": [good, record]}, w)
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"][0]
    assert detail["loc"] == ["body", "records", 1, *loc]
    assert msg in detail["msg"]
    assert read(client, run_id, w) == {}  # all or nothing


def test_records_must_be_a_list(client: TestClient, run_id: int, w: dict[str, str]) -> None:
    resp = post(client, run_id, {"records": {"s": 1}}, w)
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "records"]
