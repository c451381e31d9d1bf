"""Choose a model's threshold by a policy (``threshold.POLICIES``) and store it in the model file
(``seizurewatch threshold``): on validation recordings or a dataset's split, or out of fold. The criteria
themselves (ROC points, false-alarm budgets, the out-of-fold ``transfer``) are ``research.threshold``'s."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import ConfigError, DataError
from seizurewatch.modelfile import load_model
from seizurewatch.modelmeta import ModelMeta
from seizurewatch.research.evaluate import score_events
from seizurewatch.research.export import example_input, rebuild_eager, save_checked
from seizurewatch.research.labels import LabelRules, joins_of, label_window, seizures_of
from seizurewatch.research.parallel import Compute
from seizurewatch.research.predict import Trace, stream_many
from seizurewatch.research.roc import roc
from seizurewatch.research.threshold import by_policy, candidates, curve_point, event_table, transfer
from seizurewatch.research.train import predict
from seizurewatch.research.unitscore import kind_of
from seizurewatch.schedule import WindowSchedule
from seizurewatch.scoring import SZCORE, EventRules
from seizurewatch.types import Annotation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Validation:
    """What a threshold is chosen on: validation ``recordings`` (replayed), and/or a ``dataset``'s ``split``
    (its windows; its recordings replayed when continuous; the oof policy's train and val recordings)."""

    recordings: tuple[str, ...] | list[str] = ()
    dataset: str | Path | None = None
    split: str = "val"


@dataclass(frozen=True)
class ThresholdOptions:
    """How a threshold is chosen: with ``decision``'s alarm rules (default: the default rule at the model's
    hop), events scored by ``rules``, carried out of fold by ``method`` (``transfer``), early span ``early_s``;
    the replays' tasks on ``compute``."""

    decision: DecisionConfig | None = None
    rules: EventRules = SZCORE
    method: str = "events"
    early_s: float = 15.0
    compute: Compute = Compute()


def streamed_windows(traces: list[Trace], schedule: WindowSchedule) -> tuple[np.ndarray, np.ndarray]:
    """(probability, ictal) of every replayed window the detection labels keep (``label_window``:
    wholly ictal or wholly interictal, not across a seam), from the replays' own probabilities; each
    window is known by its end time on the model's ``schedule``."""
    ps, ys = [], []
    rules = LabelRules(task="detection")
    for tr in traces:
        anns = [Annotation(a, b - a, "seizure") for a, b in tr.seizures] + [Annotation(j, 0.0, "join")
                                                                         for j in tr.joins]
        seizures, joins = seizures_of(anns, tr.duration, tr.recording), joins_of(anns)
        for t, p in zip(tr.t.tolist(), tr.p.tolist()):
            lab = label_window(*schedule.span(t), seizures, joins, rules)
            if lab is not None:
                ps.append(p)
                ys.append(lab[0])
    return np.asarray(ps, dtype=np.float64), np.asarray(ys, dtype=np.int64)


def _on_validation(model: str | Path, loaded: Any, policy: str, target: float | None, on: Validation,
                   options: ThresholdOptions) -> tuple[dict[str, Any], list[dict[str, float]] | None]:
    """The ROC / false-alarm-budget policies, on one validation split or recordings (scored and stored with
    the decision's rule, else the default one, in hops of the model's hop)."""
    recordings, dataset, split = on.recordings, on.dataset, on.split
    rules, compute = options.rules, options.compute
    scheduler, progress = compute.scheduler, compute.progress
    hop = loaded.meta.hop_s
    decision = (options.decision or DecisionConfig()).for_model(None, hop)
    recordings = list(recordings or [])
    if dataset is not None:
        from seizurewatch.research.dataset import open_dataset

        ds = open_dataset(dataset)
        rows = ds.rows(split)
        if not len(rows):
            raise DataError(f"{dataset}: split {split!r} has no windows")
        y = ds.y[rows]
        p = predict(loaded.module, ds.x, rows=rows)[:, 0]
        if kind_of(ds) != "continuous":  # clips and segments are never replayed: their windows only
            if recordings or policy == "fa_budget":
                raise ConfigError(f"{dataset}: holds {kind_of(ds)}; false alarms per 24 h and replayed validation "
                                  "recordings need continuous recordings (use --policy youden or sensitivity)")
        else:
            recordings = recordings or [r for r in ds.recordings(split) if Path(r).is_file()]
        where = [f"{Path(dataset).name}:{split}"]
        yv = y[:, 0]
        traces = stream_many(recordings, model, decision, scheduler=scheduler, progress=progress) if recordings else []
    elif recordings:
        # one replay per recording: its windows, labelled, give the window-level ROC as well
        traces = stream_many(recordings, model, decision, scheduler=scheduler, progress=progress)
        p, yv = streamed_windows(traces, loaded.meta.schedule)
        where = [Path(r).name for r in recordings]
    else:
        raise ConfigError("threshold: give --dataset DIR or validation recordings")
    curve = roc(yv, p) if 0 < yv.sum() < len(yv) else None
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
        th["decision"] = decision.describe(hop)  # the rule in force, in seconds too
    return th, table


def training_spec(meta: ModelMeta) -> Any:
    """The ``ModelSpec`` a model was trained with (its metadata's ``training.config``): what --policy oof retrains."""
    from seizurewatch.research.train import TrainConfig
    from seizurewatch.research.training_run import ModelSpec

    config = meta.training().config
    if config is None:
        raise ConfigError(f"{meta.name}: the model's metadata lacks training.config; --policy oof retrains "
                          "that config")
    try:
        cfg = TrainConfig(**config)
    except TypeError as exc:
        raise ConfigError(f"{meta.name}: training.config does not fit this version ({exc})") from None
    return ModelSpec(name=meta.name, hop_s=meta.hop_s, train=cfg)


def out_of_fold_threshold(meta: ModelMeta, dataset: str | Path, workdir: str | Path = "oof",
                          options: ThresholdOptions = ThresholdOptions()) -> dict[str, Any]:
    """Leave each train/val recording of ``dataset`` out in turn, train the model's own training
    config (its metadata) on the others, replay the left-out one (one task each); choose on those traces."""
    from seizurewatch.research.dataset import open_dataset
    from seizurewatch.research.outoffold import out_of_fold

    spec = training_spec(meta)
    ds = open_dataset(dataset)
    if kind_of(ds) != "continuous":
        raise ConfigError(f"{dataset}: holds {kind_of(ds)}, which are never replayed; --policy oof replays "
                          "continuous recordings (use --policy youden: the middle of the gap on separable data)")
    recs = ds.recordings("train") + ds.recordings("val")
    best = meta.training().best_epoch
    decision, compute = options.decision or DecisionConfig(), options.compute
    traces = out_of_fold(ds, spec, recs, workdir, decision, epochs=best + 1 if best >= 0 else None,
                         scheduler=compute.scheduler, progress=compute.progress)
    return transfer(traces, options.method, decision, options.rules, options.early_s)


def choose_threshold(model: str | Path, policy: str, target: float | None = None, on: Validation = Validation(),
                     output: str | Path | None = None, options: ThresholdOptions = ThresholdOptions()
                     ) -> dict[str, Any]:
    """Choose and store the threshold; returns the new ``threshold`` metadata block. Validation
    recordings are replayed once each, one task per recording (``parallel.run_tasks``: ``scheduler``
    or an in-process cluster)."""
    dataset = on.dataset
    loaded = load_model(model)
    meta = dict(loaded.meta.raw)
    if policy == "oof" and loaded.meta.risk_outputs:  # a prediction model: its risk levels, out of fold
        if dataset is None:
            raise ConfigError("threshold --policy oof needs --dataset DIR (a prediction model's clips are "
                              "cross-validated)")
        from seizurewatch.research.forecast_compare import out_of_fold_levels

        meta["risk"] = out_of_fold_levels(loaded.meta, dataset, Path(output or model).with_suffix(".oof"))
        eager = rebuild_eager(loaded)
        dst = Path(output) if output else Path(model)
        save_checked(eager, meta, dst, example_input(loaded.meta))
        log.info("risk levels chosen out of fold", extra={"model": str(dst)})
        return dict(meta["threshold"])
    if policy == "oof":
        if dataset is None:
            raise ConfigError("threshold --policy oof needs --dataset DIR (its train and val recordings are left "
                              "out in turn)")
        th = out_of_fold_threshold(loaded.meta, dataset, Path(output or model).with_suffix(".oof"), options)
        table = None
    else:
        th, table = _on_validation(model, loaded, policy, target, on, options)
    meta["threshold"] = th
    eager = rebuild_eager(loaded)
    dst = Path(output) if output else Path(model)
    save_checked(eager, meta, dst, example_input(loaded.meta))
    if table:
        from seizurewatch.research import plots

        plots.tradeoff(table, th["value"], dst.with_name(dst.stem + "-threshold.png"))
    log.info("threshold chosen", extra={"policy": policy, "value": th["value"], "model": str(dst)})
    return th
