"""Run a function on ``world`` gloo processes spawned from pytest; collect what rank 0 or the
last rank puts in the result queue."""

from __future__ import annotations

import faulthandler
import os
import queue
import socket
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple, q: Any) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    # a hang (a collective some rank never joins) fails the test with every rank's stack
    hang_s = float(os.environ.get("LOSSRADAR_TEST_HANG_S", 300))
    faulthandler.dump_traceback_later(hang_s, exit=True)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out = fn(*args)
        if out is not None:
            q.put((rank, out))
    except BaseException:
        q.put((rank, {"error": traceback.format_exc()}))
        raise
    finally:
        try:
            from megatron.core import parallel_state as ps

            ps.destroy_model_parallel()
        except Exception:
            pass
        dist.destroy_process_group()


def run_distributed(fn: Callable[..., Any], world: int, *args: Any) -> dict[int, Any]:
    """``fn(*args)`` on every rank; returns ``{rank: result}`` of the ranks that returned one."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    try:
        mp.start_processes(
            _entry, args=(world, free_port(), fn, args, q), nprocs=world, start_method="spawn"
        )
    finally:
        results: dict[int, Any] = {}
        while True:
            try:
                rank, out = q.get(timeout=1)
            except queue.Empty:
                break
            results[rank] = out
    errors = {r: o["error"] for r, o in results.items() if isinstance(o, dict) and "error" in o}
    assert not errors, errors
    return results
