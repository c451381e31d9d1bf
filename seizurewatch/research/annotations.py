"""Annotation and clip readers for the formats recordings are published in.

Continuous recordings get ``list[Annotation]`` (onset s, duration s, description):
EDF+ annotations, CSV ``onset,duration,description``, CHB-MIT ``chbNN-summary.txt``
(PhysioNet), TUH ``.csv_bi``. Clip releases (Kaggle detection and prediction challenges,
the Delhi segments) carry their label in the file itself and are read as ``Clip`` records.
``find_annotations`` picks the annotations of one recording automatically.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seizurewatch.errors import DataError
from seizurewatch.recordings import BRAINVISION_SUFFIXES, EDF_SUFFIXES, read_header
from seizurewatch.research.labels import is_join, is_seizure
from seizurewatch.types import Annotation
from seizurewatch.units import microvolt_factors, to_microvolts

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- recordings

def read_edf_annotations(path: str | Path) -> list[Annotation]:
    """The EDF+/BDF+ annotations stored in the file itself (empty for plain EDF such as CHB-MIT)."""
    return list(read_header(path).annotations)


def read_csv_annotations(path: str | Path) -> list[Annotation]:
    """``onset,duration,description`` per row, seconds; the header row is optional."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: annotation file not found")
    out = []
    with p.open(newline="", encoding="utf-8-sig") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if lineno == 1 and row[0].strip().lower() == "onset":
                continue
            if len(row) < 3:
                raise DataError(f"{p}:{lineno}: expected onset,duration,description; got {','.join(row)!r}")
            try:
                onset, duration = float(row[0]), float(row[1] or 0.0)
            except ValueError:
                raise DataError(f"{p}:{lineno}: onset and duration must be numbers (seconds); "
                                f"got {row[0]!r}, {row[1]!r}") from None
            if not np.isfinite(onset) or not np.isfinite(duration) or duration < 0:
                raise DataError(f"{p}:{lineno}: onset must be finite and duration >= 0; got {onset}, {duration}")
            out.append(Annotation(onset, duration, ",".join(row[2:]).strip()))
    return out


_FILE_RE = re.compile(r"^\s*File Name:\s*(\S+)", re.I)
_SZ_RE = re.compile(r"^\s*Seizure\s*(\d+)?\s*(Start|End)\s*Time:\s*([\d.]+)\s*(?:seconds|secs|s)?\s*$", re.I)


def read_chbmit_summary(path: str | Path) -> dict[str, list[Annotation]]:
    """CHB-MIT ``chbNN-summary.txt``: file name -> its seizures (every listed file, even with none).

    Both variants PhysioNet publishes are accepted: ``Seizure Start Time: N seconds`` and
    ``Seizure 1 Start Time: N seconds``.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: summary file not found")
    out: dict[str, list[Annotation]] = {}
    current: str | None = None
    start: float | None = None
    for lineno, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        m = _FILE_RE.match(line)
        if m:
            if start is not None:
                raise DataError(f"{p}:{lineno}: seizure start without an end time in {current}")
            current = m.group(1)
            out[current] = []
            continue
        m = _SZ_RE.match(line)
        if not m:
            continue
        if current is None:
            raise DataError(f"{p}:{lineno}: seizure time before any 'File Name:' line")
        t = float(m.group(3))
        if m.group(2).lower() == "start":
            if start is not None:
                raise DataError(f"{p}:{lineno}: two seizure start times in a row in {current}")
            start = t
        else:
            if start is None:
                raise DataError(f"{p}:{lineno}: seizure end time without a start in {current}")
            if t <= start:
                raise DataError(f"{p}:{lineno}: seizure in {current} ends ({t:g} s) before it starts ({start:g} s)")
            out[current].append(Annotation(start, t - start, "seizure"))
            start = None
    if start is not None:
        raise DataError(f"{p}: seizure start without an end time in {current}")
    if not out:
        raise DataError(f"{p}: no 'File Name:' entries; not a CHB-MIT summary file")
    return out


def read_tuh_csv_bi(path: str | Path) -> list[Annotation]:
    """TUH ``.csv_bi`` (``#`` comments, then ``channel,start_time,stop_time,label,confidence``).
    ``seiz`` rows become seizure annotations (merged across channels); ``bckg`` is background."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: annotation file not found")
    spans: list[tuple[float, float]] = []
    header_seen = False
    with p.open(newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or row[0].lstrip().startswith("#") or not "".join(row).strip():
                continue
            if not header_seen and row[0].strip().lower() == "channel":
                header_seen = True
                continue
            if len(row) < 4:
                raise DataError(f"{p}:{lineno}: expected channel,start_time,stop_time,label,confidence")
            try:
                t0, t1 = float(row[1]), float(row[2])
            except ValueError:
                raise DataError(f"{p}:{lineno}: start_time/stop_time must be numbers; got {row[1]!r}, {row[2]!r}") \
                    from None
            if t1 < t0:
                raise DataError(f"{p}:{lineno}: stop_time {t1:g} before start_time {t0:g}")
            label = row[3].strip().lower()
            if label == "seiz":
                spans.append((t0, t1))
            elif label != "bckg":
                raise DataError(f"{p}:{lineno}: label {row[3]!r}: expected 'seiz' or 'bckg'")
    merged: list[list[float]] = []
    for t0, t1 in sorted(spans):
        if merged and t0 <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], t1)
        else:
            merged.append([t0, t1])
    return [Annotation(a, b - a, "seizure") for a, b in merged]


def events_path(path: str | Path) -> Path:
    """The BIDS events file of a recording: ``sub-01_task-x_eeg.edf`` -> ``sub-01_task-x_events.tsv``;
    a file without the ``_eeg`` suffix (a text signal) -> ``STEM_events.tsv``."""
    p = Path(path)
    stem = p.stem[:-4] if p.stem.endswith("_eeg") else p.stem
    return p.with_name(f"{stem}_events.tsv")


def read_bids_events(path: str | Path) -> list[Annotation]:
    """BIDS ``*_events.tsv`` (tab-separated, header row): ``onset`` and ``duration`` in seconds and the
    event in ``eventType`` (SzCORE: ``sz``, ``sz_foc_ia``..., ``bckg``) or ``trial_type``. Seizure events
    (``sz*``) become ``seizure`` annotations; background rows are dropped; other events are kept as named."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: events file not found")
    lines = p.read_text(encoding="utf-8-sig").splitlines()
    if not lines:
        raise DataError(f"{p}: empty; expected a header row with onset, duration, eventType or trial_type")
    header = [h.strip() for h in lines[0].split("\t")]
    col = next((c for c in ("eventType", "trial_type", "value") if c in header), None)
    if "onset" not in header or "duration" not in header or col is None:
        raise DataError(f"{p}:1: expected tab-separated columns onset, duration and eventType or trial_type; "
                        f"got {', '.join(header)}")
    io, idur, iev = header.index("onset"), header.index("duration"), header.index(col)
    out = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        row = line.split("\t")
        if len(row) != len(header):
            raise DataError(f"{p}:{lineno}: {len(row)} tab-separated values, expected {len(header)}")
        event = row[iev].strip()
        if event.lower() in ("bckg", "n/a", ""):
            continue
        try:
            onset = float(row[io])
            duration = 0.0 if row[idur].strip() == "n/a" else float(row[idur])
        except ValueError:
            raise DataError(f"{p}:{lineno}: onset and duration must be numbers (seconds); "
                            f"got {row[io]!r}, {row[idur]!r}") from None
        if not np.isfinite(onset) or not np.isfinite(duration) or duration < 0:
            raise DataError(f"{p}:{lineno}: onset must be finite and duration >= 0; got {onset}, {duration}")
        desc = "seizure" if event.lower().startswith("sz") else event
        out.append(Annotation(onset, duration, desc))
    return sorted(out, key=lambda a: a.onset)


SZCORE_COLUMNS = ("onset", "duration", "eventType", "confidence", "channels", "dateTime", "recordingDuration")


def write_bids_events(path: str | Path, events: list[tuple[float, float, float | None]], duration: float,
                      start: str = "") -> Path:
    """A BIDS ``*_events.tsv`` as SzCORE reads an algorithm's output (the columns of ``SZCORE_COLUMNS``): one
    ``sz`` row per (onset s, end s, confidence 0..1 or None), or, with none, one ``bckg`` row over the
    whole recording. ``start``: the recording's start (ISO date and time) for ``dateTime``; ``duration``:
    its length in seconds. ``read_bids_events`` reads it back."""
    when = start.replace("T", " ")[:19] if start else "n/a"

    def row(onset: float, length: float, kind: str, confidence: float | None) -> str:
        conf = "n/a" if confidence is None else f"{confidence:.4f}"
        return "\t".join([f"{onset:.3f}", f"{length:.3f}", kind, conf, "n/a", when, f"{duration:.3f}"])

    rows = [row(a, max(0.0, b - a), "sz", c) for a, b, c in sorted(events)] or [row(0.0, duration, "bckg", None)]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\t".join(SZCORE_COLUMNS) + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return out


@dataclass(frozen=True)
class FoundAnnotations:
    annotations: list[Annotation]
    source: str  # the file they came from (EDF+ inside: the recording itself)


def find_annotations(path: str | Path, required: bool = True) -> FoundAnnotations | None:
    """The annotations of one recording, looked up in this order: a sidecar ``STEM.csv`` (not for a
    CSV signal: that is the signal), ``STEM.csv_bi`` (TUH), the BIDS ``*_events.tsv`` (also
    ``STEM_events.tsv`` next to a text signal), a ``*-summary.txt`` in the folder listing the file (CHB-MIT), the
    EDF+ annotations inside. Seams (``join``) inside the EDF+ are always kept: they describe
    the file. ``required`` and nothing found -> DataError naming the recording."""
    p = Path(path)
    inside = read_edf_annotations(p) if p.suffix.lower() in EDF_SUFFIXES + BRAINVISION_SUFFIXES else []
    joins = [a for a in inside if is_join(a.description)]

    def with_joins(anns: list[Annotation]) -> list[Annotation]:
        have = {(a.onset, a.description) for a in anns}
        return sorted(anns + [j for j in joins if (j.onset, j.description) not in have], key=lambda a: a.onset)

    csv_path = p.with_suffix(".csv")
    if csv_path.is_file() and csv_path != p:
        return FoundAnnotations(with_joins(read_csv_annotations(csv_path)), str(csv_path))
    bi = p.with_suffix(".csv_bi")
    if bi.is_file():
        return FoundAnnotations(with_joins(read_tuh_csv_bi(bi)), str(bi))
    events = events_path(p)
    if events.is_file():
        return FoundAnnotations(with_joins(read_bids_events(events)), str(events))
    for summary in sorted(p.parent.glob("*-summary.txt")):
        table = read_chbmit_summary(summary)
        if p.name in table:
            return FoundAnnotations(with_joins(table[p.name]), str(summary))
    if any(is_seizure(a.description) or is_join(a.description) for a in inside):
        return FoundAnnotations(inside, str(p))
    if required:
        raise DataError(f"{p}: no annotations found (looked for seizure/join annotations inside the EDF+, "
                        f"{csv_path.name}, {bi.name}, {events.name}, and a *-summary.txt in {p.parent} "
                        f"listing {p.name})")
    return FoundAnnotations(inside, str(p)) if inside else None


# ---------------------------------------------------------------------------------------------- clips

@dataclass(frozen=True)
class Clip:
    """A labelled clip: Kaggle detection/prediction segments, Delhi segments."""

    path: str
    subject: str
    label: str  # "ictal" | "interictal" | "preictal"
    segment: int  # N of *_segment_N.mat (Delhi: the file number)
    rate: float
    channels: tuple[str, ...]
    latency: float | None = None  # detection ictal clips: seconds since the seizure's onset
    sequence: int | None = None  # prediction clips: 1..6 within an hour
    duration_s: float = 0.0


_KAGGLE_RE = re.compile(r"^(?P<subject>.+?)_(?P<label>ictal|interictal|preictal|test)_segment_(?P<n>\d+)$", re.I)
_DELHI_RE = re.compile(r"^(?P<label>ictal|interictal|preictal)(?P<n>\d+)$", re.I)
DELHI_RATE = 200.0


def _strings(x: object) -> tuple[str, ...]:
    """Channel names from a MATLAB cell/char array, however scipy nested them."""
    arr = np.asarray(x, dtype=object).ravel()
    out: list[str] = []
    for item in arr:
        if isinstance(item, str):
            out.append(item.strip())
        elif isinstance(item, np.ndarray) and item.dtype.kind in "US":
            out.extend(str(s).strip() for s in item.ravel())
        elif isinstance(item, (np.ndarray, np.void, tuple, list)):
            out.extend(_strings(item.tolist() if isinstance(item, np.void) else item))
        else:
            out.append(str(item).strip())
    return tuple(out)


def _loadmat(path: Path) -> dict:
    import scipy.io

    try:
        return {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
    except Exception as exc:  # noqa: BLE001 - scipy raises many types for damaged files
        raise DataError(f"{path}: not a readable MATLAB file ({exc})") from None


def is_clip_file(path: str | Path) -> bool:
    p = Path(path)
    return p.suffix.lower() == ".mat" and bool(_KAGGLE_RE.match(p.stem) or _DELHI_RE.match(p.stem))


# A .mat clip declares no unit; both releases publish microvolts (Kaggle's detection and prediction
# challenges state it; the Delhi segments' amplitudes are EEG's in µV: tens to a few hundred).
CLIP_UNITS = "uV"


def read_clip(path: str | Path, with_data: bool = True) -> tuple[Clip, np.ndarray | None]:
    """One clip and its samples ``(channels, samples)`` float32 µV (None unless ``with_data``)."""
    clip, data = _read_clip(Path(path), with_data)
    if data is None:
        return clip, None
    factors = microvolt_factors(clip.path, clip.channels, (CLIP_UNITS,) * len(clip.channels))
    return clip, to_microvolts(data, factors)


def _read_clip(p: Path, with_data: bool) -> tuple[Clip, np.ndarray | None]:
    m = _KAGGLE_RE.match(p.stem)
    if m:
        if m.group("label").lower() == "test":
            raise DataError(f"{p}: unlabelled test clip; only ictal/interictal/preictal clips can be used")
        mat = _loadmat(p)
        if "data" in mat:
            return _detection_clip(p, mat, m, with_data)
        return _prediction_clip(p, mat, m, with_data)
    m = _DELHI_RE.match(p.stem)
    if m:
        return _delhi_clip(p, m, with_data)
    raise DataError(f"{p}: not a clip file (expected *_ictal_segment_N.mat, *_interictal_segment_N.mat, "
                    f"*_preictal_segment_N.mat, or Delhi ictalN.mat/interictalN.mat/preictalN.mat)")


def _detection_clip(p: Path, mat: dict, m: re.Match, with_data: bool) -> tuple[Clip, np.ndarray | None]:
    data = np.asarray(mat["data"], dtype=np.float32)
    if data.ndim != 2:
        raise DataError(f"{p}: data: expected channels x samples, got shape {data.shape}")
    if "freq" not in mat:
        raise DataError(f"{p}: no 'freq' variable (Kaggle detection clip)")
    freq = float(np.asarray(mat["freq"]).ravel()[0])
    n = data.shape[1]
    # The challenge's clips are 1 s each; 'freq' is the nominal 399.61 Hz for 400 samples.
    rate = float(n) if abs(freq - n) / n < 0.01 else freq
    channels = _strings(mat["channels"]) if "channels" in mat else tuple(f"ch{i + 1}" for i in range(data.shape[0]))
    if len(channels) != data.shape[0]:
        raise DataError(f"{p}: {len(channels)} channel names for {data.shape[0]} rows of data")
    label = m.group("label").lower()
    latency = float(np.asarray(mat["latency"]).ravel()[0]) if "latency" in mat else None
    if label == "ictal" and latency is None:
        raise DataError(f"{p}: ictal clip without 'latency'")
    clip = Clip(str(p), m.group("subject"), label, int(m.group("n")), rate, channels, latency, None, n / rate)
    return clip, data if with_data else None


def _prediction_clip(p: Path, mat: dict, m: re.Match, with_data: bool) -> tuple[Clip, np.ndarray | None]:
    if len(mat) != 1:
        raise DataError(f"{p}: expected one struct variable (Kaggle prediction clip), found {sorted(mat)}")
    (name, st), = mat.items()
    names = st.dtype.names or ()
    need = ("data", "sampling_frequency", "channels")
    if any(k not in names for k in need):
        raise DataError(f"{p}: {name}: struct needs fields {', '.join(need)}; has {', '.join(names)}")
    rec = st.ravel()[0]
    data = np.asarray(rec["data"], dtype=np.float32)
    rate = float(np.asarray(rec["sampling_frequency"]).ravel()[0])
    channels = _strings(rec["channels"])
    if data.ndim != 2 or len(channels) != data.shape[0]:
        raise DataError(f"{p}: {name}.data shape {data.shape} does not match {len(channels)} channels")
    seq = int(np.asarray(rec["sequence"]).ravel()[0]) if "sequence" in names else None
    dur = float(np.asarray(rec["data_length_sec"]).ravel()[0]) if "data_length_sec" in names else data.shape[1] / rate
    clip = Clip(str(p), m.group("subject"), m.group("label").lower(), int(m.group("n")), rate, channels,
                None, seq, dur)
    return clip, data if with_data else None


def _delhi_clip(p: Path, m: re.Match, with_data: bool) -> tuple[Clip, np.ndarray | None]:
    label = m.group("label").lower()
    mat = _loadmat(p)
    if label not in mat:
        raise DataError(f"{p}: expected a variable named {label!r} (Delhi segment); found {sorted(mat)}")
    data = np.asarray(mat[label], dtype=np.float32)
    if data.ndim != 2 or 1 not in data.shape:
        raise DataError(f"{p}: {label}: expected a single-channel column (N x 1), got shape {data.shape}")
    data = data.reshape(1, -1)
    subject = p.parent.parent.name if p.parent.name.lower() == label else p.parent.name
    clip = Clip(str(p), subject or "delhi", label, int(m.group("n")), DELHI_RATE, ("EEG",), None, None,
                data.shape[1] / DELHI_RATE)
    return clip, data if with_data else None


def find_clips(folder: str | Path) -> list[Clip]:
    """Every labelled clip under ``folder`` (recursively), ordered by subject, label, segment number."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: clip folder not found")
    clips = []
    for f in sorted(root.rglob("*.mat")):
        m = _KAGGLE_RE.match(f.stem)
        if (m and m.group("label").lower() != "test") or _DELHI_RE.match(f.stem):
            clips.append(read_clip(f, with_data=False)[0])
    if not clips:
        raise DataError(f"{root}: no labelled clips (*_ictal_segment_N.mat, *_interictal_segment_N.mat, "
                        f"*_preictal_segment_N.mat, or Delhi ictalN.mat...)")
    return sorted(clips, key=lambda c: (c.subject, c.label, c.segment))
