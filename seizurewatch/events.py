"""Alarm and fault events, and their JSON payload (see docs/alarm.schema.json)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["alarm", "fault"]
EventPhase = Literal["start", "update", "end", "ack", "escalate"]  # ack/escalate: see alarms/ack.py, escalation.py


def new_id() -> str:
    return uuid.uuid4().hex[:16]


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


@dataclass(frozen=True)
class Context:
    """Per-stream facts stamped on every payload."""

    patient: str
    model_name: str
    model_sha256: str  # the weights' hash (metadata weights_sha256), published as model.weights_sha256
    threshold_policy: str


def to_payload(ev: Event, ctx: Context, seq: int, wall_time: float) -> dict[str, Any]:
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
        "model": {"name": ctx.model_name, "weights_sha256": ctx.model_sha256},
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
