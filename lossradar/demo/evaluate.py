"""Held-out loss per channel in nats per character.

For a channel with held-out token stream ``x_0..x_N`` (documents joined by EOD) and ``C``
characters of text, ``nats_per_char = sum_t -log p(x_{t+1} | x_{<=t}) / C``, evaluated in
non-overlapping windows of ``seq_length`` predictions (each window conditions only on itself).
Per character, not per token, so channels with different tokenization densities compare fairly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lossradar.demo.megatron_data import HeldOut
from lossradar.demo.model import TinyGPT, per_token_loss


@torch.no_grad()
def heldout_nats_per_char(
    model: TinyGPT,
    heldout: Mapping[str, HeldOut],
    *,
    seq_length: int,
    batch_size: int = 16,
    max_tokens: int | None = None,
) -> dict[str, float]:
    """``{channel: nats per character}`` over each channel's held-out stream.

    ``max_tokens`` evaluates only a prefix of each stream (characters are scaled in proportion).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: dict[str, float] = {}
    for name, held in heldout.items():
        stream = torch.as_tensor(held.tokens, dtype=torch.long)
        n_pred = len(stream) - 1
        if max_tokens is not None:
            n_pred = min(n_pred, max_tokens)
        windows = n_pred // seq_length
        if windows == 0:
            raise ValueError(f"held-out text of {name!r} is shorter than one window")
        used = windows * seq_length
        inputs = stream[:used].view(windows, seq_length)
        labels = stream[1 : used + 1].view(windows, seq_length)
        total = 0.0
        for i in range(0, windows, batch_size):
            logits = model(inputs[i : i + batch_size].to(device))
            total += float(per_token_loss(logits, labels[i : i + batch_size].to(device)).sum())
        chars = held.chars * used / (len(stream) - 1)
        out[name] = total / chars
    model.train(was_training)
    return out
