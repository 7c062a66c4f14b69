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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from server.alerts.columns import ChannelColumns, StepColumns, StepPoints, columns_from_points
from server.alerts.detectors import (
    DETECTORS,
    Detector,
    Observation,
    SeriesDetector,
    State,
    Verdict,
    Verdicts,
    collapse_series,
    divergence_series,
    non_finite,
    non_finite_series,
    spike_series,
    starvation_tokens_series,
)
from server.alerts.lifecycle import AlertStatus, Event, advance
from server.alerts.loss_rules import loss_rules_series, shares_forecast
from server.alerts.rules import RULES, thresholds

AlertKey = tuple[str | None, str]  # (channel or None for the run, rule)
Overrides = Mapping[str, Mapping[str, float]]

#: Rules judged per channel; run level (channel None) gets non_finite on lm_loss and divergence.
CHANNEL_RULES = RULES


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


def _observations(
    steps: list[int], ch: ChannelColumns, target: float | None, totals: list[float] | None
) -> list[Observation | None]:
    """One channel's :class:`Observation` at each step (None: the step judged no channel).

    ``totals``: the tokens of all channels at each step, from which a channel with a target
    share and no ``token_share`` point gets its share; None when no channel has a target (no
    rule reads a derived share then: mix_drift judges nothing).
    """
    out: list[Observation | None] = []
    for i, judged in enumerate(ch.judged):
        if judged is None:
            out.append(None)
            continue
        tokens = ch.tokens[i]
        share = ch.token_share[i]
        if share is None and tokens is not None and totals is not None and totals[i] > 0:
            share = tokens / totals[i]  # totals: only when some channel has a target
        out.append(
            Observation(
                steps[i], ch.loss[i], tokens, share, ch.weight[i], target, ch.weight_clipped[i]
            )
        )
    return out


#: One channel's judged rules over a batch: (key, is it divergence, verdicts).
_Judged = tuple[AlertKey, bool, Verdicts]

#: What judging one rule of one channel needs: its key, thresholds, state dict, the detector,
#: and whether it is the divergence rule (whose verdicts the blame step may still change).
_Check = tuple[AlertKey, Mapping[str, float], State, Detector, bool]

#: Rules with a batch form over the channel's losses (state kept in local floats over the
#: whole batch, one forecast computation shared by the three); starvation has one over the
#: observations; the others are judged step by step.
SERIES: dict[str, SeriesDetector] = {
    "non_finite": non_finite_series,
    "spike": spike_series,
    "divergence": divergence_series,
    "collapse": collapse_series,
}


class _Plan:
    """The thresholds and detector states of one :func:`evaluate` call, resolved once.

    Thresholds depend only on (rule, channel) and the override layers, and a detector's state
    dict stays the same object for the whole call, so neither is looked up per step.
    """

    __slots__ = ("params", "rules", "state")

    def __init__(self, state: RunAlertState, rules: RunRules) -> None:
        self.state = state
        self.rules = rules
        self.params: dict[AlertKey, dict[str, float]] = {}

    def param(self, key: AlertKey) -> dict[str, float]:
        p = self.params.get(key)
        if p is None:
            channel, rule = key
            if channel is not None and channel not in self.rules.channel_layers:
                p = self.param((None, rule))  # no channel overrides: the run's thresholds
            else:
                p = self.rules.params(rule, channel)
            self.params[key] = p
        return p

    def channel_checks(self, channel: str) -> list[_Check]:
        """The enabled rules of ``channel`` (a disabled rule's state is created, left empty)."""
        checks: list[_Check] = []
        for rule in CHANNEL_RULES:
            key = (channel, rule)
            det_state = self.state.detectors.setdefault(key, {})
            p = self.param(key)
            if p["enabled"] != 0:
                checks.append((key, p, det_state, DETECTORS[rule], rule == "divergence"))
        return checks

    def judge_channels(self, batch: StepColumns) -> dict[str, list[_Judged]]:
        """Every rule of every channel over all steps of the batch, channel by channel.

        Detectors of different (channel, rule) share no state, so judging channel-major gives
        the verdicts step-major judging would; ``[i]`` of a list is the verdict at step ``i``.
        """
        known = self.rules.channels
        out = {}
        for name, ch in batch.channels.items():
            losses = ch.loss
            target = known.get(name)
            observations: list[Observation | None] | None = None
            results = []
            checks = self.channel_checks(name)
            fused = _fused_loss_rules(checks, losses)
            for key, p, det_state, detector, is_divergence in checks:
                series = SERIES.get(key[1])
                if fused is not None and key[1] in fused:
                    verdicts = fused[key[1]]
                elif series is not None:
                    verdicts = series(det_state, losses, p)
                elif key[1] == "starvation":
                    verdicts = starvation_tokens_series(det_state, ch.tokens, ch.judged, p)
                elif _judges_nothing(key[1], ch, p, target):
                    continue  # no verdict at any step: nothing to settle, nothing to advance
                else:
                    if observations is None:
                        observations = _observations(batch.steps, ch, target, batch.totals)
                    verdicts = _step_by_step(detector, det_state, observations, p)
                results.append((key, is_divergence, verdicts))
            out[name] = results
        return out


def _fused_loss_rules(
    checks: list[_Check], losses: list[float | None]
) -> dict[str, Verdicts] | None:
    """spike, divergence and collapse in one pass over ``losses`` when all three are enabled
    and share their forecast (`server.alerts.loss_rules`); None otherwise."""
    found = {key[1]: (p, det_state) for key, p, det_state, _, _ in checks if key[1] in _LOSS_RULES}
    if len(found) != len(_LOSS_RULES):
        return None
    (ps, ss), (pd, sd), (pc, sc) = (found[rule] for rule in _LOSS_RULES)
    states, params = (ss, sd, sc), (ps, pd, pc)
    if not shares_forecast(states, params):
        return None
    return dict(zip(_LOSS_RULES, loss_rules_series(states, losses, params), strict=True))


_LOSS_RULES = ("spike", "divergence", "collapse")


def _judges_nothing(
    rule: str, ch: ChannelColumns, p: Mapping[str, float], target: float | None
) -> bool:
    """Whether ``rule`` returns None (judges nothing, keeps its state) at every step of the
    channel ``ch``: mix_drift without a target share; weight_saturation without configured
    bounds and without ``weight_clipped`` points."""
    if rule == "mix_drift":
        return target is None
    if rule == "weight_saturation":
        bounded = math.isfinite(p["lower"]) or math.isfinite(p["upper"])
        clipped = ch.weight_clipped
        return not bounded and clipped.count(None) == len(clipped)
    return False


def _step_by_step(
    detector: Detector, state: State, column: list[Observation | None], p: Mapping[str, float]
) -> Verdicts:
    verdicts = [None if o is None else detector(state, o, p) for o in column]
    return Verdicts(
        [None if v is None else v.active for v in verdicts],
        [0.0 if v is None else v.value for v in verdicts],
        lambda i: verdicts[i].summary,  # type: ignore[union-attr]
    )


def evaluate(
    state: RunAlertState, steps: Iterable[StepPoints], rules: RunRules, *, now: float
) -> list[Transition]:
    """Judge every new step in order; mutate ``state``; return the resulting transitions.

    ``now`` is the server's clock (silences, cooldowns and repeats are in server time), not
    the trainer's ``wall_time``.
    """
    new: list[StepPoints] = []
    for points in sorted(steps, key=lambda p: p.step):
        if state.watermark is not None and points.step <= state.watermark:
            continue  # replayed (resumed) step: already judged
        state.watermark = points.step
        new.append(points)
    if not new:
        return []
    return _judge(state, columns_from_points(new, rules.channels), rules, now)


def evaluate_columns(
    state: RunAlertState, batch: StepColumns, rules: RunRules, *, now: float
) -> list[Transition]:
    """:func:`evaluate` of steps given as columns, all above ``state.watermark``
    (`server.alerts.columns.columns_from_series` builds them so)."""
    if not batch.steps:
        return []
    if state.watermark is not None and batch.steps[0] <= state.watermark:
        raise ValueError(
            f"step {batch.steps[0]} is at or below the watermark {state.watermark}: "
            "build the columns with the run's watermark"
        )
    state.watermark = batch.steps[-1]
    return _judge(state, batch, rules, now)


def _judge(
    state: RunAlertState, batch: StepColumns, rules: RunRules, now: float
) -> list[Transition]:
    """Judge the (new) steps of ``batch`` in order; mutate ``state``; return the transitions."""
    out: list[Transition] = []
    plan = _Plan(state, rules)
    names = batch.names
    by_channel = plan.judge_channels(batch)
    alerts = state.alerts
    busy, divergence = _split_quiet(by_channel, alerts, batch.steps)
    run_key: AlertKey = (None, "non_finite")
    run_div_key: AlertKey = (None, "divergence")
    run_div_params = plan.param(run_div_key)
    counts = _rising_counts(divergence, len(batch.steps), run_div_params["h"] / 2.0)
    lm_loss = batch.lm_loss
    step_busy: list[_Judged] = []
    step_names: Sequence[str] | None = None
    for i, step in enumerate(batch.steps):
        verdicts: dict[AlertKey, Verdict] = {}
        lm = lm_loss[i]
        if lm is not None:
            det_state = state.detectors.setdefault(run_key, {})
            run_params = plan.param(run_key)
            if run_params["enabled"] != 0:
                v = non_finite(det_state, Observation(step, loss=lm), run_params)
                if v is not None:
                    verdicts[run_key] = v
        if names[i]:  # a step that logged channels judges every channel
            if names[i] is not step_names:  # the busy pairs of these channels, in their order
                step_names = names[i]
                step_busy = [judged for channel in step_names for judged in busy[channel]]
            for key, is_divergence, channel_verdicts in step_busy:
                active = channel_verdicts.active[i]
                if active is None:
                    continue
                if not (active or is_divergence):  # divergence: see the blame below
                    status = alerts.get(key)
                    if status is None:
                        status = alerts[key] = AlertStatus()
                    if status.state == "inactive":
                        status.last_step = step  # all that advance() would do
                        continue
                verdicts[key] = channel_verdicts.judged(i, active)
            judged, rising = counts[0][i], counts[1][i]
            if judged and not verdicts:  # no busy verdict: the run-level one is not active
                status = alerts.get(run_div_key)
                if status is None:
                    status = alerts[run_div_key] = AlertStatus()
                if status.state == "inactive":
                    status.last_step = step  # all that the blame and advance() would do
                    continue
            if judged:
                run_alert = alerts.get(run_div_key)
                run_rising = run_alert is not None and run_alert.state in ("pending", "firing")
                _blame(verdicts, run_div_params, run_rising, judged, rising)
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


def _split_quiet(
    by_channel: dict[str, list[_Judged]], alerts: dict[AlertKey, AlertStatus], steps: list[int]
) -> tuple[dict[str, list[_Judged]], list[Verdicts]]:
    """Settle the quiet (channel, rule) pairs of the batch at once; return the busy ones.

    A pair is quiet when its rule is never active in the batch and its alert is inactive or
    resolved: then every verdict of the batch only sets the alert's ``last_step`` (the blame
    only ever clears a divergence verdict), which is done here, once. Also returns every
    channel's divergence verdicts, which the blame counts quiet or not.
    """
    busy: dict[str, list[_Judged]] = {}
    divergence: list[Verdicts] = []
    for channel, results in by_channel.items():
        keep = []
        for judged in results:
            key, is_divergence, verdicts = judged
            if is_divergence:
                divergence.append(verdicts)
            status = alerts.get(key)
            if True in verdicts.active or (
                status is not None and status.state not in ("inactive", "resolved")
            ):
                keep.append(judged)
                continue
            active = verdicts.active
            last = len(active) - 1  # the last step the rule judged, if any
            while last >= 0 and active[last] is None:
                last -= 1
            if last >= 0:
                if status is None:
                    status = alerts[key] = AlertStatus()
                status.last_step = steps[last]
        busy[channel] = keep
    return busy, divergence


def _rising_counts(
    divergence: list[Verdicts], n: int, half_h: float
) -> tuple[list[int], list[int]]:
    """At each of the ``n`` steps: how many channels' divergence rules judged it, and how
    many of those scored above ``half_h`` (numpy over the channels x steps of the batch)."""
    if not divergence:
        return [0] * n, [0] * n
    judged = np.array(
        [
            [True] * n if None not in d.active else [a is not None for a in d.active]
            for d in divergence
        ],
        dtype=bool,
    )
    above = np.array([d.value for d in divergence], dtype=np.float64) > half_h
    return judged.sum(axis=0).tolist(), (above & judged).sum(axis=0).tolist()


def _blame(
    verdicts: dict[AlertKey, Verdict],
    p: Mapping[str, float],
    run_rising: bool,
    judged: int,
    rising: int,
) -> None:
    """Channel-level divergence at a step only while the others keep falling.

    A channel "rises" when its divergence score is above h/2. If more than ``majority`` of
    the ``judged`` channels rise (``rising``; or the run-level alert is still open), the rise
    is common: channel-level divergence is suppressed, and the run-level alert is active while
    any channel's score is above h. Every channel's verdict counts; quiet ones are not in
    ``verdicts``: never active, the blame never changes them.
    """
    over = [
        k for k, v in verdicts.items() if k[1] == "divergence" and k[0] is not None and v.active
    ]
    common = judged >= 2 and rising > p["majority"] * judged
    if run_rising and over:
        common = True
    if common:
        for key in over:
            verdicts[key] = Verdict(False, verdicts[key].value, "rising with the whole run")
    verdicts[(None, "divergence")] = Verdict(
        common and bool(over), float(rising), lambda: f"{rising} of {judged} channels rise together"
    )


def _copy(status: AlertStatus) -> AlertStatus:
    return AlertStatus(**{name: getattr(status, name) for name in AlertStatus.__slots__})
