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
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.checks import check_output_dir
from seizurewatch.devices import DeviceProfile
from seizurewatch.errors import DataError
from seizurewatch.preprocess import PreprocessSpec
from seizurewatch.research.dataset.plan import Piece, load_signal, plan
from seizurewatch.research.dataset.spec import DatasetSpec
from seizurewatch.research.dataset.split import assign_splits, balance, check_classes, check_leakage, counts
from seizurewatch.research.dataset.store import FORMAT, write_signal, write_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordingJob:
    """One recording to store: its planned windows and the split of each kept one."""

    k: int  # its number in the folder (signals/NNNN.npy)
    piece: Piece
    keep: tuple[tuple[int, str], ...]  # (window number in the piece, split)
    pre: PreprocessSpec
    device: DeviceProfile | None
    out: Path


@dataclass(frozen=True)
class RecordingEntry:
    """What storing one recording gives back: its signal file, index rows, labels and manifest entry."""

    name: str
    signal: str  # file relative to the folder, "" when no window was kept
    rows: list[dict[str, Any]] = field(default_factory=list)
    y: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.int8))
    manifest: dict[str, Any] = field(default_factory=dict)


def build_recording(job: RecordingJob) -> RecordingEntry:
    """Preprocess one recording as the daemon would and store its signal; the entry lists its windows."""
    p = job.piece
    file = ""
    if job.keep:
        sig = load_signal(p, job.pre, job.device)
        file = write_signal(job.out, job.k, sig)
    rows = []
    for i, s in job.keep:
        start = int(round(p.starts[i] * job.pre.rate))
        rows.append({"recording": p.name, "subject": p.subject, "t_start": p.starts[i],
                     "seizure_id": p.seizure_ids[i], "split": s, "start": start})
    y = (np.asarray([p.labels[i] for i, _ in job.keep], dtype=np.int8) if job.keep else np.zeros((0, 1), np.int8))
    splits = Counter(s for _, s in job.keep)
    entry = {
        "path": p.path, "subject": p.subject,
        "split": (next(iter(splits)) if len(splits) == 1 else ("mixed" if splits else "")),
        "windows": len(job.keep), "windows_per_split": dict(splits),
        "positive": int(sum(any(p.labels[i]) for i, _ in job.keep)),
        "dropped": dict(p.dropped), "annotations": p.annotations_from, "signal": file,
    }
    log.info("recording stored", extra={"recording": p.name, "windows": len(job.keep), "dropped": dict(p.dropped)})
    return RecordingEntry(p.name, file, rows, y, entry)


def plan_jobs(spec: DatasetSpec, out_dir: Path) -> tuple[list[RecordingJob], dict[str, Any]]:
    """Plan, split, balance and check; one job per recording, and the manifest fields known so far."""
    pieces, pre, device = plan(spec)
    seen: dict[str, str] = {}
    for p in pieces:
        if seen.setdefault(p.name, p.path) != p.path:
            raise DataError(f"{p.path}: same file name as {seen[p.name]}; the index names recordings by file "
                            f"name, so rename one of them")
    warnings: list[str] = []
    outputs = spec.outputs()

    def unit(p: Piece, i: int) -> str:
        return {"recording": p.group, "subject": p.subject, "seizure": p.near[i]}[spec.split.by]

    units: dict[str, tuple[int, int]] = {}
    for p in pieces:
        for i in range(len(p.starts)):
            n, npos = units.get(unit(p, i), (0, 0))
            units[unit(p, i)] = (n + 1, npos + int(any(p.labels[i])))
    split_of_unit = assign_splits(dict(units), spec.split, spec.seed)
    rows = [(pi, i) for pi, p in enumerate(pieces) for i in range(len(p.starts))]
    if not rows:
        detail = "; ".join(f"{p.name}: {dict(p.dropped)}" for p in pieces[:10])
        raise DataError(f"no windows at all after labelling ({detail})")
    split_of = [split_of_unit[unit(pieces[pi], i)] for pi, i in rows]
    removed = balance(rows, pieces, split_of, spec, warnings)
    keep = [(r, s) for r, s in zip(rows, split_of) if r not in removed]
    for (pi, _i) in removed:
        pieces[pi].dropped["balance"] += 1
    check_leakage(pieces, keep)
    check_classes(pieces, keep, outputs, spec, warnings)
    by_piece: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for (pi, i), s in keep:
        by_piece[pi].append((i, s))
    jobs = [RecordingJob(k, p, tuple(by_piece.get(k, [])), pre, device, out_dir) for k, p in enumerate(pieces)]
    fields = {
        "name": spec.name, "task": spec.task, "outputs": outputs,
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
    rows = [r for e in entries for r in e.rows]
    K = len(fields["outputs"])
    y = np.concatenate([e.y.reshape(-1, K) for e in entries]) if entries else np.zeros((0, K), np.int8)
    pre = PreprocessSpec.from_json(fields["preprocess"])
    n, C, T = len(rows), len(pre.channels), int(round(fields["window_s"] * pre.rate))
    for w in fields["warnings"]:
        log.warning(w)
    manifest = {
        "format": FORMAT, **fields, "n": n, "shape": [n, C, T],
        "counts": counts(y, [r["split"] for r in rows], fields["outputs"]),
        "recordings": [e.manifest for e in entries], "signals": {e.name: e.signal for e in entries if e.signal},
        "command": command, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_table(out_dir, y, rows, manifest)
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
