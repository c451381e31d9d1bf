"""One stream's front end: preprocessing, then the windows of the model's ``WindowSchedule`` with the
quality verdict of each (judged on the unfiltered signal), paired by construction: the ring buffer and the
streaming quality checks take the one schedule and are pushed and reset together, here only."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from seizurewatch.devices import DeviceProfile
from seizurewatch.errors import DataError
from seizurewatch.events import Event
from seizurewatch.modelmeta import ModelMeta
from seizurewatch.preprocess import Preprocessor, check_rate_carries_band, same_rate
from seizurewatch.quality import QualityChecker, QualityVerdict, with_amplitude
from seizurewatch.ringbuffer import RingBuffer
from seizurewatch.schedule import WindowSchedule
from seizurewatch.snippet import SignalTail, snippet_payload
from seizurewatch.sources import Source
from seizurewatch.streamquality import StreamingQuality
from seizurewatch.types import Window

log = logging.getLogger("seizurewatch.pipeline")  # the stream's log lines, under the pipeline's name


@dataclass
class StageTimes:
    """Seconds spent per stage (for the benchmark's breakdown)."""

    read: float = 0.0
    preprocess: float = 0.0
    buffer: float = 0.0
    quality: float = 0.0
    inference: float = 0.0
    decision: float = 0.0
    publish: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in self.__dict__.items()}


class Windower:
    """Blocks in; windows of ``schedule`` and their quality verdicts out, oldest first.

    Quality is judged on the same windows before filtering: the signal as the amplifier sent it (a
    band-pass hides clipping plateaus and mains hum, and NaNs must not reach filter state); a device
    profile's ``amplitude_uv`` adds its range check. ``tail`` keeps the last seconds of the filtered
    signal (the EEG behind an alarm) when a block is pushed with ``keep_tail``."""

    def __init__(self, pre: Preprocessor, schedule: WindowSchedule, line_freq: float,
                 device: DeviceProfile | None, times: StageTimes) -> None:
        spec = pre.spec
        self.pre, self.device, self.times = pre, device, times
        self.channels = tuple(spec.channels)
        self.ring = RingBuffer(len(spec.channels), schedule, spec.rate)
        self.quality = StreamingQuality(QualityChecker(spec.channels, spec.rate, line_freq), schedule)
        self.tail = SignalTail(self.channels, spec.rate)

    @classmethod
    def for_source(cls, source: Source, device: DeviceProfile, meta: ModelMeta, patient: str, line_freq: float,
                   times: StageTimes) -> Windower:
        """The front end of an opened ``source`` for ``meta``'s model: DataError when its channels, rate or
        length cannot give the model's windows."""
        spec = meta.preprocess
        where = f"{source.description} (patient {patient}, device {device.name})"
        if not same_rate(source.rate, device.sampling_rate):
            log.warning("source rate differs from device profile; resampling",
                        extra={"patient": patient, "source_rate": source.rate, "device_rate": device.sampling_rate})
        pre = Preprocessor(spec, source.channels, source.rate, where, canon=device.canonical)
        check_rate_carries_band(source.rate, spec, where)
        duration = getattr(source, "duration", None)  # a recording's length (a live stream has none)
        if duration is not None and duration < meta.window_s:
            raise DataError(f"{where}: the recording is {duration:g} s long, shorter than one window of the model "
                            f"({meta.window_s:g} s): nothing could be classified")
        return cls(pre, meta.schedule, line_freq, device, times)

    @property
    def fill_ratio(self) -> float:
        return self.ring.fill_ratio

    def push(self, data: np.ndarray, t0: float, wall_received: float,
             keep_tail: bool = False) -> tuple[list[Window], list[QualityVerdict]]:
        """One block of raw (channels, samples) starting at stream time ``t0``: the windows it completes and
        their verdicts, one each."""
        c0 = time.perf_counter()
        raw, x = self.pre.process_with_raw(data)
        if keep_tail:
            self.tail.push(t0, x)
        c1 = time.perf_counter()
        windows = self.ring.push(x, wall_received)
        c2 = time.perf_counter()
        verdicts = self.quality.push(raw)
        if self.device is not None and self.device.amplitude_uv is not None and windows:
            verdicts = with_amplitude(verdicts, [w.data for w in windows], self.device.amplitude_uv, self.channels)
        self.times.preprocess += c1 - c0
        self.times.buffer += c2 - c1
        self.times.quality += time.perf_counter() - c2
        if len(verdicts) != len(windows):  # one schedule makes them agree; never skip a window in silence
            raise RuntimeError(f"quality verdicts ({len(verdicts)}) out of step with windows ({len(windows)})")
        return windows, verdicts

    def reset(self, t_next: float, filters: bool = False) -> None:
        """Start over after a gap (the next sample is at ``t_next``): a full window again before the next
        verdict; ``filters``: the preprocessing's filter state too (a stream lost)."""
        self.ring.reset(t_next)
        self.quality.reset()
        self.tail.clear()
        if filters:
            self.pre.reset()

    def snippet(self, patient: str, ev: Event) -> dict[str, Any] | None:
        """The EEG behind an alarm start: the kept signal up to its decision (None: none kept)."""
        cut = self.tail.cut(ev.t)
        if cut is None:
            return None
        t0, x = cut
        return snippet_payload(patient, ev.alarm_id, t0, x, self.tail.rate, self.tail.channels, ev.probability)
