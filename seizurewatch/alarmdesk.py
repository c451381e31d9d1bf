"""What the daemon does with the alarms and faults it issued, after the decision: the one ``AlarmBook``
(an ``alarms.record.AlarmRecord`` per alarm id) and its two views, the acks the stations send
(``alarms.ack.AckBook``) and the escalation of what nobody answers (``escalation.Escalator``).

Every event the daemon journals is followed here once (``follow``: the record first, then its views); an
accepted ack and a due escalation become events of their own (``ack_event``, ``escalate_event``), journaled
and published through the daemon's ``sink`` like the decision's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from seizurewatch.alarms.ack import RELOAD_S, Ack, AckBook, refusal_topic
from seizurewatch.alarms.mqtt import PatientLink
from seizurewatch.alarms.record import AlarmBook, AlarmRecord
from seizurewatch.escalation import Escalator
from seizurewatch.events import Context, Event
from seizurewatch.pipeline import StreamPipeline

log = logging.getLogger("seizurewatch.daemon")

Sink = Callable[[list[Event], Context], Awaitable[None]]


class AlarmDesk:
    """The records of ``patients``' alarms and faults, their acks and their escalation."""

    def __init__(self, patients: list[str], escalate_after_s: float, prefix: str, metrics: Any, sink: Sink) -> None:
        self.alarms = AlarmBook(patients)
        self.acks = AckBook(patients, self.alarms)
        self.escalator = Escalator(escalate_after_s, alarms=self.alarms)
        self.prefix = prefix
        self.metrics = metrics
        self.sink = sink

    def load(self, journal: str) -> None:
        """After a restart: the last day's alarms, faults and acks from the journal (a nurse can still mark
        last night's alarms), and the escalation levels the daemon's stop interrupted."""
        journaled: list[dict[str, Any]] = []
        self.acks.load(journal, RELOAD_S, journaled.append)
        carried = self.escalator.carry(journaled, time.monotonic())
        if carried:
            log.warning("unanswered alarms were escalated when the daemon stopped; a new alarm continues "
                        "at their level", extra={"levels": carried})

    def ending(self, payload: dict[str, Any]) -> None:
        """An event about to be journaled: an ended alarm stops escalating before the journal write yields."""
        if payload["event"] == "end":
            self.escalator.observe(payload, 0.0)

    def follow(self, payload: dict[str, Any], now: float) -> None:
        """A journaled payload: the alarm's record first, then its two views."""
        rec = self.alarms.observe(payload)
        self.acks.follow(rec, payload)
        self.escalator.follow(rec, payload, now)

    async def on_ack(self, pipe: StreamPipeline, raw: bytes, link: PatientLink | None) -> None:
        """An ack from ``pipe``'s patient's topic: journal and publish it as an ack event (and the state that lists
        it), or refuse it, saying why on the refusal topic so that whoever sent it does not wait for ever."""
        patient = pipe.patient
        found = self.acks.accept(patient, raw)
        if found is None:
            self.metrics.acks_ignored_total.labels(patient).inc()
            refusal = self.acks.last_refusal
            if link is not None and refusal is not None:
                link.notify(refusal_topic(self.prefix, patient), refusal.payload(time.time()))
            return
        ack, rec = found
        self.metrics.acks_total.labels(patient, ack.action).inc()
        await self.sink([ack_event(pipe, ack, rec)], pipe.context)
        log.warning("alarm %s by %s", ack.action, ack.by,
                    extra={"patient": patient, "alarm_id": ack.alarm_id, "kind": rec.kind})
        if link is not None:
            link.set_state(pipe.status.current_state())

    async def escalate(self, pipelines: list[StreamPipeline]) -> None:
        """Issue the escalations that are due (a quarter of the interval late at most, and never above 1 s)."""
        by_patient = {p.patient: p for p in pipelines}
        esc = self.escalator
        while True:  # after_s may change on reload (SIGHUP): the step follows it
            await asyncio.sleep(min(esc.after_s / 4, 1.0) if esc.enabled else 1.0)
            for due in esc.due(time.monotonic()):
                pipe, rec = by_patient[due.patient], due.record
                if rec.answered or not rec.open:
                    continue  # answered (or ended) while this round was being computed
                log.error("%s %s not acknowledged; escalating to level %d", due.kind, due.alarm_id, due.level,
                          extra={"patient": due.patient, "alarm_id": due.alarm_id, "level": due.level})
                self.metrics.escalations_total.labels(due.patient, due.kind).inc()
                await self.sink([escalate_event(pipe, rec, due.level)], pipe.context)


def _now(pipe: StreamPipeline, rec: AlarmRecord) -> float:
    """An ack's or escalation's stream time: the stream's latest, never before the alarm's start."""
    return max(pipe.status.clock.stamp(max(pipe.stats.last_t, pipe.stats.last_window_t)), rec.started_t)


def ack_event(pipe: StreamPipeline, ack: Ack, rec: AlarmRecord) -> Event:
    """The event that journals and publishes an accepted ack, on the alarm's (or fault's) topic."""
    t = _now(pipe, rec)
    if rec.kind == "alarm":
        return Event("alarm", "ack", rec.alarm_id, t, pipe.stats.last_probability or 0.0, pipe.decision.threshold,
                     started_t=rec.started_t, peak_probability=rec.peak_probability, action=ack.action, by=ack.by,
                     note=ack.note or None)
    return Event("fault", "ack", rec.alarm_id, t, fault_type=rec.fault_type, channels=rec.channels,
                 started_t=rec.started_t, detail=f"{ack.action} by {ack.by}", action=ack.action, by=ack.by,
                 note=ack.note or None)


def escalate_event(pipe: StreamPipeline, rec: AlarmRecord, level: int) -> Event:
    """The event that journals and publishes an escalation ``level`` of an unanswered alarm (or fault)."""
    t = _now(pipe, rec)
    if rec.kind == "alarm":
        return Event("alarm", "escalate", rec.alarm_id, t, pipe.stats.last_probability or 0.0,
                     pipe.decision.threshold, started_t=rec.started_t, peak_probability=rec.peak_probability,
                     level=level)
    return Event("fault", "escalate", rec.alarm_id, t, fault_type=rec.fault_type, channels=rec.channels,
                 started_t=rec.started_t, detail=f"not acknowledged; level {level}", level=level)
