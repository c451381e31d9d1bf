"""ROC / PR curves (the policies that pick an operating point on them live in ``threshold``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Area under ``y(x)`` by the trapezoid rule, the same sum as ``np.trapezoid`` (NumPy >= 2 only; the
    package supports numpy>=1.26, where it was ``np.trapz``)."""
    y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    return float(np.add.reduce(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


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
    return Curve(thr, tpr, fpr, trapezoid(tpr, fpr))


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


def fraction_flagged_at_sensitivity(curve: Curve, sensitivity: float = 0.99) -> float:
    """Share of safe (interictal) windows still flagged at the given sensitivity (the dog-iEEG figure)."""
    ok = np.flatnonzero(curve.tpr >= sensitivity)
    return float(curve.fpr[ok[0]]) if len(ok) else 1.0
