"""``evaluate`` for a prediction model on continuous recordings: per horizon, through the daemon's own
pipeline (``replay``), the window AUC and the alarm-based figures at each risk level against chance.

A horizon H means "a seizure starts within H": SPH 0 (``sph_s``) and SOP H, the labels the model was
trained on (``research/labels.py``: preictal = within H before onset). A window is positive when an
onset follows its end within H; windows inside a seizure are left out of the AUC. At each level
threshold (``elevated``, ``high``) the warnings are the windows at or above it (raw, not the daemon's
median: the figures describe the model; the daemon's smoothing only delays a level by half a span).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import DataError
from seizurewatch.modelmeta import ModelMeta
from seizurewatch.research.forecast import (
    CHANCE_SHUFFLES,
    Recording,
    alarm_figures,
    auc_against_chance,
    chance_analytic,
    chance_surrogate,
)
from seizurewatch.research.labels import is_seizure


def horizon_labels(t: np.ndarray, seizures: list[tuple[float, float]], horizon_s: float) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """(positive: an onset within (t, t + H], keep: the window does not end inside a seizure)."""
    pos = np.zeros(len(t), dtype=bool)
    keep = np.ones(len(t), dtype=bool)
    for a, b in seizures:
        pos |= (a > t) & (a <= t + horizon_s)
        keep &= ~((t >= a) & (t <= b))
    return pos, keep


def evaluate_forecast(model: str | Path, meta: ModelMeta, recordings: list[str], out_dir: str | Path,
                      decision: DecisionConfig | None = None, sph_s: float = 0.0,
                      shuffles: int = CHANCE_SHUFFLES) -> dict[str, Any]:
    from seizurewatch.replay import ReplayOptions, replay

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    traces = []
    for rec in recordings:
        res = replay(rec, ReplayOptions(model=model, decision=decision))
        if res.outputs is None or not len(res.outputs):
            raise DataError(f"{rec}: no window of this recording was decided; nothing to evaluate")
        seizures = [(a.onset, a.end) for a in res.annotations if is_seizure(a.description)]
        traces.append((res.t, res.outputs, res.duration, seizures))
    per = []
    for o in meta.risk_outputs:
        recs = [Recording(t, outputs[:, o.index], duration, tuple(a for a, _ in sz))
                for t, outputs, duration, sz in traces]
        labels = [horizon_labels(r.t, tr[3], o.horizon_s) for r, tr in zip(recs, traces)]
        y = np.concatenate([pos[keep] for pos, keep in labels])
        p = np.concatenate([r.p[keep] for r, (_, keep) in zip(recs, labels)])
        entry: dict[str, Any] = {"output": o.name, "horizon_s": o.horizon_s, "sph_s": sph_s, "sop_s": o.horizon_s,
                                 "windows": auc_against_chance(y, p, shuffles=shuffles), "levels": {}}
        for level, th in (("elevated", o.elevated), ("high", o.high)):
            f = alarm_figures(recs, th, sph_s, o.horizon_s)
            entry["levels"][level] = {**f, "chance_analytic": chance_analytic(int(f["seizures"]), int(f["predicted"]),
                                                                              f["time_in_warning"]),
                                      "chance_surrogate": chance_surrogate(recs, th, sph_s, o.horizon_s, shuffles)}
        per.append(entry)
    result: dict[str, Any] = {"model": meta.name, "recordings": [Path(r).name for r in recordings], "horizons": per}
    md = markdown(result)
    result["markdown"] = md
    (out / "forecast.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    (out / "forecast.md").write_text(md + "\n", encoding="utf-8")
    return result


def markdown(res: dict[str, Any]) -> str:
    lines = [f"Forecast figures of {res['model']} on {', '.join(res['recordings'])}. A warning at t: a seizure "
             "within [t + SPH, t + SPH + SOP]; time in warning: the share of recorded time covered by warnings; "
             "chance: a predictor with the same time in warning (Snyder 2008 analytic binomial p; shuffled onsets).",
             "", "| horizon | level (threshold) | window AUC | predicted / seizures | time in warning | "
             "false warnings / day (exposure h) | chance sensitivity | p analytic | p surrogate |",
             "|---|---|---|---|---|---|---|---|---|"]
    for h in res["horizons"]:
        for level, f in h["levels"].items():
            lines.append(f"| {h['horizon_s']:g} s (SPH {h['sph_s']:g}, SOP {h['sop_s']:g}) | {level} "
                         f"({f['threshold']:.3f}) | {h['windows']['auc']} | {f['predicted']}/{f['seizures']} | "
                         f"{f['time_in_warning']:.3f} | {f['false_warnings_per_day']} ({f['exposure_h']}) | "
                         f"{f['chance_analytic']['chance_sensitivity']} | {f['chance_analytic']['p_value']} | "
                         f"{f['chance_surrogate']['p_value']} |")
    return "\n".join(lines)
