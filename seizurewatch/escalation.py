"""Escalation: an alarm nobody answers must get louder, not quieter.

An alarm not acknowledged within ``decision.escalate_after_s`` gets an ``"event": "escalate"``
with ``level`` 1, then 2, 3, ... every further interval, until someone acknowledges it (any
action) or it ends. A fault that lasts escalates the same way when it means the daemon cannot
tell at all: the stream is lost, the model fails, or a signal fault covers enough of the model's
channels that its windows are not classified (``quality.too_many``: a quarter of the channels flat, half
for other faults; "cannot tell" must not stay silent). A fault on one or two channels of many does not page anyone.

Time is the wall clock (``time.monotonic``): escalation is about people, not recording time.

A restart does not start the count again: an unanswered alarm that the daemon's stop (or crash) ended
while it was escalated hands its level to the patient's first alarm after the restart (``carry``), if
that one starts within ``CARRY_S``: the seizure that goes on is the same emergency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seizurewatch.quality import too_many

WHOLE_STREAM_FAULTS = ("stream_lost", "model_error")
CARRY_S = 600.0  # a level survives a restart for an alarm that starts this soon after it
STOPPED = ("stream ended",)  # an alarm end the daemon's stop caused (a crash's: outbox.INTERRUPTED)


@dataclass
class _Pending:
    patient: str
    kind: str
    alarm_id: str
    since: float
    level: int = 0


@dataclass(frozen=True)
class Due:
    patient: str
    kind: str
    alarm_id: str
    level: int


def fault_escalates(fault_type: str | None, channels: list[str] | tuple[str, ...], n_channels: int) -> bool:
    if fault_type in WHOLE_STREAM_FAULTS:
        return True
    return too_many(len(channels), n_channels, fault_type)


class Escalator:
    """Follows journaled payloads; ``due(now)`` says which escalations to issue."""

    def __init__(self, after_s: float, n_channels: dict[str, int] | None = None) -> None:
        self.after_s = after_s
        self.n_channels = n_channels or {}
        self.pending: dict[tuple[str, str], _Pending] = {}
        self.carried: dict[str, tuple[int, float]] = {}  # patient -> (level, valid until, monotonic)

    @property
    def enabled(self) -> bool:
        return self.after_s > 0

    def observe(self, payload: dict[str, Any], now: float) -> None:
        if not self.enabled:
            return
        key = (str(payload.get("patient")), str(payload.get("alarm_id")))
        kind, phase = payload.get("kind"), payload.get("event")
        if phase in ("end", "ack"):
            self.pending.pop(key, None)
            return
        if phase not in ("start", "update") or key in self.pending:
            return
        if kind == "fault" and not fault_escalates(payload.get("fault_type"), payload.get("channels") or (),
                                                   self.n_channels.get(key[0], 0)):
            return  # an update that widens the fault to most channels starts the clock then
        level = 0
        carried = self.carried.pop(key[0], None) if kind == "alarm" else None
        if carried is not None and now <= carried[1]:
            level = carried[0]  # the next escalation one interval from now, one level up
        self.pending[key] = _Pending(key[0], str(kind), key[1], now - level * self.after_s, level)

    def carry(self, payloads: list[dict[str, Any]], now: float) -> dict[str, int]:
        """Learn, from the journal's payloads (oldest first), the levels a restart interrupted: per patient,
        its last alarm if nobody answered it, it was escalated, and the daemon's stop or crash ended it."""
        last: dict[str, dict[str, Any]] = {}
        for p in payloads:
            if p.get("kind") != "alarm":
                continue
            patient, phase = str(p.get("patient")), p.get("event")
            if phase == "start":
                last[patient] = {"id": p.get("alarm_id"), "level": 0, "acked": False, "stopped": False}
            rec = last.get(patient)
            if rec is None or rec["id"] != p.get("alarm_id"):
                continue
            if phase == "escalate":
                rec["level"] = max(rec["level"], int(p.get("level") or 0))
            elif phase == "ack":
                rec["acked"] = True
            elif phase == "end":
                reason = str((p.get("extra") or {}).get("end_reason", ""))
                rec["stopped"] = p.get("detail") in STOPPED or reason.startswith("the daemon stopped")
        levels = {pt: r["level"] for pt, r in last.items() if r["level"] and r["stopped"] and not r["acked"]}
        self.carried = {pt: (lv, now + CARRY_S) for pt, lv in levels.items()}
        return levels

    def due(self, now: float) -> list[Due]:
        """Escalations whose time has come (each level once), oldest alarm first."""
        out = []
        for p in sorted(self.pending.values(), key=lambda p: p.since):
            while now - p.since >= self.after_s * (p.level + 1):
                p.level += 1
                out.append(Due(p.patient, p.kind, p.alarm_id, p.level))
        return out
