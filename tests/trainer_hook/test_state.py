"""Checkpoint/resume: a resumed run is bit-identical to an uninterrupted one."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch

from trainer_hook import ChannelLoss, ChannelReweightConfig, SampleReweightConfig

CHANNELS = ["finance", "math", "general"]


def _make(strategy: str) -> ChannelLoss:
    return ChannelLoss(
        channels=CHANNELS,
        sample_reweight=SampleReweightConfig(
            warmup="anneal", warmup_steps=4, normalization="quantile"
        ),
        channel_reweight=ChannelReweightConfig(
            strategy=strategy,  # type: ignore[arg-type]
            warmup_steps=2,
            init_steps=2,
            loss_coef=0.5,
            targets=["finance"],
        ),
    )


def _run(hook: ChannelLoss, steps: range) -> list[Any]:
    trace: list[Any] = []
    for step in steps:
        g = torch.Generator().manual_seed(100 + step)
        for _ in range(2):
            loss = torch.rand(4, 12, generator=g) * (3.0 - 0.2 * step)
            mask = torch.rand(4, 12, generator=g) > 0.2
            ids = torch.randint(0, 3, (4,), generator=g)
            trace.append(hook.accumulate(loss, mask, ids).loss_sum)
        report = hook.step()
        trace.append((report.stats.clone(), report.weights.clone()))
    return trace


def _roundtrip(state: dict[str, object]) -> dict[str, object]:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("strategy", ["progress", "doremi"])
def test_resume_is_bit_identical(strategy: str) -> None:
    straight = _run(_make(strategy), range(7))
    first = _make(strategy)
    head = _run(first, range(3))
    resumed = _make(strategy)
    resumed.load_state_dict(_roundtrip(first.state_dict()))
    assert resumed.steps_done == 3
    tail = _run(resumed, range(3, 7))
    assert len(head + tail) == len(straight)
    for got, want in zip(head + tail, straight, strict=True):
        if isinstance(want, tuple):
            assert torch.equal(got[0], want[0])
            assert torch.equal(got[1], want[1])
        else:
            assert torch.equal(got, want)
    # not vacuous: the weights moved away from 1 by the end
    assert not torch.equal(straight[-1][1], torch.ones(3, dtype=torch.float64))


def test_fresh_hook_differs_from_resumed_one() -> None:
    """Without load_state_dict, the continuation differs (so the test above can fail)."""
    first = _make("progress")
    _run(first, range(3))
    fresh_tail = _run(_make("progress"), range(3, 7))
    resumed = _make("progress")
    resumed.load_state_dict(first.state_dict())
    tail = _run(resumed, range(3, 7))
    assert not all(
        torch.equal(a[1], b[1])
        for a, b in zip(tail, fresh_tail, strict=True)
        if isinstance(a, tuple)
    )


def test_load_state_rejects_mismatches() -> None:
    state = _make("progress").state_dict()
    with pytest.raises(ValueError, match=r"checkpoint channels .* differ from this run's"):
        ChannelLoss(
            channels=["finance", "general", "math"],
            channel_reweight=ChannelReweightConfig(targets=["finance"]),
        ).load_state_dict(state)
    with pytest.raises(ValueError, match="disagree on channel_reweight"):
        ChannelLoss(channels=CHANNELS).load_state_dict(state)
    with pytest.raises(ValueError, match="state version 99 is not 1"):
        _make("progress").load_state_dict({**state, "version": 99})
    bad = dict(state)
    rw = dict(bad["channel_reweight"])  # type: ignore[call-overload]
    rw["ema"] = torch.zeros(5)
    bad["channel_reweight"] = rw
    with pytest.raises(ValueError, match=r"'ema' must be a tensor of shape \(3,\)"):
        _make("progress").load_state_dict(bad)
