"""The demo data path: package text -> BPE -> IndexedDataset -> BlendedDataset -> dataset_id."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import torch

from lossradar.demo.corrupt import DUPLICATE_PERIOD, Corruption, corrupt_batch
from lossradar.demo.megatron_data import DemoData, batch_at, prepare_data
from lossradar.demo.sources import CHANNELS, channel_documents, peoples_daily_paragraphs

pytestmark = pytest.mark.megatron


@pytest.fixture(scope="module")
def data() -> DemoData:
    return prepare_data(num_samples=100, seq_length=64)


def test_finance_paragraphs_are_clean_economic_text() -> None:
    economic, other = peoples_daily_paragraphs()
    assert len(economic) > 3000
    assert len(other) > 3000
    assert not any(tag in p for p in economic for tag in ("/n", "/v", "/w", "/m"))  # POS tags
    assert not any(re.search(r"[０-９]", p) for p in economic)  # NFKC: no full-width digits
    assert any("经济" in p for p in economic)


def test_every_channel_has_about_a_million_characters() -> None:
    docs = channel_documents(200_000)
    assert tuple(docs) == CHANNELS
    for name, channel in docs.items():
        total = sum(map(len, channel))
        assert 200_000 <= total < 200_000 + max(map(len, channel)), name
    assert docs["code"][0].lstrip().startswith(('"""', "#", "'''", "import", "from"))
    assert docs["math"][0].startswith("Problem: ")


def test_blend_follows_the_3_2_2_3_budget(data: DemoData) -> None:
    counts = Counter(int(data.train[i]["dataset_id"]) for i in range(len(data.train)))
    assert len(data.train) == 100
    assert counts == {0: 30, 1: 20, 2: 20, 3: 30}
    assert data.shares == {"finance": 0.3, "math": 0.2, "code": 0.2, "general": 0.3}


def test_dataset_id_names_the_indexed_dataset_the_sample_came_from(data: DemoData) -> None:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    streams = []
    for prefix in data.prefixes:
        ds = IndexedDataset(prefix)
        streams.append(np.concatenate([ds[i] for i in range(len(ds))]).astype(np.int64).tobytes())
    checked = 0
    for i in range(0, 100, 3):
        sample = data.train[i]
        tokens = np.asarray(sample["tokens"], dtype=np.int64)
        # documents are shuffled, so check each piece between EOD tokens on its own
        pieces = np.split(tokens, np.flatnonzero(tokens == data.eod))
        for piece in (p[p != data.eod] for p in pieces):
            if len(piece) < 16:
                continue
            needle = piece.tobytes()
            hits = [k for k, s in enumerate(streams) if _aligned_find(s, needle)]
            assert hits == [int(sample["dataset_id"])], i
            checked += 1
    assert checked >= 30


def _aligned_find(haystack: bytes, needle: bytes) -> bool:
    pos = haystack.find(needle)
    while pos >= 0:
        if pos % 8 == 0:
            return True
        pos = haystack.find(needle, pos + 1)
    return False


def test_batch_carries_dataset_id_as_channel_ids(data: DemoData) -> None:
    batch = batch_at(data.train, 1, 10)
    assert batch["tokens"].shape == (10, 64)
    assert torch.equal(batch["tokens"][:, 1:], batch["labels"][:, :-1])
    assert batch["dataset_id"].dtype == torch.long
    expected = [int(data.train[10 + i]["dataset_id"]) for i in range(10)]
    assert batch["dataset_id"].tolist() == expected


def test_corruption_spec_parsing_names_the_problem() -> None:
    assert Corruption.parse("finance@150:shuffle", CHANNELS) == Corruption(
        channel="finance", step=150, kind="shuffle"
    )
    with pytest.raises(ValueError, match=r"write CHANNEL@STEP:KIND"):
        Corruption.parse("finance150shuffle", CHANNELS)
    with pytest.raises(ValueError, match=r"unknown channel 'legal'.*finance, math, code, general"):
        Corruption.parse("legal@3:shuffle", CHANNELS)
    with pytest.raises(ValueError, match=r"unknown corruption kind 'zero'; use one of shuffle"):
        Corruption.parse("math@3:zero", CHANNELS)


def _batch() -> dict[str, torch.Tensor]:
    stream = torch.arange(4 * 33).view(4, 33) + 1
    return {
        "tokens": stream[:, :-1].clone(),
        "labels": stream[:, 1:].clone(),
        "loss_mask": torch.ones(4, 32),
        "dataset_id": torch.tensor([0, 1, 0, 2]),
    }


@pytest.mark.parametrize("kind", ["shuffle", "language", "duplicate", "empty"])
def test_corruption_touches_only_the_chosen_channel(kind: str) -> None:
    batch, clean = _batch(), _batch()
    foreign = np.arange(1000, 1100)
    n = corrupt_batch(
        batch, channel_id=0, kind=kind, eod=0, foreign_tokens=foreign, rng=np.random.default_rng(0)
    )
    assert n == 2
    for key in batch:
        assert torch.equal(batch[key][[1, 3]], clean[key][[1, 3]])
    for r in (0, 2):
        stream = torch.cat([batch["tokens"][r], batch["labels"][r, -1:]])
        original = torch.cat([clean["tokens"][r], clean["labels"][r, -1:]])
        assert torch.equal(batch["tokens"][r, 1:], batch["labels"][r, :-1])
        if kind == "shuffle":
            assert not torch.equal(stream, original)
            assert sorted(stream.tolist()) == sorted(original.tolist())
        elif kind == "language":
            assert ((stream >= 1000) & (stream < 1100)).all()
            assert torch.equal(stream, torch.arange(int(stream[0]), int(stream[0]) + 33))
        elif kind == "duplicate":
            assert len(set(stream.tolist())) == DUPLICATE_PERIOD
            assert torch.equal(stream[:DUPLICATE_PERIOD], original[:DUPLICATE_PERIOD])
        else:
            assert (stream == 0).all()
            assert batch["loss_mask"][r].sum() == 0
