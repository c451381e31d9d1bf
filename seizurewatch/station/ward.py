"""What the nurse station knows about every bed, built from what the broker carries.

Fed by the station's MQTT subscription (retained ``state``, ``status`` and ``risk``, ``alarm`` and ``fault``
events, de-duplicated on (patient, seq)); ``snapshot`` gives the page its rows, most urgent first.
A bed whose model predicts also carries its risk per horizon (level, median probability, since when).

A bed is shown
    ALARM    an alarm is active
    OFFLINE  its daemon said ``offline`` (last will included) or nothing came for ``stale_s``
    FAULT    the daemon cannot tell (stream lost, flatline, model error...)
    OK       monitoring, no alarm
in the order of ``URGENCY`` (unanswered alarms first, the longest waiting first).
and keeps its ended alarms that nobody answered yet under "to review", so a nurse can still mark
a short alarm as false or confirmed (the marks are labels for retraining).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from seizurewatch.alarms.wire import dumps

log = logging.getLogger(__name__)

HISTORY_S = 600.0  # probability trace shown: the last 10 minutes
HISTORY_POINTS = 900
STALE_S = 15.0  # no message for this long -> offline (the daemon republishes its state every few seconds)
KEEP_ITEMS = 20  # alarms/faults remembered per bed
REVIEW_S = 12 * 3600.0  # an ended, unanswered alarm stays "to review" this long

TRACE_POINTS = 60  # points per bed in a snapshot (one per 10 s of the 10 minutes): bounded whatever the rate

# An unanswered alarm first; then what nobody is looking at yet (a silent box, an unanswered fault); then
# what someone already attends (an acknowledged alarm or fault); then ended alarms to review; then the calm.
URGENCY = {"alarm_open": 0, "offline": 1, "fault": 2, "alarm_answered": 3, "fault_answered": 4, "review": 5,
           "ok": 6, "starting": 7}


@dataclass
class Item:
    """One alarm or fault of a bed, as the station saw it."""

    kind: str
    alarm_id: str
    started_wall: float
    probability: float | None = None
    peak: float | None = None
    fault_type: str | None = None
    channels: list[str] = field(default_factory=list)
    ended_wall: float | None = None
    level: int = 0
    acks: list[dict[str, Any]] = field(default_factory=list)  # {"action", "by", "wall_time"}
    reconciled: bool = False  # ended by the bed's state, its end event never received

    @property
    def open(self) -> bool:
        return self.ended_wall is None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "alarm_id": self.alarm_id, "started_wall": self.started_wall,
                "probability": self.probability, "peak": self.peak, "fault_type": self.fault_type,
                "channels": self.channels, "ended_wall": self.ended_wall, "open": self.open, "level": self.level,
                "acks": self.acks, "answered": bool(self.acks),
                "reconciled": self.reconciled}


@dataclass
class Bed:
    patient: str
    status: str | None = None  # "online" / "offline" from the status topic
    state: str = "unknown"  # from the retained state topic
    probability: float | None = None
    last_seen: float = 0.0
    history: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    items: OrderedDict[str, Item] = field(default_factory=OrderedDict)
    missed: int = 0  # events the broker never delivered to the station (seq gaps)
    risk: list[dict[str, Any]] = field(default_factory=list)  # the retained risk message's horizons
    model: str | None = None  # the model in force, from the retained state (pretrained or the patient's own)

    def item(self, kind: str, alarm_id: str, now: float) -> Item:
        it = self.items.get(alarm_id)
        if it is None:
            it = self.items[alarm_id] = Item(kind, alarm_id, now)
            while len(self.items) > KEEP_ITEMS:  # forget what is settled first, an unanswered alarm last
                settled = next((k for k, i in self.items.items() if not i.open and (i.kind == "fault" or i.acks)),
                               None)
                if settled is not None:
                    del self.items[settled]
                else:
                    self.items.popitem(last=False)
        return it


class Ward:
    def __init__(self, stale_s: float = STALE_S) -> None:
        self.beds: dict[str, Bed] = {}
        self.stale_s = stale_s
        self.version = 0  # bumped on every change (the server pushes when it moves)

    def bed(self, patient: str) -> Bed:
        b = self.beds.get(patient)
        if b is None:
            b = self.beds[patient] = Bed(patient)
        return b

    # ----- input -----------------------------------------------------------------------
    def on_status(self, patient: str, text: str, now: float) -> None:
        b = self.bed(patient)
        b.status = text if text in ("online", "offline") else b.status
        if text == "online":
            b.last_seen = now
        self.version += 1

    def on_state(self, patient: str, st: dict[str, Any], now: float) -> None:
        b = self.bed(patient)
        b.state = str(st.get("state", "unknown"))
        model = st.get("model")
        if isinstance(model, dict) and isinstance(model.get("name"), str):
            b.model = model["name"]
        p = st.get("probability")
        b.probability = float(p) if isinstance(p, (int, float)) else None
        when = float(st.get("wall_time") or now)
        b.last_seen = max(b.last_seen, min(when, now))
        if b.probability is not None and (not b.history or when > b.history[-1][0]):
            b.history.append((when, b.probability))
        alarm_id = st.get("alarm_id")
        if b.state == "alarm" and isinstance(alarm_id, str):  # joined mid-alarm: the start was before our time
            b.item("alarm", alarm_id, when)
        self._reconcile(b, alarm_id if b.state == "alarm" else None, when)
        for a in st.get("acks") or []:
            it = b.items.get(str(a.get("alarm_id")))
            if it is not None:
                self._add_ack(it, a)
        self.version += 1

    def on_risk(self, patient: str, msg: dict[str, Any], now: float) -> None:
        """The retained risk message (validated by the subscriber): every horizon's level."""
        b = self.bed(patient)
        b.risk = [{k: h[k] for k in ("horizon_s", "level", "probability", "since_t")} for h in msg["horizons"]]
        b.last_seen = max(b.last_seen, min(float(msg.get("wall_time") or now), now))
        self.version += 1

    @staticmethod
    def _reconcile(b: Bed, open_id: Any, when: float) -> None:
        """The bed's own word on what is open wins: an alarm shown open that the state (newer than its
        start) no longer names has ended, though its ``end`` never reached us (lost, or a daemon crash)."""
        for it in b.items.values():
            if it.kind == "alarm" and it.open and it.alarm_id != open_id and it.started_wall <= when:
                it.ended_wall = when
                it.reconciled = True

    def forget(self, patient: str) -> None:
        """The bed's retained state was cleared (it left the ward): off the page."""
        if self.beds.pop(patient, None) is not None:
            self.version += 1

    def on_event(self, ev: dict[str, Any], now: float) -> None:
        patient, alarm_id, kind, phase = ev.get("patient"), ev.get("alarm_id"), ev.get("kind"), ev.get("event")
        if not isinstance(patient, str) or not isinstance(alarm_id, str) or kind not in ("alarm", "fault"):
            return
        b = self.bed(patient)
        b.last_seen = max(b.last_seen, now)
        wall = float(ev.get("wall_time") or now)
        if phase == "start":
            it = b.item(kind, alarm_id, wall)
            it.started_wall = wall
        else:
            it = b.items.get(alarm_id) or b.item(kind, alarm_id, wall)
        if kind == "alarm" and isinstance(ev.get("probability"), (int, float)):
            it.probability = float(ev["probability"])
        if isinstance(ev.get("peak_probability"), (int, float)):
            it.peak = float(ev["peak_probability"])
        if kind == "fault":
            it.fault_type = ev.get("fault_type")
            it.channels = list(ev.get("channels") or [])
        if phase == "end":
            it.ended_wall = wall
        elif phase == "escalate":
            it.level = max(it.level, int(ev.get("level") or 0))
        elif phase == "ack":
            self._add_ack(it, {"action": ev.get("action"), "by": ev.get("by"), "wall_time": wall})
        self.version += 1

    def on_missed(self, patient: str, first: int, last: int) -> None:
        """Events first..last of this bed never reached the station (an alarm may be among them)."""
        self.bed(patient).missed += last - first + 1
        self.version += 1

    @staticmethod
    def _add_ack(it: Item, a: dict[str, Any]) -> None:
        entry = {"action": str(a.get("action")), "by": str(a.get("by")), "wall_time": a.get("wall_time")}
        if not any(x["action"] == entry["action"] and x["by"] == entry["by"] for x in it.acks):
            it.acks.append(entry)

    # ----- output ----------------------------------------------------------------------
    def shown(self, b: Bed, now: float) -> tuple[str, str]:
        """(display state, urgency key) of a bed."""
        open_alarms = [i for i in b.items.values() if i.kind == "alarm" and i.open]
        if open_alarms or b.state == "alarm":
            return "alarm", "alarm_answered" if open_alarms and all(i.acks for i in open_alarms) else "alarm_open"
        if b.status == "offline" or now - b.last_seen > self.stale_s:
            return "offline", "offline"
        open_faults = [i for i in b.items.values() if i.kind == "fault" and i.open]
        if b.state == "fault" or open_faults:
            return "fault", "fault_answered" if open_faults and all(i.acks for i in open_faults) else "fault"
        if self._to_review(b, now):
            return "ok", "review"
        return ("ok", "ok") if b.state == "ok" else ("starting", "starting")

    @staticmethod
    def _to_review(b: Bed, now: float) -> list[Item]:
        return [i for i in b.items.values() if i.kind == "alarm" and not i.open and not i.acks
                and now - (i.ended_wall or now) < REVIEW_S]

    def snapshot(self, now: float, history: bool = True) -> dict[str, Any]:
        """The page's rows, most urgent first; ``history`` adds each bed's probability trace."""
        rows, unreadable = [], []
        for b in self.beds.values():
            try:
                rows.append(self._row(b, now, history))
            except (ValueError, TypeError, OverflowError) as exc:  # never the page: this bed alone, marked
                log.exception("bed dropped from the page: its data cannot be shown", extra={"patient": b.patient})
                unreadable.append({"patient": b.patient, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
        rows.sort(key=lambda r: (r["urgency"], r["_waiting"], r["patient"]))
        for r in rows:
            del r["_waiting"]
        counts = {k: sum(1 for r in rows if r["shown"] == k) for k in ("alarm", "offline", "fault", "ok", "starting")}
        return {"now": now, "beds": rows, "counts": counts, "history": history, "unreadable": unreadable}

    def _row(self, b: Bed, now: float, history: bool) -> dict[str, Any]:
        """One bed's row; checked to be plain JSON (a browser's JSON.parse refuses NaN) before it goes out."""
        shown, urgency = self.shown(b, now)
        items = [i for i in b.items.values() if i.open]
        waiting = min((i.started_wall for i in items if i.kind == "alarm" and not i.acks), default=now)
        row = {
            "patient": b.patient, "shown": shown, "urgency": URGENCY[urgency], "urgency_key": urgency,
            "state": b.state, "status": b.status, "probability": b.probability, "model": b.model,
            "last_seen": b.last_seen or None, "seen_ago_s": round(now - b.last_seen, 1) if b.last_seen else None,
            **({"history": _thin([(round(t - now), round(p, 3)) for t, p in b.history if now - t <= HISTORY_S])}
               if history else {}),
            "alarms": [i.as_dict() for i in items if i.kind == "alarm"],
            "faults": [i.as_dict() for i in items if i.kind == "fault"],
            "review": [i.as_dict() for i in self._to_review(b, now)], "missed": b.missed, "risk": b.risk,
            "_waiting": waiting,
        }
        dumps(row)
        return row


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most TRACE_POINTS of them, evenly spaced, the newest always kept."""
    step = -(-len(points) // TRACE_POINTS)
    return points[::-1][::step][::-1] if step > 1 else points
