"""Ingest and read speed of a real lossradar server process, over real HTTP.

Measures, on SQLite (and on PostgreSQL with ``--postgres URL``):

- HTTP ingest, points/s, for batches of 100 steps x 16 channels x 3 metrics (4,800 points),
  sent one after another on one keep-alive connection (bodies pre-encoded, JSON), to the server
  as deployed (``python -m server serve``: with the alert engine evaluating every point in the
  ingest transaction) and to the same server with no ingest listeners (the storage path alone);
- the raw insert rate of the same points as rows ``(series_id, step, value, wall_time)``,
  inserted with the database driver's executemany straight into the same database, one
  transaction per batch (the ceiling), in the same run, interleaved batch by batch with the HTTP
  batches (HTTP batch i, then raw batch i: load bursts on a shared machine hit both sides);
  ``raw_ratio = http / raw``;
- the read time of a whole run of 20 series x 2,000 steps (median of 20 GETs);
- the read time of a 1,000,000-point series downsampled to 1,000 points (median of 20 GETs);
  both series are loaded in-process first (loading 1M points through the alert engine is slow).

Last line (SQLite, the server as deployed):
``ingest points_per_s=<n> raw_ratio=<x> run_read_ms=<m> downsample_read_ms=<k>``.

    python benchmarks/ingest.py [--batches 60] [--postgres postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import orjson
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.db.engine import make_engine  # noqa: E402
from tests.server.live import LiveServer, start_live_server  # noqa: E402

CHANNELS = [f"source{i:02d}" for i in range(16)]
METRICS = ["loss", "tokens", "weight"]
STEPS_PER_BATCH = 100
RUN_TAG = uuid.uuid4().hex[:8]  # fresh runs even in a database used before


def batch_body(first_step: int, rng: np.random.Generator) -> bytes:
    steps = list(range(first_step, first_step + STEPS_PER_BATCH))
    walls = [1.7e9 + s for s in steps]
    series = [
        {
            "metric": metric,
            "channel": channel,
            "steps": steps,
            "values": rng.random(STEPS_PER_BATCH).tolist(),
            "wall_times": walls,
        }
        for metric in METRICS
        for channel in CHANNELS
    ]
    return orjson.dumps({"series": series})


def register(client: httpx.Client, key: str) -> int:
    resp = client.post(
        "/api/v1/runs",
        json={"key": f"{key}-{RUN_TAG}", "channels": [{"name": c} for c in CHANNELS]},
    )
    resp.raise_for_status()
    return int(resp.json()["id"])


def post_batch(client: httpx.Client, run_id: int, body: bytes) -> float:
    """Seconds to POST one batch (and get its answer)."""
    start = time.perf_counter()
    resp = client.post(
        f"/api/v1/runs/{run_id}/points", content=body, headers={"Content-Type": "application/json"}
    )
    elapsed = time.perf_counter() - start
    resp.raise_for_status()
    return elapsed


class RawInserter:
    """The same points as plain rows ``(series_id, step, value, wall_time)``, inserted with the
    driver's own executemany (tuples, no ORM, no SQLAlchemy), one transaction per batch, into a
    table of their own in the same database."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        with self.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS bench_raw_points"))
            conn.execute(
                text(
                    "CREATE TABLE bench_raw_points (series_id INTEGER, step BIGINT, "
                    "value DOUBLE PRECISION, wall_time DOUBLE PRECISION, "
                    "PRIMARY KEY (series_id, step))"
                )
            )
        mark = "?" if self.engine.dialect.name == "sqlite" else "%s"
        self.insert = f"INSERT INTO bench_raw_points VALUES ({mark}, {mark}, {mark}, {mark})"
        self.raw = self.engine.raw_connection()
        self.cursor = self.raw.cursor()

    @staticmethod
    def rows(body: bytes) -> list[tuple[int, int, float, float]]:
        """A batch body as rows (decoded before the clock starts)."""
        rows: list[tuple[int, int, float, float]] = []
        for sid, s in enumerate(orjson.loads(body)["series"]):
            rows += zip(
                [sid] * len(s["steps"]), s["steps"], s["values"], s["wall_times"], strict=True
            )
        return rows

    def insert_batch(self, rows: list[tuple[int, int, float, float]]) -> float:
        """Seconds to insert and commit one batch of rows."""
        start = time.perf_counter()
        if self.engine.dialect.name == "sqlite":
            self.cursor.execute("BEGIN")
        self.cursor.executemany(self.insert, rows)
        self.raw.commit()
        return time.perf_counter() - start

    def close(self) -> None:
        self.cursor.close()
        self.raw.close()
        with self.engine.begin() as conn:
            conn.execute(text("DROP TABLE bench_raw_points"))
        self.engine.dispose()


def interleaved_rates(live: LiveServer, key: str, bodies: list[bytes]) -> tuple[float, float]:
    """(HTTP points/s, raw points/s), measured batch by batch in turn: each HTTP batch is
    followed by the same batch inserted raw, so a burst of load on this shared machine hits both
    sides alike instead of one of two back-to-back phases."""
    points = len(bodies) * STEPS_PER_BATCH * len(CHANNELS) * len(METRICS)
    raw = RawInserter(live.database_url)
    rows = [raw.rows(body) for body in bodies]
    http_s = raw_s = 0.0
    try:
        with httpx.Client(
            base_url=live.url, headers=live.headers(live.token), timeout=600
        ) as client:
            warmup = register(client, f"{key}-warmup")
            for body in bodies[:2]:
                post_batch(client, warmup, body)
            run_id = register(client, key)
            for body, batch_rows in zip(bodies, rows, strict=True):
                http_s += post_batch(client, run_id, body)
                raw_s += raw.insert_batch(batch_rows)
    finally:
        raw.close()
    return points / http_s, points / raw_s


def median_ms(client: httpx.Client, url: str, params: dict[str, object], n: int = 20) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        resp = client.get(url, params=params)
        resp.raise_for_status()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def preload_read_data(database_url: str) -> tuple[int, int]:
    """A run of 20 series x 2,000 steps and a run with one 1,000,000-point series (a spike at
    step 501,234), written in-process with the server's own storage code."""
    from server.db.engine import make_sessionmaker
    from server.runs import create_or_get_run
    from server.schemas import RunCreate
    from server.series.payload import ParsedSeries
    from server.series.store import ingest_points

    rng = np.random.default_rng(1)
    engine = make_engine(database_url)
    ids = []
    with make_sessionmaker(engine)() as session:
        for key in ("bench-read", "bench-downsample"):
            run, _ = create_or_get_run(session=session, run_in=RunCreate(key=f"{key}-{RUN_TAG}"))
            ids.append(run.id)
        session.commit()
        steps = np.arange(2000, dtype=np.int64)
        walls = 1.7e9 + steps.astype(np.float64)
        names = [("loss", c) for c in CHANNELS] + [
            (m, "") for m in ("lm_loss", "lr", "grad_norm", "tokens_total")
        ]
        batch = [ParsedSeries(m, c, steps, rng.random(2000), walls) for m, c in names]
        ingest_points(session=session, run_id=ids[0], batch=batch, now=datetime.now(UTC))
        session.commit()
        per = 100_000
        for lo in range(0, 1_000_000, per):
            s = np.arange(lo, lo + per, dtype=np.int64)
            v = rng.normal(2.0, 0.01, per)
            if lo == 500_000:
                v[1234] = 50.0
            one = [ParsedSeries("loss", "source00", s, v, 1.7e9 + s.astype(np.float64))]
            ingest_points(session=session, run_id=ids[1], batch=one, now=datetime.now(UTC))
            session.commit()
    engine.dispose()
    return ids[0], ids[1]


def read_benchmarks(client: httpx.Client, read_id: int, big_id: int) -> tuple[float, float, int]:
    run_read = median_ms(client, f"/api/v1/runs/{read_id}/series", {})
    body = client.get(f"/api/v1/runs/{read_id}/series").json()
    assert sum(len(s["steps"]) for s in body["series"]) == 40_000
    params = {"max_points": 1000}
    down = median_ms(client, f"/api/v1/runs/{big_id}/series", params)
    got = client.get(f"/api/v1/runs/{big_id}/series", params=params).json()["series"][0]
    assert got["downsampled"]
    assert len(got["steps"]) <= 1000
    assert 50.0 in got["values"], "the spike was lost"
    assert 501_234 in got["steps"], "the spike was lost"
    return run_read, down, len(got["steps"])


def storage_only_command() -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--serve-without-listeners"]


def serve_without_listeners() -> int:
    """The server with its ingest listeners (the alert engine) removed: the storage path."""
    from server.app import create_app
    from server.cli import serve_app
    from server.settings import Settings

    settings = Settings()
    app = create_app(settings)
    app.state.ingest_listeners.clear()
    serve_app(app, settings, host="127.0.0.1", port=0, log_level="warning")
    return 0


def run_backend(name: str, tmp: Path, database_url: str | None, batches: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    bodies = [batch_body(i * STEPS_PER_BATCH, rng) for i in range(batches)]
    points = batches * STEPS_PER_BATCH * len(CHANNELS) * len(METRICS)
    with start_live_server(tmp / "deployed", database_url=database_url) as live:
        url = live.database_url
        read_id, big_id = preload_read_data(url)
        deployed, raw = interleaved_rates(live, "bench-ingest", bodies)
        with httpx.Client(base_url=live.url, headers=live.headers(live.read_token)) as client:
            run_read, down, down_points = read_benchmarks(client, read_id, big_id)
    with start_live_server(
        tmp / "storage", database_url=url, command=storage_only_command()
    ) as live:
        storage, storage_raw = interleaved_rates(live, "bench-ingest-storage", bodies)
    print(
        f"[{name}] {points} points in {batches} batches of 4800. HTTP ingest as deployed "
        f"(alert engine on): {deployed:,.0f} pts/s = {deployed / raw:.2f} x raw "
        f"({raw:,.0f} pts/s, raw rows executemany, interleaved batch by batch); storage path "
        f"(no listeners): {storage:,.0f} pts/s = {storage / storage_raw:.2f} x raw "
        f"({storage_raw:,.0f} pts/s). Run read (20x2000): {run_read:.1f} ms. "
        f"1M -> {down_points} points downsample: {down:.1f} ms",
        flush=True,
    )
    return {"pps": deployed, "ratio": deployed / raw, "read": run_read, "down": down}


def main() -> int:
    if sys.argv[1:] == ["--serve-without-listeners"]:
        return serve_without_listeners()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=40, help="ingest batches of 4,800 points")
    parser.add_argument("--postgres", help="also measure on this PostgreSQL URL (an empty db)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = run_backend("sqlite", Path(tmp) / "sqlite", None, args.batches)
        if args.postgres:
            run_backend("postgres", Path(tmp) / "pg", args.postgres, args.batches)
    print(
        f"ingest points_per_s={sqlite['pps']:.0f} raw_ratio={sqlite['ratio']:.2f} "
        f"run_read_ms={sqlite['read']:.1f} downsample_read_ms={sqlite['down']:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
