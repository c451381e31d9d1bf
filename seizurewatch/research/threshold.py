"""Pick the operating point from the ROC trade-off on validation data and write it into the
model's metadata (value, policy, target, the curve point), re-saving the model file.

Policies:
  youden       maximise sensitivity + specificity - 1 over the window-level ROC
  sensitivity  the highest threshold whose window sensitivity reaches the target
  fa_budget    replay the validation recordings through the daemon's pipeline, apply its
               smoothing/hysteresis at each candidate threshold, and keep the one with the best
               event sensitivity whose false alarms per 24 h stay within the budget
The daemon uses the stored value unless its config sets ``decision.threshold``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import ConfigError, DataError
from seizurewatch.modelfile import load_model
from seizurewatch.research.evaluate import SZCORE, EventRules, score_events, windows_for
from seizurewatch.research.export import example_input, rebuild_eager, save_checked
from seizurewatch.research.predict import Trace, stream_probabilities
from seizurewatch.research.roc import Curve, roc, target_sensitivity, youden
from seizurewatch.research.train import predict

log = logging.getLogger(__name__)

POLICIES = ("youden", "sensitivity", "fa_budget")


def candidates(traces: list[Trace], most: int = 200) -> np.ndarray:
    """Candidate thresholds: the distinct probabilities seen (thinned to ``most`` quantiles)."""
    p = np.unique(np.concatenate([t.p for t in traces])) if traces else np.zeros(0)
    if len(p) > most:
        p = np.unique(np.quantile(p, np.linspace(0, 1, most)))
    return np.clip(p, 1e-6, 1 - 1e-6)


def curve_point(curve: Curve, value: float) -> dict[str, float]:
    """Where ``value`` sits on the window-level ROC (windows with p >= value are flagged)."""
    i = int(np.searchsorted(-curve.thresholds, -value, side="right") - 1)
    return {"tpr": float(curve.tpr[i]), "fpr": float(curve.fpr[i]), "specificity": float(1 - curve.fpr[i])}


def event_table(traces: list[Trace], thresholds: np.ndarray, decision: DecisionConfig,
                rules: EventRules = SZCORE, curve: Curve | None = None) -> list[dict[str, float]]:
    """Event sensitivity and false alarms per 24 h at each threshold, after the daemon's decision
    logic (plus the window-level Youden J there, when a validation ROC ``curve`` is given)."""
    rows = []
    for th in thresholds:
        ev = score_events(traces, float(th), decision, rules)
        row = {"threshold": float(th), "sensitivity": ev["sensitivity"], "fa_per_24h": ev["fa_per_24h"],
               "latency_s": ev["latency_s"]["mean"]}
        if curve is not None:
            pt = curve_point(curve, float(th))
            row["window_j"] = pt["tpr"] - pt["fpr"]
        rows.append(row)
    return rows


def by_fa_budget(table: list[dict[str, float]], budget: float) -> dict[str, Any]:
    """Best event sensitivity with false alarms / 24 h <= ``budget``; among ties, the fewest
    false alarms, then the best window-level Youden J (if the rows carry ``window_j``: short
    validation recordings leave long ties, and J keeps the choice away from thresholds that
    flag much interictal signal), then the middle of the tied thresholds."""
    ok = [r for r in table if r["fa_per_24h"] <= budget + 1e-9]
    if not ok:
        lowest = min(table, key=lambda r: r["fa_per_24h"])
        raise DataError(f"no threshold keeps false alarms within {budget:g}/24 h on the validation recordings "
                        f"(lowest: {lowest['fa_per_24h']:.3g}/24 h at threshold {lowest['threshold']:.4g})")
    best_sens = max(r["sensitivity"] for r in ok)
    tied = [r for r in ok if r["sensitivity"] == best_sens]
    best_fa = min(r["fa_per_24h"] for r in tied)
    tied = [r for r in tied if r["fa_per_24h"] == best_fa]
    if all("window_j" in r for r in tied):
        best_j = max(r["window_j"] for r in tied)
        tied = [r for r in tied if r["window_j"] >= best_j - 1e-12]
    tied = sorted(tied, key=lambda r: r["threshold"])
    r = tied[(len(tied) - 1) // 2]
    return {"value": float(r["threshold"]), "policy": "fa_budget", "target": float(budget),
            "point": {"event_sensitivity": r["sensitivity"], "fa_per_24h": r["fa_per_24h"]}}


def by_policy(policy: str, curve: Curve | None, target: float | None, table: list[dict[str, float]] | None
              ) -> dict[str, Any]:
    if policy not in POLICIES:
        raise ConfigError(f"threshold policy {policy!r}: expected one of {', '.join(POLICIES)}")
    if policy == "fa_budget":
        if table is None:
            raise ConfigError("fa_budget needs continuous validation recordings")
        if target is None:
            raise ConfigError("fa_budget needs --target (false alarms per 24 h)")
        return by_fa_budget(table, target)
    if curve is None:
        raise DataError("the validation windows need both classes for a ROC-based threshold")
    if policy == "sensitivity":
        t = 0.95 if target is None else target
        if not 0 < t <= 1:
            raise ConfigError(f"--target {t}: a sensitivity between 0 and 1")
        return target_sensitivity(curve, t)
    return youden(curve)


def choose_threshold(model: str | Path, policy: str, target: float | None = None,
                     recordings: list[str] | None = None, dataset: str | Path | None = None, split: str = "val",
                     output: str | Path | None = None, decision: DecisionConfig | None = None,
                     rules: EventRules = SZCORE) -> dict[str, Any]:
    """Choose and store the threshold; returns the new ``threshold`` metadata block."""
    decision = decision or DecisionConfig()
    loaded = load_model(model)
    meta = dict(loaded.meta.raw)
    recordings = list(recordings or [])
    if dataset is not None:
        from seizurewatch.research.datadir import open_dataset

        ds = open_dataset(dataset)
        rows = ds.rows(split)
        if not len(rows):
            raise DataError(f"{dataset}: split {split!r} has no windows")
        x, y = ds.x, ds.y[rows]
        p = predict(loaded.module, x, rows=rows)[:, 0]
        recordings = recordings or [r for r in ds.recordings(split) if Path(r).is_file()]
        where = [f"{Path(dataset).name}:{split}"]
    elif recordings:
        x, y = windows_for(loaded.meta, recordings)
        p = predict(loaded.module, x)[:, 0]
        where = [Path(r).name for r in recordings]
    else:
        raise ConfigError("threshold: give --dataset DIR or validation recordings")
    yv = y[:, 0]
    curve = roc(yv, p) if 0 < yv.sum() < len(yv) else None
    traces = [stream_probabilities(r, model, decision) for r in recordings] if recordings else []
    table = event_table(traces, candidates(traces), decision, rules, curve) if traces else None
    th = by_policy(policy, curve, target, table)
    th["auc"] = curve.auc if curve is not None else None
    th["chosen_on"] = where + [Path(r).name for r in recordings if Path(r).name not in where]
    if curve is not None:  # where the chosen value sits on the window-level ROC
        th.setdefault("point", {}).update(curve_point(curve, th["value"]))
    if traces:
        ev = score_events(traces, th["value"], decision, rules)
        th["point"].update(event_sensitivity=ev["sensitivity"], fa_per_24h=ev["fa_per_24h"],
                           latency_s=ev["latency_s"]["mean"], hours=ev["hours"])
        th["decision"] = {"k": decision.k, "n": decision.n, "hysteresis": decision.hysteresis,
                          "off_hops": decision.off_hops, "refractory_s": decision.refractory_s}
    meta["threshold"] = th
    eager = rebuild_eager(loaded)
    dst = Path(output) if output else Path(model)
    save_checked(eager, meta, dst, example_input(meta))
    if table:
        from seizurewatch.research import plots

        plots.tradeoff(table, th["value"], dst.with_name(dst.stem + "-threshold.png"))
    log.info("threshold chosen", extra={"policy": policy, "value": th["value"], "model": str(dst)})
    return th
