"""Two server replicas on one database: alerts are neither lost nor duplicated, and the outbox
is delivered exactly once even when both replicas' senders run at the same moment."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from server.app import create_app
from server.db.engine import make_engine
from server.db.migrate import upgrade
from server.settings import Settings
from server.tokens import create_token
from tests.server.conftest import postgres_url

from .receiver import Receiver


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'replicas.db'}"
        return
    base = postgres_url()
    schema = f"lralerts_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_two_replicas_judge_once_and_send_once(database_url: str, receiver: Receiver) -> None:
    upgrade(database_url)
    apps = [create_app(Settings(database_url=database_url)) for _ in range(2)]
    for app in apps:
        app.state.alert_outbox_thread = False
    with apps[0].state.sessionmaker() as session:
        _, token = create_token(session=session, name="t", scopes=("read", "write"))
        session.commit()
    h = {"Authorization": f"Bearer {token}"}
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        run = a.post("/api/v1/runs", json={"key": "rep", "channels": [{"name": "fin"}]}, headers=h)
        run_id = run.json()["id"]
        hook = {
            "name": "x",
            "kind": "webhook",
            "config": {"url": receiver.url + "/webhook/r", "secret": "hook-secret"},
        }
        assert a.post("/api/v1/notifiers", json=hook, headers=h).status_code == 201

        def body(steps: range) -> dict[str, object]:
            values = ["NaN" if s == 25 else 2.0 for s in steps]
            return {
                "series": [
                    {"metric": "loss", "channel": "fin", "steps": list(steps), "values": values}
                ]
            }

        assert a.post(f"/api/v1/runs/{run_id}/points", json=body(range(26)), headers=h).is_success
        # the other replica gets a resumed trainer's replay plus new steps
        assert b.post(
            f"/api/v1/runs/{run_id}/points", json=body(range(20, 30)), headers=h
        ).is_success
        [alert] = b.get("/api/v1/alerts", params={"run_id": run_id}, headers=h).json()["data"]
        events = b.get(f"/api/v1/alerts/{alert['id']}/events", headers=h).json()["data"]
        assert [(e["kind"], e["step"]) for e in events] == [
            ("pending", 25),
            ("firing", 25),
            ("resolved", 26),
        ]
        barrier = threading.Barrier(2)
        sent: list[int] = []

        def send(app_index: int) -> None:
            barrier.wait()
            sent.append(apps[app_index].state.alert_dispatcher.run_once())

        threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # either one replica claimed both messages (and grouped them) or each claimed one
        assert sorted(sent) in ([0, 1], [1, 1])
        assert {r.verdict for r in receiver.received} == {"ok"}
        kinds = sorted(a["event"] for r in receiver.received for a in r.json()["alerts"])
        assert kinds == ["firing", "resolved"]
        assert apps[0].state.alert_dispatcher.run_once() == 0  # nothing left to send
    for app in apps:
        app.state.engine.dispose()
