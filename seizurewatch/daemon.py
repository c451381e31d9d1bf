"""The daemon: one asyncio TaskGroup owns every stream pipeline and every MQTT link.

Start-up (``startup.prepare``) checks config, model (pin, metadata, a dry forward pass), device profiles, sources,
outbox and broker before the first sample is processed. What a retry cannot fix (a bad config,
an unpinned or broken model, a device profile or recording that does not fit the model, a
stream that is there but has the wrong channels) is one clear error and exit 2. With
``keep_trying`` (``run``), what may come by itself keeps the daemon up, faulted and saying so:
an amplifier not streaming yet (``stream_lost`` fault, resolved again every few seconds), a
broker down (alarms journaled, delivered when it is back), a metrics port in use (bound again
every few seconds). A journal folder that does not exist and cannot be created (a disk not
mounted yet) is exit 4: systemd restarts the unit until the disk is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from seizurewatch import startup
from seizurewatch.alarms.ack import Ack, AckBook, Issued, refusal_topic
from seizurewatch.alarms.mqtt import PatientLink, topics
from seizurewatch.alarms.outbox import Outbox
from seizurewatch.config import Config
from seizurewatch.escalation import Escalator
from seizurewatch.events import Context, Event, to_payload
from seizurewatch.metrics import Metrics, PortInUse
from seizurewatch.pipeline import StreamPipeline
from seizurewatch.snippet import eeg_topic
from seizurewatch.startup import RETRY_S

log = logging.getLogger(__name__)

PayloadSink = Callable[[dict[str, Any]], None]
EVENT_TOPIC = {"alarm": "alarm", "fault": "fault", "risk": "risk_change"}  # event kind -> its topic (mqtt.topics)


EEG_KEEP = 20  # alarms per patient whose EEG stays retained on the broker (as many as a station card lists)


@dataclass
class DaemonOptions:
    mqtt_url: str | None = None  # overrides cfg.mqtt.url (e.g. the embedded broker's)
    publish: bool = True  # False: no MQTT at all (offline replay to stdout)
    record_probabilities: bool = False
    keep_trying: bool = False  # a service: no stream / broker / metrics port at start is waited for, not fatal
    require_pin: bool = False  # a service: an unpinned model runs only with model.trusted (or if it is the shipped one)
    check_only: bool = False  # run --check: the journal looked at, not taken; the broker tried under another id


class Daemon:
    def __init__(self, cfg: Config, options: DaemonOptions | None = None) -> None:
        self.cfg = cfg
        self.opts = options or DaemonOptions()
        self.pipelines: list[StreamPipeline] = []
        self.links: dict[str, PatientLink] = {}
        self.outbox: Outbox | None = None
        self.metrics = Metrics()
        self.payload_sinks: list[PayloadSink] = []
        self.ready = asyncio.Event()
        self.on_ready: list[Callable[[], None]] = []
        self.started_at = time.monotonic()
        self._stopping = False
        self.events_emitted = 0
        self.acks = AckBook([s.patient for s in cfg.streams])
        self.escalator = Escalator(cfg.decision.escalate_after_s)
        self.notes: list[str] = []  # what start-up found missing and is waiting for (run --check prints them)
        self.broker_down_at_start: set[str] = set()
        self._metrics_pending = False
        self.model_sha256 = ""
        self.model_path = ""
        self._opened: list[StreamPipeline] = []  # sources opened by prepare (closed again if it refuses)
        self._eeg_kept: dict[str, list[str]] = {}  # alarm ids whose EEG is retained on the broker, oldest first
        self._fault_tasks: set[asyncio.Future[None]] = set()

    # ----- start-up checks -------------------------------------------------------------
    async def prepare(self) -> None:
        """The start-up checks, in order; on a refusal, what was already opened is closed again."""
        try:
            await startup.prepare(self)
        except BaseException:
            await self.close_unstarted()
            raise

    async def close_unstarted(self) -> None:
        """Undo prepare() without running (``run --check``): sources, journal, metrics endpoint."""
        for pipe in self._opened:
            with contextlib.suppress(Exception):
                await pipe.source.close()
        self._opened.clear()
        if self.outbox is not None:
            outbox, self.outbox = self.outbox, None
            await outbox.close()
        self.metrics.shutdown()

    async def _serve_metrics_when_free(self) -> None:
        assert self.cfg.metrics.listen
        while self._metrics_pending:
            await asyncio.sleep(RETRY_S)
            try:
                self.metrics.serve(self.cfg.metrics.listen)
            except PortInUse:
                continue
            self._metrics_pending = False
            log.warning("metrics port free again; serving", extra={"listen": self.cfg.metrics.listen})

    def _state_to(self, link: PatientLink, pipe: StreamPipeline) -> Callable[[str, dict[str, Any]], None]:
        def update(state: str, info: dict[str, Any]) -> None:
            link.set_state({**info, **self._state_tail(pipe)})

        return update

    def _state_tail(self, pipe: StreamPipeline) -> dict[str, Any]:
        """What every retained state adds to the patient's own: the acks, and the model in force (the
        station shows it per bed: a day-one pretrained model or the patient's own)."""
        ctx = pipe.context
        return {"acks": self.acks.acks_of(pipe.patient), "model": {"name": ctx.model_name,
                                                                           "weights_sha256": ctx.model_sha256}}

    def state_info(self, pipe: StreamPipeline) -> dict[str, Any]:
        """The retained state of one patient as of now (see docs/alarm.schema.json, ``state``)."""
        t = max(pipe.stats.last_t, pipe.stats.last_window_t)
        return {**pipe.status.state_payload(t), **self._state_tail(pipe)}

    async def _on_message(self, pipe: StreamPipeline, msg: aiomqtt.Message) -> None:
        raw = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
        await self.on_ack(pipe, str(msg.topic), raw)

    async def on_ack(self, pipe: StreamPipeline, topic: str, raw: bytes) -> None:
        """A message on ``<prefix>/<patient>/ack``: journal and publish it as an ack event, or log and drop it."""
        patient = pipe.patient
        if topic != f"{self.cfg.mqtt.topic_prefix}/{patient}/ack":
            log.warning("ack ignored: topic %s is not this patient's", topic, extra={"patient": patient})
            return
        found = self.acks.accept(patient, raw)
        if found is None:
            self.metrics.acks_ignored_total.labels(patient).inc()
            link, refusal = self.links.get(patient), self.acks.last_refusal
            if link is not None and refusal is not None:  # whoever sent it must not wait forever
                link.notify(refusal_topic(self.cfg.mqtt.topic_prefix, patient), refusal.payload(time.time()))
            return
        ack, rec = found
        self.metrics.acks_total.labels(patient, ack.action).inc()
        await self._sink([ack_event(pipe, ack, rec)], pipe.context)
        log.warning("alarm %s by %s", ack.action, ack.by,
                    extra={"patient": patient, "alarm_id": ack.alarm_id, "kind": rec.kind})
        link = self.links.get(patient)
        if link is not None:
            link.set_state(self.state_info(pipe))

    async def _on_snippet(self, patient: str, payload: dict[str, Any]) -> None:
        """The EEG behind an alarm start: journaled beside it, and retained on <prefix>/<patient>/eeg/<alarm_id>
        for the stations; the retained EEG of alarms older than the last EEG_KEEP is cleared from the broker."""
        assert self.outbox is not None
        alarm_id = str(payload["alarm_id"])
        await self.outbox.save_eeg(patient, alarm_id, payload)
        link = self.links.get(patient)
        if link is None:
            return
        prefix = self.cfg.mqtt.topic_prefix
        link.notify(eeg_topic(prefix, patient, alarm_id), payload, retain=True)
        kept = self._eeg_kept.setdefault(patient, [])
        kept.append(alarm_id)
        while len(kept) > EEG_KEEP:
            link.notify(eeg_topic(prefix, patient, kept.pop(0)), b"", retain=True)

    def _refusal_to(self, pipe: StreamPipeline) -> Callable[[Any], None]:
        """The broker refusing this bed's publishes is a ``publish_refused`` fault (journaled, in the state and
        systemd's STATUS), counted; it ends when a publish is accepted again."""
        def update(exc: Any) -> None:
            if exc is not None:
                self.metrics.publish_refused_total.labels(pipe.patient).inc()
            if (exc is not None) != ("publish_refused" in pipe.faults.active):
                detail = str(exc) if exc is not None else "the broker accepts this bed's publishes again"
                task = asyncio.ensure_future(pipe.set_fault("publish_refused", exc is not None, detail[:200]))
                self._fault_tasks.add(task)
                task.add_done_callback(self._fault_tasks.discard)

        return update

    def _broker_gauge(self, patient: str) -> Callable[[bool], None]:
        def update(up: bool) -> None:
            self.metrics.broker_connected.labels(patient).set(1 if up else 0)

        return update

    async def _sink(self, events: list[Event], ctx: Context) -> None:
        """Journal a batch of events (one fsync'd transaction), then wake the patient's MQTT link."""
        assert self.outbox is not None
        names = topics(self.cfg.mqtt.topic_prefix, ctx.patient)
        now = time.time()
        items = [(names[EVENT_TOPIC[ev.kind]], to_payload(ev, ctx, seq=0, wall_time=now)) for ev in events]
        for _, payload in items:  # an ended alarm stops escalating before the journal write yields the loop
            if payload["event"] == "end":
                self.escalator.observe(payload, 0.0)
        seqs = await self.outbox.append_all(ctx.patient, items)
        self.events_emitted += len(events)
        link = self.links.get(ctx.patient)
        if link:
            link.wake()
        mono = time.monotonic()
        for (_, payload), seq in zip(items, seqs):
            payload["seq"] = seq
            payload["epoch"] = self.outbox.epoch
            self.acks.observe(payload)
            self.escalator.observe(payload, mono)
            for sink in self.payload_sinks:
                sink(payload)

    # ----- running ---------------------------------------------------------------------
    async def run(self) -> None:
        """Run until every source ends (replay) or stop() is called (signal)."""
        if not self.pipelines:
            await self.prepare()
        async with asyncio.TaskGroup() as tg:
            link_tasks = [tg.create_task(link.run(), name=f"mqtt-{p}") for p, link in self.links.items()]
            helpers = [tg.create_task(self._announce_ready(), name="ready"),
                       tg.create_task(self._watch_outbox(), name="outbox-depth"),
                       tg.create_task(self._escalate(), name="escalation"),
                       tg.create_task(self._heartbeat(), name="state-heartbeat")]
            if self._metrics_pending:
                helpers.append(tg.create_task(self._serve_metrics_when_free(), name="metrics-retry"))
            try:
                async with asyncio.TaskGroup() as pipes:
                    for pipe in self.pipelines:
                        pipes.create_task(pipe.run(), name=f"pipeline-{pipe.patient}")
            finally:
                self._stopping = True
                for task in helpers:
                    task.cancel()
                for link in self.links.values():
                    link.close()
            for t in link_tasks:
                await t
        assert self.outbox is not None
        await self.outbox.close()

    async def _announce_ready(self) -> None:
        """Ready when every stream is monitored or knowingly waited for (its fault published), and every
        broker link is connected or was found down at start (then it is journaling and retrying)."""
        waits = [p.started.wait() for p in self.pipelines]
        waits += [lk.connected.wait() for p, lk in self.links.items() if p not in self.broker_down_at_start]
        await asyncio.gather(*waits)
        self.ready.set()
        log.info("ready", extra={"streams": len(self.pipelines),
                                 "startup_s": round(time.monotonic() - self.started_at, 3)})
        for cb in self.on_ready:
            cb()

    async def _watch_outbox(self) -> None:
        assert self.outbox is not None
        while True:
            for patient in self.links:
                self.metrics.outbox_depth.labels(patient).set(await self.outbox.depth(patient))
            await asyncio.sleep(1.0)

    async def _escalate(self) -> None:
        """Issue the escalations that are due (a quarter of the interval late at most, and never above 1 s)."""
        by_patient = {p.patient: p for p in self.pipelines}
        while True:  # after_s may change on reload (SIGHUP): the step follows it
            await asyncio.sleep(min(self.escalator.after_s / 4, 1.0) if self.escalator.enabled else 1.0)
            for due in self.escalator.due(time.monotonic()):
                pipe = by_patient[due.patient]
                rec = self.acks.issued[due.patient].get(due.alarm_id)
                if rec is None or rec.acks or not rec.open:
                    continue  # answered (or ended) while this round was being computed
                log.error("%s %s not acknowledged; escalating to level %d", due.kind, due.alarm_id, due.level,
                          extra={"patient": due.patient, "alarm_id": due.alarm_id, "level": due.level})
                self.metrics.escalations_total.labels(due.patient, due.kind).inc()
                await self._sink([escalate_event(pipe, rec, due.level)], pipe.context)

    async def _heartbeat(self) -> None:
        """Republish each patient's retained state every ``mqtt.state_every_s``: the station's probability
        trace and 'last seen' come from it."""
        every = self.cfg.mqtt.state_every_s
        if every <= 0 or not self.links:
            return
        while True:
            await asyncio.sleep(every)
            for pipe in self.pipelines:
                link = self.links.get(pipe.patient)
                if link is not None:
                    link.refresh_state(self.state_info(pipe))
                    if pipe.status.risk and pipe.status.risk.last_t:
                        link.set_risk(pipe.status.risk.message(pipe.context))

    def stop(self) -> None:
        for pipe in self.pipelines:
            pipe.stop()


def ack_event(pipe: StreamPipeline, ack: Ack, rec: Issued) -> Event:
    """The event that journals and publishes an accepted ack, on the alarm's (or fault's) topic."""
    t = max(pipe.status.clock.stamp(max(pipe.stats.last_t, pipe.stats.last_window_t)), rec.started_t)
    if rec.kind == "alarm":
        return Event("alarm", "ack", rec.alarm_id, t, pipe.stats.last_probability or 0.0, pipe.decision.threshold,
                     started_t=rec.started_t, peak_probability=rec.peak_probability, action=ack.action, by=ack.by,
                     note=ack.note or None)
    return Event("fault", "ack", rec.alarm_id, t, fault_type=rec.fault_type, channels=rec.channels,
                 started_t=rec.started_t, detail=f"{ack.action} by {ack.by}", action=ack.action, by=ack.by,
                 note=ack.note or None)


def escalate_event(pipe: StreamPipeline, rec: Issued, level: int) -> Event:
    t = max(pipe.status.clock.stamp(max(pipe.stats.last_t, pipe.stats.last_window_t)), rec.started_t)
    if rec.kind == "alarm":
        return Event("alarm", "escalate", rec.alarm_id, t, pipe.stats.last_probability or 0.0,
                     pipe.decision.threshold, started_t=rec.started_t, peak_probability=rec.peak_probability,
                     level=level)
    return Event("fault", "escalate", rec.alarm_id, t, fault_type=rec.fault_type, channels=rec.channels,
                 started_t=rec.started_t, detail=f"not acknowledged; level {level}", level=level)
