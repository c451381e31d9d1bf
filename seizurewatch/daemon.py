"""The daemon: one asyncio TaskGroup owns every stream pipeline and every MQTT link.

Start-up checks config, model (pin, metadata, a dry forward pass), device profiles, sources,
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
import errno
import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from seizurewatch.alarmdesk import AlarmDesk
from seizurewatch.alarms.ack import ack_topic
from seizurewatch.alarms.mqtt import PatientLink, topics
from seizurewatch.alarms.outbox import Outbox
from seizurewatch.config import Config, StreamConfig
from seizurewatch.devices import DeviceProfile, load_device
from seizurewatch.errors import BrokerError, ConfigError, DataError, SourceUnavailable, StorageError
from seizurewatch.events import Context, Event, to_payload
from seizurewatch.inference import Predictor, configure_compute
from seizurewatch.metrics import Metrics, PortInUse, parse_listen
from seizurewatch.modelfile import LoadedModel, ModelMeta, check_forward, file_sha256, load_model
from seizurewatch.pipeline import StreamPipeline
from seizurewatch.preprocess import check_device_fits_model
from seizurewatch.resources import default_model_path
from seizurewatch.snippet import eeg_topic
from seizurewatch.sources import Source

log = logging.getLogger(__name__)

PayloadSink = Callable[[dict[str, Any]], None]
EVENT_TOPIC = {"alarm": "alarm", "fault": "fault", "risk": "risk_change"}  # event kind -> its topic (mqtt.topics)


def make_source(stream: StreamConfig, device: DeviceProfile | None = None) -> Source:
    """The stream's source; a channel declaring no unit holds ``source.units``, else the device profile's."""
    s = stream.source
    units = s.units or (device.units if device else None)
    if s.kind == "edf":
        from seizurewatch.sources.edf import EdfReplaySource

        assert s.path is not None
        return EdfReplaySource(s.path, speed=s.speed, chunk_s=s.chunk_s, loop=s.loop, rate=s.rate, units=units)
    from seizurewatch.sources.lsl import LslSource

    return LslSource(s, units=units)


RETRY_S = 5.0  # a metrics port in use is tried again this often
EEG_KEEP = 20  # alarms per patient whose EEG stays retained on the broker (as many as a station card lists)


@dataclass
class DaemonOptions:
    mqtt_url: str | None = None  # overrides cfg.mqtt.url (e.g. the embedded broker's)
    publish: bool = True  # False: no MQTT at all (offline replay to stdout)
    record_probabilities: bool = False
    keep_trying: bool = False  # a service: no stream / broker / metrics port at start is waited for, not fatal
    require_pin: bool = False  # a service: an unpinned model runs only with model.trusted (or if it is the shipped one)
    check_only: bool = False  # run --check: the journal looked at, not taken; the broker tried under another id


def load_checked_model(cfg: Config, require_pin: bool) -> LoadedModel:
    """The config's model: pinned (when required), loaded from the hashed bytes, metadata valid, and a dry
    forward pass on noise windows answering probabilities of the right shape; ModelError/ConfigError otherwise."""
    m = cfg.model
    if require_pin and m.sha256 is None and not m.trusted:
        path = Path(m.path)
        digest = file_sha256(path.read_bytes()) if path.is_file() else None
        if digest is None or digest != file_sha256(default_model_path().read_bytes()):
            pin = f"sha256: {digest}" if digest else "sha256: <the file's sha256sum>"
            raise ConfigError(
                f"{cfg.source_file}: model.sha256: required to run {m.path} (a model file is code, and the daemon "
                f"runs it): once you know where the file came from, pin it with '{pin}' under model:, or set "
                "'trusted: true' there")
    model = load_model(m.path, m.sha256)
    check_forward(model)
    return model


def check_journal_folder(path: str) -> None:
    """The journal's folder when it does not exist: under a path that is not a folder, ConfigError (exit 2);
    under one that cannot be written (a disk not mounted yet), StorageError (exit 4, systemd restarts the unit
    until it is there). An existing folder is the outbox's to check (writable, free space)."""
    if path != ":memory:" and Path(path).is_dir():
        raise ConfigError(f"outbox.path: {path} is a folder; give the journal's file name, e.g. {path}/outbox.sqlite3")
    folder = Path(path).parent
    if path == ":memory:" or folder.is_dir():
        return
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"outbox.path: cannot create the journal's folder {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(f"outbox.path: the journal's folder {folder} does not exist and {existing} cannot be "
                           "written (a disk not mounted yet?); systemd restarts the unit until it is there")


def check_listen(listen: str) -> None:
    """Bind ``metrics.listen`` once and let go: PortInUse (retried) or ConfigError (an address not on this host)."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server binds it
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"metrics.listen: {listen} is in use by another process") from None
            raise ConfigError(f"metrics.listen: cannot listen on {listen} ({exc.strerror})") from None


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
        self._opened: list[StreamPipeline] = []  # sources opened by prepare (closed again if it refuses)
        self._eeg_kept: dict[str, list[str]] = {}  # alarm ids whose EEG is retained on the broker, oldest first
        self._fault_tasks: set[asyncio.Future[None]] = set()

    # ----- start-up checks -------------------------------------------------------------
    async def prepare(self) -> None:
        """The start-up checks, in order; on a refusal, what was already opened is closed again."""
        try:
            await self._prepare()
        except BaseException:
            await self.close_unstarted()
            raise

    async def _prepare(self) -> None:
        cfg = self.cfg
        configure_compute(cfg.model.threads)
        model = await asyncio.to_thread(load_checked_model, cfg, self.opts.require_pin)
        self.model_sha256 = model.file_sha256
        predictor = Predictor(model, max_batch=cfg.model.max_batch)
        meta = model.meta
        self.metrics.model_info.info(
            {"name": meta.name, "weights_sha256": meta.weights_sha256, "threshold": str(meta.threshold),
             "policy": meta.threshold_policy, "path": model.path}
        )
        devices: dict[str, DeviceProfile | None] = {}
        for i, stream in enumerate(cfg.streams):
            device = load_device(stream.device) if stream.device else None
            if device is not None:
                check_device_fits_model(device, meta.preprocess, f"{cfg.source_file}: streams[{i}].device")
            devices[stream.patient] = device
        if cfg.metrics.listen:
            try:
                check_listen(cfg.metrics.listen)
            except PortInUse as exc:
                if not self.opts.keep_trying:
                    raise
                self._metrics_pending = True
                self.notes.append(f"{exc}; trying again every {RETRY_S:g} s")
                log.error("metrics port in use; trying again", extra={"listen": cfg.metrics.listen,
                                                                      "retry_s": RETRY_S})
        await self._open_journal()
        for stream in cfg.streams:
            device = devices[stream.patient]
            pipe = StreamPipeline(stream, device, make_source(stream, device), predictor, cfg.decision,
                                  self._sink, record_probabilities=self.opts.record_probabilities,
                                  metrics=self.metrics)
            self._opened.append(pipe)
            try:
                await pipe.open()
            except DataError as exc:
                # a live stream that is not there, or there but not what the model needs (1 channel: an
                # amplifier not set up yet): a service says so (stream_lost fault) and keeps looking; exit 2
                # would leave the bed unmonitored for good (systemd does not restart a config error).
                # A recording that does not fit, and run --check, still refuse.
                live = stream.source.kind == "lsl" and not self.opts.check_only
                if not self.opts.keep_trying or not (isinstance(exc, SourceUnavailable) or live):
                    raise
                if not isinstance(exc, SourceUnavailable):
                    with contextlib.suppress(Exception):
                        await pipe.source.close()
                pipe.waiting = str(exc)  # run() publishes a stream_lost fault and keeps looking
                self.notes.append(f"{stream.patient}: {exc}; waiting for it (stream_lost fault)")
                log.error("no stream at start; monitoring starts when it appears",
                          extra={"patient": stream.patient, "error": str(exc)})
            self.pipelines.append(pipe)
            self._wire(pipe, meta)
        await self._check_brokers()
        if cfg.metrics.listen and not self._metrics_pending:
            self.metrics.serve(cfg.metrics.listen)

    async def _open_journal(self) -> None:
        """The outbox's journal, and what it says of the alarms before a restart (``run --check``: looked at,
        not taken from a running daemon)."""
        path = self.cfg.outbox.path
        check_journal_folder(path)
        if self.opts.check_only:
            holder = await asyncio.to_thread(Outbox.check_path, path)
            if holder:
                self.notes.append(f"outbox.path: {path} is in use by seizurewatch PID {holder}; "
                                  "run refuses to start while that one runs")
            self.outbox = await asyncio.to_thread(Outbox.open_sync, ":memory:")
        else:
            self.outbox = await asyncio.to_thread(Outbox.open_sync, path,
                                                  self.cfg.outbox.keep_delivered_days * 86400.0)
            await asyncio.to_thread(self.desk.load, path)

    def _wire(self, pipe: StreamPipeline, meta: ModelMeta) -> None:
        """Connect one patient's pipeline to the alarm desk and (publishing) to its MQTT link."""
        assert self.outbox is not None
        patient, mqtt = pipe.patient, self.cfg.mqtt
        self.escalator.n_channels[patient] = len(meta.preprocess.channels)
        if self.opts.publish:
            link = PatientLink(mqtt, self.outbox, patient, url=self.opts.mqtt_url)
            gauge = self.metrics.broker_connected.labels(patient)
            link.on_change.append(lambda up: gauge.set(1 if up else 0))
            link.on_refused.append(self._refusal_to(pipe))
            link.subscriptions.append(ack_topic(mqtt.topic_prefix, patient))
            link.on_message = functools.partial(self._on_message, pipe)
            self.links[patient] = link
            pipe.on_state.append(lambda _state, info: link.set_state(info))  # PatientState built it
            pipe.status.on_risk.append(link.set_risk)
            link.horizons = tuple(o.horizon_s for o in meta.risk_outputs)
        pipe.snippet_sink = functools.partial(self._on_snippet, patient)
        pipe.status.acks = functools.partial(self.acks.acks_of, patient)

    async def _check_brokers(self) -> None:
        """Connect once per link now; a broker down at start is waited for by a service (``keep_trying``)."""
        for patient, link in self.links.items():
            try:
                if self.opts.check_only:  # its own client id: never takes over a running daemon's session
                    await link.policy.check_publish(f"seizurewatch-check-{patient}-{os.getpid()}",
                                                    link.topics["status"])
                else:
                    await link.check()
            except BrokerError as exc:
                if not (self.opts.keep_trying and exc.transient):
                    raise
                self.broker_down_at_start.add(patient)
                self.notes.append(f"{patient}: {exc}; alarms are journaled and delivered once it answers")
                log.error("broker unreachable at start; journaling and retrying",
                          extra={"patient": patient, "error": str(exc)})

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

