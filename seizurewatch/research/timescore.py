"""Time-resolved scoring: what a nurse would have seen, one sample per second of signal.

Scored the way the 2014 UPenn/Mayo (Kaggle) seizure detection challenge scored 1-s clips,
but on the daemon's own output: second ``i`` covers ``[i, i + 1)`` s of the recording and
carries the probability *in force* at its end, i.e. that of the latest window that ended
at or before ``i + 1`` (the value the nurse station showed during that second). Seconds
before the first full window have no probability: they are *unscored* and counted as such.

- seizure AUC: ictal seconds (midpoint inside an annotated seizure) vs every other second;
- early AUC: the first ``early_s`` seconds after each onset vs every other second (late
  ictal seconds are negatives, as in the challenge), scored two ways: on the one score the
  daemon alarms on (``early_auc``), and, when the model has an ``early`` output, on that output
  as its own column (``early_auc_output``: how the challenge scored its submissions, which gave
  one probability per class); ``challenge_score`` is the challenge's figure, the mean of the
  seizure AUC and the early output's AUC.

Per recording (a fold of leave-one-recording-out) and pooled over recordings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seizurewatch.research.roc import roc

EARLY_S = 15.0
_EPS = 1e-6


def probability_per_second(t_end: np.ndarray, p: np.ndarray, duration: float) -> np.ndarray:
    """The probability in force during each whole second of ``duration`` (NaN: unscored)."""
    t_end = np.asarray(t_end, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if len(t_end) != len(p):
        raise ValueError(f"{len(t_end)} window end times but {len(p)} probabilities")
    n = int(np.floor(duration + _EPS))
    out = np.full(n, np.nan)
    if not len(t_end) or n == 0:
        return out
    order = np.argsort(t_end, kind="stable")
    t_end, p = t_end[order], p[order]
    # index of the latest window ending at or before the end of each second
    idx = np.searchsorted(t_end, np.arange(1, n + 1, dtype=np.float64) + _EPS, side="right") - 1
    ok = idx >= 0
    out[ok] = p[idx[ok]]
    return out


def second_labels(n: int, seizures: Sequence[tuple[float, float]],
                  early_s: float = EARLY_S) -> tuple[np.ndarray, np.ndarray]:
    """(ictal, early) flags of ``n`` seconds, by each second's midpoint."""
    mid = np.arange(n, dtype=np.float64) + 0.5
    ictal = np.zeros(n, dtype=bool)
    early = np.zeros(n, dtype=bool)
    for onset, end in seizures:
        ictal |= (mid >= onset) & (mid < end)
        early |= (mid >= onset) & (mid < min(end, onset + early_s))
    return ictal, early


@dataclass(frozen=True)
class SecondScores:
    """Per-second samples of one recording: probability (NaN = unscored) and labels."""

    recording: str
    p: np.ndarray
    ictal: np.ndarray
    early: np.ndarray
    p_early: np.ndarray | None = None  # the model's own early output per second, when it has one

    @classmethod
    def from_trace(cls, recording: str, t_end: np.ndarray, p: np.ndarray, duration: float,
                   seizures: Sequence[tuple[float, float]], early_s: float = EARLY_S,
                   p_early: np.ndarray | None = None) -> SecondScores:
        ps = probability_per_second(t_end, p, duration)
        ictal, early = second_labels(len(ps), seizures, early_s)
        pe = probability_per_second(t_end, p_early, duration) if p_early is not None else None
        return cls(recording, ps, ictal, early, pe)

    @property
    def scored(self) -> np.ndarray:
        return ~np.isnan(self.p)


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    return roc(y, p).auc if 0 < int(y.sum()) < len(y) else None


def _figures(p: np.ndarray, ictal: np.ndarray, early: np.ndarray, unscored: int,
             unscored_ictal: int, p_early: np.ndarray | None = None) -> dict[str, Any]:
    seizure = _auc(ictal, p)
    own = _auc(early, p_early) if p_early is not None else None
    return {"seizure_auc": seizure, "early_auc": _auc(early, p), "early_auc_output": own,
            "challenge_score": (seizure + own) / 2 if seizure is not None and own is not None else None,
            "seconds_scored": int(len(p)), "ictal_seconds": int(ictal.sum()), "early_seconds": int(early.sum()),
            "seconds_unscored": int(unscored), "ictal_seconds_unscored": int(unscored_ictal)}


def score_seconds(recordings: Sequence[SecondScores], early_s: float = EARLY_S) -> dict[str, Any]:
    """Seizure and early AUC (both ways, see the module docstring) per recording and pooled over all
    recordings' seconds, plus the mean and minimum over the recordings that have both classes. The
    early output's figures need it on every recording (else None)."""
    per: list[dict[str, Any]] = []
    ps, ics, ers, pes = [], [], [], []
    unscored = unscored_ictal = 0
    own = all(r.p_early is not None for r in recordings)
    for r in recordings:
        m = r.scored
        u, ui = int((~m).sum()), int((~m & r.ictal).sum())
        pe = r.p_early[m] if own and r.p_early is not None else None
        per.append({"recording": r.recording, **_figures(r.p[m], r.ictal[m], r.early[m], u, ui, pe)})
        ps.append(r.p[m])
        ics.append(r.ictal[m])
        ers.append(r.early[m])
        if pe is not None:
            pes.append(pe)
        unscored, unscored_ictal = unscored + u, unscored_ictal + ui
    pooled = _figures(np.concatenate(ps) if ps else np.zeros(0), np.concatenate(ics) if ics else np.zeros(0, bool),
                      np.concatenate(ers) if ers else np.zeros(0, bool), unscored, unscored_ictal,
                      np.concatenate(pes) if own and pes else None)
    out: dict[str, Any] = {"early_s": float(early_s), "pooled": pooled, "recordings": per}
    for key in ("seizure_auc", "early_auc", "early_auc_output", "challenge_score"):
        vals = [r[key] for r in per if r[key] is not None]
        out[f"{key}_mean"] = float(np.mean(vals)) if vals else None
        out[f"{key}_min"] = float(np.min(vals)) if vals else None
    return out
