"""The research loop's speed target: ``dataset build`` + ``train`` of the seed ConvNet on
Dog_1 (4 recordings, 10 s windows, 1 s stride) in under 5 minutes on 2 cores.

Runs the same functions as ``seizurewatch dataset build --spec config/dataset-dog1.yaml``
and ``seizurewatch train --dataset ... --model config/models/seed-convnet.yaml``; the
dataset and the model go to the bench work folder, never the repository.

Then the training time of each fold of ``compare``'s leave-one-recording-out for each model
config: the networks (``MODELS``) on the 10-s dataset, and the shipped default
(``hills-early.yaml``) and the peer baseline (``hills-forest.yaml``, ``crossval.BASELINE_CONFIGS``)
on their 1-s dataset (config/dataset-dog1-1s.yaml): the outer training per fold; the out-of-fold
threshold adds one training per non-test recording. Quick mode: 1 epoch, 5 trees per forest, the
first fold only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, figure, log, workdir

TARGET_S = 300.0
MODELS = ("seed-convnet.yaml", "cnn1d.yaml", "bandpower-lr.yaml")
MODELS_1S = ("hills-early.yaml", "hills-forest.yaml")  # the shipped default, the peer baseline
QUICK_EPOCHS = 1
QUICK_TREES = 5


def fold_times(dataset: Any, names: tuple[str, ...], threads: int, quick: bool, out: Any) -> dict[str, Any]:
    """Seconds of training per leave-one-recording-out fold for each model config (JSON figures)."""
    import dataclasses

    from seizurewatch.research.crossval import folds, with_splits
    from seizurewatch.research.dataset import open_dataset
    from seizurewatch.research.training_run import load_model_config, train_from_dataset

    ds = open_dataset(dataset)
    figures: dict[str, Any] = {}
    for name in names:
        path = ROOT / "config" / "models" / name
        if not path.is_file():
            raise SystemExit(f"{path}: model config not found (bench_research.MODELS / MODELS_1S)")
        spec = load_model_config(path)
        quick_kw: dict[str, Any] = {}
        if quick:
            quick_kw["epochs"] = QUICK_EPOCHS
            if "trees" in spec.train.arch_kwargs:
                quick_kw["arch_kwargs"] = {**spec.train.arch_kwargs, "trees": QUICK_TREES}
        cfg = dataclasses.replace(spec.train, threads=threads, **quick_kw)
        spec = dataclasses.replace(spec, train=cfg)
        per_fold = {}
        for test, val, _ in folds(ds)[:1] if quick else folds(ds):
            log(f"research: {spec.name}, fold test {test}")
            t0 = time.perf_counter()
            train_from_dataset(with_splits(ds, test, val), spec, out / f"fold-{spec.name}.pt", progress=False)
            per_fold[test.rsplit("/", 1)[-1]] = round(time.perf_counter() - t0, 2)
        vals = list(per_fold.values())
        figures[f"dog1.fold_train_s.{spec.name}"] = figure(
            sum(vals) / len(vals), "s", f"mean training seconds per leave-one-recording-out fold ({len(vals)} folds), "
            f"on {Path(dataset).name}, threads {threads}"
            + (f" [quick: {QUICK_EPOCHS} epoch, {QUICK_TREES} trees, first fold]" if quick else ""),
            per_fold_s=per_fold)
    return figures


def run(quick: bool) -> dict[str, Any]:
    import dataclasses

    from seizurewatch.research.dataset import build_dataset, load_spec
    from seizurewatch.research.training_run import load_model_config, train_from_dataset

    threads = min(2, os.cpu_count() or 1)
    out = workdir() / "research"
    spec = load_spec(ROOT / "config" / "dataset-dog1.yaml")
    model = load_model_config(ROOT / "config" / "models" / "seed-convnet.yaml")
    if quick:  # a smoke run: same data, one epoch
        model = dataclasses.replace(model, train=dataclasses.replace(model.train, epochs=QUICK_EPOCHS))
    model = dataclasses.replace(model, train=dataclasses.replace(model.train, threads=threads))
    log(f"research: dataset build dog1 ({len(spec.recordings)} recordings)")
    t0 = time.perf_counter()
    manifest = build_dataset(spec, out / "dog1-dataset")
    t1 = time.perf_counter()
    log(f"research: train {model.train.arch}, up to {model.train.epochs} epochs, {threads} threads")
    meta = train_from_dataset(out / "dog1-dataset", model, out / "dog1-seed.pt", progress=False,
                              checkpoint=out / "dog1-seed.ckpt")
    t2 = time.perf_counter()
    total = t2 - t0
    setup = (f"config/dataset-dog1.yaml ({manifest['n']} windows of 16 ch x 4000 samples) then "
             f"config/models/seed-convnet.yaml ({meta['training']['epochs_run']} epochs run, early stopping), "
             f"torch threads {threads}" + (f" [quick: {QUICK_EPOCHS} epoch]" if quick else ""))
    figures = {
        "dog1.dataset_build_s": figure(t1 - t0, "s", "dataset build of the 4 Dog_1 recordings"),
        "dog1.train_seed_convnet_s": figure(t2 - t1, "s", setup),
        "dog1.build_plus_train_s": figure(total, "s", setup, target=TARGET_S, meets_target=total < TARGET_S),
        "dog1.validation_roc_auc": figure(meta["metrics"]["validation"].get("roc_auc", float("nan")), "",
                                          "window ROC AUC on the dataset's val split (dog1_rec03)"),
    }
    figures |= fold_times(out / "dog1-dataset", MODELS, threads, quick, out)
    log("research: dataset build dog1 1-s windows (config/dataset-dog1-1s.yaml)")
    t0 = time.perf_counter()
    manifest_1s = build_dataset(load_spec(ROOT / "config" / "dataset-dog1-1s.yaml"), out / "dog1-1s-dataset")
    figures["dog1.dataset_build_1s_s"] = figure(time.perf_counter() - t0, "s", "dataset build of the 4 Dog_1 "
                                                f"recordings, 1-s windows ({manifest_1s['n']} windows)")
    figures |= fold_times(out / "dog1-1s-dataset", MODELS_1S, threads, quick, out)
    return {"figures": figures}


if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    print(json.dumps(run(quick), indent=2))
