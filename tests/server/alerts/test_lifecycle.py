"""The alert lifecycle: pending -> firing -> resolved, for_steps, cooldown, repeat, ack, silence."""

from __future__ import annotations

from server.alerts.detectors import Verdict
from server.alerts.lifecycle import AlertStatus, advance
from server.alerts.rules import thresholds

ON = Verdict(True, 9.0, "bad")
OFF = Verdict(False, 0.0, "fine")


def _drive(
    status: AlertStatus, verdicts: str, params: dict[str, float], t0: float = 0.0, dt: float = 1.0
) -> list[tuple[str, int, bool]]:
    """Feed a string of verdicts ('1' active, '0' clear), one step and ``dt`` seconds apart."""
    out = []
    for i, c in enumerate(verdicts):
        for e in advance(status, ON if c == "1" else OFF, step=i, now=t0 + i * dt, params=params):
            out.append((e.kind, e.step, e.notify))
    return out


def test_for_steps_delays_firing_and_a_blip_is_cancelled() -> None:
    p = {**thresholds("spike"), "for_steps": 2.0, "resolve_steps": 2.0}
    s = AlertStatus()
    assert _drive(s, "0110111001", p) == [
        ("pending", 1, False),
        ("inactive", 3, False),
        ("pending", 4, False),
        ("firing", 6, True),
        ("resolved", 8, True),
        ("pending", 9, False),
    ]
    assert (s.state, s.start_step) == ("pending", 9)


def test_cooldown_suppresses_a_quick_refire_and_repeat_reminds() -> None:
    p = {**thresholds("divergence"), "resolve_steps": 1.0, "cooldown_s": 10.0, "repeat_s": 3.0}
    s = AlertStatus()
    events = _drive(s, "11111" + "0" + "11" + "0" * 12 + "1", p)
    assert events == [
        ("pending", 0, False),
        ("firing", 0, True),
        ("repeat", 3, True),  # 3 s after the firing was sent
        ("resolved", 5, True),
        ("pending", 6, False),
        ("firing", 6, False),  # within 10 s of the resolve: stored, not sent
        ("resolved", 8, False),  # its firing was not sent, so neither is its resolve
        ("pending", 20, False),
        ("firing", 20, True),  # cooldown over
    ]


def test_acknowledged_alerts_stop_reminding_and_silence_mutes_everything() -> None:
    p = {**thresholds("divergence"), "resolve_steps": 1.0, "repeat_s": 2.0}
    s = AlertStatus()
    assert _drive(s, "11", p) == [("pending", 0, False), ("firing", 0, True)]
    s.acknowledged = True
    assert _drive(s, "11111", p, t0=2.0) == []
    s.silenced_until = 100.0
    assert _drive(s, "0", p, t0=10.0) == [("resolved", 0, False)]
    assert s.acknowledged is False  # an acknowledgement ends with its alert
    assert _drive(s, "1", p, t0=700.0) == [("pending", 0, False), ("firing", 0, True)]
