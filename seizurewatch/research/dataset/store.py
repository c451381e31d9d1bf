"""The dataset folder: one writer and one reader of its format.

    signals/NNNN.npy  float32 (channels, samples): each recording's preprocessed continuous signal, once
    y.npy             int8 (N, outputs): the label of every window
    index.csv         i,recording,subject,t_start,seizure_id,split,start (start: first sample in its signal)
    manifest.json     format, task, outputs, preprocess, window_s, stride_s, signals, recordings...

Windows are cut on read as views of the memory-mapped signals, so disk holds the signal about once
whatever the stride (the old ``x.npy`` layout copied every window) and training streams batches.
"""

from __future__ import annotations

import array
import csv
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
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


class Index:
    """The window index as numpy columns (row number, start sample, t_start; recording, subject, seizure id
    and split as small integer codes into name lists): a few bytes a window, however large the corpus.
    Iterating gives ``IndexRow`` objects one at a time."""

    def __init__(self, i: np.ndarray, recording: np.ndarray, recordings: list[str], subject: np.ndarray,
                 subjects: list[str], t_start: np.ndarray, seizure: np.ndarray, seizures: list[str],
                 split: np.ndarray, splits: list[str], start: np.ndarray) -> None:
        self.i, self.start = np.asarray(i, np.int64), np.asarray(start, np.int64)
        self.t_start = np.asarray(t_start, np.float64)
        self.recording, self.subject = np.asarray(recording, np.int32), np.asarray(subject, np.int32)
        self.seizure, self.split = np.asarray(seizure, np.int32), np.asarray(split, np.int32)
        self.recording_names, self.subject_names = list(recordings), list(subjects)
        self.seizure_names, self.split_names = list(seizures), list(splits)

    def __len__(self) -> int:
        return len(self.i)

    def __getitem__(self, k: int) -> IndexRow:
        k = int(k)
        return IndexRow(int(self.i[k]), self.recording_names[self.recording[k]], self.subject_names[self.subject[k]],
                        float(self.t_start[k]), self.seizure_names[self.seizure[k]], self.split_names[self.split[k]],
                        int(self.start[k]))

    def __iter__(self) -> Iterator[IndexRow]:
        return (self[k] for k in range(len(self)))

    def _names(self) -> tuple[np.ndarray, ...]:
        """The coded columns decoded to names (object arrays), as the rows would give them."""
        return tuple(np.asarray(names, dtype=object)[codes] if len(codes) else np.zeros(0, object)
                     for codes, names in ((self.recording, self.recording_names), (self.subject, self.subject_names),
                                          (self.seizure, self.seizure_names), (self.split, self.split_names)))

    def __eq__(self, other: object) -> bool:
        """The same rows (column by column: codes may differ where the names they stand for do not)."""
        if not isinstance(other, Index) or len(self) != len(other):
            return False
        return all(np.array_equal(a, b) for a, b in zip((self.i, self.start, self.t_start, *self._names()),
                                                         (other.i, other.start, other.t_start, *other._names())))

    __hash__ = None  # type: ignore[assignment]

    def mask(self, split: str | None = None, subject: str | None = None) -> np.ndarray:
        """Rows of one split and/or subject (a name not in the index matches nothing)."""
        m = np.ones(len(self), dtype=bool)
        for codes, names, want in ((self.split, self.split_names, split), (self.subject, self.subject_names, subject)):
            if want is not None:
                m &= codes == (names.index(want) if want in names else -1)
        return m

    def recordings_in(self, m: np.ndarray | None = None) -> list[str]:
        """Recording names of the rows in ``m`` (all rows by default), in file order."""
        codes = self.recording if m is None else self.recording[m]
        _, first = np.unique(codes, return_index=True)
        return [self.recording_names[codes[j]] for j in sorted(first)]

    def splits_present(self) -> list[str]:
        return [self.split_names[c] for c in np.unique(self.split)]

    def with_splits(self, by_recording: dict[str, str], default: str) -> Index:
        """The same index with each recording's split set from ``by_recording`` (by name), others ``default``."""
        names = sorted(set(by_recording.values()) | {default})
        per_rec = np.asarray([names.index(by_recording.get(Path(r).name, default)) for r in self.recording_names]
                             or [0], dtype=np.int32)
        return Index(self.i, self.recording, self.recording_names, self.subject, self.subject_names, self.t_start,
                     self.seizure, self.seizure_names, per_rec[self.recording] if len(self) else self.split, names,
                     self.start)


def _coder(names: list[str], codes: dict[str, int]) -> Callable[[str], int]:
    def code(v: str) -> int:
        c = codes.get(v)
        if c is None:
            c = codes[v] = len(names)
            names.append(v)
        return c
    return code


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
    index: Index

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
        return sorted({self.index.subject_names[c] for c in np.unique(self.index.subject)})

    def rows(self, split: str, subject: str | None = None) -> np.ndarray:
        """Row numbers of one split (optionally of one subject), in file order."""
        return self.index.i[self.index.mask(split, subject)]

    def recordings(self, split: str, subject: str | None = None) -> list[str]:
        """Recording paths of a split, as the manifest lists them (absolute when it has them)."""
        names = self.index.recordings_in(self.index.mask(split, subject))
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
    index = read_index(root / "index.csv")
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
    for c, name in enumerate(index.recording_names):
        mine = index.recording == c
        if not mine.any():
            continue
        n = signals[name].shape[1] if name in signals else -1
        bad = np.flatnonzero(mine & ((index.start < 0) | (index.start + samples > n)))
        if len(bad):
            k = int(bad[0])
            raise DataError(f"{where}/index.csv row {int(index.i[k])}: window at sample {int(index.start[k])} of "
                            f"{name} is outside its stored signal; {REBUILD}")
    x = Windows(signals, [index.recording_names[c] for c in index.recording], index.start, samples, len(pre.channels))
    return DatasetDir(root, manifest, x, y, index)


def read_index(path: Path) -> Index:
    """index.csv into columns, row by row (nothing per row is kept but its numbers and codes)."""
    cols: dict[str, array.array] = {k: array.array(t) for k, t in (("i", "q"), ("start", "q"), ("t", "d"),
                                                                   ("rec", "i"), ("sub", "i"), ("sz", "i"),
                                                                   ("split", "i"))}
    lists: dict[str, list[str]] = {k: [] for k in ("rec", "sub", "sz", "split")}
    code = {k: _coder(lists[k], {}) for k in lists}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        head = next(reader, [])
        try:
            at = {k: head.index(k) for k in ("i", "recording", "t_start", "split", "start")}
        except ValueError as exc:
            raise DataError(f"{path} line 1: header lacks a column ({exc}); {REBUILD}") from None
        sub_at = head.index("subject") if "subject" in head else None
        sz_at = head.index("seizure_id") if "seizure_id" in head else None
        for n, row in enumerate(reader, start=2):
            try:
                cols["i"].append(int(row[at["i"]]))
                cols["t"].append(float(row[at["t_start"]]))
                cols["start"].append(int(row[at["start"]]))
                cols["rec"].append(code["rec"](row[at["recording"]]))
                cols["split"].append(code["split"](row[at["split"]]))
                cols["sub"].append(code["sub"](row[sub_at] if sub_at is not None and sub_at < len(row) else ""))
                cols["sz"].append(code["sz"](row[sz_at] if sz_at is not None and sz_at < len(row) else ""))
            except (IndexError, ValueError, TypeError) as exc:
                raise DataError(f"{path} line {n}: bad row ({exc!r})") from None
    return Index(np.frombuffer(cols["i"], np.int64), np.frombuffer(cols["rec"], np.int32), lists["rec"],
                 np.frombuffer(cols["sub"], np.int32), lists["sub"], np.frombuffer(cols["t"], np.float64),
                 np.frombuffer(cols["sz"], np.int32), lists["sz"], np.frombuffer(cols["split"], np.int32),
                 lists["split"], np.frombuffer(cols["start"], np.int64))


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
                w.writerow([i, b.recording, b.subject, repr(t), ids[sz], SPLITS[s], st])  # round-trips exactly
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
