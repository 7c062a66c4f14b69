"""How long the run page takes to open on a long run, in a real browser.

A real server process (`tests.server.live`, SQLite) is filled through the ingest API with a
run of STEPS steps x CHANNELS channels (`loss` and `token_share`) and a short baseline run of
the same shape. Debian's Chromium opens each run page in a fresh browser context (cold cache:
plotly.js included) and reads the page's own `lossradar:run-page-drawn` performance mark, set
once the loss chart is drawn with every channel (the share and weight charts follow once the
browser has painted it). run_page_ms is the median over --repeats of that mark's time since
navigation start, cold (a fresh context: plotly.js downloaded and compiled) and warm (opened
again in the same context); points_drawn counts the points of the loss chart's traces (the server's
min/max downsampling keeps the long run to about `max_points` per channel).

    python benchmarks/dashboard_load.py                 # 100,000 steps x 16 channels
    python benchmarks/dashboard_load.py --steps 20000   # quicker

Last line: `dashboard run_page_ms=<n> points_drawn=<n>` (target: run_page_ms <= 1500).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from server.alerts.rules import RULES  # noqa: E402
from tests.server.live import start_live_server  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
CHUNK_STEPS = 5_000
MARKS = ("run-page-drawn", "plotly-ready", "run-data-ready")
# ms since navigation start of the page's marks: charts drawn, plotly.js run, API data parsed
MARKS_JS = f"""() => {list(MARKS)!r}.map(
    name => performance.getEntriesByName('lossradar:' + name)[0].startTime)"""


def fill_run(client: httpx.Client, key: str, steps: int, channels: int) -> int:
    """Create a run and post `loss` and `token_share` for every step and channel."""
    names = [f"domain{c // 4}/source{c % 4}" for c in range(channels)]
    body = {"key": key, "name": key, "channels": [{"name": n} for n in names]}
    run_id: int = client.post("/api/v1/runs", json=body).raise_for_status().json()["id"]
    # the benchmark measures the page, not the alert engine: switch its rules off for this run
    for rule in RULES:
        override = {"run_id": run_id, "rule": rule, "params": {"enabled": 0}}
        client.put("/api/v1/alert-rules/overrides", json=override).raise_for_status()
    for start in range(0, steps, CHUNK_STEPS):
        chunk = list(range(start, min(start + CHUNK_STEPS, steps)))
        series: list[dict[str, Any]] = []
        for c, name in enumerate(names):
            loss = [2.0 + 2.0 * math.exp(-s / 20_000) + 0.05 * math.sin(s / 37 + c) for s in chunk]
            share = [1.0 / channels] * len(chunk)
            for metric, values in (("loss", loss), ("token_share", share)):
                series.append({"metric": metric, "channel": name, "steps": chunk, "values": values})
        client.post(f"/api/v1/runs/{run_id}/points", json={"series": series}).raise_for_status()
    return run_id


Marks = list[float]


def open_run_page(browser: Any, url: str, token: str, run_id: int) -> tuple[Marks, Marks, int]:
    """Open the run page in a fresh context (cold cache), then again in the same context (warm:
    HTTP cache). Returns the cold and the warm ms of MARKS since navigation start, and the
    points of the loss chart."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.add_init_script(
        f"localStorage.setItem('lossradar.readToken', {token!r});"
        "localStorage.setItem('lossradar.pollMs', '0');"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    times: list[Marks] = []
    points = 0
    for _ in range(2):
        page.goto(f"{url}/#/runs/{run_id}")
        page.wait_for_function(
            "() => performance.getEntriesByName('lossradar:run-page-drawn').length > 0",
            timeout=120_000,
        )
        times.append(page.evaluate(MARKS_JS))
        points = page.evaluate(
            """() => document.getElementById('loss-chart').data
                .filter(t => t.meta && t.meta.kind === 'loss')
                .reduce((n, t) => n + t.x.length, 0)"""
        )
        page.goto("about:blank")
    context.close()
    if errors:
        raise RuntimeError(f"the run page logged errors: {errors}")
    return times[0], times[1], int(points)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--baseline-steps", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    chromium = os.environ.get("LOSSRADAR_TEST_CHROMIUM", "/usr/bin/chromium")

    with tempfile.TemporaryDirectory() as tmp, start_live_server(Path(tmp)) as live:
        client = httpx.Client(base_url=live.url, headers=live.headers(live.token), timeout=600)
        began = time.perf_counter()
        baseline_id = fill_run(client, "baseline", args.baseline_steps, args.channels)
        long_id = fill_run(client, "long", args.steps, args.channels)
        fill_s = time.perf_counter() - began
        stored = 2 * (args.steps + args.baseline_steps) * args.channels
        print(f"filled {stored:,} points through the ingest API in {fill_s:.1f} s")

        opens: dict[str, list[tuple[Marks, Marks, int]]] = {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            for _ in range(args.repeats):  # interleaved: load on the machine hits both alike
                for name, run_id in (("baseline", baseline_id), ("long", long_id)):
                    opens.setdefault(name, []).append(
                        open_run_page(browser, live.url, live.read_token, run_id)
                    )
            browser.close()
        client.close()

    def median(name: str, cold: bool, mark: str) -> float:
        return statistics.median((o[0] if cold else o[1])[MARKS.index(mark)] for o in opens[name])

    load1, _, _ = os.getloadavg()
    print(f"load average {load1:.1f} on {os.cpu_count()} CPUs; medians of {args.repeats} opens")
    print("ms since navigation start: data = API responses parsed, plotly = plotly.js run")
    print(
        f"{'run':<10}{'steps':>8}{'stored':>9}{'drawn':>7}"
        f"{'cold data':>11}{'plotly':>8}{'drawn':>7}{'warm data':>11}{'plotly':>8}{'drawn':>7}"
    )
    for name, steps in (("baseline", args.baseline_steps), ("long", args.steps)):
        cells = [
            median(name, cold, mark)
            for cold in (True, False)
            for mark in ("run-data-ready", "plotly-ready", "run-page-drawn")
        ]
        print(
            f"{name:<10}{steps:>8}{steps * args.channels:>9}{opens[name][0][2]:>7}"
            f"{cells[0]:>11.0f}{cells[1]:>8.0f}{cells[2]:>7.0f}"
            f"{cells[3]:>11.0f}{cells[4]:>8.0f}{cells[5]:>7.0f}"
        )
    long_cold = median("long", True, "run-page-drawn")
    long_warm = median("long", False, "run-page-drawn")
    long_points = opens["long"][0][2]
    print(
        f"long/baseline: cold {long_cold / median('baseline', True, 'run-page-drawn'):.2f}x, "
        f"warm {long_warm / median('baseline', False, 'run-page-drawn'):.2f}x "
        f"for {args.steps / args.baseline_steps:.0f}x the steps; stored/drawn points "
        f"{args.steps * args.channels / long_points:.1f}x"
    )
    print(f"dashboard run_page_ms={long_cold:.0f} points_drawn={long_points}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
