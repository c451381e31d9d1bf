"""Signal-quality checks on each window, so 'cannot tell' is never reported as 'no seizure'.

Fault types: ``nonfinite`` (NaN/inf), ``flatline`` (a dead channel), ``clipping`` (the
amplifier saturates: many samples pinned at the window's extreme), ``line_noise``
(mains hum dominates the spectrum: usually a lifted electrode).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sp_fft


@dataclass(frozen=True)
class QualityVerdict:
    faults: dict[str, list[str]] = field(default_factory=dict)  # every fault type, channels ([] = fine)
    usable: bool = True


class QualityChecker:
    FLAT_STD = 1e-2  # physical units (µV): below any real EEG, above float noise
    CLIP_FRACTION = 0.02  # share of a window pinned at exactly its max or min
    CLIP_RUN_S = 0.05  # or one value held this long (stuck at a rail)
    CLIP_RUN_MIN = 10  # samples, at low rates (integer-quantised 100 Hz scalp EEG repeats a value up to 6x)
    LINE_FRACTION = 0.5  # share of power within ±1 Hz of mains

    def __init__(self, channels: tuple[str, ...], rate: float, line_freq: float) -> None:
        self.channels = channels
        self.rate = rate
        self.line_freq = line_freq if line_freq and line_freq < rate / 2 - 1 else None

    def check(self, x: np.ndarray) -> QualityVerdict:
        """One (channels, samples) window."""
        return self.check_batch(x[None])[0]

    def check_batch(self, x: np.ndarray) -> list[QualityVerdict]:
        """(windows, channels, samples) at once: the same verdicts as ``check`` per window, without
        a Python round per window (replaying at speed max hands over dozens of windows per block)."""
        ch = self.channels
        x = np.asarray(x)
        finite_rows = np.isfinite(x).all(axis=2)  # (B, C)
        ok = finite_rows.all(axis=1)  # windows without any NaN/inf
        out: list[QualityVerdict | None] = [None] * x.shape[0]
        for b in np.flatnonzero(~ok):
            # Nothing else is meaningful on a window with NaNs; never classify it.
            nonfinite = [ch[i] for i in np.flatnonzero(~finite_rows[b])]
            out[b] = QualityVerdict({"nonfinite": nonfinite, "flatline": [], "clipping": [], "line_noise": []},
                                    usable=False)
        good = np.flatnonzero(ok)
        if len(good):
            xs = x if len(good) == x.shape[0] else x[good]
            std = xs.std(axis=2)
            n = xs.shape[2]
            hi = (xs == xs.max(axis=2, keepdims=True)).sum(axis=2)
            lo = (xs == xs.min(axis=2, keepdims=True)).sum(axis=2)
            flat_mask = std < self.FLAT_STD
            clip_mask = ((np.maximum(hi, lo) > self.CLIP_FRACTION * n) | self._stuck(xs)) & ~flat_mask
            line_mask = self._line_noise(xs) if self.line_freq else np.zeros_like(flat_mask)
            for j, b in enumerate(good):
                flat = [ch[i] for i in np.flatnonzero(flat_mask[j])]
                clipped = [ch[i] for i in np.flatnonzero(clip_mask[j])]
                line = [ch[i] for i in np.flatnonzero(line_mask[j])]
                usable = int((flat_mask[j] | clip_mask[j]).sum()) <= len(ch) // 2
                out[b] = QualityVerdict({"nonfinite": [], "flatline": flat, "clipping": clipped, "line_noise": line},
                                        usable)
        return [v for v in out if v is not None]

    def _stuck(self, x: np.ndarray) -> np.ndarray:
        """(B, C) mask of channels holding one value for at least CLIP_RUN_S somewhere in the window.

        A saturated amplifier holds its rail wherever that is (not necessarily the window's maximum:
        Dog_1 rec04's c014 sticks at 1032.8 µV for 0.2 s while the window peaks at 1349 µV). Real EEG
        at >= 100 Hz never repeats a value exactly for 50 ms (longest run in the Dog_1 interictal
        recordings: 6 samples = 15 ms)."""
        k = max(self.CLIP_RUN_MIN, int(round(self.CLIP_RUN_S * self.rate))) - 1  # equal consecutive diffs
        if x.shape[-1] <= k:
            return np.zeros(x.shape[:-1], dtype=bool)
        tol = 1e-6 * (x.max(axis=-1, keepdims=True) - x.min(axis=-1, keepdims=True))
        run = np.abs(np.diff(x, axis=-1)) <= tol  # run[i]: sample i+1 repeats sample i
        covered = 1  # invariant: run[i] == all repeats in [i, i + covered); doubling ANDs beat a cumsum 2x
        while covered < k:
            step = min(covered, k - covered)
            run = run[..., :-step] & run[..., step:]
            covered += step
        return np.asarray(run.any(axis=-1))

    def _line_noise(self, x: np.ndarray) -> np.ndarray:
        """(B, C) mask of channels whose power within ±1 Hz of mains exceeds LINE_FRACTION.

        scipy's FFT keeps float32 (numpy's would convert to float64): several times faster, and
        the fraction is compared with 0.5, far above float32 rounding."""
        assert self.line_freq is not None
        spec = sp_fft.rfft(x - x.mean(axis=-1, keepdims=True), axis=-1)
        power = spec.real**2 + spec.imag**2
        freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / self.rate)
        band = np.flatnonzero(np.abs(freqs - self.line_freq) <= 1.0)  # contiguous bins: slices, no copies
        above = int(np.searchsorted(freqs, 0.5))
        total = power[..., above:].sum(axis=-1, dtype=np.float64) + 1e-12
        frac = power[..., band[0] : band[-1] + 1].sum(axis=-1, dtype=np.float64) / total if len(band) else 0 * total
        return frac > self.LINE_FRACTION
