"""Tiny named collectives that take an explicit group and do nothing when not distributed.

Only SUM all-reduces are used: gloo, NCCL and HCCL all have them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

ProcessGroup = Any  # torch.distributed.ProcessGroup, or None for "not distributed"


def is_distributed() -> bool:
    """True when torch.distributed is available and initialised."""
    return dist.is_available() and dist.is_initialized()


def group_size(group: ProcessGroup | None) -> int:
    """World size of ``group`` (1 when not distributed or when ``group`` is None)."""
    if group is None or not is_distributed():
        return 1
    return int(dist.get_world_size(group))


def group_rank(group: ProcessGroup | None) -> int:
    """This process's rank inside ``group`` (0 when not distributed or when ``group`` is None)."""
    if group is None or not is_distributed():
        return 0
    return int(dist.get_rank(group))


def all_reduce_sum_(tensor: torch.Tensor, group: ProcessGroup | None) -> torch.Tensor:
    """In-place SUM all-reduce of ``tensor`` over ``group``; a no-op for a group of one."""
    if group_size(group) > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor
