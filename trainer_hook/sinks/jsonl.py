"""A sink that appends one JSON line per step to a file, for users without a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from trainer_hook.sinks.background import BackgroundSink
from trainer_hook.sinks.wire import Record, wire_floats


class JsonlSink(BackgroundSink):
    """Appends `{"step", "wall_time", "run": {metric: value}, "channels": {channel: {metric:
    value}}}` per step to `path` (strict JSON: non-finite values are "NaN"/"Infinity"/"-Infinity"
    as in the REST API). Lines are written by a background thread every 0.2 s and on flush()."""

    def __init__(self, path: str | Path, *, max_queue_steps: int = 10_000) -> None:
        super().__init__(max_queue_steps=max_queue_steps)
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise ValueError(f"JsonlSink path {self.path} is a directory; pass a file path")
        self._file: IO[str] | None = None

    def _write(self, records: list[Record]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        lines = []
        for step, wall_time, run, channels in records:
            obj = {
                "step": step,
                "wall_time": wall_time,
                "run": wire_floats(run),
                "channels": {c: wire_floats(m) for c, m in channels.items()},
            }
            lines.append(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
        self._file.write("".join(lines))

    def _flush_io(self) -> None:
        if self._file is not None:
            self._file.flush()

    def _close_io(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_jsonl(path: str | Path) -> list[dict[str, object]]:
    """Read a JsonlSink file back: one dict per step, non-finite values as floats again."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            obj["run"] = {k: float(v) for k, v in obj["run"].items()}
            obj["channels"] = {
                c: {k: float(v) for k, v in m.items()} for c, m in obj["channels"].items()
            }
            out.append(obj)
    return out
