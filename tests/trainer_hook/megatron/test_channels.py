"""Channel names, map files and target shares from Megatron's data arguments (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainer_hook.megatron.channels import (
    Blend,
    build_channel_table,
    channel_table_from_args,
    group_rollup,
    load_channel_map,
    parse_blend,
    readable_names,
    train_blend_from_args,
)


def _args(**kw: object) -> SimpleNamespace:
    base: dict[str, object] = {
        "data_path": None,
        "data_args_path": None,
        "per_split_data_args_path": None,
        "train_data_path": None,
        "valid_data_path": None,
        "test_data_path": None,
    }
    base.update(kw)
    return SimpleNamespace(**base)


def test_parse_blend_weights_prefixes_and_unweighted() -> None:
    assert parse_blend(["30", "/d/a", "70", "/d/b"]) == Blend(
        prefixes=("/d/a", "/d/b"), weights=(30.0, 70.0)
    )
    assert parse_blend(["/d/a", "/d/b"]) == Blend(prefixes=("/d/a", "/d/b"), weights=None)
    assert parse_blend(["/d/a"]) == Blend(prefixes=("/d/a",), weights=None)
    assert parse_blend("0.25 /d/a\n0.75 /d/b\n") == Blend(
        prefixes=("/d/a", "/d/b"), weights=(0.25, 0.75)
    )
    with pytest.raises(ValueError, match="empty blend"):
        parse_blend([])
    with pytest.raises(ValueError, match="negative blend weight"):
        parse_blend(["-1", "/d/a"])


def test_blend_precedence_matches_megatron(tmp_path: Path) -> None:
    args_file = tmp_path / "data_args.txt"
    args_file.write_text("1 /x/web_text_document 3 /x/code_text_document\n")
    assert train_blend_from_args(_args(data_args_path=str(args_file))).weights == (1.0, 3.0)
    assert train_blend_from_args(_args(data_path=["2", "/p/a", "6", "/p/b"])).prefixes == (
        "/p/a",
        "/p/b",
    )
    per_split = tmp_path / "splits.json"
    per_split.write_text(json.dumps({"train": "5 /t/a 5 /t/b", "valid": ["/v/a"], "test": ["/s"]}))
    blend = train_blend_from_args(_args(per_split_data_args_path=str(per_split)))
    assert blend == Blend(prefixes=("/t/a", "/t/b"), weights=(5.0, 5.0))
    assert train_blend_from_args(_args(train_data_path=["/t/only"])).prefixes == ("/t/only",)
    with pytest.raises(ValueError, match="not both"):
        train_blend_from_args(_args(data_args_path=str(args_file), data_path=["/p/a"]))
    with pytest.raises(ValueError, match="no training data"):
        train_blend_from_args(_args())
    per_split.write_text(json.dumps({"train": "/t/a"}))
    with pytest.raises(ValueError, match=r"lacks the split\(s\) \['valid', 'test'\]"):
        train_blend_from_args(_args(per_split_data_args_path=str(per_split)))


def test_readable_names_resolve_collisions() -> None:
    names = readable_names(
        [
            "/data/fin/credit_text_document",
            "/data/web/credit_text_document",
            "/data/code/py_text_document",
            "/a/x/same",
            "/b/x/same",
            "/data/code/py_text_document",
        ]
    )
    assert names == ["fin/credit", "web/credit", "py", "a/x/same", "b/x/same", "py#2"]


def test_table_from_blend_shares_sum_to_one() -> None:
    table = build_channel_table(parse_blend(["1", "/d/web", "3", "/d/code", "4", "/d/math"]))
    assert table.names == ("web", "code", "math")
    assert table.dataset_to_channel == (0, 1, 2)
    assert table.target_shares == (0.125, 0.375, 0.5)
    assert table.server_channels()[1] == {"name": "code", "target_share": 0.375}
    unweighted = build_channel_table(parse_blend(["/d/web", "/d/code"]))
    assert unweighted.target_shares == (None, None)


def test_channel_map_names_groups_and_overrides(tmp_path: Path) -> None:
    cmap = tmp_path / "channels.json"
    cmap.write_text(
        json.dumps(
            {
                "version": 1,
                "channels": [
                    {"prefix": "/d/fin/credit_text_document", "name": "finance/slow"},
                    {"prefix": "news_text_document", "name": "finance/fast", "target_share": 0.1},
                    {"prefix": "/d/fin/filings_text_document", "name": "finance/slow"},
                ],
            }
        )
    )
    args = _args(
        data_path=[
            "2",
            "/d/fin/credit_text_document",
            "1",
            "/other/news_text_document",
            "2",
            "/d/fin/filings_text_document",
            "5",
            "/d/web_text_document",
        ]
    )
    table = channel_table_from_args(args, cmap)
    assert table.names == ("finance/slow", "finance/fast", "web")
    assert table.dataset_to_channel == (0, 1, 0, 2)
    assert table.target_shares == pytest.approx((0.4, 0.1, 0.5))


def test_channel_map_yaml_toml_and_errors(tmp_path: Path) -> None:
    y = tmp_path / "m.yaml"
    y.write_text("version: 1\nchannels:\n  - {prefix: /d/a, name: g/a}\n")
    assert load_channel_map(y) == [{"prefix": "/d/a", "name": "g/a"}]
    t = tmp_path / "m.toml"
    t.write_text('version = 1\n[[channels]]\nprefix = "/d/a"\nname = "g/a"\ntarget_share = 0.5\n')
    assert load_channel_map(t)[0]["target_share"] == 0.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 2, "channels": []}))
    with pytest.raises(ValueError, match='"version": 1'):
        load_channel_map(bad)
    bad.write_text(json.dumps({"version": 1, "channels": [{"prefix": "/d/a"}]}))
    with pytest.raises(ValueError, match=r"channels\[0\] needs a non-empty 'prefix' and 'name'"):
        load_channel_map(bad)
    bad.write_text(json.dumps({"version": 1, "channels": [{"prefix": "/d/a", "name": "a//b"}]}))
    with pytest.raises(ValueError, match="no empty parts"):
        load_channel_map(bad)


def test_group_rollup_token_weighted() -> None:
    metrics = {
        "finance/slow": {"loss": 2.0, "tokens": 30.0, "token_share": 0.3, "weight": 1.0},
        "finance/fast": {"loss": 4.0, "tokens": 10.0, "token_share": 0.1, "weight": 2.0},
        "web": {"loss": 1.0, "tokens": 60.0, "token_share": 0.6, "weight": 1.0},
    }
    assert group_rollup(metrics) == {
        "finance": {"tokens": 40.0, "token_share": pytest.approx(0.4), "loss": 2.5, "weight": 1.25}
    }
