"""Labelled windows of one recording in memory (evaluation, threshold, prediction), planned by the
dataset build's own planner and cut from the daemon's own preprocessing: one windowing path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seizurewatch.devices import DeviceProfile, canonical_label
from seizurewatch.preprocess import Preprocessor, PreprocessSpec
from seizurewatch.recordings import Recording, open_recording
from seizurewatch.research.dataset.plan import Piece, Planner
from seizurewatch.research.dataset.spec import DatasetSpec
from seizurewatch.research.dataset.store import Windows
from seizurewatch.research.labels import LabelRules
from seizurewatch.schedule import WindowSchedule
from seizurewatch.types import Annotation


@dataclass
class RecordingWindows:
    recording: str
    x: np.ndarray  # (n, channels, samples) float32
    y: np.ndarray  # (n, outputs) int8
    t_start: np.ndarray  # (n,) seconds
    dropped: dict[str, int]


def preprocess_recording(path: str, spec: PreprocessSpec, device: DeviceProfile | None = None,
                         chunk_s: float = 30.0) -> tuple[np.ndarray, Recording]:
    """The whole recording as the daemon would see it: (channels, samples) at spec.rate."""
    rec = open_recording(path, units=device.units if device else None)
    h = rec.header
    canon = device.canonical if device else canonical_label
    pre = Preprocessor(spec, h.channels, h.rate, where=path, canon=canon)
    parts = [pre.process(block) for _, block in rec.chunks(max(1, int(chunk_s * h.rate)))]
    return np.concatenate(parts, axis=1), rec


def window_views(signal: np.ndarray, starts: np.ndarray, rate: float, schedule: WindowSchedule,
                 name: str = "") -> Windows:
    """(n, channels, samples) windows of ``schedule`` of ``signal`` starting at ``starts`` seconds, cut on read
    (the dataset reader's own ``Windows``): nothing is copied until rows are asked for."""
    n_win = schedule.window_samples(rate)
    first = np.rint(np.asarray(starts, dtype=np.float64) * rate).astype(np.int64)
    return Windows({name: signal}, [name] * len(first), first, n_win, signal.shape[0])


def plan_recording(path: str, spec: PreprocessSpec, schedule: WindowSchedule, stride_ictal_s: float,
                   rules: LabelRules, annotations: list[Annotation] | None = None,
                   device: DeviceProfile | None = None) -> Piece:
    """The labelled window starts of one recording on ``schedule`` (``stride_ictal_s`` apart inside seizures;
    no sample read); ``annotations`` default to the ones inside the file."""
    ds = DatasetSpec(recordings=(path,), window_s=schedule.window, stride_s=schedule.hop,
                     stride_ictal_s=stride_ictal_s, **rules.label_fields())
    if annotations is None:
        with open_recording(path) as rec:
            annotations = list(rec.header.annotations)
    return Planner(ds, spec, device).edf(Path(path), annotations)


def windows_from_recording(
    path: str,
    spec: PreprocessSpec,
    schedule: WindowSchedule,
    stride_ictal_s: float,
    rules: LabelRules,
    annotations: list[Annotation] | None = None,
    device: DeviceProfile | None = None,
) -> RecordingWindows:
    """Windows (copied out) and labels of one recording; ``annotations`` default to the ones inside the file."""
    piece = plan_recording(path, spec, schedule, stride_ictal_s, rules, annotations, device)
    signal, rec = preprocess_recording(path, spec, device)
    rec.close()
    x = window_views(signal, piece.starts, spec.rate, schedule)[:]
    return RecordingWindows(path, x, piece.labels, piece.starts, dict(piece.dropped))
