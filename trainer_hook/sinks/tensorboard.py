"""A sink that writes TensorBoard scalars (torch.utils.tensorboard, imported lazily)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from trainer_hook.sinks.background import BackgroundSink
from trainer_hook.sinks.wire import Record


class TensorBoardSink(BackgroundSink):
    """Scalars under tags `run/<metric>` and `<metric>/<channel>` (so TensorBoard shows one
    section per metric with every channel in it), at the logged step and wall time.

    Needs the `tensorboard` package; trainer_hook itself does not."""

    def __init__(self, log_dir: str | Path, *, max_queue_steps: int = 10_000) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError(
                "TensorBoardSink needs the tensorboard package: pip install tensorboard "
                "(or use JsonlSink / HttpSender)"
            )
        super().__init__(max_queue_steps=max_queue_steps)
        self.log_dir = Path(log_dir).expanduser()
        self._writer: Any = None

    def _write(self, records: list[Record]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        add = self._writer.add_scalar
        for step, wall_time, run, channels in records:
            for metric, value in run.items():
                add(f"run/{metric}", float(value), global_step=step, walltime=wall_time)
            for channel, metrics in channels.items():
                for metric, value in metrics.items():
                    add(f"{metric}/{channel}", float(value), global_step=step, walltime=wall_time)

    def _flush_io(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def _close_io(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
