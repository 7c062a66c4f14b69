"""The one-screen summary printed at the end of `lossradar demo`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def _num(value: float | None, fmt: str = ".3f") -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return format(value, fmt)


def format_summary(
    *,
    steps: int,
    seconds: float,
    tokens: int,
    parameters: int,
    channels: Sequence[str],
    shares: Mapping[str, float],
    first: Mapping[str, Mapping[str, float]],
    last: Mapping[str, Mapping[str, float]],
    corruption: str | None,
    alerts: Sequence[Mapping[str, Any]],
    received: Sequence[Any],
    dashboard_url: str,
    api_url: str,
    token: str,
) -> str:
    """Channels table (target share, token share, first/last loss, weight), alerts, URLs."""
    lines = [
        "",
        "=" * 78,
        f"lossradar demo: {steps} steps, {tokens:,} tokens in {seconds:.0f} s "
        f"({tokens / max(seconds, 1e-9):,.0f} tok/s), GPT of {parameters / 1e6:.2f} M parameters",
        f"corruption: {corruption or 'none'}",
        "",
        f"{'channel':<10}{'target':>8}{'share':>8}{'loss@0':>9}{'loss@end':>10}{'weight':>8}",
    ]
    for name in channels:
        f0, fl = first.get(name, {}), last.get(name, {})
        lines.append(
            f"{name:<10}{shares.get(name, 0.0):>8.2f}{_num(fl.get('token_share'), '.2f'):>8}"
            f"{_num(f0.get('loss')):>9}{_num(fl.get('loss')):>10}{_num(fl.get('weight'), '.2f'):>8}"
        )
    lines.append("")
    if alerts:
        lines.append(f"alerts ({len(alerts)}):")
        for a in alerts[:6]:
            channel = a.get("channel") or "(run)"
            lines.append(
                f"  #{a.get('id')} {a.get('state'):<8} {a.get('rule'):<18} {channel:<10} "
                f"from step {a.get('start_step')}: {a.get('summary', '')}"[:110]
            )
    else:
        lines.append("alerts: none")
    lines.append(f"webhook messages received by the local receiver: {len(received)}")
    lines += [
        "",
        f"dashboard:  {dashboard_url}   (reads are open on this local server: no token needed)",
        f"REST API:   {api_url}/api/v1   (Authorization: Bearer {token})",
        "=" * 78,
    ]
    return "\n".join(lines)
