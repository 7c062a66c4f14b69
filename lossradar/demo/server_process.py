"""Run `lossradar serve` on SQLite in the background for the demo, with a fresh API token.

The server is a child process (``python -m lossradar.cli serve``) on 127.0.0.1 and a free port;
its database lives in ``data_dir``. Reads are open by default (loopback only), so the dashboard
needs no token; writes need the token. :meth:`LocalServer.stop` terminates it (SIGTERM, then
SIGKILL).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import httpx

LISTENING = "lossradar serving on"  # the line `lossradar serve` prints once it listens


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """``with LocalServer(data_dir) as srv: srv.url, srv.token``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        open_reads: bool = True,
        timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = f"sqlite:///{self.data_dir / 'lossradar.db'}"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.data_dir / "server.log"
        self.env = {
            **os.environ,
            "LOSSRADAR_DATABASE_URL": self.database_url,
            "LOSSRADAR_PUBLIC_URL": self.url,
            "LOSSRADAR_HOST": "127.0.0.1",
            # loopback only: the dashboard opens without pasting a read token
            "LOSSRADAR_OPEN_READS": "true" if open_reads else "false",
            "PYTHONUNBUFFERED": "1",
        }
        self.token = self._create_token()
        self._tail: deque[str] = deque(maxlen=50)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "lossradar.cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._ready = threading.Event()
        self._pump = threading.Thread(target=self._read_output, name="lossradar-demo-server-log")
        self._pump.daemon = True
        self._pump.start()
        self._wait_ready(timeout)

    def _create_token(self) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "lossradar.cli", "token", "create", "--name", "demo"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0 or not done.stdout.strip():
            raise RuntimeError(
                f"`lossradar token create` failed ({done.returncode}): {done.stderr.strip()}"
            )
        return done.stdout.strip().splitlines()[0]

    def _read_output(self) -> None:
        assert self._proc.stdout is not None
        with self.log_path.open("a", encoding="utf-8") as log:
            for line in self._proc.stdout:
                log.write(line)
                log.flush()
                self._tail.append(line.rstrip())
                if LISTENING in line:
                    self._ready.set()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if self._ready.wait(0.2):
                try:
                    if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
        self.stop()
        tail = "\n".join(self._tail)
        raise RuntimeError(
            f"`lossradar serve` did not become ready within {timeout:.0f} s; its output:\n{tail}"
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self) -> httpx.Client:
        """An HTTP client for the server's REST API, authenticated with the demo token."""
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30)

    def alive(self) -> bool:
        return self._proc.poll() is None

    def wait(self) -> int:
        """Block until the server exits (``--keep-serving``)."""
        return self._proc.wait()

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._pump.join(timeout=5)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
