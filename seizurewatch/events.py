"""Alarm, fault and risk events, and their JSON payload (docs/alarm.schema.json; risk: docs/risk.schema.json)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["alarm", "fault", "risk"]
# ack/escalate: see alarms/ack.py, escalation.py; change: a risk level changed (risk.py)
EventPhase = Literal["start", "update", "end", "ack", "escalate", "change"]


def new_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class RiskChange:
    """What a ``risk`` event says: one horizon's level changed (``risk.RiskTracker``)."""

    output: str  # the model output, e.g. preictal_600s
    horizon_s: float
    level: str  # low | elevated | high
    previous: str  # low | elevated | high | unknown
    since_t: float  # stream time the new level holds from
    thresholds: dict[str, float]  # {"elevated": x, "high": y} in force


@dataclass(frozen=True)
class Event:
    """What the decision stage (or a fault detector) wants the world to know."""

    kind: EventKind
    event: EventPhase
    alarm_id: str
    t: float  # stream time, seconds
    probability: float | None = None
    threshold: float | None = None
    started_t: float | None = None  # stream time of the matching start
    peak_probability: float | None = None
    fault_type: str | None = None  # stream_lost, stream_gap, flatline, clipping, nonfinite, line_noise, model_error
    channels: tuple[str, ...] = ()
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    action: str | None = None  # ack events: "ack" | "false_alarm" | "confirmed"
    by: str | None = None  # ack events: who (the station's or the person's name)
    note: str | None = None  # ack events: free text, if given
    level: int | None = None  # escalate events: 1, 2, ... one per unanswered interval
    risk: RiskChange | None = None  # risk events


@dataclass(frozen=True)
class Context:
    """Per-stream facts stamped on every payload."""

    patient: str
    model_name: str
    model_sha256: str
    threshold_policy: str


def to_payload(ev: Event, ctx: Context, seq: int, wall_time: float) -> dict[str, Any]:
    if ev.risk is not None:
        return _risk_payload(ev, ev.risk, ctx, seq, wall_time)
    p: dict[str, Any] = {
        "schema": "seizurewatch/event/1",
        "kind": ev.kind,
        "event": ev.event,
        "alarm_id": ev.alarm_id,
        "patient": ctx.patient,
        "seq": seq,
        "t": round(ev.t, 4),
        "wall_time": round(wall_time, 4),
        "probability": None if ev.probability is None else round(float(ev.probability), 5),
        "threshold": None if ev.threshold is None else round(float(ev.threshold), 5),
        "threshold_policy": ctx.threshold_policy,
        "model": {"name": ctx.model_name, "sha256": ctx.model_sha256},
    }
    if ev.started_t is not None:
        p["started_t"] = round(ev.started_t, 4)
        p["duration_s"] = round(ev.t - ev.started_t, 4)
    if ev.peak_probability is not None:
        p["peak_probability"] = round(float(ev.peak_probability), 5)
    if ev.kind == "fault":
        p["fault_type"] = ev.fault_type
        p["channels"] = list(ev.channels)
        p["detail"] = ev.detail
    elif ev.detail:  # an alarm's start during a refractory period, an end because the stream ended
        p["detail"] = ev.detail
    if ev.action is not None:
        p["action"] = ev.action
        p["by"] = ev.by
        if ev.note:
            p["note"] = ev.note
    if ev.level is not None:
        p["level"] = ev.level
    if ev.extra:
        p["extra"] = ev.extra
    return p


def _risk_payload(ev: Event, r: RiskChange, ctx: Context, seq: int, wall_time: float) -> dict[str, Any]:
    """A risk level change (docs/risk.schema.json, ``change``): the smoothed probability that moved it."""
    return {
        "schema": "seizurewatch/risk-event/1", "kind": "risk", "event": "change", "event_id": ev.alarm_id,
        "patient": ctx.patient, "seq": seq, "t": round(ev.t, 4), "wall_time": round(wall_time, 4),
        "output": r.output, "horizon_s": r.horizon_s, "level": r.level, "previous": r.previous,
        "since_t": round(r.since_t, 4), "probability": None if ev.probability is None else round(ev.probability, 5),
        "thresholds": {k: round(v, 5) for k, v in r.thresholds.items()},
        "model": {"name": ctx.model_name, "sha256": ctx.model_sha256},
    }
