"""The dataset folder: one writer and one reader of its format.

    signals/NNNN.npy  float32 (channels, samples): each recording's preprocessed continuous signal, once
    y.npy             int8 (N, outputs): the label of every window
    index.csv         i,recording,subject,t_start,seizure_id,split,start (start: first sample in its signal)
    manifest.json     format, task, outputs, preprocess, window_s, stride_s, signals, recordings...

Windows are cut on read as views of the memory-mapped signals, so disk holds the signal about once
whatever the stride (the old ``x.npy`` layout copied every window) and training streams batches.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.errors import DataError
from seizurewatch.preprocess import PreprocessSpec

FORMAT = "seizurewatch-dataset/2"
SPLITS = ("train", "val", "test")
INDEX_COLUMNS = ["i", "recording", "subject", "t_start", "seizure_id", "split", "start"]
REBUILD = "rebuild it with 'seizurewatch dataset build --spec SPEC.yaml --out FOLDER'"


@dataclass(frozen=True)
class IndexRow:
    i: int
    recording: str
    subject: str
    t_start: float
    seizure_id: str
    split: str
    start: int = 0  # first sample of the window in its recording's stored signal


class Windows:
    """(N, channels, samples) windows cut on read from the stored signals; ``w[rows]`` gives a
    float32 array (a view for one integer row), so nothing is loaded before it is asked for."""

    def __init__(self, signals: dict[str, np.ndarray], recording: list[str], start: np.ndarray, samples: int,
                 channels: int) -> None:
        self.signals, self.recording, self.start = signals, recording, np.asarray(start, dtype=np.int64)
        self.samples, self.channels = samples, channels

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.recording), self.channels, self.samples)

    ndim = 3
    dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.recording)

    def window(self, i: int) -> np.ndarray:
        s = int(self.start[i])
        return self.signals[self.recording[i]][:, s: s + self.samples]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.window(int(key) % len(self) if key < 0 else int(key))
        rows = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), self.channels, self.samples), dtype=np.float32)
        for k, i in enumerate(rows):
            out[k] = self.window(int(i))
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self[:]
        return a if dtype is None else a.astype(dtype)


@dataclass
class DatasetDir:
    root: Path
    manifest: dict[str, Any]
    x: Windows
    y: np.ndarray  # (N, K)
    index: list[IndexRow]

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_json(self.manifest["preprocess"])

    @property
    def task(self) -> str:
        return str(self.manifest.get("task", "detection"))

    @property
    def outputs(self) -> list[str]:
        out = self.manifest.get("outputs")
        return list(out) if out else [f"output{k}" for k in range(self.y.shape[1])]

    @property
    def window_s(self) -> float:
        return float(self.manifest["window_s"])

    @property
    def subjects(self) -> list[str]:
        return sorted({r.subject for r in self.index})

    def rows(self, split: str, subject: str | None = None) -> np.ndarray:
        """Row numbers of one split (optionally of one subject), in file order."""
        return np.asarray([r.i for r in self.index if r.split == split and (subject is None or r.subject == subject)],
                          dtype=np.int64)

    def recordings(self, split: str, subject: str | None = None) -> list[str]:
        """Recording paths of a split, as the manifest lists them (absolute when it has them)."""
        names = []
        for r in self.index:
            if r.split == split and (subject is None or r.subject == subject) and r.recording not in names:
                names.append(r.recording)
        paths = {Path(str(_rec_path(m))).name: str(_rec_path(m)) for m in self.manifest.get("recordings", [])}
        return [paths.get(Path(n).name, n) for n in names]


def _rec_path(entry: Any) -> str:
    if isinstance(entry, dict):
        return str(entry.get("path") or entry.get("recording") or entry.get("name"))
    return str(entry)


# ---------------------------------------------------------------------------------------------- reader

def open_dataset(path: str | Path) -> DatasetDir:
    root = Path(path)
    where = str(root)
    if (root / "x.npy").is_file():
        raise DataError(f"{where}: an older dataset layout (x.npy, a copy of every window) that this version "
                        f"no longer reads; {REBUILD}")
    for name in ("y.npy", "index.csv", "manifest.json"):
        if not (root / name).is_file():
            raise DataError(f"{where}: not a dataset directory ({name} missing); "
                            "build one with 'seizurewatch dataset build --spec SPEC.yaml --out FOLDER'")
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}/manifest.json: not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise DataError(f"{where}/manifest.json: format {manifest.get('format')!r}, expected {FORMAT!r}; {REBUILD}")
    for key in ("preprocess", "window_s", "signals"):
        if key not in manifest:
            raise DataError(f"{where}/manifest.json: lacks {key!r}; {REBUILD}")
    y = np.load(root / "y.npy")
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    index = []
    with open(root / "index.csv", newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                index.append(IndexRow(int(row["i"]), row["recording"], row.get("subject") or "", float(row["t_start"]),
                                      row.get("seizure_id") or "", row["split"], int(row["start"])))
            except (KeyError, ValueError, TypeError) as exc:
                raise DataError(f"{where}/index.csv line {n}: bad row ({exc!r})") from None
    if len(index) != len(y):
        raise DataError(f"{where}: index.csv has {len(index)} rows, y.npy has {len(y)} labels")
    pre = PreprocessSpec.from_json(manifest["preprocess"])
    samples = int(round(float(manifest["window_s"]) * pre.rate))
    signals: dict[str, np.ndarray] = {}
    for name, file in manifest["signals"].items():
        f = root / file
        if not f.is_file():
            raise DataError(f"{f}: signal of {name} missing; {REBUILD}")
        sig = np.load(f, mmap_mode="r")
        if sig.ndim != 2 or sig.shape[0] != len(pre.channels):
            raise DataError(f"{f}: shape {sig.shape}, expected ({len(pre.channels)}, samples); {REBUILD}")
        signals[name] = sig
    for r in index:
        if r.recording not in signals or r.start < 0 or r.start + samples > signals[r.recording].shape[1]:
            raise DataError(f"{where}/index.csv row {r.i}: window at sample {r.start} of {r.recording} "
                            f"is outside its stored signal; {REBUILD}")
    x = Windows(signals, [r.recording for r in index], np.array([r.start for r in index]), samples, len(pre.channels))
    return DatasetDir(root, manifest, x, y, index)


# ---------------------------------------------------------------------------------------------- writer

def signal_file(k: int) -> str:
    return f"signals/{k:04d}.npy"


def write_signal(root: Path, k: int, signal: np.ndarray) -> str:
    """Store one recording's preprocessed (channels, samples) signal; returns its file, relative to root."""
    name = signal_file(k)
    (root / "signals").mkdir(parents=True, exist_ok=True)
    np.save(root / name, np.ascontiguousarray(signal, dtype=np.float32))
    return name


@dataclass(frozen=True, eq=False)
class IndexBlock:
    """Consecutive index rows of one recording as numpy columns: what building a recording gives
    back (a few bytes a window), written to index.csv one block at a time."""

    recording: str
    subject: str
    t_start: np.ndarray  # (n,) float64, s
    start: np.ndarray  # (n,) int64: first sample of each window in the recording's stored signal
    split: np.ndarray  # (n,) int8: codes into SPLITS
    seizure: np.ndarray  # (n,) int32: codes into ``ids``, -1: no seizure
    ids: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.t_start)


def write_table(root: Path, y: np.ndarray, blocks: Sequence[IndexBlock], manifest: dict[str, Any]) -> None:
    """Labels, index (streamed block by block) and manifest (``manifest['signals']``: recording name ->
    signal file)."""
    n = sum(len(b) for b in blocks)
    y = np.asarray(y, dtype=np.int8)
    if len(y) != n:
        raise DataError(f"{root}: {len(y)} labels for {n} index rows")
    np.save(root / "y.npy", y.reshape(n, -1))
    with open(root / "index.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(INDEX_COLUMNS)
        i = 0
        for b in blocks:
            ids = (*b.ids, "")  # code -1: ""
            for t, s, sz, st in zip(b.t_start.tolist(), b.split.tolist(), b.seizure.tolist(), b.start.tolist()):
                w.writerow([i, b.recording, b.subject, f"{t:.6g}", ids[sz], SPLITS[s], st])
                i += 1
    (root / "manifest.json").write_text(json.dumps({**manifest, "format": FORMAT}, indent=1) + "\n", encoding="utf-8")


def blocks_of_rows(rows: list[dict[str, Any]]) -> list[IndexBlock]:
    """Index rows given as dicts (recording, subject, t_start, seizure_id, split, start), as blocks of
    consecutive rows of one recording."""
    out: list[IndexBlock] = []
    for n, r in enumerate(rows):
        if r["split"] not in SPLITS:
            raise DataError(f"index row {n}: split {r['split']!r}, expected one of {', '.join(SPLITS)}")
    for (name, subject), run in itertools.groupby(rows, key=lambda r: (r["recording"], r.get("subject", ""))):
        part = list(run)
        ids = tuple(dict.fromkeys(sid for r in part if (sid := str(r.get("seizure_id") or ""))))
        code = {sid: k for k, sid in enumerate(ids)}
        out.append(IndexBlock(
            name, str(subject), np.array([float(r["t_start"]) for r in part], dtype=np.float64),
            np.array([int(r["start"]) for r in part], dtype=np.int64),
            np.array([SPLITS.index(r["split"]) for r in part], dtype=np.int8),
            np.array([code.get(str(r.get("seizure_id") or ""), -1) for r in part], dtype=np.int32), ids))
    return out


def write_dataset(path: str | Path, x: np.ndarray, y: np.ndarray, rows: list[dict[str, Any]],
                  manifest: dict[str, Any]) -> Path:
    """Store ready-cut (N, C, T) windows (tests, cross-validation folds): each recording's windows,
    laid end to end, become its stored signal."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    x = np.asarray(x, dtype=np.float32)
    T = x.shape[2]
    names = list(dict.fromkeys(r["recording"] for r in rows))
    signals, out_rows = {}, [dict(r) for r in rows]
    for k, name in enumerate(names):
        mine = [i for i, r in enumerate(rows) if r["recording"] == name]
        signals[name] = write_signal(root, k, np.concatenate([x[i] for i in mine], axis=1))
        for j, i in enumerate(mine):
            out_rows[i]["start"] = j * T
    write_table(root, y, blocks_of_rows(out_rows), {**manifest, "signals": signals})
    return root
