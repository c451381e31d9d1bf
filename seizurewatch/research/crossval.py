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
from seizurewatch.research.compare_report import head_section, markdown, model_summary
from seizurewatch.research.dataset import DatasetDir, open_dataset
from seizurewatch.research.evaluate import EvaluateOptions, evaluate, second_scores
from seizurewatch.research.outoffold import out_of_fold, recording_paths, with_roles
from seizurewatch.research.parallel import Compute
from seizurewatch.research.predict import Trace, stream_probabilities
from seizurewatch.research.report import write_report
from seizurewatch.research.threshold import TRANSFER, by_events, outcome, transfer
from seizurewatch.research.timescore import EARLY_S
from seizurewatch.research.training_run import ModelSpec, load_model_config, train_from_dataset
from seizurewatch.research.unitfolds import unit_report
from seizurewatch.research.unitscore import Units, kind_of
from seizurewatch.scoring import SZCORE, EventRules

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


def _fold(ds: DatasetDir, spec: ModelSpec, task: FoldTask, progress: bool = False) -> dict[str, Any]:
    """Train, choose the threshold out-of-fold, replay the test recordings once, evaluate. A model
    fitted once (a forest) has nothing to stop early: on continuous recordings the validation recording
    trains it too (the threshold comes from out-of-fold replays); on clips and segments the validation
    part chooses the threshold."""
    fold_, out, decision, method, rules, early_s = (task.fold, Path(task.out), task.decision, task.method,
                                                    task.rules, task.early_s)
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
                                  command=f"seizurewatch compare --dataset {task.dataset} (fold: test {stem})")
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
        m["threshold_transfer"] = _transfer(traces, task, chosen, other, hop)
        m["_second_scores"] = second_scores(traces, early_s)
    return m


def _transfer(traces: list[Trace], task: FoldTask, chosen: dict[str, Any], other: dict[str, Any] | None,
              hop: float) -> dict[str, Any]:
    """How the thresholds chosen out of fold (``chosen``, and by the other criterion) fare on the test
    recordings, beside the one that would have been best there (for reference, never used)."""
    decision, rules = task.decision, task.rules
    tt: dict[str, Any] = {"method": task.method or "validation youden", "chosen": outcome(
        traces, chosen["value"], decision.for_model(chosen, hop), rules) | {
            "policy": chosen.get("policy", "youden"),  # events_nested: the slack its leave-one-out chose
            "latency_slack_s": (chosen.get("latency_slack") or {}).get("chosen_s"),
            "early_gain": (chosen.get("decision") or {}).get("early_gain")}}  # events_trigger: the gain chosen
    if other is not None:
        tt["other"] = outcome(traces, other["value"], decision.for_model(other, hop), rules) | {
            "policy": other["policy"]}
    best = by_events(traces, decision, rules, policy="best_on_test")
    tt["best_on_test"] = outcome(traces, best["value"], decision.for_model(best, hop), rules) | {
        "tied_range": best["point"]["tied_range"]}
    return tt


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
    return _fold(open_dataset(task.dataset), spec, task)


@dataclasses.dataclass(frozen=True)
class CompareOptions:
    """How ``compare`` runs: ``decision`` the alarm rules (default: each model's at its hop);
    ``threshold_method`` a ``threshold.TRANSFER`` criterion on out-of-fold traces, or None for each fold
    model's validation Youden threshold (no extra trainings); ``early_s`` the early span; ``rules`` the
    event-scoring rule; ``baseline`` the strongest baseline config ("auto": the first of BASELINE_CONFIGS
    beside the models; None: none); ``k``: grouped stratified k-fold (``kfolds`` by ``group_by``, default
    the dataset's split unit; ``seed``) instead of leave-one-recording-out; ``compute``: where the fold x
    model tasks run."""

    decision: DecisionConfig | None = None
    threshold_method: str | None = "events"
    early_s: float = EARLY_S
    rules: EventRules = SZCORE
    baseline: str | None = "auto"
    k: int | None = None
    group_by: str | None = None
    seed: int = 0
    compute: Compute = Compute()


def compare(dataset: str | Path, model_configs: list[str], out_dir: str | Path,
            options: CompareOptions = CompareOptions()) -> dict[str, Any]:
    """Leave-one-recording-out (or grouped stratified k-fold) over ``dataset`` for each model config
    (``X.yaml`` or ``X.yaml@DIR``), plus the strongest baseline, as ``options`` say. Each fold x model is one
    task (``run_fold`` on ``options.compute``)."""
    o = options
    configs = list(model_configs)
    base = default_baseline(configs) if o.baseline == "auto" else o.baseline
    if open_dataset(dataset).task == "prediction":  # per-horizon clip AUC against chance (research/forecast.py)
        from seizurewatch.research.forecast_compare import compare_segments, prediction_units

        prediction_units(dataset)
        return compare_segments(dataset, configs + ([base] if base and base not in configs else []), out_dir)
    if o.threshold_method is not None and o.threshold_method not in TRANSFER:
        raise DataError(f"threshold method {o.threshold_method!r}: expected one of {', '.join(TRANSFER)} or none")
    names = {Path(parse_model_arg(c, dataset)[0]).resolve() for c in configs}
    if base and Path(parse_model_arg(base, dataset)[0]).resolve() not in names:
        configs.append(base)
    ds = open_dataset(dataset)
    out = Path(out_dir)
    group_by = o.group_by or str(ds.manifest.get("split_by") or "recording")
    units = kind_of(ds) != "continuous"
    if units and o.k is None:
        raise DataError(f"{dataset}: holds {len(recordings_of(ds))} {kind_of(ds)}; leaving one out would test a single "
                        f"{kind_of(ds)[:-1]} per fold (no AUC per fold, one training per {kind_of(ds)[:-1]}); use "
                        "--folds K (grouped stratified k-fold)")
    fs = folds(ds) if o.k is None else kfolds(ds, o.k, group_by, o.seed)
    plans, tasks = _plan(ds, str(dataset), configs, fs, out, o)
    results = o.compute.run(run_fold, tasks, what="fold")
    if units:
        return unit_report(ds, plans, tasks, results, fs, out, o.early_s, group_by if o.k else None)
    summaries, sections = [], []
    for cfg_path, data, spec in plans:
        runs = [m for t, m in zip(tasks, results) if t.config == cfg_path and t.dataset == data]
        s, section = model_summary(spec.name, cfg_path, data, runs, o.early_s, out)
        summaries.append(s)
        sections.append(section)
    md = markdown(summaries, fs, o.early_s)
    write_report(out / "report.html", "Leave-one-recording-out comparison",
                 [head_section(str(ds.root), summaries, md, o.early_s)] + sections)
    for s in summaries:
        s.pop("transfer", None)
    result = {"dataset": str(ds.root), "folds": [dataclasses.asdict(f) for f in fs],
              "threshold_method": o.threshold_method, "early_s": o.early_s, "models": summaries, "markdown": md}
    (out / "compare.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    (out / "compare.md").write_text(md + "\n", encoding="utf-8")
    return result


def _plan(ds: DatasetDir, dataset: str, configs: list[str], fs: list[Fold], out: Path,
          o: CompareOptions) -> tuple[list[tuple[str, str, Any]], list[FoldTask]]:
    """Each model config with its dataset (checked against ``ds``: the same recordings, the same kind) and
    its fold tasks: the same folds for every model (recordings matched by file name)."""
    plans: list[tuple[str, str, Any]] = []
    tasks: list[FoldTask] = []
    decision = o.decision or DecisionConfig()
    for arg in configs:
        cfg_path, data = parse_model_arg(arg, dataset)
        mds = ds if Path(data).resolve() == Path(dataset).resolve() else open_dataset(data)
        if {Path(r).name for r in recordings_of(mds)} != {Path(r).name for r in recordings_of(ds)}:
            raise DataError(f"{data}: its recordings differ from those of {dataset}; folds must hold out the same ones")
        spec = load_model_config(cfg_path)
        plans.append((cfg_path, str(data), spec))
        if kind_of(mds) != kind_of(ds):
            raise DataError(f"{data}: holds {kind_of(mds)}, {dataset} holds {kind_of(ds)}; compare them on one kind")
        tasks += [FoldTask(str(data), cfg_path, f, str(out), decision, o.threshold_method, o.rules, o.early_s)
                  for f in fs]
    return plans, tasks
