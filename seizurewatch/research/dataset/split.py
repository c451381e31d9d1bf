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


def balance(pieces: list[Piece], splits: list[np.ndarray], spec: DatasetSpec, warnings: list[str]) -> None:
    """Undersample the majority class per subject in the chosen splits: the removed windows get split
    code -1 in ``splits`` (one int8 array of codes into SPLITS per piece) and count as dropped."""
    if spec.balance == "none":
        return
    rng = np.random.default_rng(spec.seed)
    offsets = np.cumsum([0] + [len(p) for p in pieces])
    cells: dict[tuple[str, str], dict[bool, list[np.ndarray]]] = defaultdict(lambda: {True: [], False: []})
    for k, (p, sp) in enumerate(zip(pieces, splits)):
        pos = p.positive
        for s in spec.balance_splits:
            m = sp == SPLITS.index(s)
            if m.any():  # window numbers over all pieces, in plan order
                cells[(p.subject, s)][True].append(np.flatnonzero(m & pos) + offsets[k])
                cells[(p.subject, s)][False].append(np.flatnonzero(m & ~pos) + offsets[k])
    for (subject, split), cls in sorted(cells.items()):
        pos, neg = np.concatenate(cls[True]), np.concatenate(cls[False])
        if not len(pos) or not len(neg):
            warnings.append(f"balance: subject {subject} has no {'positive' if not len(pos) else 'negative'} "
                            f"windows in {split}; left unbalanced")
            continue
        major = pos if len(pos) > len(neg) else neg
        drop = major[rng.choice(len(major), size=len(major) - min(len(pos), len(neg)), replace=False)]
        owner = np.searchsorted(offsets, drop, side="right") - 1
        for k in np.unique(owner):
            splits[k][drop[owner == k] - offsets[k]] = -1
            pieces[k].dropped["balance"] += int((owner == k).sum())


def counts(y: np.ndarray, split: np.ndarray, outputs: list[str]) -> dict[str, dict[str, int]]:
    """Windows per split (``split``: codes into SPLITS), positives per output, negatives."""
    out: dict[str, dict[str, int]] = {}
    for code, s in enumerate(SPLITS):
        m = split == code
        ys = y[m]
        c = {"total": int(m.sum())}
        if len(outputs) == 1:
            c["ictal"] = int(ys[:, 0].sum())
        else:
            c.update({o: int(ys[:, k].sum()) for k, o in enumerate(outputs)})
        c["interictal"] = int((ys.sum(axis=1) == 0).sum()) if len(ys) else 0
        out[s] = c
    return out


def check_leakage(pieces: list[Piece], splits: list[np.ndarray]) -> None:
    seen: dict[str, str] = {}
    for p, sp in zip(pieces, splits):
        m = (sp >= 0) & (p.seizure >= 0)
        sz, ss = p.seizure[m], sp[m]
        _, first = np.unique(sz.astype(np.int64) * len(SPLITS) + ss, return_index=True)
        for j in np.sort(first):  # each (seizure, split) pair, in window order
            sid, s = p.ids[sz[j]], SPLITS[ss[j]]
            if seen.setdefault(sid, s) != s:
                raise DataError(f"split: windows of seizure {sid} would land in both {seen[sid]} and {s}; "
                                f"assign whole recordings/subjects, or split by seizure")


def check_classes(pieces: list[Piece], splits_of: list[np.ndarray], outputs: list[str],
                   spec: DatasetSpec, warnings: list[str]) -> None:
    labels = np.concatenate([p.labels[sp >= 0] for p, sp in zip(pieces, splits_of)]).reshape(-1, len(outputs))
    splits = np.concatenate([sp[sp >= 0] for sp in splits_of])
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
    for code, s in enumerate(SPLITS):
        m = splits == code
        if not m.any():
            warnings.append(f"split {s}: no windows")
            continue
        if not labels[m].any():
            warnings.append(f"split {s}: no positive windows")
        if not (labels[m].sum(axis=1) == 0).any():
            warnings.append(f"split {s}: no {negative} windows")
