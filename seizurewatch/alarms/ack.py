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
from dataclasses import dataclass, field
from typing import Any, Literal

from seizurewatch.alarms import wire

log = logging.getLogger(__name__)

Action = Literal["ack", "false_alarm", "confirmed"]
ACTIONS: tuple[str, ...] = ("ack", "false_alarm", "confirmed")
MAX_ACK_BYTES = 4096  # a real ack is ~150 bytes; anything far larger is refused before parsing
MAX_BY = 64
MAX_NOTE = 500
KNOWN_PER_PATIENT = 1000  # alarms/faults remembered per patient (a night has a handful)
STATE_ACKS = 8  # acks listed in the retained state, newest last
ACKS_PER_MINUTE = 30  # accepted per patient; a flood beyond is refused (each one is an fsync'd journal row)
RELOAD_S = 24 * 3600.0  # alarms of the last day are learnt from the journal at start (marks after a restart)
_ID = re.compile(r"^[0-9a-f]{16}$")
_KEYS = {"alarm_id", "action", "by", "note"}


class AckError(ValueError):
    """Why an ack payload was refused (one line, for the log)."""


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


@dataclass
class Issued:
    """An alarm or fault the daemon published, as the ack book remembers it."""

    kind: str  # "alarm" | "fault"
    alarm_id: str
    started_t: float
    open: bool = True
    peak_probability: float | None = None
    threshold: float | None = None
    fault_type: str | None = None
    channels: tuple[str, ...] = ()
    acks: list[tuple[str, str, str]] = field(default_factory=list)  # (action, by, note) accepted, in order


class AckBook:
    """Which alarm ids each configured patient has, and who acknowledged what."""

    def __init__(self, patients: list[str] | tuple[str, ...]) -> None:
        self.issued: dict[str, OrderedDict[str, Issued]] = {p: OrderedDict() for p in patients}
        self.recent: dict[str, list[dict[str, Any]]] = {p: [] for p in patients}
        self.refused = 0
        self._accepted: dict[str, deque[float]] = {p: deque() for p in patients}  # monotonic times, last minute

    def observe(self, payload: dict[str, Any]) -> None:
        """Follow a journaled event payload (start / update / end of an alarm or fault)."""
        patient, alarm_id, phase = payload.get("patient"), payload.get("alarm_id"), payload.get("event")
        book = self.issued.get(str(patient))
        if book is None or not isinstance(alarm_id, str):
            return
        rec = book.get(alarm_id)
        if rec is None and phase in ("start", "update"):
            rec = Issued(str(payload.get("kind")), alarm_id, float(payload.get("started_t", payload.get("t", 0.0))),
                         fault_type=payload.get("fault_type"), threshold=payload.get("threshold"))
            book[alarm_id] = rec
            while len(book) > KNOWN_PER_PATIENT:
                book.popitem(last=False)
        if rec is None:
            return
        if phase == "ack":
            key = (str(payload.get("action")), str(payload.get("by")), str(payload.get("note") or ""))
            if key not in rec.acks:  # journaled before a restart (live acks are added by accept())
                rec.acks.append(key)
            recent = self.recent.setdefault(str(patient), [])
            recent.append({"alarm_id": alarm_id, "kind": rec.kind, "action": key[0], "by": key[1],
                           "wall_time": round(float(payload.get("wall_time") or 0.0), 3)})
            del recent[:-STATE_ACKS]
            return
        if payload.get("peak_probability") is not None:
            rec.peak_probability = float(payload["peak_probability"])
        if payload.get("channels"):
            rec.channels = tuple(payload["channels"])
        if phase == "end":
            rec.open = False

    def accept(self, patient: str, raw: bytes) -> tuple[Ack, Issued] | None:
        """The ack and the alarm it answers, or None (logged) if it must be ignored."""
        book = self.issued.get(patient)
        try:
            if book is None:
                raise AckError("not a patient this daemon monitors")
            ack = parse_ack(raw)
            rec = book.get(ack.alarm_id)
            if rec is None:
                raise AckError(f"alarm_id {ack.alarm_id} is not an alarm or fault of patient {patient}")
            if (ack.action, ack.by, ack.note) in rec.acks:
                raise AckError(f"duplicate: {ack.action} by {ack.by} already journaled for {ack.alarm_id}")
            recent, now = self._accepted[patient], time.monotonic()
            while recent and now - recent[0] >= 60.0:
                recent.popleft()
            if len(recent) >= ACKS_PER_MINUTE:
                raise AckError(f"more than {ACKS_PER_MINUTE} acks a minute for patient {patient}: a flood, ignored")
            recent.append(now)
        except AckError as exc:
            self.refused += 1
            log.warning("ack ignored: %s", wire.printable(str(exc)), extra={"patient": patient, "bytes": len(raw)})
            return None
        rec.acks.append((ack.action, ack.by, ack.note))
        return ack, rec

    def load(self, journal: str, since_s: float = RELOAD_S, also: Any = None) -> int:
        """Learn the alarms, faults and acks of the last ``since_s`` from the daemon's journal (after a
        restart a nurse can still mark last night's alarms); returns the events read. ``also`` (optional)
        sees each alarm/fault payload too (the escalator's levels). Best effort: a journal that cannot be
        read is logged and the book starts empty."""
        if journal == ":memory:":
            return 0
        import sqlite3

        try:
            db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
            try:
                rows = db.execute("SELECT payload FROM events WHERE created >= ? ORDER BY id",
                                  (time.time() - since_s,)).fetchall()
            finally:
                db.close()
        except sqlite3.Error as exc:
            log.warning("could not read earlier alarms from the journal; acks for them will be refused",
                        extra={"path": journal, "error": str(exc)})
            return 0
        for (body,) in rows:
            try:
                payload = json.loads(body)
            except json.JSONDecodeError:
                continue
            if isinstance(payload, dict) and payload.get("kind") in ("alarm", "fault"):
                self.observe(payload)
                if also is not None:
                    also(payload)
        return len(rows)

    def acks_of(self, patient: str) -> list[dict[str, Any]]:
        return list(self.recent.get(patient, []))

    def acknowledged(self, patient: str, alarm_id: str) -> bool:
        book = self.issued.get(patient)
        rec = book.get(alarm_id) if book is not None else None
        return bool(rec and rec.acks)


async def publish_ack(cfg: Any, patient: str, ack: Ack, url: str | None = None, retries: int = 2) -> None:
    """Publish one ack (QoS 1, waits for the PUBACK) with the station's own broker settings, through the
    shared connection policy; BrokerError (one line naming the broker) if it cannot."""
    import asyncio
    import os

    from seizurewatch.alarms.connection import CONNECTION_ERRORS, ConnectionPolicy, PublishRefused
    from seizurewatch.errors import BrokerError

    policy = ConnectionPolicy(cfg, url, retries=retries, final_on_refused_login=True)
    ident = f"seizurewatch-ack-{os.getpid()}-{os.urandom(3).hex()}"
    while True:
        try:
            async with policy.client(identifier=ident) as client:
                policy.connected()
                await client.publish(ack_topic(cfg.topic_prefix, patient), ack.to_json(), qos=1,
                                     timeout=cfg.publish_timeout_s)
                return
        except PublishRefused as exc:  # the account may not ack (a daemon's): NOT sent, and said so
            who = f"account {cfg.username!r}" if cfg.username else "the anonymous login"
            raise BrokerError(f"MQTT broker {policy.broker} refused the ack ({exc.reason}, 0x{exc.code:02x}); it was "
                              f"NOT sent: {who} may not write {exc.topic} (a station account may)") from None
        except CONNECTION_ERRORS as exc:
            await asyncio.sleep(policy.failed(exc))
