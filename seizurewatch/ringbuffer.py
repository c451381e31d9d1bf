"""Fixed-size ring buffer that emits a window of ``window`` samples every ``hop`` samples.

Memory is one (channels, window) float32 array per stream, whatever the block sizes:
a block larger than the buffer is consumed piece by piece, emitting each window as its
last sample arrives, so no history is ever copied beyond the window handed out.
"""

from __future__ import annotations

import numpy as np

from seizurewatch.types import Window


class RingBuffer:
    def __init__(self, n_channels: int, window: int, hop: int, rate: float) -> None:
        if window < 1 or hop < 1:
            raise ValueError("window and hop must be >= 1 sample")
        self.n_channels, self.window, self.hop, self.rate = n_channels, window, hop, rate
        self.buf = np.zeros((n_channels, window), dtype=np.float32)
        self.write_pos = 0  # next column to write
        self.filled = 0  # valid samples in the buffer (<= window)
        self.since_emit = 0  # samples since the last window (or since reset)
        self.total = 0  # samples seen since the stream time origin t0
        self.t0 = 0.0  # stream time of sample 0 of ``total``
        self.emitted = 0

    def reset(self, t_next: float) -> None:
        """Drop the history (after a gap); the next sample is at stream time ``t_next``."""
        self.filled = 0
        self.since_emit = 0
        self.write_pos = 0
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
        while pos < n:
            # Samples until the next window is due (first window: once the buffer is full).
            due = self.window - self.filled if self.filled < self.window else self.hop - self.since_emit
            take = min(due, n - pos, self.window)
            self._write(block[:, pos : pos + take])
            pos += take
            if take == due:
                out.append(self._emit(wall_received))
        return out

    def _write(self, x: np.ndarray) -> None:
        m = x.shape[1]
        first = min(m, self.window - self.write_pos)
        self.buf[:, self.write_pos : self.write_pos + first] = x[:, :first]
        if m > first:
            self.buf[:, : m - first] = x[:, first:]
        self.write_pos = (self.write_pos + m) % self.window
        self.filled = min(self.window, self.filled + m)
        self.since_emit += m
        self.total += m

    def _emit(self, wall_received: float) -> Window:
        data = np.concatenate((self.buf[:, self.write_pos :], self.buf[:, : self.write_pos]), axis=1)
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
