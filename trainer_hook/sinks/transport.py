"""HTTP for the sender with the standard library only: one kept-alive connection, JSON in/out."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer: status and parsed JSON body (None when the body is not JSON)."""

    status: int
    body: Any


class TransportError(Exception):
    """The request did not get an HTTP answer: refused, reset, timed out, DNS failure."""


class HttpTransport:
    """Posts JSON to `base_url` (e.g. http://host:8765). Not thread-safe: one sender thread."""

    def __init__(self, base_url: str, token: str | None, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"lossradar URL {base_url!r} is not an http(s) URL; "
                "pass e.g. url='http://monitor:8765' or set LOSSRADAR_URL"
            )
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._timeout_s = timeout_s
        self._headers = {"Accept": "application/json", "User-Agent": "lossradar-trainer-hook"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._conn: http.client.HTTPConnection | None = None
        self._reused = False  # the connection has answered before (it may have gone stale)

    def post(self, path: str, body: bytes, *, gzipped: bool) -> Response:
        """POST a JSON body (gzipped or not); raise TransportError when no answer arrives.

        A kept-alive connection that the server closed while idle is retried once at once on
        a fresh connection (the lossradar POSTs are idempotent)."""
        headers = dict(self._headers, **{"Content-Type": "application/json"})
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        while True:
            reused, conn = self._reused, self._connection()
            try:
                conn.request("POST", self._prefix + path, body=body, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
                self.close()
                stale = isinstance(
                    exc, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                )
                if not (reused and stale):
                    raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        self._reused = True
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return Response(resp.status, parsed)

    def close(self) -> None:
        """Drop the kept-alive connection (the next request reconnects)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._reused = False

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout_s)
        return self._conn
