"""End to end through a REAL server process: the trainer's points go in over HTTP, the alert
comes out at a real receiver, pushed by the server's own outbox thread (no test hook)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.server.live import start_live_server

from .receiver import Receiver


def test_a_nan_in_a_channel_reaches_the_bot(tmp_path: Path, receiver: Receiver) -> None:
    public = "http://dash.example"
    with start_live_server(tmp_path, env={"LOSSRADAR_PUBLIC_URL": public}) as live:
        h = live.headers(live.token)
        with httpx.Client(base_url=live.url, headers=h, timeout=10) as api:
            hook = {
                "name": "lark",
                "kind": "lark",
                "config": {"url": receiver.url + "/lark/hook/x", "secret": "lark-secret"},
            }
            assert api.post("/api/v1/notifiers", json=hook).status_code == 201
            run = api.post("/api/v1/runs", json={"key": "live", "channels": [{"name": "fin"}]})
            run_id = run.json()["id"]
            steps = list(range(10))
            values = [2.0] * 9 + ["NaN"]
            body = {
                "series": [{"metric": "loss", "channel": "fin", "steps": steps, "values": values}]
            }
            assert api.post(f"/api/v1/runs/{run_id}/points", json=body).status_code == 200
            deadline = time.monotonic() + 20
            while not receiver.received and time.monotonic() < deadline:
                time.sleep(0.05)
            got = receiver.only()
            assert got.verdict == "ok"
            text = got.body.decode()
            assert "non_finite" in text
            assert f"{public}/#/runs/{run_id}?channel=fin&step=9" in text
            metrics = api.get("/metrics").text
            assert 'lossradar_alert_transitions_total{rule="non_finite",state="firing"} 1.0' in (
                metrics
            )
