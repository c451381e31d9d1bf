"""Sliding-window buffer that emits a window every hop, on a ``schedule.WindowSchedule``.

Windows are read-only views into the buffer, never copies: a 30 s window every 1 s would
otherwise copy each sample 30 times. Samples are appended after the newest one; when the
buffer is full its last ``window`` samples move to a freshly allocated buffer, so memory
already handed out in a window is never written again and a window stays valid as long as
it is referenced. Memory is one (channels, window + slack) float32 array per stream: the slack is
8 hops, and grows to fit the largest block seen, up to two windows (a larger block is consumed
piece by piece). ``as_batch`` turns consecutive windows into the (windows, channels, samples)
batch the model takes, still without a copy.
"""

from __future__ import annotations

import numpy as np

from seizurewatch.schedule import WindowSchedule
from seizurewatch.types import Window

SLACK_HOPS = 8  # room for this many hops after a full window before the buffer is renewed
MAX_SLACK_WINDOWS = 2  # the room grows to fit the largest block seen (a replay at speed max), up to this


class RingBuffer:
    """A window of ``schedule.window`` s every ``schedule.hop`` s of (channels, samples) at ``rate`` Hz;
    ``window``/``hop``: the same in samples."""

    def __init__(self, n_channels: int, schedule: WindowSchedule, rate: float) -> None:
        window, hop = schedule.samples(rate)
        self.schedule = schedule
        self.n_channels, self.window, self.hop, self.rate = n_channels, window, hop, rate
        # Slack: several hops (a live stream's blocks are far smaller), never more than a window's worth.
        self.capacity = window + max(1, min(SLACK_HOPS * hop, window))
        self.max_capacity = window + max(self.capacity - window, MAX_SLACK_WINDOWS * window)
        self.buf = np.zeros((n_channels, self.capacity), dtype=np.float32)
        self.end = 0  # columns in use; the newest sample is at end - 1
        self.filled = 0  # valid samples since the reset, up to ``window``
        self.since_emit = 0  # samples since the last window (or since reset)
        self.total = 0  # samples seen since the stream time origin t0
        self.t0 = 0.0  # stream time of sample 0 of ``total``
        self.emitted = 0

    def reset(self, t_next: float) -> None:
        """Drop the history (after a gap); the next sample is at stream time ``t_next``."""
        self.filled = 0
        self.since_emit = 0
        self.end = 0
        self.total = 0
        self.t0 = t_next

    @property
    def fill_ratio(self) -> float:
        return self.filled / self.window

    def push(self, block: np.ndarray, wall_received: float = 0.0) -> list[Window]:
        """Append (channels, n) samples; return the windows completed by them, oldest first."""
        if block.shape[0] != self.n_channels:
            raise ValueError(f"block has {block.shape[0]} channels, buffer has {self.n_channels}")
        out: list[Window] = []
        pos, n = 0, block.shape[1]
        if self.filled + n > self.capacity and self.capacity < self.max_capacity:
            self.capacity = min(self.window + n, self.max_capacity)  # grow to fit blocks this size from now on
            self._renew()
        elif self.end + n > self.capacity and self.filled + n <= self.capacity:
            self._renew()  # now rather than halfway: the block's windows then share one buffer (one batch view)
        while pos < n:
            if self.end == self.capacity:
                self._renew()
            # Samples until the next window is due (first window: once the buffer is full).
            due = self.window - self.filled if self.filled < self.window else self.hop - self.since_emit
            take = min(due, n - pos, self.capacity - self.end)
            self.buf[:, self.end : self.end + take] = block[:, pos : pos + take]
            self.end += take
            self.filled = min(self.window, self.filled + take)
            self.since_emit += take
            self.total += take
            pos += take
            if take == due:
                out.append(self._emit(wall_received))
        return out

    def _renew(self) -> None:
        """Carry the newest ``filled`` samples into a new buffer; the old one lives on in its windows."""
        keep = self.filled
        fresh = np.empty((self.n_channels, self.capacity), dtype=np.float32)
        fresh[:, :keep] = self.buf[:, self.end - keep : self.end]
        self.buf, self.end = fresh, keep

    def _emit(self, wall_received: float) -> Window:
        data = self.buf[:, self.end - self.window : self.end]
        data.flags.writeable = False  # neighbouring windows share these samples
        self.since_emit = 0
        t_end = self.t0 + self.total / self.rate
        w = Window(
            data=data,
            rate=self.rate,
            t_start=t_end - self.window / self.rate,
            t_end=t_end,
            index=self.emitted,
            wall_received=wall_received,
        )
        self.emitted += 1
        return w


def _address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def as_batch(windows: list[Window]) -> np.ndarray:
    """(windows, channels, samples) from windows of one stream, without copying a sample.

    Windows emitted together lie in one buffer at a constant stride, and the buffer never
    rewrites what it handed out: the batch is a read-only strided view of it (the model's thread
    makes it contiguous, off the event loop). Anything else (windows from two buffers) is stacked."""
    first = windows[0].data
    if len(windows) == 1:
        return first[None]
    item = first.itemsize
    step_bytes = _address(windows[1].data) - _address(first)
    uniform = first.base is not None and step_bytes > 0 and step_bytes % item == 0 and all(
        w.data.base is first.base and w.data.strides == first.strides
        and _address(w.data) - _address(first) == i * step_bytes for i, w in enumerate(windows))
    if not uniform:
        return np.stack([w.data for w in windows])
    return np.lib.stride_tricks.as_strided(first, (len(windows), *first.shape), (step_bytes, *first.strides),
                                           writeable=False)
