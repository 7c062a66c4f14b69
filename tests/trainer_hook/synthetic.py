"""Deterministic synthetic global batches and their per-rank shards, for distributed tests.

A tiny linear "model" ``W [D, V]`` turns features ``x [R, L, D]`` into per-token cross-entropy,
so the gradient of the (reweighted) loss can be compared between layouts. Every rank builds the
same global batch from the seed and keeps its shard: rows by DP rank, sequence chunks by CP rank
(Megatron's load-balanced layout: CP rank c holds chunks c and 2*CP-1-c of 2*CP).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

CHANNELS = ["finance", "math", "code", "dialogue"]  # "dialogue" never appears
D, V = 6, 11


@dataclass
class Micro:
    x: torch.Tensor  # [R, L, D]
    labels: torch.Tensor  # [R, L]
    mask: torch.Tensor  # [R, L] float 0/1
    channel_ids: torch.Tensor  # [R] int16 or [R, L] int64
    segment_ids: torch.Tensor | None  # [R, L] or None


def make_weight(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(D, V, generator=g, dtype=torch.float64)


def make_step(seed: int, step: int, n_micro: int, rows: int, seq: int, packed: bool) -> list[Micro]:
    """``n_micro`` global micro-batches of ``rows`` rows for optimizer step ``step``."""
    g = torch.Generator().manual_seed(seed * 1000 + step)
    out = []
    for m in range(n_micro):
        x = torch.randn(rows, seq, D, generator=g, dtype=torch.float64) * (1 + m)
        labels = torch.randint(0, V, (rows, seq), generator=g)
        keep = torch.rand(rows, 1, generator=g) * 0.7 + 0.3
        mask = (torch.rand(rows, seq, generator=g) < keep).to(torch.float32)
        mask[0, : seq // 2] = 0  # uneven: half a row masked
        if m == 1:
            mask[-1] = 0  # a fully masked row
        seg: torch.Tensor | None = None
        if packed:
            ids = torch.empty(rows, seq, dtype=torch.long)
            seg = torch.empty(rows, seq, dtype=torch.long)
            for r in range(rows):
                cuts = sorted(torch.randperm(seq - 1, generator=g)[:3].add(1).tolist())
                bounds = [0, *cuts, seq]
                for j in range(len(bounds) - 1):
                    # the second half of the rows (DP rank 1) never holds "math"
                    choices = [0, 1, 2] if r < rows // 2 else [0, 2]
                    ch = choices[int(torch.randint(0, len(choices), (1,), generator=g))]
                    ids[r, bounds[j] : bounds[j + 1]] = ch
                    seg[r, bounds[j] : bounds[j + 1]] = j
            if m == 0:  # a document with an out-of-range channel id: overflow tokens
                ids[1, -3:] = 9
                seg[1, -3:] = int(seg[1, -4]) + 1
        else:
            ids16 = torch.randint(0, 3, (rows,), generator=g)
            ids16[rows // 2 :] = torch.where(ids16[rows // 2 :] == 1, 2, ids16[rows // 2 :])
            if m == 0:
                ids16[1] = 7  # out-of-range
            ids = ids16.to(torch.int16)
        out.append(Micro(x, labels, mask, ids, seg))
    return out


def per_token_loss(w: torch.Tensor, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = x @ w
    return F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), reduction="none").view(
        labels.shape
    )


def _cp_index(seq: int, cp: int, cp_rank: int) -> torch.Tensor:
    chunk = seq // (2 * cp)
    first = torch.arange(cp_rank * chunk, (cp_rank + 1) * chunk)
    j = 2 * cp - 1 - cp_rank
    second = torch.arange(j * chunk, (j + 1) * chunk)
    return torch.cat([first, second])


def shard(mb: Micro, dp: int, dp_rank: int, cp: int, cp_rank: int) -> Micro:
    """The part of a global micro-batch that rank (dp_rank, cp_rank) holds."""
    rows = mb.x.shape[0] // dp
    r = slice(dp_rank * rows, (dp_rank + 1) * rows)
    idx = _cp_index(mb.x.shape[1], cp, cp_rank)

    def cut(t: torch.Tensor) -> torch.Tensor:
        return t[r][:, idx]

    ids = cut(mb.channel_ids) if mb.channel_ids.dim() == 2 else mb.channel_ids[r]
    seg = None if mb.segment_ids is None else cut(mb.segment_ids)
    return Micro(mb.x[r][:, idx], cut(mb.labels), cut(mb.mask), ids, seg)
