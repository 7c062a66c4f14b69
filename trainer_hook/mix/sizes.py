"""Sizes of Megatron IndexedDatasets, read from their ``.idx`` through megatron-core.

megatron-core is imported only when a size is read, so the plan math imports with torch alone.
A GPTDataset's "documents" are the sequences of the ``.idx``; with ``--split`` only the first
``round(train_fraction * documents)`` of them are training data (megatron-core's own rule in
``BlendedMegatronDatasetBuilder._build_megatron_dataset_splits``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from trainer_hook.mix.spec import MixPlanError


@dataclass(frozen=True, kw_only=True, slots=True)
class DataSize:
    """Training data of one prefix (or a sum of prefixes)."""

    documents: int
    """Documents (``.idx`` sequences) in the train split."""
    tokens: int
    """Tokens of those documents: one epoch of the source."""

    def __add__(self, other: DataSize) -> DataSize:
        return DataSize(
            documents=self.documents + other.documents, tokens=self.tokens + other.tokens
        )


def read_data_size(prefix: str, *, train_fraction: float = 1.0, entry: str = "") -> DataSize:
    """Documents and tokens of the train split of the IndexedDataset at ``prefix``."""
    where = f"entry {entry!r}: " if entry else ""
    missing = [s for s in (".idx", ".bin") if not Path(prefix + s).is_file()]
    if missing:
        raise MixPlanError(
            f"{where}prefix {prefix!r} not found: no {' or '.join(prefix + s for s in missing)}. "
            "Give the path without .bin/.idx (as in --data-path), relative to [mix] data_root, "
            "or build it with Megatron's tools/preprocess_data.py"
        )
    try:
        with warnings.catch_warnings():  # "Transformer Engine and Apex are not installed"
            warnings.simplefilter("ignore", UserWarning)
            from megatron.core.datasets.indexed_dataset import IndexedDataset
    except ImportError as exc:
        raise MixPlanError(
            "reading .idx sizes needs megatron-core: pip install 'lossradar[megatron]'"
        ) from exc
    try:
        dataset = IndexedDataset(prefix, mmap=True)
    except Exception as exc:
        raise MixPlanError(
            f"{where}cannot read {prefix}.idx as a Megatron IndexedDataset ({exc}); rebuild it"
        ) from exc
    lengths = dataset.sequence_lengths
    documents = round(train_fraction * float(len(lengths)))  # megatron: int(round(...))
    tokens = int(lengths[:documents].sum(dtype="int64"))
    return DataSize(documents=documents, tokens=tokens)
