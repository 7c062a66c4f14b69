"""/metrics: ingest counters and latency, per-channel gauges of active runs only; probes."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

Auth = Callable[..., dict[str, str]]


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_ingest_counters_and_gauges_of_active_runs_only(client: TestClient, auth: Auth) -> None:
    h = auth("read", "write")
    ids = {}
    for key in ("active", "finished"):
        ids[key] = client.post("/api/v1/runs", json={"key": key}, headers=h).json()["id"]
        series = [
            {"metric": m, "channel": c, "steps": [1, 2], "values": [v, v + 1]}
            for m, v in (("loss", 2.0), ("weight", 0.5), ("token_share", 0.25), ("tokens", 9.0))
            for c in ("fin", "gen")
        ] + [{"metric": "lm_loss", "channel": None, "steps": [2], "values": [1.0]}]
        client.post(f"/api/v1/runs/{ids[key]}/points", json={"series": series}, headers=h)
    client.patch(f"/api/v1/runs/{ids['finished']}", json={"status": "finished"}, headers=h)
    client.post(f"/api/v1/runs/{ids['active']}/points", json={"series": [1]}, headers=h)

    got = samples(client)
    assert got[("lossradar_ingest_requests_total", (("outcome", "ok"),))] == 2.0
    assert got[("lossradar_ingest_requests_total", (("outcome", "invalid"),))] == 1.0
    assert got[("lossradar_ingest_points_total", ())] == 34.0
    assert got[("lossradar_ingest_duration_seconds_count", ())] == 2.0
    run = ids["active"]
    gauges = {k: v for k, v in got.items() if k[0].startswith("lossradar_channel_")}
    assert gauges == {
        (name, (("channel", c), ("run_id", str(run)), ("run_key", "active"))): value
        for name, value in (
            ("lossradar_channel_loss", 3.0),
            ("lossradar_channel_weight", 1.5),
            ("lossradar_channel_token_share", 1.25),
        )
        for c in ("fin", "gen")
    }
    # a run with no points within the active window drops out too
    client.app.state.settings.active_run_window_s = 0.0  # type: ignore[attr-defined]
    assert not any(k[0].startswith("lossradar_channel_") for k in samples(client))


def test_readyz_is_503_when_the_database_does_not_answer(client: TestClient) -> None:
    assert client.get("/readyz").json() == {"status": "ok"}
    dead = create_engine("sqlite:////proc/no-such-dir/lossradar.db")
    client.app.state.sessionmaker = sessionmaker(bind=dead)  # type: ignore[attr-defined]
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json() == {"status": "unavailable", "error": "OperationalError"}
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/metrics").status_code == 200  # gauges skipped, counters still served
