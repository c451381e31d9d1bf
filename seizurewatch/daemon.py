"""The daemon: one asyncio TaskGroup owns every stream pipeline and every MQTT link.

Start-up is all-or-nothing: config, model, device profiles, sources, outbox and broker
are checked before the first sample is processed; any problem is one clear error.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from seizurewatch.alarms.ack import Ack, AckBook, Issued, ack_topic
from seizurewatch.alarms.mqtt import PatientLink, topics
from seizurewatch.alarms.outbox import Outbox
from seizurewatch.config import Config, StreamConfig
from seizurewatch.devices import load_device
from seizurewatch.escalation import Escalator
from seizurewatch.events import Context, Event, to_payload
from seizurewatch.inference import Predictor, configure_compute
from seizurewatch.metrics import Metrics
from seizurewatch.modelfile import load_model
from seizurewatch.pipeline import StreamPipeline
from seizurewatch.sources import Source

log = logging.getLogger(__name__)

PayloadSink = Callable[[dict[str, Any]], None]


def make_source(stream: StreamConfig) -> Source:
    s = stream.source
    if s.kind == "edf":
        from seizurewatch.sources.edf import EdfReplaySource

        assert s.path is not None
        return EdfReplaySource(s.path, speed=s.speed, chunk_s=s.chunk_s, loop=s.loop)
    from seizurewatch.sources.lsl import LslSource

    return LslSource(s)


@dataclass
class DaemonOptions:
    mqtt_url: str | None = None  # overrides cfg.mqtt.url (e.g. the embedded broker's)
    publish: bool = True  # False: no MQTT at all (offline replay to stdout)
    record_probabilities: bool = False


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

    # ----- start-up checks -------------------------------------------------------------
    async def prepare(self) -> None:
        cfg = self.cfg
        configure_compute(cfg.model.threads)
        model = await asyncio.to_thread(load_model, cfg.model.path, cfg.model.sha256)
        predictor = Predictor(model, max_batch=cfg.model.max_batch)
        meta = model.meta
        self.metrics.model_info.info(
            {"name": meta.name, "sha256": meta.sha256, "threshold": str(meta.threshold),
             "policy": meta.threshold_policy, "path": model.path}
        )
        self.outbox = await asyncio.to_thread(Outbox.open_sync, cfg.outbox.path,
                                              cfg.outbox.keep_delivered_days * 86400.0)
        await asyncio.to_thread(self.acks.load, cfg.outbox.path)
        for stream in cfg.streams:
            device = load_device(stream.device) if stream.device else None
            pipe = StreamPipeline(stream, device, make_source(stream), predictor, cfg.decision, self._sink,
                                  record_probabilities=self.opts.record_probabilities,
                                  metrics=self.metrics)
            await pipe.open()
            self.pipelines.append(pipe)
            self.escalator.n_channels[stream.patient] = len(meta.preprocess.channels)
            if self.opts.publish:
                link = PatientLink(cfg.mqtt, self.outbox, stream.patient, url=self.opts.mqtt_url)
                link.on_change.append(self._broker_gauge(stream.patient))
                link.subscriptions.append(ack_topic(cfg.mqtt.topic_prefix, stream.patient))
                link.on_message = functools.partial(self._on_message, pipe)
                self.links[stream.patient] = link
                pipe.on_state.append(self._state_to(link, pipe))
        for link in self.links.values():
            await link.check()
        if cfg.metrics.listen:
            self.metrics.serve(cfg.metrics.listen)

    def _state_to(self, link: PatientLink, pipe: StreamPipeline) -> Callable[[str, dict[str, Any]], None]:
        def update(state: str, info: dict[str, Any]) -> None:
            link.set_state({**info, "acks": self.acks.acks_of(pipe.patient)})

        return update

    def state_info(self, pipe: StreamPipeline) -> dict[str, Any]:
        """The retained state of one patient as of now (see docs/alarm.schema.json, ``state``)."""
        t = max(pipe.stats.last_t, pipe.stats.last_window_t)
        return {"state": pipe.state, "t": round(t, 3), "wall_time": round(time.time(), 3),
                "probability": pipe.stats.last_probability, "faults": sorted(pipe.faults.active),
                "alarm_id": pipe.decision.alarm_id, "acks": self.acks.acks_of(pipe.patient)}

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
            return
        ack, rec = found
        self.metrics.acks_total.labels(patient, ack.action).inc()
        await self._sink([ack_event(pipe, ack, rec)], pipe.context)
        log.warning("alarm %s by %s", ack.action, ack.by,
                    extra={"patient": patient, "alarm_id": ack.alarm_id, "kind": rec.kind})
        link = self.links.get(patient)
        if link is not None:
            link.set_state(self.state_info(pipe))

    def _broker_gauge(self, patient: str) -> Callable[[bool], None]:
        def update(up: bool) -> None:
            self.metrics.broker_connected.labels(patient).set(1 if up else 0)

        return update

    async def _sink(self, events: list[Event], ctx: Context) -> None:
        """Journal a batch of events (one fsync'd transaction), then wake the patient's MQTT link."""
        assert self.outbox is not None
        names = topics(self.cfg.mqtt.topic_prefix, ctx.patient)
        now = time.time()
        items = [(names["alarm" if ev.kind == "alarm" else "fault"], to_payload(ev, ctx, seq=0, wall_time=now))
                 for ev in events]
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
        waits = [p.first_samples.wait() for p in self.pipelines]
        waits += [lk.connected.wait() for lk in self.links.values()]
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

    def stop(self) -> None:
        for pipe in self.pipelines:
            pipe.stop()


def ack_event(pipe: StreamPipeline, ack: Ack, rec: Issued) -> Event:
    """The event that journals and publishes an accepted ack, on the alarm's (or fault's) topic."""
    t = max(pipe.stats.last_t, pipe.stats.last_window_t, rec.started_t)
    if rec.kind == "alarm":
        return Event("alarm", "ack", rec.alarm_id, t, pipe.stats.last_probability or 0.0, pipe.decision.threshold,
                     started_t=rec.started_t, peak_probability=rec.peak_probability, action=ack.action, by=ack.by,
                     note=ack.note or None)
    return Event("fault", "ack", rec.alarm_id, t, fault_type=rec.fault_type, channels=rec.channels,
                 started_t=rec.started_t, detail=f"{ack.action} by {ack.by}", action=ack.action, by=ack.by,
                 note=ack.note or None)


def escalate_event(pipe: StreamPipeline, rec: Issued, level: int) -> Event:
    t = max(pipe.stats.last_t, pipe.stats.last_window_t, rec.started_t)
    if rec.kind == "alarm":
        return Event("alarm", "escalate", rec.alarm_id, t, pipe.stats.last_probability or 0.0,
                     pipe.decision.threshold, started_t=rec.started_t, peak_probability=rec.peak_probability,
                     level=level)
    return Event("fault", "escalate", rec.alarm_id, t, fault_type=rec.fault_type, channels=rec.channels,
                 started_t=rec.started_t, detail=f"not acknowledged; level {level}", level=level)
