"""The command line in real processes: db upgrade/current/downgrade, token create/list/revoke,
and a real server (`python -m server serve`) answering HTTP."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import orjson
import pytest

from server.cli import _ensure_schema, main
from server.db.migrate import current
from server.settings import Settings
from tests.server.live import ROOT, LiveServer


def test_db_upgrade_in_a_real_process(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'sub' / 'x.db'}"
    up = subprocess.run(
        [sys.executable, "-m", "lossradar.cli", "db", "upgrade", "--database-url", db],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == f"{db}: {current(db)}"


def test_db_and_token_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--database-url", db])
        out, err = capsys.readouterr()
        return code, out, err

    # token commands upgrade a fresh SQLite file themselves
    code, out, err = run("token", "create", "--name", "trainer", "--scope", "write")
    assert code == 0
    secret = out.strip()
    assert secret.startswith("lr_")
    assert len(secret) == 46
    assert "scopes=write" in err
    _, listed, _ = run("token", "list")
    assert listed == f"1\ttrainer\t{secret[:10]}...\twrite\tactive\n"
    assert run("token", "revoke", "1")[1] == "revoked token 1\n"
    assert run("token", "revoke", "1")[0] == 1
    assert run("token", "list")[1].endswith("\trevoked\n")
    assert run("db", "current")[1] == f"{db}: {current(db)}\n"
    assert run("db", "downgrade", "base")[1] == f"{db}: None\n"
    assert run("db", "downgrade")[0] == 2
    assert run("db", "upgrade", "0001_initial")[1] == f"{db}: 0001_initial\n"
    # serve refuses a PostgreSQL-style "not at head" database instead of migrating it
    settings = Settings(database_url=db)
    with pytest.raises(SystemExit, match="run `lossradar db upgrade` first"):
        _ensure_schema(settings, migrate=False)


def test_a_real_server_process_round_trip(live_server: LiveServer) -> None:
    live = live_server
    with httpx.Client(base_url=live.url, timeout=30) as client:
        w, r = live.headers(live.write_token), live.headers(live.read_token)
        run = client.post(
            "/api/v1/runs", json={"key": "live", "channels": [{"name": "fin"}]}, headers=w
        )
        assert run.status_code == 201
        run_id = run.json()["id"]
        body = orjson.dumps(
            {
                "series": [
                    {
                        "metric": "loss",
                        "channel": "fin",
                        "steps": [1, 2],
                        "values": ["Infinity", 0.5],
                    }
                ]
            }
        )
        resp = client.post(
            f"/api/v1/runs/{run_id}/points",
            content=gzip.compress(body),
            headers={**w, "Content-Encoding": "gzip"},
        )
        assert resp.json() == {"accepted": 2, "last_step": 2}
        got = client.get(f"/api/v1/runs/{run_id}/series", headers=r).json()["series"][0]
        assert got["values"] == ["Infinity", 0.5]
        assert client.get("/readyz").json() == {"status": "ok"}
        metrics = client.get("/metrics").text
        assert 'lossradar_ingest_requests_total{outcome="ok"} 1.0' in metrics
        assert "lossradar_ingest_points_total 2.0" in metrics
        assert 'lossradar_channel_loss{channel="fin",run_id="1",run_key="live"} 0.5' in metrics
    assert live.token not in live.log()


def test_concurrent_batches_to_one_run_lose_nothing(live_server: LiveServer) -> None:
    """Eight writers, overlapping chunks, one SQLite file: every point lands exactly once."""
    live = live_server
    headers = live.headers(live.token)
    run_id = httpx.post(f"{live.url}/api/v1/runs", json={"key": "c"}, headers=headers).json()["id"]
    errors: list[str] = []

    def writer(k: int) -> None:
        with httpx.Client(base_url=live.url, headers=headers, timeout=60) as client:
            for rep in range(5):
                steps = list(range(k * 50 + rep * 400, k * 50 + rep * 400 + 50))
                resp = client.post(
                    f"/api/v1/runs/{run_id}/points",
                    json={
                        "series": [
                            {
                                "metric": "loss",
                                "channel": "a",
                                "steps": steps,
                                "values": [float(s) for s in steps],
                            }
                        ]
                    },
                )
                if resp.status_code != 200:
                    errors.append(resp.text)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = httpx.get(f"{live.url}/api/v1/runs/{run_id}/series", headers=headers).json()
    steps = got["series"][0]["steps"]
    assert steps == list(range(2000))
    assert got["series"][0]["values"] == [float(s) for s in range(2000)]
    assert got["last_step"] == 1999


def test_concurrent_registration_of_one_key_makes_one_run(live_server: LiveServer) -> None:
    """Eight jobs register the same key at once (read-then-write transactions on SQLite)."""
    live = live_server
    statuses: list[int] = []
    ids: set[int] = set()

    def register(k: int) -> None:
        with httpx.Client(base_url=live.url, headers=live.headers(live.token), timeout=60) as c:
            resp = c.post("/api/v1/runs", json={"key": "same", "channels": [{"name": f"c{k}"}]})
            statuses.append(resp.status_code)
            if resp.status_code in (200, 201):
                ids.add(resp.json()["id"])
                patched = c.patch(f"/api/v1/runs/{resp.json()['id']}", json={"tags": [f"t{k}"]})
                statuses.append(patched.status_code)

    threads = [threading.Thread(target=register, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 15 + [201]
    assert len(ids) == 1
    run = httpx.get(f"{live.url}/api/v1/runs/by-key/same", headers=live.headers(live.token))
    assert sorted(c["name"] for c in run.json()["channels"]) == [f"c{k}" for k in range(8)]
    assert [c["index"] for c in run.json()["channels"]] == list(range(8))
