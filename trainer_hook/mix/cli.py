"""``lossradar mix plan PLAN ...`` and ``lossradar mix report RUN ...``.

``main(argv)`` takes argv starting with the command (``["mix", "plan", ...]``), as
``lossradar/cli.py`` passes it; ``python -m trainer_hook.mix.cli plan ...`` works too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from trainer_hook.mix.megatron_args import (
    data_path_string,
    read_channel_map,
    write_channel_map,
    write_data_args_file,
)
from trainer_hook.mix.plan_file import load_plan
from trainer_hook.mix.render import plan_summary, plan_table
from trainer_hook.mix.report import (
    build_report,
    consumed_from_jsonl,
    consumed_from_server,
    report_table,
)
from trainer_hook.mix.resolve import ResolvedPlan, resolve_plan
from trainer_hook.mix.spec import MixPlanError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lossradar mix", description="Plan a Megatron data mix and check what a run consumed."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    plan = sub.add_parser(
        "plan", help="resolve a plan file into --data-path weights and a channel map"
    )
    plan.add_argument("plan", help="plan file (.toml, .yaml or .json)")
    plan.add_argument(
        "--data-args-path",
        metavar="FILE",
        help="write the weights to FILE for Megatron's --data-args-path instead of printing "
        "--data-path",
    )
    plan.add_argument(
        "--channel-map",
        metavar="FILE",
        help="write the channel map (names and target shares) for the Megatron adapter",
    )
    plan.add_argument(
        "--strict", action="store_true", help="exit with status 1 when there are warnings"
    )
    report = sub.add_parser("report", help="planned against consumed tokens per channel")
    report.add_argument("run", help="run key or id on the server, or a JSONL sink file (.jsonl)")
    report.add_argument(
        "--server",
        default=os.environ.get("LOSSRADAR_URL", "http://127.0.0.1:8765"),
        help="server URL (default: $LOSSRADAR_URL or http://127.0.0.1:8765)",
    )
    report.add_argument(
        "--token", default=os.environ.get("LOSSRADAR_TOKEN"), help="read token ($LOSSRADAR_TOKEN)"
    )
    planned = report.add_mutually_exclusive_group()
    planned.add_argument("--plan", metavar="PLAN", help="planned shares from this plan file")
    planned.add_argument(
        "--channel-map", metavar="FILE", help="planned shares from this channel map file"
    )
    return parser


def _plan(args: argparse.Namespace) -> int:
    plan = resolve_plan(load_plan(args.plan))
    print(plan_summary(plan))
    print()
    print(plan_table(plan))
    if plan.warnings:
        print()
        for warning in plan.warnings:
            print(f"warning ({warning.kind}): {warning.message}")
    print()
    if args.data_args_path:
        path = write_data_args_file(plan, args.data_args_path)
        print(f"--data-args-path {path} --train-samples {plan.train_samples}")
    else:
        print(f"{data_path_string(plan)} --train-samples {plan.train_samples}")
    if args.channel_map:
        print(f"channel map: {write_channel_map(plan, args.channel_map)}")
    return 1 if args.strict and plan.warnings else 0


def _report(args: argparse.Namespace) -> int:
    plan: ResolvedPlan | None = None
    planned: dict[str, float] = {}
    if args.plan:
        plan = resolve_plan(load_plan(args.plan))
        planned = {c.name: float(c.share) for c in plan.channels if c.is_leaf}
    elif args.channel_map:
        planned = read_channel_map(args.channel_map)
    if args.run.endswith(".jsonl") or os.path.isfile(args.run):
        consumed = consumed_from_jsonl(args.run)
        title = f"run {args.run} (JSONL)"
    else:
        run = consumed_from_server(args.server, args.run, token=args.token)
        consumed = run.consumed
        planned = planned or run.planned
        title = f"run {run.key} (id {run.run_id}) on {args.server}"
    total = sum(consumed.values())
    print(f"{title}: {round(total):,} tokens consumed in {len(consumed)} channels")
    if plan is not None:
        print(
            f"plan {plan.spec.source}: {round(float(plan.total_tokens)):,} tokens "
            f"({total / float(plan.total_tokens) * 100:.1f}% done)"
        )
    if not planned:
        print("no planned shares: give --plan or --channel-map, or register target shares")
    print()
    run_tokens = None if plan is None else {c.name: float(c.tokens) for c in plan.channels}
    print(report_table(build_report(planned, consumed, run_tokens)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] == "mix":
        args_in = args_in[1:]
    args = _parser().parse_args(args_in)
    try:
        return _plan(args) if args.action == "plan" else _report(args)
    except MixPlanError as exc:
        print(f"lossradar mix: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
