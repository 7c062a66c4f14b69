"""Two server replicas on one PostgreSQL: concurrent batches for one run lose nothing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text

from server.db.engine import make_engine
from tests.server.conftest import postgres_url
from tests.server.live import start_live_server

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh schema (``options=-csearch_path=...``)."""
    base = postgres_url()
    schema = f"lrrep_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_two_replicas_one_run_no_lost_points(schema_url: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        a = stack.enter_context(start_live_server(tmp_path / "a", database_url=schema_url))
        b = stack.enter_context(start_live_server(tmp_path / "b", database_url=schema_url))
        headers = a.headers(a.token)
        run = httpx.post(f"{a.url}/api/v1/runs", json={"key": "r"}, headers=headers).json()
        # the same key through the other replica is the same run
        again = httpx.post(f"{b.url}/api/v1/runs", json={"key": "r"}, headers=headers)
        assert again.status_code == 200
        assert again.json()["id"] == run["id"]
        errors: list[str] = []

        def writer(k: int) -> None:
            url = (a if k % 2 else b).url
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                for rep in range(4):
                    lo = k * 25 + rep * 200  # 8 writers x 25 steps interleave in each chunk
                    steps = list(range(lo, lo + 25))
                    resp = client.post(
                        f"/api/v1/runs/{run['id']}/points",
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
        for replica in (a, b):
            got = httpx.get(f"{replica.url}/api/v1/runs/{run['id']}/series", headers=headers)
            series = got.json()["series"][0]
            assert series["steps"] == list(range(800))
            assert series["values"] == [float(s) for s in range(800)]
            assert got.json()["last_step"] == 799
