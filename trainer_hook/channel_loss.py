"""``ChannelLoss``: exact per-channel loss across micro-batches and ranks, and loss reweighting.

Per micro-batch, :meth:`ChannelLoss.accumulate` adds the micro-batch's per-channel sums into a
fixed-size device buffer (index_add, no host sync) and returns the loss for backward. Once per
optimizer step, :meth:`ChannelLoss.step` SUM-all-reduces one packed tensor over ``group`` (the
only collective of the step without sample-level reweighting), updates the channel weights and
returns a :class:`~trainer_hook.report.StepReport`. Host syncs happen only when the report is
turned into numbers (``run_metrics()``/``channel_metrics()``), on logging steps.

Packed buffer of a step (reduction dtype, default float64)::

    [ stats (C+1) x 5 | extras 2 | CP sample slots DP x (M * B * K) x 3 (only when CP > 1) ]

Under CP a sample's mean needs its token sums from every CP rank. Each rank writes its partial
per-sample sums into the slot block of its *DP rank*; the SUM over DP x CP completes every
sample and keeps samples of different DP ranks apart, so one collective still suffices. When
sample-level reweighting runs, the per-micro-batch collective already completed the samples and
the slot block is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from trainer_hook.collectives import ProcessGroup, all_reduce_sum_, group_rank, group_size
from trainer_hook.inputs import validate_micro_batch
from trainer_hook.report import (
    NUM_EXTRAS,
    NUM_FIELDS,
    SAMPLE_FACTOR_MAX,
    SAMPLE_FACTOR_MIN,
    SAMPLE_MEAN_SUM,
    SEGMENT_OVERFLOW,
    WEIGHTED_LOSS,
    StepReport,
)
from trainer_hook.reweight.channel import ChannelReweightConfig, ChannelReweighter
from trainer_hook.reweight.sample import SampleReweightConfig, sample_factors
from trainer_hook.samples import (
    LOSS,
    NONFINITE,
    TOKENS,
    channel_rows,
    compute_slot_stats,
    sample_mean_sums,
    slot_channels,
)

STATE_VERSION = 1


@dataclass(slots=True)
class MicroBatchLoss:
    """What :meth:`ChannelLoss.accumulate` returns for one micro-batch on this rank."""

    loss_sum: torch.Tensor
    """0-dim, differentiable: sum_t factor_t * loss_t over unmasked tokens (fp32, or fp64 for a
    fp64 loss). factor = channel weight x sample factor; exactly the plain masked sum when no
    reweighting is in force."""
    num_tokens: torch.Tensor
    """0-dim int64: unmasked tokens of this micro-batch on this rank."""


class ChannelLoss:
    """Per-channel loss statistics and loss reweighting for one training run.

    Args:
        channels: channel names; index i is channel id i (Megatron: ``dataset_id``).
        group: the group whose ranks hold *different* tokens (Megatron: DP x CP); the per-step
            SUM all-reduce runs over it. Never include TP ranks (they hold copies). None = one
            process.
        dp_group: the data-parallel group; needed with CP > 1 and DP > 1 to place samples by
            global position (DP rank). Without CP it defaults to ``group``.
        cp_group: the context-parallel group; sample sums are completed across it.
        sample_reweight: sample-level reweighting, or None.
        channel_reweight: channel-level reweighting, or None.
        reduce_dtype: dtype of the accumulation buffers and the all-reduce (float64 keeps token
            counts and sums exact; use float32 on a device without float64 collectives).
        device: where the buffers live before the first micro-batch is seen (default: the
            device of the first ``per_token_loss``).
        max_segments_per_row: with ``segment_ids``, the most documents a row can hold (default:
            the sequence length, the full one under CP). It sizes the per-sample slots (and so the
            CP block of the step's all-reduce and the sample-level collective); tokens of further
            documents count in their channel but form no sample (``segment_overflow_tokens``).

    Every rank of ``group`` must call ``accumulate`` the same number of times per step with
    the same ``[B, L]`` (as Megatron does) and then ``step()``.
    """

    def __init__(
        self,
        *,
        channels: Sequence[str],
        group: ProcessGroup | None = None,
        dp_group: ProcessGroup | None = None,
        cp_group: ProcessGroup | None = None,
        sample_reweight: SampleReweightConfig | None = None,
        channel_reweight: ChannelReweightConfig | None = None,
        reduce_dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        max_segments_per_row: int | None = None,
    ) -> None:
        if isinstance(channels, str) or not isinstance(channels, Sequence) or not channels:
            raise ValueError(
                f"channels must be a non-empty list of names, got {channels!r}; "
                'e.g. channels=["finance", "general"]'
            )
        names = list(channels)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"channel names must be non-empty strings, got {name!r}")
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"channel names must be unique; repeated: {dups}")
        if max_segments_per_row is not None and (
            not isinstance(max_segments_per_row, int) or max_segments_per_row < 1
        ):
            raise ValueError(
                f"max_segments_per_row={max_segments_per_row!r} must be an int >= 1 or None "
                "(None = the sequence length)"
            )
        if reduce_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"reduce_dtype={reduce_dtype} must be torch.float32 or torch.float64")
        if sample_reweight is not None and not isinstance(sample_reweight, SampleReweightConfig):
            raise TypeError("sample_reweight must be a SampleReweightConfig or None")
        if channel_reweight is not None and not isinstance(channel_reweight, ChannelReweightConfig):
            raise TypeError("channel_reweight must be a ChannelReweightConfig or None")

        self.channels = names
        self._c = len(names)
        self._group = group
        self._cp_group = cp_group
        self._cp_size = group_size(cp_group)
        self._cp_rank = group_rank(cp_group)
        world = group_size(group)
        if self._cp_size > 1:
            dp_size = group_size(dp_group) if dp_group is not None else 1
            dp_rank = group_rank(dp_group) if dp_group is not None else 0
        else:
            dp_size = group_size(dp_group) if dp_group is not None else world
            dp_rank = group_rank(dp_group) if dp_group is not None else group_rank(group)
        if dp_size * self._cp_size != world:
            raise ValueError(
                f"group has {world} ranks but dp_group x cp_group = {dp_size} x {self._cp_size}; "
                "pass group = the data-parallel x context-parallel group (no TP/PP ranks), and "
                "dp_group when both DP and CP are > 1"
            )
        self._dp_size, self._dp_rank = dp_size, dp_rank
        self._group_rank = group_rank(group)
        self._dtype = reduce_dtype
        self._max_segments_per_row = max_segments_per_row
        self._device = torch.device(device) if device is not None else None
        self._sample = sample_reweight
        self._reweighter = (
            ChannelReweighter(channel_reweight, names, reduce_dtype, torch.device("cpu"))
            if channel_reweight is not None
            else None
        )
        self._steps = 0
        self._acc: torch.Tensor | None = None
        self._extras: torch.Tensor | None = None
        self._token_weights: torch.Tensor | None = None
        self._cp_slots: list[torch.Tensor] = []
        self._factor_range: torch.Tensor | None = None  # [max, -min] of this step's factors

    # -- buffers -------------------------------------------------------------------------
    def _ensure_buffers(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._acc is None or self._extras is None or self._acc.device != device:
            self._device = device
            self._acc = torch.zeros(self._c + 1, NUM_FIELDS, dtype=self._dtype, device=device)
            self._extras = torch.zeros(NUM_EXTRAS, dtype=self._dtype, device=device)
            if self._reweighter is not None:
                self._reweighter.to(device)
                self._refresh_token_weights()
        return self._acc, self._extras

    def _refresh_token_weights(self) -> None:
        rw = self._reweighter
        if rw is None:
            return
        one = torch.ones(1, dtype=rw.weights.dtype, device=rw.weights.device)
        self._token_weights = torch.cat([rw.weights, one])  # overflow bucket: weight 1

    @property
    def steps_done(self) -> int:
        """Optimizer steps completed (restored by ``load_state_dict``)."""
        return self._steps

    # -- per micro-batch -----------------------------------------------------------------
    def accumulate(
        self,
        per_token_loss: torch.Tensor,
        loss_mask: torch.Tensor,
        channel_ids: torch.Tensor,
        segment_ids: torch.Tensor | None = None,
    ) -> MicroBatchLoss:
        """Add one micro-batch's statistics and return its (reweighted) loss sum for backward.

        ``per_token_loss`` ``[B, L]`` any float dtype; ``loss_mask`` ``[B, L]`` (nonzero = counted);
        ``channel_ids`` ``[B]`` or ``[B, L]`` integers; ``segment_ids`` ``[B, L]`` integers or
        None (then a sample is a row). No host sync; one SUM all-reduce over ``group`` only when
        sample-level reweighting is in force.
        """
        mb = validate_micro_batch(per_token_loss, loss_mask, channel_ids, segment_ids, self._c)
        acc, extras = self._ensure_buffers(mb.loss.device)
        loss_det = mb.loss.detach().to(self._dtype)
        ss = compute_slot_stats(mb, loss_det, self._c, self._cp_size, self._max_segments_per_row)
        if ss.segment_overflow_tokens is not None:
            extras[SEGMENT_OVERFLOW] += ss.segment_overflow_tokens

        sample_factor: torch.Tensor | None = None
        completed: torch.Tensor | None = None
        if self._sample is not None and self._sample.active(self._steps):
            sample_factor, completed = self._sample_factors(ss.sums[:, :3])
        if self._cp_size == 1 and ss.slot_channel is not None:
            # samples are complete and single-channel here: one index_add does everything
            acc.index_add_(0, ss.slot_channel, channel_rows(ss.sums))
        elif self._cp_size == 1:
            assert ss.token_channel_sums is not None
            acc[:, :SAMPLE_MEAN_SUM] += ss.token_channel_sums
            ch = slot_channels(ss.sums, self._c)
            acc[:, SAMPLE_MEAN_SUM:] += sample_mean_sums(ss.sums, ch, self._c)
        else:
            if ss.slot_channel is not None:
                acc[:, :SAMPLE_MEAN_SUM].index_add_(
                    0, ss.slot_channel, ss.sums[:, [LOSS, TOKENS, NONFINITE]]
                )
            else:
                assert ss.token_channel_sums is not None
                acc[:, :SAMPLE_MEAN_SUM] += ss.token_channel_sums
            if completed is not None:
                if self._cp_rank == 0:  # count each completed sample once per CP group
                    ch = slot_channels(completed, self._c)
                    acc[:, SAMPLE_MEAN_SUM:] += sample_mean_sums(completed, ch, self._c)
            else:
                self._cp_slots.append(ss.sums[:, :3])

        factor: torch.Tensor | None = None
        if self._reweighter is not None and self._reweighter.live:
            assert self._token_weights is not None
            cw = self._token_weights[mb.channel_idx]
            factor = cw if mb.per_token_ids else cw[:, None]
        if sample_factor is not None:
            sf = (
                sample_factor[:, None]
                if ss.slot_of_token is None
                else sample_factor[ss.slot_of_token]
            )
            factor = sf if factor is None else factor * sf

        compute_dtype = mb.loss.dtype if mb.loss.dtype == torch.float64 else torch.float32
        loss = mb.loss.to(compute_dtype)
        if factor is not None:
            loss = loss * factor.to(compute_dtype)
        zero = torch.zeros((), dtype=compute_dtype, device=loss.device)
        loss_sum = torch.where(mb.mask, loss, zero).sum()
        extras[WEIGHTED_LOSS] += loss_sum.detach().to(self._dtype)
        return MicroBatchLoss(loss_sum=loss_sum, num_tokens=mb.mask.sum())

    def _sample_factors(self, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample factors of this rank's slots, and its slots' CP-completed sums.

        ``local`` ``[S, 3]`` partial slot sums. They go to row ``dp_rank`` of a zero
        ``[DP, S, 3]`` buffer; a SUM all-reduce over DP x CP completes each sample over CP and
        gathers all DP ranks, so weights are chosen by global position, identically everywhere.
        """
        assert self._sample is not None
        slots = torch.zeros(self._dp_size, *local.shape, dtype=local.dtype, device=local.device)
        slots[self._dp_rank] = local
        all_reduce_sum_(slots, self._group)  # per micro-batch, sample-level reweighting only
        flat = slots.view(-1, local.shape[1])
        tokens = flat[:, TOKENS]
        mean = flat[:, 0] / tokens.clamp_min(1)
        present = tokens > 0
        factors = sample_factors(mean, present, self._sample, self._steps)
        inf = torch.tensor(float("inf"), dtype=factors.dtype, device=factors.device)
        extremes = torch.stack(
            [torch.where(present, factors, -inf).max(), -torch.where(present, factors, inf).min()]
        )
        self._factor_range = (
            extremes if self._factor_range is None else torch.maximum(self._factor_range, extremes)
        )
        return factors.view(self._dp_size, -1)[self._dp_rank], slots[self._dp_rank]

    # -- per optimizer step --------------------------------------------------------------
    def step(self) -> StepReport:
        """Reduce the step's statistics (one SUM all-reduce), update weights, return the report.

        No host sync. The new channel weights apply from the next step's micro-batches.
        """
        device = self._device if self._device is not None else torch.device("cpu")
        acc, extras = self._ensure_buffers(device)
        sample_ran = self._factor_range is not None
        if self._factor_range is not None and self._group_rank == 0:
            extras[SAMPLE_FACTOR_MAX] = self._factor_range[0]
            extras[SAMPLE_FACTOR_MIN] = -self._factor_range[1]
        parts = [acc.reshape(-1), extras]
        area: torch.Tensor | None = None
        if self._cp_slots:
            local = torch.cat(self._cp_slots)
            area = torch.zeros(self._dp_size, *local.shape, dtype=self._dtype, device=device)
            area[self._dp_rank] = local
            parts.append(area.reshape(-1))
        buf = torch.cat(parts)
        all_reduce_sum_(buf, self._group)  # THE collective of the step
        n_stats = acc.numel()
        stats = buf[:n_stats].view(self._c + 1, NUM_FIELDS)
        red_extras = buf[n_stats : n_stats + NUM_EXTRAS]
        if area is not None:
            slots = buf[n_stats + NUM_EXTRAS :].view(-1, 3)
            stats[:, SAMPLE_MEAN_SUM:] += sample_mean_sums(
                slots, slot_channels(slots, self._c), self._c
            )

        rw = self._reweighter
        if rw is not None:
            in_force = rw.weights.clone() if rw.live else torch.ones_like(rw.weights)
            clipped = rw.clipped.clone() if rw.live else torch.zeros_like(rw.weights)
            rw.update(stats[: self._c, 0], stats[: self._c, TOKENS])
            self._refresh_token_weights()
        else:
            in_force = torch.ones(self._c, dtype=self._dtype, device=device)
            clipped = None
        report = StepReport(
            step=self._steps,
            channels=self.channels,
            stats=stats,
            extras=red_extras,
            weights=in_force,
            clipped=clipped,
            reweighted=self._sample is not None or rw is not None,
            sample_reweighted=sample_ran,
        )
        self._steps += 1
        acc.zero_()
        extras.zero_()
        self._cp_slots = []
        self._factor_range = None
        return report

    # -- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        """Everything a resume needs: step counter and reweighting state (call between steps)."""
        return {
            "version": STATE_VERSION,
            "channels": list(self.channels),
            "steps": self._steps,
            "channel_reweight": None if self._reweighter is None else self._reweighter.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore :meth:`state_dict` output; the resumed run's weights are bit-identical."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"ChannelLoss state version {state.get('version')!r} is not {STATE_VERSION}; "
                "this checkpoint was written by an incompatible trainer_hook"
            )
        if list(state.get("channels", [])) != self.channels:  # type: ignore[call-overload]
            raise ValueError(
                f"checkpoint channels {state.get('channels')!r} differ from this run's "
                f"{self.channels!r}; keep the same channel list (same order) to resume"
            )
        rw_state = state.get("channel_reweight")
        if (rw_state is None) != (self._reweighter is None):
            raise ValueError(
                "checkpoint and this ChannelLoss disagree on channel_reweight (one has it, the "
                "other not); construct ChannelLoss with the same channel_reweight to resume"
            )
        if self._reweighter is not None:
            assert isinstance(rw_state, Mapping)
            self._reweighter.load_state_dict(rw_state)
            self._refresh_token_weights()
        self._steps = int(state["steps"])  # type: ignore[call-overload]
