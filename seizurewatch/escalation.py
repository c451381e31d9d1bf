"""Escalation: an alarm nobody answers must get louder, not quieter.

An alarm not acknowledged within ``decision.escalate_after_s`` gets an ``"event": "escalate"``
with ``level`` 1, then 2, 3, ... every further interval, until someone acknowledges it (any
action) or it ends. A fault that lasts escalates the same way when it means the daemon cannot
tell at all: the stream is lost, the model fails, or a signal fault covers at least half of
the model's channels ("cannot tell" must not stay silent). A fault on one or two channels of
many does not page anyone.

Time is the wall clock (``time.monotonic``): escalation is about people, not recording time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WHOLE_STREAM_FAULTS = ("stream_lost", "model_error")


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
    return n_channels > 0 and 2 * len(channels) >= n_channels


class Escalator:
    """Follows journaled payloads; ``due(now)`` says which escalations to issue."""

    def __init__(self, after_s: float, n_channels: dict[str, int] | None = None) -> None:
        self.after_s = after_s
        self.n_channels = n_channels or {}
        self.pending: dict[tuple[str, str], _Pending] = {}

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
        self.pending[key] = _Pending(key[0], str(kind), key[1], now)

    def due(self, now: float) -> list[Due]:
        """Escalations whose time has come (each level once), oldest alarm first."""
        out = []
        for p in sorted(self.pending.values(), key=lambda p: p.since):
            while now - p.since >= self.after_s * (p.level + 1):
                p.level += 1
                out.append(Due(p.patient, p.kind, p.alarm_id, p.level))
        return out
