"""Run a function on N real processes joined by a gloo process group (spawned from pytest).

Usage::

    results = run_distributed(my_fn, world_size=4, args=(seed,))

``my_fn(rank, world_size, *args)`` must be a module-level (picklable) function; it runs after
``torch.distributed.init_process_group("gloo")`` and its picklable return value comes back in
rank order. An exception on any rank fails the call with that rank's traceback. Spawn a world
once and check many things inside it: each spawn costs a few seconds of torch imports.
"""

from __future__ import annotations

import io
import os
import queue
import tempfile
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(
    rank: int,
    world_size: int,
    init_file: str,
    fn: Callable[..., Any],
    args: Sequence[Any],
    results: Any,
) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        dist.init_process_group(
            "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
        )
        value = fn(rank, world_size, *args)
        buf = io.BytesIO()
        torch.save(value, buf)  # plain bytes: shared-memory tensors die with this process
        results.put((rank, True, buf.getvalue()))
    except BaseException:
        results.put((rank, False, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_distributed(
    fn: Callable[..., Any],
    world_size: int,
    args: Sequence[Any] = (),
    timeout: float = 240.0,
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` gloo processes; return by rank."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        procs = [
            ctx.Process(target=_worker, args=(r, world_size, init_file, fn, tuple(args), results))
            for r in range(world_size)
        ]
        for p in procs:
            p.start()
        out: dict[int, Any] = {}
        errors: list[str] = []
        try:
            for _ in range(world_size):
                rank, ok, value = results.get(timeout=timeout)
                if ok:
                    out[rank] = torch.load(io.BytesIO(value), weights_only=False)
                else:
                    errors.append(f"rank {rank} failed:\n{value}")
                    break
        except queue.Empty:
            missing = sorted(set(range(world_size)) - set(out))
            errors.append(f"timed out after {timeout}s waiting for ranks {missing}")
        finally:
            for p in procs:
                p.join(timeout=5 if not errors else 0.1)
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join()
    if errors:
        raise AssertionError("\n".join(errors))
    return [out[r] for r in range(world_size)]
