"""A full disk is the only way to lose points, and it is counted and logged loudly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import json, logging, resource, signal, socket, sys, time
    sys.path.insert(0, ROOT)
    from tests.trainer_hook.sinks.receiver import Receiver
    from trainer_hook.sinks import HttpSender
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    sender = HttpSender(url=f"http://127.0.0.1:{port}", run_key="full", spool_dir=SPOOL,
                        max_queue_steps=4, drain_interval_s=0.005, send_interval_s=0.01,
                        backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=1.0)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3000, hard))  # the "disk" holds ~3 kB
    for step in range(60):
        sender.log_step(step, {"lm_loss": float(step)}, {"c": {"loss": 1.0, "tokens": 5.0}})
        time.sleep(0.002)
    time.sleep(0.1)
    full = sender.counters.as_dict()
    data = (sender.config.run_spool_dir / "records.jsonl").read_bytes()
    full.update(file_bytes=len(data), file_lines=data.count(b"\\n"),
                torn=not data.endswith(b"\\n"),
                in_queue=len(sender._queue), unwritten=len(sender._unwritten))
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space is freed
    receiver = Receiver(port=port).start()
    ok = sender.flush(10)
    print("RESULT " + json.dumps({"full": full, "ok": ok, "after": sender.counters.as_dict(),
                                  "points": len(receiver.points())}))
    sender.close()
    """
)


def test_disk_full_drops_only_what_cannot_be_kept_and_says_so(tmp_path: Path) -> None:
    code = SCRIPT.replace("ROOT", repr(str(ROOT))).replace("SPOOL", repr(str(tmp_path)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    full, after = result["full"], result["after"]
    # `queued` counts a step when the writer takes it from the in-memory queue
    assert full["queued"] + 3 * full["in_queue"] == 60 * 3
    assert 0 < full["dropped"] < full["queued"]
    assert full["file_bytes"] <= 3000
    assert not full["torn"]  # a failed write is cut back to the last whole record
    assert full["spooled"] == 3 * full["file_lines"]
    assert full["queued"] == full["spooled"] + full["dropped"] + 3 * full["unwritten"]
    assert "DROPPED 3 points of step" in proc.stderr
    assert "cannot write the spool" in proc.stderr
    assert result["ok"]
    # everything not dropped reached the server once space came back
    assert after["queued"] == 60 * 3
    assert result["points"] == after["sent"] == after["queued"] - after["dropped"]
