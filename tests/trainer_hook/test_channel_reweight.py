"""Channel-level reweighting: hand-computed progress and DoReMi steps, bounds, warm-up, wiring."""

from __future__ import annotations

import math

import pytest
import torch

from trainer_hook import ChannelLoss, ChannelReweightConfig, SampleReweightConfig
from trainer_hook.reweight.sample import sample_factors


def _feed(hook: ChannelLoss, losses: list[float], tokens: list[int]) -> torch.Tensor:
    """One micro-batch: row c holds tokens[c] tokens of loss losses[c] (channel c)."""
    width = max(tokens)
    loss = torch.tensor([[x] * width for x in losses], dtype=torch.float64)
    mask = torch.tensor([[1] * n + [0] * (width - n) for n in tokens])
    out = hook.accumulate(loss, mask, torch.arange(len(losses)))
    return out.loss_sum


def _weights(hook: ChannelLoss) -> list[float]:
    state = hook.state_dict()["channel_reweight"]
    assert isinstance(state, dict)
    return state["weights"].tolist()


def test_progress_strategy_hand_computed() -> None:
    cfg = ChannelReweightConfig(
        strategy="progress", ema_beta=0.5, temperature=1.0, smoothing=0.0, max_ratio=100.0
    )
    hook = ChannelLoss(channels=["fin", "gen"], channel_reweight=cfg)
    _feed(hook, [2.0, 4.0], [1, 3])
    report0 = hook.step()
    # ema = [1, 2], bias-corrected m = [2, 4] = initial -> progress 1 -> weights 1
    assert _weights(hook) == [1.0, 1.0]
    assert [m["weight"] for m in report0.channel_metrics().values()] == [1.0, 1.0]
    _feed(hook, [1.0, 4.0], [1, 3])
    hook.step()
    # ema = [1, 3], m = ema / 0.75 = [4/3, 4], progress p = [2/3, 1];
    # shares 1/4, 3/4 -> normaliser 1/4 * 2/3 + 3/4 = 11/12 -> weights [8/11, 12/11]
    assert _weights(hook) == pytest.approx([8 / 11, 12 / 11], rel=1e-12)
    # the weights apply to the next step's loss, and are reported as in force there
    loss_sum = _feed(hook, [1.0, 1.0], [2, 2])
    assert loss_sum.item() == pytest.approx(2 * 8 / 11 + 2 * 12 / 11, rel=1e-12)
    ch = hook.step().channel_metrics()
    assert ch["fin"]["weight"] == pytest.approx(8 / 11, rel=1e-12)
    assert ch["gen"]["weight"] == pytest.approx(12 / 11, rel=1e-12)


def test_progress_temperature_and_loss_level() -> None:
    cfg = ChannelReweightConfig(
        ema_beta=0.0, temperature=0.5, loss_coef=1.0, smoothing=0.0, max_ratio=100.0
    )
    hook = ChannelLoss(channels=["a", "b"], channel_reweight=cfg)
    _feed(hook, [2.0, 2.0], [1, 1])
    hook.step()
    _feed(hook, [1.0, 2.0], [1, 1])
    hook.step()
    # beta 0: m = x = [1, 2]; p = [1/2, 1]; mbar = 1.5; u = p^2 * (m/mbar)^2 = [1/9, 16/9]
    # normalised with shares [1/2, 1/2]: mean 17/18 -> [2/17, 32/17]
    assert _weights(hook) == pytest.approx([2 / 17, 32 / 17], rel=1e-12)


def test_doremi_strategy_hand_computed() -> None:
    cfg = ChannelReweightConfig(
        strategy="doremi",
        eta=1.0,
        doremi_smoothing=0.0,
        prior=[0.5, 0.5],
        reference_losses=[1.0, 1.0],
        smoothing=0.0,
        max_ratio=100.0,
    )
    hook = ChannelLoss(channels=["a", "b"], channel_reweight=cfg)
    _feed(hook, [2.0, 1.0], [1, 1])
    hook.step()
    # excess [1, 0]: alpha = [e, 1] / (1 + e); weight = alpha / prior; share mean is already 1
    e = math.e
    assert _weights(hook) == pytest.approx([2 * e / (1 + e), 2 / (1 + e)], rel=1e-12)
    _feed(hook, [1.5, 0.5], [1, 1])
    hook.step()
    a = [e * math.exp(0.5), 1.0]
    assert _weights(hook) == pytest.approx([2 * a[0] / sum(a), 2 * a[1] / sum(a)], rel=1e-12)


def test_doremi_smoothing_and_importance_correction_by_observed_prior() -> None:
    cfg = ChannelReweightConfig(
        strategy="doremi", eta=0.0, doremi_smoothing=0.5, smoothing=0.0, max_ratio=100.0
    )
    hook = ChannelLoss(channels=["a", "b"], channel_reweight=cfg)
    _feed(hook, [1.0, 1.0], [1, 3])
    hook.step()
    # prior = observed shares [1/4, 3/4]; eta 0 keeps alpha = prior, then eps 0.5 mixes in 1/2:
    # alpha = [3/8, 5/8]; u = alpha / prior = [3/2, 5/6]; share mean 3/8 + 5/8 = 1
    assert _weights(hook) == pytest.approx([1.5, 5 / 6], rel=1e-12)


def test_bounds_floor_ceiling_targets_smoothing() -> None:
    base = {"ema_beta": 0.0, "temperature": 0.1, "smoothing": 0.0}
    # progress [1/2, 1, 1] with T = 0.1 -> raw [2^-10, 1, 1]: a huge ratio
    channels = ["a", "b", "c"]

    def run(**kw: object) -> list[float]:
        hook = ChannelLoss(channels=channels, channel_reweight=ChannelReweightConfig(**base | kw))  # type: ignore[arg-type]
        _feed(hook, [2.0, 2.0, 2.0], [1, 1, 1])
        hook.step()
        _feed(hook, [1.0, 2.0, 2.0], [1, 1, 1])
        hook.step()
        return _weights(hook)

    w = run(max_ratio=4.0)
    assert max(w) / min(w) == pytest.approx(4.0, rel=1e-12)
    assert sum(w) / 3 == pytest.approx(1.0, rel=1e-12)  # token-share weighted mean 1
    assert w == pytest.approx([1 / 3, 4 / 3, 4 / 3], rel=1e-12)
    w = run(max_ratio=4.0, targets=["a"])
    assert w == pytest.approx([1.0, 4 / 3, 4 / 3], rel=1e-12)
    w = run(max_ratio=4.0, floor={"a": 0.5}, ceiling={"b": 1.2})
    assert w == pytest.approx([0.5, 1.2, 4 / 3], rel=1e-12)
    # smoothing toward uniform: (1 - lam) u + lam, before the ratio bound
    w = run(max_ratio=1000.0, smoothing=0.5)
    raw = [2.0**-10, 1.0, 1.0]
    mean = sum(raw) / 3
    sm = [0.5 * r / mean + 0.5 for r in raw]
    assert w == pytest.approx(sm, rel=1e-12)


def test_warmup_keeps_weights_at_one_and_the_loss_plain() -> None:
    cfg = ChannelReweightConfig(ema_beta=0.0, warmup_steps=3, smoothing=0.0)
    hook = ChannelLoss(channels=["a", "b"], channel_reweight=cfg)
    sums = []
    for step in range(5):
        sums.append(_feed(hook, [2.0 / (step + 1), 2.0], [1, 1]).item())
        hook.step()
    assert sums[:3] == [2.0 + 2.0, 1.0 + 2.0, 2.0 / 3 + 2.0]  # steps 0-2: plain sums
    assert sums[3] != pytest.approx(0.5 + 2.0, rel=1e-6)  # step 3: weights from step 2 apply
    assert _weights(hook)[0] < 1.0 < _weights(hook)[1]  # the learned channel goes down


def test_absent_channel_keeps_its_state_and_weight_one_until_seen() -> None:
    cfg = ChannelReweightConfig(ema_beta=0.5, smoothing=0.0)
    hook = ChannelLoss(channels=["a", "b", "c"], channel_reweight=cfg)
    loss = torch.tensor([[3.0], [1.0]], dtype=torch.float64)
    hook.accumulate(loss, torch.ones(2, 1), torch.tensor([0, 1]))
    hook.step()
    state = hook.state_dict()["channel_reweight"]
    assert isinstance(state, dict)
    assert state["n_obs"].tolist() == [1.0, 1.0, 0.0]
    assert state["ema"].tolist() == [1.5, 0.5, 0.0]
    assert state["weights"].tolist()[2] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategy": "dro"}, "strategy='dro' is unknown"),
        ({"ema_beta": 1.0}, r"ema_beta=1.0 must be in \[0, 1\)"),
        ({"max_ratio": 0.5}, "max_ratio=0.5 must be >= 1"),
        ({"smoothing": 1.5}, r"smoothing=1.5 must be in \[0, 1\]"),
        ({"init_steps": 0}, "init_steps=0 must be an int >= 1"),
        ({"floor": {"a": 2.0}, "ceiling": {"a": 1.0}}, r"floor\['a'\]=2.0 > ceiling"),
        ({"targets": "a"}, "targets must be a list of channel names"),
        ({"prior": [0.5, float("nan")]}, "prior must hold finite numbers"),
    ],
)
def test_config_errors_say_what_and_how(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ChannelReweightConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"targets": ["fin", "nope"]}, r"targets names unknown channels \['nope'\]"),
        ({"floor": {"x": 0.5}}, r"floor names unknown channels \['x'\]"),
        ({"prior": [1.0]}, "prior has 1 values for 2 channels"),
        ({"reference_losses": [1.0, 2.0, 3.0]}, "reference_losses has 3 values for 2 channels"),
    ],
)
def test_config_must_match_the_channels(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ChannelLoss(channels=["fin", "gen"], channel_reweight=ChannelReweightConfig(**kwargs))  # type: ignore[arg-type]


def test_channel_and_sample_weights_multiply() -> None:
    hook = ChannelLoss(
        channels=["fin", "gen"],
        channel_reweight=ChannelReweightConfig(
            ema_beta=0.5, temperature=1.0, smoothing=0.0, max_ratio=100.0
        ),
        sample_reweight=SampleReweightConfig(strategy="extremes", temperature=0.5),
    )
    _feed(hook, [2.0, 4.0], [1, 3])
    hook.step()
    _feed(hook, [1.0, 4.0], [1, 3])
    hook.step()
    assert _weights(hook) == pytest.approx([8 / 11, 12 / 11], rel=1e-12)  # as without samples
    loss = torch.tensor([[1.0, 1.0], [2.0, 4.0], [6.0, 6.0]], dtype=torch.float64)
    out = hook.accumulate(loss, torch.ones(3, 2), torch.tensor([0, 1, 0]))
    # sample means [1, 3, 6] -> h = [-1, -1/5, 1] -> |h| = [1, 1/5, 1]; factors N * softmax(|h|/r)
    factors = sample_factors(
        torch.tensor([1.0, 3.0, 6.0], dtype=torch.float64),
        torch.ones(3, dtype=torch.bool),
        SampleReweightConfig(strategy="extremes", temperature=0.5),
        0,
    ).tolist()
    e = [math.exp(2.0), math.exp(0.4), math.exp(2.0)]
    assert factors == pytest.approx([3 * v / sum(e) for v in e], rel=1e-12)
    channel_w = [8 / 11, 12 / 11, 8 / 11]
    sums = [2.0, 6.0, 12.0]
    want = sum(w * f * s for w, f, s in zip(channel_w, factors, sums, strict=True))
    assert out.loss_sum.item() == pytest.approx(want, rel=1e-12)


def _two_steps(cfg: ChannelReweightConfig) -> ChannelLoss:
    """The data of test_progress_strategy_hand_computed: unbounded weights [8/11, 12/11]."""
    hook = ChannelLoss(channels=["fin", "gen"], channel_reweight=cfg)
    _feed(hook, [2.0, 4.0], [1, 3])
    hook.step()
    _feed(hook, [1.0, 4.0], [1, 3])
    hook.step()
    return hook


def _clipped(hook: ChannelLoss) -> list[float]:
    state = hook.state_dict()["channel_reweight"]
    assert isinstance(state, dict)
    return state["clipped"].tolist()


def test_max_ratio_clipping_is_recorded_and_reported_with_the_weight_in_force() -> None:
    cfg = ChannelReweightConfig(ema_beta=0.5, temperature=1.0, smoothing=0.0, max_ratio=1.2)
    hook = ChannelLoss(channels=["fin", "gen"], channel_reweight=cfg)
    _feed(hook, [2.0, 4.0], [1, 3])
    first = hook.step()
    assert _clipped(hook) == [0.0, 0.0]  # weights [1, 1]: max/1.2 < 1 binds nothing
    assert [m["weight_clipped"] for m in first.channel_metrics().values()] == [0.0, 0.0]
    _feed(hook, [1.0, 4.0], [1, 3])
    hook.step()
    # [8/11, 12/11] -> fin raised to (12/11)/1.2 = 10/11 -> normalised by 1/4*10/11 + 3/4*12/11
    # = 46/44 -> [20/23, 24/23]; only fin was moved by the bound
    assert _weights(hook) == pytest.approx([20 / 23, 24 / 23], rel=1e-12)
    assert _clipped(hook) == [1.0, 0.0]
    _feed(hook, [1.0, 4.0], [1, 3])
    ch = hook.step().channel_metrics()  # the weights above are in force during this step
    assert ch["fin"]["weight"] == pytest.approx(20 / 23, rel=1e-12)
    assert (ch["fin"]["weight_clipped"], ch["gen"]["weight_clipped"]) == (1.0, 0.0)


@pytest.mark.parametrize(
    ("bounds", "weights", "clipped"),
    [
        ({"ceiling": {"gen": 1.0}}, [8 / 11, 1.0], [0.0, 1.0]),  # 12/11 > 1: binds
        ({"ceiling": {"gen": 1.2}}, [8 / 11, 12 / 11], [0.0, 0.0]),  # 12/11 < 1.2: does not
        ({"floor": {"fin": 0.8}}, [0.8, 12 / 11], [1.0, 0.0]),  # 8/11 < 0.8: binds
        ({"floor": {"fin": 0.7}}, [8 / 11, 12 / 11], [0.0, 0.0]),  # 8/11 > 0.7: does not
        ({"targets": ["fin"]}, [1.0, 12 / 11], [1.0, 0.0]),  # a target below 1 is raised
        ({"targets": ["gen"]}, [8 / 11, 12 / 11], [0.0, 0.0]),  # a target above 1 is not
    ],
)
def test_clipping_is_recorded_exactly_when_a_bound_binds(
    bounds: dict[str, object], weights: list[float], clipped: list[float]
) -> None:
    cfg = ChannelReweightConfig(
        ema_beta=0.5,
        temperature=1.0,
        smoothing=0.0,
        max_ratio=100.0,
        **bounds,  # type: ignore[arg-type]
    )
    hook = _two_steps(cfg)
    assert _weights(hook) == pytest.approx(weights, rel=1e-12)
    assert _clipped(hook) == clipped
    _feed(hook, [1.0, 4.0], [1, 3])
    ch = hook.step().channel_metrics()
    assert [ch[n]["weight_clipped"] for n in ("fin", "gen")] == clipped


def test_no_clipping_metric_without_channel_reweighting_and_old_state_resumes() -> None:
    hook = ChannelLoss(channels=["fin", "gen"])
    _feed(hook, [1.0, 4.0], [1, 3])
    assert all("weight_clipped" not in m for m in hook.step().channel_metrics().values())
    cfg = ChannelReweightConfig(ema_beta=0.5, temperature=1.0, smoothing=0.0, max_ratio=1.2)
    state = _two_steps(cfg).state_dict()
    old = dict(state["channel_reweight"])  # type: ignore[call-overload]
    del old["clipped"]  # a checkpoint written before clipping was recorded
    resumed = ChannelLoss(channels=["fin", "gen"], channel_reweight=cfg)
    resumed.load_state_dict({**state, "channel_reweight": old})
    assert _clipped(resumed) == [0.0, 0.0]
    assert _weights(resumed) == pytest.approx([20 / 23, 24 / 23], rel=1e-12)
