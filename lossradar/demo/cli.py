"""`lossradar demo [--steps N] [--corrupt CHANNEL@STEP:KIND] [--keep-serving] ...`."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from lossradar.demo.corrupt import KINDS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lossradar demo",
        description="A real blended training run (finance:math:code:general = 3:2:2:3) watched "
        "by lossradar end to end: server, channel loss, reweighting, alert, dashboard.",
    )
    p.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300, ~3 min)")
    p.add_argument(
        "--corrupt",
        default="finance@150:language",
        help=f"corrupt CHANNEL@STEP:KIND, KIND one of {', '.join(KINDS)}; 'none' for a clean run "
        "(default finance@150:language)",
    )
    p.add_argument(
        "--reweight",
        default="progress",
        choices=["progress", "doremi", "none"],
        help="channel-level reweighting strategy (default progress)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--seed", type=int, default=1234, help="model initialisation seed")
    p.add_argument("--batch-size", type=int, default=16, help="samples of 256 tokens per step")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="keep the server database, spool and logs here (default: a temporary directory)",
    )
    p.add_argument(
        "--keep-serving", action="store_true", help="leave the dashboard up until Ctrl-C"
    )
    p.add_argument(
        "--alert-wait", type=float, default=20.0, help="seconds to wait for the alert at the end"
    )
    p.add_argument("--summary-json", type=Path, help="also write the summary as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "demo":
        args = args[1:]
    ns = _parser().parse_args(args)
    from lossradar.demo.runner import DemoOptions, run_demo

    data_dir: Path = ns.data_dir or Path(tempfile.mkdtemp(prefix="lossradar-demo-"))
    temp = None if ns.data_dir else data_dir
    # SIGTERM ends the demo like Ctrl-C, so the server child and the temp dir are cleaned up
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        options = DemoOptions(
            steps=ns.steps,
            corrupt=None if ns.corrupt in ("", "none") else ns.corrupt,
            reweight=ns.reweight,
            device=ns.device,
            seed=ns.seed,
            batch_size=ns.batch_size,
            data_dir=data_dir,
            keep_serving=ns.keep_serving,
            alert_wait_s=ns.alert_wait,
            summary_json=ns.summary_json,
        )
    except ValueError as exc:
        print(f"lossradar demo: {exc}", file=sys.stderr)
        return 2
    try:
        return run_demo(options)
    except KeyboardInterrupt:
        print("lossradar demo: interrupted", file=sys.stderr)
        return 130
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
