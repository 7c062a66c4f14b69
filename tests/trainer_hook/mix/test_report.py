"""`mix report`: planned against consumed tokens, where "consumed" is what the hook counted.

A run is simulated on the BlendedDataset Megatron builds from the printed ``--data-path``:
``ChannelLoss`` counts each channel's tokens from the batches' ``loss_mask`` and ``dataset_id``,
and a real sink (JSONL file, or the HTTP sender to a real server process) records them.
"""

from __future__ import annotations

import io
import json
import shlex
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import torch

from trainer_hook import ChannelLoss
from trainer_hook.mix import (
    MixPlanError,
    build_report,
    channel_map,
    consumed_from_jsonl,
    consumed_from_server,
    data_path_string,
    write_channel_map,
)
from trainer_hook.mix.cli import main
from trainer_hook.mix.resolve import ResolvedPlan
from trainer_hook.sinks import HttpSender, JsonlSink, MetricSink

from .conftest import build_blend

pytestmark = pytest.mark.megatron

STEPS, MICRO_BATCHES, MICRO_BATCH = 40, 2, 16  # 1280 samples of 16 tokens


def simulate_run(plan: ResolvedPlan, sink: MetricSink) -> dict[str, float]:
    """Train-loop stand-in: micro-batches from the blend through ChannelLoss, one step report
    per optimizer step to ``sink``; returns the tokens the test itself counted per channel."""
    blend = build_blend(shlex.split(data_path_string(plan))[1:], plan.train_samples)
    names = [p.channel for p in plan.prefixes]
    hook = ChannelLoss(channels=names)
    counted = dict.fromkeys(names, 0.0)
    generator = torch.Generator().manual_seed(0)
    index = 0
    for step in range(1, STEPS + 1):
        for _ in range(MICRO_BATCHES):
            samples = [blend[index + i] for i in range(MICRO_BATCH)]
            index += MICRO_BATCH
            loss_mask = torch.stack([torch.as_tensor(s["loss_mask"]) for s in samples])
            loss_mask[0, :3] = 0  # a few masked tokens, as with padding
            ids = torch.tensor([int(s["dataset_id"]) for s in samples])
            per_token = torch.rand(loss_mask.shape, generator=generator) * 5
            hook.accumulate(per_token, loss_mask, ids)
            for row, k in enumerate(ids.tolist()):
                counted[names[k]] += float(loss_mask[row].sum())
        report = hook.step()
        sink.log_step(step, report.run_metrics(), report.channel_metrics())
        if step == 10:  # a resumed run logs a step again: it must count once
            sink.log_step(step, report.run_metrics(), report.channel_metrics())
    assert sink.flush(timeout=60)
    sink.close(timeout=60)
    return counted


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["mix", *argv])
    return code, out.getvalue(), err.getvalue()


EXPECTED_ORDER = [
    "finance",
    "finance/slow",
    "finance/slow/credit",
    "finance/slow/qa",
    "finance/fast",
    "math",
    "general",
]


def test_jsonl_report_matches_the_tokens_the_hook_counted(
    planned: ResolvedPlan, tmp_path: Path
) -> None:
    path = tmp_path / "run.jsonl"
    counted = simulate_run(planned, JsonlSink(path))
    assert len(path.read_text().splitlines()) == STEPS + 1  # step 10 twice
    consumed = consumed_from_jsonl(path)
    assert consumed == counted
    assert sum(consumed.values()) == STEPS * MICRO_BATCHES * (MICRO_BATCH * 16 - 3)

    shares = {e["name"]: e["target_share"] for e in channel_map(planned)["channels"]}
    rows = build_report(shares, consumed)
    assert [r.name for r in rows] == EXPECTED_ORDER
    by_name = {r.name: r for r in rows}
    total = sum(counted.values())
    finance = counted["finance/slow/credit"] + counted["finance/slow/qa"] + counted["finance/fast"]
    assert by_name["finance"].consumed_tokens == finance
    assert by_name["finance"].planned_share == pytest.approx(0.3, abs=1e-15)
    assert by_name["finance/slow"].planned_tokens == pytest.approx(0.225 * total)
    assert [r.depth for r in rows] == [0, 1, 2, 2, 1, 0, 0]
    # The greedy blend keeps each leaf within one sample (16 tokens) of its share; up to three
    # leaves add up in a node, and the 3 masked tokens of each micro-batch skew a little more.
    tolerance = (3 * 16 + 3 * STEPS * MICRO_BATCHES) / total
    for row in rows:
        assert row.planned_share is not None
        assert abs(row.consumed_share - row.planned_share) < tolerance, row

    write_channel_map(planned, tmp_path / "map.json")
    code, out, _ = run_cli("report", str(path), "--channel-map", str(tmp_path / "map.json"))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"run {path} (JSONL): {round(total):,} tokens consumed in 5 channels"
    table = {line.split()[0]: line.split() for line in lines[3:]}
    assert list(table) == ["finance", "slow", "credit", "qa", "fast", "math", "general"]
    assert table["finance"][1] == "30.00%"
    assert table["finance"][5] == f"{round(finance):,}"
    assert table["general"][5] == f"{round(counted['general']):,}"


def test_report_with_the_plan_shows_progress_against_the_whole_budget(
    planned: ResolvedPlan, tmp_path: Path
) -> None:
    path = tmp_path / "run.jsonl"
    lines = []
    for step, tokens in [(1, {"math": 100.0, "general": 300.0}), (2, {"general": 400.0})]:
        channels = {name: {"tokens": t, "loss": 2.0} for name, t in tokens.items()}
        lines.append(json.dumps({"step": step, "run": {}, "channels": channels}))
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = run_cli("report", str(path), "--plan", str(tmp_path / "plan.toml"))
    assert code == 0
    text = out.splitlines()
    assert text[1] == f"plan {tmp_path / 'plan.toml'}: 160,000 tokens (0.5% done)"
    rows = {line.split()[0]: line.split() for line in text[4:]}
    # general: planned 50% of 800 consumed = 400, consumed 700 of a 80,000-token run plan.
    assert rows["general"] == [
        "general",
        "50.00%",
        "87.50%",
        "+37.50pp",
        "400",
        "700",
        "80,000",
        "0.9%",
    ]
    assert rows["credit"] == ["credit", "11.25%", "0.00%", "-11.25pp", "90", "0", "18,000", "0.0%"]


def test_report_names_unplanned_channels(tmp_path: Path) -> None:
    rows = build_report({"a": 1.0}, {"a": 30.0, "b/x": 10.0})
    assert [(r.name, r.planned_share, r.consumed_tokens) for r in rows] == [
        ("a", 1.0, 30.0),
        ("b", None, 10.0),
        ("b/x", None, 10.0),
    ]


def test_group_rows_logged_by_the_adapter_are_not_counted_twice() -> None:
    planned = {"f/slow": 0.25, "f/fast": 0.25, "g": 0.5}
    consumed = {"f/slow": 30.0, "f/fast": 10.0, "g": 60.0, "f": 40.0}  # "f": the adapter's rollup
    rows = {r.name: r for r in build_report(planned, consumed)}
    assert list(rows) == ["f", "f/slow", "f/fast", "g"]
    assert rows["f"].consumed_tokens == 40.0
    assert rows["f"].consumed_share == 0.4
    assert rows["g"].consumed_share == 0.6
    assert rows["f"].planned_tokens == 50.0


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Any]:
    from tests.server.live import start_live_server

    with start_live_server(tmp_path / "server") as server:
        yield server


def test_server_report_matches_the_tokens_the_hook_counted(
    planned: ResolvedPlan, tmp_path: Path, live: Any
) -> None:
    targets = [
        {"name": e["name"], "target_share": e["target_share"]}
        for e in channel_map(planned)["channels"]
    ]
    sender = HttpSender(
        url=live.url,
        token=live.write_token,
        run_key="mix-report-run",
        channels=targets,
        spool_dir=tmp_path / "spool",
    )
    counted = simulate_run(planned, sender)

    run = consumed_from_server(live.url, "mix-report-run", token=live.read_token)
    assert run.consumed == counted
    assert run.planned == {t["name"]: t["target_share"] for t in targets}
    by_id = consumed_from_server(live.url, str(run.run_id), token=live.read_token)
    assert by_id.consumed == counted

    code, out, err = run_cli(
        "report", "mix-report-run", "--server", live.url, "--token", live.read_token
    )
    assert (code, err) == (0, "")
    total = sum(counted.values())
    assert out.splitlines()[0] == (
        f"run mix-report-run (id {run.run_id}) on {live.url}: {round(total):,} tokens consumed "
        "in 5 channels"
    )
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:]}
    assert rows["math"][1] == "20.00%"
    assert rows["math"][5] == f"{round(counted['math']):,}"

    code, _, err = run_cli(
        "report", "no-such-run", "--server", live.url, "--token", live.read_token
    )
    assert code == 2
    assert "run 'no-such-run' not found on" in err
    with pytest.raises(MixPlanError, match="refused the request \\(401\\)"):
        consumed_from_server(live.url, "mix-report-run", token=None)
