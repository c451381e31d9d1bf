"""Split assignment (whole recordings, seizures or subjects: never by window), class balance,
and the leakage and class checks run on the plan before any sample is written."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from seizurewatch.errors import DataError
from seizurewatch.research.dataset.plan import Piece, match_name
from seizurewatch.research.dataset.spec import DatasetSpec, SplitSpec
from seizurewatch.research.dataset.store import SPLITS


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


def balance(rows: list[tuple[int, int]], pieces: list[Piece], split_of: list[str], spec: DatasetSpec,
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


def counts(y: np.ndarray, splits: list[str], outputs: list[str]) -> dict[str, dict[str, int]]:
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


def check_leakage(pieces: list[Piece], keep: list[tuple[tuple[int, int], str]]) -> None:
    seen: dict[str, str] = {}
    for (pi, i), s in keep:
        sid = pieces[pi].seizure_ids[i]
        if sid and seen.setdefault(sid, s) != s:
            raise DataError(f"split: windows of seizure {sid} would land in both {seen[sid]} and {s}; "
                            f"assign whole recordings/subjects, or split by seizure")


def check_classes(pieces: list[Piece], keep: list[tuple[tuple[int, int], str]], outputs: list[str],
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
