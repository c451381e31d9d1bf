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
from seizurewatch.alarmdesk import AlarmDesk
from seizurewatch.alarms.mqtt import PatientLink, topics
from seizurewatch.alarms.outbox import Outbox
from seizurewatch.config import Config
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
        # one record per alarm, which the decision's events, the acks and the escalation update (alarmdesk.py)
        self.desk = AlarmDesk([s.patient for s in cfg.streams], cfg.decision.escalate_after_s,
                              cfg.mqtt.topic_prefix, self.metrics, self._sink)
        self.acks, self.escalator = self.desk.acks, self.desk.escalator
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

    @staticmethod
    def state_info(pipe: StreamPipeline) -> dict[str, Any]:
        """The retained state of one patient as of now (``PatientState.state_payload``, its one builder)."""
        return pipe.status.current_state()

    async def _on_message(self, pipe: StreamPipeline, msg: aiomqtt.Message) -> None:
        raw = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
        await self.on_ack(pipe, str(msg.topic), raw)

    async def on_ack(self, pipe: StreamPipeline, topic: str, raw: bytes) -> None:
        """A message on ``<prefix>/<patient>/ack``: journal and publish it as an ack event, or log and drop it."""
        patient = pipe.patient
        if topic != f"{self.cfg.mqtt.topic_prefix}/{patient}/ack":
            log.warning("ack ignored: topic %s is not this patient's", topic, extra={"patient": patient})
            return
        await self.desk.on_ack(pipe, raw, self.links.get(patient))

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
        for _, payload in items:
            self.desk.ending(payload)
        seqs = await self.outbox.append_all(ctx.patient, items)
        self.events_emitted += len(events)
        link = self.links.get(ctx.patient)
        if link:
            link.wake()
        mono = time.monotonic()
        for (_, payload), seq in zip(items, seqs):
            payload["seq"] = seq
            payload["epoch"] = self.outbox.epoch
            self.desk.follow(payload, mono)
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
                       tg.create_task(self.desk.escalate(self.pipelines), name="escalation"),
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

