"""Validation of one micro-batch's tensors, and its channel ids mapped into fixed-size buckets.

Every check here reads tensor metadata only (shape, dtype, device): no host/device sync. Value
checks that would need a sync (a channel id out of range) are not raised: such tokens go to the
overflow bucket (index ``num_channels``) and are reported at the logging step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(slots=True)
class MicroBatch:
    """One validated micro-batch.

    ``channel_idx`` holds ids mapped into ``[0, C]``: ``C`` is the overflow bucket. It is ``[B]``
    when the caller gave one id per sample, ``[B, L]`` when it gave one per token.
    """

    loss: torch.Tensor  # [B, L], the caller's tensor (differentiable)
    mask: torch.Tensor  # [B, L] bool
    channel_idx: torch.Tensor  # [B] or [B, L], int64 in [0, C]
    segment_ids: torch.Tensor | None  # [B, L] integer, or None

    @property
    def per_token_ids(self) -> bool:
        return self.channel_idx.dim() == 2


_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def validate_micro_batch(
    per_token_loss: object,
    loss_mask: object,
    channel_ids: object,
    segment_ids: object,
    num_channels: int,
) -> MicroBatch:
    """Check shapes, dtypes and devices; map channel ids into ``[0, num_channels]``."""
    for name, value in (
        ("per_token_loss", per_token_loss),
        ("loss_mask", loss_mask),
        ("channel_ids", channel_ids),
    ):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    assert isinstance(per_token_loss, torch.Tensor)
    assert isinstance(loss_mask, torch.Tensor)
    assert isinstance(channel_ids, torch.Tensor)
    if segment_ids is not None and not isinstance(segment_ids, torch.Tensor):
        raise TypeError(
            f"segment_ids must be a torch.Tensor or None, got {type(segment_ids).__name__}"
        )

    loss = per_token_loss
    if loss.dim() != 2:
        raise ValueError(
            f"per_token_loss has shape {_shape(loss)}; expected [B, L] (micro-batch, sequence): "
            "pass the unreduced per-token loss, e.g. cross_entropy(..., reduction='none')"
        )
    if not loss.is_floating_point():
        raise TypeError(
            f"per_token_loss has dtype {loss.dtype}; expected a floating dtype "
            "(float32, bfloat16, float16 or float64)"
        )
    bsz, seq = loss.shape
    if tuple(loss_mask.shape) != (bsz, seq):
        raise ValueError(
            f"loss_mask has shape {_shape(loss_mask)} but per_token_loss has {_shape(loss)}; "
            "pass a mask of the same [B, L] shape (1 = token counts, 0 = ignored)"
        )
    if loss_mask.dtype.is_complex:
        raise TypeError(f"loss_mask has dtype {loss_mask.dtype}; use bool, integer or float 0/1")

    if channel_ids.dtype not in _INT_DTYPES:
        raise TypeError(
            f"channel_ids has dtype {channel_ids.dtype}; expected an integer dtype "
            "(e.g. Megatron's int16 dataset_id): convert with .long()"
        )
    if tuple(channel_ids.shape) not in ((bsz,), (bsz, seq)):
        raise ValueError(
            f"channel_ids has shape {_shape(channel_ids)}; expected [{bsz}] (one id per sample) "
            f"or [{bsz}, {seq}] (one id per token) to match per_token_loss {_shape(loss)}"
        )
    seg: torch.Tensor | None = None
    if segment_ids is not None:
        assert isinstance(segment_ids, torch.Tensor)
        if segment_ids.dtype not in _INT_DTYPES:
            raise TypeError(
                f"segment_ids has dtype {segment_ids.dtype}; expected an integer dtype: "
                "convert with .long()"
            )
        if tuple(segment_ids.shape) != (bsz, seq):
            raise ValueError(
                f"segment_ids has shape {_shape(segment_ids)}; expected [{bsz}, {seq}] like "
                f"per_token_loss (the packed document index of every token)"
            )
        seg = segment_ids.long()
    for name, t in (("loss_mask", loss_mask), ("channel_ids", channel_ids), ("segment_ids", seg)):
        if t is not None and t.device != loss.device:
            raise ValueError(
                f"{name} is on {t.device} but per_token_loss is on {loss.device}; "
                f"move it with .to(per_token_loss.device)"
            )

    # ids outside [0, C) -> C: clamp to [-1, C], then -1 % (C+1) = C (no sync, 3 ops)
    channel_idx = channel_ids.long().clamp(-1, num_channels) % (num_channels + 1)
    mask = loss_mask if loss_mask.dtype == torch.bool else loss_mask != 0
    return MicroBatch(loss=loss, mask=mask, channel_idx=channel_idx, segment_ids=seg)
