"""The plan math: exact resolution of budgets, units, natural splits, errors and warnings.

Sizes are given directly here (the .idx reading is tested in test_megatron_blend.py).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from trainer_hook.mix import DataSize, MixPlanError, parse_plan, resolve_plan
from trainer_hook.mix.resolve import ResolvedPlan

F = Fraction


def plan(channels: dict[str, Any], sizes: dict[str, tuple[int, int]], **mix: Any) -> ResolvedPlan:
    """Resolve ``channels`` with ``sizes`` = {prefix: (documents, tokens)} under /d."""
    mix.setdefault("seq_length", 100)
    mix["data_root"] = "/d"
    spec = parse_plan({"mix": mix, "channels": channels}, source="t.toml", base_dir=Path("/"))
    known = {f"/d/{p}": DataSize(documents=d, tokens=t) for p, (d, t) in sizes.items()}
    return resolve_plan(spec, known)


def weights(resolved: ResolvedPlan) -> dict[str, Fraction]:
    return {p.prefix.removeprefix("/d/"): p.weight for p in resolved.prefixes}


DOMAINS = ["finance", "math", "code", "logic"]


def nested_3223() -> dict[str, Any]:
    ratios = {"finance": 3, "math": 2, "code": 2, "logic": 3}
    return {
        d: {
            "ratio": r,
            "slow": {"ratio": 3, "prefix": f"{d}_slow"},
            "fast": {"ratio": 1, "prefix": f"{d}_fast"},
        }
        for d, r in ratios.items()
    }


BIG = {f"{d}_{k}": (10_000, 10_000_000) for d in DOMAINS for k in ("slow", "fast")}


def test_nested_3223_with_slow_fast_3_to_1_resolves_exactly() -> None:
    resolved = plan(nested_3223(), BIG, tokens=20_000_000)
    domain = {"finance": F(3, 10), "math": F(2, 10), "code": F(2, 10), "logic": F(3, 10)}
    expected = {}
    for d, share in domain.items():
        expected[f"{d}_slow"] = share * F(3, 4)
        expected[f"{d}_fast"] = share * F(1, 4)
    assert weights(resolved) == expected
    assert resolved.channel("finance/slow").tokens == 4_500_000
    assert resolved.channel("logic/fast").tokens == 1_500_000
    assert resolved.channel("math").share == F(1, 5)
    assert resolved.channel("math").tokens == 4_000_000
    assert resolved.total_tokens == 20_000_000
    assert resolved.train_samples == 200_000
    # The same plan written with decimal ratios resolves to the same exact fractions.
    decimal = nested_3223()
    for d, r in zip(DOMAINS, ["0.3", "0.2", "0.2", "0.3"], strict=True):
        decimal[d]["ratio"] = float(r)
        decimal[d]["slow"]["ratio"] = 0.75
        decimal[d]["fast"]["ratio"] = 0.25
    assert weights(plan(decimal, BIG, tokens=20_000_000)) == expected


def test_samples_budget_converts_at_each_leafs_mean_document_length() -> None:
    channels = {
        "finance": {
            "samples": 10_000,
            "slow": {"ratio": 3, "prefix": "f_slow"},
            "fast": {"ratio": 1, "prefix": "f_fast"},
        },
        "general": {"ratio": 1, "prefix": "g"},
    }
    # f_slow: 4000 docs of 500 tokens; f_fast: 1000 docs of 100; g: 20000 docs of 50.
    sizes = {"f_slow": (4000, 2_000_000), "f_fast": (1000, 100_000), "g": (20_000, 1_000_000)}
    resolved = plan(channels, sizes, samples=52_000)
    # finance 10k samples -> slow 7500 (x500 tokens), fast 2500 (x100); general the rest, 42k x 50.
    assert resolved.channel("finance/slow").tokens == 7500 * 500
    assert resolved.channel("finance/fast").tokens == 2500 * 100
    assert resolved.channel("general").tokens == 42_000 * 50
    assert resolved.channel("finance").documents == 10_000
    assert resolved.channel("general").documents == 42_000
    assert resolved.channel("finance/fast").epochs == F(5, 2)
    total = 7500 * 500 + 2500 * 100 + 42_000 * 50
    assert resolved.total_tokens == total
    assert weights(resolved) == {
        "f_slow": F(3_750_000, total),
        "f_fast": F(250_000, total),
        "g": F(2_100_000, total),
    }


def test_children_without_budgets_split_in_proportion_to_their_data() -> None:
    # finance slow = credit 482 + alignment 572 + QA 182 + OpenFinData 2363 + textgen 113 samples
    counts = {"credit": 482, "alignment": 572, "qa": 182, "openfindata": 2363, "textgen": 113}
    sizes = {name: (n, n * (100 + i)) for i, (name, n) in enumerate(counts.items())}
    slow = {name: {"prefix": name} for name in counts}
    by_samples = plan({"slow": slow}, sizes, samples=7500)
    for name, n in counts.items():  # samples budget: in proportion to documents
        assert by_samples.channel(f"slow/{name}").documents == F(7500 * n, 3712)
    by_tokens = plan({"slow": slow}, sizes, tokens=1_000_000)
    data_tokens = sum(t for _, t in sizes.values())
    for name, (_, tokens) in sizes.items():  # tokens budget: in proportion to tokens
        assert by_tokens.channel(f"slow/{name}").tokens == F(1_000_000 * tokens, data_tokens)
    # Either way every source repeats the same number of times.
    assert len({c.epochs for c in by_tokens.channels}) == 1


def test_without_a_total_every_source_is_used_once_like_megatrons_unweighted_blend() -> None:
    resolved = plan({"a": {"prefix": "a"}, "b": {"prefix": "b"}}, {"a": (10, 300), "b": (5, 700)})
    assert weights(resolved) == {"a": F(3, 10), "b": F(7, 10)}
    assert all(c.epochs == 1 for c in resolved.channels)


def test_absolute_budgets_without_a_total_add_up_and_ratios_share_what_is_left() -> None:
    sizes = {"a": (100, 10_000), "b": (100, 10_000), "c": (100, 10_000)}
    summed = plan(
        {"a": {"tokens": 1000, "prefix": "a"}, "b": {"tokens": 3000, "prefix": "b"}}, sizes
    )
    assert summed.total_tokens == 4000
    assert weights(summed) == {"a": F(1, 4), "b": F(3, 4)}
    mixed = plan(
        {
            "a": {"tokens": 1000, "prefix": "a"},
            "b": {"ratio": 1, "prefix": "b"},
            "c": {"ratio": 3, "prefix": "c"},
        },
        sizes,
        tokens=9000,
    )
    assert [mixed.channel(n).tokens for n in "abc"] == [1000, 2000, 6000]


def test_prefixes_of_one_leaf_share_it_by_tokens_and_repeat_equally() -> None:
    resolved = plan(
        {"x": {"prefixes": ["x1", "x2"], "ratio": 1}, "y": {"prefix": "y", "ratio": 1}},
        {"x1": (10, 1000), "x2": (10, 3000), "y": (10, 1000)},
        tokens=8000,
    )
    assert weights(resolved) == {"x1": F(1, 8), "x2": F(3, 8), "y": F(1, 2)}
    assert resolved.channel("x").epochs == 1
    assert resolved.channel("y").epochs == 4


@pytest.mark.parametrize(
    ("channels", "mix", "needles"),
    [
        (  # a ratio with no budget above it
            {"a": {"ratio": 1, "prefix": "a"}, "b": {"ratio": 2, "prefix": "b"}},
            {},
            ["ratios do not resolve", "'a'", "[mix] tokens = N"],
        ),
        (  # one sibling without a budget
            {"a": {"ratio": 1, "prefix": "a"}, "b": {"prefix": "b"}},
            {"tokens": 100},
            ["ratios do not resolve", "'b' has no budget", "give it a ratio"],
        ),
        (  # tokens and samples among siblings of a tokens parent
            {"a": {"samples": 5, "prefix": "a"}, "b": {"ratio": 1, "prefix": "b"}},
            {"tokens": 100},
            ["ratios do not resolve", "'a' gives samples", "use one unit"],
        ),
        (  # absolute budgets leave nothing for the ratios
            {"a": {"tokens": 100, "prefix": "a"}, "b": {"ratio": 1, "prefix": "b"}},
            {"tokens": 100},
            ["ratios do not resolve", "leaving nothing for 'b'", "lower them"],
        ),
        (  # absolute budgets that do not add up to the parent
            {"a": {"tokens": 30, "prefix": "a"}, "b": {"tokens": 30, "prefix": "b"}},
            {"tokens": 100},
            ["do not add up", "sum to 60 tokens", "make them sum"],
        ),
        (  # a leaf with no data
            {"a": {"ratio": 1, "prefix": "a"}, "b": {"ratio": 1}},
            {"tokens": 100},
            ["entry 'b' is a leaf with no data", "prefix ="],
        ),
        (  # a leaf whose files are empty
            {"a": {"ratio": 1, "prefix": "a"}, "z": {"ratio": 1, "prefix": "zero"}},
            {"tokens": 100},
            ["entry 'z' is a leaf with no data", "add data or remove the entry"],
        ),
        (  # repeating when repetition is not allowed
            {"a": {"ratio": 1, "prefix": "a"}, "b": {"ratio": 9, "prefix": "b"}},
            {"tokens": 20_000, "allow_repeat": False},
            [
                "entry 'b'",
                "18,000 tokens",
                "1.8 epochs",
                "at most 10000 tokens / 100 samples",
                "allow_repeat = true",
            ],
        ),
        (  # a prefix in two channels
            {"a": {"ratio": 1, "prefix": "a"}, "b": {"ratio": 1, "prefix": "a"}},
            {"tokens": 100},
            ["prefix '/d/a' is listed under both 'a' and 'b'"],
        ),
    ],
)
def test_bad_plans_name_the_entry_and_the_fix(
    channels: dict[str, Any], mix: dict[str, Any], needles: list[str]
) -> None:
    sizes = {"a": (100, 10_000), "b": (100, 10_000), "zero": (0, 0)}
    with pytest.raises(MixPlanError) as info:
        plan(channels, sizes, **mix)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_repetition_can_be_forbidden_for_one_subtree_only() -> None:
    channels = {
        "a": {"ratio": 9, "prefix": "a"},
        "b": {"ratio": 1, "prefix": "b", "allow_repeat": False},
    }
    resolved = plan(channels, {"a": (100, 1000), "b": (100, 1000)}, tokens=10_000)
    assert resolved.channel("a").epochs == 9
    with pytest.raises(MixPlanError, match="entry 'b'"):
        plan(channels, {"a": (100, 1000), "b": (100, 999)}, tokens=10_000)


def test_warnings_for_sources_repeating_too_often_or_too_small_for_their_share() -> None:
    channels = {
        "big": {"ratio": 1000, "prefix": "big"},
        "often": {"ratio": 500, "prefix": "often"},
        "lenient": {"ratio": 500, "prefix": "lenient", "max_epochs": 10},
        "tiny": {"ratio": 1, "prefix": "tiny"},
        "short": {"ratio": 1, "prefix": "short"},
    }
    sizes = {
        "big": (1000, 1_000_000),
        "often": (10, 100_000),  # 500k planned tokens: 5 epochs > max_epochs 4
        "lenient": (10, 100_000),  # 5 epochs, allowed 10 -> no warning
        "tiny": (10, 100_000),  # 1k tokens = 0.5 of a 2000-token sample
        "short": (1, 50),  # cannot fill one 2000-token sample, and repeats 20 times
    }
    resolved = plan(channels, sizes, tokens=2_002_000, seq_length=2000)
    found = {(w.kind, w.channel) for w in resolved.warnings}
    assert found == {
        ("repeats", "often"),
        ("too-small", "tiny"),
        ("too-small", "short"),
        ("repeats", "short"),  # 1000 planned tokens from 50: 20 epochs
    }
    messages = {w.channel: w.message for w in resolved.warnings}
    assert "repeats 5.00 times (more than max_epochs = 4)" in messages["often"]
    assert "0.50 of one training sample" in messages["tiny"]
    assert "50 tokens cannot fill one sample of seq_length 2000" in messages["short"]
