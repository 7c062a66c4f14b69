"""Channel ids per sample and per token, without process groups."""

from __future__ import annotations

import pytest
import torch

from trainer_hook.megatron.batch import (
    ChannelIds,
    DatasetIdTap,
    legacy_scale,
    map_dataset_ids,
    match_layout,
    per_token_channel_ids,
    segments_from_actual_seq_len,
    segments_from_position_ids,
)

POS = torch.tensor([[3, 4, 0, 1, 2, 0, 1, 2], [0, 1, 2, 3, 0, 1, 0, 1]])
SEG = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 2], [0, 0, 0, 0, 1, 1, 2, 2]])


def test_segments_from_position_ids_and_actual_seq_len_agree() -> None:
    assert torch.equal(segments_from_position_ids(POS), SEG)
    # MindSpeed-LLM's actual_seq_len: cumulative document ends over the flattened batch
    ends = [2, 5, 8, 12, 14, 16]
    assert torch.equal(segments_from_actual_seq_len(ends, 2, 8), SEG)
    with pytest.raises(ValueError, match="must end at batch \\* seq_len = 16"):
        segments_from_actual_seq_len([2, 5], 2, 8)
    with pytest.raises(ValueError, match="strictly increasing"):
        segments_from_actual_seq_len([2, 2, 16], 2, 8)


def test_per_token_ids_per_sample_document_and_token() -> None:
    d2c = torch.tensor([0, 1, 1, 2])  # datasets 1 and 2 share channel 1
    per_sample = per_token_channel_ids(torch.tensor([3, 1]), SEG, d2c)
    assert per_sample.tolist() == [[2] * 8, [1] * 8]
    per_doc = per_token_channel_ids(torch.tensor([0, 3, 2, 1, 0, 9]), SEG, d2c)
    assert per_doc.tolist() == [[0, 0, 2, 2, 2, 1, 1, 1], [1, 1, 1, 1, 0, 0, 3, 3]]
    per_token = per_token_channel_ids(torch.arange(16).view(2, 8) % 4, SEG, d2c)
    assert per_token.tolist() == [[0, 1, 1, 2] * 2, [0, 1, 1, 2] * 2]
    with pytest.raises(ValueError, match=r"neither per sample \(2\) nor per document \(6"):
        per_token_channel_ids(torch.tensor([0, 1, 2]), SEG, d2c)


def test_map_dataset_ids_sends_unknown_ids_to_overflow() -> None:
    d2c = torch.tensor([0, 1, 0])
    assert map_dataset_ids(torch.tensor([2, 1, 3, -1, 0]), d2c).tolist() == [0, 1, 2, 2, 0]


def test_tap_takes_dataset_id_and_leaves_the_loader_dict_whole() -> None:
    batch = {"tokens": torch.zeros(2, 4), "dataset_id": torch.tensor([1, 0], dtype=torch.int16)}
    tap = DatasetIdTap(iter([batch]))
    seen = next(tap)
    assert "dataset_id" not in seen
    assert "dataset_id" in batch
    ids, pos, shape = tap.take()
    assert ids is not None
    assert ids.tolist() == [1, 0]
    assert pos is None
    assert shape == (2, 4)
    assert tap.take() == (None, None, None)
    with pytest.raises(StopIteration):
        next(tap)


def test_thd_flattened_layout_gets_per_token_ids_and_offset_segments() -> None:
    flat_mask = torch.ones(1, 16)
    per_sample = match_layout(ChannelIds(ids=torch.tensor([2, 0])), flat_mask, 8)
    assert per_sample.ids.tolist() == [[2] * 8 + [0] * 8]
    packed = ChannelIds(ids=torch.zeros(2, 8, dtype=torch.int64), segments=SEG)
    out = match_layout(packed, flat_mask, 8)
    assert out.segments is not None
    assert out.segments.tolist() == [[0, 0, 1, 1, 1, 2, 2, 2, 8, 8, 8, 8, 9, 9, 10, 10]]
    same = ChannelIds(ids=torch.tensor([1, 1]))
    assert match_layout(same, torch.ones(2, 8), 8) is same


def test_two_value_loss_func_keeps_its_scaling() -> None:
    per_token = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    legacy = (per_token * mask).sum() / mask.sum() * 2  # MindSpeed-LLM: local mean x cp_size
    assert float(legacy_scale(legacy, per_token, mask)) == pytest.approx(2 / 3)
    assert float(legacy_scale(torch.tensor(0.0), per_token, torch.zeros(1, 4))) == 0.0
