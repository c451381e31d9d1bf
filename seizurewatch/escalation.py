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

from dataclasses import dataclass, field
from typing import Any

from seizurewatch.alarms.record import STOPPED, AlarmBook, AlarmRecord
from seizurewatch.quality import too_many

__all__ = ["CARRY_S", "STOPPED", "WHOLE_STREAM_FAULTS", "Due", "Escalator", "fault_escalates"]

WHOLE_STREAM_FAULTS = ("stream_lost", "model_error")
CARRY_S = 600.0  # a level survives a restart for an alarm that starts this soon after it


@dataclass(frozen=True)
class Due:
    """An escalation to issue: ``record`` (its patient's alarm or fault ``alarm_id``) reached ``level`` unanswered."""

    patient: str
    kind: str
    alarm_id: str
    level: int
    record: AlarmRecord = field(compare=False, repr=False)


def fault_escalates(fault_type: str | None, channels: list[str] | tuple[str, ...], n_channels: int) -> bool:
    if fault_type in WHOLE_STREAM_FAULTS:
        return True
    return too_many(len(channels), n_channels, fault_type)


class Escalator:
    """Follows the alarm records (``alarms``: the daemon's book, shared with the acks; its own when not given);
    ``due(now)`` says which escalations to issue. A record's level and the start of its clock live in the
    record itself (``AlarmRecord.level``, ``escalating_since``)."""

    def __init__(self, after_s: float, n_channels: dict[str, int] | None = None,
                 alarms: AlarmBook | None = None) -> None:
        self.after_s = after_s
        self.n_channels = n_channels or {}
        self.alarms = alarms if alarms is not None else AlarmBook()
        self.pending: dict[tuple[str, str], AlarmRecord] = {}  # the records whose clock runs
        self.carried: dict[str, tuple[int, float]] = {}  # patient -> (level, valid until, monotonic)

    @property
    def enabled(self) -> bool:
        return self.after_s > 0

    def observe(self, payload: dict[str, Any], now: float) -> None:
        """Follow a journaled payload (the book learns it too)."""
        if self.enabled:
            self.follow(self.alarms.observe(payload), payload, now)

    def follow(self, rec: AlarmRecord | None, payload: dict[str, Any], now: float) -> None:
        """Follow a payload whose record the book has just updated (``rec``; None: not an alarm or fault)."""
        if not self.enabled or rec is None:
            return
        key = (rec.patient, rec.alarm_id)
        phase = payload.get("event")
        if phase in ("end", "ack"):
            self.pending.pop(key, None)
            return
        if phase not in ("start", "update") or key in self.pending:
            return
        if rec.kind == "fault" and not fault_escalates(rec.fault_type, rec.channels,
                                                       self.n_channels.get(rec.patient, 0)):
            return  # an update that widens the fault to most channels starts the clock then
        level = 0
        carried = self.carried.pop(rec.patient, None) if rec.kind == "alarm" else None
        if carried is not None and now <= carried[1]:
            level = carried[0]  # the next escalation one interval from now, one level up
        rec.level, rec.escalating_since = level, now - level * self.after_s
        self.pending[key] = rec

    def carry(self, payloads: list[dict[str, Any]], now: float) -> dict[str, int]:
        """Learn, from the journal's payloads (oldest first), the levels a restart interrupted: per patient,
        its last alarm if nobody answered it, it was escalated, and the daemon's stop or crash ended it."""
        book = AlarmBook()
        for p in payloads:
            book.observe(p)
        levels = {}
        for patient in book.records:
            rec = book.last_alarm(patient)
            if rec is not None and rec.level and rec.stopped and not rec.answered:
                levels[patient] = rec.level
        self.carried = {pt: (lv, now + CARRY_S) for pt, lv in levels.items()}
        return levels

    def due(self, now: float) -> list[Due]:
        """Escalations whose time has come (each level once), oldest alarm first."""
        out = []
        for rec in sorted(self.pending.values(), key=lambda r: r.escalating_since or 0.0):
            since = rec.escalating_since or 0.0
            while now - since >= self.after_s * (rec.level + 1):
                rec.level += 1
                out.append(Due(rec.patient, rec.kind, rec.alarm_id, rec.level, rec))
        return out
