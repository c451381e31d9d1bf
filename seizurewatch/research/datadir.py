"""Reading a built dataset directory (written by ``seizurewatch dataset build``):

    x.npy          float32 (N, channels, samples), opened memory-mapped
    y.npy          int8 (N, outputs)
    index.csv      i,recording,subject,t_start,seizure_id,split
    manifest.json  format, task, outputs, preprocess, window_s, stride_s, device, recordings...

Training and evaluation take rows by index, so a dataset larger than memory still trains.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.errors import DataError
from seizurewatch.preprocess import PreprocessSpec

FORMAT = "seizurewatch-dataset/1"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class IndexRow:
    i: int
    recording: str
    subject: str
    t_start: float
    seizure_id: str
    split: str


@dataclass
class DatasetDir:
    root: Path
    manifest: dict[str, Any]
    x: np.ndarray  # memory-mapped (N, C, T)
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


def open_dataset(path: str | Path) -> DatasetDir:
    root = Path(path)
    where = str(root)
    for name in ("x.npy", "y.npy", "index.csv", "manifest.json"):
        if not (root / name).is_file():
            raise DataError(f"{where}: not a dataset directory ({name} missing); "
                            "build one with 'seizurewatch dataset build'")
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}/manifest.json: not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise DataError(f"{where}/manifest.json: format {manifest.get('format')!r}, expected {FORMAT!r}")
    for key in ("preprocess", "window_s"):
        if key not in manifest:
            raise DataError(f"{where}/manifest.json: lacks {key!r}")
    x = np.load(root / "x.npy", mmap_mode="r")
    y = np.load(root / "y.npy")
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if x.ndim != 3 or len(x) != len(y):
        raise DataError(f"{where}: x.npy {x.shape} and y.npy {y.shape} do not match (need (N, C, T) and (N, K))")
    index = []
    with open(root / "index.csv", newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                index.append(IndexRow(int(row["i"]), row["recording"], row.get("subject") or "", float(row["t_start"]),
                                      row.get("seizure_id") or "", row["split"]))
            except (KeyError, ValueError, TypeError) as exc:
                raise DataError(f"{where}/index.csv line {n}: bad row ({exc!r})") from None
    if len(index) != len(x):
        raise DataError(f"{where}: index.csv has {len(index)} rows, x.npy has {len(x)} windows")
    return DatasetDir(root, manifest, x, y, index)


def write_dataset(path: str | Path, x: np.ndarray, y: np.ndarray, rows: list[dict[str, Any]],
                  manifest: dict[str, Any]) -> Path:
    """Write the format above (used by tests and by cross-validation to make small folds)."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "x.npy", np.ascontiguousarray(x, dtype=np.float32))
    np.save(root / "y.npy", np.asarray(y, dtype=np.int8).reshape(len(x), -1))
    with open(root / "index.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["i", "recording", "subject", "t_start", "seizure_id", "split"])
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({"i": i, "recording": r["recording"], "subject": r.get("subject", ""),
                        "t_start": r["t_start"], "seizure_id": r.get("seizure_id", ""), "split": r["split"]})
    (root / "manifest.json").write_text(json.dumps({"format": FORMAT, **manifest}, indent=2), encoding="utf-8")
    return root
