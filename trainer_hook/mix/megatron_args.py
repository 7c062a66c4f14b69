"""What a resolved plan hands to Megatron and to lossradar: ``--data-path``, the
``--data-args-path`` file, and the channel map file (docs/architecture.md).

Weights are printed as the shortest decimal that reads back as the same float; Megatron
normalises them again (``utils.normalize``), so they are the planned token shares.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from trainer_hook.mix.resolve import ResolvedPlan
from trainer_hook.mix.spec import MixPlanError


def data_path_args(plan: ResolvedPlan) -> list[str]:
    """``[w1, prefix1, w2, prefix2, ...]`` as Megatron's ``--data-path`` takes them."""
    args: list[str] = []
    for entry in plan.prefixes:
        args += [repr(float(entry.weight)), entry.prefix]
    return args


def data_path_string(plan: ResolvedPlan) -> str:
    """The exact ``--data-path ...`` argument string, shell-quoted."""
    return "--data-path " + " ".join(shlex.quote(a) for a in data_path_args(plan))


def write_data_args_file(plan: ResolvedPlan, path: str | Path) -> Path:
    """Write a ``--data-args-path`` file: one ``weight prefix`` pair per line.

    Megatron reads it as ``open(path).read().split()``, so prefixes must not contain whitespace.
    """
    lines = []
    for entry in plan.prefixes:
        if any(ch.isspace() for ch in entry.prefix):
            raise MixPlanError(
                f"entry {entry.channel!r}: prefix {entry.prefix!r} contains whitespace, which "
                "Megatron's --data-args-path splits on; rename the files or use --data-path"
            )
        lines.append(f"{float(entry.weight)!r} {entry.prefix}")
    out = Path(path)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def channel_map(plan: ResolvedPlan) -> dict[str, Any]:
    """The channel map of docs/architecture.md: one entry per prefix in ``--data-path`` order.

    A leaf with several prefixes has several entries with the same name; their target shares
    add up to the leaf's share.
    """
    return {
        "version": 1,
        "channels": [
            {"prefix": e.prefix, "name": e.channel, "target_share": float(e.weight)}
            for e in plan.prefixes
        ],
    }


def write_channel_map(plan: ResolvedPlan, path: str | Path) -> Path:
    out = Path(path)
    out.write_text(json.dumps(channel_map(plan), indent=1) + "\n", encoding="utf-8")
    return out


def read_channel_map(path: str | Path) -> dict[str, float]:
    """Planned token share per channel name from a channel map file (JSON, or YAML/TOML)."""
    from trainer_hook.mix.plan_file import read_document

    source = Path(path)
    if not source.is_file():
        raise MixPlanError(f"channel map {str(source)!r} does not exist; write it with mix plan")
    doc = read_document(source)
    entries = doc.get("channels")
    if doc.get("version") != 1 or not isinstance(entries, list):
        raise MixPlanError(
            f"{source}: not a channel map (needs version = 1 and a channels list); write it "
            "with `lossradar mix plan PLAN --channel-map FILE`"
        )
    shares: dict[str, float] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise MixPlanError(f"{source}: channels[{i}] needs a name")
        share = entry.get("target_share")
        if share is not None:
            shares[entry["name"]] = shares.get(entry["name"], 0.0) + float(share)
    return shares
