"""ROC / PR curves and the threshold policies that pick an operating point from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Curve:
    thresholds: np.ndarray  # descending
    tpr: np.ndarray
    fpr: np.ndarray
    auc: float


def roc(y: np.ndarray, p: np.ndarray) -> Curve:
    """ROC curve with one point per distinct score (plus the (0, 0) corner)."""
    y = np.asarray(y).astype(bool).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.all() or not y.any():
        raise ValueError("ROC needs both classes in the labels")
    order = np.argsort(-p, kind="mergesort")
    p, y = p[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / y.sum()]
    fpr = np.r_[0.0, fps / (~y).sum()]
    thr = np.r_[np.inf, p[distinct]]
    return Curve(thr, tpr, fpr, float(np.trapezoid(tpr, fpr)))


def pr_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(precision, recall, thresholds, average precision)."""
    y = np.asarray(y).astype(bool).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    order = np.argsort(-p, kind="mergesort")
    p, y = p[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / max(y.sum(), 1)
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return precision, recall, p[distinct], ap


def _clip_threshold(t: float) -> float:
    """Thresholds must be usable as strict probabilities in (0, 1)."""
    return float(min(max(t, 1e-6), 1 - 1e-6))


def youden(curve: Curve) -> dict[str, Any]:
    j = curve.tpr - curve.fpr
    i = int(np.argmax(j[1:]) + 1)
    return _point(curve, i, "youden", None)


def target_sensitivity(curve: Curve, target: float) -> dict[str, Any]:
    """The highest threshold whose sensitivity reaches ``target`` (fewest false alarms)."""
    ok = np.flatnonzero(curve.tpr >= target)
    i = int(ok[0]) if len(ok) else len(curve.tpr) - 1
    i = max(i, 1)
    return _point(curve, i, "sensitivity", target)


def _point(curve: Curve, i: int, policy: str, target: float | None) -> dict[str, Any]:
    return {
        "value": _clip_threshold(float(curve.thresholds[i])),
        "policy": policy,
        "target": target,
        "point": {"tpr": float(curve.tpr[i]), "fpr": float(curve.fpr[i]), "specificity": float(1 - curve.fpr[i])},
        "auc": curve.auc,
    }


def fraction_flagged_at_sensitivity(curve: Curve, sensitivity: float = 0.99) -> float:
    """Share of safe (interictal) windows still flagged at the given sensitivity (the dog-iEEG figure)."""
    ok = np.flatnonzero(curve.tpr >= sensitivity)
    return float(curve.fpr[ok[0]]) if len(ok) else 1.0
