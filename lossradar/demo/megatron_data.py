"""The real Megatron data path of the demo: IndexedDataset files and a BlendedDataset.

Each channel's training documents are tokenized, written with megatron-core's
``IndexedDatasetBuilder`` to ``<cache>/indexed-<fingerprint>/<channel>_text_document.{bin,idx}``
(every document ends with EOD, as ``preprocess_data.py`` writes them), and blended with
``BlendedMegatronDatasetBuilder`` at the target shares. Every sample carries ``dataset_id``, the
index of its prefix in the blend, which the training loop hands to ``ChannelLoss`` as channel id.

One document in ten is held out (never written to the training files) for evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lossradar.demo.sources import CHANNELS, TARGET_SHARES, channel_documents, foreign_documents
from lossradar.demo.tokenizer import (
    EOD_TOKEN,
    cache_dir,
    corpus_fingerprint,
    load_or_train_tokenizer,
)

HELDOUT_EVERY = 10  #: document i is held out when i % HELDOUT_EVERY == HELDOUT_EVERY - 1


@dataclass(kw_only=True, slots=True)
class HeldOut:
    """One channel's held-out text as one token stream (documents joined by EOD)."""

    tokens: np.ndarray
    """int64 token ids."""
    chars: int
    """characters of the held-out documents (the denominator of nats per character)."""


@dataclass(kw_only=True, slots=True)
class DemoData:
    """Everything the training loop needs from the data side."""

    channels: tuple[str, ...]
    """channel names; index == ``dataset_id``."""
    prefixes: list[str]
    """IndexedDataset prefixes in blend order."""
    train: Any
    """the megatron-core BlendedDataset (samples: tokens, labels, loss_mask, dataset_id, ...)."""
    heldout: dict[str, HeldOut]
    foreign_tokens: np.ndarray
    """tokens of text in languages absent from the blend (the ``language`` corruption)."""
    vocab_size: int
    eod: int
    shares: dict[str, float] = field(default_factory=dict)


class _BlendTokenizer:
    """The few tokenizer attributes megatron-core's GPTDataset reads (no pad token: -1 is used)."""

    def __init__(self, vocab_size: int, eod: int) -> None:
        self.vocab_size = vocab_size
        self.eod = eod
        self.unique_identifiers = {"class": "lossradar.demo.bpe", "vocab_size": vocab_size}


def _encode(tokenizer: Any, docs: Sequence[str], eod: int) -> list[np.ndarray]:
    return [np.asarray([*enc.ids, eod], dtype=np.int32) for enc in tokenizer.encode_batch(docs)]


def write_indexed_dataset(prefix: str, documents: Sequence[np.ndarray], vocab_size: int) -> None:
    """Write ``prefix.bin``/``prefix.idx`` with megatron-core (atomically: tmp files, rename)."""
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    tmp = f"{prefix}.tmp{os.getpid()}"
    builder = IndexedDatasetBuilder(tmp + ".bin", dtype=DType.optimal_dtype(vocab_size))
    for doc in documents:
        builder.add_document(torch.from_numpy(doc), [len(doc)])
    builder.finalize(tmp + ".idx")
    os.replace(tmp + ".bin", prefix + ".bin")
    os.replace(tmp + ".idx", prefix + ".idx")


def build_blend(
    prefixes: Sequence[str],
    weights: Sequence[float],
    *,
    num_samples: int,
    seq_length: int,
    seed: int,
    vocab_size: int,
    eod: int,
) -> Any:
    """``BlendedMegatronDatasetBuilder(GPTDataset, [num_samples, 0, 0], ...)`` -> BlendedDataset."""
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend=(list(prefixes), list(weights)),
        split="100,0,0",
        path_to_cache=None,  # megatron-core 0.16 caches only under torch.distributed
        tokenizer=_BlendTokenizer(vocab_size, eod),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        mid_level_dataset_surplus=0.1,
    )
    train, _, _ = BlendedMegatronDatasetBuilder(
        GPTDataset, [num_samples, 0, 0], lambda: True, config
    ).build()
    return train


def prepare_data(
    *,
    num_samples: int,
    seq_length: int = 256,
    seed: int = 1234,
    shares: Mapping[str, float] | None = None,
    vocab_size: int = 8192,
    max_chars_per_channel: int = 1_000_000,
) -> DemoData:
    """Build (or reuse from the cache) tokenizer, IndexedDataset files and the BlendedDataset."""
    shares = dict(shares or TARGET_SHARES)
    if set(shares) != set(CHANNELS) or any(v <= 0 for v in shares.values()):
        raise ValueError(f"shares must give a positive share to each of {CHANNELS}, got {shares}")
    docs = channel_documents(max_chars_per_channel)
    tokenizer = load_or_train_tokenizer(docs, vocab_size=vocab_size)
    eod = int(tokenizer.token_to_id(EOD_TOKEN))
    folder = Path(cache_dir()) / f"indexed-{vocab_size}-{corpus_fingerprint(docs)}"
    folder.mkdir(parents=True, exist_ok=True)
    prefixes: list[str] = []
    heldout: dict[str, HeldOut] = {}
    for name in CHANNELS:
        train_docs = [d for i, d in enumerate(docs[name]) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]
        held_docs = [d for i, d in enumerate(docs[name]) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]
        prefix = str(folder / f"{name}_text_document")
        if not (Path(prefix + ".bin").exists() and Path(prefix + ".idx").exists()):
            write_indexed_dataset(prefix, _encode(tokenizer, train_docs, eod), vocab_size)
        prefixes.append(prefix)
        held_tokens = np.concatenate(_encode(tokenizer, held_docs, eod)).astype(np.int64)
        heldout[name] = HeldOut(tokens=held_tokens, chars=sum(len(d) for d in held_docs))
    foreign = np.concatenate(_encode(tokenizer, foreign_documents(), eod)).astype(np.int64)
    total = sum(shares.values())
    weights = [shares[name] / total for name in CHANNELS]
    train = build_blend(
        prefixes,
        weights,
        num_samples=num_samples,
        seq_length=seq_length,
        seed=seed,
        vocab_size=vocab_size,
        eod=eod,
    )
    return DemoData(
        channels=CHANNELS,
        prefixes=prefixes,
        train=train,
        heldout=heldout,
        foreign_tokens=foreign,
        vocab_size=vocab_size,
        eod=eod,
        shares={name: shares[name] / total for name in CHANNELS},
    )


def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack BlendedDataset samples into a batch (``dataset_id`` -> int64 ``[B]``)."""
    return {
        "tokens": torch.stack([torch.as_tensor(s["tokens"]) for s in samples]).long(),
        "labels": torch.stack([torch.as_tensor(s["labels"]) for s in samples]).long(),
        "loss_mask": torch.stack([torch.as_tensor(s["loss_mask"]) for s in samples]).float(),
        "dataset_id": torch.as_tensor([int(s["dataset_id"]) for s in samples], dtype=torch.long),
    }


def batch_at(train: Any, step: int, batch_size: int) -> dict[str, torch.Tensor]:
    """The global batch of ``step``: samples ``step*B .. step*B+B-1`` of the blend, in order."""
    return collate([train[step * batch_size + i] for i in range(batch_size)])
