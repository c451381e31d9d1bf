"""Forecasting figures for prediction models, per horizon, the way forecasting studies report them.

Segments and clips (Kaggle's 2014 prediction challenge, the Delhi segments): one probability per clip
(the mean of its windows, as the challenge scored one value per 10-min clip) and the clip AUC per
horizon, against chance by permutation: the clips' labels shuffled between *groups* (a Kaggle hour of
six clips moves as one), so the 95th percentile of the shuffled AUCs is what a chance predictor
reaches on these very clips, and the p-value says how often it reached the observed AUC.

Continuous recordings (``alarm_figures``), after Snyder et al. 2008 / Maiwald et al. 2004:
    a warning at time t says "a seizure starts within [t + SPH, t + SPH + SOP]"
    SPH (seizure prediction horizon): the intervention time between warning and the earliest onset
    SOP (seizure occurrence period): how long after the SPH the onset is expected
    a seizure is predicted when its onset lies in the occurrence period of a warning
    time in warning = the share of the recorded time inside some [t, t + SPH + SOP] (a light that is on)
    a false warning = a merged warning period whose occurrence periods hold no onset; per day over the
    recorded time (the exposure, stated beside it)
and the chance predictor with the same time in warning: Snyder's analytic one (a random predictor
covers each onset with probability w = time in warning, so k of n seizures by chance is a binomial
tail; 1 - exp(-rho * tau) for Poisson warnings is the same w) and a shuffled-onset surrogate (the
onsets moved uniformly at random in the recordings, the warnings kept).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seizurewatch.research.roc import roc

CHANCE_SHUFFLES = 2000


# ----- clips and segments -------------------------------------------------------------------------------
def clip_scores(names: Sequence[str], y: np.ndarray, p: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Windows -> clips: (clip names, (clips, outputs) labels, (clips, outputs) mean probabilities)."""
    order = list(dict.fromkeys(names))
    at = {n: i for i, n in enumerate(order)}
    idx = np.array([at[n] for n in names], dtype=np.int64)
    counts = np.bincount(idx, minlength=len(order)).astype(np.float64)
    k = p.shape[1]
    pc = np.stack([np.bincount(idx, weights=p[:, j], minlength=len(order)) / counts for j in range(k)], axis=1)
    yc = np.stack([np.bincount(idx, weights=y[:, j], minlength=len(order)) / counts for j in range(k)], axis=1)
    return order, (yc >= 0.5).astype(np.int8), pc


def auc_against_chance(y: np.ndarray, p: np.ndarray, groups: Sequence[str] | None = None,
                       shuffles: int = CHANCE_SHUFFLES, seed: int = 0) -> dict[str, float | int | None]:
    """Clip AUC, and what chance reaches on the same clips: labels shuffled between groups (a group's clips
    share one label), ``shuffles`` times. None figures when a class is missing."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return {"auc": None, "positive": n_pos, "negative": n_neg, "chance_median": None, "chance_95": None,
                "p_value": None, "shuffles": 0}
    auc = roc(y, p).auc
    g = np.asarray(groups if groups is not None else np.arange(len(y)).astype(str))
    names, inv = np.unique(g, return_inverse=True)
    label = np.zeros(len(names), dtype=bool)
    label[inv[y]] = True  # a group is positive when its clips are
    rng = np.random.default_rng(seed)
    null = np.empty(shuffles)
    for i in range(shuffles):
        ys = rng.permutation(label)[inv]
        null[i] = roc(ys, p).auc if 0 < ys.sum() < len(ys) else 0.5
    return {"auc": round(auc, 4), "positive": n_pos, "negative": n_neg,
            "chance_median": round(float(np.median(null)), 4), "chance_95": round(float(np.quantile(null, 0.95)), 4),
            "p_value": round(float((1 + np.sum(null >= auc)) / (1 + shuffles)), 4), "shuffles": shuffles}


# ----- continuous recordings ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recording:
    """One continuous recording's probability trace (window end times) and its seizure onsets, s."""

    t: np.ndarray
    p: np.ndarray
    duration: float
    onsets: tuple[float, ...]


def warning_times(rec: Recording, threshold: float) -> np.ndarray:
    """The times a warning is raised: each window at or above ``threshold``."""
    return np.asarray(rec.t)[np.asarray(rec.p) >= threshold]


def _merged(starts: np.ndarray, length: float, end: float) -> list[tuple[float, float]]:
    """Intervals [s, s + length) merged and clipped to [0, end]."""
    out: list[list[float]] = []
    for s in np.sort(starts).tolist():
        a, b = max(s, 0.0), min(s + length, end)
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def predicted(warn: np.ndarray, onset: float, sph_s: float, sop_s: float) -> bool:
    """Whether an onset lies in the occurrence period [t + SPH, t + SPH + SOP] of a warning t."""
    return bool(np.any((onset >= warn + sph_s) & (onset <= warn + sph_s + sop_s)))


def alarm_figures(recs: Sequence[Recording], threshold: float, sph_s: float, sop_s: float) -> dict[str, float | int]:
    """Sensitivity, time in warning and false warnings per day (with the exposure) over ``recs``."""
    n = k = false = 0
    covered = exposure = 0.0
    for rec in recs:
        warn = warning_times(rec, threshold)
        spans = _merged(warn, sph_s + sop_s, rec.duration)
        covered += sum(b - a for a, b in spans)
        exposure += rec.duration
        n += len(rec.onsets)
        k += sum(predicted(warn, o, sph_s, sop_s) for o in rec.onsets)
        for a, b in spans:  # a warning period whose occurrence periods hold no onset
            inside = warn[(warn >= a) & (warn < b)]
            if not any(predicted(inside, o, sph_s, sop_s) for o in rec.onsets):
                false += 1
    w = covered / exposure if exposure else 0.0
    days = exposure / 86_400
    return {"threshold": threshold, "sph_s": sph_s, "sop_s": sop_s, "seizures": n, "predicted": k,
            "sensitivity": round(k / n, 4) if n else float("nan"), "time_in_warning": round(w, 4),
            "false_warnings": false, "exposure_h": round(exposure / 3600, 3),
            "false_warnings_per_day": round(false / days, 3) if days else float("nan")}


def chance_analytic(seizures: int, predicted_: int, time_in_warning: float) -> dict[str, float]:
    """Snyder 2008: a random predictor with time in warning w predicts each onset with probability w; the
    chance of predicting at least ``predicted_`` of ``seizures`` is the binomial tail."""
    w = min(max(time_in_warning, 0.0), 1.0)
    tail = sum(math.comb(seizures, j) * w**j * (1 - w) ** (seizures - j) for j in range(predicted_, seizures + 1))
    return {"chance_sensitivity": round(w, 4), "p_value": round(min(tail, 1.0), 6)}


def chance_surrogate(recs: Sequence[Recording], threshold: float, sph_s: float, sop_s: float,
                     shuffles: int = CHANCE_SHUFFLES, seed: int = 0) -> dict[str, float]:
    """Onsets moved uniformly at random within their recordings (warnings kept): the sensitivity chance
    reaches with these very warnings, and how often it reaches the observed one."""
    observed = alarm_figures(recs, threshold, sph_s, sop_s)
    warns = [warning_times(r, threshold) for r in recs]
    n = sum(len(r.onsets) for r in recs)
    if not n:
        return {"chance_sensitivity": float("nan"), "chance_95": float("nan"), "p_value": float("nan")}
    rng = np.random.default_rng(seed)
    null = np.empty(shuffles)
    for i in range(shuffles):
        hits = 0
        for r, w in zip(recs, warns):
            for o in rng.uniform(0.0, r.duration, len(r.onsets)):
                hits += predicted(w, float(o), sph_s, sop_s)
        null[i] = hits / n
    return {"chance_sensitivity": round(float(null.mean()), 4), "chance_95": round(float(np.quantile(null, 0.95)), 4),
            "p_value": round(float((1 + np.sum(null >= observed["sensitivity"])) / (1 + shuffles)), 4)}


# ----- risk levels ------------------------------------------------------------------------------------------
HIGH_SPECIFICITY = 0.95


def choose_levels(y: np.ndarray, p: np.ndarray, where: str) -> dict[str, float | str]:
    """A prediction output's level thresholds on held-out windows: ``elevated`` at Youden's J (the detection
    threshold's criterion), ``high`` where specificity reaches HIGH_SPECIFICITY (when that is not above
    ``elevated``: halfway from it to 1). Without both classes: 0.5 / 0.75, said so (policy ``default``)."""
    from seizurewatch.research.roc import youden

    y = np.asarray(y).astype(bool)
    if not len(y) or y.all() or not y.any():
        return {"elevated": 0.5, "high": 0.75, "policy": "default", "chosen_on": where}
    curve = roc(y, p)
    elevated = float(youden(curve)["value"])
    ok = np.flatnonzero(curve.fpr <= 1 - HIGH_SPECIFICITY)
    spec = float(curve.thresholds[ok[-1]]) if len(ok) else 1.0
    high = spec if elevated < spec < 1 else elevated + (1 - elevated) / 2
    return {"elevated": round(elevated, 6), "high": round(min(high, 1 - 1e-6), 6),
            "policy": f"youden / specificity {HIGH_SPECIFICITY:g}", "chosen_on": where}
