"""Signal-quality checks on each window, so 'cannot tell' is never reported as 'no seizure'.

Fault types: ``nonfinite`` (NaN/inf), ``flatline`` (a dead channel), ``clipping`` (the
amplifier saturates: many samples pinned at the window's extreme), ``line_noise``
(mains hum dominates the spectrum: usually a lifted electrode).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class QualityVerdict:
    faults: dict[str, list[str]] = field(default_factory=dict)  # every fault type, channels ([] = fine)
    usable: bool = True


class QualityChecker:
    FLAT_STD = 1e-2  # physical units (µV): below any real EEG, above float noise
    CLIP_FRACTION = 0.02  # share of a window pinned at exactly its max or min
    LINE_FRACTION = 0.5  # share of power within ±1 Hz of mains

    def __init__(self, channels: tuple[str, ...], rate: float, line_freq: float) -> None:
        self.channels = channels
        self.rate = rate
        self.line_freq = line_freq if line_freq and line_freq < rate / 2 - 1 else None

    def check(self, x: np.ndarray) -> QualityVerdict:
        ch = self.channels
        finite = np.isfinite(x)
        nonfinite = [ch[i] for i in np.flatnonzero(~finite.all(axis=1))]
        if nonfinite:
            # Nothing else is meaningful on a window with NaNs; never classify it.
            faults = {"nonfinite": nonfinite, "flatline": [], "clipping": [], "line_noise": []}
            return QualityVerdict(faults, usable=False)
        std = x.std(axis=1)
        flat = [ch[i] for i in np.flatnonzero(std < self.FLAT_STD)]
        n = x.shape[1]
        hi = (x == x.max(axis=1, keepdims=True)).sum(axis=1)
        lo = (x == x.min(axis=1, keepdims=True)).sum(axis=1)
        clip_mask = (np.maximum(hi, lo) > self.CLIP_FRACTION * n) & (std >= self.FLAT_STD)
        clipped = [ch[i] for i in np.flatnonzero(clip_mask)]
        line = self._line_noise(x) if self.line_freq else []
        bad = len(set(flat) | set(clipped))
        usable = bad <= len(ch) // 2
        return QualityVerdict({"nonfinite": [], "flatline": flat, "clipping": clipped, "line_noise": line}, usable)

    def _line_noise(self, x: np.ndarray) -> list[str]:
        spec = np.abs(np.fft.rfft(x - x.mean(axis=1, keepdims=True), axis=1)) ** 2
        freqs = np.fft.rfftfreq(x.shape[1], 1.0 / self.rate)
        assert self.line_freq is not None
        band = np.abs(freqs - self.line_freq) <= 1.0
        total = spec[:, freqs >= 0.5].sum(axis=1) + 1e-12
        frac = spec[:, band].sum(axis=1) / total
        return [self.channels[i] for i in np.flatnonzero(frac > self.LINE_FRACTION)]
