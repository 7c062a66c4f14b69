"""Plain-text tables for the plan (``mix plan``) and the consumption report (``mix report``)."""

from __future__ import annotations

from collections.abc import Sequence

from trainer_hook.mix.resolve import ResolvedPlan


def _int(value: float) -> str:
    return f"{round(value):,}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-align the first column, right-align the others."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        rest = zip(row[1:], widths[1:], strict=True)
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in rest]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def plan_table(plan: ResolvedPlan) -> str:
    """Every level of the tree: share, planned tokens/samples, data size, epochs."""
    header = [
        "channel",
        "share",
        "tokens",
        "samples",
        "seqs",
        "data tokens",
        "data samples",
        "epochs",
    ]
    rows = []
    for node in plan.channels:
        label = "  " * node.depth + node.name.rsplit("/", 1)[-1]
        rows.append(
            [
                label,
                f"{float(node.share) * 100:.2f}%",
                _int(float(node.tokens)),
                _int(float(node.documents)),
                _int(float(node.megatron_samples)),
                _int(node.data.tokens),
                _int(node.data.documents),
                f"{float(node.epochs):.2f}",
            ]
        )
    return table(header, rows)


def plan_summary(plan: ResolvedPlan) -> str:
    spec = plan.spec
    return (
        f"plan {spec.source}: {_int(float(plan.total_tokens))} tokens in "
        f"{len(plan.prefixes)} prefixes; seq_length {spec.seq_length} -> "
        f"--train-samples {plan.train_samples}"
    )
