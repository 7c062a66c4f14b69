"""Real Megatron IndexedDataset files of known sizes, built with megatron-core's builder."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

VOCAB = 8192
EOD = VOCAB - 1


def build_indexed(prefix: Path, lengths: Sequence[int], token_base: int) -> str:
    """Write ``prefix.bin``/``.idx`` with one document per length; tokens in
    ``[token_base, token_base + 1000)`` so every sample names its source; EOD ends each doc."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    prefix.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(token_base)
    builder = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=DType.optimal_dtype(VOCAB))
    for length in lengths:
        doc = rng.integers(token_base, token_base + 1000, size=length)
        doc[-1] = EOD
        builder.add_document(torch.from_numpy(doc), [length])
    builder.finalize(str(prefix) + ".idx")
    return str(prefix)


@pytest.fixture
def make_indexed(tmp_path: Path) -> Callable[[str, Sequence[int], int], str]:
    def make(name: str, lengths: Sequence[int], token_base: int = 1000) -> str:
        return build_indexed(tmp_path / "data" / name, lengths, token_base)

    return make
