"""``compare`` on clips and segments: per-fold and pooled figures per unit (``research.unitscore``).

Each fold's model is scored on its test part, one score per clip or segment; pooled figures put
every fold's test units together, each scored by its own fold's model. The threshold of each fold is
chosen on its validation part (Youden's J, inside the gap between the classes: ``threshold.youden``);
a fold whose validation part lacks a class says so instead of a silent 0.5. Latency and false alarms
per 24 h are not figures of clips or segments: the tables say ``NOT_CONTINUOUS``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seizurewatch.research import plots
from seizurewatch.research.report import Section, write_report
from seizurewatch.research.roc import Curve, roc
from seizurewatch.research.unitscore import NOT_CONTINUOUS, fmt_auc, pooled, score_units

if TYPE_CHECKING:
    from seizurewatch.research.crossval import Fold, FoldTask
    from seizurewatch.research.dataset import DatasetDir

KEYS = ("seizure_auc", "early_auc", "early_auc_output", "challenge_score")


def _spread(per_fold: list[dict[str, Any]], key: str) -> dict[str, float | None]:
    vals = [f["units"][key] for f in per_fold if f["units"].get(key) is not None]
    return {"mean": float(np.mean(vals)) if vals else None, "min": float(np.min(vals)) if vals else None}


def summary(name: str, runs: list[dict[str, Any]], early_s: float) -> dict[str, Any]:
    """Pooled and per-fold unit figures of one model."""
    per_fold = [{"fold": r["fold_test"], "units": {k: v for k, v in r["units"].items() if not k.startswith("_")},
                 "threshold": r["threshold"]["value"], "policy": r["threshold"]["policy"],
                 "threshold_why": r["threshold"].get("why", ""), "window_roc_auc": r["windows"].get("roc_auc"),
                 "train_seconds": r["train_seconds"]} for r in runs]
    return {"model": name, "folds": len(runs), "kind": runs[0]["units"]["kind"] if runs else "",
            "pooled": score_units(pooled([r["_unit_scores"] for r in runs]), early_s),
            **{f"{k}_folds": _spread(per_fold, k) for k in KEYS},
            "train_seconds": [r["train_seconds"] for r in runs], "per_fold": per_fold}


def _cell(s: dict[str, Any], key: str) -> str:
    sp = s[f"{key}_folds"]
    if sp["mean"] is None:
        return fmt_auc(s["pooled"], key)
    return f"{fmt_auc(s['pooled'], key)} ({sp['mean']:.3f}, {sp['min']:.3f})"


def markdown(summaries: list[dict[str, Any]], fold_line: str, early_s: float) -> str:
    kind = summaries[0]["kind"] if summaries else "clips"
    unit = kind[:-1]
    lines = [f"| model | seizure AUC per {unit}, pooled (mean, min over folds) | early AUC (latency <= {early_s:g} s) "
             "of the alarm score, pooled (mean, min) | early AUC of the early output, as the challenge scored it, "
             "pooled (mean, min) | challenge score (seizure + early output AUC) / 2, pooled (mean, min) | latency "
             "| false alarms / 24 h | training s per fold |", "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(f"| {s['model']} | {_cell(s, 'seizure_auc')} | {_cell(s, 'early_auc')} | "
                     f"{_cell(s, 'early_auc_output')} | {_cell(s, 'challenge_score')} "
                     f"| {NOT_CONTINUOUS} | {NOT_CONTINUOUS} | {', '.join(f'{v:.0f}' for v in s['train_seconds'])} |")
    lines += ["", f"Per fold (test part: {kind}, ictal, early; threshold chosen on the validation part):", "",
              f"| model | fold | test {kind} (ictal, early) | seizure AUC | early AUC (alarm score) | early AUC (early "
              f"output) | challenge score | threshold (policy) | {kind} right at the threshold | training s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        for f in s["per_fold"]:
            u = f["units"]
            th = f"{f['threshold']:.3f} ({f['policy']}{': ' + f['threshold_why'] if f['threshold_why'] else ''})"
            acc = u.get("threshold_accuracy")
            n = f"{u['units']} ({u['ictal_units']}, {u.get('early_units', '-')})"
            lines.append(f"| {s['model']} | {f['fold']} | {n} "
                         f"| {fmt_auc(u, 'seizure_auc')} | {fmt_auc(u, 'early_auc')} "
                         f"| {fmt_auc(u, 'early_auc_output')} | {fmt_auc(u, 'challenge_score')} | {th} "
                         f"| {'n/a' if acc is None else f'{acc:.3f}'} | {f['train_seconds']:.0f} |")
    lines += ["", fold_line]
    return "\n".join(lines)


def unit_report(ds: DatasetDir, plans: list[tuple[str, str, Any]], tasks: list[FoldTask],
                results: list[dict[str, Any]], folds_: list[Fold], out: Path, early_s: float,
                group_by: str | None) -> dict[str, Any]:
    """compare.json, compare.md and report.html of a comparison on clips or segments."""
    from seizurewatch.research.compare_report import fold_line

    summaries = []
    panels: dict[str, dict[str, Curve]] = {}
    for cfg_path, data, spec in plans:
        runs = [m for t, m in zip(tasks, results) if t.config == cfg_path and t.dataset == data]
        s = summary(spec.name, runs, early_s)
        s["config"], s["dataset"] = cfg_path, str(data)
        summaries.append(s)
        us = pooled([r["_unit_scores"] for r in runs])
        for title, y, score in ((f"seizure ({us.kind}, pooled over folds)", us.ictal, us.p),
                                (f"early <= {early_s:g} s, alarm score ({us.kind}, pooled)", us.early, us.p),
                                (f"early <= {early_s:g} s, early output ({us.kind}, pooled)", us.early, us.p_early)):
            if score is not None and 0 < int(y.sum()) < len(y) and (us.kind == "clips" or y is us.ictal):
                panels.setdefault(title, {})[spec.name] = roc(y, score)
    images: list[str | Path] = [plots.unit_rocs(panels, out / "roc_units.png")] if panels else []
    line = fold_line(folds_)
    md = markdown(summaries, line, early_s)
    how = f"grouped stratified {len(folds_)}-fold by {group_by}" if group_by else "leave one recording out"
    sections = [Section("Comparison", paragraphs=[f"Dataset {ds.root} ({summaries[0]['kind'] if summaries else ''}, "
                                                  f"{how}). {line}"],
                        tables=[(md.splitlines()[0].strip("|").split(" | "),
                                 [row.strip("|").split(" | ") for row in md.splitlines()[2:2 + len(summaries)]])],
                        images=images)]
    write_report(out / "report.html", f"Comparison per unit ({how})", sections)
    result = {"dataset": str(ds.root), "units": summaries[0]["kind"] if summaries else "", "folding": how,
              "folds": [dataclasses.asdict(f) for f in folds_], "early_s": early_s, "models": summaries,
              "markdown": md}
    (out / "compare.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    (out / "compare.md").write_text(md + "\n", encoding="utf-8")
    return result
