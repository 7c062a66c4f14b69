"""Real IndexedDataset files through megatron-core: sizes, printed --data-path, and a
BlendedDataset built from it drawing samples in the planned proportions."""

from __future__ import annotations

import json
import math
import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from trainer_hook.mix import (
    MixPlanError,
    channel_map,
    data_path_args,
    data_path_string,
    load_plan,
    read_channel_map,
    read_data_size,
    resolve_plan,
    write_channel_map,
    write_data_args_file,
)
from trainer_hook.mix.resolve import ResolvedPlan

from .conftest import EOD, SEQ, SOURCES, build_blend

pytestmark = pytest.mark.megatron


def test_sizes_come_from_the_idx_files_and_the_train_split(
    make_indexed: Callable[[str, Sequence[int], int], str],
) -> None:
    prefix = make_indexed("docs", [5, 6, 7, 8, 9, 10, 11, 12, 13, 14], 1000)
    whole = read_data_size(prefix)
    assert (whole.documents, whole.tokens) == (10, 95)
    # --split 90,10,0: megatron trains on the first round(0.9 * 10) = 9 documents.
    train = read_data_size(prefix, train_fraction=0.9)
    assert (train.documents, train.tokens) == (9, 95 - 14)


def test_plan_resolves_to_the_right_weights_from_real_sizes(planned: ResolvedPlan) -> None:
    sizes = {Path(p.prefix).name: (p.data.documents, p.data.tokens) for p in planned.prefixes}
    assert sizes == {
        "credit": (30, 900),
        "qa": (18, 900),
        "fin_fast": (40, 400),
        "math": (40, 1200),
        "general": (50, 3000),
    }
    weights = {Path(p.prefix).name: p.weight for p in planned.prefixes}
    # finance 3/10 -> slow 3/4 split credit:qa by tokens 1:1, fast 1/4; math 2/10; general 5/10.
    assert weights == {
        "credit": Fraction(9, 80),
        "qa": Fraction(9, 80),
        "fin_fast": Fraction(3, 40),
        "math": Fraction(1, 5),
        "general": Fraction(1, 2),
    }
    assert planned.channel("finance/slow/qa").epochs == Fraction(18_000, 900)
    assert planned.train_samples == 10_000
    args = data_path_args(planned)
    assert args[0::2] == ["0.1125", "0.1125", "0.075", "0.2", "0.5"]
    assert [Path(a).name for a in args[1::2]] == list(SOURCES)


def test_blend_from_the_printed_data_path_draws_the_planned_proportions(
    planned: ResolvedPlan,
) -> None:
    printed = data_path_string(planned)
    argv = shlex.split(printed)
    assert argv[0] == "--data-path"
    n = planned.train_samples
    blend = build_blend(argv[1:], n)
    assert len(blend) == n
    ids = np.asarray(blend.dataset_index)
    counts = np.bincount(ids, minlength=len(planned.prefixes))
    for k, entry in enumerate(planned.prefixes):
        w = float(entry.weight)
        sigma = math.sqrt(n * w * (1 - w))
        assert abs(counts[k] - n * w) <= 3 * sigma, (entry.channel, counts[k], n * w)
        # Megatron's blending index is greedy (helpers.cpp build_blending_indices), not random:
        # it stays within one sample of the target.
        assert abs(counts[k] - n * w) <= 1
    # Every sample's tokens come from the source its dataset_id names, seq_length tokens each.
    seen: Counter[int] = Counter()
    for i in range(0, n, 7):
        sample = blend[i]
        k = int(sample["dataset_id"])
        tokens = sample["tokens"].numpy()
        sources = set((tokens[tokens != EOD] // 1000).tolist())
        assert sources == {SOURCES[Path(planned.prefixes[k].prefix).name][1] // 1000}
        assert int(sample["loss_mask"].sum()) == SEQ  # token share == sample share
        seen[k] += 1
    assert sorted(seen) == list(range(len(planned.prefixes)))


def test_data_args_file_and_channel_map_carry_the_same_blend(
    planned: ResolvedPlan, tmp_path: Path
) -> None:
    from megatron.core.datasets.utils import get_blend_from_list

    path = write_data_args_file(planned, tmp_path / "blend.txt")
    from_file = get_blend_from_list(path.read_text().split())  # how Megatron reads the file
    assert from_file == get_blend_from_list(data_path_args(planned))
    assert from_file is not None
    assert from_file[1] == [0.1125, 0.1125, 0.075, 0.2, 0.5]
    mapping = json.loads(write_channel_map(planned, tmp_path / "map.json").read_text())
    assert mapping == channel_map(planned)
    assert mapping["version"] == 1
    assert [
        (Path(c["prefix"]).name, c["name"], c["target_share"]) for c in mapping["channels"]
    ] == [
        ("credit", "finance/slow/credit", 0.1125),
        ("qa", "finance/slow/qa", 0.1125),
        ("fin_fast", "finance/fast", 0.075),
        ("math", "math", 0.2),
        ("general", "general", 0.5),
    ]
    assert mapping["channels"][0]["prefix"] == from_file[0][0]
    assert read_channel_map(tmp_path / "map.json") == {
        "finance/slow/credit": 0.1125,
        "finance/slow/qa": 0.1125,
        "finance/fast": 0.075,
        "math": 0.2,
        "general": 0.5,
    }


def test_a_missing_prefix_names_the_entry_the_files_and_the_fix(
    planned: ResolvedPlan, tmp_path: Path
) -> None:
    (tmp_path / "data" / "math.bin").unlink()
    with pytest.raises(MixPlanError) as info:
        resolve_plan(load_plan(tmp_path / "plan.toml"))
    message = str(info.value)
    assert f"entry 'math': prefix {str(tmp_path / 'data' / 'math')!r} not found" in message
    assert "no " + str(tmp_path / "data" / "math.bin") in message
    assert "without .bin/.idx" in message


def test_the_megatron_adapter_names_channels_from_the_written_map(
    tmp_path: Path, make_indexed: Callable[[str, Sequence[int], int], str]
) -> None:
    from trainer_hook.megatron.channels import (
        build_channel_table,
        load_channel_map,
        parse_blend,
    )

    for name, base in [("a1", 1000), ("a2", 2000), ("b", 3000)]:
        make_indexed(name, [10] * 10, base)
    (tmp_path / "two.toml").write_text(
        '[mix]\nseq_length = 8\ntokens = 1000\ndata_root = "data"\n'
        '[channels.web]\nratio = 3\n[channels.web.en]\nprefixes = ["a1", "a2"]\n'
        '[channels.code]\nratio = 1\nprefix = "b"\n'
    )
    plan = resolve_plan(load_plan(tmp_path / "two.toml"))
    write_channel_map(plan, tmp_path / "map.json")
    table = build_channel_table(
        parse_blend(shlex.split(data_path_string(plan))[1:]),
        load_channel_map(tmp_path / "map.json"),
    )
    assert table.names == ("web/en", "code")
    assert table.dataset_to_channel == (0, 0, 1)
    assert table.server_channels() == [
        {"name": "web/en", "target_share": 0.75},
        {"name": "code", "target_share": 0.25},
    ]
