"""Live EEG from a Lab Streaming Layer outlet (an amplifier's driver, or ``seizurewatch play``).

- Resolution by ``name`` / ``type`` / ``source_id`` / an XPath ``predicate``, with a timeout;
  nothing (or more than one stream) found is a DataError listing what *was* found.
- Channel labels, units and rate come from the stream's XML description
  (``channels/channel/label,unit,type``); the pipeline maps them to the model by label. Samples
  are converted to µV by ``seizurewatch.units`` (the readers' one table); a channel declaring no
  unit or an unknown one takes the configured ``units`` (source or device profile), else the
  stream is refused naming the channel.
- pylsl blocks, so a reader thread pulls chunks into a bounded queue; the asyncio side only
  drains that queue (an ``asyncio.Event`` set from the thread wakes it) and never blocks.
- Timestamps are clock-corrected by liblsl (``proc_clocksync``) onto this machine's
  ``local_clock()``. ``proc_dejitter`` is deliberately *not* used: it smooths the very jumps
  gap detection looks for; the ring buffer times windows by sample count, which is jitter-free.
- Stream time ``t`` (``Block.t0``, event ``t``) is seconds since the first sample received from
  this source, on that corrected clock: with ``seizurewatch play`` from the file's start it
  is the recording time; after a loss it keeps counting on the same clock.
- A timestamp jump longer than ``max_gap_s`` yields ``Gap`` (the pipeline resets the window);
  no samples for ``lost_after_s`` yields ``StreamStatus(up=False)``; the thread keeps
  resolving the same ``source_id`` and yields ``StreamStatus(up=True)`` when it is back.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from seizurewatch.config import SourceConfig
from seizurewatch.errors import DataError, SourceUnavailable
from seizurewatch.lslconfig import import_pylsl
from seizurewatch.types import Annotation, Block, Gap, RateStatus, StreamStatus
from seizurewatch.units import microvolt_factors, to_microvolts

log = logging.getLogger(__name__)

_DTYPES = {1: np.float32, 2: np.float64, 4: np.int32, 5: np.int16, 6: np.int8, 7: np.int64}
POLL_S = 0.5  # pull_chunk timeout (data returns at once): how often an idle reader checks its stop flag
RETRY_RESOLVE_S = 2.0  # resolve timeout of attempts after the first
QUEUE_ITEMS = 256  # bounded hand-over queue; LSL's own inlet buffer (360 s) absorbs longer stalls


def _quote(v: str) -> str:
    return "'" + v.replace("'", "") + "'"


def build_predicate(name: str | None = None, type: str | None = None, source_id: str | None = None,
                    predicate: str | None = None) -> str:
    """An XPath 1.0 predicate over the stream info (liblsl's resolve_bypred syntax)."""
    parts = [f"{k}={_quote(v)}" for k, v in (("name", name), ("type", type), ("source_id", source_id)) if v]
    if predicate:
        parts.append(f"({predicate})")
    return " and ".join(parts) or "true()"


def describe_info(info: Any) -> str:
    sid = info.source_id() or "-"
    return (f"'{info.name()}' (type {info.type() or '-'}, source_id {sid}, {info.channel_count()} ch @ "
            f"{info.nominal_srate():g} Hz, host {info.hostname()})")


@dataclass(frozen=True)
class ChannelDesc:
    labels: tuple[str, ...]
    units: tuple[str, ...]
    types: tuple[str, ...]


def read_channels(info: Any, where: str) -> ChannelDesc:
    """Labels/units/types from ``<desc><channels><channel>``; DataError when labels are missing."""
    labels, units, types = [], [], []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        labels.append(ch.child_value("label").strip())
        units.append(ch.child_value("unit").strip())
        types.append(ch.child_value("type").strip())
        ch = ch.next_sibling("channel")
    n = info.channel_count()
    if len(labels) != n or not all(labels):
        raise DataError(
            f"{where}: the stream's XML description has {sum(1 for x in labels if x)} channel label(s) for {n} "
            "channels; seizurewatch maps channels by label, so the outlet must describe "
            "<desc><channels><channel><label>...</label></channel>...</channels></desc>"
        )
    return ChannelDesc(tuple(labels), tuple(units), tuple(types))


class GapTracker:
    """Turns (samples, per-sample LSL timestamps) into Blocks on stream time, splitting at gaps."""

    def __init__(self, rate: float, channels: tuple[str, ...], max_gap_s: float) -> None:
        self.rate = rate
        self.channels = channels
        self.max_gap_s = max_gap_s
        self.origin: float | None = None  # LSL time of stream time 0
        self.next_ts: float | None = None  # expected LSL time of the next sample
        self.dropped_s = 0.0  # short gaps (< max_gap_s) seen so far: dropped samples

    def restart(self) -> None:
        """After a loss: the next sample starts a new segment (the caller reports the status)."""
        self.next_ts = None

    def feed(self, data: np.ndarray, ts: np.ndarray, wall: float) -> list[Block | Gap]:
        """``data`` (channels, n) float32, ``ts`` (n,) corrected LSL timestamps."""
        if self.origin is None:
            self.origin = float(ts[0])
        out: list[Block | Gap] = []
        limit = self.max_gap_s + 1.0 / self.rate
        cuts = [0] + [int(i) + 1 for i in np.flatnonzero(np.diff(ts) > limit)] + [len(ts)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            first = float(ts[a])
            if self.next_ts is not None:
                jump = first - self.next_ts
                if jump > self.max_gap_s:
                    out.append(Gap(first - self.origin, jump))
                elif jump > 1.5 / self.rate:
                    self.dropped_s += jump
            out.append(Block(data[:, a:b], self.rate, first - self.origin, self.channels, wall))
            self.next_ts = first + (b - a) / self.rate if b - a > 1 else float(ts[b - 1]) + 1.0 / self.rate
        return out


class RateMonitor:
    """The effective rate from the timestamps (samples per second of stream time over the last ``window_s``),
    against the nominal one. Off by more than ``tolerance``: a fault; back within half of it: the fault ends.
    A device clock a fraction of a percent off (399.6 Hz for 400) is well within."""

    def __init__(self, nominal: float, window_s: float = 10.0, tolerance: float = 0.05) -> None:
        self.nominal = nominal
        self.window_s = window_s
        self.tolerance = tolerance
        self.points: deque[tuple[float, int]] = deque()  # (timestamp of a chunk's last sample, samples so far)
        self.total = 0
        self.off = False
        self.effective: float | None = None

    def restart(self) -> None:
        """After a gap or a loss: the span would include time without samples."""
        self.points.clear()

    def feed(self, ts: np.ndarray) -> bool | None:
        """The new verdict (True: off) when it changed, else None."""
        if not len(ts):
            return None
        self.total += len(ts)
        self.points.append((float(ts[-1]), self.total))
        while len(self.points) > 2 and self.points[-1][0] - self.points[1][0] >= self.window_s:
            self.points.popleft()
        (t0, n0), (t1, n1) = self.points[0], self.points[-1]
        if t1 - t0 < self.window_s:
            return None
        self.effective = (n1 - n0) / (t1 - t0)
        deviation = abs(self.effective - self.nominal) / self.nominal
        off = deviation > (self.tolerance / 2 if self.off else self.tolerance)
        if off == self.off:
            return None
        self.off = off
        return off


class LslSource:
    """The Source protocol over an LSL inlet; see the module docstring."""

    def __init__(self, cfg: SourceConfig, units: str | None = None) -> None:
        self.cfg = cfg
        self.assume_units = cfg.units or units  # what a channel declaring no (or an unknown) unit holds
        self.predicate = build_predicate(cfg.name, cfg.type, cfg.source_id, cfg.predicate)
        self.channels: tuple[str, ...] = ()
        self.units: tuple[str, ...] = ()
        self.rate = 0.0
        self.annotations: tuple[Annotation, ...] = ()
        self.description = f"lsl:{self.predicate}"
        self.source_id = cfg.source_id or ""
        self.lost_count = 0
        self.open_attempts = 0
        self._pylsl: Any = None
        self._inlet: Any = None
        self._layout: tuple[tuple[str, ...], float] | None = None
        self._scale: np.ndarray | None = None
        self._dtype: Any = np.float32
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_ITEMS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.tracker: GapTracker | None = None

    # ----- resolution (blocking; called in a thread) -----------------------------------
    def _resolve(self, predicate: str, timeout: float) -> list[Any]:
        return list(self._pylsl.resolve_bypred(predicate, minimum=1, timeout=timeout))

    def _resolve_or_explain(self, timeout: float) -> Any:
        found = self._resolve(self.predicate, timeout)
        if len(found) == 1:
            return found[0]
        if not found:
            others = self._pylsl.resolve_streams(wait_time=1.0)
            seen = "; ".join(describe_info(i) for i in others) or "no LSL streams at all (is the outlet running?)"
            raise SourceUnavailable(f"LSL: no stream matches {self.predicate} within {timeout:g} s; found: {seen}")
        if len({i.source_id() for i in found}) == 1 and found[0].source_id():
            return found[0]  # the same device seen twice (e.g. two interfaces)
        raise DataError(f"LSL: {len(found)} streams match {self.predicate}: "
                        f"{'; '.join(describe_info(i) for i in found)}; pin one with source_id")

    def _open_inlet(self, info: Any, timeout: float) -> tuple[Any, ChannelDesc, float]:
        pylsl = self._pylsl
        inlet = pylsl.StreamInlet(info, max_buflen=360, recover=False, processing_flags=pylsl.proc_clocksync)
        full = inlet.info(timeout=timeout)
        where = f"LSL stream {describe_info(full)}"
        rate = float(full.nominal_srate())
        if rate <= 0:
            inlet.close_stream()
            raise DataError(f"{where}: irregular sampling rate; EEG needs a nominal rate")
        desc = read_channels(full, where)
        if full.channel_format() not in _DTYPES:
            inlet.close_stream()
            raise DataError(f"{where}: channel format {full.channel_format()} is not numeric")
        # First clock offset estimate now, before the data feed opens (an outlet waiting for a consumer
        # starts its clock when the feed opens).
        inlet.time_correction(timeout=timeout)
        inlet.open_stream(timeout=timeout)
        return inlet, desc, rate

    def _open_sync(self) -> None:
        self._pylsl = import_pylsl()
        self._stop.clear()  # opened again after a failed attempt (close() set it)
        # The first attempt waits resolve_timeout_s; later ones (a service waiting for the amplifier) are short,
        # so each one ends well within the watchdog's period.
        timeout = self.cfg.resolve_timeout_s if not self.open_attempts else min(self.cfg.resolve_timeout_s,
                                                                                RETRY_RESOLVE_S)
        self.open_attempts += 1
        info = self._resolve_or_explain(timeout)
        try:
            inlet, desc, rate = self._open_inlet(info, max(timeout, 2.0))
        except (TimeoutError, self._pylsl.util.LostError) as exc:
            raise SourceUnavailable(f"LSL stream {describe_info(info)}: found, but it did not answer "
                            f"({type(exc).__name__}: {exc})") from None
        try:
            self._scale = microvolt_factors(f"LSL stream {describe_info(info)}", desc.labels, desc.units,
                                            self.assume_units)
        except DataError:
            inlet.close_stream()
            raise
        self._inlet = inlet
        self.channels, self.units, self.rate = desc.labels, desc.units, rate
        self._layout = (desc.labels, rate)
        self.source_id = info.source_id() or ""
        self._dtype = _DTYPES[info.channel_format()]
        self.description = f"LSL stream {describe_info(info)}"
        self.tracker = GapTracker(rate, desc.labels, self.cfg.max_gap_s)
        log.info("LSL stream opened", extra={"stream": self.description, "channels": list(desc.labels),
                                             "units": sorted(set(desc.units))})

    async def open(self) -> None:
        await asyncio.to_thread(self._open_sync)

    def _start_reader(self) -> None:
        # Started by items(), not open(): a stream refused at start-up (channel mismatch) leaves no thread.
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._thread = threading.Thread(target=self._reader, name=f"lsl-{self.source_id or 'inlet'}", daemon=True)
        self._thread.start()

    # ----- the reader thread ------------------------------------------------------------
    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                break
            except queue.Full:
                continue
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # loop closed between the check and the call
                pass

    def _reader(self) -> None:
        try:
            self._read_loop()
        except Exception as exc:  # noqa: BLE001 - surfaces in items() as the exception it is
            log.exception("LSL reader thread failed", extra={"stream": self.description})
            self._put(exc)

    def _read_loop(self) -> None:
        """Pull chunks; hand (samples, timestamps, arrival) to the asyncio side. On a lost or silent
        outlet, drop the inlet and look for the same device again (the asyncio side reports the loss)."""
        assert self._scale is not None
        pylsl = self._pylsl
        n_ch = len(self.channels)
        max_samples = max(64, int(self.rate * 2))
        buf = np.empty((max_samples, n_ch), dtype=self._dtype)
        last_data = time.monotonic()
        while not self._stop.is_set():
            if self._inlet is None:
                self._inlet = self._reconnect()
                if self._inlet is not None:
                    last_data = time.monotonic()
                continue
            try:
                # min_samples=1: return as soon as anything arrived (liblsl's plain fixed-buffer pull
                # would wait for max_samples or the timeout, adding up to POLL_S of latency).
                _, ts = self._inlet.pull_chunk(timeout=POLL_S, max_samples=max_samples, dest_obj=buf,
                                               min_samples=1, as_numpy=True)
            except pylsl.util.LostError:
                log.warning("LSL outlet disconnected", extra={"stream": self.description})
                self._drop_inlet()
                continue
            n = len(ts)
            now = time.monotonic()
            if n == 0:
                if now - last_data >= self.cfg.lost_after_s:
                    self._drop_inlet()  # a hung outlet: look for it (or its replacement) again
                continue
            last_data = now
            data = to_microvolts(buf[:n].T, self._scale)
            self._put((data, np.array(ts[:n], dtype=np.float64), now))

    def _drop_inlet(self) -> None:
        inlet, self._inlet = self._inlet, None
        if inlet is not None:
            try:
                inlet.close_stream()
            except Exception:  # noqa: BLE001 - already gone
                pass

    def _reconnect(self) -> Any:
        """One attempt to find the same device again (by source_id when it has one)."""
        pred = build_predicate(source_id=self.source_id) if self.source_id else self.predicate
        try:
            found = self._resolve(pred, timeout=1.0)
            if not found:
                return None
            inlet, desc, rate = self._open_inlet(found[0], 1.0)
        except Exception as exc:  # noqa: BLE001 - keep retrying; a bad replacement is reported and skipped
            log.warning("LSL reconnect failed", extra={"stream": self.description, "error": str(exc)[:200]})
            time.sleep(0.5)
            return None
        if (desc.labels, rate) != self._layout:
            assert self._layout is not None
            log.error("a stream with the same source_id came back with another layout; ignored",
                      extra={"stream": self.description, "channels": list(desc.labels), "rate": rate})
            inlet.close_stream()
            time.sleep(1.0)
            return None
        log.info("LSL stream reconnected", extra={"stream": self.description})
        return inlet

    # ----- the asyncio side -------------------------------------------------------------
    async def items(self) -> AsyncIterator[Block | Gap | StreamStatus | RateStatus]:
        assert self.tracker is not None, "open() first"
        if self._thread is None:
            self._start_reader()
        assert self._wake is not None
        tracker = self.tracker
        rate_check = RateMonitor(self.rate)
        up = True
        last_data = time.monotonic()
        last_end = 0.0  # stream time just after the last sample delivered
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                self._wake.clear()
                if self._queue.empty():
                    wait = self.cfg.lost_after_s - (time.monotonic() - last_data) if up else None
                    try:
                        await asyncio.wait_for(self._wake.wait(), wait)
                    except TimeoutError:
                        up = False
                        self.lost_count += 1
                        tracker.restart()
                        rate_check.restart()
                        silent = time.monotonic() - last_data
                        yield StreamStatus(False, last_end, f"no samples for {silent:.1f} s from {self.description}")
                continue
            if isinstance(item, Exception):
                raise item
            data, ts, wall = item
            if not up:
                up = True
                assert tracker.origin is not None
                # Stream time never runs backwards: an outlet replaying faster than real time stamps
                # samples ahead of the clock, and its replacement starts from "now" again.
                silent = wall - last_data
                if ts[0] - tracker.origin < last_end + silent:
                    tracker.origin = float(ts[0]) - (last_end + silent)
                yield StreamStatus(True, float(ts[0] - tracker.origin), f"stream back: {self.description}")
            last_data = wall
            for out in tracker.feed(data, ts, wall):
                if isinstance(out, Block):
                    last_end = out.t0 + out.n_samples / out.rate
                elif isinstance(out, Gap):
                    rate_check.restart()
                yield out
            verdict = rate_check.feed(ts)
            if verdict is not None and rate_check.effective is not None:
                log.log(logging.ERROR if verdict else logging.INFO, "LSL effective rate %s",
                        "off nominal" if verdict else "back to nominal",
                        extra={"stream": self.description, "nominal": self.rate,
                               "effective": round(rate_check.effective, 2)})
                yield RateStatus(not verdict, last_end, self.rate, rate_check.effective)

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
            self._thread = None
        self._drop_inlet()
