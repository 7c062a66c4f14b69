"""A one-line progress bar with per-channel losses (redrawn in place on a terminal).

``step 120/300 [########------------]  40%  lm 5.81 | finance 6.10 math 4.92 code 4.71
general 6.03 | 6.4k tok/s  ETA 1m52s``. Not a terminal (CI, a pipe): one plain line every
``every`` steps instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressBar:
    """Call :meth:`update` once per step; :meth:`close` ends the line."""

    def __init__(
        self,
        *,
        total: int,
        channels: Sequence[str],
        stream: TextIO | None = None,
        width: int = 20,
        every: int = 10,
        tokens_per_step: int = 0,
    ) -> None:
        self.total = total
        self.channels = list(channels)
        self.stream = stream or sys.stdout
        self.width = width
        self.every = max(1, every)
        self.tokens_per_step = tokens_per_step
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last_losses: dict[str, float] = {}
        self.notes: list[str] = []

    def line(self, step: int, run: Mapping[str, float]) -> str:
        done = step + 1
        filled = round(self.width * done / self.total)
        elapsed = time.perf_counter() - self.start
        rate = self.tokens_per_step * done / elapsed if elapsed > 0 else 0.0
        eta = elapsed / done * (self.total - done)
        losses = " ".join(
            f"{name} {self.last_losses[name]:.2f}" if name in self.last_losses else f"{name} -"
            for name in self.channels
        )
        lm = run.get("lm_loss")
        lm_text = f"lm {lm:.2f}" if lm is not None else "lm -"
        return (
            f"step {done}/{self.total} [{'#' * filled}{'-' * (self.width - filled)}] "
            f"{100 * done / self.total:3.0f}%  {lm_text} | {losses} | "
            f"{rate / 1000:.1f}k tok/s  ETA {_duration(eta)}"
        )

    def update(
        self, step: int, run: Mapping[str, float], channels: Mapping[str, Mapping[str, float]]
    ) -> None:
        for name, metrics in channels.items():
            if "loss" in metrics:
                self.last_losses[name] = metrics["loss"]
        done = step + 1
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line(step, run))
        elif done % self.every == 0 or done == self.total or step == 0:
            self.stream.write(self.line(step, run) + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """Print a message above the bar (the bar is redrawn on the next update)."""
        self.stream.write(("\r\x1b[2K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
