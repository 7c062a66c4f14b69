"""A REAL lossradar server process on a free port, for tests of the sender, dashboard and demo.

    from tests.server.live import start_live_server

    with start_live_server(tmp_path) as live:
        httpx.get(f"{live.url}/api/v1/runs", headers=live.headers(live.read_token))

or the fixture: ``from tests.server.live import live_server`` in a conftest.py, then take
``live_server`` as an argument. The process is ``python -m server serve --port 0`` on a fresh
SQLite file under ``tmp_path``; it is stopped (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from server.cli import LISTENING
from server.db.engine import make_engine, make_sessionmaker
from server.db.migrate import upgrade
from server.tokens import create_token

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LiveServer:
    """A running server: its base URL, tokens, database and log file."""

    url: str
    write_token: str
    """scope ``write`` only"""
    read_token: str
    """scope ``read`` only"""
    token: str
    """scopes ``read`` and ``write``"""
    database_url: str
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @staticmethod
    def headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def make_tokens(database_url: str) -> tuple[str, str, str]:
    """Upgrade the database, then create (write, read, read+write) tokens in it."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            secrets = [
                create_token(session=session, name=f"test-{'-'.join(s)}", scopes=s)[1]
                for s in (["write"], ["read"], ["read", "write"])
            ]
            session.commit()
    finally:
        engine.dispose()
    return secrets[0], secrets[1], secrets[2]


@contextmanager
def start_live_server(
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    database_url: str | None = None,
    timeout: float = 60.0,
    command: list[str] | None = None,
) -> Iterator[LiveServer]:
    """Start ``python -m server serve`` on a free port; yield a `LiveServer`; stop it.

    ``command`` replaces the server command line (it must print the `server.cli.LISTENING`
    line and honour ``LOSSRADAR_DATABASE_URL``), e.g. for a benchmark's own variant.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite:///{tmp_path / 'lossradar.db'}"
    write, read, both = make_tokens(database_url)
    log_path = tmp_path / "server.log"
    child_env = {**os.environ, "LOSSRADAR_DATABASE_URL": database_url, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), child_env.get("PYTHONPATH", "")) if p
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command
            or [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=ROOT,
        )
    try:
        url = _wait_listening(process, log_path, timeout)
        yield LiveServer(
            url=url,
            write_token=write,
            read_token=read,
            token=both,
            database_url=database_url,
            log_path=log_path,
            process=process,
        )
    finally:
        stop_process(process)


def _wait_listening(process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        if url is None:
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith(LISTENING):
                    url = line.split()[3]
        if url is not None:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    stop_process(process)
    raise RuntimeError(f"server not ready after {timeout}s:\n{log_path.read_text()}")


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real server process with a fresh SQLite database (see `start_live_server`)."""
    with start_live_server(tmp_path / "live-server") as live:
        yield live
