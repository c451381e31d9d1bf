"""Build a dataset folder from annotated recordings or labelled clips.

Three passes, so memory stays at about one recording however many there are:
  1. plan: read headers and annotations only; label every window start (no samples read);
  2. split and balance on the plan (splits by recording, seizure or subject: never by window);
  3. store: ``build_recording`` preprocesses one recording through the daemon's own preprocessing
     and stores its continuous signal once; the window index points into it (see ``store``).

``build_recording`` is a function of its job alone (no shared state), so the loop in
``build_dataset`` can be handed to any scheduler.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.checks import check_output_dir
from seizurewatch.devices import DeviceProfile
from seizurewatch.errors import DataError
from seizurewatch.preprocess import PreprocessSpec
from seizurewatch.research.dataset.plan import Piece, load_signal, plan, unit_kind
from seizurewatch.research.dataset.spec import DatasetSpec
from seizurewatch.research.dataset.split import assign_splits, balance, check_classes, check_leakage, counts
from seizurewatch.research.dataset.store import FORMAT, SPLITS, IndexBlock, write_signal, write_table

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class RecordingJob:
    """One recording to store: its planned windows and the split of each (codes into SPLITS, -1: left out)."""

    k: int  # its number in the folder (signals/NNNN.npy)
    piece: Piece
    split: np.ndarray  # (windows of the piece,) int8
    pre: PreprocessSpec
    device: DeviceProfile | None
    out: Path


@dataclass(frozen=True, eq=False)
class RecordingEntry:
    """What storing one recording gives back: its signal file, index rows (as columns), labels and manifest entry."""

    name: str
    signal: str  # file relative to the folder, "" when no window was kept
    index: IndexBlock
    y: np.ndarray  # (kept windows, outputs) int8
    manifest: dict[str, Any] = field(default_factory=dict)


def build_recording(job: RecordingJob) -> RecordingEntry:
    """Preprocess one recording as the daemon would and store its signal; the entry lists its windows."""
    p = job.piece
    kept = np.flatnonzero(job.split >= 0)
    file = ""
    if len(kept):
        sig = load_signal(p, job.pre, job.device)
        file = write_signal(job.out, job.k, sig)
        del sig
    t = p.starts[kept]
    split = job.split[kept]
    index = IndexBlock(p.name, p.subject, t, np.rint(t * job.pre.rate).astype(np.int64), split,
                       p.seizure[kept], p.ids)
    codes, first, n = np.unique(split, return_index=True, return_counts=True)
    per_split = {SPLITS[codes[j]]: int(n[j]) for j in np.argsort(first)}  # in window order
    entry = {
        "path": p.path, "subject": p.subject,
        "split": (next(iter(per_split)) if len(per_split) == 1 else ("mixed" if per_split else "")),
        "windows": len(kept), "windows_per_split": per_split,
        "positive": int(p.positive[kept].sum()),
        "dropped": dict(p.dropped), "annotations": p.annotations_from, "signal": file,
        **({"montage": p.montage} if p.montage else {}), "group": p.group,
        **({"latency": p.clip.latency} if p.clip is not None and p.clip.latency is not None else {}),
    }
    log.info("recording stored", extra={"recording": p.name, "windows": len(kept), "dropped": dict(p.dropped)})
    return RecordingEntry(p.name, file, index, p.labels[kept], entry)


def _units(p: Piece, by: str) -> tuple[list[str], np.ndarray]:
    """The split units of a piece's windows: unit names and each window's code into them."""
    if by == "seizure":
        return list(p.ids), p.near
    return [p.group if by == "recording" else p.subject], np.zeros(len(p), np.int32)


def plan_jobs(spec: DatasetSpec, out_dir: Path) -> tuple[list[RecordingJob], dict[str, Any]]:
    """Plan, split, balance and check; one job per recording, and the manifest fields known so far."""
    pieces, pre, device = plan(spec)
    seen: dict[str, str] = {}
    for p in pieces:
        if seen.setdefault(p.name, p.path) != p.path:
            raise DataError(f"{p.path}: same file name as {seen[p.name]}; the index names recordings by file "
                            f"name, so rename one of them")
    kinds = sorted({unit_kind(p, spec.units) for p in pieces})
    if len(kinds) > 1:
        raise DataError(f"the recordings mix {' and '.join(kinds)}, which are scored differently; build a dataset "
                        "of each")
    warnings: list[str] = []
    outputs = spec.outputs()
    if not any(len(p) for p in pieces):
        detail = "; ".join(f"{p.name}: {dict(p.dropped)}" for p in pieces[:10])
        raise DataError(f"no windows at all after labelling ({detail})")
    units: dict[str, tuple[int, int]] = {}  # unit -> (windows, positive windows)
    for p in pieces:
        names, code = _units(p, spec.split.by)
        n = np.bincount(code, minlength=len(names))
        npos = np.bincount(code, weights=p.positive, minlength=len(names))
        for name, a, b in zip(names, n.tolist(), npos.tolist()):
            if a:
                w, wp = units.get(name, (0, 0))
                units[name] = (w + a, wp + int(b))
    split_of_unit = assign_splits(units, spec.split, spec.seed)
    splits = []  # per piece: each window's split, codes into SPLITS (-1: left out)
    for p in pieces:
        names, code = _units(p, spec.split.by)
        table = np.array([SPLITS.index(split_of_unit[u]) if u in split_of_unit else -1 for u in names], np.int8)
        splits.append(table[code] if len(names) else np.zeros(0, np.int8))
    balance(pieces, splits, spec, warnings)
    check_leakage(pieces, splits)
    check_classes(pieces, splits, outputs, spec, warnings)
    jobs = [RecordingJob(k, p, sp, pre, device, out_dir) for k, (p, sp) in enumerate(zip(pieces, splits))]
    fields = {
        "name": spec.name, "task": spec.task, "outputs": outputs, "units": kinds[0] if kinds else spec.units,
        "preprocess": pre.to_json(), "window_s": spec.window_s, "stride_s": spec.stride_s,
        "stride_ictal_s": spec.stride_ictal_s, "exclusion_s": spec.exclusion_s,
        "horizons_s": list(spec.horizons_s) if spec.task == "prediction" else [],
        "interictal_min_s": spec.interictal_min_s if spec.task == "prediction" else None,
        "device": device.name if device else None,
        "balance": {"mode": spec.balance, "splits": list(spec.balance_splits)},
        "split_by": spec.split.by, "split_units": dict(sorted(split_of_unit.items())),
        "seed": spec.seed, "warnings": warnings,
    }
    return jobs, fields


def write_dataset_folder(out_dir: Path, entries: list[RecordingEntry], fields: dict[str, Any],
                         command: str = "") -> dict[str, Any]:
    """Gather the stored recordings' entries into the index, labels and manifest; returns the manifest."""
    K = len(fields["outputs"])
    y = np.concatenate([e.y.reshape(-1, K) for e in entries]) if entries else np.zeros((0, K), np.int8)
    split = np.concatenate([e.index.split for e in entries]) if entries else np.zeros(0, np.int8)
    pre = PreprocessSpec.from_json(fields["preprocess"])
    n, C, T = len(y), len(pre.channels), int(round(fields["window_s"] * pre.rate))
    for w in fields["warnings"]:
        log.warning(w)
    manifest = {
        "format": FORMAT, **fields, "n": n, "shape": [n, C, T],
        "counts": counts(y, split, fields["outputs"]),
        "recordings": [e.manifest for e in entries], "signals": {e.name: e.signal for e in entries if e.signal},
        "command": command, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_table(out_dir, y, [e.index for e in entries], manifest)
    return manifest


def build_dataset(spec: DatasetSpec, out: str | Path, command: str = "", scheduler: str | None = None,
                  workers: int | None = 1, progress: bool = False) -> dict[str, Any]:
    """Write the dataset folder ``out``; returns the manifest. One task per recording
    (``research.parallel.run_tasks``): serially here by default (``workers=1``), on an in-process
    LocalCluster with ``workers=None`` (what ``dataset build`` does), on a running Dask cluster with
    ``scheduler`` (its workers must see ``out``: a shared file system)."""
    try:
        out_dir = check_output_dir(out, "dataset folder")
    except ValueError as exc:
        raise DataError(f"{exc}; choose an empty or new folder") from None
    spec.check("dataset spec")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "manifest.json").is_file():
        raise DataError(f"{out_dir}: exists and is not a dataset directory; choose an empty or new folder")
    jobs, fields = plan_jobs(spec, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / "x.npy", *out_dir.glob("signals/*.npy")):  # rebuilding over an older folder
        stale.unlink(missing_ok=True)
    from seizurewatch.research.parallel import run_tasks

    entries = run_tasks(build_recording, jobs, scheduler=scheduler, workers=None if scheduler else workers,
                        progress=progress, what="recording")
    return write_dataset_folder(out_dir, entries, fields, command)
