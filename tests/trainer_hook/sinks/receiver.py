"""A tiny stdlib stand-in of the lossradar REST API for the sender's unit tests.

Implements `POST /api/v1/runs` (create-or-get by key) and `POST /api/v1/runs/{id}/points`
(gzip accepted, last write wins on (run, metric, channel, step)) on SQLite, and counts how many
times each point was delivered. Runs in threads of the test process (`Receiver(...).start()`).
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.trainer_hook.sinks.proxy import body_points

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, key TEXT UNIQUE, channels TEXT);
CREATE TABLE IF NOT EXISTS points (run INTEGER, metric TEXT, channel TEXT, step INTEGER,
    value TEXT, deliveries INTEGER, PRIMARY KEY (run, metric, channel, step));
"""


class Receiver:
    """The stand-in server on a free port; `status_override` makes it answer e.g. 503."""

    def __init__(
        self,
        db: str = ":memory:",
        token: str | None = None,
        port: int = 0,
        idle_timeout_s: float | None = None,
    ) -> None:
        self.idle_timeout_s = idle_timeout_s  # close kept-alive connections idle this long
        self.db = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()
        self.token = token
        self.status_override: int | None = None
        self.requests: list[tuple[str, int]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> Receiver:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def points(self) -> dict[tuple[str, str | None, int], float]:
        """Every stored point: (metric, channel, step) -> value."""
        with self.lock:
            rows = self.db.execute("SELECT metric, channel, step, value FROM points").fetchall()
        return {(m, c if c != "" else None, s): float(json.loads(v)) for m, c, s, v in rows}

    def max_deliveries(self) -> int:
        with self.lock:
            row = self.db.execute("SELECT MAX(deliveries) FROM points").fetchone()
        return int(row[0] or 0)

    def handle(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if path == "/api/v1/runs":
                row = self.db.execute("SELECT id FROM runs WHERE key=?", (body["key"],)).fetchone()
                names = [c["name"] for c in body.get("channels", [])]
                if row is None:
                    cur = self.db.execute(
                        "INSERT INTO runs (key, channels) VALUES (?, ?)",
                        (body["key"], json.dumps(names)),
                    )
                    run_id, status = cur.lastrowid, 201
                else:
                    run_id, status = row[0], 200
                chans = [{"index": i, "name": n} for i, n in enumerate(names)]
                return status, {"id": run_id, "key": body["key"], "channels": chans}
            parts = path.split("/")  # /api/v1/runs/{id}/points
            run_id = int(parts[4])
            if self.db.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone() is None:
                return 404, {"detail": "run not found"}
            points = list(body_points(body))
            self.db.execute("BEGIN")
            for metric, channel, step, value in points:
                self.db.execute(
                    "INSERT INTO points VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT DO UPDATE SET "
                    "value=excluded.value, deliveries=deliveries+1",
                    (run_id, metric, channel or "", step, json.dumps(value)),
                )
            self.db.execute("COMMIT")
            return 200, {"accepted": len(points), "last_step": 0}


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = receiver.idle_timeout_s

        def log_error(self, format: str, *args: Any) -> None:
            pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            if receiver.token and self.headers.get("Authorization") != f"Bearer {receiver.token}":
                status, out = 401, {"detail": "bad token"}
            elif receiver.status_override is not None:
                status, out = receiver.status_override, {"detail": "overridden"}
            else:
                status, out = receiver.handle(self.path, json.loads(raw))
            receiver.requests.append((self.path, status))
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
