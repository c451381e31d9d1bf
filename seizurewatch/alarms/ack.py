"""Acknowledgements from the people who answer the alarm (docs/ack.schema.json).

A client (the nurse-station page, ``seizurewatch ack``, a Home Assistant button) publishes to
``<prefix>/<patient>/ack`` a JSON object::

    {"alarm_id": "0123456789abcdef", "action": "ack" | "false_alarm" | "confirmed", "by": "nurse A", "note": "..."}

The daemon checks it against the alarms and faults it has issued for that patient (the
``AckBook``); anything else (a topic of a patient it does not monitor, an id it never issued,
an unknown action, malformed JSON, an oversized payload) is logged and ignored. An accepted
ack becomes an ``"event": "ack"`` alarm (or fault) event journaled and published through the
outbox like every other event, and the retained state lists the latest acks.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Literal

from seizurewatch.alarms import wire
from seizurewatch.alarms.journal import Journal, JournalError
from seizurewatch.alarms.record import AlarmBook, AlarmRecord

log = logging.getLogger(__name__)

Action = Literal["ack", "false_alarm", "confirmed"]
ACTIONS: tuple[str, ...] = ("ack", "false_alarm", "confirmed")
MAX_ACK_BYTES = 4096  # a real ack is ~150 bytes; anything far larger is refused before parsing
MAX_BY = 64
MAX_NOTE = 500
ACK_GRACE_S = 300.0  # a plain ack of an ended alarm is taken this long after its end (the nurse was on the way)
STATE_ACKS = 8  # acks listed in the retained state, newest last
ACKS_PER_MINUTE = 30  # accepted per patient; a flood beyond is refused (each one is an fsync'd journal row)
RELOAD_S = 24 * 3600.0  # alarms of the last day are learnt from the journal at start (marks after a restart)
_ID = re.compile(r"^[0-9a-f]{16}$")
_KEYS = {"alarm_id", "action", "by", "note"}


class AckError(ValueError):
    """Why an ack payload was refused (one line, for the log)."""


REFUSAL_SCHEMA = "seizurewatch/refusal/1"


def refusal_topic(prefix: str, patient: str) -> str:
    """Where the daemon says why it refused an ack (docs/alarm.schema.json, ``refusal``; QoS 1, not retained)."""
    return f"{prefix}/{patient}/refusal"


@dataclass(frozen=True)
class Refusal:
    """An ack the daemon did not take, and why: published so that whoever sent it is not left waiting."""

    patient: str
    reason: str
    alarm_id: str | None = None  # what could be read of the ack (None if it could not be parsed)
    action: str | None = None
    by: str | None = None

    def payload(self, wall_time: float) -> dict[str, Any]:
        return {"schema": REFUSAL_SCHEMA, "patient": self.patient, "alarm_id": self.alarm_id, "action": self.action,
                "by": self.by, "reason": self.reason[:300], "wall_time": round(wall_time, 3)}

    def answers(self, ack: Ack) -> bool:
        return (self.alarm_id, self.action, self.by) == (ack.alarm_id, ack.action, ack.by)


@dataclass(frozen=True)
class Ack:
    alarm_id: str
    action: Action
    by: str
    note: str = ""

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"alarm_id": self.alarm_id, "action": self.action, "by": self.by}
        if self.note:
            body["note"] = self.note
        return json.dumps(body, separators=(",", ":")).encode()


def ack_topic(prefix: str, patient: str) -> str:
    return f"{prefix}/{patient}/ack"


def parse_ack(raw: bytes) -> Ack:
    """The ack in ``raw``; AckError naming the problem otherwise (never anything else)."""
    if len(raw) > MAX_ACK_BYTES:
        raise AckError(f"payload of {len(raw)} bytes is larger than {MAX_ACK_BYTES}")
    try:
        body = wire.loads(raw)
    except wire.WireError as exc:
        raise AckError(str(exc)) from None
    if not isinstance(body, dict):
        raise AckError(f"expected a JSON object, got {type(body).__name__}")
    extra = set(body) - _KEYS
    if extra:
        raise AckError(f"unknown key(s) {', '.join(sorted(extra))}; expected alarm_id, action, by, note")
    alarm_id, action, by, note = body.get("alarm_id"), body.get("action"), body.get("by"), body.get("note", "")
    if not isinstance(alarm_id, str) or not _ID.match(alarm_id):
        raise AckError(f"alarm_id: expected 16 hex digits, got {alarm_id!r:.40}")
    if action not in ACTIONS:
        raise AckError(f"action: expected one of {', '.join(ACTIONS)}, got {action!r:.40}")
    if not isinstance(by, str) or not by.strip() or len(by) > MAX_BY:
        raise AckError(f"by: expected a non-empty name of at most {MAX_BY} characters")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise AckError(f"note: expected text of at most {MAX_NOTE} characters")
    for key, text in (("by", by), ("note", note)):  # a name is data: never a line break or escape sequence
        if not text.isprintable():
            raise AckError(f"{key}: control characters (line breaks, escape sequences) are refused: {text[:40]!r}")
    return Ack(alarm_id, action, by.strip(), note.strip())  # type: ignore[arg-type]


class AckBook:
    """Which alarm ids each configured patient has (``alarms``: the daemon's one ``AlarmBook``), and who
    acknowledged what."""

    def __init__(self, patients: list[str] | tuple[str, ...], alarms: AlarmBook | None = None) -> None:
        self.alarms = alarms if alarms is not None else AlarmBook(patients)
        self.recent: dict[str, list[dict[str, Any]]] = {p: [] for p in patients}
        self.refused = 0
        self.last_refusal: Refusal | None = None  # why the latest ack was refused (the daemon publishes it)
        self._accepted: dict[str, deque[float]] = {p: deque() for p in patients}  # monotonic times, last minute

    @property
    def issued(self) -> dict[str, OrderedDict[str, AlarmRecord]]:
        """patient -> alarm id -> its record."""
        return self.alarms.records

    def observe(self, payload: dict[str, Any]) -> None:
        """Follow a journaled event payload (start / update / ack / escalate / end of an alarm or fault)."""
        self.follow(self.alarms.observe(payload), payload)

    def follow(self, rec: AlarmRecord | None, payload: dict[str, Any]) -> None:
        """Follow a payload whose record the book has just updated: an ack joins the retained state's list."""
        if rec is None or payload.get("event") != "ack":
            return
        recent = self.recent.setdefault(rec.patient, [])
        recent.append({"alarm_id": rec.alarm_id, "kind": rec.kind, "action": str(payload.get("action")),
                       "by": str(payload.get("by")), "wall_time": round(float(payload.get("wall_time") or 0.0), 3)})
        del recent[:-STATE_ACKS]

    def accept(self, patient: str, raw: bytes) -> tuple[Ack, AlarmRecord] | None:
        """The ack and the alarm it answers, or None (logged) if it must be ignored."""
        book = self.alarms.records.get(patient)
        ack: Ack | None = None
        try:
            if book is None:
                raise AckError("not a patient this daemon monitors")
            ack = parse_ack(raw)
            rec = book.get(ack.alarm_id)
            if rec is None:
                raise AckError(f"alarm_id {ack.alarm_id} is not an alarm or fault of patient {patient}")
            if (ack.action, ack.by, ack.note) in rec.acks:
                raise AckError(f"duplicate: {ack.action} by {ack.by} already journaled for {ack.alarm_id}")
            if ack.action == "ack" and not rec.open and time.time() - (rec.ended_wall or 0.0) > ACK_GRACE_S:
                raise AckError(f"{rec.kind} {ack.alarm_id} already ended {ACK_GRACE_S / 60:g}+ min ago; mark it "
                               "false_alarm or confirmed instead")
            recent, now = self._accepted[patient], time.monotonic()
            while recent and now - recent[0] >= 60.0:
                recent.popleft()
            if len(recent) >= ACKS_PER_MINUTE:
                raise AckError(f"more than {ACKS_PER_MINUTE} acks a minute for patient {patient}: a flood, ignored")
            recent.append(now)
        except AckError as exc:
            self.refused += 1
            self.last_refusal = Refusal(patient, str(exc), *((ack.alarm_id, ack.action, ack.by) if ack else ()))
            log.warning("ack ignored: %s", wire.printable(str(exc)), extra={"patient": patient, "bytes": len(raw)})
            return None
        rec.answer(ack.action, ack.by, ack.note)
        return ack, rec

    def load(self, journal: str, since_s: float = RELOAD_S, also: Any = None) -> int:
        """Learn the alarms, faults and acks of the last ``since_s`` from the daemon's journal (after a
        restart a nurse can still mark last night's alarms); returns the events read. ``also`` (optional)
        sees each alarm/fault payload too (the escalator's levels). Best effort: a journal that cannot be
        read is logged and the book starts empty."""
        if journal == ":memory:":
            return 0
        try:
            with Journal.read(journal) as j:
                rows = j.rows(created_since=time.time() - since_s)
        except JournalError as exc:
            log.warning("could not read earlier alarms from the journal; acks for them will be refused",
                        extra={"path": journal, "error": exc.reason})
            return 0
        for row in rows:
            payload = row.body()
            if payload is not None and payload.get("kind") in ("alarm", "fault"):
                self.observe(payload)
                if also is not None:
                    also(payload)
        return len(rows)

    def acks_of(self, patient: str) -> list[dict[str, Any]]:
        return list(self.recent.get(patient, []))

    def acknowledged(self, patient: str, alarm_id: str) -> bool:
        rec = self.alarms.get(patient, alarm_id)
        return bool(rec and rec.answered)
