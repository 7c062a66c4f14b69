"""Benchmark: the HTTP sender in a simulated training loop through a 20-second server outage.

    python benchmarks/sender.py [--steps 3000] [--step-ms 10] [--outage-s 20]

A real lossradar server process (fresh SQLite database) sits behind a fault proxy running in its
own process; the proxy refuses connections for `--outage-s` seconds starting at step
`--outage-at`. The loop logs, per step, 16 channels x 4 metrics + 6 run metrics (70 points)
through one `log_step` call, after `--step-ms` of simulated accelerator work (a sleep: the host
thread waits with the GIL released, as it does on a device sync). The same loop runs first with
a NullSink as the baseline, side by side.

Figures:
- enqueue = one `log_step` call carrying one step's 70 points (perf_counter_ns around the call);
- step stall = a step's wall time beyond its simulated work: the log_step call plus any wait
  for the GIL held by the sender's threads when the work ends (the baseline's stall is the OS's
  own sleep overshoot on this machine; both are printed);
- lost = logged (metric, channel, step) points missing on the server, or with another value;
- duplicated = points the server acknowledged more than once (counted by the proxy).

The server and the proxy stand for a machine elsewhere on the network, and a training process
has more than one core: when this machine has more than one CPU (and `--no-pin` is not given),
the training loop's thread runs on CPU 0, and the server, the proxy and the sender's background
threads on CPUs 1.., so the server's work on the backlog after the outage does not steal the
training loop's core, as it never would in a real job. The NullSink baseline runs on CPU 0 too.

The last line is `sender enqueue_p50_us=.. enqueue_p99_us=.. lost=.. duplicated=..
max_step_stall_ms=..`, where max_step_stall_ms is the sender's largest step stall minus the
baseline's largest (the overshoot that is the machine's, not the sender's, is not charged).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.server.live import start_live_server  # noqa: E402
from tests.trainer_hook.sinks.points import server_points  # noqa: E402
from trainer_hook.sinks import HttpSender, MetricSink, NullSink  # noqa: E402

CHANNELS = [f"domain{i:02d}" for i in range(16)]


def step_metrics(step: int) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """One step's metrics: 6 run-level + 16 channels x 4."""
    run = {
        "lm_loss": 3.0 + 1.0 / (step + 1),
        "lr": 3e-4,
        "grad_norm": 1.0 + (step % 7) / 10,
        "loss_scale": 65536.0,
        "overflow_tokens": 0.0,
        "tokens_total": 65536.0,
    }
    channels = {
        c: {
            "loss": 2.0 + i / 10 + 1.0 / (step + 1),
            "tokens": 4096.0 + i,
            "samples": 4.0,
            "token_share": (4096.0 + i) / 65656.0,
        }
        for i, c in enumerate(CHANNELS)
    }
    return run, channels


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin a process to `cpus` (None: leave it where it is)."""
    if cpus:
        os.sched_setaffinity(pid, cpus)


def pin_other_threads(cpus: set[int] | None) -> None:
    """Pin every thread of this process but the calling one (the sender's) to `cpus`."""
    if cpus:
        me = threading.get_ident()
        for thread in threading.enumerate():
            if thread.ident != me and thread.native_id is not None:
                os.sched_setaffinity(thread.native_id, cpus)


def cpu_split(enabled: bool) -> tuple[set[int] | None, set[int] | None]:
    """(training loop CPUs, server and proxy CPUs), or (None, None) when not pinning."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not enabled or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


class ProxyProcess:
    """tests/trainer_hook/sinks/proxy.py in its own process, driven over stdin."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/trainer_hook/sinks/proxy.py"), host, port],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = f"http://127.0.0.1:{self._read('PORT ')}"

    def _read(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(prefix):
            raise RuntimeError(f"proxy said {line!r}, expected {prefix!r}")
        return line[len(prefix) :].strip()

    def command(self, text: str) -> str | None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        answer = self._read("DUPLICATED ") if text == "duplicated" else None
        self._read("OK")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        self.proc.wait(10)


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def run_loop(
    sink: MetricSink, steps: int, step_s: float, before_step: Callable[[int], None] | None = None
) -> tuple[list[float], list[float]]:
    """The simulated training loop; returns (enqueue µs per step, stall ms per step)."""
    enqueue_us, stall_ms = [], []
    for step in range(steps):
        if before_step is not None:
            before_step(step)
        t0 = time.perf_counter()
        time.sleep(step_s)  # simulated forward/backward/optimizer on the device
        run, channels = step_metrics(step)  # the step's report, reduced and on the host
        t1 = time.perf_counter_ns()
        sink.log_step(step, run, channels, wall_time=1.7e9 + step)
        t2 = time.perf_counter_ns()
        enqueue_us.append((t2 - t1) / 1e3)
        stall_ms.append((time.perf_counter() - t0 - step_s) * 1e3)
    return enqueue_us, stall_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument(
        "--baseline-steps",
        type=int,
        default=None,
        help="NullSink baseline steps (default: --steps, so both loops meet the machine's own "
        "rare hiccups equally often)",
    )
    parser.add_argument("--step-ms", type=float, default=10.0)
    parser.add_argument("--outage-at", type=int, default=300)
    parser.add_argument("--outage-s", type=float, default=20.0)
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the server and the loop to own CPUs"
    )
    args = parser.parse_args(argv)
    step_s = args.step_ms / 1e3
    loop_cpus, server_cpus = cpu_split(not args.no_pin)
    pin(0, loop_cpus)
    print(f"cpus: training loop {loop_cpus or 'any'}, server and proxy {server_cpus or 'any'}")

    base_enq, base_stall = run_loop(NullSink(), args.baseline_steps or args.steps, step_s)

    # Children (and the threads they start) inherit the CPUs of the thread that starts them.
    pin(0, server_cpus)
    with tempfile.TemporaryDirectory() as tmp, start_live_server(Path(tmp) / "server") as live:
        proxy = ProxyProcess(live.url)
        pin(0, loop_cpus)
        try:
            sender = HttpSender(
                url=proxy.url,
                token=live.token,
                run_key="bench-sender",
                spool_dir=Path(tmp) / "spool",
                backoff_max_s=2.0,
            )
            outage = {"end": math.inf, "over": False}

            def outage_control(step: int) -> None:
                """Refuse from step --outage-at for --outage-s seconds."""
                if step <= 5:  # the sender's threads start at the first log_step
                    pin_other_threads(server_cpus)
                if step == args.outage_at:
                    proxy.command("mode refuse")
                    outage["end"] = time.monotonic() + args.outage_s
                elif not outage["over"] and time.monotonic() >= outage["end"]:
                    proxy.command("mode forward")
                    outage["over"] = True

            t_start = time.monotonic()
            enq, stall = run_loop(sender, args.steps, step_s, outage_control)
            loop_s = time.monotonic() - t_start
            if not outage["over"]:
                proxy.command("mode forward")
                print("note: the loop ended before the outage did; raise --steps")
            t_flush = time.monotonic()
            flushed = sender.flush(300)
            flush_s = time.monotonic() - t_flush
            counters = sender.counters.as_dict()
            sender.close()
            duplicated = int(proxy.command("duplicated") or 0)
        finally:
            proxy.close()
        got = server_points(live.url, live.token, "bench-sender")

    lost = 0
    for step in range(args.steps):
        run, channels = step_metrics(step)
        for m, v in run.items():
            lost += got.get((m, None, step)) != v
        for c, ms in channels.items():
            for m, v in ms.items():
                lost += got.get((m, c, step)) != v

    p50, p99 = percentile(enq, 0.50), percentile(enq, 0.99)
    b50, b99 = percentile(base_enq, 0.50), percentile(base_enq, 0.99)
    stall_max, base_stall_max = max(stall), max(base_stall)
    print(
        f"steps={args.steps} points_per_step=70 step_ms={args.step_ms} "
        f"outage_s={args.outage_s} loop_s={loop_s:.1f} flush_after_loop_s={flush_s:.1f} "
        f"flushed={flushed}"
    )
    print(f"counters {counters}")
    print(
        f"enqueue_us   NullSink p50={b50:.2f} p99={b99:.2f} max={max(base_enq):.1f} | "
        f"HttpSender p50={p50:.2f} p99={p99:.2f} max={max(enq):.1f} | "
        f"ratio p50={p50 / b50:.1f}x p99={p99 / b99:.1f}x"
    )
    print(
        f"step_stall_ms NullSink p99={percentile(base_stall, 0.99):.3f} "
        f"max={base_stall_max:.3f} | HttpSender p99={percentile(stall, 0.99):.3f} "
        f"max={stall_max:.3f}"
    )
    print(f"server_points={len(got)} logged_points={args.steps * 70}")
    print(
        f"sender enqueue_p50_us={p50:.2f} enqueue_p99_us={p99:.2f} lost={lost} "
        f"duplicated={duplicated} max_step_stall_ms={max(0.0, stall_max - base_stall_max):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
