"""Real Megatron IndexedDataset files of known sizes (megatron-core's builder), a plan over them,
and the BlendedDataset Megatron builds from a ``--data-path``."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from trainer_hook.mix import load_plan, resolve_plan
from trainer_hook.mix.resolve import ResolvedPlan

VOCAB = 8192
EOD = VOCAB - 1
SEQ = 16

PLAN = """\
[mix]
seq_length = 16
tokens = 160_000
max_epochs = 1000
data_root = "data"

[channels.finance]
ratio = 3
[channels.finance.slow]
ratio = 3
[channels.finance.slow.credit]
prefix = "credit"
[channels.finance.slow.qa]
prefix = "qa"
[channels.finance.fast]
ratio = 1
prefix = "fin_fast"
[channels.math]
ratio = 2
prefix = "math"
[channels.general]
ratio = 5
prefix = "general"
"""

# name -> (document lengths, token base); token ids of source k lie in [base, base + 1000).
SOURCES: dict[str, tuple[list[int], int]] = {
    "credit": ([20, 30, 40] * 10, 1000),  # 30 docs, 900 tokens
    "qa": ([50, 50] * 9, 2000),  # 18 docs, 900 tokens
    "fin_fast": ([10] * 40, 3000),  # 40 docs, 400 tokens
    "math": ([25, 35] * 20, 4000),  # 40 docs, 1200 tokens
    "general": ([60] * 50, 5000),  # 50 docs, 3000 tokens
}


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


def _null_tokenizer() -> Any:
    from megatron.core.tokenizers import MegatronTokenizer

    try:
        return MegatronTokenizer.from_pretrained(
            metadata_path={"library": "null"}, vocab_size=VOCAB
        )
    except Exception:  # megatron-core >= 0.19 names it "null-text"
        return MegatronTokenizer.from_pretrained(
            metadata_path={"library": "null-text"}, vocab_size=VOCAB
        )


def build_blend(data_path: list[str], samples: int) -> Any:
    """The train BlendedDataset Megatron builds for ``--data-path *data_path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from megatron.core.datasets.blended_megatron_dataset_builder import (
            BlendedMegatronDatasetBuilder,
        )
        from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
        from megatron.core.datasets.utils import get_blend_from_list

    config = GPTDatasetConfig(
        random_seed=1234,
        sequence_length=SEQ,
        blend=get_blend_from_list(data_path),
        split="100,0,0",
        path_to_cache=None,
        tokenizer=_null_tokenizer(),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
    )
    train, _, _ = BlendedMegatronDatasetBuilder(
        GPTDataset, [samples, 0, 0], lambda: True, config
    ).build()
    return train


@pytest.fixture
def make_indexed(tmp_path: Path) -> Callable[[str, Sequence[int], int], str]:
    def make(name: str, lengths: Sequence[int], token_base: int = 1000) -> str:
        return build_indexed(tmp_path / "data" / name, lengths, token_base)

    return make


@pytest.fixture
def planned(tmp_path: Path, make_indexed: Callable[[str, Sequence[int], int], str]) -> ResolvedPlan:
    for name, (lengths, base) in SOURCES.items():
        make_indexed(name, lengths, base)
    (tmp_path / "plan.toml").write_text(PLAN)
    return resolve_plan(load_plan(tmp_path / "plan.toml"))
