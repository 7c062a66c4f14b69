"""Fixtures for the browser tests: a real lossradar server process and Debian's Chromium.

The server is a real process on a free port (`tests.server.live`), on a fresh SQLite database;
tests fill it through the real ingest API and browse it with its read token. Chromium comes from
`LOSSRADAR_TEST_CHROMIUM` (default /usr/bin/chromium); under CI=true a missing browser fails.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.live import LiveServer, start_live_server

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
READY_TIMEOUT_MS = 20_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@dataclass
class FilledServer:
    """A real server process (`tests.server.live`) and a client that fills it through the
    ingest API with a read+write token."""

    live: LiveServer
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=self.live.url, headers=self.live.headers(self.live.token), timeout=120
        )

    @property
    def url(self) -> str:
        return self.live.url

    @property
    def read_token(self) -> str:
        return self.live.read_token

    def create_run(self, **body: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/runs", json=body)
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result

    def ingest(self, run_id: int, series: list[dict[str, Any]]) -> dict[str, Any]:
        response = self.client.post(f"/api/v1/runs/{run_id}/points", json={"series": series})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture(scope="module")
def filled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilledServer]:
    """One server per test module, on a fresh SQLite database."""
    with start_live_server(tmp_path_factory.mktemp("dashboard-server")) as live:
        server = FilledServer(live)
        try:
            yield server
        finally:
            server.client.close()


def chromium_path() -> str:
    """Chromium for the tests; skipped locally when absent, a failure under CI=true."""
    path = os.environ.get("LOSSRADAR_TEST_CHROMIUM", "/usr/bin/chromium")
    if shutil.which(path) is None:
        message = (
            f"Chromium not found at {path}; "
            "install Debian's chromium or set LOSSRADAR_TEST_CHROMIUM"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@dataclass
class OpenedPage:
    """A page and what it reported: console errors, uncaught errors and dialogs."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def traces(self, chart_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The chart's Plotly traces as {kind, channel, name, x, y}, optionally of one kind."""
        result: list[dict[str, Any]] = self.page.evaluate(
            """([id, kind]) => (document.getElementById(id)?.data ?? [])
                .filter(t => kind === null || (t.meta && t.meta.kind === kind))
                .map(t => ({kind: t.meta?.kind ?? null, channel: t.meta?.channel ?? null,
                            name: t.name, x: Array.from(t.x), y: Array.from(t.y)}))""",
            [chart_id, kind],
        )
        return result

    def wait(self, expression: str, timeout_ms: int = READY_TIMEOUT_MS) -> None:
        """Wait until the JS `expression` is truthy (as a function: the page's CSP forbids eval)."""
        self.page.wait_for_function(f"() => ({expression})", timeout=timeout_ms)

    def x_range(self, chart_id: str) -> list[float]:
        result: list[float] = self.page.evaluate(
            "id => document.getElementById(id)._fullLayout.xaxis.range.slice()", chart_id
        )
        return result


def open_page(
    browser: Any,
    server: FilledServer,
    route: str,
    *,
    ready: str,
    poll_ms: int = 0,
    max_points: int | None = None,
    token: str | None = "read",
    viewport: tuple[int, int] = (1440, 900),
) -> OpenedPage:
    """Open `route` (e.g. "#/runs/1") in a fresh context and wait until the page has drawn.

    token "read" stores the server's read token in localStorage before the page loads (as a
    user who entered it once); None starts without one. `ready` is the page name the router
    sets on <body data-ready> once mounted ("runs", "run", "compare"), or "" to not wait.
    """
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    settings = {"lossradar.pollMs": str(poll_ms)}
    if token == "read":
        settings["lossradar.readToken"] = server.read_token
    if max_points is not None:
        settings["lossradar.maxPoints"] = str(max_points)
    context.add_init_script(
        f"for (const [k, v] of Object.entries({json.dumps(settings)})) localStorage.setItem(k, v);"
    )
    page = context.new_page()
    opened = OpenedPage(page=page)

    def on_console(message: Any) -> None:
        if message.type == "error":
            opened.errors.append(f"{message.text} [{message.location.get('url', '')}]")

    page.on("console", on_console)
    page.on("pageerror", lambda error: opened.errors.append(f"uncaught: {error}"))

    def on_dialog(dialog: Any) -> None:
        opened.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(f"{server.url}/{route}")
    if ready:
        opened.wait(f"document.body.dataset.ready === {json.dumps(ready)}")
    return opened


@pytest.fixture
def open_dashboard(browser: Any, filled_server: FilledServer) -> Iterator[Any]:
    """`open_dashboard(route, ready=..., ...)`: `open_page` on this module's server; the
    contexts it opens are closed after the test."""
    opened: list[OpenedPage] = []

    def _open(route: str, **kwargs: Any) -> OpenedPage:
        page = open_page(browser, filled_server, route, **kwargs)
        opened.append(page)
        return page

    yield _open
    for page in opened:
        page.page.context.close()
