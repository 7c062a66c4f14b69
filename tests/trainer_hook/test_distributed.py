"""ChannelLoss on real gloo process groups (DP=2, CP=2, DP=2 x CP=2) equals one process.

One world of 4 processes is spawned once: ranks 0-1 run DP=2 while ranks 2-3 run CP=2, then all
four run DP=2 x CP=2. Each layout runs three hook configurations over three optimizer steps of
three micro-batches with uneven masks, out-of-range ids, a channel absent from one DP rank
("math") and one absent from the whole run ("dialogue"). The parent recomputes every step on a
single process over the whole global batch and compares statistics and gradients.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import pytest
import torch
import torch.distributed as dist

from tests.trainer_hook.distributed import run_distributed
from tests.trainer_hook.synthetic import CHANNELS, make_step, make_weight, per_token_loss, shard
from trainer_hook import (
    ChannelIdOutOfRangeWarning,
    ChannelLoss,
    ChannelReweightConfig,
    SampleReweightConfig,
)

SEED = 7
STEPS, MICRO, ROWS_PER_RANK, SEQ = 3, 3, 2, 16


def _configs() -> dict[str, dict[str, Any]]:
    return {
        "plain_rows": {"packed": False, "segments": False, "sample": None, "channel": None},
        "packed_plain": {"packed": True, "segments": True, "sample": None, "channel": None},
        "packed_linupper_progress": {
            "packed": True,
            "segments": True,
            "sample": SampleReweightConfig(
                strategy="linupper", temperature=0.7, normalization="quantile", quantile=0.1
            ),
            "channel": ChannelReweightConfig(strategy="progress", loss_coef=0.5, smoothing=0.0),
        },
        "tokens_extremes_doremi": {
            "packed": True,
            "segments": False,
            "sample": SampleReweightConfig(
                strategy="extremes", warmup="anneal", warmup_steps=2, warmup_temperature=5.0
            ),
            "channel": ChannelReweightConfig(strategy="doremi", eta=2.0, targets=["math"]),
        },
    }


def _run_layout(
    dp: int,
    cp: int,
    dp_rank: int,
    cp_rank: int,
    group: Any,
    dp_group: Any,
    cp_group: Any,
) -> dict[str, Any]:
    """Run every configuration; return per-step metrics, summed gradients, state, counts."""
    results: dict[str, Any] = {}
    original = dist.all_reduce
    calls = [0]

    def counting_all_reduce(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    for name, cfg in _configs().items():
        w = make_weight(SEED).requires_grad_()
        hook = ChannelLoss(
            channels=CHANNELS,
            group=group,
            dp_group=dp_group,
            cp_group=cp_group,
            sample_reweight=cfg["sample"],
            channel_reweight=cfg["channel"],
        )
        metrics, grads, collectives = [], [], []
        for step in range(STEPS):
            calls[0] = 0
            dist.all_reduce = counting_all_reduce  # type: ignore[assignment]
            try:
                total = torch.zeros((), dtype=torch.float64)
                for mb in make_step(SEED, step, MICRO, ROWS_PER_RANK * dp, SEQ, cfg["packed"]):
                    s = shard(mb, dp, dp_rank, cp, cp_rank)
                    loss = per_token_loss(w, s.x, s.labels)
                    seg = s.segment_ids if cfg["segments"] else None
                    total = total + hook.accumulate(loss, s.mask, s.channel_ids, seg).loss_sum
                report = hook.step()
            finally:
                dist.all_reduce = original  # type: ignore[assignment]
            collectives.append(calls[0])
            w.grad = None
            total.backward()
            assert w.grad is not None
            grad = w.grad.clone()
            dist.all_reduce(grad, group=group)  # what DDP does over DP x CP
            metrics.append((report.run_metrics(), report.channel_metrics()))
            grads.append(grad)
        results[name] = {
            "metrics": metrics,
            "grads": grads,
            "state": hook.state_dict(),
            "collectives": collectives,
        }
    return results


def _world(rank: int, world_size: int) -> dict[str, Any]:
    assert world_size == 4
    logging.getLogger("trainer_hook").setLevel(logging.ERROR)  # overflow is intended here
    warnings.simplefilter("ignore", ChannelIdOutOfRangeWarning)
    g01, g23 = dist.new_group([0, 1]), dist.new_group([2, 3])
    g02, g13 = dist.new_group([0, 2]), dist.new_group([1, 3])
    gall = dist.new_group([0, 1, 2, 3])
    out: dict[str, Any] = {}
    if rank < 2:
        out["dp2"] = _run_layout(2, 1, rank, 0, g01, None, None)
    else:
        out["cp2"] = _run_layout(1, 2, 0, rank - 2, g23, None, g23)
    dp_rank, cp_rank = rank // 2, rank % 2  # cp groups {0,1},{2,3}; dp groups {0,2},{1,3}
    cp_group = g01 if rank < 2 else g23
    dp_group = g02 if cp_rank == 0 else g13
    out["dp2cp2"] = _run_layout(2, 2, dp_rank, cp_rank, gall, dp_group, cp_group)
    return out


LAYOUTS = {"dp2": (2, 1, [0, 1]), "cp2": (1, 2, [2, 3]), "dp2cp2": (2, 2, [0, 1, 2, 3])}


@pytest.fixture(scope="module")
def world() -> list[dict[str, Any]]:
    return run_distributed(_world, 4)


def _reference(dp: int) -> dict[str, Any]:
    """One process over the whole global batch (DP*B rows, full sequences)."""
    out: dict[str, Any] = {}
    for name, cfg in _configs().items():
        w = make_weight(SEED).requires_grad_()
        hook = ChannelLoss(
            channels=CHANNELS, sample_reweight=cfg["sample"], channel_reweight=cfg["channel"]
        )
        metrics, grads = [], []
        for step in range(STEPS):
            total = torch.zeros((), dtype=torch.float64)
            for mb in make_step(SEED, step, MICRO, ROWS_PER_RANK * dp, SEQ, cfg["packed"]):
                loss = per_token_loss(w, mb.x, mb.labels)
                seg = mb.segment_ids if cfg["segments"] else None
                total = total + hook.accumulate(loss, mb.mask, mb.channel_ids, seg).loss_sum
            report = hook.step()
            w.grad = None
            total.backward()
            assert w.grad is not None
            metrics.append((report.run_metrics(), report.channel_metrics()))
            grads.append(w.grad.clone())
        out[name] = {"metrics": metrics, "grads": grads}
    return out


def _assert_close_dict(got: dict[str, Any], want: dict[str, Any], where: str) -> None:
    assert set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
    for key, value in want.items():
        if isinstance(value, dict):
            _assert_close_dict(got[key], value, f"{where}.{key}")
        else:
            assert math.isclose(got[key], value, rel_tol=1e-6, abs_tol=1e-12), (
                f"{where}.{key}: {got[key]} != {value}"
            )


@pytest.mark.filterwarnings("ignore::trainer_hook.ChannelIdOutOfRangeWarning")
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_equals_single_process(world: list[dict[str, Any]], layout: str) -> None:
    dp, _, ranks = LAYOUTS[layout]
    ref = _reference(dp)
    for name, want in ref.items():
        for rank in ranks:
            got = world[rank][layout][name]
            for step in range(STEPS):
                where = f"{layout}/{name}/rank{rank}/step{step}"
                run_got, ch_got = got["metrics"][step]
                run_want, ch_want = want["metrics"][step]
                _assert_close_dict(run_got, run_want, where + "/run")
                _assert_close_dict(ch_got, ch_want, where + "/channels")
                torch.testing.assert_close(
                    got["grads"][step], want["grads"][step], rtol=1e-6, atol=1e-12
                )
        # weights and counters identical on every rank of the layout, bit for bit
        states = [world[r][layout][name]["state"] for r in ranks]
        for state in states[1:]:
            assert state["steps"] == states[0]["steps"] == STEPS
            if state["channel_reweight"] is not None:
                for key, value in state["channel_reweight"].items():
                    if isinstance(value, torch.Tensor):
                        assert torch.equal(value, states[0]["channel_reweight"][key]), key


def test_layouts_exercise_what_they_claim(world: list[dict[str, Any]]) -> None:
    """The scenarios are not vacuous: absent channels, overflow, real reweighting, collectives."""
    for layout, (_, _, ranks) in LAYOUTS.items():
        res = world[ranks[0]][layout]
        for name in res:
            for run, channels in res[name]["metrics"]:
                assert "dialogue" not in channels
                assert run["overflow_tokens"] > 0 if name != "plain_rows" else True
                assert set(channels) >= {"finance", "code"}
        for name in ("plain_rows", "packed_plain"):
            plain = res[name]
            assert plain["metrics"][0][0]["overflow_tokens"] > 0
            assert plain["collectives"] == [1, 1, 1]  # one all-reduce per step, none per micro
            assert "lm_loss_reweighted" not in plain["metrics"][0][0]
        for name in ("packed_linupper_progress", "tokens_extremes_doremi"):
            run, channels = res[name]["metrics"][2]
            assert run["lm_loss_reweighted"] != pytest.approx(run["lm_loss"], rel=1e-6)
            assert len({round(c["weight"], 9) for c in channels.values()}) > 1
        # sample-level: one all-reduce per micro-batch plus the step's
        assert res["packed_linupper_progress"]["collectives"] == [1 + MICRO] * STEPS
        assert res["tokens_extremes_doremi"]["collectives"] == [1 + MICRO] * STEPS
        # the DoReMi target channel is never weighted below 1
        for _, channels in res["tokens_extremes_doremi"]["metrics"]:
            if "math" in channels:
                assert channels["math"]["weight"] >= 1.0
