"""Research commands: train, evaluate, threshold, export, predict, compare
(inspect and dataset live in data_cmds)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from seizurewatch.cli.argtypes import out_dir, out_file
from seizurewatch.cli.options import DECISION, SCHEDULER, decision_config
from seizurewatch.errors import ConfigError


def _command_line() -> str | None:
    return "seizurewatch " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None


def _early_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--early-s", type=float, default=15.0, metavar="S",
                   help="time-resolved early AUC: the first S seconds after each onset (default 15, the "
                        "2014 challenge's span)")


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def register(sub: argparse._SubParsersAction) -> None:
    for add in (_train, _evaluate, _threshold, _export, _predict, _compare):
        add(sub)


def _train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", parents=[SCHEDULER],
                       help="train a model (from a recipe YAML, or a built dataset + a model YAML)",
                       description="Either RECIPE (dataset build -> train -> threshold -> model file in one go; "
                                   "the dataset is built in a temporary folder unless --keep-dataset), or "
                                   "--dataset DIR --model config/models/X.yaml (train split; early stopping on "
                                   "the val split; first threshold by Youden's J on val). Deterministic for a "
                                   "given seed; a checkpoint is written every epoch (OUTPUT.ckpt) and --resume "
                                   "continues from it.")
    p.add_argument("recipe", nargs="?", help="training recipe YAML (see config/train-dog1.yaml)")
    p.add_argument("--dataset", help="dataset folder written by 'seizurewatch dataset build'")
    p.add_argument("--model", help="model YAML (config/models/*.yaml): arch, arch_kwargs, training settings")
    p.add_argument("--output", "-o", type=out_file, help="model file to write (.pt TorchScript or .pt2 torch.export); "
                                          "with --per-subject it must contain {subject}")
    p.add_argument("--per-subject", action="store_true", help="one model per subject of the dataset")
    p.add_argument("--keep-dataset", type=out_dir, metavar="DIR",
                   help="with a RECIPE: build its dataset in DIR and keep it (for evaluate, threshold --policy oof, "
                        "train --dataset); default a temporary folder")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint OUTPUT.ckpt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)  # --scheduler: a recipe's dataset build and out-of-fold threshold


def _evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", parents=[DECISION, SCHEDULER],
                       help="held-out ROC/PR, confusion matrix, event sensitivity, FA/24 h, latency",
                       description="Window-level ROC AUC, PR AUC, confusion matrix at the model's threshold and "
                                   "accuracy against a logistic-regression baseline; event-level SzCORE scoring "
                                   "(timescoring: any overlap, 30 s / 60 s tolerances) of each recording replayed "
                                   "through the daemon's pipeline and alarm decision. Writes metrics.json, PNGs "
                                   "and report.html.")
    p.add_argument("model", help="model file (.pt / .pt2)")
    p.add_argument("--dataset", help="dataset folder: windows of --split, and its recordings for events")
    p.add_argument("--split", default="test", help="dataset split to evaluate (default test)")
    p.add_argument("--recordings", nargs="+", default=[], metavar="EDF", help="held-out recordings (EDF/EDF+)")
    p.add_argument("--baseline", help="baseline model file; 'auto' (default with --dataset) trains the band-power "
                                      "logistic regression on the dataset's train split; 'none' skips it")
    p.add_argument("--threshold", type=float, help="override the model's threshold")
    p.add_argument("--out", default=None, type=out_dir, help="output folder (default: eval-<model stem>)")
    _early_arg(p)
    p.set_defaults(func=cmd_evaluate, default_log_level="ERROR")  # alarms are in the outputs


def _threshold(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("threshold", parents=[DECISION, SCHEDULER],
                       help="pick the operating point from the ROC trade-off and store it in the model",
                       description="Policies: youden (max sensitivity+specificity-1), sensitivity (--target 0..1, "
                                   "window level), fa_budget (--target false alarms per 24 h, after the daemon's "
                                   "smoothing/hysteresis on the continuous validation recordings). The value, "
                                   "policy and curve point are written into the model's metadata.")
    p.add_argument("model", help="model file (.pt / .pt2); re-saved in place unless --output")
    p.add_argument("--policy", choices=["youden", "sensitivity", "fa_budget", "oof"], default="youden",
                   help="oof (needs --dataset): leave each train/val recording out in turn, retrain the model's "
                        "training config on the others, replay the left-out one, choose by --method on those "
                        "out-of-fold traces (the threshold that transfers; what compare does per fold)")
    p.add_argument("--method", choices=["events", "seconds", "events_nested", "events_trigger"], default="events",
                   help="with --policy oof: events (every out-of-fold seizure alarmed, fewest false alarms, latency "
                        "within 2 s of the least, then the middle in log-odds), seconds (Youden J on per-second "
                        "probabilities), events_nested (events with that latency slack chosen by leave-one-out "
                        "over the same traces) or events_trigger (events with the early output as a second trigger, "
                        "its gain chosen with the threshold)")
    p.add_argument("--target", type=float, help="sensitivity (0..1) or false alarms per 24 h")
    p.add_argument("--dataset", help="dataset folder (its --split windows and recordings)")
    p.add_argument("--split", default="val", help="dataset split to choose on (default val)")
    p.add_argument("--recordings", nargs="+", default=[], metavar="EDF", help="validation recordings")
    p.add_argument("--output", "-o", type=out_file, help="write the model here instead of in place")
    _early_arg(p)
    p.set_defaults(func=cmd_threshold, default_log_level="ERROR")  # alarms are in the outputs


def _export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write TorchScript (.pt) or torch.export (.pt2) with metadata and SHA-256",
                       description="Re-export a model file in either format; the exported file is reloaded and "
                                   "must give the same outputs as the trained module (max abs diff <= 1e-5).")
    p.add_argument("model", help="model file (.pt / .pt2) written by train")
    p.add_argument("--output", "-o", required=True, type=out_file, help="file to write: .pt or .pt2")
    p.set_defaults(func=cmd_export)


def _predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", parents=[DECISION, SCHEDULER],
                       help="per-window probabilities over a recording (CSV + timeline PNG + "
                                       "SzCORE events.tsv)",
                       description="Replays the recording through the daemon's own pipeline (preprocessing, ring "
                                   "buffer, model, alarm decision) and writes STEM-probabilities.csv, "
                                   "STEM-timeline.png with annotated seizures and alarms, and the alarms as "
                                   "SzCORE's hypothesis file (BIDS STEM_events.tsv: one sz row per alarm, or "
                                   "one bckg row), for SzCORE/timescoring scoring.")
    p.add_argument("edf", nargs="+", help="EDF/EDF+ recording(s), each replayed as one task; or Kaggle .mat clips "
                                          "or folders of them, scored one probability per clip (never replayed)")
    p.add_argument("--model", "-m", help="model file (default: the shipped dog1 model)")
    p.add_argument("--out", default=None, type=out_dir, help="output folder (default: predict-<recording stem>)")
    p.add_argument("--threshold", type=float, help="override the model's threshold")
    p.set_defaults(func=cmd_predict, default_log_level="ERROR")  # alarms are in the outputs


def _compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", parents=[DECISION, SCHEDULER],
                       help="leave-one-recording-out or grouped k-fold comparison of model YAMLs",
                       description="For each recording of the dataset: train every model on the others (the "
                                   "next recording validates: early stopping), choose the threshold on out-of-fold "
                                   "replays of the non-test recordings (each left out in turn, the config trained "
                                   "on the others), replay the held-out one through the daemon and score it per "
                                   "second (seizure / early AUC), per event and per window. The strongest "
                                   "baseline is always included. Writes compare.json, compare.md and report.html.")
    p.add_argument("--dataset", required=True, help="dataset folder (splits are ignored: folds by recording)")
    p.add_argument("--models", nargs="+", required=True, metavar="YAML[@DATASET]",
                   help="model YAMLs; YAML@DIR trains that model on its own dataset of the same recordings "
                        "(e.g. 1-s windows)")
    p.add_argument("--baseline", default="auto", metavar="YAML[@DATASET]",
                   help="baseline always compared (default auto: hills-forest.yaml, else bandpower-lr.yaml, "
                        "beside the model YAMLs; 'none' for none)")
    p.add_argument("--threshold-method", choices=["events", "seconds", "events_nested", "events_trigger", "none"],
                   default="events",
                   help="out-of-fold threshold criterion: events (every out-of-fold seizure alarmed, fewest false "
                        "alarms, latency within 2 s of the least, then the middle in log-odds; default), "
                        "seconds (Youden J on per-second probabilities), events_nested (events with that latency "
                        "slack chosen by leave-one-out over the out-of-fold traces; events is its other "
                        "criterion), events_trigger (events with the early output as a second trigger, its gain "
                        "chosen with the threshold), none "
                        "(each fold model's validation Youden threshold: no extra trainings)")
    p.add_argument("--folds", type=int, metavar="K",
                   help="grouped stratified K-fold (scikit-learn StratifiedGroupKFold) instead of leave one recording "
                        "out: no group split between folds, each fold's share of seizure units about the same; part "
                        "i tests, part i+1 validates, the rest train")
    p.add_argument("--group-by", choices=["recording", "subject", "seizure"],
                   help="with --folds: what stays together (default: the dataset's split unit; seizure = a "
                        "seizure's clips or an interictal block, as dataset build --split-by seizure kept them)")
    p.add_argument("--seed", type=int, default=0, help="with --folds: the shuffle of the groups (default 0)")
    p.add_argument("--out", default="compare", type=out_dir, help="output folder (default compare)")
    p.add_argument("--no-progress", action="store_true")
    _early_arg(p)
    p.set_defaults(func=cmd_compare, default_log_level="ERROR")  # alarms are in the outputs


def _hashes(meta: dict, output: str | None) -> dict[str, str]:
    """The two hashes of a written model, by their one name each: ``file_sha256`` (what ``model.sha256`` pins)
    and ``weights_sha256`` (in its metadata and every alarm payload)."""
    from pathlib import Path

    from seizurewatch.modelfile import file_sha256

    path = Path(meta.get("path") or output or "")
    found = {"file_sha256": file_sha256(path.read_bytes())} if path.is_file() else {}
    return {**found, "weights_sha256": meta["weights_sha256"]}


def cmd_train(args: argparse.Namespace) -> int:
    command = _command_line()
    if args.recipe:
        if args.dataset or args.model:
            raise ConfigError("train: give a RECIPE or --dataset with --model, not both")
        from seizurewatch.research.recipe import run_recipe

        meta = run_recipe(args.recipe, output=args.output, progress=not args.no_progress, command=command,
                          keep_dataset=args.keep_dataset, scheduler=args.scheduler)
        _print({"model": meta["name"], "output": args.output or "(recipe output)", **_hashes(meta, args.output),
                "threshold": meta["threshold"], "validation": meta["metrics"]["validation"],
                "train_seconds": meta["training"]["seconds"]})
        return 0
    if not (args.dataset and args.model and args.output):
        raise ConfigError("train: give a RECIPE, or --dataset DIR --model MODEL.yaml --output FILE")
    if args.keep_dataset:
        raise ConfigError("train: --keep-dataset goes with a RECIPE (it keeps the dataset the recipe builds)")
    from seizurewatch.research.training_run import train_from_dataset, train_per_subject

    if args.resume and not args.per_subject and not Path(f"{args.output}.ckpt").is_file():
        raise ConfigError(f"--resume: no checkpoint {args.output}.ckpt to continue from (it is written every "
                          "epoch of a run); start without --resume")
    kw = {"resume": args.resume, "progress": not args.no_progress, "command": command}
    if args.per_subject:
        metas = train_per_subject(args.dataset, args.model, args.output, **kw)
        _print({s: {"output": m["path"], "threshold": m["threshold"]["value"], "validation": m["metrics"]["validation"]}
                for s, m in metas.items()})
        return 0
    meta = train_from_dataset(args.dataset, args.model, args.output, **kw)
    _print({"model": meta["name"], "output": args.output, **_hashes(meta, args.output),
            "threshold": meta["threshold"], "validation": meta["metrics"]["validation"],
            "best_epoch": meta["training"]["best_epoch"], "train_seconds": meta["training"]["seconds"]})
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from seizurewatch.research.evaluate import EvaluateOptions, evaluate
    from seizurewatch.research.parallel import Compute

    out = Path(args.out or f"eval-{Path(args.model).stem}")
    recordings, windows, baseline, units = _evaluation_inputs(args, out)
    if args.early_s <= 0:
        raise ConfigError(f"--early-s {args.early_s:g}: a positive number of seconds")
    options = EvaluateOptions(baseline=baseline, decision=decision_config(args, args.threshold), early_s=args.early_s,
                              compute=Compute(scheduler=args.scheduler))
    m = evaluate(args.model, recordings, out, options, windows=windows, units=units)
    if "horizons" in m:  # a prediction model: the per-horizon forecast table (research/forecast_eval.py)
        print(m["markdown"])
        return 0
    _print(_evaluation_summary(m, out))
    return 0


def _evaluation_inputs(args: argparse.Namespace, out: Path) -> tuple[list[str], Any, str | None, Any]:
    """What ``evaluate`` scores: (recordings to replay, dataset windows, baseline model, clip/segment units);
    the band-power baseline is trained here when ``--baseline auto`` (the default with --dataset)."""
    recordings, windows, baseline, units = list(args.recordings), None, args.baseline, None
    if args.dataset:
        from seizurewatch.research.dataset import open_dataset
        from seizurewatch.research.unitscore import Units, kind_of

        ds = open_dataset(args.dataset)
        rows = ds.rows(args.split)
        if not len(rows):
            raise ConfigError(f"{args.dataset}: split {args.split!r} has no windows")
        windows = (ds.x[rows], ds.y[rows])
        if kind_of(ds) != "continuous":  # clips and segments: one score each, never replayed
            if recordings:
                raise ConfigError(f"{args.dataset}: holds {kind_of(ds)}, scored per unit; --recordings (replayed "
                                  "continuous recordings) goes with a dataset of recordings")
            units = Units.of_rows(ds, rows)
        else:
            recordings = recordings or [r for r in ds.recordings(args.split) if Path(r).is_file()]
        if baseline in (None, "auto"):
            from seizurewatch.research.train import TrainConfig
            from seizurewatch.research.training_run import ModelSpec, train_from_dataset

            spec = ModelSpec(name="bandpower-lr", description="band-power logistic regression baseline",
                             train=TrainConfig(arch="bandpower_lr", epochs=60, lr=0.01, weight_decay=1e-3,
                                               patience=10))
            baseline = str(out / "baseline-lr.pt")
            train_from_dataset(ds, spec, baseline, progress=False)
    elif baseline == "auto":
        raise ConfigError("evaluate: --baseline auto needs --dataset (it trains on the train split)")
    from seizurewatch.research.predict import is_clip_input

    clips = [r for r in args.recordings if is_clip_input(r)]
    if clips:
        raise ConfigError(f"evaluate --recordings {clips[0]}: a clip is scored per clip, not replayed; build a dataset "
                          "of the clips (dataset build --recordings FOLDER) and give --dataset, or predict the clips")
    if not recordings and windows is None:
        raise ConfigError("evaluate: give --dataset DIR and/or --recordings EDF...")
    return recordings, windows, None if baseline == "none" else baseline, units


def _evaluation_summary(m: dict[str, Any], out: Path) -> dict[str, Any]:
    """The JSON ``evaluate`` prints: the headline figures of metrics.json and where the rest is."""
    from seizurewatch.research.evaluate import fa_evidence

    summary = {"model": m["model"], "windows": {k: m["windows"].get(k) for k in ("roc_auc", "pr_auc", "accuracy")},
               "report": str(out / "report.html"), "metrics": str(out / "metrics.json")}
    if "baseline" in m:
        summary["baseline"] = {k: m["baseline"]["windows"].get(k) for k in ("roc_auc", "pr_auc", "accuracy")}
    if "events" in m:
        ev = m["events"]
        summary["events"] = {k: ev[k] for k in ("seizures", "detected", "sensitivity", "precision", "false_alarms",
                                                "fa_per_24h", "hours", "alarmed", "unrelated_alarms",
                                                "interictal_hours", "unrelated_per_24h_upper95")} | {
            "latency_s": ev["latency_s"]["mean"], "false_alarms_to_the_nurse": fa_evidence(ev["unrelated_alarms"],
                                                                                          ev["interictal_hours"])}
    if "units" in m:
        summary[m["units"]["kind"]] = {k: v for k, v in m["units"].items() if k != "kind"}
    if "seconds" in m:
        sec = m["seconds"]
        summary["seconds"] = {"early_s": sec["early_s"], **{k: sec["pooled"][k] for k in (
            "seizure_auc", "early_auc", "early_auc_output", "challenge_score", "seconds_scored",
            "seconds_unscored")}}
    return summary


def cmd_threshold(args: argparse.Namespace) -> int:
    from seizurewatch.research.parallel import Compute
    from seizurewatch.research.threshold_choice import ThresholdOptions, Validation, choose_threshold

    on = Validation(recordings=args.recordings or (), dataset=args.dataset, split=args.split)
    options = ThresholdOptions(decision=decision_config(args), method=args.method, early_s=args.early_s,
                               compute=Compute(scheduler=args.scheduler))
    th = choose_threshold(args.model, args.policy, args.target, on, args.output, options)
    _print({"model": args.output or args.model, "threshold": th})
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import hashlib
    from pathlib import Path

    from seizurewatch.research.export import export

    meta = export(args.model, args.output)
    pin = hashlib.sha256(Path(args.output).read_bytes()).hexdigest()  # what model.sha256 pins
    _print({"output": args.output, "name": meta["name"], "file_sha256": pin, "weights_sha256": meta["weights_sha256"],
            "max_abs_diff": meta["max_abs_diff"], "threshold": meta["threshold"]["value"]})
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import functools

    from seizurewatch.research.annotations import events_path
    from seizurewatch.research.parallel import SchedulerLost, run_tasks
    from seizurewatch.research.predict import is_clip_input, predict_clips, predict_recording

    clips = [is_clip_input(e) for e in args.edf]
    if any(clips):
        if not all(clips):
            raise ConfigError("predict: give clips (.mat files or folders) or recordings, not both in one call")
        if args.threshold is not None:
            raise ConfigError("predict: --threshold goes with replayed recordings; a clip's score is in the CSV")
        _print(predict_clips(args.edf, args.model, args.out or "predict-clips"))
        return 0
    stems = [Path(e).stem for e in args.edf]
    out = args.out or f"predict-{stems[0] if len(stems) == 1 else 'recordings'}"
    fn = functools.partial(predict_recording, model=args.model, out_dir=out,
                           decision=decision_config(args, args.threshold))
    try:
        results = run_tasks(fn, list(args.edf), scheduler=args.scheduler)
    except SchedulerLost as exc:  # what is missing is what has no events file (written last per recording)
        missing = [e for e in args.edf if not (Path(out) / events_path(e).name).is_file()]
        raise SchedulerLost(f"{exc}; in {out}: {len(args.edf) - len(missing)} of {len(args.edf)} recording(s) "
                            f"done, missing: {' '.join(missing) or 'none'} (run predict again on those)") from None
    _print(results[0] if len(results) == 1 else results)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from seizurewatch.research.crossval import CompareOptions, compare
    from seizurewatch.research.parallel import Compute

    if args.early_s <= 0:
        raise ConfigError(f"--early-s {args.early_s:g}: a positive number of seconds")
    method = None if args.threshold_method == "none" else args.threshold_method
    options = CompareOptions(decision=decision_config(args), threshold_method=method, early_s=args.early_s,
                             baseline=None if args.baseline == "none" else args.baseline, k=args.folds,
                             group_by=args.group_by, seed=args.seed,
                             compute=Compute(scheduler=args.scheduler, progress=not args.no_progress))
    res = compare(args.dataset, args.models, args.out, options)
    print(res["markdown"])
    return 0
