"""Replays a recording (EDF/EDF+, BDF/BDF+, text with its rate; see seizurewatch.recordings)
as if it were a device: chunked reads, real-time pacing
(or ``speed`` times faster, or as fast as the pipeline takes it with ``speed="max"``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np

from seizurewatch.recordings import Recording, open_recording
from seizurewatch.types import Annotation, Block, Gap, StreamStatus

# At speed max: a window's worth of windows per hand-over to the model (fewer, longer turns for its thread).
FAST_CHUNK_S = 30.0


class EdfReplaySource:
    def __init__(self, path: str, speed: float | str = 1.0, chunk_s: float = 0.25, loop: bool = False,
                 rate: float | None = None, units: str | None = None) -> None:
        self.path = path
        self.file_rate = rate  # text signals without a sidecar
        self.file_units = units  # channels declaring no unit
        self.speed = speed
        self.chunk_s = chunk_s
        self.loop = loop
        self._rec: Recording | None = None
        self.channels: tuple[str, ...] = ()
        self.rate = 0.0
        self.annotations: tuple[Annotation, ...] = ()
        self.start_datetime = ""  # the recording's start (ISO), from its header when it says
        self.description = f"edf:{path}"
        self.samples_read = 0
        self.read_seconds = 0.0

    async def open(self) -> None:
        self._rec = await asyncio.to_thread(open_recording, self.path, self.file_rate, self.file_units)
        h = self._rec.header
        self.channels, self.rate, self.annotations = h.channels, h.rate, h.annotations
        self.start_datetime = h.start_datetime

    @property
    def duration(self) -> float:
        assert self._rec is not None
        return self._rec.header.duration

    async def items(self) -> AsyncIterator[Block | Gap | StreamStatus]:
        assert self._rec is not None, "open() first"
        rec = self._rec
        fast = self.speed == "max"
        chunk_s = max(self.chunk_s, FAST_CHUNK_S) if fast else self.chunk_s
        chunk = max(1, int(round(chunk_s * self.rate)))
        offset_t = 0.0
        while True:
            start_wall = time.monotonic()
            pos = 0
            while pos < rec.header.n_samples:
                if fast:  # the pipeline waits for every block anyway; a reader thread would only contend
                    data = self._timed_read(rec, pos, chunk)  # with the event loop for the GIL pyedflib holds
                else:
                    data = await asyncio.to_thread(self._timed_read, rec, pos, chunk)
                n = data.shape[1]
                if not fast:
                    # A device delivers a block when its last sample exists.
                    due = start_wall + (pos + n) / self.rate / float(self.speed)
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                self.samples_read += n
                yield Block(data, self.rate, offset_t + pos / self.rate, self.channels, time.monotonic())
                pos += n
            if not self.loop:
                return
            offset_t += rec.header.duration
            yield Gap(offset_t, 0.0, reason="replay_loop")

    def _timed_read(self, rec: Recording, pos: int, n: int) -> np.ndarray:
        # Timed inside the worker thread: the time spent reading, not waiting for the event loop.
        t0 = time.perf_counter()
        try:
            return rec.read(pos, n)
        finally:
            self.read_seconds += time.perf_counter() - t0

    async def close(self) -> None:
        if self._rec is not None:
            self._rec.close()
            self._rec = None
