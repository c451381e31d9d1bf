"""The signal-quality verdict of every window, computed once per sample instead of once per window.

Windows overlap (a 30 s window every 1 s holds each sample 30 times), so checking each window
from scratch costs the overlap factor in full. Here the stream is cut into segments of
``gcd(window, hop)`` samples, every window is a whole number of segments, and each segment
is summarised once: finiteness, mean and sum of squared deviations (combined exactly by Chan's
formula), extremes and how often they occur, runs of repeated values (tracked across segment
boundaries), and the few DFT coefficients the mains-hum test needs (a window's coefficient is
the sum of its segments' coefficients taken against the stream's sample index). A window's
verdict is then a small reduction over its segments, equal to ``QualityChecker.check`` on the
same samples (up to float rounding in the spectral share, compared with 0.5).
"""

from __future__ import annotations

import math

import numpy as np

from seizurewatch.quality import QualityChecker, QualityVerdict
from seizurewatch.ringbuffer import RingBuffer
from seizurewatch.schedule import WindowSchedule

_SUMMED = ("coef", "nyq")  # statistics kept as running sums (read as differences of two rows)
_DOUBLE = {"c": np.complex128, "f": np.float64}
_MAX_SEGMENTS = 4096  # beyond this many segments per window (a hop sharing few samples with the window) check windows


class StreamingQuality:
    """Fed the unfiltered samples as they come; returns the verdicts of the windows they complete.

    Emits on ``schedule`` at the checker's rate (a window once ``window`` samples have arrived since the
    last reset, then one every ``hop``): given the ring buffer's schedule, its verdicts pair one to one
    with the ring's windows."""

    def __init__(self, checker: QualityChecker, schedule: WindowSchedule) -> None:
        self.checker = checker
        self.schedule = schedule
        self.window, self.hop = window, hop = schedule.samples(checker.rate)
        self.n_channels = len(checker.channels)
        seg = math.gcd(window, hop)
        self.seg = seg
        # Segment statistics need a repeat run to fit a segment, and segments to be few per window.
        self.per_window = seg <= checker.run_diffs or window // seg > _MAX_SEGMENTS
        if self.per_window:
            self.raw_ring = RingBuffer(self.n_channels, schedule, checker.rate)
        else:
            self.n_win, self.n_hop = window // seg, hop // seg
            self._spectral_basis()
        self.reset()

    def _spectral_basis(self) -> None:
        """Real matrix turning a segment into the window-grid DFT coefficients the hum test reads."""
        n, seg = self.window, self.seg
        freqs = np.fft.rfftfreq(n, 1.0 / self.checker.rate)
        self.even = n % 2 == 0
        lf = self.checker.line_freq
        band = np.flatnonzero(np.abs(freqs - lf) <= 1.0) if lf else np.zeros(0, int)
        above = int(np.searchsorted(freqs, 0.5))
        self.low_bins = np.arange(1, above)  # removed from the total, as the per-window check does
        bins = np.concatenate((self.low_bins, band)).astype(np.float64)
        self.n_low, self.n_band = len(self.low_bins), len(band)
        m = np.arange(seg)
        ang = -2 * np.pi * np.outer(m, bins) / n
        cols = [np.cos(ang), np.sin(ang)]
        if self.even:
            cols.append(((-1.0) ** m)[:, None])  # the Nyquist coefficient (unpaired in Parseval's sum)
        self.basis = np.hstack(cols).astype(np.float32) if lf else None
        q = np.arange(self.n_win)  # a segment's offset in the stream, modulo the window, in segments
        self.phase = np.exp(-2j * np.pi * np.outer(q * seg, bins) / n).astype(np.complex64)
        self.nyq_sign = (-1.0) ** (q * seg)

    def reset(self) -> None:
        """Forget everything (after a gap): the next window needs ``window`` fresh samples."""
        if self.per_window:
            self.raw_ring.reset(0.0)
            return
        self.pending = np.zeros((self.n_channels, 0), np.float32)
        self.first = 0  # stream index of the first segment kept in ``stats``
        self.count = 0  # segments since the reset
        self.next_end = self.n_win  # segment index just past the next window
        self.stats: dict[str, np.ndarray] = {}
        self.last: np.ndarray | None = None  # the previous sample, for repeat runs across pushes
        self.tail = np.zeros((self.n_channels, self.checker.run_diffs - 1), bool)  # the last repeat flags

    def push(self, raw: np.ndarray) -> list[QualityVerdict]:
        """(channels, n) unfiltered samples; the verdicts of the windows they complete, oldest first."""
        if self.per_window:
            windows = self.raw_ring.push(raw)
            return self.checker.check_batch(np.stack([w.data for w in windows])) if windows else []
        x = np.concatenate((self.pending, raw), axis=1) if self.pending.shape[1] else raw
        n_full = x.shape[1] // self.seg
        self.pending = x[:, n_full * self.seg :].copy()
        ends = []
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf spoil only the windows they are in
            if n_full:
                self._append(self._summarise(x[:, : n_full * self.seg], n_full))
            while self.next_end <= self.count:
                ends.append(self.next_end)
                self.next_end += self.n_hop
            out = self._verdicts(np.array(ends)) if ends else []
        keep_from = self.next_end - self.n_win  # the oldest segment a future window needs
        if keep_from > self.first:
            drop = min(keep_from, self.count) - self.first
            self.stats = {k: v[drop:] for k, v in self.stats.items()}
            self.first += drop
        return out

    def _summarise(self, x: np.ndarray, n_full: int) -> dict[str, np.ndarray]:
        """Per-segment statistics, each shaped (segments, channels[, ...])."""
        c, seg = self.n_channels, self.seg
        s = x.reshape(c, n_full, seg)
        mean = s.mean(axis=2, dtype=np.float64)
        dev = s - mean[:, :, None]
        mx, mn = s.max(axis=2), s.min(axis=2)
        st = {
            "finite": np.isfinite(s).all(axis=2).T,
            "mean": mean.T,
            "m2": np.einsum("csk,csk->cs", dev, dev).T,
            "max": mx.T,
            "min": mn.T,
            "n_max": (s == mx[:, :, None]).sum(axis=2).T,
            "n_min": (s == mn[:, :, None]).sum(axis=2).T,
        }
        st["run_any"], st["run_inside"] = self._runs(x, n_full)
        if self.basis is not None:
            proj = s.reshape(c * n_full, seg) @ self.basis
            proj = proj.reshape(c, n_full, -1).transpose(1, 0, 2)  # (segments, channels, columns)
            nb = self.n_low + self.n_band
            q = (self.count + np.arange(n_full)) % self.n_win
            bad = ~st["finite"]  # windows holding them are judged non-finite; keep them out of the running sums
            coef = (proj[..., :nb] + 1j * proj[..., nb : 2 * nb]) * self.phase[q][:, None, :]
            coef[bad] = 0
            st["coef"] = coef
            if self.even:
                nyq = proj[..., 2 * nb] * self.nyq_sign[q][:, None]
                nyq[bad] = 0
                st["nyq"] = nyq
        return st

    def _runs(self, x: np.ndarray, n_full: int) -> tuple[np.ndarray, np.ndarray]:
        """Per segment: does a run of ``run_diffs`` repeats end in it (counting from before it), and does
        one lie wholly inside it (what a window starting at this segment sees)."""
        k, seg = self.checker.run_diffs, self.seg
        prev = x[:, :1] if self.last is None else self.last[:, None]
        eq = QualityChecker.repeats(np.concatenate((prev, x[:, :-1]), axis=1), x)  # eq[p]: x[p] repeats x[p-1]
        if self.last is None:
            eq[:, 0] = False  # no sample before the first one since the reset
        ext = np.concatenate((self.tail, eq), axis=1)  # with the flags of the previous push's last samples
        self.last, self.tail = x[:, -1].copy(), ext[:, ext.shape[1] - (k - 1):]
        run, covered = ext, 1  # invariant: run[i] == all of ext[i : i + covered]; doubling ANDs
        while covered < k:
            step = min(covered, k - covered)
            run = run[:, :-step] & run[:, step:]
            covered += step
        long = run.reshape(self.n_channels, n_full, seg)  # long[p]: the k repeats up to sample p all hold
        inside = long[:, :, k:]  # the run's samples all lie within this segment
        return np.asarray(long.any(axis=2).T), np.asarray(inside.any(axis=2).T)

    def _append(self, st: dict[str, np.ndarray]) -> None:
        """Append segments; the DFT coefficients are kept as running sums in double precision (row i:
        the sum over the kept segments before i; one more row than the other statistics)."""
        for key in _SUMMED:
            if key in st:
                run: np.ndarray = np.cumsum(st[key], axis=0, dtype=_DOUBLE[st[key].dtype.kind])
                if self.stats:
                    st[key] = run + self.stats[key][-1]
                else:
                    st[key] = np.concatenate((np.zeros_like(run[:1]), run))
        self.stats = {k: np.concatenate((self.stats[k], v)) for k, v in st.items()} if self.stats else st
        self.count += len(st["mean"])

    def _verdicts(self, ends: np.ndarray) -> list[QualityVerdict]:
        """Verdicts of the windows ending at segments ``ends`` (every ``n_hop``-th): reductions over
        strided views of the kept segments (no copies), and running sums for the DFT coefficients."""
        ck, n, seg, w = self.checker, self.window, self.seg, self.n_win
        first = int(ends[0]) - w - self.first  # kept-row index of the first window's first segment
        rows = slice(first, first + len(ends) * self.n_hop, self.n_hop)

        def win(key: str) -> np.ndarray:  # (windows, channels[, ...], segments): a view
            v = self.stats[key][first:]
            return np.lib.stride_tricks.as_strided(
                v, (len(ends), *v.shape[1:], w), (self.n_hop * v.strides[0], *v.strides[1:], v.strides[0]),
                writeable=False)

        nonfinite = np.asarray(~win("finite").all(axis=-1))
        means = win("mean")
        mean = means.mean(axis=-1)
        m2 = win("m2").sum(axis=-1) + seg * ((means - mean[..., None]) ** 2).sum(axis=-1)
        flat = np.sqrt(np.maximum(m2, 0.0) / n) < ck.FLAT_STD
        maxes, mins = win("max"), win("min")
        mx, mn = maxes.max(axis=-1), mins.min(axis=-1)
        hi = (win("n_max") * (maxes == mx[..., None])).sum(axis=-1)
        lo = (win("n_min") * (mins == mn[..., None])).sum(axis=-1)
        stuck = self.stats["run_inside"][rows] | win("run_any")[..., 1:].any(axis=-1)
        clip = ck.clip_mask(np.maximum(hi, lo), n, stuck, flat)
        line = np.zeros_like(flat)
        if self.basis is not None and self.n_band:
            power = self._window_sums("coef", rows)
            power = power.real**2 + power.imag**2  # (windows, channels, bins)
            nyq2 = self._window_sums("nyq", rows) ** 2 if self.even else 0.0
            # Parseval over the one-sided spectrum of the mean-removed window, minus the bins below 0.5 Hz.
            total = (n * m2 + nyq2) / 2 - power[..., : self.n_low].sum(axis=-1) + 1e-12
            line = power[..., self.n_low :].sum(axis=-1) / total > ck.LINE_FRACTION
        return ck.verdicts(nonfinite, flat, clip, np.asarray(line))

    def _window_sums(self, key: str, rows: slice) -> np.ndarray:
        """Sum of a running-summed statistic over each window's segments: a difference of two rows."""
        run = self.stats[key]
        return run[rows.start + self.n_win : rows.stop + self.n_win : rows.step] - run[rows]
