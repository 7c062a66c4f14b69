"""Bad inputs raise at once with errors that name the tensor, its shape and the fix."""

from __future__ import annotations

import pytest
import torch

from trainer_hook import ChannelLoss

LOSS = torch.ones(2, 3)
MASK = torch.ones(2, 3)
IDS = torch.tensor([0, 1])


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (
            (torch.ones(6), MASK, IDS),
            ValueError,
            r"per_token_loss has shape \[6\]; expected \[B, L\]",
        ),
        (
            (torch.ones(2, 3, dtype=torch.long), MASK, IDS),
            TypeError,
            "per_token_loss has dtype torch.int64",
        ),
        (
            (LOSS, torch.ones(3, 2), IDS),
            ValueError,
            r"loss_mask has shape \[3, 2\] but per_token_loss has \[2, 3\]",
        ),
        ((LOSS, MASK, IDS.float()), TypeError, r"channel_ids has dtype torch.float32.*\.long\(\)"),
        (
            (LOSS, MASK, torch.tensor([0, 1, 1])),
            ValueError,
            r"channel_ids has shape \[3\]; expected \[2\] .* or \[2, 3\]",
        ),
        (
            (LOSS, MASK, IDS, torch.zeros(2, 4, dtype=torch.long)),
            ValueError,
            r"segment_ids has shape \[2, 4\]; expected \[2, 3\]",
        ),
        ((LOSS, MASK, IDS, torch.zeros(2, 3)), TypeError, "segment_ids has dtype torch.float32"),
        (
            (LOSS, MASK.to("meta"), IDS),
            ValueError,
            r"loss_mask is on meta but per_token_loss is on cpu",
        ),
        ((LOSS, MASK, [0, 1]), TypeError, "channel_ids must be a torch.Tensor, got list"),
    ],
)
def test_bad_micro_batch(args: tuple[object, ...], error: type[Exception], match: str) -> None:
    hook = ChannelLoss(channels=["a", "b"])
    with pytest.raises(error, match=match):
        hook.accumulate(*args)  # type: ignore[arg-type]
    # nothing was accumulated by the failed call
    hook.accumulate(LOSS, MASK, IDS)
    assert hook.step().run_metrics()["tokens_total"] == 6.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"channels": []}, ValueError, "channels must be a non-empty list of names"),
        ({"channels": "finance"}, ValueError, "channels must be a non-empty list"),
        ({"channels": ["a", ""]}, ValueError, "non-empty strings"),
        ({"channels": ["a", "b", "a"]}, ValueError, r"unique; repeated: \['a'\]"),
        ({"channels": ["a"], "reduce_dtype": torch.float16}, ValueError, "reduce_dtype"),
        (
            {"channels": ["a"], "sample_reweight": {"strategy": "linupper"}},
            TypeError,
            "SampleReweightConfig",
        ),
        ({"channels": ["a"], "channel_reweight": "progress"}, TypeError, "ChannelReweightConfig"),
    ],
)
def test_bad_construction(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ChannelLoss(**kwargs)  # type: ignore[arg-type]


def test_ids_of_any_integer_dtype_and_masks_of_any_kind_are_accepted() -> None:
    hook = ChannelLoss(channels=["a", "b"])
    for ids in (IDS.to(torch.int16), IDS.to(torch.int32), IDS.to(torch.uint8)):
        for mask in (MASK.bool(), MASK.int(), MASK.half()):
            hook.accumulate(LOSS, mask, ids)
    assert hook.step().channel_metrics()["a"]["tokens"] == 27.0
