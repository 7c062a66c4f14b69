"""ChannelLoss statistics on one process: hand-computed values, invariants, dtypes, no syncs."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from trainer_hook import (
    ChannelIdOutOfRangeWarning,
    ChannelLoss,
    ChannelReweightConfig,
    SampleReweightConfig,
    SegmentIdOutOfRangeWarning,
)
from trainer_hook.inputs import validate_micro_batch
from trainer_hook.samples import compute_slot_stats, slot_channels


def test_row_ids_hand_computed_over_two_micro_batches() -> None:
    hook = ChannelLoss(channels=["a", "b", "c"])
    loss1 = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask1 = torch.tensor([[1, 1, 0], [1, 1, 1]])
    out1 = hook.accumulate(loss1, mask1, torch.tensor([0, 1], dtype=torch.int16))
    loss2 = torch.tensor([[2.0, 2.0, 8.0], [1.0, 1.0, 1.0]])
    mask2 = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    out2 = hook.accumulate(loss2, mask2, torch.tensor([0, 2]))
    assert out1.loss_sum.item() == 18.0
    assert out1.num_tokens.item() == 5
    assert out2.loss_sum.item() == 12.0
    assert out2.num_tokens.item() == 3
    report = hook.step()
    # a: samples [1,2] and [2,2,8] -> tokens 5, sum 15, sample means 1.5 and 4
    # b: sample [4,5,6] -> mean 5;  c: only a fully masked row -> absent
    assert report.channel_metrics() == {
        "a": {
            "loss": 3.0,
            "loss_sample_mean": 2.75,
            "tokens": 5.0,
            "samples": 2.0,
            "token_share": 0.625,
            "weight": 1.0,
        },
        "b": {
            "loss": 5.0,
            "loss_sample_mean": 5.0,
            "tokens": 3.0,
            "samples": 1.0,
            "token_share": 0.375,
            "weight": 1.0,
        },
    }
    assert report.run_metrics() == {
        "lm_loss": 30.0 / 8.0,
        "tokens_total": 8.0,
        "overflow_tokens": 0.0,
        "nonfinite_tokens": 0.0,
    }
    # buffers were reset: an empty step reports nothing per channel
    empty = hook.step()
    assert empty.channel_metrics() == {}
    assert "lm_loss" not in empty.run_metrics()
    assert empty.step == 1


def test_packed_segments_and_per_token_ids_hand_computed() -> None:
    hook = ChannelLoss(channels=["a", "b"])
    loss = torch.tensor([[1.0, 3.0, 5.0, 7.0, 9.0, 2.0], [4.0, 4.0, 6.0, 0.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    ids = torch.tensor([[0, 0, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]])
    seg = torch.tensor([[0, 0, 1, 1, 2, 2], [5, 5, 5, 6, 6, 6]])
    hook.accumulate(loss, mask, ids, seg)
    ch = hook.step().channel_metrics()
    # a: docs [1,3] (mean 2), [9] (9), [0] (0): 4 tokens, sum 13, sample mean 11/3
    # b: docs [5,7] (6), [4,4,6] (14/3): 5 tokens, sum 26
    assert ch["a"]["tokens"] == 4.0
    assert ch["a"]["samples"] == 3.0
    assert ch["a"]["loss"] == 13.0 / 4.0
    assert ch["a"]["loss_sample_mean"] == pytest.approx(11.0 / 3.0, rel=1e-15)
    assert ch["b"]["tokens"] == 5.0
    assert ch["b"]["samples"] == 2.0
    assert ch["b"]["loss"] == 26.0 / 5.0
    assert ch["b"]["loss_sample_mean"] == pytest.approx((6.0 + 14.0 / 3.0) / 2, rel=1e-15)


def test_per_token_ids_without_segments_make_one_sample_per_row_and_channel() -> None:
    hook = ChannelLoss(channels=["a", "b"])
    loss = torch.tensor([[1.0, 2.0, 10.0, 3.0], [5.0, 5.0, 5.0, 7.0]])
    ids = torch.tensor([[0, 0, 1, 0], [1, 1, 1, 1]])
    hook.accumulate(loss, torch.ones(2, 4), ids)
    ch = hook.step().channel_metrics()
    assert ch["a"]["samples"] == 1.0
    assert ch["a"]["loss_sample_mean"] == 2.0
    assert ch["b"]["samples"] == 2.0
    assert ch["b"]["loss_sample_mean"] == (10.0 + 5.5) / 2


def test_loss_and_gradient_equal_megatron_formula_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, requires_grad=True, generator=g)
    x = torch.randn(4, 32, 8, generator=g)
    mask = (torch.rand(4, 32, generator=g) > 0.3).float()
    ids = torch.tensor([0, 1, 1, 0])
    per_token = (x @ w).pow(2)
    plain = torch.sum(per_token.view(-1) * mask.view(-1))  # Megatron's loss_func
    (grad_plain,) = torch.autograd.grad(plain, w, retain_graph=True)
    configs = (
        {},
        {"sample_reweight": SampleReweightConfig(strategy="uniform")},
        {"sample_reweight": SampleReweightConfig(warmup_steps=1)},  # uniform warm-up
        {"channel_reweight": ChannelReweightConfig()},  # no statistics yet: weights 1
    )
    for config in configs:
        hook = ChannelLoss(channels=["a", "b"], **config)  # type: ignore[arg-type]
        out = hook.accumulate(per_token, mask, ids)
        assert torch.equal(out.loss_sum, plain)
        (grad,) = torch.autograd.grad(out.loss_sum, w, retain_graph=True)
        assert torch.equal(grad, grad_plain)
        run = hook.step().run_metrics()
        assert run["lm_loss"] == pytest.approx(plain.item() / mask.sum().item(), rel=1e-7)


@pytest.mark.filterwarnings("ignore::trainer_hook.ChannelIdOutOfRangeWarning")
def test_merging_channels_gives_the_plain_token_weighted_loss() -> None:
    g = torch.Generator().manual_seed(1)
    hook = ChannelLoss(channels=["a", "b", "c"])
    total, tokens, in_range = 0.0, 0.0, 0.0
    for _ in range(4):
        loss = torch.rand(3, 20, generator=g, dtype=torch.float64) * 5
        mask = torch.rand(3, 20, generator=g) > 0.4
        ids = torch.randint(0, 4, (3, 20), generator=g)  # 3 = overflow
        hook.accumulate(loss, mask, ids)
        total += float((loss * mask).sum())
        tokens += float(mask.sum())
        in_range += float((loss * mask * (ids < 3)).sum())
    report = hook.step()
    run, ch = report.run_metrics(), report.channel_metrics()
    merged = sum(m["loss"] * m["tokens"] for m in ch.values())
    assert run["lm_loss"] == pytest.approx(total / tokens, rel=1e-12)
    assert run["tokens_total"] == tokens
    assert sum(m["tokens"] for m in ch.values()) + run["overflow_tokens"] == tokens
    assert merged == pytest.approx(in_range, rel=1e-12)  # overflow tokens hold the rest
    assert sum(m["token_share"] for m in ch.values()) == pytest.approx(1.0, rel=1e-15)


def test_out_of_range_ids_go_to_overflow_with_a_named_warning() -> None:
    hook = ChannelLoss(channels=["a", "b"])
    loss = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    hook.accumulate(loss, torch.ones(3, 2), torch.tensor([0, 2, -1]))  # no raise, no sync
    report = hook.step()
    with pytest.warns(ChannelIdOutOfRangeWarning, match="4 tokens had a channel id outside"):
        run = report.run_metrics()
    assert run["overflow_tokens"] == 4.0
    assert run["lm_loss"] == 2.0
    assert report.channel_metrics() == {
        "a": {
            "loss": 1.0,
            "loss_sample_mean": 1.0,
            "tokens": 2.0,
            "samples": 1.0,
            "token_share": 1.0,
            "weight": 1.0,
        }
    }


def test_non_finite_loss_stays_in_its_channel() -> None:
    config = ChannelReweightConfig(strategy="progress")
    hook = ChannelLoss(channels=["a", "b"], channel_reweight=config)
    loss = torch.tensor([[1.0, float("nan"), 3.0], [2.0, 4.0, float("inf")]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])  # the inf is masked: it must not count
    out = hook.accumulate(loss, mask, torch.tensor([0, 1]))
    assert math.isnan(out.loss_sum.item())  # the trainer sees the NaN, as without the hook
    report = hook.step()
    ch, run = report.channel_metrics(), report.run_metrics()
    assert math.isnan(ch["a"]["loss"])
    assert math.isnan(ch["a"]["loss_sample_mean"])
    assert ch["a"]["nonfinite_tokens"] == 1.0
    assert ch["a"]["tokens"] == 3.0
    assert ch["b"] == {
        "loss": 3.0,
        "loss_sample_mean": 3.0,
        "tokens": 2.0,
        "samples": 1.0,
        "token_share": 0.4,
        "weight": 1.0,
        "weight_clipped": 0.0,  # channel reweighting on: no bound moved the first weights
    }
    assert run["nonfinite_tokens"] == 1.0
    assert math.isnan(run["lm_loss"])
    state = hook.state_dict()["channel_reweight"]
    assert isinstance(state, dict)
    assert torch.isfinite(state["weights"]).all()
    assert state["n_obs"].tolist() == [0.0, 1.0]  # the NaN step is not an observation of "a"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_losses_accumulate_in_float32_or_better(dtype: torch.dtype) -> None:
    hook = ChannelLoss(channels=["a"], reduce_dtype=torch.float32)
    loss = torch.full((4, 1024), 1.0 + 2.0**-7, dtype=dtype)
    out = hook.accumulate(loss, torch.ones(4, 1024), torch.zeros(4, dtype=torch.long))
    assert out.loss_sum.dtype == torch.float32
    # 4096 * (1 + 2^-7) is exact in fp32; a bf16/fp16 running sum would have lost it
    assert out.loss_sum.item() == 4096 * (1 + 2.0**-7)
    ch = hook.step().channel_metrics()
    assert ch["a"]["loss"] == 1 + 2.0**-7
    assert ch["a"]["tokens"] == 4096.0


_SYNC_METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


@contextmanager
def forbid_host_syncs() -> Iterator[None]:
    """Make every Python-level device-to-host conversion of a tensor raise."""
    saved = {name: getattr(torch.Tensor, name) for name in _SYNC_METHODS}

    def make(name: str):  # type: ignore[no-untyped-def]
        def forbidden(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise AssertionError(f"host sync: Tensor.{name}")

        return forbidden

    try:
        for name in _SYNC_METHODS:
            setattr(torch.Tensor, name, make(name))
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)


@pytest.mark.parametrize("normalization", ["minmax", "quantile", "mad"])
def test_accumulate_and_step_make_no_host_sync(normalization: str) -> None:
    hook = ChannelLoss(
        channels=["a", "b", "c"],
        sample_reweight=SampleReweightConfig(normalization=normalization),  # type: ignore[arg-type]
        channel_reweight=ChannelReweightConfig(strategy="doremi", loss_coef=0.3),
    )
    g = torch.Generator().manual_seed(3)
    with forbid_host_syncs():
        for _ in range(3):
            for _ in range(2):
                loss = torch.rand(2, 8, generator=g, dtype=torch.float64)
                seg = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2]] * 2)
                ids = torch.randint(0, 5, (2, 8), generator=g)
                hook.accumulate(loss, torch.ones(2, 8), ids, seg)
            hook.step()
    with pytest.raises(AssertionError, match="host sync"), forbid_host_syncs():
        torch.ones(1).item()  # the guard itself works


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_host_sync_on_cuda() -> None:
    """On a real GPU, torch's sync debug mode turns any synchronising op into an error."""
    device = torch.device("cuda")
    hook = ChannelLoss(
        channels=["a", "b", "c"],
        sample_reweight=SampleReweightConfig(normalization="quantile"),
        channel_reweight=ChannelReweightConfig(strategy="doremi"),
    )
    g = torch.Generator().manual_seed(4)
    batches = [
        (
            torch.rand(2, 8, generator=g).to(device, torch.bfloat16),
            torch.ones(2, 8, device=device),
            torch.randint(0, 5, (2, 8), generator=g).to(device),
            torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2]] * 2, device=device),
        )
        for _ in range(6)
    ]
    hook.accumulate(*batches[0])  # first call allocates buffers
    torch.cuda.set_sync_debug_mode("error")
    try:
        for loss, mask, ids, seg in batches[1:]:
            hook.accumulate(loss, mask, ids, seg)
            hook.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert set(hook.step().channel_metrics()) <= {"a", "b", "c"}


def test_documents_beyond_max_segments_count_in_their_channel_but_form_no_sample() -> None:
    hook = ChannelLoss(channels=["a", "b"], max_segments_per_row=2)
    loss = torch.tensor([[1.0, 3.0, 5.0, 7.0, 9.0, 11.0]])
    ids = torch.tensor([[0, 0, 1, 1, 0, 1]])
    seg = torch.tensor([[0, 0, 1, 1, 2, 3]])  # 4 documents, 2 slots
    hook.accumulate(loss, torch.ones(1, 6), ids, seg)
    report = hook.step()
    with pytest.warns(SegmentIdOutOfRangeWarning, match="2 tokens belonged to documents beyond"):
        run = report.run_metrics()
    assert run["segment_overflow_tokens"] == 2.0
    ch = report.channel_metrics()
    assert ch["a"]["tokens"] == 3.0
    assert ch["a"]["loss"] == 13.0 / 3.0  # includes the overflowing document [9]
    assert ch["a"]["samples"] == 1.0
    assert ch["a"]["loss_sample_mean"] == 2.0
    assert ch["b"]["tokens"] == 3.0
    assert ch["b"]["loss"] == 23.0 / 3.0
    assert ch["b"]["samples"] == 1.0
    assert ch["b"]["loss_sample_mean"] == 6.0


def test_cp_slots_use_global_segment_ids_and_dump_bad_ones() -> None:
    """Under CP the slot is the document index in the full row; bad ids form no sample."""
    mb = validate_micro_batch(
        torch.tensor([[1.0, 2.0, 4.0, 8.0]], dtype=torch.float64),
        torch.ones(1, 4),
        torch.tensor([[1, 1, 0, 0]]),
        torch.tensor([[5, 5, 7, -1]]),  # this CP rank holds part of documents 5 and 7
        2,
    )
    ss = compute_slot_stats(mb, mb.loss, num_channels=2, cp_size=2)  # full row L*CP = 8
    assert ss.slots_per_row == 9
    assert ss.slot_channel is None  # recovered after the CP sum, from (channel+1)*tokens
    assert ss.sums[5].tolist() == [3.0, 2.0, 4.0, 0.0]
    assert ss.sums[7].tolist() == [4.0, 1.0, 1.0, 0.0]
    assert ss.sums[8].tolist() == [0.0, 0.0, 0.0, 0.0]  # the dump slot
    assert ss.segment_overflow_tokens is not None
    assert ss.segment_overflow_tokens.item() == 1.0
    assert ss.token_channel_sums is not None
    assert ss.token_channel_sums.tolist() == [[12.0, 2.0, 0.0], [3.0, 2.0, 0.0], [0.0, 0.0, 0.0]]
    assert slot_channels(ss.sums, 2)[[5, 7]].tolist() == [1, 0]
