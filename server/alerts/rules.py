"""The alert rules, their default thresholds, and per-run / per-channel overrides.

Every threshold of every rule has a default that works untuned on ordinary runs. A run may
override any of them for all its channels, and a channel may override them again:

    effective = DEFAULTS[rule] <- run overrides[rule] <- channel overrides[rule]

Overrides are plain JSON (``{"spike": {"z": 8.0}, "divergence": {"enabled": 0}}``) and are
validated here, so a typo is refused with the list of valid names instead of being ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Rule names, in the order they are evaluated.
RULES: tuple[str, ...] = (
    "non_finite",
    "spike",
    "divergence",
    "collapse",
    "starvation",
    "mix_drift",
    "weight_saturation",
)

#: Thresholds shared by every rule (lifecycle).
#: enabled: 1 evaluates the rule, 0 switches it off.
#: for_steps: observations the condition must hold, after the first, before pending -> firing.
#: resolve_steps: consecutive clear observations before firing -> resolved.
#: cooldown_s: after a resolve, a new firing of the same alert is not notified for this long.
#: repeat_s: while firing (and not acknowledged), re-notify this often.
COMMON: dict[str, float] = {
    "enabled": 1.0,
    "for_steps": 0.0,
    "resolve_steps": 5.0,
    "cooldown_s": 600.0,
    "repeat_s": 4 * 3600.0,
}

#: Per-rule thresholds; see docs/alerts.md for the math behind each.
DEFAULTS: dict[str, dict[str, float]] = {
    "non_finite": {**COMMON, "resolve_steps": 1.0},
    "spike": {
        **COMMON,
        "for_steps": 1.0,  # two consecutive jumps: one heavy-tailed step is not an alert
        "min_history": 20.0,  # observations before the rule may fire (warm-up)
        "alpha": 0.2,  # EWMA weight of the level
        "beta": 0.1,  # EWMA weight of the trend
        "z": 8.0,  # standardized jump above the forecast that fires
        "min_jump": 0.5,  # ... and the absolute jump in nats it must also exceed
    },
    "divergence": {
        **COMMON,
        "min_history": 20.0,
        "alpha": 0.2,
        "beta": 0.1,
        "clip": 3.0,  # residuals are clipped at +-clip scales (heavy tails)
        "k": 1.25,  # CUSUM reference (slack) in scales per step
        "h": 3.0,  # CUSUM decision threshold in scales
        "slow_alpha": 0.05,  # EWMA weight of the slow level watched for a rebound
        "rebound_z": 3.0,  # slow level this many scales above its minimum fires
        "majority": 0.5,  # if more than this share of channels rise together: run-level
    },
    "collapse": {
        **COMMON,
        "min_history": 20.0,
        "alpha": 0.2,
        "beta": 0.1,
        "clip": 3.0,  # tighter: clean runs have single-step drops of 1+ nats
        "k": 0.75,
        "h": 5.0,
    },
    "starvation": {
        **COMMON,
        "resolve_steps": 1.0,
        "min_steps": 3.0,  # never fire on fewer consecutive steps without tokens
        "p_false": 1e-5,  # chance of such a gap under the channel's own presence rate
        "min_history": 10.0,
    },
    "mix_drift": {
        **COMMON,
        "min_history": 20.0,
        "alpha": 0.05,  # EWMA weight of the observed token share
        "rel_tol": 0.5,  # |share - target| / target that fires
        "abs_tol": 0.02,  # ... and the absolute share gap it must also exceed
    },
    "weight_saturation": {
        **COMMON,
        "steps": 50.0,  # consecutive observations held by a bound that fire
        "lower": math.nan,  # the reweighting's bounds, if known (NaN: unknown); without them
        "upper": math.nan,  # only the trainer's weight_clipped metric says "held"
        "tol": 1e-4,  # relative distance to lower/upper at which the weight sits at it
    },
}

#: Rule-specific thresholds that must be > 0.
_POSITIVE = {
    "alpha",
    "beta",
    "slow_alpha",
    "rebound_z",
    "z",
    "h",
    "clip",
    "steps",
    "rel_tol",
    "majority",
    "tol",
    "p_false",
}


class RuleConfigError(ValueError):
    """Invalid rule overrides; the message says which key and how to fix it."""


def validate_overrides(overrides: Mapping[str, Any], *, where: str = "overrides") -> None:
    """Raise :class:`RuleConfigError` unless ``overrides`` is ``{rule: {threshold: number}}``."""
    if not isinstance(overrides, Mapping):
        raise RuleConfigError(f"{where} must be an object {{rule: {{threshold: number}}}}")
    for rule, values in overrides.items():
        if rule not in DEFAULTS:
            raise RuleConfigError(
                f"{where}: unknown rule {rule!r}; valid rules are {', '.join(RULES)}"
            )
        if not isinstance(values, Mapping):
            raise RuleConfigError(f"{where}.{rule} must be an object {{threshold: number}}")
        for key, value in values.items():
            if key not in DEFAULTS[rule]:
                valid = ", ".join(sorted(DEFAULTS[rule]))
                raise RuleConfigError(
                    f"{where}.{rule}: unknown threshold {key!r}; valid ones are {valid}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RuleConfigError(f"{where}.{rule}.{key} must be a number, got {value!r}")
            if key in {"lower", "upper"} and math.isnan(value):
                continue
            if not math.isfinite(value):
                raise RuleConfigError(f"{where}.{rule}.{key} must be finite, got {value!r}")
            if key in _POSITIVE and value <= 0:
                raise RuleConfigError(f"{where}.{rule}.{key} must be > 0, got {value!r}")
            if key != "lower" and key != "upper" and value < 0:
                raise RuleConfigError(f"{where}.{rule}.{key} must be >= 0, got {value!r}")
            if key in ("alpha", "beta") and value > 1:
                raise RuleConfigError(f"{where}.{rule}.{key} must be in (0, 1], got {value!r}")


def thresholds(rule: str, *layers: Mapping[str, Mapping[str, float]] | None) -> dict[str, float]:
    """Effective thresholds of ``rule``: the defaults updated by each override layer in turn.

    Layers go from the widest to the narrowest: server-wide, run, channel.
    """
    if rule not in DEFAULTS:
        raise RuleConfigError(f"unknown rule {rule!r}; valid rules are {', '.join(RULES)}")
    merged = dict(DEFAULTS[rule])
    for layer in layers:
        if layer and rule in layer:
            merged.update({k: float(v) for k, v in layer[rule].items()})
    return merged
