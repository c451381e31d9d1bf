"""Leave-one-recording-out comparison of model configs on one dataset.

Fold i holds recording i out for testing, validates on the next recording (early stopping
and the Youden threshold) and trains on the rest. Held-out figures are pooled over folds:
event sensitivity = detected / seizures, false alarms per 24 h = false alarms / hours
scored, latency = mean over detected seizures; window ROC AUC is the mean over folds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.errors import DataError
from seizurewatch.research.datadir import DatasetDir, open_dataset
from seizurewatch.research.evaluate import evaluate
from seizurewatch.research.report import Section, write_report
from seizurewatch.research.training_run import load_model_config, train_from_dataset

log = logging.getLogger(__name__)


def folds(ds: DatasetDir) -> list[tuple[str, str, list[str]]]:
    """(test recording, validation recording, training recordings) per fold, in index order."""
    recs: list[str] = []
    for r in ds.index:
        if r.recording not in recs:
            recs.append(r.recording)
    if len(recs) < 3:
        raise DataError(f"{ds.root}: leave-one-recording-out needs >= 3 recordings (has {len(recs)})")
    return [(recs[i], recs[(i + 1) % len(recs)], [r for j, r in enumerate(recs) if j not in (i, (i + 1) % len(recs))])
            for i in range(len(recs))]


def with_splits(ds: DatasetDir, test: str, val: str) -> DatasetDir:
    index = [dataclasses.replace(r, split="test" if r.recording == test else "val" if r.recording == val else "train")
             for r in ds.index]
    return dataclasses.replace(ds, index=index)


def _summary(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    aucs = [r["windows"].get("roc_auc") for r in runs if r["windows"].get("roc_auc") is not None]
    ev = [r["events"] for r in runs if "events" in r]
    seizures = sum(e["seizures"] for e in ev)
    detected = sum(e["detected"] for e in ev)
    fa = sum(e["false_alarms"] for e in ev)
    hours = sum(e["hours"] for e in ev)
    lat = [v for e in ev for v in e["latency_s"]["values"]]
    return {"model": name, "folds": len(runs), "roc_auc_mean": float(np.mean(aucs)) if aucs else None,
            "roc_auc_min": float(np.min(aucs)) if aucs else None,
            "pr_auc_mean": float(np.mean([r["windows"]["pr_auc"] for r in runs if "pr_auc" in r["windows"]])),
            "accuracy_mean": float(np.mean([r["windows"]["accuracy"] for r in runs])),
            "seizures": seizures, "detected": detected, "event_sensitivity": detected / seizures if seizures else None,
            "false_alarms": fa, "hours": hours, "fa_per_24h": fa / hours * 24 if hours else None,
            "latency_s_mean": float(np.mean(lat)) if lat else None, "latency_s": lat,
            "train_seconds": [r["train_seconds"] for r in runs]}


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def markdown(summaries: list[dict[str, Any]], folds_: list[tuple[str, str, list[str]]]) -> str:
    lines = ["| model | ROC AUC (mean, min over folds) | PR AUC | event sensitivity | false alarms / 24 h "
             "(count / hours) | latency onset->alarm (s, mean) |", "|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(f"| {s['model']} | {_fmt(s['roc_auc_mean'], '.3f')} ({_fmt(s['roc_auc_min'], '.3f')}) | "
                     f"{_fmt(s['pr_auc_mean'], '.3f')} | {s['detected']}/{s['seizures']} | "
                     f"{_fmt(s['fa_per_24h'], '.0f')} ({s['false_alarms']} in {s['hours']:.3f} h) | "
                     f"{_fmt(s['latency_s_mean'], '.1f')} |")
    lines.append("")
    lines.append("Folds (test / validation / train): " + "; ".join(
        f"{Path(t).stem} / {Path(v).stem} / {', '.join(Path(x).stem for x in tr)}" for t, v, tr in folds_))
    return "\n".join(lines)


def compare(dataset: str | Path, model_configs: list[str], out_dir: str | Path, progress: bool = False
            ) -> dict[str, Any]:
    ds = open_dataset(dataset)
    out = Path(out_dir)
    fs = folds(ds)
    paths = {Path(r).name: r for r in ds.recordings("train") + ds.recordings("val") + ds.recordings("test")}
    summaries, sections = [], []
    for cfg_path in model_configs:
        spec = load_model_config(cfg_path)
        runs = []
        for test, val, _train in fs:
            fold = with_splits(ds, test, val)
            stem = Path(test).stem
            model_path = out / spec.name / f"test-{stem}.pt"
            meta = train_from_dataset(fold, spec, model_path, progress=progress,
                                      command=f"seizurewatch compare --dataset {dataset} (fold: test {stem})")
            rows = fold.rows("test")
            rec = paths.get(Path(test).name, test)
            m = evaluate(model_path, [rec] if Path(rec).is_file() else [], out / spec.name / f"eval-{stem}",
                         windows=(ds.x[rows], ds.y[rows]))
            m["train_seconds"] = meta["training"]["seconds"]
            runs.append(m)
            log.info("fold done", extra={"model": spec.name, "test": stem, "roc_auc": m["windows"].get("roc_auc")})
        s = _summary(spec.name, runs)
        s["config"] = cfg_path
        summaries.append(s)
        sections.append(Section(f"{spec.name} (leave-one-recording-out)", tables=[(
            ["held-out recording", "ROC AUC", "PR AUC", "detected", "false alarms", "latency (s)", "threshold"],
            [[r["held_out"][0] if r["held_out"] else "-", r["windows"].get("roc_auc"), r["windows"].get("pr_auc"),
              f"{r['events']['detected']}/{r['events']['seizures']}" if "events" in r else "-",
              r["events"]["false_alarms"] if "events" in r else "-",
              ", ".join(str(v) for v in r["events"]["latency_s"]["values"]) if "events" in r else "-",
              r["threshold"]["value"]] for r in runs])]))
    md = markdown(summaries, fs)
    summary_rows = [[s["model"], s["roc_auc_mean"], s["pr_auc_mean"], f"{s['detected']}/{s['seizures']}",
                     s["fa_per_24h"], s["latency_s_mean"]] for s in summaries]
    head = Section("Comparison", paragraphs=[f"Dataset {ds.root}; " + md.splitlines()[-1]],
                   tables=[(["model", "ROC AUC (mean)", "PR AUC", "events detected", "FA / 24 h", "latency (s)"],
                            summary_rows)])
    write_report(out / "report.html", "Leave-one-recording-out comparison", [head] + sections)
    result = {"dataset": str(ds.root), "folds": [{"test": t, "val": v, "train": tr} for t, v, tr in fs],
              "models": summaries, "markdown": md}
    (out / "compare.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    (out / "compare.md").write_text(md + "\n", encoding="utf-8")
    return result
