"""``MegatronChannelLoss``: per-channel loss and reweighting inside Megatron-LM / MindSpeed-LLM,
by wrapping the two functions of ``pretrain_gpt.py`` that see the data and the loss.

    hook = MegatronChannelLoss.from_args(args, channel_map="channels.json")
    get_batch = hook.wrap_get_batch(get_batch)
    loss_func = hook.wrap_loss_func(loss_func)

Per micro-batch (last pipeline stage): the wrapped ``get_batch`` yields the channel ids of the
samples (see ``batch.py``); the wrapped ``loss_func`` calls the original one (so ``lm loss`` and
Megatron's NaN checks are unchanged), feeds the per-token losses to ``ChannelLoss`` and returns
``(loss_sum, num_tokens, report)`` with ``loss_sum = sum_t w_t * loss_t * mask_t`` (the plain sum
for uniform weights). ``num_tokens`` is the original one, so both ``--calculate-per-token-loss``
settings scale exactly as before. After the step's last micro-batch (``get_num_microbatches()``,
batch-size rampup included) ``ChannelLoss.step()`` does the step's one all-reduce over DP x CP; on
logging iterations the global last rank writes the metrics.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable, Sequence, ValuesView
from dataclasses import dataclass
from typing import Any

import torch

from trainer_hook.megatron import compat
from trainer_hook.megatron.batch import (
    ChannelIds,
    DatasetIdTap,
    broadcast_over_tp,
    legacy_scale,
    map_dataset_ids,
    match_layout,
    per_token_channel_ids,
    segments_from_position_ids,
    slice_per_token_for_cp,
)
from trainer_hook.megatron.channels import ChannelTable, channel_table_from_args, group_rollup
from trainer_hook.megatron.reporting import console_line, write_step

log = logging.getLogger(__name__)

_MAX_PENDING = 64


@dataclass(kw_only=True, slots=True)
class MegatronHookConfig:
    """How the adapter reads Megatron's batches and when it logs."""

    micro_batch_size: int
    """``--micro-batch-size``: samples per micro-batch (shape of the TP broadcast)."""
    seq_length: int
    """``--seq-length``: tokens per sample before CP slicing."""
    packed: bool = False
    """Rows pack several documents (``--reset-position-ids``; MindSpeed-LLM TND layout): channel
    ids become per token, with a document index per token from the position ids."""
    log_interval: int = 100
    """``--log-interval``: write metrics on iterations divisible by it."""
    console: bool = True
    """Print one compact line per logging iteration on the global last rank."""
    rollup_groups: bool = False
    """Also write parent groups of hierarchical names (``finance`` for ``finance/slow``)."""
    report_channels: bool = False
    """Also put ``lm loss/<channel>`` ``[sum, count]`` pairs into Megatron's report dict. Megatron
    then all-reduces every key separately and shows NaN for channels absent from a step."""

    def __post_init__(self) -> None:
        for name in ("micro_batch_size", "seq_length", "log_interval"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")


class MegatronChannelLoss:
    """Channel loss for a Megatron training script; see the module docstring."""

    def __init__(
        self,
        table: ChannelTable,
        config: MegatronHookConfig,
        *,
        sample_reweight: Any = None,
        channel_reweight: Any = None,
        sinks: Sequence[Any] = (),
        tensorboard_writer: Any = None,
        wandb_writer: Any = None,
        use_megatron_writers: bool = True,
        num_microbatches_fn: Callable[[], int] | None = None,
        cp_slice_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        reduce_dtype: torch.dtype = torch.float64,
        iteration: int = 0,
    ) -> None:
        from trainer_hook import ChannelLoss

        ps = compat.parallel_state()
        shares = table.target_shares
        if (
            channel_reweight is not None
            and getattr(channel_reweight, "prior", None) is None
            and all(s is not None for s in shares)
        ):  # the blend is the sampling prior (DoReMi's importance correction)
            total = sum(float(s) for s in shares if s is not None)
            prior = [float(s) / total for s in shares if s is not None]
            channel_reweight = dataclasses.replace(channel_reweight, prior=prior)
        self.table = table
        self.config = config
        self.channel_loss = ChannelLoss(
            channels=list(table.names),
            group=ps.get_data_parallel_group(with_context_parallel=True),
            dp_group=ps.get_data_parallel_group(),
            cp_group=ps.get_context_parallel_group(),
            sample_reweight=sample_reweight,
            channel_reweight=channel_reweight,
            reduce_dtype=reduce_dtype,
        )
        self.sinks = list(sinks)
        self._tb = tensorboard_writer
        self._wandb = wandb_writer
        self._use_megatron_writers = use_megatron_writers
        self._num_microbatches = num_microbatches_fn or compat.get_num_microbatches
        self._cp_group = ps.get_context_parallel_group()
        self._cp_size = torch.distributed.get_world_size(self._cp_group)
        self._cp_slice = cp_slice_fn or (lambda b: compat.cp_slice(b, self._cp_group))
        self._tp_group = ps.get_tensor_model_parallel_group()
        self._tp_size = torch.distributed.get_world_size(self._tp_group)
        self._tp_rank = torch.distributed.get_rank(self._tp_group)
        self._tp_src = ps.get_tensor_model_parallel_src_rank()
        self._d2c = torch.tensor(table.dataset_to_channel, dtype=torch.int64)
        self._pending: collections.deque[ChannelIds] = collections.deque()
        self.iteration = iteration
        self.microbatch = 0
        self.last_report: Any = None

    @classmethod
    def from_args(
        cls, args: Any, *, channel_map: str | None = None, **kwargs: Any
    ) -> MegatronChannelLoss:
        """Build from Megatron's parsed args (after ``initialize_megatron``)."""
        table = channel_table_from_args(args, channel_map)
        config = MegatronHookConfig(
            micro_batch_size=int(args.micro_batch_size),
            seq_length=int(args.seq_length),
            packed=bool(getattr(args, "reset_position_ids", False)),
            log_interval=int(getattr(args, "log_interval", 100)),
        )
        kwargs.setdefault("iteration", int(getattr(args, "iteration", 0) or 0))
        return cls(table, config, **kwargs)

    # ---------------------------------------------------------------- get_batch
    def wrap_get_batch(self, get_batch: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap ``get_batch(data_iterator, *args, vp_stage=None, ...)``; same return value."""

        def wrapped(data_iterator: Any, *args: Any, **kwargs: Any) -> Any:
            vp_stage = kwargs.get("vp_stage", args[0] if args else None)  # positional in 0.16+
            last = compat.is_pipeline_last_stage(vp_stage)
            if not (last or compat.is_pipeline_first_stage(vp_stage)):
                return get_batch(data_iterator, *args, **kwargs)  # middle stage: untouched
            tap = DatasetIdTap(data_iterator) if data_iterator is not None else None
            out = get_batch(tap if tap is not None else data_iterator, *args, **kwargs)
            if last:
                self._push(self.channel_ids_for_batch(tap, _device_of(out)))
            return out

        wrapped.__wrapped__ = get_batch  # type: ignore[attr-defined]
        return wrapped

    def channel_ids_for_batch(self, tap: DatasetIdTap | None, device: torch.device) -> ChannelIds:
        """Channel ids of the micro-batch read through ``tap`` on TP rank 0, on every TP rank.

        Not packed: int64 ``[B]`` per sample, broadcast over TP, whole under CP.
        Packed: ``[B, L]`` per-token ids and document indices, broadcast as one ``[2, B, L]``
        tensor, then CP-sliced like the tokens.
        """
        b, seq = self.config.micro_batch_size, self.config.seq_length
        is_src = self._tp_rank == 0
        payload: torch.Tensor | None = None
        if is_src:
            ids, pos, shape = tap.take() if tap is not None else (None, None, None)
            payload = self._src_payload(ids, pos, shape)
        shape_out = (2, b, seq) if self.config.packed else (b,)
        if self._tp_size > 1:
            payload = broadcast_over_tp(
                payload,
                shape_out,
                is_src=is_src,
                src_rank=self._tp_src,
                group=self._tp_group,
                device=device,
            )
        assert payload is not None
        payload = payload.to(device, non_blocking=True)  # a no-op after the TP broadcast
        if not self.config.packed:
            return ChannelIds(ids=payload)
        per_token = {"channel_ids": payload[0], "segment_ids": payload[1]}
        if self._cp_size > 1:
            per_token = slice_per_token_for_cp(per_token, self._cp_slice)
        return ChannelIds(ids=per_token["channel_ids"], segments=per_token["segment_ids"])

    def _src_payload(
        self,
        ids: torch.Tensor | None,
        pos: torch.Tensor | None,
        shape: tuple[int, ...] | None,
    ) -> torch.Tensor:
        b = self.config.micro_batch_size
        overflow = len(self.table.names)
        if shape is None:  # get_batch read nothing: send overflow ids rather than hang the group
            log.warning("lossradar: get_batch read no batch on TP rank 0; ids set to overflow")
            ids_cpu = torch.full((b,), overflow, dtype=torch.int64)
        elif ids is None:  # single prefix: Megatron returns a plain GPTDataset, no dataset_id
            ids_cpu = torch.zeros(shape[0], dtype=torch.int64)
        else:
            ids_cpu = torch.as_tensor(ids).cpu()
        if not self.config.packed:
            if ids_cpu.dim() != 1:
                raise ValueError(
                    f"dataset_id of shape {tuple(ids_cpu.shape)} is not per sample; set "
                    "packed=True (--reset-position-ids) for per-document or per-token ids"
                )
            return map_dataset_ids(ids_cpu, self._d2c)
        if pos is None:
            raise ValueError(
                "packed=True needs position_ids in the batch to find document boundaries"
            )
        segments = segments_from_position_ids(pos.cpu())
        return torch.stack([per_token_channel_ids(ids_cpu, segments, self._d2c), segments])

    def _push(self, ids: ChannelIds) -> None:
        if len(self._pending) >= _MAX_PENDING:
            log.warning(
                "lossradar: wrapped get_batch called %d times without the wrapped "
                "loss_func; dropping the oldest channel ids",
                _MAX_PENDING,
            )
            self._pending.popleft()
        self._pending.append(ids)

    # ---------------------------------------------------------------- loss_func
    def wrap_loss_func(self, loss_func: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap ``loss_func(loss_mask, output_tensor, ...)`` (Megatron's contract).

        Under ``torch.no_grad()`` (Megatron's evaluation) the original result is returned as is.
        """

        def wrapped(
            loss_mask: torch.Tensor, output_tensor: torch.Tensor, *a: Any, **kw: Any
        ) -> Any:
            result = loss_func(loss_mask, output_tensor, *a, **kw)
            ids = self._pending.popleft() if self._pending else None
            if not torch.is_grad_enabled():
                return result
            if ids is None:
                raise RuntimeError(
                    "lossradar: the wrapped loss_func got no channel ids; wrap get_batch with "
                    "the same MegatronChannelLoss (hook.wrap_get_batch) and call it first"
                )
            return self.loss(loss_mask, output_tensor, ids, result)

        wrapped.__wrapped__ = loss_func  # type: ignore[attr-defined]
        return wrapped

    def loss(
        self, loss_mask: torch.Tensor, output_tensor: torch.Tensor, ids: ChannelIds, result: Any
    ) -> Any:
        """Megatron's loss result with the loss replaced by the channel-weighted one."""
        per_token = output_tensor.float().view(loss_mask.shape)
        ids = match_layout(ids, loss_mask, self.config.seq_length)
        out = self.channel_loss.accumulate(per_token, loss_mask, ids.ids, ids.segments)
        if len(result) == 3:
            _, num_tokens, report = result
            new: tuple[Any, ...] = (out.loss_sum, num_tokens, report)
        elif len(result) == 2:  # older Megatron / MindSpeed-LLM: (scaled local mean, report)
            loss, report = result
            new = (out.loss_sum * legacy_scale(loss, per_token, loss_mask), report)
        else:
            raise ValueError(f"loss_func returned {len(result)} values; expected 2 or 3")
        if self.config.report_channels:
            report.update(self._report_pairs(per_token.detach(), loss_mask, ids))
        self.microbatch += 1
        if self.microbatch >= self._num_microbatches():
            self.finish_step()
        return new

    def _report_pairs(
        self, per_token: torch.Tensor, loss_mask: torch.Tensor, ids: ChannelIds
    ) -> dict[str, torch.Tensor]:
        n = len(self.table.names)
        mask = loss_mask.float().view(per_token.shape)
        tok_ids = ids.ids if ids.ids.dim() == 2 else ids.ids.view(-1, 1).expand(per_token.shape)
        tok_ids = tok_ids.clamp(0, n).reshape(-1)
        sums = torch.zeros(n + 1, device=per_token.device).index_add_(
            0, tok_ids, (per_token * mask).reshape(-1)
        )
        counts = torch.zeros(n + 1, device=per_token.device).index_add_(
            0, tok_ids, mask.reshape(-1)
        )
        return {
            f"lm loss/{name}": torch.stack([sums[c], counts[c]])
            for c, name in enumerate(self.table.names)
        }

    # ---------------------------------------------------------------- step and logging
    def finish_step(self) -> None:
        """End the optimizer step: one reduction (``ChannelLoss.step``), then log if due."""
        self.last_report = self.channel_loss.step()
        self.microbatch = 0
        self.iteration += 1
        if self.iteration % self.config.log_interval == 0 and compat.is_global_last_rank():
            self.write(self.last_report)

    def write(self, report: Any) -> None:
        """Write a step report to TensorBoard, W&B, the console and the sinks (never raises)."""
        try:
            run_metrics = report.run_metrics()  # host sync: logging iterations only
            channel_metrics = dict(report.channel_metrics())
            if self.config.rollup_groups:
                channel_metrics.update(group_rollup(channel_metrics))
            tb, wb = self._tb, self._wandb
            if self._use_megatron_writers and tb is None and wb is None:
                tb, wb = compat.megatron_writers()
            line = None
            if self.config.console:
                line = console_line(
                    self.iteration, channel_metrics, self.table.names, self.table.target_shares
                )
            write_step(
                iteration=self.iteration,
                run_metrics=run_metrics,
                channel_metrics=channel_metrics,
                tensorboard_writer=tb,
                wandb_writer=wb,
                sinks=self.sinks,
                console=line,
            )
        except Exception:
            log.exception("lossradar: writing channel metrics failed at %d", self.iteration)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything that must survive a resume (save it per rank with the checkpoint)."""
        return {
            "channel_loss": self.channel_loss.state_dict(),
            "iteration": self.iteration,
            "channels": list(self.table.names),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``; the channel names must be the same."""
        if list(state.get("channels", [])) != list(self.table.names):
            raise ValueError(
                f"checkpointed channels {state.get('channels')} differ from this run's "
                f"{list(self.table.names)}: resume with the same --data-path and channel map"
            )
        self.channel_loss.load_state_dict(state["channel_loss"])
        self.iteration = int(state["iteration"])
        self.microbatch = 0

    def close(self, timeout: float | None = None) -> None:
        """Flush and close the sinks."""
        for sink in self.sinks:
            try:
                sink.close(timeout)
            except Exception:
                log.exception("lossradar: closing sink %r failed", sink)


def _device_of(out: Any) -> torch.device:
    """The device of the first tensor in ``get_batch``'s result (CPU when there is none)."""
    if isinstance(out, torch.Tensor):
        return out.device
    values = out.values() if isinstance(out, dict) else out
    if isinstance(values, tuple | list | ValuesView):
        for v in values:
            if isinstance(v, torch.Tensor):
                return v.device
    return torch.device("cpu")
