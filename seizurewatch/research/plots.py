"""PNG figures for evaluation and threshold reports (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.research.roc import Curve


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(p)
    _plt().close(fig)
    return p


def roc_pr(curves: dict[str, tuple[Curve, tuple[np.ndarray, np.ndarray, float]]], path: str | Path,
           point: tuple[float, float] | None = None) -> Path:
    """ROC and precision-recall side by side, one line per model (name -> (roc, (precision, recall, AP)))."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100)
    for name, (c, (prec, rec, ap)) in curves.items():
        a.plot(c.fpr, c.tpr, lw=1.5, label=f"{name} (AUC {c.auc:.3f})")
        b.step(np.r_[0.0, rec], np.r_[1.0, prec], where="post", lw=1.5, label=f"{name} (AP {ap:.3f})")
    if point:
        a.plot([point[0]], [point[1]], "o", color="#c0392b", label="operating point")
    a.plot([0, 1], [0, 1], ls=":", color="#999")
    a.set(xlabel="false positive rate (1 - specificity)", ylabel="sensitivity", title="ROC (windows)",
          xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    b.set(xlabel="recall (sensitivity)", ylabel="precision", title="precision-recall (windows)",
          xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    a.legend(fontsize=8, loc="lower right")
    b.legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def confusion(cm: dict[str, int], threshold: float, path: str | Path) -> Path:
    plt = _plt()
    m = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig, ax = plt.subplots(figsize=(3.8, 3.4), dpi=100)
    ax.imshow(m, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=14,
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks([0, 1], ["predicted\ninterictal", "predicted\nseizure"])
    ax.set_yticks([0, 1], ["interictal", "seizure"])
    ax.set_title(f"windows at threshold {threshold:.3f}", fontsize=10)
    return _save(fig, path)


def tradeoff(table: list[dict[str, float]], chosen: float, path: str | Path) -> Path:
    """Event sensitivity and false alarms / 24 h against the threshold (after smoothing)."""
    plt = _plt()
    th = np.array([r["threshold"] for r in table])
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    ax.plot(th, [r["sensitivity"] for r in table], color="#1f4e79", label="event sensitivity")
    ax.set_xlabel("threshold")
    ax.set_ylabel("event sensitivity", color="#1f4e79")
    ax2 = ax.twinx()
    ax2.plot(th, [r["fa_per_24h"] for r in table], color="#c0392b", label="false alarms / 24 h")
    ax2.set_ylabel("false alarms / 24 h", color="#c0392b")
    ax.axvline(chosen, color="#e67e22", ls="--", label=f"chosen {chosen:.3f}")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("after the daemon's smoothing and hysteresis", fontsize=10)
    return _save(fig, path)


def unit_rocs(panels: dict[str, dict[str, Curve]], path: str | Path) -> Path:
    """One ROC panel per column (e.g. seizure, early), one line per model: clips or segments pooled over folds."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), dpi=100, squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for name, c in curves.items():
            ax.plot(c.fpr, c.tpr, lw=1.5, label=f"{name} (AUC {c.auc:.3f})")
        ax.plot([0, 1], [0, 1], ls=":", color="#999")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(-0.01, 1.01),
               ylim=(-0.01, 1.01))
        ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)
