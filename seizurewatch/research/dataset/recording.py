"""Cut labelled windows out of one recording, through the daemon's own preprocessing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seizurewatch.devices import DeviceProfile, canonical_label
from seizurewatch.edfio import EdfRecording
from seizurewatch.preprocess import Preprocessor, PreprocessSpec
from seizurewatch.research.labels import LabelRules, joins_of, label_window, seizures_of, window_starts
from seizurewatch.types import Annotation


@dataclass
class RecordingWindows:
    recording: str
    x: np.ndarray  # (n, channels, samples) float32
    y: np.ndarray  # (n, outputs) int8
    t_start: np.ndarray  # (n,) seconds
    dropped: dict[str, int]


def preprocess_recording(path: str, spec: PreprocessSpec, device: DeviceProfile | None = None,
                         chunk_s: float = 30.0) -> tuple[np.ndarray, EdfRecording]:
    """The whole recording as the daemon would see it: (channels, samples) at spec.rate."""
    rec = EdfRecording(path)
    h = rec.header
    canon = device.canonical if device else canonical_label
    pre = Preprocessor(spec, h.channels, h.rate, where=path, canon=canon)
    parts = [pre.process(block) for _, block in rec.chunks(max(1, int(chunk_s * h.rate)))]
    return np.concatenate(parts, axis=1), rec


def windows_from_recording(
    path: str,
    spec: PreprocessSpec,
    window_s: float,
    stride_s: float,
    stride_ictal_s: float,
    rules: LabelRules,
    annotations: list[Annotation] | None = None,
    device: DeviceProfile | None = None,
) -> RecordingWindows:
    signal, rec = preprocess_recording(path, spec, device)
    with rec:
        anns = list(annotations) if annotations is not None else list(rec.header.annotations)
        duration = signal.shape[1] / spec.rate
    seizures = seizures_of(anns, duration, path)
    joins = joins_of(anns)
    n_win = int(round(window_s * spec.rate))
    xs, ys, ts = [], [], []
    dropped = {"seam": 0, "excluded": 0}
    for t in window_starts(duration, window_s, stride_s, stride_ictal_s, seizures):
        lab = label_window(t, t + window_s, seizures, joins, rules)
        if lab is None:
            key = "seam" if any(t < j < t + window_s for j in joins) else "excluded"
            dropped[key] += 1
            continue
        i0 = int(round(t * spec.rate))
        if i0 + n_win > signal.shape[1]:
            continue
        xs.append(signal[:, i0 : i0 + n_win])
        ys.append(lab)
        ts.append(t)
    n_out = len(rules.outputs())
    x = np.stack(xs).astype(np.float32) if xs else np.zeros((0, len(spec.channels), n_win), np.float32)
    y = np.asarray(ys, dtype=np.int8).reshape(-1, n_out)
    return RecordingWindows(path, x, y, np.asarray(ts, dtype=np.float64), dropped)
