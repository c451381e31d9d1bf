"""The daemon: one asyncio TaskGroup owns every stream pipeline and every MQTT link.

Start-up is all-or-nothing: config, model, device profiles, sources, outbox and broker
are checked before the first sample is processed; any problem is one clear error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seizurewatch.alarms.mqtt import PatientLink, topics
from seizurewatch.alarms.outbox import Outbox
from seizurewatch.config import Config, StreamConfig
from seizurewatch.devices import load_device
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
        for stream in cfg.streams:
            device = load_device(stream.device) if stream.device else None
            pipe = StreamPipeline(stream, device, make_source(stream), predictor, cfg.decision, self._sink,
                                  record_probabilities=self.opts.record_probabilities,
                                  metrics=self.metrics)
            await pipe.open()
            self.pipelines.append(pipe)
            if self.opts.publish:
                link = PatientLink(cfg.mqtt, self.outbox, stream.patient, url=self.opts.mqtt_url)
                link.on_change.append(self._broker_gauge(stream.patient))
                self.links[stream.patient] = link
                pipe.on_state.append(self._state_to(link))
        for link in self.links.values():
            await link.check()
        if cfg.metrics.listen:
            self.metrics.serve(cfg.metrics.listen)

    @staticmethod
    def _state_to(link: PatientLink) -> Callable[[str, dict[str, Any]], None]:
        def update(state: str, info: dict[str, Any]) -> None:
            link.set_state(info)

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
        items = [(names["alarm" if ev.kind == "alarm" else "fault"], to_payload(ev, ctx, seq=0, wall_time=now))
                 for ev in events]
        seqs = await self.outbox.append_all(ctx.patient, items)
        self.events_emitted += len(events)
        link = self.links.get(ctx.patient)
        if link:
            link.wake()
        for (_, payload), seq in zip(items, seqs):
            payload["seq"] = seq
            payload["epoch"] = self.outbox.epoch
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
                       tg.create_task(self._watch_outbox(), name="outbox-depth")]
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

    def stop(self) -> None:
        for pipe in self.pipelines:
            pipe.stop()
