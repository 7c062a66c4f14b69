"""Per-sample sums of one micro-batch, in fixed-size slots (no host sync, static shapes).

A *sample* is a row, or a packed document inside a row. Each micro-batch is laid out in
``B * K`` slots, ``K`` slots per row (``S`` = ``max_segments_per_row``, default ``L`` without
CP and ``L * CP`` with CP):

============================  ===========  ===================================================
inputs                        K            slot of token (b, t)
============================  ===========  ===================================================
ids ``[B]``, no segments      1            ``b``
ids ``[B, L]``, no segments   ``C + 1``    ``b*K + channel``  (a row's part per channel)
segments, no CP               ``S`` (+1)   ``b*K + j``, j = index of the contiguous run of
                                           equal (segment, channel) in the row
segments, CP > 1              ``S + 1``    ``b*K + segment_id`` (document index in the full row)
============================  ===========  ===================================================

Tokens whose document does not fit (run index or segment id outside ``[0, S)``) go to a last
*dump* slot per row: they still count in their channel's loss and tokens (taken per token), but
form no sample (no sample mean, sample factor 1) and are reported as segment overflow.

Each slot holds four sums: loss, tokens, ``(channel + 1) * tokens`` and non-finite tokens. The
third one recovers a slot's channel after its partial sums were added over the CP group:
``channel = round(sum / tokens) - 1``. Under CP, segment ids must be the document index inside
the *full* row, identical on all CP ranks (contiguous runs, as produced by packing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer_hook.inputs import MicroBatch

LOSS, TOKENS, CHANNEL_TOKENS, NONFINITE = 0, 1, 2, 3
NUM_SLOT_FIELDS = 4


@dataclass(slots=True)
class SlotStats:
    """Slot sums of one micro-batch."""

    sums: torch.Tensor  # [B*K, 4] in the reduction dtype
    slots_per_row: int  # K
    slot_of_token: torch.Tensor | None  # [B, L] int64, or None when slot == row
    slot_channel: torch.Tensor | None  # [B*K] int64 when known exactly on this rank
    token_channel_sums: torch.Tensor | None  # [C+1, 3] (loss, tokens, non-finite) when not
    segment_overflow_tokens: torch.Tensor | None  # 0-dim, unmasked tokens with a bad segment id


def slot_channels(sums: torch.Tensor, num_channels: int) -> torch.Tensor:
    """Channel of each slot from its (possibly CP-completed) sums; empty slots give 0."""
    tokens = sums[:, TOKENS].clamp_min(1)
    ch = torch.round(sums[:, CHANNEL_TOKENS] / tokens).long() - 1
    return ch.clamp(0, num_channels)


def compute_slot_stats(
    mb: MicroBatch,
    loss_det: torch.Tensor,
    num_channels: int,
    cp_size: int,
    max_segments_per_row: int | None = None,
) -> SlotStats:
    """Slot sums of one micro-batch (and per-channel token sums when slots cannot tell them).

    ``loss_det`` is the detached per-token loss already cast to the reduction dtype. Masked tokens
    contribute nothing, even when their loss is NaN; unmasked non-finite losses are summed (so the
    channel reports NaN/Inf) and counted.
    """
    dtype = loss_det.dtype
    mask_f = mb.mask.to(dtype)
    lm = torch.where(mb.mask, loss_det, 0.0)
    bsz, seq = loss_det.shape

    if not mb.per_token_ids and mb.segment_ids is None:
        tokens = mask_f.sum(1)
        # (channel+1)*tokens is only read after a CP sum; without CP the slot's channel is known
        channel_tokens = (mb.channel_idx + 1).to(dtype) * tokens if cp_size > 1 else tokens
        nonfinite_rows = (~torch.isfinite(lm)).sum(1).to(dtype)
        sums = torch.stack([lm.sum(1), tokens, channel_tokens, nonfinite_rows], dim=1)
        return SlotStats(sums, 1, None, mb.channel_idx, None, None)

    nonfinite = (~torch.isfinite(lm)).to(dtype)
    ch_tok = mb.channel_idx if mb.per_token_ids else mb.channel_idx[:, None].expand(bsz, seq)
    rows = torch.arange(bsz, device=lm.device)[:, None]
    dump = False  # a last slot per row for documents that do not fit
    if mb.segment_ids is None:
        k = num_channels + 1
        key = ch_tok
    else:
        seg = mb.segment_ids
        if cp_size == 1:
            start = torch.ones_like(mb.mask)
            start[:, 1:] = (seg[:, 1:] != seg[:, :-1]) | (ch_tok[:, 1:] != ch_tok[:, :-1])
            key = torch.cumsum(start, dim=1) - 1  # in [0, L)
            cap = seq if max_segments_per_row is None else min(max_segments_per_row, seq)
            dump = cap < seq
        else:
            key = seg
            cap = seq * cp_size if max_segments_per_row is None else max_segments_per_row
            dump = True
        k = cap + 1 if dump else cap
        if dump:
            bad = (key < 0) | (key >= cap)
            key = torch.where(bad, cap, key)
    slot = rows * k + key
    values = torch.stack([lm, mask_f, (ch_tok + 1).to(dtype) * mask_f, nonfinite], dim=-1)
    values = values.reshape(-1, NUM_SLOT_FIELDS)
    sums = torch.zeros(bsz * k, NUM_SLOT_FIELDS, dtype=dtype, device=lm.device)
    sums.index_add_(0, slot.reshape(-1), values)
    if not dump:  # every slot holds one channel: exact, and channel sums come from slots
        slot_channel = torch.zeros(bsz * k, dtype=torch.long, device=lm.device)
        slot_channel.scatter_(0, slot.reshape(-1), ch_tok.reshape(-1))
        return SlotStats(sums, k, slot, slot_channel, None, None)
    seg_overflow = sums.view(bsz, k, NUM_SLOT_FIELDS)[:, k - 1, TOKENS].sum()
    sums.view(bsz, k, NUM_SLOT_FIELDS)[:, k - 1] = 0.0  # the dump slot is no sample
    token_sums = torch.zeros(num_channels + 1, 3, dtype=dtype, device=lm.device)
    token_sums.index_add_(0, ch_tok.reshape(-1), values[:, [LOSS, TOKENS, NONFINITE]])
    return SlotStats(sums, k, slot, None, token_sums, seg_overflow)


def channel_rows(sums: torch.Tensor) -> torch.Tensor:
    """Per slot ``[S, 5]``: loss, tokens, non-finite tokens, sample mean (0 if empty), is-sample.

    Added into the per-channel buffer by slot channel. An empty slot has loss 0 (masked tokens
    are zeroed), so ``mean * present`` is 0 for it and NaN/Inf for a non-finite sample.
    """
    tokens = sums[:, TOKENS]
    present = (tokens > 0).to(sums.dtype)
    mean = sums[:, LOSS] / tokens.clamp_min(1)
    return torch.stack([sums[:, LOSS], tokens, sums[:, NONFINITE], mean * present, present], dim=1)


def sample_mean_sums(
    sums: torch.Tensor, slot_channel: torch.Tensor, num_channels: int
) -> torch.Tensor:
    """Per channel ``[C+1, 2]``: the sum of complete samples' mean losses, and their count.

    A slot is a sample when it holds at least one unmasked token; its mean is loss / tokens.
    """
    tokens = sums[:, TOKENS]
    present = (tokens > 0).to(sums.dtype)
    mean = sums[:, LOSS] / tokens.clamp_min(1)
    values = torch.stack([mean * present, present], dim=1)
    out = torch.zeros(num_channels + 1, 2, dtype=sums.dtype, device=sums.device)
    out.index_add_(0, slot_channel, values)
    return out
