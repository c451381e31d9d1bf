"""What a dataset's units are, and how clips and segments are scored.

A dataset holds one kind of unit (``manifest.json`` ``units``, set by ``dataset build``):

- ``continuous``: recordings. Replayed through the daemon; scored per window, per second (seizure /
  early AUC) and per event (alarms, latency, false alarms per 24 h).
- ``clips``: the 2014 UPenn/Mayo Kaggle detection clips (``Dog_1_ictal_segment_N.mat`` with
  ``latency``, ``Dog_1_interictal_segment_N.mat``). Scored the challenge's way: one score per clip,
  a **seizure** AUC (ictal clips vs the rest) and a separate **early** AUC (ictal clips with
  ``latency <= early_s`` vs the rest, ``labels.is_early``), and their mean. As the time-resolved
  scoring (``timescore``) does, early is scored two ways: on the alarm score (``early_auc``) and on the
  model's own ``early`` output when it has one (``early_auc_output``, what a challenge submission gave);
  ``challenge_score`` is the challenge's figure, (seizure AUC + early output AUC) / 2.
- ``segments``: independent segments (Bonn's text files, Delhi's ``.mat``): one score per segment,
  seizure AUC only: a segment carries no onset.

Clips and segments are never replayed: they have no onset the daemon could meet, no latency and no
hours for false alarms per 24 h; those figures say ``NOT_CONTINUOUS``. A unit's score is the mean of
its windows' alarm score (the model's first output, as the time-resolved scoring uses; likewise its
early output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seizurewatch.research.labels import is_early
from seizurewatch.research.roc import roc

if TYPE_CHECKING:
    from seizurewatch.research.dataset.store import DatasetDir

KINDS = ("continuous", "clips", "segments")
NOT_CONTINUOUS = "n/a: not continuous"


def kind_of(ds: DatasetDir) -> str:
    """The dataset's unit kind (older folders without the key: clips by their ``.mat`` names)."""
    kind = ds.manifest.get("units")
    if kind in KINDS:
        return str(kind)
    names = [Path(str(r.get("path", ""))).name for r in ds.manifest.get("recordings", []) if isinstance(r, dict)]
    mats = [n for n in names if n.lower().endswith(".mat")]
    if not mats:
        return "continuous"
    return "clips" if all("_segment_" in n for n in mats) else "segments"


@dataclass(frozen=True)
class Units:
    """The units of some dataset rows: each row's unit (its recording name), and per unit its latency
    (clips; NaN for interictal clips and segments)."""

    kind: str
    unit: np.ndarray  # (rows,) unit name per row
    latency: dict[str, float]

    @classmethod
    def of_rows(cls, ds: DatasetDir, rows: np.ndarray) -> Units:
        idx = ds.index
        names = np.asarray(idx.recording_names, dtype=object)[idx.recording[rows]] if len(rows) else np.zeros(0, object)
        lat = {Path(str(r.get("path", ""))).name: float(r["latency"])
               for r in ds.manifest.get("recordings", []) if isinstance(r, dict) and r.get("latency") is not None}
        return cls(kind_of(ds), names, lat)


@dataclass(frozen=True)
class UnitScores:
    """One score per unit, with its labels."""

    kind: str
    names: list[str]
    p: np.ndarray  # (units,) mean alarm score of the unit's windows
    ictal: np.ndarray  # (units,) bool
    early: np.ndarray  # (units,) bool (clips only)
    latency: np.ndarray  # (units,) s since onset, NaN when none
    p_early: np.ndarray | None = None  # (units,) mean of the model's "early" output, when it has one


def unit_scores(units: Units, y: np.ndarray, p: np.ndarray, early_s: float,
                outputs: Sequence[str] | None = None) -> UnitScores:
    """Each unit's score (the mean of its windows' first output; of its ``early`` output too, when
    ``outputs``, the model's output names, hold one) and labels (ictal: any ictal window)."""
    y0 = np.asarray(y).reshape(len(units.unit), -1)[:, 0].astype(bool)
    pw = np.asarray(p, dtype=np.float64).reshape(len(units.unit), -1)
    names, inverse = np.unique(units.unit.astype(str), return_inverse=True)
    n = len(names)
    count = np.bincount(inverse, minlength=n)

    def mean(col: np.ndarray) -> np.ndarray:
        return np.bincount(inverse, weights=col, minlength=n) / np.maximum(count, 1)

    score = mean(pw[:, 0])
    k = outputs.index("early") if outputs and "early" in outputs and len(outputs) == pw.shape[1] else None
    p_early = mean(pw[:, k]) if k is not None else None
    ictal = np.bincount(inverse, weights=y0, minlength=n) > 0
    latency = np.array([units.latency.get(str(u), np.nan) for u in names], dtype=np.float64)
    early = np.array([bool(ic) and units.kind == "clips" and is_early(None if np.isnan(la) else float(la), early_s)
                      for ic, la in zip(ictal, latency)], dtype=bool)
    return UnitScores(units.kind, [str(u) for u in names], score, ictal, early, latency, p_early)


def _auc(y: np.ndarray, p: np.ndarray, what: str) -> tuple[float | None, str]:
    """(AUC, "") or (None, why not)."""
    n, k = len(y), int(np.sum(y))
    if n == 0:
        return None, "n/a: no units"
    if k == 0:
        return None, f"n/a: no {what} units among {n}"
    if k == n:
        return None, f"n/a: all {n} units are {what}"
    return roc(y, p).auc, ""


def score_units(s: UnitScores, early_s: float) -> dict[str, Any]:
    """Seizure AUC, early AUC (clips) and their mean over units, each ``None`` with a reason when it cannot be
    computed; the continuous-only figures say ``NOT_CONTINUOUS``."""
    seizure, why_s = _auc(s.ictal, s.p, "ictal")
    out: dict[str, Any] = {"kind": s.kind, "units": len(s.names), "ictal_units": int(s.ictal.sum()),
                           "seizure_auc": seizure}
    if why_s:
        out["seizure_auc_why"] = why_s
    if s.kind == "clips":
        early, why_e = _auc(s.early, s.p, "early")
        own, why_o = _auc(s.early, s.p_early, "early") if s.p_early is not None else (
            None, "n/a: the model has no early output")
        out |= {"early_s": float(early_s), "early_units": int(s.early.sum()), "early_auc": early,
                "early_auc_output": own,
                "challenge_score": (seizure + own) / 2 if seizure is not None and own is not None else None}
        for key, why in (("early_auc", why_e), ("early_auc_output", why_o)):
            if why:
                out[f"{key}_why"] = why
        if out["challenge_score"] is None:
            out["challenge_score_why"] = why_s or why_o
    else:
        why = "n/a: segments carry no onset"
        out |= {"early_auc": None, "early_auc_why": why, "early_auc_output": None, "early_auc_output_why": why,
                "challenge_score": None, "challenge_score_why": why}
    return out | {"latency_s": NOT_CONTINUOUS, "fa_per_24h": NOT_CONTINUOUS, "events": NOT_CONTINUOUS}


def fmt_auc(fig: dict[str, Any], key: str) -> str:
    """An AUC as the tables print it: 0.000, or its reason."""
    v = fig.get(key)
    if v is not None:
        return f"{v:.3f}"
    return str(fig.get(f"{key}_why") or "n/a")


def pooled(scores: list[UnitScores]) -> UnitScores:
    """Units of several folds as one set (each scored by its own fold's model)."""
    kind = scores[0].kind if scores else "clips"
    own = bool(scores) and all(s.p_early is not None for s in scores)
    return UnitScores(kind, [n for s in scores for n in s.names],
                      np.concatenate([s.p for s in scores]) if scores else np.zeros(0),
                      np.concatenate([s.ictal for s in scores]) if scores else np.zeros(0, bool),
                      np.concatenate([s.early for s in scores]) if scores else np.zeros(0, bool),
                      np.concatenate([s.latency for s in scores]) if scores else np.zeros(0),
                      np.concatenate([s.p_early for s in scores if s.p_early is not None]) if own else None)


def write_unit_csv(s: UnitScores, threshold: float, path: Path) -> Path:
    """One row per unit: name, ictal, early, latency, score, flagged at ``threshold``."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("unit,ictal,early,latency_s,score,flagged\n")
        for k, name in enumerate(s.names):
            lat = "" if np.isnan(s.latency[k]) else f"{s.latency[k]:g}"
            f.write(f"{name},{int(s.ictal[k])},{int(s.early[k])},{lat},{s.p[k]:.6f},{int(s.p[k] >= threshold)}\n")
    return path
