"""Plan files: TOML, YAML and JSON read to the same plan; bad files name the entry and the fix."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from trainer_hook.mix import MixPlanError, load_plan

TOML = """\
[mix]
seq_length = 4096
tokens = 20_000_000
max_epochs = 3
split = "98,2,0"
data_root = "data"

[channels.finance]
ratio = 0.3
[channels.finance.slow]
ratio = 3
allow_repeat = false
[channels.finance.slow.credit]
prefix = "fin/credit"
[channels.finance.fast]
ratio = 1
prefixes = ["fin/fast_a", "/abs/fin/fast_b"]

[channels.general]
ratio = 0.7
prefix = "general/web"
"""

YAML = """\
mix: {seq_length: 4096, tokens: 2e7, max_epochs: 3, split: "98,2,0", data_root: data}
channels:
  finance:
    ratio: 0.3
    slow:
      ratio: 3
      allow_repeat: false
      credit: {prefix: fin/credit}
    fast: {ratio: 1, prefixes: [fin/fast_a, /abs/fin/fast_b]}
  general: {ratio: 0.7, prefix: general/web}
"""


def _summary(path: Path) -> list[tuple[object, ...]]:
    spec = load_plan(path)
    assert spec.seq_length == 4096
    assert spec.max_epochs == 3
    assert spec.train_fraction == pytest.approx(0.98)
    assert spec.data_root == path.parent / "data"
    assert spec.root.tokens == 20_000_000
    return [
        (n.name, n.ratio, n.tokens, n.samples, n.prefixes, n.allow_repeat) for n in spec.root.walk()
    ]


def test_toml_yaml_and_json_read_to_the_same_plan(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(TOML)
    (tmp_path / "p.yaml").write_text(YAML)
    import tomllib

    (tmp_path / "p.json").write_text(json.dumps(tomllib.loads(TOML)))
    expected = [
        ("", None, 20_000_000, None, (), None),
        ("finance", Fraction(3, 10), None, None, (), None),
        ("finance/slow", 3, None, None, (), False),
        ("finance/slow/credit", None, None, None, ("fin/credit",), None),
        ("finance/fast", 1, None, None, ("fin/fast_a", "/abs/fin/fast_b"), None),
        ("general", Fraction(7, 10), None, None, ("general/web",), None),
    ]
    for name in ("p.toml", "p.yaml", "p.json"):
        assert _summary(tmp_path / name) == expected, name
    spec = load_plan(tmp_path / "p.toml")
    assert spec.resolve_prefix("fin/credit") == str(tmp_path / "data" / "fin/credit")
    assert spec.resolve_prefix("/abs/fin/fast_b") == "/abs/fin/fast_b"


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[channels.a]\nprefix='x'\n", ["[mix] needs seq_length"]),
        ("[mix]\nseq_length=8\n", ["missing [channels]"]),
        (
            "[mix]\nseq_length=8\nlr=1\n[channels.a]\nprefix='x'\n",
            ["unknown key(s) ['lr'] in [mix]"],
        ),
        (
            "[mix]\nseq_length=8\n[channels.a]\nprefix='x'\nweight=2\n",
            ["unknown key 'weight' in entry 'a'", "known keys are"],
        ),
        (
            "[mix]\nseq_length=8\n[channels.a]\nratio=1\ntokens=5\nprefix='x'\n",
            ["entry 'a' gives both ratio and tokens", "keep exactly one budget"],
        ),
        (
            "[mix]\nseq_length=8\n[channels.a]\nratio=0\nprefix='x'\n",
            ["entry 'a': ratio must be > 0", "remove the entry"],
        ),
        (
            "[mix]\nseq_length=8\n[channels.a]\nratio='lots'\nprefix='x'\n",
            ["entry 'a': ratio = 'lots' is not a number"],
        ),
        (
            "[mix]\nseq_length=8\n[channels.a]\nprefix='x'\n[channels.a.b]\nprefix='y'\n",
            ["entry 'a' has both a prefix and sub-entries (a/b)", "'a/rest'"],
        ),
        ("[mix]\nseq_length=0\n[channels.a]\nprefix='x'\n", ["seq_length must be a positive"]),
        ("[mix]\nseq_length=8\nsplit='a'\n[channels.a]\nprefix='x'\n", ["split 'a' is not"]),
        ("[mix]\nseq_length=8\n[channels.a]\nprefix=3\n", ["entry 'a': prefix must be a path"]),
        ("[mix\n", ["cannot parse"]),
    ],
)
def test_bad_plan_files_name_the_entry_and_the_fix(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    with pytest.raises(MixPlanError) as info:
        load_plan(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for needle in needles:
        assert needle in message, (needle, message)


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(MixPlanError, match="does not exist"):
        load_plan(tmp_path / "nope.toml")
    (tmp_path / "plan.ini").write_text("x")
    with pytest.raises(MixPlanError, match=r"unknown plan format '\.ini'; use \.toml"):
        load_plan(tmp_path / "plan.ini")
