"""Preprocessing shared by the daemon and the offline tools, so a window is shaped the same
way in training and in production: channel map -> resample -> causal filters.

Every stage is stateful across blocks: feeding a recording in chunks of any size gives the
same output as feeding it whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from seizurewatch import filters
from seizurewatch.checks import check_number
from seizurewatch.devices import DeviceProfile, canonical_label
from seizurewatch.errors import DataError


@dataclass(frozen=True)
class PreprocessSpec:
    """What the model expects; stored in the model's metadata."""

    channels: tuple[str, ...]
    rate: float
    bandpass: tuple[float, float] | None = None
    notch: float | None = None

    def check(self, prefix: str = "preprocess.") -> None:
        """The filters fit the rate: band edges and notch below the Nyquist frequency (rate / 2). ValueError
        naming the key (``prefix`` + ``bandpass[1]``...), the value and the Nyquist frequency. One check
        for the dataset build, the trainer and the model loader."""
        check_number(self.rate, f"{prefix}rate", low=0, low_open=True, high=100_000)
        nyquist = self.rate / 2
        at = f"; the Nyquist frequency at {self.rate:g} Hz is {nyquist:g} Hz"
        try:
            if self.bandpass is not None:
                lo, hi = self.bandpass
                check_number(lo, f"{prefix}bandpass[0]", low=0, high=nyquist, high_open=True)
                check_number(hi, f"{prefix}bandpass[1]", low=lo, low_open=True, high=nyquist, high_open=True)
            if self.notch is not None:
                check_number(self.notch, f"{prefix}notch", low=0, low_open=True, high=nyquist, high_open=True)
        except ValueError as exc:
            raise ValueError(f"{exc}{at}") from None

    def to_json(self) -> dict:
        return {
            "channels": list(self.channels),
            "rate": self.rate,
            "bandpass": list(self.bandpass) if self.bandpass else None,
            "notch": self.notch,
        }

    @classmethod
    def from_json(cls, d: dict) -> PreprocessSpec:
        bp = d.get("bandpass")
        return cls(
            channels=tuple(d["channels"]),
            rate=float(d["rate"]),
            bandpass=(float(bp[0]), float(bp[1])) if bp else None,
            notch=float(d["notch"]) if d.get("notch") else None,
        )


def channel_indices(
    source_labels: tuple[str, ...] | list[str],
    wanted: tuple[str, ...] | list[str],
    where: str,
    canon=canonical_label,
) -> list[int]:
    """Indices into ``source_labels`` for each wanted label, matched by label, not position."""
    index = {canon(lab): i for i, lab in enumerate(source_labels)}
    missing = [w for w in wanted if canonical_label(w) not in index]
    if missing:
        raise DataError(
            f"{where}: channel(s) {', '.join(missing)} missing; "
            f"the source has: {', '.join(source_labels)}; the model needs: {', '.join(wanted)}"
        )
    return [index[canonical_label(w)] for w in wanted]


def band_edge(spec: PreprocessSpec) -> float:
    """The highest frequency the model looks at: its band-pass's upper edge, else its own Nyquist frequency."""
    return spec.bandpass[1] if spec.bandpass else spec.rate / 2


def check_rate_carries_band(rate: float, spec: PreprocessSpec, where: str) -> None:
    """DataError when a source at ``rate`` cannot carry the model's band: upsampling a 37 Hz recording to
    400 Hz adds samples, not the 18.5-150 Hz the model was trained to look at."""
    edge = band_edge(spec)
    if rate / 2 < edge:
        band = f"band-pass {spec.bandpass[0]:g}-{spec.bandpass[1]:g} Hz" if spec.bandpass else f"{spec.rate:g} Hz"
        raise DataError(f"{where}: sampled at {rate:g} Hz, it carries frequencies up to {rate / 2:g} Hz, below the "
                        f"model's band edge of {edge:g} Hz ({band}); record at {2 * edge:g} Hz or more, or use a "
                        "model made for this rate")


def check_device_fits_model(device: DeviceProfile, spec: PreprocessSpec, where: str) -> None:
    """At start, before any sample: the device profile has the model's channels and a rate that carries its band."""
    channel_indices(device.channels, spec.channels, f"{where} (device profile {device.name})", canon=device.canonical)
    check_rate_carries_band(device.sampling_rate, spec, f"{where} (device profile {device.name})")


SAME_RATE_TOLERANCE = 1e-3  # the one tolerance: rates closer than 0.1 % pass through, others are resampled


def same_rate(rate_in: float, rate_out: float) -> bool:
    """Whether ``rate_in`` is taken as ``rate_out`` unchanged (live and in dataset build alike)."""
    return abs(rate_out / rate_in - 1.0) <= SAME_RATE_TOLERANCE


class StreamingResampler:
    """Rational-rate polyphase resampler, state carried across blocks.

    Computes only the output samples (never the zero-stuffed upsampled signal), so cost and
    memory stay proportional to the output whatever the ratio. Rates within 0.1 % of each
    other (a device clock at 399.61 Hz for a nominal 400 Hz) are passed through unchanged.
    """

    def __init__(self, n_channels: int, rate_in: float, rate_out: float) -> None:
        self.rate_in, self.rate_out = rate_in, rate_out
        frac = Fraction(rate_out / rate_in).limit_denominator(1000)
        self.up, self.down = frac.numerator, frac.denominator
        self.identity = same_rate(rate_in, rate_out) or self.up == self.down
        if self.identity:
            return
        from scipy import signal  # here: a stream at the model's rate never needs scipy.signal (filters.py)

        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate
        h = signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        self.taps = -(-len(h) // self.up)  # input samples under the filter for one output
        padded = np.zeros(self.taps * self.up)
        padded[: len(h)] = h
        self.poly = padded.reshape(self.taps, self.up).T.copy()  # poly[p, j] = h[p + j*up]
        self.hist = np.zeros((n_channels, self.taps - 1))
        self.n_in = 0  # input samples consumed so far
        self.next_u = 0  # upsampled-domain index of the next output sample

    def process(self, x: np.ndarray) -> np.ndarray:
        if self.identity:
            return x
        n = x.shape[1]
        if n == 0:
            return x[:, :0]
        xcat = np.concatenate((self.hist, x), axis=1)
        end_u = (self.n_in + n) * self.up  # outputs whose newest input sample has arrived
        u = np.arange(self.next_u, end_u, self.down)
        start = self.n_in - (self.taps - 1)  # global index of xcat[:, 0]
        if len(u):
            base = u // self.up - start  # position in xcat of each output's newest input
            gathered = xcat[:, base[:, None] - np.arange(self.taps)[None, :]]  # (C, outputs, taps)
            y = np.einsum("ckj,kj->ck", gathered, self.poly[u % self.up])
            self.next_u = int(u[-1]) + self.down
        else:
            y = np.zeros((x.shape[0], 0))
        self.n_in += n
        self.hist = xcat[:, xcat.shape[1] - (self.taps - 1):] if self.taps > 1 else xcat[:, :0]
        return y.astype(np.float32)


class StreamingFilter:
    """Causal band-pass and/or notch (second-order sections), state kept across blocks."""

    def __init__(self, n_channels: int, rate: float, bandpass: tuple[float, float] | None, notch: float | None):
        if bandpass and not 0 < bandpass[0] < bandpass[1]:
            raise DataError(f"band-pass {bandpass}: need 0 < low < high")
        self.sos = filters.design(rate, bandpass, notch)
        self.zi = None if self.sos is None else np.zeros((self.sos.shape[0], n_channels, 2))

    def process(self, x: np.ndarray) -> np.ndarray:
        if self.sos is None or self.zi is None or x.shape[1] == 0:
            return x
        y, self.zi = filters.sosfilt(self.sos, x, self.zi)
        return y.astype(np.float32)


class Preprocessor:
    """Channel map + resample + filter for one stream, from the source's layout to the model's."""

    def __init__(
        self,
        spec: PreprocessSpec,
        source_channels: tuple[str, ...] | list[str],
        source_rate: float,
        where: str,
        canon=canonical_label,
    ) -> None:
        self.spec = spec
        self.indices = channel_indices(source_channels, spec.channels, where, canon)
        self.in_order = self.indices == list(range(len(source_channels)))
        self.resampler = StreamingResampler(len(spec.channels), source_rate, spec.rate)
        self.filter = StreamingFilter(len(spec.channels), spec.rate, spec.bandpass, spec.notch)

    def reset(self) -> None:
        """Forget filter state (after a gap: the signal on each side is unrelated)."""
        self.resampler = StreamingResampler(len(self.spec.channels), self.resampler.rate_in, self.spec.rate)
        self.filter = StreamingFilter(len(self.spec.channels), self.spec.rate, self.spec.bandpass, self.spec.notch)

    def process(self, block: np.ndarray) -> np.ndarray:
        x = block if self.in_order else block[self.indices]
        x = self.resampler.process(x)
        x = self.filter.process(x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def process_with_raw(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mapped + resampled but unfiltered, fully processed): the first for signal-quality checks.

        NaN/inf never reach the filter state (it would stay NaN for good): they are zeroed for the
        filters, and the unfiltered copy marks the whole block NaN on the affected channels."""
        x = block if self.in_order else block[self.indices]
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            x = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
        raw = np.ascontiguousarray(self.resampler.process(x), dtype=np.float32)
        y = np.ascontiguousarray(self.filter.process(raw), dtype=np.float32)
        if bad.any():
            raw = raw.copy()
            raw[bad] = np.nan
        return raw, y
