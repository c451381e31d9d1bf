"""Build a windowed dataset directory from annotated recordings or labelled clips.

Three passes, so memory stays at about one recording however many there are:
  1. plan: read headers and annotations only; label every window start (no samples read);
  2. split and balance on the plan (splits by recording, seizure or subject: never by window);
  3. write: preprocess one recording at a time through the daemon's own preprocessing and copy
     the kept windows into ``x.npy``, a memory-mapped (N, C, T) float32 array.

The directory holds ``x.npy``, ``y.npy`` (N, K) int8, ``index.csv`` and ``manifest.json``
(format ``seizurewatch-dataset/1``; see the README).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap

from seizurewatch.checks import check_output_dir
from seizurewatch.errors import DataError
from seizurewatch.research.windowplan import (  # noqa: F401 - the spec is part of this module's API
    DatasetSpec,
    Piece,
    SplitSpec,
    default_subject,
    load_signal,
    load_spec,
    match_name,
    plan,
)

log = logging.getLogger(__name__)

FORMAT = "seizurewatch-dataset/1"
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------------------------------------- split + balance

def assign_splits(units: dict[str, tuple[int, int]], spec: SplitSpec, seed: int) -> dict[str, str]:
    """unit name -> split, for units given as name -> (windows, positive windows).

    Explicit ``assign`` entries first (names or globs). The rest are shuffled with ``seed`` and go
    one whole unit at a time to the split furthest below its share: units holding positive windows
    by their positive windows first (every split gets one before any gets two), then the others by
    window count."""
    out: dict[str, str] = {}
    for u in units:
        s = spec.assign.get(u) or match_name(u, spec.assign) or match_name(u.split("#")[0], spec.assign)
        if s:
            out[u] = s
    rest = sorted(u for u in units if u not in out)
    rng = np.random.default_rng(seed)
    rest = [rest[i] for i in rng.permutation(len(rest))]
    for col, todo in ((1, [u for u in rest if units[u][1] > 0]), (0, [u for u in rest if units[u][1] == 0])):
        total = sum(v[col] for v in units.values()) or 1
        size = Counter({s: sum(v[col] for u, v in units.items() if out.get(u) == s) for s in SPLITS})
        if col == 1:  # one seizure-holding unit for every split that has none yet, then by share
            empty = [s for i, s in enumerate(SPLITS) if spec.fractions[i] > 0 and size[s] == 0]
            for s, u in zip(empty, list(todo)):
                out[u] = s
                size[s] += units[u][col]
                todo.remove(u)
        for u in todo:
            deficits = [(spec.fractions[i] - size[s] / total, -i) for i, s in enumerate(SPLITS)
                        if spec.fractions[i] > 0]
            best = SPLITS[-max(deficits)[1]]
            out[u] = best
            size[best] += units[u][col]
    return out


def _balance(rows: list[tuple[int, int]], pieces: list[Piece], split_of: list[str], spec: DatasetSpec,
             warnings: list[str]) -> set[tuple[int, int]]:
    """Rows (piece, window) removed to balance classes per subject in the chosen splits."""
    removed: set[tuple[int, int]] = set()
    if spec.balance == "none":
        return removed
    rng = np.random.default_rng(spec.seed)
    cells: dict[tuple[str, str], dict[bool, list[tuple[int, int]]]] = defaultdict(lambda: {True: [], False: []})
    for r, s in zip(rows, split_of):
        if s in spec.balance_splits:
            p = pieces[r[0]]
            cells[(p.subject, s)][any(p.labels[r[1]])].append(r)
    for (subject, s), cls in sorted(cells.items()):
        pos, neg = cls[True], cls[False]
        if not pos or not neg:
            warnings.append(f"balance: subject {subject} has no {'positive' if not pos else 'negative'} windows "
                            f"in {s}; left unbalanced")
            continue
        major = pos if len(pos) > len(neg) else neg
        drop = rng.choice(len(major), size=len(major) - min(len(pos), len(neg)), replace=False)
        removed.update(major[i] for i in drop)
    return removed


def build_dataset(spec: DatasetSpec, out: str | Path, command: str = "") -> dict[str, Any]:
    """Write the dataset directory ``out``; returns the manifest."""
    try:
        out_dir = check_output_dir(out, "dataset folder")
    except ValueError as exc:
        raise DataError(f"{exc}; choose an empty or new folder") from None
    spec.check("dataset spec")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "manifest.json").is_file():
        raise DataError(f"{out_dir}: exists and is not a dataset directory; choose an empty or new folder")
    pieces, pre, device = plan(spec)
    warnings: list[str] = []
    outputs = spec.outputs()
    K = len(outputs)

    # split units -> split
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
    removed = _balance(rows, pieces, split_of, spec, warnings)
    keep = [(r, s) for r, s in zip(rows, split_of) if r not in removed]
    for (pi, _i) in removed:
        pieces[pi].dropped["balance"] += 1
    _check_leakage(pieces, keep)
    _check_classes(pieces, keep, outputs, spec, warnings)

    # write
    out_dir.mkdir(parents=True, exist_ok=True)
    n, C, T = len(keep), len(pre.channels), int(round(spec.window_s * pre.rate))
    open_memmap(out_dir / "x.npy", mode="w+", dtype=np.float32, shape=(n, C, T)).flush()  # sized, header written
    y = np.zeros((n, K), dtype=np.int8)
    by_piece: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for row, ((pi, i), s) in enumerate(keep):
        by_piece[pi].append((row, i, s))
    index_rows = []
    recordings = []
    for pi, p in enumerate(pieces):
        mine = by_piece.get(pi, [])
        if mine:
            sig = load_signal(p, pre, device)
            # Map x.npy per recording and unmap after: written pages leave the process, so resident
            # memory stays at one recording plus its windows, however large the dataset.
            x = open_memmap(out_dir / "x.npy", mode="r+")
            for row, i, _s in mine:
                i0 = int(round(p.starts[i] * pre.rate))
                x[row] = sig[:, i0: i0 + T]
                y[row] = p.labels[i]
            x.flush()
            del x, sig
        for row, i, s in mine:
            index_rows.append((row, p.name, p.subject, p.starts[i], p.seizure_ids[i], s))
        splits = Counter(s for _, _, s in mine)
        recordings.append({
            "path": p.path, "subject": p.subject,
            "split": (next(iter(splits)) if len(splits) == 1 else ("mixed" if splits else "")),
            "windows": len(mine), "windows_per_split": dict(splits),
            "positive": int(sum(any(p.labels[i]) for _, i, _ in mine)),
            "dropped": dict(p.dropped), "annotations": p.annotations_from,
        })
        log.info("recording written", extra={"recording": p.name, "windows": len(mine), "dropped": dict(p.dropped)})
    np.save(out_dir / "y.npy", y)
    index_rows.sort()
    with (out_dir / "index.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["i", "recording", "subject", "t_start", "seizure_id", "split"])
        for r in index_rows:
            w.writerow([r[0], r[1], r[2], f"{r[3]:.6g}", r[4], r[5]])
    counts = _counts(y, [r[5] for r in index_rows], outputs)
    for w_ in warnings:
        log.warning(w_)
    manifest = {
        "format": FORMAT, "name": spec.name, "task": spec.task, "outputs": outputs,
        "preprocess": pre.to_json(), "window_s": spec.window_s, "stride_s": spec.stride_s,
        "stride_ictal_s": spec.stride_ictal_s, "exclusion_s": spec.exclusion_s,
        "horizons_s": list(spec.horizons_s) if spec.task == "prediction" else [],
        "interictal_min_s": spec.interictal_min_s if spec.task == "prediction" else None,
        "device": device.name if device else None, "n": n, "shape": [n, C, T], "counts": counts,
        "recordings": recordings, "balance": {"mode": spec.balance, "splits": list(spec.balance_splits)},
        "split_by": spec.split.by, "split_units": dict(sorted(split_of_unit.items())),
        "seed": spec.seed, "warnings": warnings, "command": command,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _counts(y: np.ndarray, splits: list[str], outputs: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    arr = np.asarray(splits)
    for s in SPLITS:
        m = arr == s
        ys = y[m]
        c = {"total": int(m.sum())}
        if len(outputs) == 1:
            c["ictal"] = int(ys[:, 0].sum())
        else:
            c.update({o: int(ys[:, k].sum()) for k, o in enumerate(outputs)})
        c["interictal"] = int((ys.sum(axis=1) == 0).sum()) if len(ys) else 0
        out[s] = c
    return out


def _check_leakage(pieces: list[Piece], keep: list[tuple[tuple[int, int], str]]) -> None:
    seen: dict[str, str] = {}
    for (pi, i), s in keep:
        sid = pieces[pi].seizure_ids[i]
        if sid and seen.setdefault(sid, s) != s:
            raise DataError(f"split: windows of seizure {sid} would land in both {seen[sid]} and {s}; "
                            f"assign whole recordings/subjects, or split by seizure")


def _check_classes(pieces: list[Piece], keep: list[tuple[tuple[int, int], str]], outputs: list[str],
                   spec: DatasetSpec, warnings: list[str]) -> None:
    labels = np.array([pieces[pi].labels[i] for (pi, i), _ in keep], dtype=np.int8).reshape(len(keep), -1)
    dropped: Counter = Counter()
    for p in pieces:
        dropped.update(p.dropped)
    rule = (f"exclusion {spec.exclusion_s:g} s" if spec.task == "detection" else
            f"horizons {', '.join(f'{h:g}' for h in spec.horizons_s)} s, interictal >= {spec.interictal_min_s:g} s")
    why = f"(dropped windows: {dict(dropped)}; window {spec.window_s:g} s, {rule})"
    negative = "interictal"
    if not (labels.sum(axis=1) == 0).any():
        raise DataError(f"no {negative} windows after exclusion {why}")
    for k, o in enumerate(outputs):
        if not labels[:, k].any():
            if len(outputs) == 1:
                positive = "ictal" if spec.task == "detection" else "preictal"
                raise DataError(f"no {positive} windows after labelling {why}")
            warnings.append(f"output {o}: no positive windows in the whole dataset")
    if len(outputs) > 1 and not labels.any():
        raise DataError(f"no preictal windows for any horizon {why}")
    splits = np.array([s for _, s in keep])
    for s in SPLITS:
        m = splits == s
        if not m.any():
            warnings.append(f"split {s}: no windows")
            continue
        if not labels[m].any():
            warnings.append(f"split {s}: no positive windows")
        if not (labels[m].sum(axis=1) == 0).any():
            warnings.append(f"split {s}: no {negative} windows")
