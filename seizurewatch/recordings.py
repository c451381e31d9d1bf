"""One opener for every signal format recordings are published in.

``open_recording(path, rate=None)`` returns a ``Recording`` (the interface of ``EdfRecording``:
``header``, ``read(start, n, channels)``, ``chunks(chunk)``, ``close()``, context manager):

- EDF/EDF+ and BDF/BDF+ (``.edf``, ``.bdf``): pyedflib reads both, chunk by chunk.
- BrainVision (``.vhdr`` + ``.vmrk`` + ``.eeg``): mne's reader (``preload=False``: read on demand),
  markers as annotations.
- Text signals (``.csv``, ``.txt``, ``.tsv``, ``.asc``): a header row of channel names or none,
  columns separated by commas, semicolons, tabs or spaces, or a bare column of numbers
  (one value per line, as in the Bonn EEG database's ``Z001.txt``). Text carries no rate:
  it comes from ``rate=`` or from a sidecar ``STEM.json`` (``{"rate": 173.61}``, or BIDS's
  ``SamplingFrequency``; optional ``channels``; ``units``, one for all columns or one per column).
  Text corpora are small, so a text file is parsed whole into memory once; EDF/BDF are never loaded
  whole.

Every reader returns float32 µV, converted from the units the file declares (``seizurewatch.units``);
``units=`` says what a channel that declares none (or one seizurewatch does not know) holds, else such
a file is refused naming the file and the channel; ``read_header`` reads only the header (labels,
rate, annotations), whatever the units.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from seizurewatch.edfio import HEADER_ONLY, ChunkedReader, EdfHeader, EdfRecording, dedupe_labels
from seizurewatch.errors import DataError
from seizurewatch.types import Annotation
from seizurewatch.units import to_microvolts

EDF_SUFFIXES = (".edf", ".bdf")
TEXT_SUFFIXES = (".csv", ".txt", ".tsv", ".asc")
BRAINVISION_SUFFIXES = (".vhdr",)
SIGNAL_SUFFIXES = EDF_SUFFIXES + TEXT_SUFFIXES + BRAINVISION_SUFFIXES
RecordingHeader = EdfHeader  # one header type for every format


@runtime_checkable
class Recording(Protocol):
    """What every reader offers (EdfRecording's interface)."""

    path: str
    header: EdfHeader

    def read(self, start: int, n: int, channels: list[int] | None = None) -> np.ndarray: ...

    def chunks(self, chunk: int, start: int = 0) -> Iterator[tuple[int, np.ndarray]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Recording: ...

    def __exit__(self, *exc: object) -> None: ...


def signal_format(path: str | Path) -> str:
    """``"edf"``, ``"bdf"``, ``"text"`` or ``"brainvision"`` from the file name; DataError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix in EDF_SUFFIXES:
        return suffix[1:]
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix in BRAINVISION_SUFFIXES:
        return "brainvision"
    raise DataError(f"{path}: unknown signal format {suffix or '(no suffix)'!r}; readable: "
                    f"{', '.join(SIGNAL_SUFFIXES)}")


def open_recording(path: str | Path, rate: float | None = None, units: str | None = None) -> Recording:
    """Open ``path`` with the reader its format needs. ``rate`` (Hz) is for text signals without a
    sidecar; given for an EDF/BDF it must agree with the file's header. ``units``: what a channel
    declaring no unit (or an unknown one) holds."""
    kind = signal_format(path)
    if kind == "text":
        return TextRecording(path, rate=rate, units=units)
    rec: EdfRecording | BrainVisionRecording
    rec = BrainVisionRecording(path, units) if kind == "brainvision" else EdfRecording(path, units)
    if rate is not None and not math.isclose(rate, rec.header.rate, rel_tol=1e-6):
        rec.close()
        raise DataError(f"{path}: the file says {rec.header.rate:g} Hz; --rate {rate:g} disagrees "
                        "(drop the rate option for EDF/BDF files)")
    return rec


def read_header(path: str | Path, rate: float | None = None) -> EdfHeader:
    """The header of a recording (channels, rate, declared units, annotations), units unchecked: for a
    caller that reads no samples."""
    with open_recording(path, rate=rate, units=HEADER_ONLY) as rec:
        return rec.header


# ---------------------------------------------------------------------------------------------- text

def sidecar_path(path: str | Path) -> Path:
    """``STEM.json`` next to a text signal."""
    return Path(path).with_suffix(".json")


def read_sidecar(path: str | Path) -> dict:
    """The text signal's sidecar (``{}`` when there is none); keys checked, file named in errors."""
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{side}: not readable JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{side}: expected a JSON object such as {{\"rate\": 173.61}}")
    return meta


def _sidecar_rate(side: Path, meta: dict) -> float | None:
    for key in ("rate", "SamplingFrequency"):
        if key in meta:
            value = meta[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                    or not math.isfinite(value):
                raise DataError(f"{side}: {key}: expected a positive number of Hz, got {value!r}")
            return float(value)
    return None


_SPLIT = {",": re.compile(r"\s*,\s*"), ";": re.compile(r"\s*;\s*"), "\t": re.compile(r"\t"),
          " ": re.compile(r"\s+")}


def _delimiter(line: str) -> str:
    for d in (",", ";", "\t"):
        if d in line:
            return d
    return " "


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


class TextRecording(ChunkedReader):
    """A text signal parsed once into a (channels, samples) array; use as a context manager."""

    def __init__(self, path: str | Path, rate: float | None = None, units: str | None = None) -> None:
        self.path = str(path)
        p = Path(self.path)
        if not p.is_file():
            raise DataError(f"{self.path}: recording not found")
        side = sidecar_path(p)
        meta = read_sidecar(p)
        side_rate = _sidecar_rate(side, meta)
        if rate is not None and (not math.isfinite(rate) or rate <= 0):
            raise DataError(f"{self.path}: rate must be a positive number of Hz, got {rate!r}")
        if rate is not None and side_rate is not None and not math.isclose(rate, side_rate, rel_tol=1e-6):
            raise DataError(f"{self.path}: --rate {rate:g} disagrees with {side.name} ({side_rate:g} Hz); "
                            "give one of them")
        fs = rate if rate is not None else side_rate
        if fs is None:
            raise DataError(f"{self.path}: a text signal carries no sample rate; give it with --rate HZ "
                            f"(rate= in Python, source.rate in a config) or a sidecar {side.name} "
                            '{"rate": HZ}')
        names, data = self._parse(p)
        if "channels" in meta:
            chans = meta["channels"]
            if not isinstance(chans, list) or not all(isinstance(c, str) for c in chans) \
                    or len(chans) != data.shape[0]:
                raise DataError(f"{side}: channels: expected a list of {data.shape[0]} names "
                                f"(one per column of {p.name}), got {chans!r}")
            names = list(chans)
        declared = meta.get("units", "")
        if isinstance(declared, str):
            declared = [declared] * data.shape[0]
        if not isinstance(declared, list) or len(declared) != data.shape[0] \
                or not all(isinstance(u, str) for u in declared):
            raise DataError(f"{side}: units: expected one string or {data.shape[0]} strings, got {declared!r}")
        self.header = EdfHeader(path=self.path, channels=tuple(dedupe_labels(names)), rate=float(fs),
                                n_samples=data.shape[1], units=tuple(declared), annotations=(),
                                start_datetime="", skipped_channels=())
        self._units(units)
        if units == HEADER_ONLY:  # no samples will be read (``read`` refuses)
            self._data = np.empty((0, 0), dtype=np.float32)
            return
        # converted once, from float64, and kept as float32 µV (half the memory; reads are slices)
        self._data = to_microvolts(data, self._factors)
        self._factors = np.ones(data.shape[0])

    def _parse(self, p: Path) -> tuple[list[str], np.ndarray]:
        names: list[str] | None = None
        rows: list[list[float]] = []
        split: re.Pattern[str] | None = None
        width = 0
        with p.open(encoding="utf-8-sig", errors="replace") as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                if split is None:
                    split = _SPLIT[_delimiter(line)]
                    tokens = split.split(line)
                    width = len(tokens)
                    if not all(_is_number(t) for t in tokens):
                        names = [t.strip().strip('"') for t in tokens]
                        continue
                tokens = split.split(line)
                if len(tokens) != width:
                    raise DataError(f"{p}:{lineno}: {len(tokens)} values, expected {width} "
                                    f"(one per channel); got {line[:80]!r}")
                try:
                    values = [float(t) for t in tokens]
                except ValueError:
                    bad = next(t for t in tokens if not _is_number(t))
                    raise DataError(f"{p}:{lineno}: {bad!r} is not a number; got {line[:80]!r}") from None
                if not all(math.isfinite(v) for v in values):
                    raise DataError(f"{p}:{lineno}: values must be finite; got {line[:80]!r}")
                rows.append(values)
        if not rows:
            raise DataError(f"{p}: no samples (expected one row per sample, one column per channel)")
        data = np.asarray(rows, dtype=np.float64).T.copy()  # to µV from float64, as the EDF reader does
        return (names or [f"ch{i + 1}" for i in range(width)]), data

    def _read(self, start: int, n: int, picks: list[int]) -> np.ndarray:
        return self._data[picks, start:start + n]

    def close(self) -> None:
        self._data = np.empty((0, 0), dtype=np.float32)


# ---------------------------------------------------------------------------------------------- BrainVision

_MNE_SCALES_TO_VOLTS = ("V", "mV", "µV", "uV", "nV")  # mne.io.brainvision: what it scales (a missing unit is µV)


class BrainVisionRecording(ChunkedReader):
    """A BrainVision recording through ``mne.io.read_raw_brainvision`` (not preloaded). mne scales what
    the header declares to volts (the BrainVision default is µV); the declared units are checked here
    like every other reader's, and volts become µV."""

    def __init__(self, path: str | Path, units: str | None = None) -> None:
        self.path = str(path)
        if not Path(self.path).is_file():
            raise DataError(f"{self.path}: recording not found")
        import mne

        try:
            self._raw = mne.io.read_raw_brainvision(self.path, preload=False, verbose="error")
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise DataError(f"{self.path}: not a readable BrainVision header ({exc})") from None
        raw = self._raw
        anns = tuple(Annotation(float(a["onset"]), max(float(a["duration"]), 0.0), str(a["description"]))
                     for a in raw.annotations)
        meas = raw.info["meas_date"]
        declared = getattr(raw, "_orig_units", None) or {}
        self.header = EdfHeader(
            path=self.path, channels=tuple(dedupe_labels(list(raw.ch_names))), rate=float(raw.info["sfreq"]),
            n_samples=int(raw.n_times), units=tuple(str(declared.get(c, "")) for c in raw.ch_names),
            annotations=anns, start_datetime=meas.isoformat() if meas is not None else "", skipped_channels=())
        try:
            self._units(units)
        except DataError:
            raw.close()
            raise
        # mne hands volts for the units it scales (its header reader's list); any other unit as it was stored
        volts = [u in _MNE_SCALES_TO_VOLTS for u in self.header.units]
        self._factors = np.where(volts, 1e6, self._factors)

    def _read(self, start: int, n: int, picks: list[int]) -> np.ndarray:
        return self._raw.get_data(picks=picks, start=start, stop=start + n)  # volts

    def close(self) -> None:
        self._raw.close()
