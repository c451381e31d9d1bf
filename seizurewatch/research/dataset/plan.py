"""What goes into a dataset, planned before any sample is read: the dataset spec, the recordings
and clips it names, and for each one the window starts with their labels, seizure ids and the
count of windows dropped and why (seams, exclusion margins, partial seizures...).

Planning reads headers and annotations only; ``load_signal`` preprocesses one recording at a time
through the daemon's own preprocessing when the windows are written.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import re
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.devices import DeviceProfile, canonical_label, load_device
from seizurewatch.errors import ConfigError, DataError
from seizurewatch.preprocess import Preprocessor, PreprocessSpec, StreamingResampler, channel_indices
from seizurewatch.recordings import SIGNAL_SUFFIXES, TEXT_SUFFIXES, open_recording, read_header
from seizurewatch.research.annotations import (
    Clip,
    find_annotations,
    find_clips,
    is_clip_file,
    read_chbmit_summary,
    read_clip,
    read_csv_annotations,
    read_tuh_csv_bi,
)
from seizurewatch.research.dataset.spec import DatasetSpec
from seizurewatch.research.labels import (
    Seizure,
    drop_reason,
    is_early,
    joins_of,
    label_window,
    seizure_index,
    seizures_of,
    window_starts,
)
from seizurewatch.types import Annotation

log = logging.getLogger(__name__)



# ---------------------------------------------------------------------------------------------- plan

@dataclass(eq=False)
class Piece:
    """One unit read at a time: an EDF recording or one clip, with its planned windows as numpy columns
    (a few bytes a window, so planning a corpus of hundreds of hours stays small)."""

    name: str  # file name, as in index.csv
    path: str
    subject: str
    group: str  # the 'recording' unit for splits (EDF: the file; clips: their seizure / hour / block)
    annotations_from: str = ""
    clip: Clip | None = None
    montage: str = ""  # the reference the file's channel labels name (TUH: "AR", "LE"); "" when none
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n,) float64, s
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.int8))  # (n, outputs) int8
    seizure: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # (n,) into ids; -1: negative
    near: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # (n,) into ids: the seizure group
    ids: tuple[str, ...] = ()  # the seizure ids and seizure groups the codes name
    dropped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def positive(self) -> np.ndarray:
        """(n,) bool: windows positive for any output."""
        return np.asarray(self.labels.any(axis=1), dtype=bool)

    def seizure_id(self, i: int) -> str:
        """The seizure of window ``i`` ("" for a negative window)."""
        k = int(self.seizure[i])
        return self.ids[k] if k >= 0 else ""


class _Columns:
    """The windows of one piece while it is planned, appended as compact arrays; ``into`` stores them
    on the piece as numpy columns."""

    def __init__(self, outputs: int) -> None:
        self.outputs = outputs
        self.starts, self.labels = array("d"), array("b")
        self.seizure, self.near = array("i"), array("i")
        self.ids: dict[str, int] = {}

    def add(self, t: float, label: tuple[int, ...], seizure_id: str, near: str) -> None:
        self.starts.append(t)
        self.labels.extend(label)
        self.seizure.append(self.ids.setdefault(seizure_id, len(self.ids)) if seizure_id else -1)
        self.near.append(self.ids.setdefault(near, len(self.ids)))

    def into(self, piece: Piece) -> Piece:
        piece.starts = np.array(self.starts, dtype=np.float64)
        piece.labels = np.array(self.labels, dtype=np.int8).reshape(-1, self.outputs)
        piece.seizure = np.array(self.seizure, dtype=np.int32)
        piece.near = np.array(self.near, dtype=np.int32)
        piece.ids = tuple(self.ids)
        return piece


def _expand(recordings: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for r in recordings:
        if any(ch in r for ch in "*?["):
            hits = sorted(Path(p) for p in _glob(r))
            if not hits:
                raise DataError(f"{r}: no file matches")
            out += hits
        else:
            p = Path(r)
            if not p.exists():
                raise DataError(f"{p}: recording not found")
            if p.is_dir():
                if any(is_clip_file(f) for f in p.rglob("*.mat")):
                    out.append(p)  # a folder of clips (Kaggle, Delhi)
                else:
                    from seizurewatch.research.corpus import discover

                    out += [Path(c.path) for c in discover(p)]  # signals in any format, sidecars left out
            else:
                out.append(p)
    return out


def _glob(pattern: str) -> list[str]:
    import glob

    return glob.glob(pattern, recursive=True)


def match_name(name: str, table: dict[str, Any]) -> Any:
    stem = Path(name).stem if "." in name else name
    for key, value in table.items():
        if fnmatch.fnmatchcase(name, key) or fnmatch.fnmatchcase(stem, key):
            return value
    return None


def default_subject(stem: str) -> str:
    """chb01_03 -> chb01, dog1_rec01 -> dog1 (the part before the last '_'), TUH aaaaaaac_s001_t000 ->
    aaaaaaac, else the stem."""
    tuh = re.match(r"^([a-z]{8})_s\d+_t\d+$", stem, re.I)
    if tuh:
        return tuh.group(1)
    m = re.match(r"^(.+?)_(?:rec)?\d+[a-z+]*$", stem, re.I)
    return m.group(1) if m else stem


def _out_len(n: int, rate_in: float, rate_out: float) -> int:
    """Samples the streaming resampler yields for ``n`` input samples."""
    r = StreamingResampler(1, rate_in, rate_out)
    return n if r.identity else math.ceil(n * r.up / r.down)


def _clip_channels(labels: tuple[str, ...], wanted: tuple[str, ...], where: str, canon) -> tuple[str, ...]:
    """Kaggle names channels 'NVC0905_22_002_Ecog_c001'; accept the suffix when it is what the spec wants."""
    try:
        channel_indices(labels, wanted, where, canon)
        return labels
    except DataError:
        short = tuple(lab.rsplit("_", 1)[-1] for lab in labels)
        if len(set(short)) == len(short):
            try:
                channel_indices(short, wanted, where, canon)
                return short
            except DataError:
                pass
        raise


class Planner:
    def __init__(self, spec: DatasetSpec, pre: PreprocessSpec, device: DeviceProfile | None) -> None:
        self.spec, self.pre, self.rules = spec, pre, spec.rules()
        self.canon = device.canonical if device else canonical_label
        self.units = device.units if device else None  # what channels declaring no unit hold
        self.schedule = spec.schedule
        self.outputs = len(spec.outputs())

    def subject_of(self, path: Path, fallback: str) -> str:
        return match_name(path.name, self.spec.subjects) or fallback

    # -- continuous recordings
    def edf(self, path: Path, annotations: list[Annotation] | None = None) -> Piece:
        """The windows of one recording, labelled from ``annotations`` when given, else from the
        spec's annotation file for it, else from what ``find_annotations`` finds."""
        spec = self.spec
        with open_recording(path, units=self.units) as rec:  # a unit it cannot convert: refused before any write
            h = rec.header
        channel_indices(h.channels, self.pre.channels, str(path), self.canon)
        n_out = _out_len(h.n_samples, h.rate, self.pre.rate)
        duration = n_out / self.pre.rate
        explicit = match_name(path.name, spec.annotations)
        if annotations is not None:
            anns, source = sorted(annotations, key=lambda a: a.onset), "given"
        elif explicit:
            anns = read_annotation_file(explicit, path.name)
            inside = [a for a in h.annotations if a.description.strip().lower() == "join"]
            anns = sorted(anns + inside, key=lambda a: a.onset)
            source = explicit
        else:
            found = find_annotations(path, required=True)
            assert found is not None
            anns, source = found.annotations, found.source
        if spec.window_s > duration:
            raise DataError(f"{path}: window of {spec.window_s:g} s is longer than the recording ({duration:g} s); "
                            f"give --window {duration:g} or less (window_s), or leave this recording out")
        seizures = seizures_of(anns, duration, f"{path} (annotations from {source})")
        joins = joins_of(anns)
        # a text signal's subject is its folder (Bonn's Z/Z001.txt: "Z"), as corpus.discover says; others'
        # the name before the last "_"
        fallback = path.parent.name if path.suffix.lower() in TEXT_SUFFIXES else default_subject(path.stem)
        piece = Piece(path.name, str(path), self.subject_of(path, fallback), path.name, source,
                      montage=getattr(h, "reference", ""))
        cols = _Columns(self.outputs)
        if spec.task == "detection":
            dense = seizures
        else:  # prediction: the dense stride applies to the preictal span, the positive class
            dense = [Seizure(max(0.0, s.onset - max(spec.horizons_s)), s.onset) for s in seizures]
        for t in window_starts(duration, self.schedule, spec.stride_ictal_s, dense):
            lab = label_window(t, t + spec.window_s, seizures, joins, self.rules)
            if lab is None:
                piece.dropped[drop_reason(t, t + spec.window_s, seizures, joins, self.rules)] += 1
                continue
            if not self.schedule.fits(t, n_out, self.pre.rate):
                piece.dropped["tail"] += 1
                continue
            pos = any(lab)
            k = seizure_index(t, t + spec.window_s, seizures, joins, self.rules, pos)
            sid = f"{path.stem}#{k + 1}" if k is not None else ""
            cols.add(t, lab, sid if pos else "", sid or path.name)
        if not len(cols.starts):
            log.warning("recording gives no windows", extra={"recording": str(path), "dropped": dict(piece.dropped)})
        return cols.into(piece)

    # -- clips
    def clips(self, clips: list[Clip]) -> list[Piece]:
        groups = _clip_groups(clips, self.spec.task)
        pieces = []
        for clip in clips:
            pieces.append(self.clip(clip, groups[clip.path]))
        return pieces

    def clip(self, clip: Clip, group: tuple[str, str]) -> Piece:
        spec = self.spec
        path = Path(clip.path)
        _clip_channels(clip.channels, self.pre.channels, clip.path, self.canon)
        n_out = _out_len(int(round(clip.duration_s * clip.rate)), clip.rate, self.pre.rate)
        duration = n_out / self.pre.rate
        if spec.window_s > duration + 1e-9:
            raise DataError(f"{path}: window of {spec.window_s:g} s is longer than the clip ({duration:g} s); "
                            f"clips are never stitched together (their seams are unknown): give --window "
                            f"{duration:g} or less (window_s)")
        seizure_id, unit = group
        piece = Piece(path.name, clip.path, self.subject_of(path, clip.subject), unit, "clip label", clip)
        schedule = self.schedule.every(spec.stride_ictal_s) if clip.label == "ictal" else self.schedule
        cols = _Columns(self.outputs)
        for t in schedule.starts(duration):
            lab = _clip_label(clip, t, spec)
            if lab is None:
                piece.dropped["beyond_horizons" if clip.label == "preictal" else f"{clip.label}_clip"] += 1
            elif not schedule.fits(t, n_out, self.pre.rate):
                piece.dropped["tail"] += 1
            else:
                cols.add(round(t, 6), lab, seizure_id if any(lab) else "", unit)
        return cols.into(piece)


def _clip_label(clip: Clip, t: float, spec: DatasetSpec) -> tuple[int, ...] | None:
    k = len(spec.horizons_s)
    if spec.task == "detection":
        if clip.sequence is not None:
            raise DataError(f"{clip.path}: a prediction-challenge clip cannot make a detection dataset")
        if spec.early_s is not None and clip.label in ("ictal", "interictal"):
            early = int(clip.label == "ictal" and is_early(clip.latency, spec.early_s))
            return (int(clip.label == "ictal"), early)
        return {"ictal": (1,), "interictal": (0,)}.get(clip.label)  # Delhi preictal: dropped
    if clip.label == "interictal":
        return (0,) * k
    if clip.label == "ictal":
        if clip.latency is not None:
            raise DataError(f"{clip.path}: a detection-challenge clip cannot make a prediction dataset")
        return None
    if clip.sequence is None:  # Delhi preictal: time to onset unknown, positive for every horizon
        return (1,) * k
    # Kaggle prediction: the preictal hour ends 5 min before onset, six 10-min clips (sequence 1..6).
    to_onset = 3900.0 - (clip.sequence - 1) * clip.duration_s - t
    flags = tuple(int(to_onset <= h) for h in spec.horizons_s)
    return flags if any(flags) else None


def _is_delhi(c: Clip) -> bool:
    return "_segment_" not in Path(c.path).stem


def unit_kind(piece: Piece, declared: str) -> str:
    """What a dataset's units are (``research.unitscore``): Kaggle clips "clips", Delhi clips "segments", a
    signal file what the spec declares (``units``: "continuous" or "segments")."""
    if piece.clip is not None:
        return "segments" if _is_delhi(piece.clip) else "clips"
    return declared


def _clip_groups(clips: list[Clip], task: str) -> dict[str, tuple[str, str]]:
    """clip path -> (seizure id, split unit). Ictal clips of one seizure (latency resets to 0 at each
    onset) and preictal clips of one hour (sequence 1..6) share an id; Kaggle interictal clips are
    cut into contiguous blocks by segment number (prediction: hours), Delhi clips stand alone."""
    out: dict[str, tuple[str, str]] = {}
    by_key: dict[tuple[str, str], list[Clip]] = defaultdict(list)
    for c in clips:
        by_key[(c.subject, c.label)].append(c)
    n_seizures: Counter = Counter()
    for (subject, label), cs in sorted(by_key.items()):
        cs.sort(key=lambda c: c.segment)
        k, prev = 0, None
        for c in cs:
            stem = Path(c.path).stem
            if _is_delhi(c):
                out[c.path] = (f"{subject}#{stem}", stem)
                continue
            marker = c.latency if c.latency is not None else c.sequence
            if prev is None or marker is None or marker <= prev:
                k += 1
            prev = marker
            kind = "sz" if label == "ictal" else ("hour" if c.sequence is not None else "")
            if kind:
                gid = f"{subject}#{label}-{kind}{k}"
                out[c.path] = (gid if label != "interictal" else "", gid)
        if label in ("ictal", "preictal"):
            n_seizures[subject] = max(n_seizures[subject], k)
    for (subject, label), cs in by_key.items():
        todo = [c for c in cs if c.path not in out]
        if not todo:
            continue
        blocks = max(3, n_seizures[subject])
        per = math.ceil(len(todo) / blocks)
        for i, c in enumerate(todo):
            out[c.path] = ("", f"{subject}#{label}-block{i // per + 1}")
    return out


def read_annotation_file(path: str, recording: str) -> list[Annotation]:
    p = Path(path)
    if p.name.endswith("-summary.txt"):
        table = read_chbmit_summary(p)
        if recording not in table:
            raise DataError(f"{p}: does not list {recording}")
        return table[recording]
    if p.suffix == ".csv_bi":
        return read_tuh_csv_bi(p)
    if p.suffix.lower() in SIGNAL_SUFFIXES and p.suffix.lower() not in TEXT_SUFFIXES:
        return list(read_header(p).annotations)
    return read_csv_annotations(p)



def preprocess_spec(spec: DatasetSpec, device: DeviceProfile | None, first: Path) -> PreprocessSpec:
    if device:
        channels, rate = spec.channels or device.channels, spec.rate or device.sampling_rate
    elif spec.channels and spec.rate:
        channels, rate = spec.channels, spec.rate
    else:
        if first.suffix.lower() in SIGNAL_SUFFIXES:
            with open_recording(first, units=device.units if device else None) as rec:
                channels0, rate0 = rec.header.channels, rec.header.rate
        else:
            clip = (read_clip(first, with_data=False)[0] if first.is_file() else find_clips(first)[0])
            channels0, rate0 = clip.channels, clip.rate
        channels, rate = spec.channels or channels0, spec.rate or rate0
    return PreprocessSpec(channels=tuple(channels), rate=float(rate), bandpass=spec.bandpass, notch=spec.notch)


def plan(spec: DatasetSpec) -> tuple[list[Piece], PreprocessSpec, DeviceProfile | None]:
    device = load_device(spec.device) if spec.device else None
    paths = _expand(spec.recordings)
    pre = preprocess_spec(spec, device, paths[0])
    try:
        pre.check("")
    except ValueError as exc:
        raise ConfigError(f"dataset build: {exc}: lower the band edge (--bandpass LOW HIGH, --notch) "
                          "below it") from None
    planner = Planner(spec, pre, device)
    pieces: list[Piece] = []
    clips: list[Clip] = []
    for p in paths:
        if p.is_dir():
            clips += find_clips(p)
        elif p.suffix.lower() == ".mat":
            clips.append(read_clip(p, with_data=False)[0])
        elif p.suffix.lower() in SIGNAL_SUFFIXES:
            pieces.append(planner.edf(p))
        else:
            raise DataError(f"{p}: not a recording ({', '.join(SIGNAL_SUFFIXES)}), a clip (.mat) or a clip folder")
    if clips:
        pieces += planner.clips(clips)
    return pieces, pre, device


def load_signal(piece: Piece, pre: PreprocessSpec, device: DeviceProfile | None) -> np.ndarray:
    canon = device.canonical if device else canonical_label
    if piece.clip is None:
        with open_recording(piece.path, units=device.units if device else None) as rec:
            h = rec.header
            proc = Preprocessor(pre, h.channels, h.rate, where=piece.path, canon=canon)
            parts = [proc.process(b) for _, b in rec.chunks(max(1, int(30 * h.rate)))]
        return np.concatenate(parts, axis=1)
    return clip_signal(piece.path, pre, canon)[1]


def clip_signal(path: str, pre: PreprocessSpec, canon: Any = canonical_label) -> tuple[Clip, np.ndarray]:
    """One clip as the daemon's preprocessing gives it: (clip, (channels, samples) at ``pre.rate``)."""
    clip, data = read_clip(path)
    assert data is not None
    labels = _clip_channels(clip.channels, pre.channels, path, canon)
    proc = Preprocessor(pre, labels, clip.rate, where=path, canon=canon)
    return clip, proc.process(data)
