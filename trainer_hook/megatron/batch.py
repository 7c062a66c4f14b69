"""Keeping each sample's channel through Megatron's ``get_batch``.

Stock Megatron loses ``dataset_id`` on TP ranks other than 0 (it is not among the broadcast
keys) and crashes under CP > 1 (``get_batch_on_this_cp_rank`` slices the 1-D ``[B]`` tensor along
a sequence dim it does not have). The fix, in order:

1. ``DatasetIdTap`` wraps the data iterator seen by TP rank 0 and takes ``dataset_id`` out of each
   batch *before* Megatron's TP and CP helpers run (a shallow copy: the loader's dict, which the
   rerun machinery may replay, is left whole).
2. ``ChannelIds.broadcast`` sends it as int64 ``[micro_batch]`` from TP rank 0 to the TP group
   (one small broadcast per micro-batch, last pipeline stage only).
3. Under CP the per-sample ids stay whole: every CP rank holds a slice of every sample.
4. Packed rows (``--reset-position-ids``; MindSpeed-LLM's ``actual_seq_len`` / TND layout) hold
   several documents: the ids become per token ``[B, L]`` with a document (segment) index per token,
   and both are sliced under CP by the same function that slices the tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

DATASET_ID_KEY = "dataset_id"


class DatasetIdTap:
    """Iterator proxy that yields the wrapped iterator's batches without ``dataset_id``.

    The removed ids (or None when a batch had none: a single-prefix run) and the batch's
    ``position_ids`` are kept in ``taken`` until ``take()``.
    """

    def __init__(self, iterator: Any, key: str = DATASET_ID_KEY) -> None:
        self._iterator = iterator
        self._key = key
        self.taken: list[tuple[torch.Tensor | None, torch.Tensor | None, tuple[int, ...] | None]]
        self.taken = []

    def __iter__(self) -> DatasetIdTap:
        return self

    def __next__(self) -> Any:
        batch = next(self._iterator)
        if isinstance(batch, dict):
            batch = dict(batch)
            ids = batch.pop(self._key, None)
            ref = batch.get("tokens")
            if ref is None:
                ref = batch.get("labels")
            shape = tuple(ref.shape) if isinstance(ref, torch.Tensor) else None
            pos = batch.get("position_ids")
            self.taken.append((ids, pos if isinstance(pos, torch.Tensor) else None, shape))
        return batch

    def __getattr__(self, name: str) -> Any:  # e.g. RerunDataIterator's methods
        return getattr(self._iterator, name)

    def take(self) -> tuple[torch.Tensor | None, torch.Tensor | None, tuple[int, ...] | None]:
        """The ids, position ids and token shape of the last batch read, or Nones if none was."""
        if not self.taken:
            return None, None, None
        last = self.taken[-1]
        self.taken.clear()
        return last


def segments_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Document index of every token of a packed ``[B, L]`` batch, within its row.

    A document starts where the position id is 0 (MindSpeed-LLM's ``compute_actual_seq_len`` uses
    the same rule) and at every row start: ``seg[b, t] = cumsum_{u<=t}(start[b, u]) - 1``. The
    index is taken in the full (unsliced) row, as ``ChannelLoss`` needs under CP.
    """
    return _row_segments(position_ids == 0)


def segments_from_actual_seq_len(
    actual_seq_len: Sequence[int] | torch.Tensor, batch: int, seq_len: int
) -> torch.Tensor:
    """Document index per token (within its row) from MindSpeed-LLM's ``actual_seq_len``.

    ``actual_seq_len`` holds the cumulative end offsets of the documents over the flattened
    ``[B * L]`` tokens (the last one is ``B * L``); document ``j`` covers ``[end_{j-1}, end_j)``.
    """
    ends = torch.as_tensor(actual_seq_len, dtype=torch.int64).reshape(-1)
    total = batch * seq_len
    if ends.numel() == 0 or int(ends[-1]) != total:
        raise ValueError(
            f"actual_seq_len must end at batch * seq_len = {total}, got {ends.tolist()[-3:]}"
        )
    if bool((torch.diff(ends, prepend=torch.zeros(1, dtype=torch.int64)) <= 0).any()):
        raise ValueError("actual_seq_len must be strictly increasing document end offsets")
    starts = torch.zeros(total, dtype=torch.bool)
    starts[ends[:-1]] = True
    return _row_segments(starts.view(batch, seq_len))


def _row_segments(starts: torch.Tensor) -> torch.Tensor:
    starts = starts.clone()
    starts[:, 0] = True
    return starts.to(torch.int64).cumsum(dim=1) - 1


def per_token_channel_ids(
    dataset_id: torch.Tensor, segments: torch.Tensor, dataset_to_channel: torch.Tensor
) -> torch.Tensor:
    """Channel id of every token of a packed ``[B, L]`` batch.

    ``dataset_id`` may be per sample ``[B]`` (a GPT sample comes from one dataset: every document
    of the row shares it), per document ``[n_docs]`` (row by row, documents in order), or per
    token ``[B, L]``. Ids outside the blend map to ``len(channels)`` (counted as overflow).
    """
    ids = dataset_id.to(torch.int64)
    b, seq = segments.shape
    if ids.dim() == 2:
        if tuple(ids.shape) != (b, seq):
            raise ValueError(
                f"per-token dataset_id {tuple(ids.shape)} must match tokens {(b, seq)}"
            )
        tok = ids
    elif ids.numel() == b:  # one doc per row makes per-sample == per-document
        tok = ids.view(b, 1).expand(b, seq)
    else:
        docs_per_row = segments.max(dim=1).values + 1
        n_docs = int(docs_per_row.sum())
        if ids.numel() != n_docs:
            raise ValueError(
                f"dataset_id of shape {tuple(ids.shape)} is neither per sample ({b}) nor per "
                f"document ({n_docs}, row by row) nor per token ({b}, {seq})"
            )
        first_doc = torch.cumsum(docs_per_row, 0) - docs_per_row  # flat index of each row's doc 0
        tok = ids.reshape(-1)[first_doc[:, None] + segments]
    return map_dataset_ids(tok, dataset_to_channel)


def map_dataset_ids(ids: torch.Tensor, dataset_to_channel: torch.Tensor) -> torch.Tensor:
    """``dataset_id -> channel id`` by table lookup; out-of-range ids give ``num_channels``
    (= ``int(dataset_to_channel.max()) + 1``, the overflow id)."""
    table = dataset_to_channel.to(ids.device)
    overflow = int(table.max()) + 1 if table.numel() else 0
    ids = ids.to(torch.int64)
    valid = (ids >= 0) & (ids < table.numel())
    return torch.where(valid, table[ids.clamp(0, max(table.numel() - 1, 0))], overflow)


@dataclass(kw_only=True, slots=True)
class ChannelIds:
    """The channel ids of one micro-batch on this rank, as the loss function needs them.

    ``ids``: int64 ``[B]`` channel per sample, or ``[B, L_cp]`` per token for packed rows (already
    sliced like the tokens under CP). ``segments``: int64 ``[B, L_cp]`` document index per token
    for packed rows, else None.
    """

    ids: torch.Tensor
    segments: torch.Tensor | None = None


def broadcast_over_tp(
    tensor: torch.Tensor | None,
    shape: tuple[int, ...],
    *,
    is_src: bool,
    src_rank: int,
    group: Any,
    device: torch.device,
) -> torch.Tensor:
    """Broadcast an int64 tensor of known ``shape`` from the TP source rank to the TP group."""
    if is_src:
        if tensor is None or tuple(tensor.shape) != shape:
            got = None if tensor is None else tuple(tensor.shape)
            raise ValueError(
                f"channel ids of shape {got} on TP rank 0, expected {shape}: set micro_batch_size "
                "and seq_length of MegatronChannelLoss to --micro-batch-size and --seq-length"
            )
        buf = tensor.to(device=device, dtype=torch.int64, non_blocking=True).contiguous()
    else:
        buf = torch.empty(shape, dtype=torch.int64, device=device)
    torch.distributed.broadcast(buf, src_rank, group=group)
    return buf


def slice_per_token_for_cp(
    tensors: dict[str, torch.Tensor],
    cp_slice_fn: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, torch.Tensor]:
    """Slice ``[B, L]`` tensors with the very function that slices the tokens under CP."""
    return {k: v for k, v in cp_slice_fn(dict(tensors)).items() if k in tensors}


def legacy_scale(
    loss: torch.Tensor, per_token: torch.Tensor, loss_mask: torch.Tensor
) -> torch.Tensor:
    """``loss / plain_sum`` (detached): whatever the 2-tuple ``loss_func`` did to the masked sum
    (``/ num_tokens``, ``* cp_size``, ...), the weighted sum gets the same factor."""
    plain = (per_token.detach() * loss_mask.float().view(per_token.shape)).sum()
    ratio = loss.detach().float() / plain
    return torch.where(plain != 0, ratio, torch.zeros_like(ratio))


def match_layout(ids: ChannelIds, loss_mask: torch.Tensor, seq_length: int) -> ChannelIds:
    """Channel ids in the layout of ``loss_mask``.

    Megatron's THD path (``flatten_batch_for_packed_sequences``) turns ``[B, L]`` into
    ``[1, B * L]``: per-sample ids are then repeated per token, and per-row document indices are
    offset by ``row * seq_length`` (full rows) so the documents of different rows stay apart.
    """
    if ids.ids.dim() == 1 and loss_mask.dim() == 2 and loss_mask.shape[0] == ids.ids.shape[0]:
        return ids
    if tuple(ids.ids.shape) == tuple(loss_mask.shape):
        return ids
    n = ids.ids.shape[0]
    if loss_mask.numel() % n != 0:
        raise ValueError(
            f"channel ids {tuple(ids.ids.shape)} do not fit loss_mask {tuple(loss_mask.shape)}"
        )
    per_row = loss_mask.numel() // n
    tok = ids.ids.view(n, 1).expand(n, per_row) if ids.ids.dim() == 1 else ids.ids
    seg = None
    if ids.segments is not None:
        rows = torch.arange(n, device=ids.segments.device).view(n, 1)
        seg = ids.segments + rows * seq_length
        seg = seg.reshape(loss_mask.shape)
    return ChannelIds(ids=tok.reshape(loss_mask.shape), segments=seg)
