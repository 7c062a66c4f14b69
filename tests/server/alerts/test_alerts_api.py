"""The engine inside the server: ingest -> alerts -> outbox -> a real receiver; REST and metrics.

Runs on SQLite and on PostgreSQL (``LOSSRADAR_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from .receiver import Receiver

Auth = Callable[..., dict[str, str]]


def _run(client: TestClient, h: dict[str, str], project: str = "dcpt") -> int:
    body = {
        "key": "job-alerts",
        "name": "fin 1:1",
        "project": project,
        "channels": [
            {"name": "finance", "target_share": 0.5},
            {"name": "general", "target_share": 0.5},
        ],
    }
    response = client.post("/api/v1/runs", json=body, headers=h)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _points(steps: range, finance: Callable[[int], float | str]) -> dict[str, Any]:
    s = list(steps)
    return {
        "series": [
            {"metric": "loss", "channel": "finance", "steps": s, "values": [finance(i) for i in s]},
            {"metric": "loss", "channel": "general", "steps": s, "values": [3.0] * len(s)},
            {"metric": "tokens", "channel": "finance", "steps": s, "values": [500] * len(s)},
            {"metric": "tokens", "channel": "general", "steps": s, "values": [500] * len(s)},
            {"metric": "lm_loss", "channel": None, "steps": s, "values": [3.0] * len(s)},
        ]
    }


def _post(client: TestClient, run_id: int, body: dict[str, Any], h: dict[str, str]) -> None:
    response = client.post(f"/api/v1/runs/{run_id}/points", json=body, headers=h)
    assert response.status_code == 200, response.text


def _alerts(client: TestClient, h: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    response = client.get("/api/v1/alerts", params=query, headers=h)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["count"] == len(doc["data"])
    return list(doc["data"])


def test_nan_fires_notifies_once_survives_replay_and_resolves(
    app: FastAPI, client: TestClient, auth: Auth, receiver: Receiver
) -> None:
    w, r = auth("write"), auth("read")
    run_id = _run(client, w)
    hook = {
        "name": "ops",
        "kind": "webhook",
        "config": {"url": receiver.url + "/webhook/x", "secret": "hook-secret"},
    }
    created = client.post("/api/v1/notifiers", json=hook, headers=w)
    assert created.status_code == 201, created.text
    assert created.json()["config"] == {"url": f"{receiver.url}/********", "secret": "********"}

    def finance(i: int) -> float | str:
        return "NaN" if i == 25 else 2.0

    _post(client, run_id, _points(range(30), finance), w)
    # the step after the NaN is finite again: resolve_steps=1 resolves it at step 26
    assert _alerts(client, r, run_id=run_id, state="firing") == []
    [resolved] = _alerts(client, r, run_id=run_id, state="resolved")
    assert (resolved["channel"], resolved["rule"]) == ("finance", "non_finite")
    assert (resolved["start_step"], resolved["last_step"]) == (25, 29)
    assert resolved["value"] == 2.0
    assert resolved["silenced"] is False
    events = client.get(f"/api/v1/alerts/{resolved['id']}/events", headers=r).json()["data"]
    assert [(e["kind"], e["step"], e["notified"]) for e in events] == [
        ("pending", 25, False),
        ("firing", 25, True),
        ("resolved", 26, True),
    ]
    assert app.state.alert_dispatcher.run_once() == 1  # both events, grouped in one message
    got = receiver.only()
    assert got.verdict == "ok"
    doc = got.json()
    assert [
        (a["event"], a["channel"], a["rule"], a["value"], a["start_step"]) for a in doc["alerts"]
    ] == [
        ("firing", "finance", "non_finite", "NaN", 25),
        ("resolved", "finance", "non_finite", 2.0, 25),
    ]
    assert doc["alerts"][0]["url"] == (
        f"http://127.0.0.1:8765/#/runs/{run_id}?channel=finance&step=25"
    )
    # replaying (a resumed trainer) the same steps: nothing is judged twice, nothing re-sent
    _post(client, run_id, _points(range(20, 30), finance), w)
    again = client.get(f"/api/v1/alerts/{resolved['id']}/events", headers=r).json()["data"]
    assert len(again) == 3
    assert app.state.alert_dispatcher.run_once() == 0
    # delivery log, and the Prometheus counter of the app's own registry
    log = client.get(f"/api/v1/notifiers/{created.json()['id']}/deliveries", headers=r).json()
    assert [(d["attempt"], d["ok"], d["status_code"]) for d in log] == [(1, True, 204)]
    metrics = client.get("/metrics").text
    assert 'lossradar_alert_transitions_total{rule="non_finite",state="firing"} 1.0' in metrics
    assert 'lossradar_alerts{rule="non_finite",state="resolved"} 1.0' in metrics


def test_failed_delivery_is_retried_from_the_outbox(
    app: FastAPI, client: TestClient, auth: Auth, receiver: Receiver
) -> None:
    w = auth("write")
    run_id = _run(client, w)
    client.post(
        "/api/v1/notifiers",
        json={
            "name": "wecom",
            "kind": "wecom",
            "config": {"url": receiver.url + "/wecom/send?key=k"},
        },
        headers=w,
    )
    receiver.fail_next.append((503, b"busy", {}))
    _post(client, run_id, _points(range(3), lambda i: "Infinity" if i == 2 else 2.0), w)
    dispatcher = app.state.alert_dispatcher
    assert dispatcher.run_once() == 0  # 503: retried later
    assert dispatcher.run_once() == 0  # not due yet (backoff)
    import time

    assert dispatcher.run_once(now=time.time() + 3) == 1
    assert [x.verdict for x in receiver.received] == ["canned 503", "ok"]
    assert (
        "Infinity" in receiver.received[1].json()["markdown"]["content"]
        or "inf" in (receiver.received[1].json()["markdown"]["content"])
    )


def test_silence_ack_and_overrides(client: TestClient, auth: Auth) -> None:
    w, r = auth("write"), auth("read")
    run_id = _run(client, w)
    _post(client, run_id, _points(range(3), lambda i: "NaN"), w)
    [alert] = _alerts(client, r, run_id=run_id, rule="non_finite", channel="finance")
    silenced = client.post(
        f"/api/v1/alerts/{alert['id']}/silence", json={"duration_s": 60}, headers=w
    ).json()
    assert silenced["silenced"] is True
    acked = client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=w).json()
    assert acked["acknowledged"] is True
    kinds = [
        e["kind"]
        for e in client.get(f"/api/v1/alerts/{alert['id']}/events", headers=r).json()["data"]
    ]
    assert kinds == ["pending", "firing", "silenced", "acknowledged"]
    assert client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=r).status_code == 403

    bad = client.put(
        "/api/v1/alert-rules/overrides",
        json={"run_id": run_id, "rule": "spike", "params": {"zz": 3}},
        headers=w,
    )
    assert bad.status_code == 422
    assert "unknown threshold 'zz'" in bad.json()["detail"]
    ok = client.put(
        "/api/v1/alert-rules/overrides",
        json={"run_id": run_id, "channel": "finance", "rule": "spike", "params": {"z": 9}},
        headers=w,
    )
    assert ok.status_code == 200, ok.text
    eff = client.get(
        "/api/v1/alert-rules/effective", params={"run_id": run_id, "channel": "finance"}, headers=r
    ).json()
    assert eff["spike"]["z"] == 9.0
    other = client.get(
        "/api/v1/alert-rules/effective", params={"run_id": run_id, "channel": "general"}, headers=r
    ).json()
    assert other["spike"]["z"] == 8.0
    assert (
        client.delete(f"/api/v1/alert-rules/overrides/{ok.json()['id']}", headers=w).status_code
        == 204
    )


def test_notifier_crud_test_send_and_secrets(
    client: TestClient, auth: Auth, receiver: Receiver
) -> None:
    w, r = auth("write"), auth("read")
    body = {
        "name": "ding",
        "kind": "dingtalk",
        "config": {
            "url": receiver.url + "/dingtalk/send?access_token=TOKEN",
            "secret": "SECdingtalk",
        },
    }
    assert (
        client.post("/api/v1/notifiers", json={**body, "kind": "nope"}, headers=w).status_code
        == 422
    )
    created = client.post("/api/v1/notifiers", json=body, headers=w).json()
    listed = client.get("/api/v1/notifiers", headers=r).text
    assert "TOKEN" not in listed
    assert "SECdingtalk" not in listed
    sent = client.post(f"/api/v1/notifiers/{created['id']}/test", headers=w).json()
    assert sent["ok"] is True
    assert len(sent["attempts"]) == 1
    assert receiver.only().verdict == "ok"
    patched = client.patch(
        f"/api/v1/notifiers/{created['id']}", json={"config": {"secret": "wrong"}}, headers=w
    )
    assert patched.status_code == 200
    failed = client.post(f"/api/v1/notifiers/{created['id']}/test", headers=w).json()
    assert failed["ok"] is False
    assert failed["attempts"][0]["detail"].startswith("errcode 310000")
    assert client.post("/api/v1/notifiers", json=body, headers=w).status_code == 409
    assert client.delete(f"/api/v1/notifiers/{created['id']}", headers=w).status_code == 204
