"""Signal-quality checks on each window, so 'cannot tell' is never reported as 'no seizure'.

Fault types: ``nonfinite`` (NaN/inf), ``flatline`` (a dead channel), ``clipping`` (the
amplifier saturates: many samples pinned at the window's extreme), ``line_noise``
(mains hum dominates the spectrum: usually a lifted electrode), ``amplitude`` (the window's
amplitude is far outside what the device profile calls plausible: a unit or gain error).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# A window with a quarter of its channels dead (flat) is not classified ("cannot tell"), and a flatline
# fault that covers it escalates (escalation.py): with 7 of 16 channels dead the model saw half a head and
# read it as calm, and nobody was paged. Clipping keeps the wider margin (more than half of the channels
# flat or clipped): an amplifier saturates on high-amplitude ictal discharges, so clipped channels often
# *are* the seizure (Dog_1 rec04 clips 7 of 16 channels 5 s after its onset), and a detector that stops
# classifying there would be blind where it matters most.
MAX_FLAT_SHARE = 0.25
MAX_BAD_SHARE = 0.5  # flat or clipped together: more than this share


def cannot_tell(flat: int, clipped: int, n_channels: int) -> bool:
    """A window with ``flat`` dead and ``clipped`` saturated channels of ``n_channels`` is not classified."""
    return n_channels > 0 and (flat >= MAX_FLAT_SHARE * n_channels or flat + clipped > MAX_BAD_SHARE * n_channels)


def too_many(bad: int, n_channels: int, fault_type: str | None = None) -> bool:
    """A lasting ``fault_type`` fault on ``bad`` of ``n_channels`` covers enough to escalate: the share that
    makes a window 'cannot tell' for that kind of fault (a quarter for dead channels, half for the others)."""
    share = MAX_FLAT_SHARE if fault_type == "flatline" else MAX_BAD_SHARE
    return n_channels > 0 and bad >= share * n_channels


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
        x = np.asarray(x)
        nonfinite = ~np.isfinite(x).all(axis=2)  # (B, C)
        shape = nonfinite.shape
        flat, clip, line = np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, bool)
        good = np.flatnonzero(~nonfinite.any(axis=1))  # nothing else is meaningful on a window with NaNs
        if len(good):
            xs = x if len(good) == x.shape[0] else x[good]
            hi = (xs == xs.max(axis=2, keepdims=True)).sum(axis=2)
            lo = (xs == xs.min(axis=2, keepdims=True)).sum(axis=2)
            flat[good] = xs.std(axis=2) < self.FLAT_STD
            clip[good] = self.clip_mask(np.maximum(hi, lo), xs.shape[2], self._stuck(xs), flat[good])
            if self.line_freq:
                line[good] = self._line_noise(xs)
        return self.verdicts(nonfinite, flat, clip, line)

    def clip_mask(self, pinned: np.ndarray, n: int, stuck: np.ndarray, flat: np.ndarray) -> np.ndarray:
        """Clipping: many samples pinned at the window's extreme, or one value held (not on a dead channel)."""
        return ((pinned > self.CLIP_FRACTION * n) | stuck) & ~flat

    @property
    def run_diffs(self) -> int:
        """Equal consecutive differences that make a channel 'stuck' (CLIP_RUN_S held, at least CLIP_RUN_MIN)."""
        return max(self.CLIP_RUN_MIN, int(round(self.CLIP_RUN_S * self.rate))) - 1

    @staticmethod
    def repeats(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``b`` repeats ``a``: equal up to float rounding (a resampled rail is not bit-exact), relative to
        the value itself so the test needs nothing but the two samples (the streaming checks see no window)."""
        return np.abs(b - a) <= 1e-6 * np.maximum(np.abs(a), np.abs(b))

    def verdicts(self, nonfinite: np.ndarray, flat: np.ndarray, clip: np.ndarray,
                 line: np.ndarray) -> list[QualityVerdict]:
        """One verdict per row of the (windows, channels) fault masks."""
        ch = self.channels
        out: list[QualityVerdict] = []
        faulty = (nonfinite | flat | clip | line).any(axis=1)
        for b in range(nonfinite.shape[0]):
            if not faulty[b]:  # the usual case, without a scan per fault type
                out.append(QualityVerdict({"nonfinite": [], "flatline": [], "clipping": [], "line_noise": []}))
                continue
            if nonfinite[b].any():  # never classify a window with NaN/inf; its other statistics mean nothing
                out.append(QualityVerdict({"nonfinite": [ch[i] for i in np.flatnonzero(nonfinite[b])],
                                           "flatline": [], "clipping": [], "line_noise": []}, usable=False))
                continue
            usable = not cannot_tell(int(flat[b].sum()), int((clip[b] & ~flat[b]).sum()), len(ch))
            out.append(QualityVerdict({"nonfinite": [],
                                       "flatline": [ch[i] for i in np.flatnonzero(flat[b])],
                                       "clipping": [ch[i] for i in np.flatnonzero(clip[b])],
                                       "line_noise": [ch[i] for i in np.flatnonzero(line[b])]}, usable))
        return out

    def _stuck(self, x: np.ndarray) -> np.ndarray:
        """(B, C) mask of channels holding one value for at least CLIP_RUN_S somewhere in the window.

        A saturated amplifier holds its rail wherever that is (not necessarily the window's maximum:
        Dog_1 rec04's c014 sticks at 1032.8 µV for 0.2 s while the window peaks at 1349 µV). Real EEG
        at >= 100 Hz never repeats a value exactly for 50 ms (longest run in the Dog_1 interictal
        recordings: 6 samples = 15 ms)."""
        k = self.run_diffs
        if x.shape[-1] <= k:
            return np.zeros(x.shape[:-1], dtype=bool)
        run = self.repeats(x[..., :-1], x[..., 1:])  # run[i]: sample i+1 repeats sample i
        covered = 1  # invariant: run[i] == all repeats in [i, i + covered); doubling ANDs beat a cumsum 2x
        while covered < k:
            step = min(covered, k - covered)
            run = run[..., :-step] & run[..., step:]
            covered += step
        return np.asarray(run.any(axis=-1))

    def _line_noise(self, x: np.ndarray) -> np.ndarray:
        """(B, C) mask of channels whose power within ±1 Hz of mains exceeds LINE_FRACTION.

        numpy's FFT (>= 2.0) keeps float32; the fraction is compared with 0.5, far above float32 rounding.
        Not scipy.fft: importing it costs the daemon 18 MiB and 0.3 s of start-up for one transform."""
        assert self.line_freq is not None
        spec = np.fft.rfft(x - x.mean(axis=-1, keepdims=True), axis=-1)
        power = spec.real**2 + spec.imag**2
        freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / self.rate)
        band = np.flatnonzero(np.abs(freqs - self.line_freq) <= 1.0)  # contiguous bins: slices, no copies
        above = int(np.searchsorted(freqs, 0.5))
        total = power[..., above:].sum(axis=-1, dtype=np.float64) + 1e-12
        frac = power[..., band[0] : band[-1] + 1].sum(axis=-1, dtype=np.float64) / total if len(band) else 0 * total
        return frac > self.LINE_FRACTION


def with_amplitude(verdicts: list[QualityVerdict], windows: list[np.ndarray], plausible: tuple[float, float],
                   channels: tuple[str, ...]) -> list[QualityVerdict]:
    """Each verdict with an ``amplitude`` fault (every channel, window not classified) when its window's
    median channel RMS lies outside ``plausible`` (µV): a recording 1000x too small (mV sent as µV) must be
    'cannot tell', never 'no seizure'. The median ignores a few dead or wild channels (their own faults)."""
    low, high = plausible
    out = []
    for verdict, x in zip(verdicts, windows):
        rms = float(np.median(x.std(axis=-1)))
        wrong = np.isfinite(rms) and not low <= rms <= high
        faults = {**verdict.faults, "amplitude": list(channels) if wrong else []}
        out.append(replace(verdict, faults=faults, usable=verdict.usable and not wrong))
    return out
