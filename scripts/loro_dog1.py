"""Leave-one-recording-out on Dog_1, second by second, through the daemon's replay path.

For every model config and fold (crossval.folds: test recording i, validation recording
i+1 for early stopping and the threshold, training on the other two) the fold model is
trained by the one training run (``train_from_dataset``), the held-out recording is
replayed through a real Daemon (``predict.stream_probabilities``), and the probability in
force each second is scored (``timescore``): seizure and early AUC per fold and pooled;
then the daemon's own alarms: seizure alarmed, onset -> alarm latency, false alarms.

    python scripts/loro_dog1.py --out /tmp/loro \\
        config/models/hills-forest.yaml=datasets/dog1-1s config/models/seed-convnet.yaml=datasets/dog1

(each model with the dataset whose window it takes; build them with ``seizurewatch dataset build``).
Prints and writes ``loro.json`` and ``loro.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seizurewatch.config import DecisionConfig
from seizurewatch.research.crossval import folds, with_splits
from seizurewatch.research.datadir import DatasetDir, open_dataset
from seizurewatch.research.predict import Trace, alarm_spans, stream_probabilities
from seizurewatch.research.timescore import SecondScores, score_seconds
from seizurewatch.research.training_run import load_model_config, train_from_dataset


def events(trace: Any) -> dict[str, Any]:
    """Seizures alarmed (an alarm starting inside the seizure), latency, and false alarms
    (alarms starting outside every seizure)."""
    out = {"seizures": len(trace.seizures), "detected": 0, "latency_s": [], "false_alarms": 0}
    for onset, end in trace.seizures:
        starts = [a for a, _ in trace.alarms if onset <= a <= end]
        if starts:
            out["detected"] += 1
            out["latency_s"].append(round(min(starts) - onset, 1))
    out["false_alarms"] = sum(1 for a, _ in trace.alarms if not any(on <= a <= end for on, end in trace.seizures))
    return out


def _roles(ds: DatasetDir, roles: dict[str, str]) -> DatasetDir:
    index = [dataclasses.replace(r, split=roles.get(r.recording, "unused")) for r in ds.index]
    return dataclasses.replace(ds, index=index)


def _alarm_events(trace: Trace, threshold: float) -> dict[str, Any]:
    spans = alarm_spans(trace.t, trace.p, threshold, trace.decision, trace.duration)
    return events(dataclasses.replace(trace, alarms=spans))


def oof_threshold(ds: DatasetDir, spec: Any, others: list[str], paths: dict[str, str], work: Path) -> float:
    """The lowest threshold at which the daemon's rules raise no false alarm on out-of-fold
    replays of the non-test recordings (each by a model trained on the other ones)."""
    traces = []
    for r in others:
        path = work / f"oof-{Path(r).stem}.pt"
        train_from_dataset(_roles(ds, {q: "train" for q in others if q != r}), spec, path, progress=False)
        traces.append(stream_probabilities(paths.get(Path(r).name, r), path))
    cands = np.unique(np.round(np.concatenate([t.p for t in traces]), 4))
    for th in cands[(cands > 0) & (cands < 1)]:
        if all(_alarm_events(t, float(th))["false_alarms"] == 0 for t in traces):
            return float(th)
    return float(min(cands.max(), 0.999))


def run(model_cfg: str, dataset: str, out: Path, oof: bool) -> dict[str, Any]:
    """``oof``: the fold model trains on all three non-test recordings (no early stopping: for
    models fitted once) and the threshold comes from ``oof_threshold``; else the fold trains on
    two, early-stops and takes Youden's threshold on the third (the validation recording)."""
    ds = open_dataset(dataset)
    spec = load_model_config(model_cfg)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, threads=1))
    paths = {Path(r).name: r for s in ("train", "val", "test") for r in ds.recordings(s)}
    per, scores = [], []
    for test, val, train in folds(ds):
        stem = Path(test).stem
        path = out / spec.name / f"test-{stem}.pt"
        t0 = time.perf_counter()
        if oof:  # (thresholds: see oof_threshold)
            meta = train_from_dataset(_roles(ds, {r: "train" for r in [val, *train]}), spec, path, progress=False)
            train_s = time.perf_counter() - t0
            th = oof_threshold(ds, spec, [val, *train], paths, out / spec.name / f"oof-{stem}")
            meta["threshold"] = {"value": th}
        else:
            meta = train_from_dataset(with_splits(ds, test, val), spec, path, progress=False)
            train_s = time.perf_counter() - t0
        decision = DecisionConfig(threshold=float(meta["threshold"]["value"]))
        trace = stream_probabilities(paths.get(Path(test).name, test), path, decision)
        s = SecondScores.from_trace(stem, trace.t, trace.p, trace.duration, trace.seizures)
        scores.append(s)
        fold = {"test": stem, "validation": Path(val).stem, "train_s": round(train_s, 1),
                "threshold": round(float(meta["threshold"]["value"]), 4), **events(trace)}
        per.append(fold)
        print(json.dumps({"model": spec.name, **fold}), flush=True)
    ts = score_seconds(scores)
    for fold, rec in zip(per, ts["recordings"]):
        fold.update(seizure_auc=rec["seizure_auc"], early_auc=rec["early_auc"],
                    seconds_unscored=rec["seconds_unscored"])
    lat = [v for f in per for v in f["latency_s"]]
    return {"model": spec.name + (" (oof)" if oof else ""), "config": model_cfg, "dataset": dataset, "folds": per,
            "pooled": {"seizure_auc": ts["pooled"]["seizure_auc"], "early_auc": ts["pooled"]["early_auc"],
                       "detected": sum(f["detected"] for f in per), "seizures": sum(f["seizures"] for f in per),
                       "latency_s_median": float(np.median(lat)) if lat else None,
                       "false_alarms": sum(f["false_alarms"] for f in per),
                       "train_s_mean": round(float(np.mean([f["train_s"] for f in per])), 1)}}


def _f(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| model | fold (test) | seizure AUC | early AUC | alarmed | latency (s) | false alarms | threshold "
             "| train (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for f in r["folds"]:
            lines.append(f"| {r['model']} | {f['test']} | {_f(f['seizure_auc'])} | {_f(f['early_auc'])} | "
                         f"{f['detected']}/{f['seizures']} | {', '.join(map(str, f['latency_s'])) or '-'} | "
                         f"{f['false_alarms']} | {f['threshold']:.3f} | {f['train_s']} |")
        p = r["pooled"]
        med = "-" if p["latency_s_median"] is None else f"{p['latency_s_median']:.1f} (median)"
        lines.append(f"| **{r['model']}** | **pooled** | **{_f(p['seizure_auc'])}** | **{_f(p['early_auc'])}** | "
                     f"**{p['detected']}/{p['seizures']}** | {med} | {p['false_alarms']} | | "
                     f"{p['train_s_mean']} (mean) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="+", help="model.yaml=dataset_dir")
    ap.add_argument("--out", default="/tmp/loro-dog1")
    ap.add_argument("--oof", action="store_true", help="fit on the 3 non-test recordings, out-of-fold threshold")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    results = []
    for pair in a.pairs:
        cfg, _, ds = pair.partition("=")
        results.append(run(cfg, ds, out, a.oof))
    out.mkdir(parents=True, exist_ok=True)
    (out / "loro.json").write_text(json.dumps(results, indent=2, default=float), encoding="utf-8")
    md = markdown(results)
    (out / "loro.md").write_text(md + "\n", encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
