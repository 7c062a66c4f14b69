"""The life of one alert (one per run, channel and rule), as Prometheus/Alertmanager model it.

    inactive --active--> pending --active for `for_steps` more--> firing
    pending  --clear---> inactive (cancelled, never notified)
    firing   --clear for `resolve_steps`--> resolved --active--> pending ...

Notifications: on firing (unless silenced, or within `cooldown_s` of the previous resolve),
every `repeat_s` while firing (unless acknowledged or silenced), and on resolve (only if its
firing was notified). Every transition becomes an :class:`Event`, stored as history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from server.alerts.detectors import Verdict

STATES = ("inactive", "pending", "firing", "resolved")


@dataclass(kw_only=True, slots=True)
class AlertStatus:
    """The persisted lifecycle state of one alert."""

    state: str = "inactive"
    start_step: int | None = None
    last_step: int | None = None
    value: float | None = None
    summary: str = ""
    active_count: int = 0  # consecutive active observations since pending
    clear_count: int = 0  # consecutive clear observations while firing
    started_at: float | None = None  # epoch seconds
    fired_at: float | None = None
    resolved_at: float | None = None
    last_notified_at: float | None = None
    notified: bool = False  # this firing was notified (so its resolve is too)
    cooldown_until: float | None = None
    acknowledged: bool = False
    silenced_until: float | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"alert state {self.state!r} is not one of {', '.join(STATES)}")

    def silenced(self, now: float) -> bool:
        """True while a silence is in force."""
        return self.silenced_until is not None and now < self.silenced_until


@dataclass(frozen=True, slots=True)
class Event:
    """One transition (or repeat reminder) of an alert; ``notify`` says whether to send it."""

    kind: str  # pending | firing | resolved | inactive | repeat
    step: int
    value: float | None
    summary: str
    notify: bool


def advance(
    status: AlertStatus, verdict: Verdict, *, step: int, now: float, params: Mapping[str, float]
) -> list[Event]:
    """Apply one verdict at ``step`` (wall time ``now``); return the events it caused."""
    events: list[Event] = []
    if verdict.active:
        status.clear_count = 0
        if status.state in ("inactive", "resolved"):
            status.state = "pending"
            status.start_step = step
            status.started_at = now
            status.fired_at = None
            status.resolved_at = None
            status.active_count = 0
            status.acknowledged = False
            status.notified = False
            events.append(Event("pending", step, verdict.value, verdict.summary, False))
        status.active_count += 1
        status.value, status.summary, status.last_step = verdict.value, verdict.summary, step
        if status.state == "pending" and status.active_count > params["for_steps"]:
            status.state = "firing"
            status.fired_at = now
            cooling = status.cooldown_until is not None and now < status.cooldown_until
            notify = not status.silenced(now) and not cooling
            if notify:
                status.notified = True
                status.last_notified_at = now
            events.append(Event("firing", step, verdict.value, verdict.summary, notify))
        elif status.state == "firing" and not events:
            due = (
                status.last_notified_at is None
                or now - status.last_notified_at >= params["repeat_s"]
            )
            if status.notified and due and not status.acknowledged and not status.silenced(now):
                status.last_notified_at = now
                events.append(Event("repeat", step, verdict.value, verdict.summary, True))
        return events
    status.last_step = step
    if status.state == "pending":
        status.state = "inactive"
        status.active_count = 0
        events.append(Event("inactive", step, verdict.value, verdict.summary, False))
    elif status.state == "firing":
        status.clear_count += 1
        if status.clear_count >= params["resolve_steps"]:
            status.state = "resolved"
            status.resolved_at = now
            status.cooldown_until = now + params["cooldown_s"]
            notify = status.notified and not status.silenced(now)
            status.value, status.summary = verdict.value, verdict.summary
            status.acknowledged = False
            events.append(Event("resolved", step, verdict.value, verdict.summary, notify))
    return events
