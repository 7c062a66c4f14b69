"""Sample-level reweighting: formulas against hand computation, robustness, warm-up, wiring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer_hook import ChannelLoss, SampleReweightConfig
from trainer_hook.reweight.sample import sample_factors


def _expected(losses: list[float], f, r: float) -> list[float]:  # type: ignore[no-untyped-def]
    """Plain-Python reference: min-max h, f(h), softmax(f/r), factor N*w."""
    lmax, lmin = max(losses), min(losses)
    h = [(2 * x - lmax - lmin) / (lmax - lmin) for x in losses]
    e = [math.exp(f(v) / r) for v in h]
    return [len(losses) * v / sum(e) for v in e]


STRATEGIES = {
    "linupper": lambda h: min(h + 1, 1),
    "quadratic": lambda h: 1 - h * h,
    "extremes": abs,
}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_factors_match_the_formula(strategy: str) -> None:
    losses = [1.0, 2.0, 4.0, 3.5]
    config = SampleReweightConfig(strategy=strategy, temperature=0.5)  # type: ignore[arg-type]
    got = sample_factors(
        torch.tensor(losses, dtype=torch.float64), torch.ones(4, dtype=torch.bool), config, 0
    )
    assert got.tolist() == pytest.approx(_expected(losses, STRATEGIES[strategy], 0.5), rel=1e-12)
    assert float(got.sum()) == pytest.approx(4.0, rel=1e-12)  # mean factor 1


def test_linupper_hand_values() -> None:
    # l = [1, 2, 4]: h = [-1, -1/3, 1]; f = [0, 2/3, 1]; r = 0.5 -> exp([0, 4/3, 2])
    e = [1.0, math.exp(4 / 3), math.exp(2.0)]
    want = [3 * v / sum(e) for v in e]
    got = sample_factors(
        torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64),
        torch.ones(3, dtype=torch.bool),
        SampleReweightConfig(strategy="linupper", temperature=0.5),
        0,
    )
    assert got.tolist() == pytest.approx(want, rel=1e-12)


def test_empty_slots_are_not_samples_and_keep_factor_one() -> None:
    loss = torch.tensor([1.0, 0.0, 2.0, 4.0, 0.0], dtype=torch.float64)
    present = torch.tensor([True, False, True, True, False])
    got = sample_factors(loss, present, SampleReweightConfig(strategy="extremes"), 0)
    want = _expected([1.0, 2.0, 4.0], abs, 0.5)
    assert got.tolist() == pytest.approx([want[0], 1.0, want[1], want[2], 1.0], rel=1e-12)


def test_degenerate_batches_give_exactly_one() -> None:
    cfg = SampleReweightConfig(strategy="linupper")
    same = sample_factors(torch.full((5,), 2.5), torch.ones(5, dtype=torch.bool), cfg, 0)
    assert same.tolist() == [1.0] * 5
    none = sample_factors(torch.zeros(3), torch.zeros(3, dtype=torch.bool), cfg, 0)
    assert none.tolist() == [1.0] * 3


def test_non_finite_sample_is_left_out_of_min_max() -> None:
    loss = torch.tensor([1.0, float("nan"), 2.0, 4.0], dtype=torch.float64)
    got = sample_factors(
        loss, torch.ones(4, dtype=torch.bool), SampleReweightConfig(temperature=0.5), 0
    )
    assert torch.isfinite(got).all()
    # the NaN sample gets h = 0 (f = 1 for linupper); the others are normalised without it
    e = [math.exp(0 / 0.5), math.exp(1 / 0.5), math.exp((2 / 3) / 0.5), math.exp(1 / 0.5)]
    assert got.tolist() == pytest.approx([4 * v / sum(e) for v in e], rel=1e-12)


def test_robust_normalisations_stop_one_outlier_taking_the_batch() -> None:
    losses = [1.0, 1.1, 1.2, 1.3, 100.0]
    present = torch.ones(5, dtype=torch.bool)
    t = torch.tensor(losses, dtype=torch.float64)
    f = STRATEGIES["linupper"]

    minmax = sample_factors(t, present, SampleReweightConfig(temperature=0.5), 0)
    assert minmax.tolist() == pytest.approx(_expected(losses, f, 0.5), rel=1e-12)

    # mad: median 1.2, MAD 0.1 -> clip to 1.2 +/- 3 * 1.4826 * 0.1
    mad = sample_factors(t, present, SampleReweightConfig(temperature=0.5, normalization="mad"), 0)
    hi = 1.2 + 3 * 1.4826 * 0.1
    assert mad.tolist() == pytest.approx(_expected([*losses[:4], hi], f, 0.5), rel=1e-9)

    q = SampleReweightConfig(temperature=0.5, normalization="quantile", quantile=0.25)
    lo_q, hi_q = np.quantile(losses, [0.25, 0.75])
    clipped = [min(max(x, lo_q), hi_q) for x in losses]
    got_q = sample_factors(t, present, q, 0)
    assert got_q.tolist() == pytest.approx(_expected(clipped, f, 0.5), rel=1e-9)

    # with min-max the four ordinary samples are squeezed together (h ~ -1): the outlier alone
    # holds weight e^(1/r) times theirs; the robust options spread the weight again.
    assert float(minmax[:4].max() / minmax[:4].min()) < 1.02
    assert float(minmax[4] / minmax[:4].max()) > 7.0  # ~ e^2
    assert float(mad[:4].max() / mad[:4].min()) > 2.0
    assert float(got_q[:4].max() / got_q[:4].min()) > 2.0


def test_warmup_uniform_and_anneal() -> None:
    uni = SampleReweightConfig(warmup_steps=3)
    assert [uni.active(s) for s in range(5)] == [False, False, False, True, True]
    assert not SampleReweightConfig(strategy="uniform").active(10)
    ann = SampleReweightConfig(
        warmup="anneal", warmup_steps=4, warmup_temperature=10.0, temperature=2.0
    )
    assert [ann.temperature_at(s) for s in range(6)] == [10.0, 8.0, 6.0, 4.0, 2.0, 2.0]
    assert ann.active(0)


def test_loss_sum_is_the_factor_weighted_sum_of_sample_sums() -> None:
    hook = ChannelLoss(
        channels=["a", "b"], sample_reweight=SampleReweightConfig(strategy="quadratic")
    )
    loss = torch.tensor(
        [[1.0, 1.0, 1.0], [2.0, 4.0, 0.0], [3.0, 3.0, 3.0], [9.0, 9.0, 9.0]],
        dtype=torch.float64,
        requires_grad=True,
    )
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [0, 0, 0]])
    out = hook.accumulate(loss, mask, torch.tensor([0, 1, 1, 0]))
    # sample means 1, 3, 3 (row 3 fully masked: not a sample): h = [-1, 1, 1] -> f = [0, 0, 0]
    assert out.loss_sum.item() == 3.0 + 6.0 + 9.0
    loss2 = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], dtype=torch.float64)
    out2 = hook.accumulate(loss2, torch.ones(3, 2), torch.tensor([0, 1, 1]))
    # means 1, 2, 3: h = [-1, 0, 1] -> f = [0, 1, 0]; r = 0.5 -> w ~ [1, e^2, 1]
    w = [1.0, math.exp(2.0), 1.0]
    want = sum(3 * wi / sum(w) * si for wi, si in zip(w, [2.0, 4.0, 6.0], strict=True))
    assert out2.loss_sum.item() == pytest.approx(want, rel=1e-12)
    run = hook.step().run_metrics()
    assert run["lm_loss"] == pytest.approx((18.0 + 12.0) / 14.0, rel=1e-12)
    assert run["lm_loss_reweighted"] == pytest.approx((18.0 + want) / 14.0, rel=1e-12)
    assert run["sample_factor_max"] == pytest.approx(3 * w[1] / sum(w), rel=1e-12)
    assert run["sample_factor_min"] == pytest.approx(3 * w[0] / sum(w), rel=1e-12)
    # a step in the uniform warm-up reports no factor range
    warm = ChannelLoss(channels=["a"], sample_reweight=SampleReweightConfig(warmup_steps=1))
    warm.accumulate(loss2, torch.ones(3, 2), torch.tensor([0, 0, 0]))
    assert "sample_factor_max" not in warm.step().run_metrics()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategy": "cubic"}, "strategy='cubic' is unknown"),
        ({"temperature": 0.0}, "temperature=0.0 must be a finite number > 0"),
        ({"warmup_steps": -1}, "warmup_steps=-1 must be an int >= 0"),
        ({"quantile": 0.5}, r"quantile=0.5 must be in \[0, 0.5\)"),
        ({"normalization": "zscore"}, "normalization='zscore' is unknown"),
        ({"warmup": "linear"}, "warmup='linear' is unknown"),
    ],
)
def test_config_errors_say_what_and_how(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SampleReweightConfig(**kwargs)  # type: ignore[arg-type]
