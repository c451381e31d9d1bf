"""Replays an EDF recording as an LSL outlet: a stand-in amplifier for the live path.

The EEG outlet carries the standard XML description (``channels/channel/label,unit,type``
plus ``acquisition``); samples are pushed in chunks when their last sample is due (real
time, or ``speed`` times faster, or as fast as possible) and time-stamped from the
recording's sample clock: sample ``i`` of the playback gets ``anchor + i / rate``, where
``anchor`` is ``local_clock()`` when playback starts. EDF+ annotations go out on a
companion ``Markers`` stream (strings, irregular rate) time-stamped on the same clock:
the description at the onset, ``<description>/end`` at the end of annotations with a duration.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seizurewatch.errors import DataError
from seizurewatch.lslconfig import import_pylsl
from seizurewatch.recordings import open_recording
from seizurewatch.types import Annotation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlayOptions:
    name: str = "seizurewatch-play"
    type: str = "EEG"
    source_id: str = ""  # "" : derived from the file name
    speed: float | str = 1.0  # 1 = real time; "max" = as fast as the outlet takes it
    loop: bool = False
    chunk_s: float = 0.1
    start_s: float = 0.0  # play from this recording time
    duration_s: float | None = None  # and for this long (None: to the end)
    markers: bool = True
    rate: float | None = None  # text signals without a STEM.json sidecar
    units: str | None = None  # what channels declaring no unit hold
    wait_consumer_s: float = 0.0  # wait this long for an inlet before the clock starts
    channel_order: tuple[str, ...] | None = None  # publish these channels in this order (tests: shuffled, missing)
    gap_at_s: float | None = None  # test aid: skip ``gap_s`` of timestamps at this recording time
    gap_s: float = 0.0
    drop_s: float = 0.0  # test aid: and stop pushing for this long (wall clock) at the gap

    def __post_init__(self) -> None:
        if self.speed != "max" and (not isinstance(self.speed, (int, float)) or float(self.speed) <= 0):
            raise ValueError(f"speed: must be > 0 or 'max' (got {self.speed!r})")
        if self.chunk_s <= 0:
            raise ValueError("chunk_s: must be > 0")


@dataclass
class PlayStats:
    samples: int = 0
    chunks: int = 0
    markers: int = 0
    loops: int = 0
    seconds: float = 0.0
    first_timestamp: float | None = None
    marker_log: list[tuple[float, str]] = field(default_factory=list)


def eeg_info(pylsl: Any, name: str, type_: str, source_id: str, labels: tuple[str, ...], units: tuple[str, ...],
             rate: float, manufacturer: str = "seizurewatch play") -> Any:
    """A StreamInfo with the standard channel description (what an amplifier driver writes)."""
    info = pylsl.StreamInfo(name, type_, len(labels), rate, pylsl.cf_float32, source_id)
    chans = info.desc().append_child("channels")
    for lab, unit in zip(labels, units):
        c = chans.append_child("channel")
        c.append_child_value("label", lab)
        c.append_child_value("unit", unit or "microvolts")
        c.append_child_value("type", type_)
    acq = info.desc().append_child("acquisition")
    acq.append_child_value("manufacturer", manufacturer)
    return info


class Player:
    """``Player(path, options).run(stop_event)`` pushes until the end (or forever with ``loop``)."""

    def __init__(self, path: str, options: PlayOptions | None = None) -> None:
        self.path = path
        self.opts = options or PlayOptions()
        self.stats = PlayStats()
        self.rec = open_recording(path, rate=self.opts.rate, units=self.opts.units)
        h = self.rec.header
        self.rate = h.rate
        units = dict(zip(h.channels, h.units))
        order = self.opts.channel_order or h.channels
        unknown = [c for c in order if c not in units]
        if unknown:
            raise DataError(f"{path}: no channel(s) {', '.join(unknown)}; the file has {', '.join(h.channels)}")
        self.labels = tuple(order)
        self.picks = [h.channels.index(c) for c in order]
        self.units = ("uV",) * len(order)  # the reader converted the file's units
        self.first = int(round(self.opts.start_s * self.rate))
        end = h.n_samples if self.opts.duration_s is None else self.first + int(round(self.opts.duration_s * self.rate))
        self.last = min(end, h.n_samples)
        if self.first >= self.last:
            raise DataError(f"{path}: nothing to play from {self.opts.start_s} s (recording is {h.duration:.1f} s)")
        self.source_id = self.opts.source_id or f"seizurewatch-play:{h.path.rsplit('/', 1)[-1]}"
        self.pylsl = import_pylsl()
        self.outlet = self.pylsl.StreamOutlet(
            eeg_info(self.pylsl, self.opts.name, self.opts.type, self.source_id, self.labels, self.units, self.rate),
            chunk_size=0, max_buffered=360)
        self.marker_outlet = None
        if self.opts.markers and h.annotations:
            info = self.pylsl.StreamInfo(f"{self.opts.name}-markers", "Markers", 1, self.pylsl.IRREGULAR_RATE,
                                         self.pylsl.cf_string, f"{self.source_id}-markers")
            self.marker_outlet = self.pylsl.StreamOutlet(info)

    def _markers(self) -> list[tuple[float, str]]:
        """(recording time, marker string) inside the played span, in time order."""
        lo, hi = self.first / self.rate, self.last / self.rate
        out: list[tuple[float, str]] = []
        a: Annotation
        for a in self.rec.header.annotations:
            if lo <= a.onset < hi:
                out.append((a.onset, a.description))
            if a.duration > 0 and lo <= a.end < hi:
                out.append((a.end, f"{a.description}/end"))
        return sorted(out)

    def run(self, stop: threading.Event | None = None) -> PlayStats:
        stop = stop or threading.Event()
        o = self.opts
        if o.wait_consumer_s > 0:
            self.outlet.wait_for_consumers(o.wait_consumer_s)
        fast = o.speed == "max"
        speed = 1.0 if fast else float(o.speed)
        chunk = max(1, int(round(o.chunk_s * self.rate)))
        gap_at = None if o.gap_at_s is None else int(round(o.gap_at_s * self.rate))
        anchor = self.pylsl.local_clock()
        wall0 = time.monotonic()
        self.stats.first_timestamp = anchor
        pushed = 0  # samples pushed so far: the playback's sample clock
        skipped = 0.0  # seconds of timestamps skipped (injected gaps)
        paused = 0.0  # wall seconds spent in injected drop-outs
        t_start = time.perf_counter()
        while not stop.is_set():
            markers = self._markers() if self.marker_outlet is not None else []
            pos = self.first
            loop_start = pushed
            while pos < self.last and not stop.is_set():
                n = min(chunk, self.last - pos)
                if gap_at is not None and pos < gap_at < pos + n:
                    n = gap_at - pos  # the injected gap falls on a chunk boundary
                if gap_at is not None and pos == gap_at and self.stats.loops == 0:
                    skipped += o.gap_s
                    if o.drop_s > 0:
                        stop.wait(o.drop_s)
                        paused += o.drop_s
                    gap_at = None
                data = self.rec.read(pos, n)[self.picks].T  # (n, channels) as LSL wants it
                due = wall0 + paused + (pushed + n) / self.rate / speed
                if not fast:
                    delay = due - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        break
                ts_last = anchor + skipped + (pushed + n - 1) / self.rate
                self.outlet.push_chunk(np.ascontiguousarray(data, dtype=np.float32), ts_last)
                while markers and markers[0][0] * self.rate < pos + n:
                    t_rec, text = markers.pop(0)
                    ts = anchor + skipped + (loop_start + t_rec * self.rate - self.first) / self.rate
                    self.marker_outlet.push_sample([text], ts)  # type: ignore[union-attr]
                    self.stats.markers += 1
                    self.stats.marker_log.append((t_rec, text))
                pos += n
                pushed += n
                self.stats.samples += n
                self.stats.chunks += 1
            self.stats.loops += 1
            if not o.loop:
                break
        if not stop.is_set():
            stop.wait(0.5)  # let the last chunks reach the inlets before the outlet goes away
        self.stats.seconds = time.perf_counter() - t_start
        return self.stats

    def close(self) -> None:
        self.outlet = None
        self.marker_outlet = None
        self.rec.close()


def play(path: str, options: PlayOptions | None = None, stop: threading.Event | None = None) -> PlayStats:
    player = Player(path, options)
    try:
        return player.run(stop)
    finally:
        player.close()
