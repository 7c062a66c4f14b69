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
- step stall = a step's wall time beyond its simulated work: the log_step call, any wait for
  the GIL held by the sender's threads when the work ends, and the machine's own lateness in
  waking the thread (the baseline's stall is only the latter);
- the sender's stall of a step = the whole step stall when the loop's thread had to wait for
  anything besides its simulated work (a voluntary context switch beyond the sleep's own, read
  with getrusage(RUSAGE_THREAD): a wait for the GIL is one), else the log_step call alone.
  The sender's threads run on other CPUs, so the only way they can delay the loop's thread is
  to hold the GIL it wants, and that makes it wait. A step in which the thread never waited was
  late because the machine woke it late (on this project's virtual machine: 1-4 ms, about once
  every few seconds, in the NullSink loop as much as in the sender's), which is not charged.
  When the loop has no CPU of its own (one CPU, or `--no-pin`) every step's whole stall is
  charged, since a thread sharing its CPU delays it without making it wait;
- lost = logged (metric, channel, step) points missing on the server, or with another value;
- duplicated = points the server acknowledged more than once (counted by the proxy).

`--gil-hog-ms X` adds a thread that holds the GIL for X ms every 100 ms during the sender's loop,
as a check that max_step_stall_ms sees a background thread that keeps the GIL too long.

The server and the proxy stand for a machine elsewhere on the network, and a training process
has more than one core: when this machine has more than one CPU (and `--no-pin` is not given),
the training loop's thread runs on CPU 0, and the server, the proxy and the sender's background
threads on CPUs 1.., so the server's work on the backlog after the outage does not steal the
training loop's core, as it never would in a real job. The NullSink baseline runs on CPU 0 too.
For the same reason the server and the proxy run at the lowest CPU priority (nice 19): they
share CPU 1 with the sender's threads here, and a sender thread that the OS preempts for the
server while it holds the GIL would stall the loop for the server's time slice, which cannot
happen when the server is another machine.

Before each loop the setup's garbage is collected (`gc.collect()`), so the collections during a
loop are the loop's own.

The last line is `sender enqueue_p50_us=.. enqueue_p99_us=.. lost=.. duplicated=..
max_step_stall_ms=..`, where max_step_stall_ms is the largest sender's stall of a step.
The raw step stalls of both loops are printed above it.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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


def lowest_priority(command: list[str]) -> list[str]:
    """`command` under `nice -n 19` (as is where there is no `nice`)."""
    nice = shutil.which("nice")
    return [nice, "-n", "19", *command] if nice else command


class ProxyProcess:
    """tests/trainer_hook/sinks/proxy.py in its own process (at the lowest CPU priority), driven
    over stdin."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        proxy = [sys.executable, str(ROOT / "tests/trainer_hook/sinks/proxy.py"), host, port]
        self.proc = subprocess.Popen(
            lowest_priority(proxy),
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


def voluntary_switches() -> Callable[[], int] | None:
    """The calling thread's count of voluntary context switches, or None where the OS does not
    count them per thread (not Linux): then every step counts as waited, and all its stall is
    charged to the sink."""
    if not hasattr(resource, "RUSAGE_THREAD"):
        return None
    who = resource.RUSAGE_THREAD
    return lambda: resource.getrusage(who).ru_nvcsw


@dataclass
class LoopTimes:
    """Per step: log_step time, stall beyond the simulated work, whether the thread waited."""

    enqueue_us: list[float] = field(default_factory=list)
    stall_ms: list[float] = field(default_factory=list)
    waited: list[bool] = field(default_factory=list)

    def charged_ms(self) -> list[float]:
        """The sink's stall of each step: the whole stall when the thread waited, else the
        log_step call."""
        return [
            stall if waited else enq / 1e3
            for enq, stall, waited in zip(self.enqueue_us, self.stall_ms, self.waited, strict=True)
        ]


def run_loop(
    sink: MetricSink,
    steps: int,
    step_s: float,
    before_step: Callable[[int], None] | None = None,
    *,
    own_cpu: bool = True,
) -> LoopTimes:
    """The simulated training loop. `own_cpu`: the sink's threads run on other CPUs, so waits
    are what they can cause; otherwise every step counts as waited (its whole stall is charged:
    a thread sharing the loop's CPU delays it without making it wait)."""
    times = LoopTimes()
    switches = voluntary_switches() if own_cpu else None
    gc.collect()
    for step in range(steps):
        if before_step is not None:
            before_step(step)
        s0 = switches() if switches else 0
        t0 = time.perf_counter()
        time.sleep(step_s)  # simulated forward/backward/optimizer on the device
        run, channels = step_metrics(step)  # the step's report, reduced and on the host
        t1 = time.perf_counter_ns()
        sink.log_step(step, run, channels, wall_time=1.7e9 + step)
        t2 = time.perf_counter_ns()
        t3 = time.perf_counter()
        times.enqueue_us.append((t2 - t1) / 1e3)
        times.stall_ms.append((t3 - t0 - step_s) * 1e3)
        # the sleep is one voluntary switch; any other is a wait (for the GIL)
        times.waited.append(switches is None or switches() - s0 > 1)
    return times


def gil_hog(hold_ms: float, stop: threading.Event) -> threading.Thread:
    """A thread that holds the GIL for `hold_ms` every 100 ms (one C call, no bytecode)."""
    n = 100_000
    t = time.perf_counter()
    sum(range(n))
    n = max(1, int(n * hold_ms / 1e3 / (time.perf_counter() - t)))

    def hog() -> None:
        while not stop.wait(0.1):
            sum(range(n))

    thread = threading.Thread(target=hog, name="gil-hog", daemon=True)
    thread.start()
    return thread


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
    parser.add_argument(
        "--gil-hog-ms",
        type=float,
        default=0.0,
        help="check: a thread holds the GIL this long every 100 ms during the sender's loop",
    )
    args = parser.parse_args(argv)
    step_s = args.step_ms / 1e3
    loop_cpus, server_cpus = cpu_split(not args.no_pin)
    pin(0, loop_cpus)
    print(f"cpus: training loop {loop_cpus or 'any'}, server and proxy {server_cpus or 'any'}")

    own_cpu = loop_cpus is not None
    if not own_cpu:
        print("note: the loop has no CPU of its own: every step's whole stall is charged")
    base = run_loop(NullSink(), args.baseline_steps or args.steps, step_s, own_cpu=own_cpu)

    # Children (and the threads they start) inherit the CPUs of the thread that starts them.
    pin(0, server_cpus)
    server = lowest_priority(
        [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", "0"]
    )
    stop_hog = threading.Event()
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_live_server(Path(tmp) / "server", command=server) as live,
    ):
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

            if args.gil_hog_ms > 0:
                gil_hog(args.gil_hog_ms, stop_hog)
            t_start = time.monotonic()
            times = run_loop(sender, args.steps, step_s, outage_control, own_cpu=own_cpu)
            loop_s = time.monotonic() - t_start
            stop_hog.set()
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
            stop_hog.set()
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

    enq, charged = times.enqueue_us, times.charged_ms()
    p50, p99 = percentile(enq, 0.50), percentile(enq, 0.99)
    b50, b99 = percentile(base.enqueue_us, 0.50), percentile(base.enqueue_us, 0.99)
    print(
        f"steps={args.steps} points_per_step=70 step_ms={args.step_ms} "
        f"outage_s={args.outage_s} loop_s={loop_s:.1f} flush_after_loop_s={flush_s:.1f} "
        f"flushed={flushed}"
    )
    print(f"counters {counters}")
    print(
        f"enqueue_us   NullSink p50={b50:.2f} p99={b99:.2f} max={max(base.enqueue_us):.1f} | "
        f"HttpSender p50={p50:.2f} p99={p99:.2f} max={max(enq):.1f} | "
        f"ratio p50={p50 / b50:.1f}x p99={p99 / b99:.1f}x"
    )
    for name, loop in (("NullSink", base), ("HttpSender", times)):
        waited = [s for s, w in zip(loop.stall_ms, loop.waited, strict=True) if w]
        print(
            f"step_stall_ms {name}: all steps p99={percentile(loop.stall_ms, 0.99):.3f} "
            f"max={max(loop.stall_ms):.3f} | steps that waited {len(waited)}"
            + (f" p99={percentile(waited, 0.99):.3f} max={max(waited):.3f}" if waited else "")
            + f" | charged to the sink max={max(loop.charged_ms()):.3f}"
        )
    print(f"server_points={len(got)} logged_points={args.steps * 70}")
    print(
        f"sender enqueue_p50_us={p50:.2f} enqueue_p99_us={p99:.2f} lost={lost} "
        f"duplicated={duplicated} max_step_stall_ms={max(charged):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
