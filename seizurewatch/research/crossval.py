"""Leave-one-recording-out comparison of model configs on one dataset.

Fold i holds recording i out for testing, validates on the next recording (early stopping)
and trains on the rest. The operating point transfers: it is chosen on out-of-fold traces of
the fold's non-test recordings (``outoffold.out_of_fold``: each one left out in turn, the same
config trained on the others for the outer model's number of epochs, the left-out recording
replayed through the daemon), by ``threshold.transfer`` after the daemon's decision rules. The test
recording is replayed once; that one replay gives the event figures, the time-resolved
figures and the threshold that would have been best there (for the report, never used).

Held-out figures per fold and pooled over folds: time-resolved seizure / early AUC pooled
over every test second of every fold (each from its own fold's model), with mean and min
over folds; events summed (detected / seizures, false alarms in the hours scored); latency
median over detected seizures; window ROC AUC mean and min over folds.

A model config can bring its own dataset (``MODEL.yaml@DATASET_DIR``: e.g. the peer baseline
on 1-s windows); its folds are the same recordings. The strongest baseline is always compared.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import DataError, SeizurewatchError
from seizurewatch.research.dataset import DatasetDir, open_dataset
from seizurewatch.research.evaluate import (
    SZCORE,
    EvaluateOptions,
    EventRules,
    evaluate,
    fa_evidence,
    fa_upper_per_24h,
    second_scores,
)
from seizurewatch.research.outoffold import out_of_fold, recording_paths, with_roles
from seizurewatch.research.parallel import run_tasks
from seizurewatch.research.predict import stream_probabilities
from seizurewatch.research.report import Section, write_report
from seizurewatch.research.threshold import TRANSFER, by_events, outcome, transfer
from seizurewatch.research.timescore import EARLY_S, score_seconds
from seizurewatch.research.training_run import ModelSpec, load_model_config, train_from_dataset
from seizurewatch.research.unitfolds import unit_report
from seizurewatch.research.unitscore import Units, kind_of

log = logging.getLogger(__name__)

# the strongest baseline first: compare adds the first of these found beside the model YAMLs
BASELINE_CONFIGS = ("hills-forest.yaml", "bandpower-lr.yaml")


def recordings_of(ds: DatasetDir) -> list[str]:
    return ds.index.recordings_in()


@dataclasses.dataclass(frozen=True)
class Fold:
    """One fold: its name, and the recordings (clips, segments) it tests, validates and trains on."""

    name: str
    test: tuple[str, ...]
    val: tuple[str, ...]
    train: tuple[str, ...]


def folds(ds: DatasetDir) -> list[Fold]:
    """Leave one recording out: fold i tests recording i, validates on the next, trains on the rest."""
    recs = recordings_of(ds)
    if len(recs) < 3:
        raise DataError(f"{ds.root}: leave-one-recording-out needs >= 3 recordings (has {len(recs)})")
    n = len(recs)
    return [Fold(Path(recs[i]).stem, (recs[i],), (recs[(i + 1) % n],),
                 tuple(r for j, r in enumerate(recs) if j not in (i, (i + 1) % n))) for i in range(n)]


GROUP_BY = ("recording", "subject", "seizure")


def groups_of(ds: DatasetDir, by: str) -> list[str]:
    """The group of each recording (``recordings_of`` order): itself, its subject, or the build's split unit
    (``seizure``: a clip's seizure or interictal block, as ``dataset build --split-by seizure`` kept them
    together; a recording or segment is its own)."""
    if by not in GROUP_BY:
        raise DataError(f"--group-by {by!r}: expected one of {', '.join(GROUP_BY)}")
    recs = recordings_of(ds)
    if by == "recording":
        return recs
    if by == "subject":
        first = {ds.index.recording_names[c]: ds.index.subject_names[s]
                 for c, s in zip(ds.index.recording.tolist(), ds.index.subject.tolist())}
        return [first[r] for r in recs]
    unit = {Path(str(e.get("path", ""))).name: str(e.get("group") or "") for e in ds.manifest.get("recordings", [])
            if isinstance(e, dict)}
    return [unit.get(Path(r).name) or r for r in recs]


def kfolds(ds: DatasetDir, k: int, group_by: str = "recording", seed: int = 0) -> list[Fold]:
    """Grouped, stratified k-fold (scikit-learn's ``StratifiedGroupKFold``, shuffled with ``seed``): no group
    is split between folds, and each fold holds about the share of seizure units it should. Fold i tests
    on part i, validates on part i+1 (early stopping, and the threshold for clips and segments), trains on
    the rest."""
    from sklearn.model_selection import StratifiedGroupKFold

    recs = recordings_of(ds)
    groups = groups_of(ds, group_by)
    pos = np.zeros(len(ds.index.recording_names), dtype=bool)
    np.logical_or.at(pos, ds.index.recording, ds.y[:, 0] > 0)
    code = {n: c for c, n in enumerate(ds.index.recording_names)}
    y = np.array([pos[code[r]] for r in recs], dtype=int)
    n_groups = len(set(groups))
    if k < 3:
        raise DataError(f"--folds {k}: k-fold needs >= 3 folds (one tests, one validates, the rest train)")
    if n_groups < k:
        raise DataError(f"{ds.root}: --folds {k} needs >= {k} groups by {group_by}, the dataset has {n_groups}; "
                        f"use --folds {max(n_groups, 3)} or another --group-by")
    for cls, what in ((1, "seizure"), (0, "seizure-free"))[: 1 if kind_of(ds) == "continuous" else 2]:
        have = len({g for g, v in zip(groups, y) if v == cls})
        if have < k:
            raise DataError(f"{ds.root}: --folds {k}: only {have} {what} group(s) by {group_by}, so some folds "
                            f"would test without {what} units; use --folds {max(have, 3)} or another --group-by")
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    parts = [tuple(recs[i] for i in sorted(test)) for _, test in cv.split(np.zeros(len(recs)), y, groups)]
    return [Fold(f"fold{i + 1}", parts[i], parts[(i + 1) % k],
                 tuple(r for j, part in enumerate(parts) if j not in (i, (i + 1) % k) for r in part))
            for i in range(k)]


def with_splits(ds: DatasetDir, fold: Fold) -> DatasetDir:
    roles = {r: "train" for r in recordings_of(ds)} | dict.fromkeys(fold.val, "val") | dict.fromkeys(fold.test, "test")
    return with_roles(ds, roles)


def fits_once(ds: DatasetDir, spec: ModelSpec) -> bool:
    """Whether ``spec`` is fitted once (``FittedModel``: no epochs, no early stopping)."""
    from seizurewatch.research.architectures import build
    from seizurewatch.research.hills import FittedModel

    try:
        net = build(spec.train.arch, int(ds.x.shape[1]), int(ds.x.shape[2]), int(ds.y.shape[1]), ds.spec.rate,
                    **spec.train.arch_kwargs)
    except (KeyError, TypeError, ValueError):
        return False  # training names the problem with the config
    return isinstance(net, FittedModel)


def _units_fold(ds: DatasetDir, fold: DatasetDir, model_path: Path, meta: dict[str, Any], out: Path,
                early_s: float) -> dict[str, Any]:
    """Clips or segments: the threshold chosen on the validation part (Youden, inside the gap), the test
    part scored per unit; nothing replayed."""
    th = meta["threshold"]
    rows = fold.rows("test")
    m = evaluate(model_path, [], out, EvaluateOptions(early_s=early_s, threshold_policy=str(th.get("policy"))),
                 windows=(ds.x[rows], ds.y[rows]), units=Units.of_rows(fold, rows))
    if th.get("policy") == "default":  # never silently: the table says why the threshold is 0.5
        m["threshold"]["why"] = "0.5: the validation part lacks a class"
    return m


def _fold(ds: DatasetDir, spec: ModelSpec, fold_: Fold, out: Path, decision: DecisionConfig,
          method: str | None, rules: EventRules, early_s: float, progress: bool, dataset_arg: str) -> dict[str, Any]:
    """Train, choose the threshold out-of-fold, replay the test recordings once, evaluate. A model
    fitted once (a forest) has nothing to stop early: on continuous recordings the validation recording
    trains it too (the threshold comes from out-of-fold replays); on clips and segments the validation
    part chooses the threshold."""
    units = kind_of(ds) != "continuous"
    if fits_once(ds, spec) and not units:
        fold = with_roles(ds, {r: "train" for r in recordings_of(ds) if r not in fold_.test}
                          | dict.fromkeys(fold_.test, "test"))
    else:
        fold = with_splits(ds, fold_)
    stem = fold_.name
    model_path = out / spec.name / f"test-{stem}.pt"
    try:
        meta = train_from_dataset(fold, spec, model_path, progress=progress,
                                  command=f"seizurewatch compare --dataset {dataset_arg} (fold: test {stem})")
    except SeizurewatchError as exc:
        raise type(exc)(f"compare {spec.name}, fold test {stem}: {exc}") from exc
    if units:
        m = _units_fold(ds, fold, model_path, meta, out / spec.name / f"eval-{stem}", early_s)
        m |= {"fold_test": stem, "train_seconds": meta["training"]["seconds"], "threshold_seconds": 0.0}
        return m
    paths = recording_paths(ds)
    recs = [paths.get(Path(t).name, t) for t in fold_.test]
    replayable = all(Path(r).is_file() for r in recs)
    chosen: dict[str, Any] = dict(meta["threshold"])
    other: dict[str, Any] | None = None
    oof_seconds = 0.0
    if method is not None and replayable:
        t0 = time.perf_counter()
        epochs = meta["training"]["best_epoch"] + 1 if meta["training"]["best_epoch"] >= 0 else None
        oof = out_of_fold(ds, spec, [r for r in recordings_of(ds) if r not in fold_.test],
                          out / spec.name / f"oof-test-{stem}",
                          decision, epochs=epochs, progress=progress)
        chosen = transfer(oof, method, decision, rules, early_s)
        other = transfer(oof, next(m for m in TRANSFER if m != method), decision, rules, early_s)
        oof_seconds = time.perf_counter() - t0
    hop = float(meta["hop_s"])
    dec = dataclasses.replace(decision.for_model(chosen, hop), threshold=float(chosen["value"]))
    rows = fold.rows("test")
    traces = [stream_probabilities(r, model_path, dec) for r in recs] if replayable else []
    m = evaluate(model_path, recs if replayable else [], out / spec.name / f"eval-{stem}",
                 EvaluateOptions(decision=dec, rules=rules, early_s=early_s,
                                 threshold_policy=str(chosen.get("policy", "youden"))),
                 windows=(ds.x[rows], ds.y[rows]), traces=traces)
    m["fold_test"] = Path(fold_.test[0]).name if len(fold_.test) == 1 else stem
    m["train_seconds"] = meta["training"]["seconds"]
    m["threshold_seconds"] = round(oof_seconds, 2)
    if traces:
        tt: dict[str, Any] = {"method": method or "validation youden", "chosen": outcome(
            traces, chosen["value"], decision.for_model(chosen, hop), rules) | {
                "policy": chosen.get("policy", "youden")}}
        if other is not None:
            tt["other"] = outcome(traces, other["value"], decision.for_model(other, hop), rules) | {
                "policy": other["policy"]}
        best = by_events(traces, decision, rules, policy="best_on_test")
        tt["best_on_test"] = outcome(traces, best["value"], decision.for_model(best, hop), rules) | {
            "tied_range": best["point"]["tied_range"]}
        m["threshold_transfer"] = tt
        m["_second_scores"] = second_scores(traces, early_s)
    return m


def auc_why(run: dict[str, Any]) -> str:
    """Why a fold's per-second AUCs cannot be computed ("" when they can)."""
    po = (run.get("seconds") or {}).get("pooled")
    if not po:
        return "n/a: test recording not replayed"
    if po["ictal_seconds"] == 0:
        return "n/a: no ictal second in the test part"
    if po["ictal_seconds"] == po["seconds_scored"]:
        return "n/a: every scored second is ictal"
    return ""


def _summary(name: str, runs: list[dict[str, Any]], early_s: float) -> dict[str, Any]:
    aucs = [r["windows"].get("roc_auc") for r in runs if r["windows"].get("roc_auc") is not None]
    ev = [r["events"] for r in runs if "events" in r]
    seizures = sum(e["seizures"] for e in ev)
    detected = sum(e["alarmed"] for e in ev)
    fa = sum(e["unrelated_alarms"] for e in ev)
    hours = sum(e["hours"] for e in ev)
    inter = sum(e["interictal_hours"] for e in ev)
    lat = [v for e in ev for v in e["latency_s"]["values"]]
    secs = [s for r in runs for s in r.get("_second_scores", [])]
    pr = [r["windows"]["pr_auc"] for r in runs if "pr_auc" in r["windows"]]
    return {"model": name, "folds": len(runs), "roc_auc_mean": float(np.mean(aucs)) if aucs else None,
            "roc_auc_min": float(np.min(aucs)) if aucs else None,
            "pr_auc_mean": float(np.mean(pr)) if pr else None,
            "accuracy_mean": float(np.mean([r["windows"]["accuracy"] for r in runs])),
            "seconds": score_seconds(secs, early_s) if secs else None,
            "seizures": seizures, "detected": detected, "event_sensitivity": detected / seizures if seizures else None,
            "false_alarms": fa, "hours": hours, "interictal_hours": inter,
            "false_alarms_upper95_per_24h": fa_upper_per_24h(fa, inter) if ev else None,
            "szcore_detected": sum(e["detected"] for e in ev),
            "szcore_false_alarms": sum(e["false_alarms"] for e in ev), "fa_per_24h": fa / hours * 24 if hours else None,
            "latency_s_mean": float(np.mean(lat)) if lat else None,
            "latency_s_median": float(np.median(lat)) if lat else None, "latency_s": lat,
            "train_seconds": [r["train_seconds"] for r in runs],
            "threshold_seconds": [r["threshold_seconds"] for r in runs]}


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _aucs(sec: dict[str, Any] | None, key: str) -> str:
    if not sec:
        return "n/a"
    return (f"{_fmt(sec['pooled'][key], '.3f')} ({_fmt(sec[key + '_mean'], '.3f')}, "
            f"{_fmt(sec[key + '_min'], '.3f')})")


def _out(o: dict[str, Any] | None) -> str:
    if not o:
        return "-"
    rule = o.get("rule", "")
    if o.get("rule_s"):
        rule += f" ({o['rule_s'][0]:g} of {o['rule_s'][1]:g} s)"
    return (f"{o['threshold']:.3f} {rule}: {o['detected']}/{o['seizures']}, {o['false_alarms']} FA, "
            f"{_fmt(o['latency_s_median'], '.1f')} s")


def transfer_verdict(summaries: list[dict[str, Any]]) -> str:
    """Which threshold criterion did better on the test recordings, summed over models and folds."""
    tot: dict[str, list[float]] = {}
    for s in summaries:
        for tt in s.get("transfer", []):
            for key in ("chosen", "other"):
                o = tt.get(key)
                if o:
                    a = tot.setdefault(o["policy"], [0, 0, 0])
                    a[0], a[1], a[2] = a[0] + o["detected"], a[1] + o["seizures"], a[2] + o["false_alarms"]
    if not tot:
        return "Threshold: each fold's model kept its validation Youden threshold (no out-of-fold choice)."
    parts = [f"{k}: {int(d)}/{int(n)} seizures alarmed, {int(fa)} false alarms"
             for k, (d, n, fa) in sorted(tot.items())]
    return "Out-of-fold threshold criteria on the test recordings (all models, all folds): " + "; ".join(parts) + "."


def fold_line(folds_: list[Fold]) -> str:
    """The folds in one line: test / validation / train (parts of more than 3 units by their count)."""
    def part(names: tuple[str, ...]) -> str:
        return ", ".join(Path(x).stem for x in names) if len(names) <= 3 else f"{len(names)} units"
    return "Folds (test / validation / train): " + "; ".join(
        f"{f.name + ': ' if len(f.test) > 1 else ''}{part(f.test)} / {part(f.val)} / {part(f.train)}" for f in folds_)


def markdown(summaries: list[dict[str, Any]], folds_: list[Fold], early_s: float = EARLY_S) -> str:
    e = f"{early_s:g}"
    lines = [f"| model | seizure AUC per second, pooled (mean, min over folds) | early AUC ({e} s) of the alarm score, "
             f"pooled (mean, min) | early AUC ({e} s) of the early output, as the challenge scored it, pooled "
             "(mean, min) | challenge score (seizure + early output AUC) / 2, pooled "
             "| window ROC AUC mean (min) | seizures alarmed | false alarms in the interictal time (95 % upper bound "
             "per 24 h) | latency onset->alarm median (s) | training s per fold |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        sec = s["seconds"] or {}
        lines.append(f"| {s['model']} | {_aucs(s['seconds'], 'seizure_auc')} | {_aucs(s['seconds'], 'early_auc')} | "
                     f"{_aucs(s['seconds'], 'early_auc_output')} | "
                     f"{_fmt((sec.get('pooled') or {}).get('challenge_score'), '.3f')} | "
                     f"{_fmt(s['roc_auc_mean'], '.3f')} ({_fmt(s['roc_auc_min'], '.3f')}) | "
                     f"{s['detected']}/{s['seizures']} | {fa_evidence(s['false_alarms'], s['interictal_hours'])} | "
                     f"{_fmt(s['latency_s_median'], '.1f')} | "
                     f"{', '.join(f'{v:.0f}' for v in s['train_seconds'])} |")
    lines += ["", "Per fold (held-out recording; threshold chosen out-of-fold -> on the test recording: seizures "
              "alarmed, false alarms, median latency; best on test = the threshold the test recording itself "
              "would have picked, for reference only):", "",
              "| model | test | seizure AUC | early AUC (alarm score) | early AUC (early output) | window AUC "
              "| threshold chosen (policy) | chosen -> test | other criterion -> test | best on test | training s "
              "| threshold s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        for f in s["per_fold"]:
            why = f.get("why") or "n/a"
            lines.append(f"| {s['model']} | {f['test']} | {_fmt(f['seizure_auc'], '.3f').replace('n/a', why)} | "
                         f"{_fmt(f['early_auc'], '.3f').replace('n/a', why)} | "
                         f"{_fmt(f['early_auc_output'], '.3f').replace('n/a', why)} | "
                         f"{_fmt(f['roc_auc'], '.3f')} | "
                         f"{f['threshold']:.3f} ({f['policy']}) | "
                         f"{_out(f['transfer'].get('chosen'))} | {_out(f['transfer'].get('other'))} | "
                         f"{_out(f['transfer'].get('best_on_test'))} | {f['train_seconds']:.0f} | "
                         f"{f['threshold_seconds']:.0f} |")
    lines += ["", transfer_verdict(summaries)]
    unscored = [f"{s['model']} {s['seconds']['pooled']['seconds_unscored']}" for s in summaries if s["seconds"]]
    if unscored:
        lines.append("Unscored seconds, all folds (before each recording's first full window): "
                     + ", ".join(unscored) + ".")
    lines.append("")
    lines.append(fold_line(folds_))
    return "\n".join(lines)


def parse_model_arg(arg: str, default_dataset: str | Path) -> tuple[str, str]:
    """``MODEL.yaml`` or ``MODEL.yaml@DATASET_DIR`` -> (config path, dataset path)."""
    cfg, _, data = str(arg).partition("@")
    return cfg, data or str(default_dataset)


def default_baseline(model_configs: list[str]) -> str | None:
    """The strongest baseline config found beside the given model YAMLs (see BASELINE_CONFIGS)."""
    for cfg in model_configs:
        folder = Path(cfg.partition("@")[0]).parent
        for name in BASELINE_CONFIGS:
            if (folder / name).is_file():
                return str(folder / name)
    return None


@dataclasses.dataclass(frozen=True)
class FoldTask:
    """One fold x model of ``compare``: what a worker needs to open, train and score it."""

    dataset: str
    config: str
    fold: Fold
    out: str
    decision: DecisionConfig
    method: str | None
    rules: EventRules
    early_s: float

    def __str__(self) -> str:
        return f"{Path(self.config).stem} (test {self.fold.name})"


def run_fold(task: FoldTask) -> dict[str, Any]:
    """``_fold`` of one task, in whichever process runs it."""
    spec = load_model_config(task.config)
    return _fold(open_dataset(task.dataset), spec, task.fold, Path(task.out), task.decision, task.method,
                 task.rules, task.early_s, False, task.dataset)


def compare(dataset: str | Path, model_configs: list[str], out_dir: str | Path, progress: bool = False,
            decision: DecisionConfig | None = None, threshold_method: str | None = "events",
            early_s: float = EARLY_S, rules: EventRules = SZCORE, baseline: str | None = "auto",
            scheduler: str | None = None, k: int | None = None, group_by: str | None = None,
            seed: int = 0, workers: int | None = None) -> dict[str, Any]:
    """Leave-one-recording-out (or, with ``k``, grouped stratified k-fold: ``kfolds`` by ``group_by``,
    default the dataset's split unit) over ``dataset`` for each model config (``X.yaml`` or ``X.yaml@DIR``),
    plus the strongest ``baseline`` ("auto": the first of BASELINE_CONFIGS beside them; None: none).
    ``threshold_method``: a ``threshold.TRANSFER`` criterion on out-of-fold traces, or None for each
    fold model's validation Youden threshold (no extra trainings). Each fold x model is one task
    (``parallel.run_tasks``: ``scheduler``, else an in-process cluster of ``workers``; 1: serially here)."""
    if open_dataset(dataset).task == "prediction":  # per-horizon clip AUC against chance (research/forecast.py)
        from seizurewatch.research.forecast_compare import compare_segments, prediction_units

        prediction_units(dataset)
        configs = list(model_configs)
        base = default_baseline(configs) if baseline == "auto" else baseline
        return compare_segments(dataset, configs + ([base] if base and base not in configs else []), out_dir)
    decision = decision or DecisionConfig()
    if threshold_method is not None and threshold_method not in TRANSFER:
        raise DataError(f"threshold method {threshold_method!r}: expected one of {', '.join(TRANSFER)} or none")
    configs = list(model_configs)
    base = default_baseline(configs) if baseline == "auto" else baseline
    names = {Path(parse_model_arg(c, dataset)[0]).resolve() for c in configs}
    if base and Path(parse_model_arg(base, dataset)[0]).resolve() not in names:
        configs.append(base)
    ds = open_dataset(dataset)
    out = Path(out_dir)
    group_by = group_by or str(ds.manifest.get("split_by") or "recording")

    units = kind_of(ds) != "continuous"
    if units and k is None:
        raise DataError(f"{dataset}: holds {len(recordings_of(ds))} {kind_of(ds)}; leaving one out would test a single "
                        f"{kind_of(ds)[:-1]} per fold (no AUC per fold, one training per {kind_of(ds)[:-1]}); use "
                        "--folds K (grouped stratified k-fold)")
    fs = folds(ds) if k is None else kfolds(ds, k, group_by, seed)
    summaries, sections = [], []
    plans: list[tuple[str, str, Any]] = []
    tasks: list[FoldTask] = []
    for arg in configs:
        cfg_path, data = parse_model_arg(arg, dataset)
        mds = ds if Path(data).resolve() == Path(dataset).resolve() else open_dataset(data)
        if {Path(r).name for r in recordings_of(mds)} != {Path(r).name for r in recordings_of(ds)}:
            raise DataError(f"{data}: its recordings differ from those of {dataset}; folds must hold out the same ones")
        spec = load_model_config(cfg_path)
        plans.append((cfg_path, str(data), spec))
        if kind_of(mds) != kind_of(ds):
            raise DataError(f"{data}: holds {kind_of(mds)}, {dataset} holds {kind_of(ds)}; compare them on one kind")
        tasks += [FoldTask(str(data), cfg_path, f, str(out), decision, threshold_method, rules, early_s)
                  for f in fs]  # the same folds for every model (recordings matched by file name)
    results = run_tasks(run_fold, tasks, scheduler=scheduler, progress=progress, what="fold", workers=workers)
    if units:
        return unit_report(ds, plans, tasks, results, fs, out, early_s, group_by if k else None)
    for cfg_path, data, spec in plans:
        runs = [m for t, m in zip(tasks, results) if t.config == cfg_path and t.dataset == data]
        for m in runs:
            log.info("fold done", extra={"model": spec.name, "test": Path(m["fold_test"]).stem,
                                         "seizure_auc": (m.get("seconds") or {}).get("pooled", {}).get("seizure_auc")})
        s = _summary(spec.name, runs, early_s)
        s["config"], s["dataset"] = cfg_path, str(data)
        s["per_fold"] = [{
            "test": r["fold_test"],
            "seizure_auc": (r.get("seconds") or {}).get("pooled", {}).get("seizure_auc"),
            "early_auc": (r.get("seconds") or {}).get("pooled", {}).get("early_auc"),
            "early_auc_output": (r.get("seconds") or {}).get("pooled", {}).get("early_auc_output"),
            "why": auc_why(r), "roc_auc": r["windows"].get("roc_auc"), "threshold": r["threshold"]["value"],
            "policy": (r["threshold"]["policy"] if r["threshold"]["policy"] != "default"
                       else "default 0.5: the validation recording lacks a class"),
            "transfer": r.get("threshold_transfer", {}),
            "events": {"detected": r["events"]["alarmed"], "seizures": r["events"]["seizures"],
                       "false_alarms": r["events"]["unrelated_alarms"]} if "events" in r else None,
            "latency_s": r["events"]["latency_s"]["values"] if "events" in r else [],
            "train_seconds": r["train_seconds"], "threshold_seconds": r["threshold_seconds"]} for r in runs]
        s["transfer"] = [f["transfer"] for f in s["per_fold"]]
        summaries.append(s)
        sections.append(Section(f"{spec.name} (leave-one-recording-out)", tables=[(
            ["held-out recording", "seizure AUC (s)", "early AUC (s)", "window ROC AUC", "detected", "false alarms",
             "latency (s)", "threshold (policy)", "other criterion -> test", "best on test -> test", "training s",
             "threshold s"],
            [[f["test"], f["seizure_auc"], f["early_auc"], f["roc_auc"],
              f"{f['events']['detected']}/{f['events']['seizures']}" if f["events"] else "-",
              f["events"]["false_alarms"] if f["events"] else "-", ", ".join(str(v) for v in f["latency_s"]) or "-",
              f"{f['threshold']:.3f} ({f['policy']})", _out(f["transfer"].get("other")),
              _out(f["transfer"].get("best_on_test")), f["train_seconds"], f["threshold_seconds"]]
             for f in s["per_fold"]])],
            images=[p for r in runs for p in sorted(
                (out / spec.name / f"eval-{Path(r['fold_test']).stem}").glob("*-timeline.png"))]))
    md = markdown(summaries, fs, early_s)
    summary_rows = [[s["model"], _aucs(s["seconds"], "seizure_auc"), _aucs(s["seconds"], "early_auc"),
                     _aucs(s["seconds"], "early_auc_output"), s["roc_auc_mean"], f"{s['detected']}/{s['seizures']}",
                     fa_evidence(s["false_alarms"], s["interictal_hours"]),
                     s["latency_s_median"], sum(s["train_seconds"])] for s in summaries]
    head = Section("Comparison", paragraphs=[f"Dataset {ds.root}; " + md.splitlines()[-1], transfer_verdict(summaries)],
                   tables=[(["model", "seizure AUC pooled (mean, min)", f"early AUC {early_s:g} s pooled (mean, min)",
                             f"early output's AUC {early_s:g} s pooled (mean, min)",
                             "window ROC AUC (mean)", "seizures alarmed", "false alarms (95 % upper bound)",
                             "latency median (s)",
                             "training s (all folds)"], summary_rows)])
    write_report(out / "report.html", "Leave-one-recording-out comparison", [head] + sections)
    for s in summaries:
        s.pop("transfer", None)
    result = {"dataset": str(ds.root), "folds": [dataclasses.asdict(f) for f in fs],
              "threshold_method": threshold_method, "early_s": early_s, "models": summaries, "markdown": md}
    (out / "compare.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    (out / "compare.md").write_text(md + "\n", encoding="utf-8")
    return result
