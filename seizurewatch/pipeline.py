"""One patient's pipeline: source -> preprocess -> ring buffer -> model -> decision -> events.

The source runs in its own task and hands items over a bounded queue, so a replay at
``speed=max`` is paced by inference (backpressure) and a live source never waits on it.
The model runs in its own thread: a block's windows go to it in one hand-over, and while it
classifies them the event loop already prepares the next block (up to two blocks in its hands).
Each batch is decided on as soon as the model finishes it, so on a live stream the overlap never
delays an alarm; the events of what is decided together are journaled together, in order.

This module is the loop (source, backpressure, batches in flight; the windows and their quality verdicts come
from ``windower.Windower``, on the model's one ``WindowSchedule``); what
the windows decided — alarm decision, faults, context, stats, the published state — is the patient's
``patient.PatientState``, which readers (``Service``, the watchdog) see through ``snapshot()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from seizurewatch.config import DecisionConfig, StreamConfig
from seizurewatch.decision import AlarmDecision, FaultTracker
from seizurewatch.devices import DeviceProfile
from seizurewatch.errors import DataError, SourceUnavailable
from seizurewatch.events import Context, Event
from seizurewatch.inference import Predictor
from seizurewatch.patient import PatientSnapshot, PatientState, StreamStats
from seizurewatch.quality import QualityVerdict
from seizurewatch.ringbuffer import as_batch
from seizurewatch.sources import Source
from seizurewatch.types import Block, Gap, RateStatus, StreamStatus, Window
from seizurewatch.windower import StageTimes, Windower

log = logging.getLogger(__name__)

SOURCE_RETRY_S = 3.0  # a live source not there at start is looked for again this often
MAX_BLOCKS_IN_FLIGHT = 2  # blocks handed to the model and not yet decided on, beyond which the loop waits

EventSink = Callable[[list[Event], Context], Awaitable[None]]  # a batch, in order: journaled together
SnippetSink = Callable[[dict[str, Any]], Awaitable[None]]  # the EEG behind an alarm start (snippet.py)


@dataclass
class _Batch:
    """Windows handed to the model and not yet decided on, with their quality verdicts."""

    windows: list[Window]
    verdicts: list[QualityVerdict]
    usable: list[Window]
    result: asyncio.Future[tuple[np.ndarray, float]] | None


async def _produce(source: Source, queue: asyncio.Queue[Any], stop: asyncio.Event, done: object) -> None:
    """The source's items onto ``queue`` (a bounded queue: its backpressure paces a replay), then ``done``."""
    try:
        async for item in source.items():
            await queue.put(item)
            if stop.is_set():
                break
    finally:
        await queue.put(done)


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it; an error it ended with (not the cancellation) is raised."""
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception) as exc:  # noqa: BLE001
        if not isinstance(exc, asyncio.CancelledError):
            raise


def log_event(patient: str, ev: Event) -> None:
    """The log line of an event worth one: a fault or alarm starting (an alarm ending), a risk change."""
    if ev.kind == "fault" and ev.event == "start":
        log.warning("fault start", extra={"patient": patient, "fault": ev.fault_type, "t": ev.t,
                                          "channels": list(ev.channels)})
    elif ev.kind == "alarm" and ev.event in ("start", "end"):
        log.warning("alarm %s", ev.event, extra={"patient": patient, "t": round(ev.t, 2),
                                                 "probability": ev.probability, "alarm_id": ev.alarm_id})
    elif ev.risk is not None:
        log.info("risk %s -> %s", ev.risk.previous, ev.risk.level,
                 extra={"patient": patient, "horizon_s": ev.risk.horizon_s, "t": round(ev.t, 2),
                        "probability": ev.probability})


class StreamPipeline:
    def __init__(
        self,
        stream: StreamConfig,
        device: DeviceProfile | None,
        source: Source,
        predictor: Predictor,
        decision: DecisionConfig,
        sink: EventSink,
        line_freq: float | None = None,
        record_probabilities: bool = False,
        metrics: Any = None,
    ) -> None:
        self.stream = stream
        self.patient = stream.patient
        self.device = device
        self.source = source
        self.predictor = predictor
        self.meta = predictor.meta
        self.status = PatientState(self.patient, self.meta, decision, record_probabilities, metrics)
        self.sink = sink
        self.line_freq = line_freq if line_freq is not None else (device.line_freq if device else 50.0)
        self.metrics = metrics
        self.times = StageTimes()
        self.front: Windower | None = None  # preprocessing, windows and their quality (opened by open())
        self._in_flight: deque[_Batch] = deque()
        self.snippet_sink: SnippetSink | None = None
        self.first_samples = asyncio.Event()
        self.started = asyncio.Event()  # monitoring, or knowingly waiting for the source (fault published)
        self.waiting: str | None = None  # why the source could not be opened yet; run() keeps trying
        self._stop = asyncio.Event()

    # ----- the patient's state (decision, faults, context, stats): patient.PatientState ----
    @property
    def faults(self) -> FaultTracker:
        return self.status.faults

    @property
    def decision(self) -> AlarmDecision:
        return self.status.decision

    @property
    def context(self) -> Context:
        return self.status.context

    @property
    def stats(self) -> StreamStats:
        return self.status.stats

    @property
    def state(self) -> str:
        return self.status.state

    @property
    def on_state(self) -> list[Callable[[str, dict[str, Any]], None]]:
        return self.status.on_state

    def snapshot(self) -> PatientSnapshot:
        return self.status.snapshot(self.waiting)

    # ----- control ---------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the current block, close open alarms, return from run()."""
        self._stop.set()

    def reconfigure(self, decision: DecisionConfig) -> None:
        self.status.reconfigure(decision)

    # ----- running ---------------------------------------------------------------------
    async def open(self) -> None:
        """Open the source and check its channels against the model; DataError on mismatch."""
        await self.source.open()
        if self.device is None:
            self.device = DeviceProfile(name="as-described-by-source", channels=tuple(self.source.channels),
                                        sampling_rate=self.source.rate)
        self.front = Windower.for_source(self.source, self.device, self.meta, self.patient, self.line_freq,
                                         self.times)

    async def run(self) -> None:
        if self.waiting is not None:
            if not await self._open_when_there():
                return
        elif self.front is None:
            await self.open()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=4)
        done = object()
        producer = asyncio.create_task(_produce(self.source, queue, self._stop, done), name=f"source-{self.patient}")
        stopper = asyncio.ensure_future(self._stop.wait())
        getter: asyncio.Future[Any] | None = None
        try:
            while True:
                await self._settle(only_ready=True)
                if getter is None:
                    getter = asyncio.ensure_future(queue.get())
                # Wake for the next item, a stop, or the model finishing the oldest batch (decided at once,
                # so a live stream's alarm never waits for its next block).
                oldest = self._in_flight[0].result if self._in_flight else None
                waiting = {getter, stopper} | ({oldest} if oldest is not None else set())
                finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if getter in finished:
                    item, getter = getter.result(), None
                    if item is done:
                        break
                    await self._handle(item)
                elif stopper in finished:
                    break
        finally:
            stopper.cancel()
            if getter is not None:
                getter.cancel()
            await _cancel(producer)  # the source's own error, if it had one, is raised here
            await self._finish()
            await self.source.close()

    async def _open_when_there(self) -> bool:
        """The source was not there at start: a ``stream_lost`` fault (published: the bed is not monitored)
        and a new attempt every SOURCE_RETRY_S. Each finished attempt counts as progress for the watchdog;
        a hung attempt does not. False when stopped before the source appeared."""
        await self._emit(self.faults.set("stream_lost", True, 0.0, detail=f"cannot see the stream: {self.waiting}"))
        self.started.set()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), SOURCE_RETRY_S)
                break
            try:
                await self.open()
            except DataError as exc:  # not there yet; or there, but not what the model needs: keep saying so
                if not isinstance(exc, SourceUnavailable) and str(exc) != self.waiting:
                    log.error("stream found but refused; still waiting", extra={"patient": self.patient,
                                                                                 "error": str(exc)})
                with contextlib.suppress(Exception):
                    await self.source.close()
                self.waiting = str(exc)
                self.stats.last_progress = time.monotonic()
                continue
            self.waiting = None
            self.stats.last_progress = time.monotonic()
            log.warning("stream found; monitoring starts", extra={"patient": self.patient,
                                                                 "stream": self.source.description})
            await self._emit(self.faults.set("stream_lost", False, 0.0, detail=f"stream found: "
                                                                             f"{self.source.description}"))
            return True
        await self._finish()
        return False

    async def _finish(self) -> None:
        await self._settle()
        t = max(self.stats.last_t, self.stats.last_window_t)  # a fault with no decided window ends when it did
        if self.decision.active:
            await self._emit([self.decision.end(t, self.stats.last_probability, detail="stream ended")])
        for ftype in list(self.faults.active):
            await self._emit(self.faults.set(ftype, False, t, detail="stream ended"))

    async def _handle(self, item: Block | Gap | StreamStatus | RateStatus) -> None:
        self.stats.last_progress = time.monotonic()  # the systemd watchdog pings only while this moves
        if isinstance(item, Block):
            await self._on_block(item)
            return
        await self._settle()  # windows before a gap or a status change are decided before it
        if isinstance(item, Gap):
            await self._on_gap(item)
        elif isinstance(item, StreamStatus):
            await self._on_status(item)
        elif isinstance(item, RateStatus):
            detail = (f"the stream declares {item.nominal:g} Hz and its timestamps carry {item.effective:.1f} "
                      "samples/s" if not item.ok else f"back to {item.effective:.1f} samples/s")
            await self._emit(self.faults.set("rate_mismatch", not item.ok, item.t, detail=detail))

    async def _on_block(self, block: Block) -> None:
        assert self.front
        self.stats.samples += block.n_samples
        self.stats.last_progress = time.monotonic()
        self.stats.last_sample_wall = round(time.time(), 3)
        if self.stats.first_sample_at is None:
            self.stats.first_sample_at = time.monotonic()
            self.front.reset(block.t0)
            self.first_samples.set()
            self.started.set()
        if self.metrics:
            self.metrics.samples(self.patient, block.n_samples)
        windows, verdicts = self.front.push(block.data, block.t0, block.wall_received,
                                            keep_tail=self.snippet_sink is not None)
        if self.metrics:
            self.metrics.buffer_fill(self.patient, self.front.fill_ratio)
        if windows:
            self._submit(windows, verdicts)  # one hand-over; the model's thread runs it in cache-sized chunks
        # Two blocks may be in the model's hands at once (it never waits for the loop, nor the loop for it,
        # when their per-block times jitter); beyond that the loop waits, so memory and lag stay bounded.
        # A one-core process (a Dask worker) waits for each block: its core is the model's while it runs.
        await self._settle(keep=0 if self.predictor.one_core else MAX_BLOCKS_IN_FLIGHT)

    def _submit(self, windows: list[Window], verdicts: list[QualityVerdict]) -> None:
        """Hand the usable windows to the model's thread; decided on in ``_settle``."""
        usable = [w for w, v in zip(windows, verdicts) if v.usable]
        t0 = time.perf_counter()
        result = self.predictor.submit(as_batch(usable)) if usable else None
        self.times.buffer += time.perf_counter() - t0
        self._in_flight.append(_Batch(windows, verdicts, usable, result))

    async def _settle(self, only_ready: bool = False, keep: int = 0) -> None:
        """Quality events, probabilities and decisions of the batches in flight, oldest first, until ``keep``
        remain, or (``only_ready``) until one the model has not finished. Their events go out together
        (one journal transaction), in order."""
        events: list[Event] = []
        decided_to: float | None = None
        while len(self._in_flight) > keep:
            if only_ready and self._in_flight[0].result is not None and not self._in_flight[0].result.done():
                break
            b = self._in_flight.popleft()
            events += await self._decide_batch(b)
            self.stats.last_window_t = max([self.stats.last_window_t] + [w.t_end for w in b.windows])
            if b.result is not None:
                decided_to = b.usable[-1].t_end
        await self._emit(events)
        if decided_to is not None:
            self.status.update_state(decided_to)

    async def _decide_batch(self, b: _Batch) -> list[Event]:
        """The batch's events window by window, in time order: each window's quality events, then the decision
        on its probability (events of one stream are stamped on one clock, so they are made in the order of time)."""
        probs: np.ndarray | None = None
        events: list[Event] = []
        if b.result is not None:
            try:
                probs, dt = await b.result
            except Exception as exc:  # noqa: BLE001 - a model fault must become a fault event, not a crash
                log.exception("inference failed", extra={"patient": self.patient})
                fault = self.faults.set("model_error", True, b.usable[-1].t_end, detail=str(exc)[:200])
                quality = [self.status.quality_events(v, w.t_end) for w, v in zip(b.windows, b.verdicts)]
                return [e for q in quality for e in q] + fault
            self.times.inference += dt
            if self.metrics:
                self.metrics.inference(self.patient, dt, len(b.usable))
            if probs.shape != (len(b.usable), len(self.meta.outputs)):  # nothing of this batch can be decided on
                events, probs = self.status.decide(b.usable, probs), None
        row = {id(w): i for i, w in enumerate(b.usable)}
        t1 = time.perf_counter()
        for w, verdict in zip(b.windows, b.verdicts):
            events += self.status.quality_events(verdict, w.t_end)
            i = row.get(id(w))
            if probs is not None and i is not None:
                events += self.status.decide([w], probs[i : i + 1])
        self.times.decision += time.perf_counter() - t1
        return events

    async def _on_gap(self, gap: Gap) -> None:
        assert self.front
        self.front.reset(gap.t, filters=True)
        self.status.reset_history()
        if gap.reason != "replay_loop":
            log.warning("stream gap; window buffer reset", extra={"patient": self.patient, "gap_s": gap.seconds})
            await self._emit(self.faults.instant("stream_gap", gap.t, f"{gap.seconds:.3f} s without samples",
                                                 gap.seconds))

    async def _on_status(self, st: StreamStatus) -> None:
        assert self.front
        if not st.up:
            log.error("stream lost", extra={"patient": self.patient, "detail": st.detail})
            self.front.reset(st.t, filters=True)
            self.status.reset_history()
        else:
            log.info("stream back", extra={"patient": self.patient, "detail": st.detail})
            self.front.reset(st.t)
        await self._emit(self.faults.set("stream_lost", not st.up, st.t, detail=st.detail))
        self.status.update_state(st.t)

    async def set_fault(self, fault_type: str, on: bool, detail: str) -> None:
        """A fault found outside the signal path (the broker refusing this bed's publishes): journaled and
        shown in the state like the signal's own."""
        await self._emit(self.faults.set(fault_type, on, max(self.stats.last_t, self.stats.last_window_t),
                                         detail=detail))

    async def _emit(self, events: list[Event]) -> None:
        if not events:
            return
        t0 = time.perf_counter()
        for ev in events:
            log_event(self.patient, ev)
            if self.metrics:
                self.metrics.event(self.patient, ev)
        await self.sink(events, self.context)
        for ev in events:
            if ev.kind == "alarm" and ev.event == "start":
                await self._snippet(ev)
        self.times.publish += time.perf_counter() - t0
        self.status.update_state(events[-1].t, events)

    async def _snippet(self, ev: Event) -> None:
        """The signal the model saw up to this alarm's decision, to the daemon (journal, retained topic)."""
        payload = self.front.snippet(self.patient, ev) if self.front is not None else None
        if payload is not None and self.snippet_sink is not None:
            await self.snippet_sink(payload)
