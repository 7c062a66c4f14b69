"""The dashboard in Debian's Chromium against a real server process filled through the real
ingest API: pages load cleanly, traces carry exactly the ingested points, folding combines
channels exactly, zoom survives live refresh and fetches detail, API strings stay inert."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import FilledServer

pytestmark = pytest.mark.e2e

XSS = "<img src=x onerror=alert(1)>"
CHANNELS = ["general", "finance/slow", "finance/fast", XSS]
TARGETS = [0.6, 0.15, 0.15, 0.1]
STEPS = 60


def present(channel: str, step: int) -> bool:
    """finance/fast gets no tokens every third step: it has no point there."""
    return not (channel == "finance/fast" and step % 3 == 0)


def loss(ci: int, step: int) -> float:
    return 2.0 + 0.25 * ci + 1.5 * math.exp(-step / 20) + 0.05 * ((7 * step + ci) % 5)


def tokens(ci: int, step: int) -> int:
    """Tokens close to the target mix (no mix-drift alert on the test runs)."""
    return round(10_000 * TARGETS[ci]) + step


def run_series(channels: list[str], steps: range, offset: float = 0.0) -> list[dict[str, Any]]:
    """All per-channel metrics of `steps`, as the trainer's sender would post them."""
    series: list[dict[str, Any]] = []
    for ci, channel in enumerate(channels):
        kept = [s for s in steps if present(channel, s)]
        total = {
            s: sum(tokens(j, s) for j, c in enumerate(channels) if present(c, s)) for s in kept
        }
        metrics = {
            "loss": [loss(ci, s) + offset for s in kept],
            "loss_sample_mean": [loss(ci, s) + offset + 0.01 for s in kept],
            "tokens": [tokens(ci, s) for s in kept],
            "samples": [ci + 1 for _ in kept],
            "token_share": [tokens(ci, s) / total[s] for s in kept],
            "weight": [1.0 + 0.1 * ci for _ in kept],
        }
        for metric, values in metrics.items():
            series.append({"metric": metric, "channel": channel, "steps": kept, "values": values})
    series.append(
        {"metric": "lm_loss", "channel": None, "steps": list(steps), "values": [3.0] * len(steps)}
    )
    return series


def new_run(server: FilledServer, key: str, **extra: Any) -> int:
    body = {
        "key": key,
        "name": key,
        "channels": [
            {"name": c, "target_share": t} for c, t in zip(CHANNELS, TARGETS, strict=True)
        ],
        **extra,
    }
    run_id: int = server.create_run(**body)["id"]
    return run_id


@pytest.fixture(scope="module")
def runs(filled_server: FilledServer) -> dict[str, int]:
    uniform = new_run(
        filled_server,
        "uniform",
        project="fin-cpt",
        tags=["baseline"],
        config={"lr": 3e-4, "note": "<b>bold?</b>"},
    )
    filled_server.ingest(uniform, run_series(CHANNELS, range(STEPS)))
    reweighted = new_run(filled_server, "reweighted", project="fin-cpt", tags=["reweight"])
    filled_server.ingest(reweighted, run_series(CHANNELS, range(STEPS), offset=-0.2))
    web = filled_server.create_run(
        key="web-only",
        name="web-only",
        project="web",
        tags=["baseline"],
        channels=[{"name": "general"}],
    )["id"]
    filled_server.ingest(web, run_series(["general"], range(10)))
    return {"uniform": uniform, "reweighted": reweighted, "web": web}


def wait_for_chart(opened: Any, chart_id: str) -> None:
    opened.wait(f"(document.getElementById('{chart_id}')?.data ?? []).length > 0")


def expected_losses(metric: str = "loss") -> dict[str, list[float]]:
    extra = 0.01 if metric == "loss_sample_mean" else 0.0
    return {
        c: [loss(ci, s) + extra for s in range(STEPS) if present(c, s)]
        for ci, c in enumerate(CHANNELS)
    }


def test_every_page_loads_without_console_errors_at_laptop_and_wide_widths(
    open_dashboard: Any, runs: dict[str, int], artifacts: Path
) -> None:
    pages = [
        ("#/runs", "runs", None),
        (f"#/runs/{runs['uniform']}", "run", "loss-chart"),
        (f"#/compare?runs={runs['uniform']},{runs['reweighted']}", "compare", None),
    ]
    for width, height in [(1366, 768), (2560, 1440)]:
        for route, ready, chart in pages:
            opened = open_dashboard(route, ready=ready, viewport=(width, height))
            if chart:
                wait_for_chart(opened, chart)
            if ready == "compare":
                opened.wait(
                    "document.querySelectorAll('#compare-grid .js-plotly-plot').length === 4"
                )
            assert opened.errors == [], f"{route} at {width}px"
            if chart:
                # plotly.js ran inside a switch of Error.stackTraceLimit (dashboard/mount.py):
                # Chrome's default is back, and errors have stacks again
                limit = opened.page.evaluate("[Error.stackTraceLimit, typeof new Error().stack]")
                assert limit == [10, "string"]
            overflow = opened.page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{route} scrolls sideways at {width}px"
            if ready in ("run", "compare"):
                opened.page.screenshot(path=str(artifacts / f"{ready}_{width}.png"), full_page=True)


def all_runs(server: FilledServer) -> int:
    count: int = server.client.get("/api/v1/runs").json()["count"]
    return count


def test_runs_page_shows_last_values_and_filters_by_project_tag_and_search(
    open_dashboard: Any, filled_server: FilledServer, runs: dict[str, int]
) -> None:
    opened = open_dashboard("#/runs", ready="runs")
    page = opened.page
    rows = page.locator("#runs-body tr")
    assert rows.count() == all_runs(filled_server)
    row = page.locator(f"#runs-body tr[data-run-id='{runs['uniform']}']")
    assert row.locator("td").nth(4).text_content() == str(STEPS - 1)
    chip = row.locator(".value-chip[data-channel='general']")
    assert chip.text_content() == f"general {loss(0, STEPS - 1):.4g}"

    page.select_option("#filter-project", "web")
    opened.wait("document.querySelectorAll('#runs-body tr').length === 1")
    assert page.locator("#runs-body tr a").text_content() == "web-only"
    assert "project=web" in page.evaluate("location.hash")

    page.select_option("#filter-project", "")
    page.select_option("#filter-tag", "baseline")
    opened.wait("document.querySelectorAll('#runs-body tr').length === 2")
    page.fill("#filter-q", "unif")
    opened.wait("document.querySelectorAll('#runs-body tr').length === 1")
    assert page.locator("#runs-body tr a").text_content() == "uniform"
    assert opened.errors == []


def test_run_page_has_one_trace_per_channel_with_every_ingested_point(
    open_dashboard: Any, runs: dict[str, int]
) -> None:
    opened = open_dashboard(f"#/runs/{runs['uniform']}", ready="run")
    wait_for_chart(opened, "loss-chart")
    traces = opened.traces("loss-chart", "loss")
    assert [t["channel"] for t in traces] == CHANNELS
    expected = expected_losses()
    for trace in traces:
        steps = [s for s in range(STEPS) if present(trace["channel"], s)]
        assert trace["x"] == steps
        assert trace["y"] == expected[trace["channel"]]
    assert len(traces[2]["x"]) == 40  # finance/fast: absent every third step, never 0 or NaN
    assert opened.traces("loss-chart", "raw") == []

    # sample-mean toggle
    opened.page.check("input[name='loss-mode'][value='loss_sample_mean']")
    ys = {t["channel"]: t["y"] for t in opened.traces("loss-chart", "loss")}
    assert ys == expected_losses("loss_sample_mean")

    # EMA smoothing: smoothed curve plus the raw one drawn faintly
    opened.page.check("input[name='loss-mode'][value='loss']")
    opened.page.fill("#smoothing", "0.5")
    raw = opened.traces("loss-chart", "raw")
    smooth = opened.traces("loss-chart", "loss")
    assert [t["channel"] for t in raw] == CHANNELS
    assert raw[0]["y"] == expected["general"]
    x0, x1 = expected["general"][:2]
    assert smooth[0]["y"][0] == pytest.approx(x0, rel=1e-12)
    assert smooth[0]["y"][1] == pytest.approx((0.25 * x0 + 0.5 * x1) / 0.75, rel=1e-12)

    opened.page.check("#log-y")
    assert opened.page.evaluate("document.getElementById('loss-chart').layout.yaxis.type") == "log"

    # token share against the target mix, and the weights
    shares = {t["channel"]: t for t in opened.traces("share-chart", "share")}
    targets = {t["channel"]: t["y"] for t in opened.traces("share-chart", "target")}
    assert targets == {c: [t, t] for c, t in zip(CHANNELS, TARGETS, strict=True)}
    assert shares["general"]["y"][1] == pytest.approx(
        tokens(0, 1) / sum(tokens(j, 1) for j in range(4))
    )
    weights = {t["channel"]: t["y"] for t in opened.traces("weight-chart", "weight")}
    assert weights[XSS] == [1.3] * STEPS
    assert opened.errors == []


def test_folding_a_parent_draws_its_token_weighted_loss(
    open_dashboard: Any, runs: dict[str, int]
) -> None:
    opened = open_dashboard(f"#/runs/{runs['uniform']}", ready="run")
    wait_for_chart(opened, "loss-chart")
    opened.page.click(".tree-row[data-path='finance'] button.fold")
    traces = opened.traces("loss-chart", "loss")
    assert [t["channel"] for t in traces] == ["general", "finance", XSS]
    finance = traces[1]
    assert finance["x"] == list(range(STEPS))
    for step, value in zip(finance["x"], finance["y"], strict=True):
        parts = [(loss(ci, step), tokens(ci, step)) for ci in (1, 2) if present(CHANNELS[ci], step)]
        want = sum(v * n for v, n in parts) / sum(n for _, n in parts)
        assert value == pytest.approx(want, rel=1e-12)
    share = {t["channel"]: t for t in opened.traces("share-chart", "target")}
    assert share["finance"]["y"] == [pytest.approx(0.3), pytest.approx(0.3)]
    # unfold again: the children come back
    opened.page.click(".tree-row[data-path='finance'] button.fold")
    assert [t["channel"] for t in opened.traces("loss-chart", "loss")] == CHANNELS
    assert opened.errors == []


def test_compare_page_draws_each_channel_with_one_trace_per_run(
    open_dashboard: Any, runs: dict[str, int]
) -> None:
    uniform, reweighted = runs["uniform"], runs["reweighted"]
    opened = open_dashboard(f"#/compare?runs={uniform},{reweighted}", ready="compare")
    page = opened.page
    opened.wait("document.querySelectorAll('#compare-grid .js-plotly-plot').length === 4")
    assert page.locator(".compare-cell h3").all_text_contents() == CHANNELS
    charts_js = "Array.from(document.querySelectorAll('#compare-grid .chart'))"
    charts = page.evaluate(
        f"{charts_js}.map(n => n.data.map(t => "
        "({name: t.name, x: Array.from(t.x), y: Array.from(t.y)})))"
    )
    for ci, (channel, traces) in enumerate(zip(CHANNELS, charts, strict=True)):
        steps = [s for s in range(STEPS) if present(channel, s)]
        assert [t["name"] for t in traces] == [f"uniform #{uniform}", f"reweighted #{reweighted}"]
        assert [t["x"] for t in traces] == [steps, steps]
        assert traces[0]["y"] == [loss(ci, s) for s in steps]
        assert traces[1]["y"] == [loss(ci, s) - 0.2 for s in steps]

    # zooming one chart zooms them all
    page.evaluate(f"Plotly.relayout({charts_js}[0], {{'xaxis.range': [10, 20]}})")
    opened.wait(f"{charts_js}.every(n => n._fullLayout.xaxis.range.join() === '10,20')")
    # dropping a run leaves one trace per chart and updates the link
    page.uncheck(f"#run-picker input[value='{reweighted}']")
    opened.wait(f"{charts_js}.every(n => n.data.length === 1)")
    assert page.evaluate("location.hash") == f"#/compare?runs={uniform}"
    assert opened.errors == []


def test_xss_channel_name_stays_inert_on_every_page(
    open_dashboard: Any, runs: dict[str, int]
) -> None:
    routes = [
        ("#/runs", "runs"),
        (f"#/runs/{runs['uniform']}", "run"),
        (f"#/compare?runs={runs['uniform']},{runs['reweighted']}", "compare"),
    ]
    for route, ready in routes:
        opened = open_dashboard(route, ready=ready)
        page = opened.page
        opened.wait(f"document.body.textContent.includes({XSS!r})")
        if ready == "compare":
            heading = page.locator(".compare-cell h3").nth(3).text_content()
            assert heading == XSS
        if ready == "run":
            opened.wait("document.querySelectorAll('.legendtext').length > 0")
            legend = page.evaluate(
                "Array.from(document.querySelectorAll('.legendtext')).map(n => n.textContent)"
            )
            assert XSS in legend, legend
        if ready == "run":
            assert '"note": "<b>bold?</b>"' in page.locator(".config").text_content()
            assert page.evaluate("document.querySelectorAll('main b').length") == 0
        page.wait_for_timeout(300)
        assert page.evaluate("document.querySelectorAll('img').length") == 0
        assert opened.dialogs == []
        assert opened.errors == []


def test_zoom_survives_live_refresh(
    open_dashboard: Any, filled_server: FilledServer, runs: dict[str, int]
) -> None:
    run_id = new_run(filled_server, "live-zoom")
    filled_server.ingest(run_id, run_series(CHANNELS, range(40)))
    opened = open_dashboard(f"#/runs/{run_id}", ready="run", poll_ms=300)
    wait_for_chart(opened, "loss-chart")
    page = opened.page
    box = page.locator("#loss-chart .nsewdrag").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, y + 2, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.6, y + 2, steps=5)
    page.mouse.up()
    zoomed = opened.x_range("loss-chart")
    assert 5 < zoomed[0] < zoomed[1] < 30

    filled_server.ingest(run_id, run_series(CHANNELS, range(40, 55)))
    opened.wait("document.getElementById('loss-chart').data[0].x.length === 55")
    assert opened.x_range("loss-chart") == pytest.approx(zoomed, abs=1e-9)
    assert opened.x_range("share-chart") == pytest.approx(zoomed, abs=1e-9)
    assert page.locator("[data-testid='last-step']").text_content() == "last step 54"
    assert opened.errors == []


def test_zoom_fetches_every_point_of_a_downsampled_run(
    open_dashboard: Any, filled_server: FilledServer
) -> None:
    n = 5000
    run_id = filled_server.create_run(key="long", name="long", channels=[{"name": "general"}])["id"]
    values = [2.0 + math.sin(s / 50) + (5.0 if s == 2050 else 0.0) for s in range(n)]
    filled_server.ingest(
        run_id,
        [
            {"metric": "loss", "channel": "general", "steps": list(range(n)), "values": values},
            {"metric": "tokens", "channel": "general", "steps": list(range(n)), "values": [1] * n},
        ],
    )
    opened = open_dashboard(f"#/runs/{run_id}", ready="run", max_points=200)
    wait_for_chart(opened, "loss-chart")
    overview = opened.traces("loss-chart", "loss")[0]
    assert len(overview["x"]) <= 200
    assert 2050 in overview["x"]  # min/max downsampling keeps the one-step spike
    opened.page.evaluate(
        "Plotly.relayout(document.getElementById('loss-chart'), {'xaxis.range': [2000, 2100]})"
    )
    opened.wait(
        """document.getElementById('loss-chart').data[0].x
                   .filter(s => s >= 2000 && s <= 2100).length === 101"""
    )
    trace = opened.traces("loss-chart", "loss")[0]
    window = [(x, y) for x, y in zip(trace["x"], trace["y"], strict=True) if 2000 <= x <= 2100]
    assert window == [(s, values[s]) for s in range(2000, 2101)]
    assert opened.errors == []

    # the compare page fetches the detail of a zoomed window too
    compare = open_dashboard(f"#/compare?runs={run_id}", ready="compare", max_points=200)
    chart_js = "document.querySelector('#compare-grid .chart')"
    compare.wait(f"{chart_js}?.data?.length === 1")
    assert len(compare.page.evaluate(f"{chart_js}.data[0].x")) <= 200
    compare.page.evaluate(f"Plotly.relayout({chart_js}, {{'xaxis.range': [2000, 2100]}})")
    compare.wait(f"{chart_js}.data[0].x.filter(s => s >= 2000 && s <= 2100).length === 101")
    assert compare.errors == []

    # back to the full view: the detail is dropped
    opened.page.evaluate(
        "Plotly.relayout(document.getElementById('loss-chart'), {'xaxis.autorange': true})"
    )
    opened.wait("document.getElementById('loss-chart').data[0].x.length <= 200")
    assert opened.errors == []


def test_read_token_is_entered_once_and_kept(
    open_dashboard: Any, filled_server: FilledServer, runs: dict[str, int]
) -> None:
    opened = open_dashboard("#/runs", ready="", token=None)
    page = opened.page
    banner = page.locator("#banner")
    banner.wait_for(state="visible")
    assert "401" in banner.text_content()
    assert "Enter a read token" in banner.text_content()
    page.fill("#token-input", filled_server.read_token)
    page.click("#token-form button")
    opened.wait("document.body.dataset.ready === 'runs'")
    assert page.locator("#runs-body tr").count() == all_runs(filled_server)
    assert banner.is_hidden()
    page.reload()
    opened.wait("document.body.dataset.ready === 'runs'")
    assert page.locator("#runs-body tr").count() == all_runs(filled_server)
    assert page.evaluate("localStorage.getItem('lossradar.readToken')") == filled_server.read_token


def test_alert_ingested_while_the_page_is_open_appears_without_reload(
    open_dashboard: Any, filled_server: FilledServer
) -> None:
    run_id = new_run(filled_server, "alerting")
    filled_server.ingest(run_id, run_series(CHANNELS, range(30)))
    opened = open_dashboard(f"#/runs/{run_id}", ready="run", poll_ms=300)
    wait_for_chart(opened, "loss-chart")
    page = opened.page
    assert page.locator(".alert-row").count() == 0

    late = run_series(CHANNELS, range(30, 33))
    slow_loss = next(s for s in late if s["metric"] == "loss" and s["channel"] == "finance/slow")
    slow_loss["values"] = ["NaN"] * 3  # from step 30 on, the finance/slow loss is NaN
    filled_server.ingest(run_id, late)

    opened.wait("document.querySelectorAll('.alert-row').length > 0")
    row = page.locator(".alert-row").first
    cells = row.locator("td").all_text_contents()
    assert cells[1:4] == ["finance/slow", "non_finite", "30"]
    opened.wait("(document.getElementById('loss-chart').data.find(t => t.meta?.kind === 'alert'))")
    marker = opened.traces("loss-chart", "alert")[0]
    assert marker["x"] == [30]
    assert marker["y"] == [loss(1, 29)]  # NaN has no height: the last finite value before it
    shapes = page.evaluate("document.getElementById('loss-chart').layout.shapes.map(s => s.x0)")
    assert 30 in shapes

    # the list jumps to the alert: zoom around its start step, channel and step in the URL
    row.click()
    start, end = opened.x_range("loss-chart")
    assert start < 30 < end
    assert end - start <= 60
    assert page.evaluate("location.hash") == f"#/runs/{run_id}?channel=finance%2Fslow&step=30"
    assert opened.errors == []

    runs_page = open_dashboard("#/runs", ready="runs")
    badge = runs_page.page.locator(
        f"tr[data-run-id='{run_id}'] .badge[data-channel='finance/slow']"
    )
    assert badge.text_content() == "finance/slow"
    assert runs_page.errors == []
