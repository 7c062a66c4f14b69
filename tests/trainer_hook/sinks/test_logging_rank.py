"""Only the global last rank logs: checked in a real two-process gloo group."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from trainer_hook.sinks import HttpSender, NullSink, is_global_last_rank, select_sink


def _worker(rank: int, port: int, spool: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        sink = select_sink(
            is_global_last_rank(), url="http://127.0.0.1:9", run_key="ranks", spool_dir=spool
        )
        Path(out, str(rank)).write_text(type(sink).__name__)
        sink.close(0)
    finally:
        dist.destroy_process_group()


def test_only_the_last_rank_gets_a_sender(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("LOSSRADAR_URL", raising=False)
    mp.spawn(_worker, args=(port, str(tmp_path / "spool"), str(tmp_path)), nprocs=2)
    assert (tmp_path / "0").read_text() == NullSink.__name__
    assert (tmp_path / "1").read_text() == HttpSender.__name__
