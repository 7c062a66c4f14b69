"""An HTTP proxy in front of a server that can refuse, hang or answer 503 on command, and counts
how many times each (run, metric, channel, step) point was delivered with a 2xx answer.

Modes: "forward" (pass through), "refuse" (the port is closed: connection refused; open
keep-alive connections are cut), "hang" (accept, never answer: the client times out), "slow"
(forward each request only after `slow_s` seconds, so the client may time out although the
server then stores the points), "503" (answer 503 Service Unavailable without forwarding).
When the upstream itself is down the client's connection is cut, as a TCP proxy would.
`upstream` may be changed at any time (a server restarted on another port).
"""

from __future__ import annotations

import gzip
import http.client
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FaultProxy:
    """Listens on a free port (kept across "refuse" periods) and forwards to `upstream`."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "forward"
        self.slow_s = 1.0
        self.delivered: Counter[tuple[str, str, str | None, int]] = Counter()
        self.lock = threading.Lock()
        self.port = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: str) -> None:
        """Switch behaviour; "refuse" closes the listening socket, leaving it reopens it."""
        if mode not in ("forward", "refuse", "hang", "slow", "503"):
            raise ValueError(f"unknown proxy mode {mode!r}")
        old, self.mode = self.mode, mode
        if mode == "refuse" and old != "refuse":
            self._close_listener()
        elif old == "refuse" and mode != "refuse":
            self._listen()

    def duplicated(self) -> int:
        """Points delivered (2xx) more than once."""
        with self.lock:
            return sum(1 for n in self.delivered.values() if n > 1)

    def close(self) -> None:
        self.mode = "closed"
        self._close_listener()

    def _listen(self) -> None:
        for _ in range(100):  # the old socket may linger a moment
            try:
                httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"cannot listen again on port {self.port}")
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()

    def _close_listener(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def record(self, path: str, body: bytes, encoding: str | None) -> None:
        """Count the points of a points POST the upstream accepted."""
        if not path.endswith("/points"):
            return
        raw = gzip.decompress(body) if encoding == "gzip" else body
        payload: dict[str, Any] = json.loads(raw)
        run = path.split("/")[4]
        with self.lock:
            for metric, channel, step, _ in body_points(payload):
                self.delivered[(run, metric, channel, step)] += 1


def body_points(body: dict[str, Any]) -> Iterator[tuple[str, str | None, int, Any]]:
    """(metric, channel, step, value) of a points body, in either form (series or records)."""
    for s in body.get("series", []):
        for step, value in zip(s["steps"], s["values"], strict=True):
            yield s["metric"], s["channel"], step, value
    for r in body.get("records", []):
        for channel, metrics in ((None, r.get("r", {})), *r.get("c", {}).items()):
            for metric, value in metrics.items():
                yield metric, channel, r["s"], value


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _cut(self) -> None:
            self.close_connection = True
            self.connection.close()

        def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in HOP_HEADERS:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _relay(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            mode = proxy.mode
            if mode in ("refuse", "closed"):
                return self._cut()
            if mode == "hang":
                while proxy.mode == "hang":
                    time.sleep(0.05)
                return self._cut()
            if mode == "503":
                return self._answer(503, [("Content-Type", "application/json")], b"{}")
            if mode == "slow":
                time.sleep(proxy.slow_s)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            try:
                # a fresh upstream connection per request: the upstream may have moved
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                upstream.request(method, self.path, body=body or None, headers=headers)
                resp = upstream.getresponse()
                data = resp.read()
                upstream.close()
            except (OSError, http.client.HTTPException):
                return self._cut()
            if 200 <= resp.status < 300 and method == "POST":
                proxy.record(self.path, body, self.headers.get("Content-Encoding"))
            self._answer(resp.status, resp.getheaders(), data)

        def do_GET(self) -> None:
            self._relay("GET")

        def do_POST(self) -> None:
            self._relay("POST")

        def do_PATCH(self) -> None:
            self._relay("PATCH")

    return Handler


def main(argv: list[str]) -> int:
    """Run the proxy as its own process (so its work does not share the GIL of the process
    under test): `python proxy.py HOST PORT` prints `PORT <n>`, then obeys stdin lines
    `mode <name>`, `upstream <host> <port>`, `duplicated` (answers `DUPLICATED <n>`), `quit`."""
    proxy = FaultProxy(argv[0], int(argv[1]))
    print(f"PORT {proxy.port}", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "mode":
            proxy.set_mode(cmd[1])
        elif cmd[0] == "upstream":
            proxy.upstream = (cmd[1], int(cmd[2]))
        elif cmd[0] == "duplicated":
            print(f"DUPLICATED {proxy.duplicated()}", flush=True)
        print("OK", flush=True)
    proxy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
