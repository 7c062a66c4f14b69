"""Planned against consumed tokens per channel, at every level of the channel tree.

Consumed tokens are the per-channel ``tokens`` metric summed over steps, read either

* from the server: ``GET /api/v1/runs/by-key/{key}`` (or ``/runs/{id}``), then
  ``GET /api/v1/runs/{id}/series?metric=tokens``; or
* from a file of the JSONL sink, one record per step:
  ``{"step", "run", "channels": {name: {metric: value}}}``. A step written twice (a resumed run)
  counts once, the last record wins, as on the server.

An inner node's tokens are the sum over the channels below it, and so is its planned share.
``planned tokens = planned share * consumed total``: what the plan asks of the tokens consumed.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer_hook.mix.render import table
from trainer_hook.mix.spec import MixPlanError


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportRow:
    name: str
    depth: int
    planned_share: float | None
    """None when the plan does not know the channel."""
    consumed_tokens: float
    consumed_share: float
    planned_tokens: float | None
    """``planned_share * consumed total``."""
    run_planned_tokens: float | None = None
    """Tokens the plan gives this channel over the whole run (only with a plan file)."""


def consumed_from_jsonl(path: str | Path) -> dict[str, float]:
    """Sum of each channel's ``tokens`` over the steps of a JSONL sink file."""
    source = Path(path)
    if not source.is_file():
        raise MixPlanError(f"JSONL file {str(source)!r} does not exist")
    by_step: dict[int, Mapping[str, Any]] = {}
    with source.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step = int(record["step"])
                channels = record.get("channels") or {}
            except (ValueError, KeyError, TypeError) as exc:
                raise MixPlanError(
                    f"{source}:{number}: not a JSONL sink record ({exc}); expected "
                    '{"step": N, "run": {...}, "channels": {name: {metric: value}}}'
                ) from None
            by_step[step] = channels
    consumed: dict[str, float] = {}
    for channels in by_step.values():
        for name, metrics in channels.items():
            if isinstance(metrics, Mapping) and "tokens" in metrics:
                consumed[name] = consumed.get(name, 0.0) + float(metrics["tokens"])
    return consumed


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerRun:
    run_id: int
    key: str
    planned: dict[str, float]
    """Target shares registered with the run (channels without one are left out)."""
    consumed: dict[str, float]


def _get(url: str, token: str | None, timeout: float) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def consumed_from_server(
    server: str, run: str, *, token: str | None = None, timeout: float = 30.0
) -> ServerRun:
    """Read a run (by key, or by numeric id when no run has that key) and its consumed tokens."""
    api = server.rstrip("/") + "/api/v1"
    try:
        try:
            info = _get(f"{api}/runs/by-key/{urllib.parse.quote(run, safe='')}", token, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or not run.isdigit():
                raise
            info = _get(f"{api}/runs/{int(run)}", token, timeout)
        run_id = int(info["id"])
        body = _get(f"{api}/runs/{run_id}/series?metric=tokens", token, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise MixPlanError(
                f"{server} refused the request ({exc.code}); give a read token with --token or "
                "LOSSRADAR_TOKEN (`lossradar token create --scope read`)"
            ) from None
        if exc.code == 404:
            raise MixPlanError(
                f"run {run!r} not found on {server}; give its key (LOSSRADAR_RUN_KEY) or id"
            ) from None
        raise MixPlanError(f"{server} answered {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise MixPlanError(
            f"cannot reach the lossradar server at {server} ({exc.reason}); check --server or "
            "LOSSRADAR_URL"
        ) from None
    consumed: dict[str, float] = {}
    for series in body.get("series", []):
        if series.get("metric") != "tokens" or series.get("channel") is None:
            continue
        if series.get("downsampled"):
            raise MixPlanError(
                f"{server} downsampled the tokens series of {series['channel']!r}; sums need "
                "every point"
            )
        total = sum(float(v) for v in series.get("values", []))
        consumed[series["channel"]] = consumed.get(series["channel"], 0.0) + total
    planned = {
        c["name"]: float(c["target_share"])
        for c in info.get("channels", [])
        if c.get("target_share") is not None
    }
    return ServerRun(run_id=run_id, key=str(info.get("key")), planned=planned, consumed=consumed)


def _ancestors(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def build_report(
    planned: Mapping[str, float],
    consumed: Mapping[str, float],
    run_planned_tokens: Mapping[str, float] | None = None,
) -> list[ReportRow]:
    """Rows for every channel and every ancestor, depth first; planned channels in plan order.

    ``planned`` and ``consumed`` are keyed by channel name (``finance/slow/credit``); entries for
    group names (ancestors of other channels) are ignored and recomputed as sums of their leaves.
    ``run_planned_tokens`` is keyed by any node name.
    """
    # Group rows (the Megatron adapter logs ``finance`` = sum of ``finance/...``) would count
    # twice: a name that is an ancestor of another channel is recomputed from its leaves.
    every = {*planned, *consumed}
    groups = {n for n in every if any(o.startswith(n + "/") for o in every)}
    planned = {k: v for k, v in planned.items() if k not in groups}
    consumed = {k: v for k, v in consumed.items() if k not in groups}
    order: list[str] = []
    for name in [*planned, *consumed]:
        for node in _ancestors(name):
            if node not in order:
                order.append(node)
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    for node in order:
        parent = node.rsplit("/", 1)[0] if "/" in node else None
        (children.setdefault(parent, []) if parent else roots).append(node)
    total = sum(consumed.values())

    def below(node: str, values: Mapping[str, float]) -> float | None:
        hits = [v for k, v in values.items() if k == node or k.startswith(node + "/")]
        return sum(hits) if hits else None

    rows: list[ReportRow] = []

    def visit(node: str) -> None:
        share = below(node, planned)
        tokens = below(node, consumed) or 0.0
        rows.append(
            ReportRow(
                name=node,
                depth=node.count("/"),
                planned_share=share,
                consumed_tokens=tokens,
                consumed_share=tokens / total if total > 0 else 0.0,
                planned_tokens=None if share is None else share * total,
                run_planned_tokens=(run_planned_tokens or {}).get(node),
            )
        )
        for child in children.get(node, []):
            visit(child)

    for root in roots:
        visit(root)
    return rows


def report_table(rows: list[ReportRow]) -> str:
    """Planned vs consumed, one line per tree node; drift in percentage points of the total."""
    with_run = any(r.run_planned_tokens is not None for r in rows)
    header = ["channel", "planned", "consumed", "drift", "planned tokens", "consumed tokens"]
    header += ["run plan", "done"] if with_run else []
    out = []
    for r in rows:
        planned = "-" if r.planned_share is None else f"{r.planned_share * 100:.2f}%"
        drift = (
            "unplanned"
            if r.planned_share is None
            else f"{(r.consumed_share - r.planned_share) * 100:+.2f}pp"
        )
        cells = [
            "  " * r.depth + r.name.rsplit("/", 1)[-1],
            planned,
            f"{r.consumed_share * 100:.2f}%",
            drift,
            "-" if r.planned_tokens is None else f"{round(r.planned_tokens):,}",
            f"{round(r.consumed_tokens):,}",
        ]
        if with_run:
            run = r.run_planned_tokens
            cells += [
                "-" if run is None else f"{round(run):,}",
                "-"
                if not run or not math.isfinite(run)
                else f"{r.consumed_tokens / run * 100:.1f}%",
            ]
        out.append(cells)
    return table(header, out)
