"""Chunked EDF/EDF+ and BDF/BDF+ reading with pyedflib, shared by replay and by the offline tools.

Never reads a whole file at once: ``read(start, n)`` pulls ``n`` samples per channel.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import pyedflib

from seizurewatch.errors import DataError
from seizurewatch.types import Annotation
from seizurewatch.units import microvolt_factors, to_microvolts

log = logging.getLogger(__name__)


HEADER_ONLY = "header-only"  # units= for a reader opened to read its header, never its samples
_TUH_RE = re.compile(r"^EEG\s+(\S+?)-(REF|LE)$", re.I)


def electrode_label(label: str) -> str:
    """A TUH referential label (``EEG FP1-REF``, ``EEG T3-LE``) -> the electrode (``FP1``); others unchanged.
    The reference (average or linked ears) is the file's montage and the same for every channel."""
    m = _TUH_RE.match(label.strip())
    return m.group(1) if m else label


REFERENCES = {"REF": "AR", "LE": "LE"}  # TUH: averaged reference (01_tcp_ar), linked ears (02_tcp_le)


def reference_of(labels: list[str]) -> str:
    """The montage a file's TUH referential labels name (``EEG FP1-REF`` -> "AR", ``EEG T3-LE`` -> "LE"),
    "" when its labels are not TUH's; several references in one file are listed ("AR+LE")."""
    refs = sorted({REFERENCES[m.group(2).upper()] for lab in labels if (m := _TUH_RE.match(lab.strip()))})
    return "+".join(refs)


def dedupe_labels(labels: list[str]) -> list[str]:
    """Repeated labels become LABEL-0, LABEL-1... in order (MNE's convention; CHB-MIT has T8-P8 twice)."""
    counts = Counter(labels)
    seen: Counter[str] = Counter()
    out = []
    for lab in labels:
        if counts[lab] > 1:
            out.append(f"{lab}-{seen[lab]}")
            seen[lab] += 1
        else:
            out.append(lab)
    return out


@dataclass(frozen=True)
class EdfHeader:
    path: str
    channels: tuple[str, ...]
    rate: float
    n_samples: int
    units: tuple[str, ...]  # as the file declares them; every reader returns µV
    annotations: tuple[Annotation, ...]
    start_datetime: str
    skipped_channels: tuple[str, ...]  # signals at another rate than the EEG (ECG, SpO2...)
    reference: str = ""  # the montage its channel labels name (TUH: "AR", "LE"), "" when they name none

    @property
    def duration(self) -> float:
        return self.n_samples / self.rate


class ChunkedReader:
    """What every signal reader shares: ``chunks`` over ``read``, ``with`` closing it, and the conversion
    of the declared units to µV (``seizurewatch.units``). A reader sets ``header``, calls ``_units(assume)``
    and defines ``_read(start, n, picks)`` (declared units, float32 or float64) and ``close()``."""

    path: str
    header: EdfHeader
    _factors: np.ndarray

    def _units(self, assume: str | None) -> None:
        """Checks the header's declared units (``assume``: what a unit-less or unknown channel is); a
        reader that cannot convert refuses to open, naming the file and the channel. ``HEADER_ONLY``:
        opened for the header (annotations, labels), no samples will be read."""
        if assume == HEADER_ONLY:
            self._factors = np.full(len(self.header.channels), np.nan)
            return
        self._factors = microvolt_factors(self.path, self.header.channels, self.header.units, assume)

    def _read(self, start: int, n: int, picks: list[int]) -> np.ndarray:
        raise NotImplementedError

    def read(self, start: int, n: int, channels: list[int] | None = None) -> np.ndarray:
        """Samples ``start .. start+n`` (clipped to the file): (channels, n) float32 µV."""
        start = max(0, start)
        n = max(0, min(n, self.header.n_samples - start))
        picks = list(range(len(self.header.channels))) if channels is None else list(channels)
        if not n:
            return np.empty((len(picks), 0), dtype=np.float32)
        if np.isnan(self._factors).any():
            raise RuntimeError(f"{self.path}: opened for its header only (units=HEADER_ONLY); no samples")
        return to_microvolts(self._read(start, n, picks), self._factors[picks])

    def close(self) -> None:
        raise NotImplementedError

    def chunks(self, chunk: int, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_sample, block)`` over the file, ``chunk`` samples at a time."""
        pos = start
        while pos < self.header.n_samples:
            block = self.read(pos, chunk)
            yield pos, block
            pos += block.shape[1]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EdfRecording(ChunkedReader):
    """An open EDF file; use as a context manager. ``units``: what a channel whose physical dimension is
    empty or unknown holds (else such a file is refused)."""

    def __init__(self, path: str | Path, units: str | None = None) -> None:
        self.path = str(path)
        if not Path(self.path).is_file():
            raise DataError(f"{self.path}: recording not found")
        try:
            self._reader = pyedflib.EdfReader(self.path)
        except OSError as exc:
            raise DataError(f"{self.path}: not a readable EDF/EDF+/BDF file ({exc})") from None
        r = self._reader
        raw = [str(lab).strip() for lab in r.getSignalLabels()]
        labels = dedupe_labels([electrode_label(lab) for lab in raw])
        rates = [float(x) for x in r.getSampleFrequencies()]
        if not labels:
            raise DataError(f"{self.path}: no signals in file")
        # The EEG is the largest group of signals sharing a rate; others are skipped.
        rate = Counter(rates).most_common(1)[0][0]
        self._idx = [i for i, fs in enumerate(rates) if fs == rate]
        skipped = tuple(labels[i] for i in range(len(labels)) if i not in self._idx)
        if skipped:
            log.info("skipping signals at another rate", extra={"file": self.path, "skipped": skipped})
        n = int(min(r.getNSamples()[i] for i in self._idx))
        try:
            onsets, durations, descs = r.readAnnotations()
        except Exception:  # noqa: BLE001 - plain EDF without annotations on some versions
            onsets, durations, descs = [], [], []  # type: ignore[assignment]
        anns = tuple(
            Annotation(float(o), max(float(d), 0.0), str(t).strip())
            for o, d, t in zip(onsets, durations, descs)
        )
        try:
            start = r.getStartdatetime().isoformat()
        except Exception:  # noqa: BLE001 - malformed start date in some headers
            start = ""
        self.header = EdfHeader(
            path=self.path,
            channels=tuple(labels[i] for i in self._idx),
            rate=rate,
            n_samples=n,
            units=tuple(r.getPhysicalDimension(i).strip() for i in self._idx),
            annotations=anns,
            start_datetime=start,
            skipped_channels=skipped,
            reference=reference_of([raw[i] for i in self._idx]),
        )
        try:
            self._units(units)
        except DataError:
            r.close()
            raise

    def _read(self, start: int, n: int, picks: list[int]) -> np.ndarray:
        out = np.empty((len(picks), n), dtype=np.float64)  # physical values; to µV in float64, then float32
        for row, c in enumerate(picks):
            out[row] = self._reader.readSignal(self._idx[c], start, n, digital=False)
        return out

    def close(self) -> None:
        self._reader.close()
