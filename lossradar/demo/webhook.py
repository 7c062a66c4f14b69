"""A local webhook receiver: the demo points lossradar's generic-webhook notifier at it.

It listens on 127.0.0.1 on a free port, answers every POST with 200, keeps what it received
and hands each message to a callback (the demo prints it).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(kw_only=True, slots=True, frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: Any
    """parsed JSON, or the raw text when the body is not JSON."""


class WebhookReceiver:
    """``with WebhookReceiver(on_message=print) as rx: ... rx.url ... rx.messages``."""

    def __init__(self, *, on_message: Callable[[Received], None] | None = None) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._on_message = on_message
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                receiver._add(Received(path=self.path, headers=dict(self.headers), body=body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the demo prints messages itself

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="lossradar-demo-webhook", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def _add(self, message: Received) -> None:
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        if self._on_message is not None:
            with contextlib.suppress(Exception):  # a printing error must not break the receiver
                self._on_message(message)

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float) -> Received | None:
        """The first message matching ``predicate``, waiting up to ``timeout`` seconds."""
        with self._arrived:
            found: list[Received] = []

            def match() -> bool:
                found[:] = [m for m in self.messages if predicate(m)][:1]
                return bool(found)

            self._arrived.wait_for(match, timeout=timeout)
            return found[0] if found else None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
