"""Evaluate every rule of one run over newly ingested steps: a pure function of persisted state.

The caller (the ingest listener, or the benchmark) loads the run's :class:`RunAlertState`, calls
:func:`evaluate`, and stores the state back in the same transaction. Steps at or below the
run's watermark were already judged: a trainer that resumes from a checkpoint and replays old
steps does not feed them to the detectors twice.

Blame: when more than ``divergence.majority`` of the channels rise together, the cause is the
run (learning rate, a bad optimizer step), not a channel's data, so the per-channel divergence
verdicts are replaced by one run-level divergence alert (``channel=None``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.alerts.detectors import DETECTORS, Detector, Observation, State, Verdict, non_finite
from server.alerts.lifecycle import AlertStatus, Event, advance
from server.alerts.rules import RULES, thresholds

AlertKey = tuple[str | None, str]  # (channel or None for the run, rule)
Overrides = Mapping[str, Mapping[str, float]]

#: Rules judged per channel; run level (channel None) gets non_finite on lm_loss and divergence.
CHANNEL_RULES = RULES


@dataclass(frozen=True, slots=True)
class StepPoints:
    """The points of one step: run-level metrics and per-channel metrics."""

    step: int
    run: Mapping[str, float] = field(default_factory=dict)
    channels: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    wall_time: float | None = None


@dataclass(kw_only=True, slots=True)
class RunAlertState:
    """Everything the engine remembers about one run between ingests."""

    watermark: int | None = None
    detectors: dict[AlertKey, State] = field(default_factory=dict)
    alerts: dict[AlertKey, AlertStatus] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transition:
    """An event of the alert ``key`` (with the alert's state right after it)."""

    channel: str | None
    rule: str
    event: Event
    status: AlertStatus


@dataclass(frozen=True, slots=True)
class RunRules:
    """Channels of a run with their target shares, and threshold override layers."""

    channels: Mapping[str, float | None]
    layers: tuple[Overrides, ...] = ()  # global, then run
    channel_layers: Mapping[str, Overrides] = field(default_factory=dict)

    def params(self, rule: str, channel: str | None) -> dict[str, float]:
        layers = list(self.layers)
        if channel is not None and channel in self.channel_layers:
            layers.append(self.channel_layers[channel])
        return thresholds(rule, *layers)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    if type(value) is float:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _observations(points: StepPoints, rules: RunRules) -> list[tuple[str, Observation]]:
    """Every channel of the run (then any unknown one the step logged), in that order."""
    known = rules.channels
    logged = points.channels
    names: Iterable[str] = known
    if any(c not in known for c in logged):
        names = list(known) + [c for c in logged if c not in known]
    total = sum(t for m in logged.values() if (t := _num(m.get("tokens"))) and math.isfinite(t))
    out = []
    empty: Mapping[str, float] = {}
    step = points.step
    for name in names:
        get = logged.get(name, empty).get
        tokens = _num(get("tokens"))
        share = _num(get("token_share"))
        if share is None and tokens is not None and total > 0:
            share = tokens / total
        obs = Observation(
            step,
            _num(get("loss")),
            tokens,
            share,
            _num(get("weight")),
            known.get(name),
            _num(get("weight_clipped")),
        )
        out.append((name, obs))
    return out


#: What one evaluation of one rule needs: its key, detector, thresholds, state dict, and
#: whether it is the divergence rule (whose verdicts the blame step may still change).
_Check = tuple[AlertKey, Detector, Mapping[str, float], State, bool]


class _Plan:
    """The thresholds and detector states of one :func:`evaluate` call, resolved once.

    Thresholds depend only on (rule, channel) and the override layers, and a detector's state
    dict stays the same object for the whole call, so neither is looked up per step.
    """

    __slots__ = ("checks", "params", "rules", "state")

    def __init__(self, state: RunAlertState, rules: RunRules) -> None:
        self.state = state
        self.rules = rules
        self.params: dict[AlertKey, dict[str, float]] = {}
        self.checks: dict[str, list[_Check]] = {}

    def param(self, key: AlertKey) -> dict[str, float]:
        p = self.params.get(key)
        if p is None:
            p = self.params[key] = self.rules.params(key[1], key[0])
        return p

    def channel_checks(self, channel: str) -> list[_Check]:
        """The enabled rules of ``channel`` (a disabled rule's state is created, left empty)."""
        checks = self.checks.get(channel)
        if checks is None:
            checks = self.checks[channel] = []
            for rule in CHANNEL_RULES:
                key = (channel, rule)
                det_state = self.state.detectors.setdefault(key, {})
                p = self.param(key)
                if p["enabled"] != 0:
                    checks.append((key, DETECTORS[rule], p, det_state, rule == "divergence"))
        return checks


def evaluate(
    state: RunAlertState, steps: Iterable[StepPoints], rules: RunRules, *, now: float
) -> list[Transition]:
    """Judge every new step in order; mutate ``state``; return the resulting transitions.

    ``now`` is the server's clock (silences, cooldowns and repeats are in server time), not
    the trainer's ``wall_time``.
    """
    out: list[Transition] = []
    plan = _Plan(state, rules)
    alerts = state.alerts
    run_key: AlertKey = (None, "non_finite")
    for points in sorted(steps, key=lambda p: p.step):
        step = points.step
        if state.watermark is not None and step <= state.watermark:
            continue  # replayed (resumed) step: already judged
        state.watermark = step
        verdicts: dict[AlertKey, Verdict] = {}
        lm = _num(points.run.get("lm_loss"))
        if lm is not None:
            det_state = state.detectors.setdefault(run_key, {})
            run_params = plan.param(run_key)
            if run_params["enabled"] != 0:
                v = non_finite(det_state, Observation(step, loss=lm), run_params)
                if v is not None:
                    verdicts[run_key] = v
        if points.channels:  # a step that logged channels: absent channels had no tokens
            for channel, obs in _observations(points, rules):
                checks = plan.checks.get(channel) or plan.channel_checks(channel)
                for key, detector, p, det_state, is_divergence in checks:
                    v = detector(det_state, obs, p)
                    if v is None:
                        continue
                    if v.active or is_divergence:  # divergence: see the blame below
                        verdicts[key] = v
                        continue
                    status = alerts.get(key)
                    if status is None:
                        status = alerts[key] = AlertStatus()
                    if status.state == "inactive":
                        status.last_step = step  # all that advance() would do
                    else:
                        verdicts[key] = v
            run_alert = alerts.get((None, "divergence"))
            run_rising = run_alert is not None and run_alert.state in ("pending", "firing")
            _blame_run_for_common_rise(verdicts, plan.param((None, "divergence")), run_rising)
        for key, verdict in verdicts.items():
            status = alerts.get(key)
            if status is None:
                status = alerts[key] = AlertStatus()
            if not verdict.active and status.state == "inactive":
                status.last_step = step  # all that advance() does here, without the call
                continue
            for event in advance(status, verdict, step=step, now=now, params=plan.param(key)):
                out.append(Transition(key[0], key[1], event, _copy(status)))
    return out


def _blame_run_for_common_rise(
    verdicts: dict[AlertKey, Verdict], p: Mapping[str, float], run_rising: bool
) -> None:
    """Channel-level divergence only while the others keep falling.

    A channel "rises" when its divergence score is above h/2. If more than ``majority`` of
    the judged channels rise (or the run-level alert is still open), the rise is common:
    channel-level divergence is suppressed, and the run-level alert is active while any
    channel's score is above h.
    """
    judged = [(k, v) for k, v in verdicts.items() if k[1] == "divergence" and k[0] is not None]
    if not judged:
        return
    rising = [k for k, v in judged if v.value > p["h"] / 2.0]
    common = len(judged) >= 2 and len(rising) > p["majority"] * len(judged)
    over = [k for k, v in judged if v.active]
    if run_rising and over:
        common = True
    if common:
        for key in over:
            verdicts[key] = Verdict(False, verdicts[key].value, "rising with the whole run")
    summary = f"{len(rising)} of {len(judged)} channels rise together"
    verdicts[(None, "divergence")] = Verdict(common and bool(over), float(len(rising)), summary)


def _copy(status: AlertStatus) -> AlertStatus:
    return AlertStatus(**{name: getattr(status, name) for name in AlertStatus.__slots__})
