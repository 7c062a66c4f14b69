"""Read a mix plan file (TOML, YAML or JSON) into a :class:`MixPlanSpec`.

Layout (TOML; YAML and JSON use the same nesting)::

    [mix]
    seq_length = 4096          # Megatron --seq-length
    tokens = 20_000_000        # total budget (or samples = 52_000; or nothing: all data once)
    max_epochs = 4             # warn above this many repeats
    allow_repeat = true        # false: a budget larger than the data is an error
    split = "100,0,0"          # Megatron --split; only the train part counts
    data_root = "data"         # relative prefixes start here (default: the plan's folder)

    [channels.finance]         # a channel; nested tables are sub-channels
    ratio = 3
    [channels.finance.slow]
    ratio = 3
    [channels.finance.slow.credit]
    prefix = "finance/credit_text_document"   # or prefixes = [...]

TOML is read with the standard library; YAML needs pyyaml (imported only for ``.yaml``/``.yml``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from trainer_hook.mix.spec import ChannelSpec, MixPlanError, MixPlanSpec

_BUDGET_KEYS = ("ratio", "tokens", "samples")
_CHANNEL_KEYS = {*_BUDGET_KEYS, "prefix", "prefixes", "allow_repeat", "max_epochs"}
_MIX_KEYS = {"seq_length", "tokens", "samples", "split", "max_epochs", "allow_repeat", "data_root"}


def load_plan(path: str | Path) -> MixPlanSpec:
    """Parse the plan file at ``path``; errors name the file, the entry and the fix."""
    path = Path(path)
    if not path.is_file():
        raise MixPlanError(f"plan file {str(path)!r} does not exist; give a .toml/.yaml path")
    return parse_plan(read_document(path), source=str(path), base_dir=path.parent)


def read_document(path: Path) -> dict[str, Any]:
    """The file's top-level mapping, by extension: .toml, .yaml/.yml, .json."""
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    try:
        if suffix == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        elif suffix in {".yaml", ".yml"}:
            try:
                import yaml
            except ImportError as exc:  # pragma: no cover - pyyaml is in every extra we ship
                raise MixPlanError(
                    f"{path}: reading YAML needs pyyaml (pip install pyyaml), or write the plan "
                    "as .toml"
                ) from exc
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise MixPlanError(f"{path}: unknown plan format {suffix!r}; use .toml, .yaml or .json")
    except MixPlanError:
        raise
    except Exception as exc:  # the parsers' own messages carry line and column
        raise MixPlanError(f"{path}: cannot parse: {exc}") from exc
    if not isinstance(data, dict):
        raise MixPlanError(f"{path}: the top level must be a table with [mix] and [channels]")
    return data


def parse_plan(data: Mapping[str, Any], *, source: str, base_dir: Path) -> MixPlanSpec:
    """Build the spec from the parsed document (see the module docstring for the layout)."""
    unknown = set(data) - {"mix", "channels"}
    if unknown:
        raise MixPlanError(
            f"{source}: unknown top-level key(s) {sorted(unknown)}; the plan has [mix] "
            "and [channels] only"
        )
    mix = data.get("mix") or {}
    channels = data.get("channels")
    if not isinstance(mix, Mapping):
        raise MixPlanError(f"{source}: [mix] must be a table")
    if not isinstance(channels, Mapping) or not channels:
        raise MixPlanError(f"{source}: missing [channels]; add [channels.NAME] tables")
    bad = set(mix) - _MIX_KEYS
    if bad:
        raise MixPlanError(
            f"{source}: unknown key(s) {sorted(bad)} in [mix]; known: {sorted(_MIX_KEYS)}"
        )
    if "seq_length" not in mix:
        raise MixPlanError(f"{source}: [mix] needs seq_length (Megatron's --seq-length)")
    root = ChannelSpec(
        name="",
        tokens=_number(mix, "tokens", "[mix]", source),
        samples=_number(mix, "samples", "[mix]", source),
        children=tuple(
            _channel(name, node, "", source) for name, node in _tables(channels, "", source)
        ),
    )
    data_root = Path(str(mix.get("data_root", "."))).expanduser()
    return MixPlanSpec(
        root=root,
        seq_length=_integer(mix["seq_length"], "seq_length", source),
        split=str(mix.get("split", "100,0,0")),
        max_epochs=float(_number(mix, "max_epochs", "[mix]", source) or 4),
        allow_repeat=bool(_boolean(mix, "allow_repeat", "[mix]", source, default=True)),
        data_root=data_root if data_root.is_absolute() else base_dir / data_root,
        source=source,
    )


def _tables(node: Mapping[str, Any], parent: str, source: str) -> list[tuple[str, Any]]:
    out = []
    for key, value in node.items():
        if isinstance(value, Mapping):
            out.append((str(key), value))
        elif parent and key in _CHANNEL_KEYS:
            continue
        else:
            where = f"entry {parent!r}" if parent else "[channels]"
            raise MixPlanError(
                f"{source}: unknown key {key!r} in {where}; a sub-channel must be a table "
                f"([channels.{(parent + '.' if parent else '').replace('/', '.')}{key}]) and "
                f"the known keys are {sorted(_CHANNEL_KEYS)}"
            )
    return out


def _channel(short: str, node: Mapping[str, Any], parent: str, source: str) -> ChannelSpec:
    if not short or "/" in short or short.strip() != short:
        raise MixPlanError(
            f"{source}: channel name {short!r} under {parent or '[channels]'!r} must be "
            "non-empty, without '/' and surrounding spaces (nest tables for hierarchy)"
        )
    name = f"{parent}/{short}" if parent else short
    where = f"entry {name!r}"
    prefixes: list[str] = []
    for key in ("prefix", "prefixes"):
        value = node.get(key)
        if value is None:
            continue
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(p, str) and p for p in items):
            raise MixPlanError(f"{source}: {where}: {key} must be a path or a list of paths")
        prefixes.extend(items)
    if len(set(prefixes)) != len(prefixes):
        raise MixPlanError(f"{source}: {where} lists the same prefix twice; list it once")
    max_epochs = _number(node, "max_epochs", where, source)
    try:
        return ChannelSpec(
            name=name,
            ratio=_number(node, "ratio", where, source),
            tokens=_number(node, "tokens", where, source),
            samples=_number(node, "samples", where, source),
            prefixes=tuple(prefixes),
            children=tuple(_channel(k, v, name, source) for k, v in _tables(node, name, source)),
            allow_repeat=_boolean(node, "allow_repeat", where, source, default=None),
            max_epochs=None if max_epochs is None else float(max_epochs),
        )
    except MixPlanError as exc:
        raise MixPlanError(f"{source}: {exc}") from None


def _number(node: Mapping[str, Any], key: str, where: str, source: str) -> Fraction | None:
    """A budget number as an exact fraction: 3, 0.3 (= 3/10), 2e7, "3/4", "20_000_000"."""
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MixPlanError(f"{source}: {where}: {key} must be a number, got {value!r}")
    try:
        number = Fraction(str(value).replace("_", ""))
    except (ValueError, ZeroDivisionError):
        raise MixPlanError(
            f"{source}: {where}: {key} = {value!r} is not a number; write e.g. 3, 0.25 or 2e7"
        ) from None
    return number


def _integer(value: Any, key: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MixPlanError(f"{source}: [mix] {key} must be an integer, got {value!r}")
    return value


def _boolean(
    node: Mapping[str, Any], key: str, where: str, source: str, *, default: bool | None
) -> bool | None:
    value = node.get(key, default)
    if value is not None and not isinstance(value, bool):
        raise MixPlanError(f"{source}: {where}: {key} must be true or false, got {value!r}")
    return value
