"""A simulated training process that logs steps through an HttpSender, for kill/restart tests.

python trainer_process.py URL TOKEN SPOOL_DIR RUN_KEY START STOP SHIFT [--hold]

Logs steps START..STOP-1 (see points.step_metrics with SHIFT). With --hold it waits until the
writer has spooled every step, prints `SPOOLED <counters json>` and sleeps until killed;
otherwise it flushes, prints `DONE <ok> <counters json>` and exits.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.trainer_hook.sinks.points import step_metrics
from trainer_hook.sinks import HttpSender


def main(argv: list[str]) -> int:
    url, token, spool, run_key, start, stop, shift = argv[:7]
    sender = HttpSender(
        url=url,
        token=token,
        run_key=run_key,
        spool_dir=Path(spool),
        drain_interval_s=0.01,
        send_interval_s=0.01,
        timeout_s=2.0,
        backoff_base_s=0.05,
        backoff_max_s=0.2,
    )
    logged = 0
    for step in range(int(start), int(stop)):
        run, channels = step_metrics(step, float(shift))
        sender.log_step(step, run, channels, wall_time=1000.0 + step)
        logged += len(run) + sum(map(len, channels.values()))
        time.sleep(0.002)
    if "--hold" in argv:
        while sender.counters.spooled < logged:
            time.sleep(0.01)
        print("SPOOLED " + json.dumps(sender.counters.as_dict()), flush=True)
        time.sleep(3600)
        return 1
    ok = sender.flush(30)
    print(f"DONE {ok} " + json.dumps(sender.counters.as_dict()), flush=True)
    sender.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
