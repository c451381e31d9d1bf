"""An alarm's (or fault's) life on the daemon's side: one ``AlarmRecord`` per alarm id, kept in an
``AlarmBook`` and updated by every event the daemon journals for it:

    open (start) -> updated (update) -> answered (ack) / escalated (escalate) -> ended (end)

The decision's events, the acks (``ack.AckBook``: is this id ours, still open, already answered?), the
escalation (``escalation.Escalator``: its level and since when it waits) and the recovery of alarms a crash
left open (``outbox_recovery``: the end event it journals) all read and update this one record; the same
fact is never kept twice. (The stations' side, ``station/ward.Item`` and ``subscriber.AlarmsSeen``, follows
what the broker carries and is not this.)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

KNOWN_PER_PATIENT = 1000  # alarms/faults remembered per patient (a night has a handful)
INTERRUPTED = ("the daemon stopped without ending it (killed, crashed or power lost); ended when it started "
               "again, so the true end time is unknown")
STOPPED = ("stream ended",)  # an alarm end the daemon's stop caused (a crash's: INTERRUPTED)
KINDS = ("alarm", "fault")


@dataclass
class AlarmRecord:
    """One alarm or fault the daemon issued, as far as its journaled events tell."""

    patient: str
    kind: str  # "alarm" | "fault"
    alarm_id: str
    started_t: float
    open: bool = True
    peak_probability: float | None = None
    threshold: float | None = None
    fault_type: str | None = None
    channels: tuple[str, ...] = ()
    acks: list[tuple[str, str, str]] = field(default_factory=list)  # (action, by, note) accepted, in order
    ended_wall: float | None = None  # Unix time of its end event
    stopped: bool = False  # its end was the daemon's stop or crash, not the signal's
    level: int = 0  # the highest escalation level issued
    escalating_since: float | None = None  # monotonic start of its escalation clock (None: not escalating)
    last: dict[str, Any] = field(default_factory=dict, repr=False)  # its latest start/update payload

    @classmethod
    def opened(cls, payload: dict[str, Any]) -> AlarmRecord:
        """The record a start (or, its start unseen, an update) payload opens."""
        return cls(str(payload.get("patient")), str(payload.get("kind")), str(payload.get("alarm_id")),
                   float(payload.get("started_t", payload.get("t", 0.0))), fault_type=payload.get("fault_type"),
                   threshold=payload.get("threshold"))

    @property
    def answered(self) -> bool:
        return bool(self.acks)

    def observe(self, payload: dict[str, Any]) -> None:
        """Follow one journaled event of this alarm (start, update, ack, escalate, end)."""
        phase = payload.get("event")
        if phase == "ack":
            key = (str(payload.get("action")), str(payload.get("by")), str(payload.get("note") or ""))
            if key not in self.acks:  # journaled before a restart (live acks are added by answer())
                self.acks.append(key)
            return
        if phase == "escalate":
            self.level = max(self.level, int(payload.get("level") or 0))
        if payload.get("peak_probability") is not None:
            self.peak_probability = float(payload["peak_probability"])
        if payload.get("channels"):
            self.channels = tuple(payload["channels"])
        if phase in ("start", "update"):
            self.last = payload
        elif phase == "end":
            self.open = False
            self.ended_wall = float(payload.get("wall_time") or 0.0)
            reason = str((payload.get("extra") or {}).get("end_reason", ""))
            self.stopped = payload.get("detail") in STOPPED or reason.startswith("the daemon stopped")

    def answer(self, action: str, by: str, note: str) -> None:
        """An ack accepted live (its event is journaled next)."""
        self.acks.append((action, by, note))

    def interrupted_end(self, wall_time: float) -> dict[str, Any]:
        """The end event of an alarm the daemon's death left open: its last payload, ended now, with the reason."""
        end = {k: v for k, v in self.last.items() if k not in ("seq", "epoch")}
        end.update(event="end", wall_time=wall_time,
                   extra={**(self.last.get("extra") or {}), "end_reason": INTERRUPTED})
        return end


class AlarmBook:
    """The records of each patient's alarms and faults, the last ``KNOWN_PER_PATIENT`` of each, oldest first.
    ``patients``: the ones the daemon monitors (events of others are ignored); None takes everyone."""

    def __init__(self, patients: list[str] | tuple[str, ...] | None = None) -> None:
        self.fixed = patients is not None
        self.records: dict[str, OrderedDict[str, AlarmRecord]] = {p: OrderedDict() for p in patients or ()}

    def get(self, patient: str, alarm_id: str) -> AlarmRecord | None:
        book = self.records.get(patient)
        return book.get(alarm_id) if book is not None else None

    def observe(self, payload: dict[str, Any]) -> AlarmRecord | None:
        """Follow a journaled payload: the record it opened or updated, None if it is not one of ours."""
        patient, alarm_id = str(payload.get("patient")), payload.get("alarm_id")
        if payload.get("kind") not in KINDS or not isinstance(alarm_id, str):
            return None
        book = self.records.get(patient)
        if book is None:
            if self.fixed:
                return None
            book = self.records[patient] = OrderedDict()
        rec = book.get(alarm_id)
        if rec is None:
            if payload.get("event") not in ("start", "update"):
                return None
            rec = book[alarm_id] = AlarmRecord.opened(payload)
            while len(book) > KNOWN_PER_PATIENT:
                book.popitem(last=False)
        rec.observe(payload)
        return rec

    def last_alarm(self, patient: str) -> AlarmRecord | None:
        """The patient's latest alarm (not fault)."""
        alarms = [r for r in self.records.get(patient, {}).values() if r.kind == "alarm"]
        return alarms[-1] if alarms else None
