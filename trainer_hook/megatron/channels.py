"""Channel names and target shares from Megatron's data arguments.

Megatron tags every blended sample with ``dataset_id`` = the index of its prefix in the blend.
This module turns the blend into a channel table:

* ``dataset_id -> channel id`` (several prefixes may share one channel through the map file);
* unique, readable channel names (basename without ``_text_document``; basename collisions are
  resolved by prepending parent folders until the names differ);
* each channel's target token share. A Megatron sample is ``seq_length`` tokens of one dataset, so
  the sample weights of the blend are token shares: ``share_k = w_k / sum_j w_j``, summed over the
  prefixes of a channel.

Only the standard library is needed (YAML/TOML map files use PyYAML / ``tomllib`` if present).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SPLITS = ("train", "valid", "test")
_DOCUMENT_SUFFIXES = ("_text_document", "_content_document", "_document")


@dataclass(frozen=True, slots=True)
class Blend:
    """One parsed blend: the prefixes in ``dataset_id`` order and their weights (or None)."""

    prefixes: tuple[str, ...]
    weights: tuple[float, ...] | None


@dataclass(frozen=True, slots=True)
class ChannelTable:
    """The channels of one blend.

    ``names[c]`` is channel ``c``; ``dataset_to_channel[d]`` maps Megatron's ``dataset_id`` ``d``
    (the index of prefix ``prefixes[d]``) to its channel; ``target_shares[c]`` is the planned token
    share of channel ``c`` (None when the blend has no weights and the map gives none).
    """

    names: tuple[str, ...]
    dataset_to_channel: tuple[int, ...]
    prefixes: tuple[str, ...]
    target_shares: tuple[float | None, ...]

    def server_channels(self) -> list[dict[str, Any]]:
        """The ``channels`` list of the server's ``RunCreate`` body."""
        return [
            {"name": n, "target_share": s}
            for n, s in zip(self.names, self.target_shares, strict=True)
        ]


def parse_blend(tokens: Sequence[str] | str) -> Blend:
    """Parse Megatron's blend list, as ``megatron.core.datasets.utils.get_blend_from_list`` does.

    ``["30", "/d/a", "70", "/d/b"]`` gives weights ``(30, 70)``; an odd-length list, or one whose
    even items are not numbers, is a list of prefixes without weights. A single string is split on
    whitespace (the form of ``--data-args-path`` files).
    """
    items = tokens.split() if isinstance(tokens, str) else [str(t) for t in tokens]
    items = [t for part in items for t in part.split()]
    if not items:
        raise ValueError("empty blend: give at least one dataset prefix (e.g. --data-path /d/web)")
    if len(items) % 2 == 0:
        weights: list[float] = []
        for raw in items[0::2]:
            try:
                weights.append(float(raw))
            except ValueError:
                break
        else:
            if any(w < 0 for w in weights):
                raise ValueError(f"negative blend weight in {items}: weights must be >= 0")
            return Blend(prefixes=tuple(items[1::2]), weights=tuple(weights))
    return Blend(prefixes=tuple(items), weights=None)


def train_blend_from_args(args: Any) -> Blend:
    """The training blend selected by Megatron's arguments.

    Same precedence as ``get_blend_and_blend_per_split``: ``--data-args-path`` (a file holding
    the ``--data-path`` text), else ``--data-path``, else ``--per-split-data-args-path`` (JSON with
    ``train``/``valid``/``test``), else ``--train-data-path``.
    """
    data_args_path = getattr(args, "data_args_path", None)
    data_path = getattr(args, "data_path", None)
    per_split_path = getattr(args, "per_split_data_args_path", None)
    train_data_path = getattr(args, "train_data_path", None)
    if data_args_path is not None:
        if data_path is not None:
            raise ValueError("give --data-args-path or --data-path, not both")
        return parse_blend(Path(data_args_path).read_text())
    if data_path is not None:
        return parse_blend(data_path)
    if per_split_path is not None:
        per_split = json.loads(Path(per_split_path).read_text())
        missing = [s for s in _SPLITS if s not in per_split]
        if missing:
            raise ValueError(
                f"{per_split_path} lacks the split(s) {missing}: it needs keys {list(_SPLITS)}"
            )
        return parse_blend(per_split["train"])
    if train_data_path is not None:
        return parse_blend(train_data_path)
    raise ValueError(
        "no training data in the arguments: set --data-path, --data-args-path, "
        "--train-data-path or --per-split-data-args-path"
    )


def readable_names(prefixes: Sequence[str]) -> list[str]:
    """Unique readable names for dataset prefixes.

    The basename without a ``_text_document`` suffix; prefixes whose names collide get parent
    folders prepended (``fin/credit`` vs ``web/credit``) until they differ; a prefix listed twice
    gets ``#2``, ``#3``.
    """
    parts = [_path_parts(p) for p in prefixes]
    depth = [1] * len(prefixes)
    while True:
        names = ["/".join(pp[-d:]) for pp, d in zip(parts, depth, strict=True)]
        groups: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            groups.setdefault(n, []).append(i)
        grew = False
        for idx in groups.values():
            if len({tuple(parts[i]) for i in idx}) > 1:  # distinct prefixes share a name
                for i in idx:
                    if depth[i] < len(parts[i]):
                        depth[i] += 1
                        grew = True
        if not grew:
            break
    seen: dict[str, int] = {}
    unique = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return unique


def _path_parts(prefix: str) -> list[str]:
    norm = os.path.normpath(prefix)
    parts = [p for p in norm.split(os.sep) if p not in ("", ".")]
    if not parts:
        raise ValueError(f"dataset prefix {prefix!r} has no name; give a path like /data/web")
    last = parts[-1]
    for suffix in _DOCUMENT_SUFFIXES:
        if last.endswith(suffix) and len(last) > len(suffix):
            last = last[: -len(suffix)]
            break
    return [*parts[:-1], last]


def load_channel_map(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a channel map file (JSON; YAML or TOML by extension) and check it.

    Format (docs/architecture.md): ``{"version": 1, "channels": [{"prefix": ..., "name": ...,
    "target_share": ...}]}``; ``target_share`` is optional.
    """
    p = Path(path)
    text = p.read_text()
    suffix = p.suffix.lower()
    data: Any
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ValueError(f"{p}: reading YAML needs PyYAML; pip install pyyaml") from exc
        data = yaml.safe_load(text)
    elif suffix == ".toml":
        import tomllib

        data = tomllib.loads(text)
    else:
        data = json.loads(text)
    if not isinstance(data, Mapping) or data.get("version") != 1:
        raise ValueError(f'{p}: a channel map needs "version": 1 and a "channels" list')
    entries = data.get("channels")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f'{p}: "channels" must be a non-empty list of {{"prefix", "name"}}')
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping) or not e.get("prefix") or not e.get("name"):
            raise ValueError(f"{p}: channels[{i}] needs a non-empty 'prefix' and 'name'")
        name = str(e["name"])
        if name.startswith("/") or name.endswith("/") or "//" in name:
            raise ValueError(f"{p}: channels[{i}] name {name!r}: use 'group/sub', no empty parts")
        share = e.get("target_share")
        if share is not None and not (isinstance(share, int | float) and share >= 0):
            raise ValueError(f"{p}: channels[{i}] target_share must be a number >= 0")
    return [dict(e) for e in entries]


def build_channel_table(
    blend: Blend, channel_map: Sequence[Mapping[str, Any]] | None = None
) -> ChannelTable:
    """Channels of a blend, named by the map where it matches, else by ``readable_names``.

    A map entry matches a prefix exactly, else by basename. Prefixes mapped to one name form one
    channel whose target share is the sum of theirs. A prefix's share is its map ``target_share``
    when given, else its blend weight normalised over the blend (``w_d / sum w``).
    """
    default_names = readable_names(blend.prefixes)
    exact = {str(e["prefix"]): e for e in channel_map or ()}
    by_base: dict[str, Mapping[str, Any]] = {}
    for e in channel_map or ():
        by_base.setdefault(os.path.basename(os.path.normpath(str(e["prefix"]))), e)

    total = sum(blend.weights) if blend.weights else 0.0
    if blend.weights is not None and total <= 0:
        raise ValueError("blend weights sum to 0: give at least one positive weight")
    names: list[str] = []
    shares: list[float | None] = []
    d2c: list[int] = []
    for d, prefix in enumerate(blend.prefixes):
        entry = exact.get(prefix) or by_base.get(os.path.basename(os.path.normpath(prefix)))
        name = str(entry["name"]) if entry else default_names[d]
        share: float | None = blend.weights[d] / total if blend.weights else None
        if entry is not None and entry.get("target_share") is not None:
            share = float(entry["target_share"])
        if name in names:
            c = names.index(name)
            prev = shares[c]
            shares[c] = None if prev is None or share is None else prev + share
        else:
            c = len(names)
            names.append(name)
            shares.append(share)
        d2c.append(c)
    return ChannelTable(
        names=tuple(names),
        dataset_to_channel=tuple(d2c),
        prefixes=tuple(blend.prefixes),
        target_shares=tuple(shares),
    )


def channel_table_from_args(
    args: Any, channel_map_path: str | os.PathLike[str] | None = None
) -> ChannelTable:
    """The training channels of a Megatron run: ``train_blend_from_args`` + optional map file."""
    channel_map = load_channel_map(channel_map_path) if channel_map_path else None
    return build_channel_table(train_blend_from_args(args), channel_map)


def group_rollup(
    channel_metrics: Mapping[str, Mapping[str, float]],
) -> dict[str, dict[str, float]]:
    """Parent groups of hierarchical names (``finance`` for ``finance/slow``, ``finance/fast``).

    ``loss`` and ``weight`` are token-weighted means of the children, ``tokens``, ``samples`` and
    ``token_share`` are sums. Groups that are themselves channels are not overwritten.
    """
    acc: dict[str, dict[str, float]] = {}
    for name, m in channel_metrics.items():
        parts = name.split("/")
        tokens = float(m.get("tokens", 0.0))
        for depth in range(1, len(parts)):
            g = acc.setdefault("/".join(parts[:depth]), {})
            g["tokens"] = g.get("tokens", 0.0) + tokens
            for key in ("samples", "token_share"):
                if key in m:
                    g[key] = g.get(key, 0.0) + float(m[key])
            for key in ("loss", "weight"):
                if key in m:
                    g[f"_{key}_sum"] = g.get(f"_{key}_sum", 0.0) + float(m[key]) * tokens
    out: dict[str, dict[str, float]] = {}
    for group, vals in acc.items():
        if group in channel_metrics or vals["tokens"] <= 0:
            continue
        res = {k: v for k, v in vals.items() if not k.startswith("_")}
        for key in ("loss", "weight"):
            if f"_{key}_sum" in vals:
                res[key] = vals[f"_{key}_sum"] / vals["tokens"]
        out[group] = res
    return out
