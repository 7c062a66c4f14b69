"""Decorators for ``pretrain_gpt.py`` (the smallest diff): the hook is built on first use, after
Megatron has parsed its arguments and initialised its process groups.

    from trainer_hook.megatron import channel_loss_hook

    @channel_loss_hook.get_batch
    def get_batch(data_iterator, vp_stage=None): ...

    @channel_loss_hook.loss_func
    def loss_func(loss_mask, output_tensor, model=None): ...

Settings come from the environment: ``LOSSRADAR_CHANNEL_MAP`` (channel map file),
``LOSSRADAR_URL`` / ``LOSSRADAR_TOKEN`` / ``LOSSRADAR_RUN_KEY`` (the lossradar server),
``LOSSRADAR_JSONL`` (a JSONL file of every logged step); or from ``configure(**kwargs)``
(``MegatronChannelLoss`` keyword arguments) before training starts.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from trainer_hook.megatron import compat
from trainer_hook.megatron.adapter import MegatronChannelLoss


class LazyChannelLoss:
    """A ``MegatronChannelLoss`` built from Megatron's global args at the first call."""

    def __init__(self) -> None:
        self._hook: MegatronChannelLoss | None = None
        self._kwargs: dict[str, Any] = {}

    def configure(self, **kwargs: Any) -> None:
        """Keyword arguments for ``MegatronChannelLoss.from_args`` (before the first step)."""
        if self._hook is not None:
            raise RuntimeError("configure() must be called before the first training step")
        self._kwargs.update(kwargs)

    @property
    def hook(self) -> MegatronChannelLoss:
        """The hook, built on first access from ``megatron.training.get_args()``."""
        if self._hook is None:
            args = compat.megatron_args()
            if args is None:
                raise RuntimeError(
                    "Megatron's args are not initialised: the hook is built inside pretrain(); "
                    "outside Megatron-LM use MegatronChannelLoss(table, config) directly"
                )
            kwargs = dict(self._kwargs)
            kwargs.setdefault("channel_map", os.environ.get("LOSSRADAR_CHANNEL_MAP") or None)
            hook = MegatronChannelLoss.from_args(args, **kwargs)
            if "sinks" not in kwargs:
                hook.sinks = _sinks_from_env(hook)
            self._hook = hook
        return self._hook

    def get_batch(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator for ``get_batch(data_iterator, vp_stage=None)``."""

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            return self._wrapped("get_batch", fn)(*args, **kwargs)

        return wrapped

    def loss_func(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator for ``loss_func(loss_mask, output_tensor, ...)``."""

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            return self._wrapped("loss_func", fn)(*args, **kwargs)

        return wrapped

    @functools.cache  # noqa: B019 - one wrapper per (kind, function), lives as long as the hook
    def _wrapped(self, kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if kind == "get_batch":
            return self.hook.wrap_get_batch(fn)
        return self.hook.wrap_loss_func(fn)


def _sinks_from_env(hook: MegatronChannelLoss) -> list[Any]:
    if not (os.environ.get("LOSSRADAR_URL") or os.environ.get("LOSSRADAR_JSONL")):
        return []
    from trainer_hook.sinks import select_sink

    settings: dict[str, Any] = {}
    if os.environ.get("LOSSRADAR_URL"):
        settings["channels"] = hook.table.server_channels()
    sink = select_sink(
        compat.is_global_last_rank(), jsonl_path=os.environ.get("LOSSRADAR_JSONL"), **settings
    )
    return [sink]


channel_loss_hook = LazyChannelLoss()
"""The process-wide lazy hook used by the decorators in ``pretrain_gpt.py``."""
