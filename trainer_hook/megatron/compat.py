"""The megatron-core functions the adapter uses, across versions (0.16.1 ... 0.19.x).

* ``get_batch_on_this_cp_rank``: ``megatron.core.utils`` in both; 0.19 added a required
  ``is_hybrid_cp`` argument and skips metadata keys.
* ``get_batch_on_this_tp_rank``, ``is_first_or_last_pipeline_stage``: in ``megatron.training.utils``
  up to Megatron-LM 0.16 (no ``megatron.training`` in the 0.16.1 wheel), moved to
  ``megatron.core.utils`` in 0.19 (``get_batch_on_this_tp_rank`` now takes a batch dict).
* the global TensorBoard/W&B writers and args: ``megatron.training.global_vars`` when Megatron-LM
  (or the 0.19 wheel) is present, else None.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch


@functools.cache
def megatron_core_version() -> str:
    """The installed megatron-core version string, e.g. ``"0.16.1"``."""
    from megatron.core import package_info

    return str(package_info.__version__)


@functools.cache
def _cp_slicer() -> tuple[Callable[..., Any], bool]:
    from megatron.core import utils as mcu

    fn = mcu.get_batch_on_this_cp_rank
    return fn, "is_hybrid_cp" in inspect.signature(fn).parameters


def cp_slice(batch: dict[str, Any], cp_group: Any) -> dict[str, Any]:
    """Megatron's own per-sequence zigzag CP slicing of every ``[B, L, ...]`` tensor in ``batch``.

    The sequence is cut into ``2 * cp`` chunks; CP rank ``r`` keeps chunks ``r`` and
    ``2 * cp - 1 - r`` (``attention_mask`` is sliced on dim 2).
    """
    fn, has_hybrid_arg = _cp_slicer()
    if has_hybrid_arg:
        return dict(fn(batch, is_hybrid_cp=False, cp_group=cp_group))
    return dict(fn(batch, cp_group=cp_group))


def get_num_microbatches() -> int:
    """Micro-batches of the current optimizer step from Megatron's calculator (rampup aware)."""
    from megatron.core.num_microbatches_calculator import get_num_microbatches as fn

    return int(fn())


def parallel_state() -> Any:
    """``megatron.core.parallel_state``."""
    from megatron.core import parallel_state as ps

    return ps


def is_pipeline_first_stage(vp_stage: int | None) -> bool:
    """First pipeline stage, virtual pipeline stage included when ``vp_stage`` is given."""
    ps = parallel_state()
    if vp_stage is None:
        return bool(ps.is_pipeline_first_stage(ignore_virtual=True))
    return bool(ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage))


def is_pipeline_last_stage(vp_stage: int | None) -> bool:
    """Last pipeline stage, virtual pipeline stage included when ``vp_stage`` is given."""
    ps = parallel_state()
    if vp_stage is None:
        return bool(ps.is_pipeline_last_stage(ignore_virtual=True))
    return bool(ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage))


def get_batch_on_this_tp_rank() -> Callable[..., Any] | None:
    """Megatron's TP broadcast of a batch: ``megatron.core.utils`` (0.19+, takes a batch dict),
    else ``megatron.training.utils`` (Megatron-LM <= 0.16, takes the data iterator), else None."""
    try:
        from megatron.core import utils as mcu

        fn = getattr(mcu, "get_batch_on_this_tp_rank", None)
        if fn is not None:
            return fn
    except ImportError:  # pragma: no cover - megatron-core is required for this package
        return None
    try:
        from megatron.training import utils as mtu
    except Exception:  # megatron.training absent (0.16.1 wheel) or not importable (py3.11)
        return None
    return getattr(mtu, "get_batch_on_this_tp_rank", None)


def megatron_writers() -> tuple[Any, Any]:
    """Megatron's global ``(tensorboard_writer, wandb_writer)``; ``(None, None)`` without
    ``megatron.training`` or before Megatron initialised them (both exist on the last rank only)."""
    try:
        from megatron.training import global_vars as gv
    except Exception:
        return None, None
    tb = getattr(gv, "_GLOBAL_TENSORBOARD_WRITER", None)
    wb = getattr(gv, "_GLOBAL_WANDB_WRITER", None)
    return tb, wb


def megatron_args() -> Any | None:
    """Megatron's global args, or None when ``megatron.training`` is absent or not initialised."""
    try:
        from megatron.training import global_vars as gv
    except Exception:
        return None
    return getattr(gv, "_GLOBAL_ARGS", None)


def is_global_last_rank() -> bool:
    """True on the rank that logs in Megatron: the last rank of the world (or when not
    distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return True
    return torch.distributed.get_rank() == torch.distributed.get_world_size() - 1
