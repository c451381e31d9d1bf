"""Train a model described by a model YAML (``config/models/*.yaml``) on a built dataset
directory, choose a first threshold on its validation split, and save it with metadata.
Every trained model file gets its metadata here (``fit_dataset``): a recipe (``research/recipe.py``)
builds its dataset and trains through the same function.

A model YAML holds ``name``, ``description``, ``hop_s`` and the training settings
(``arch``, ``arch_kwargs``, ``epochs``, ``lr``, ``batch_size``, ``seed``, ``patience``...).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import seizurewatch
from seizurewatch.errors import ConfigError, DataError
from seizurewatch.modelfile import save_model
from seizurewatch.preprocess import PreprocessSpec
from seizurewatch.research.architectures import Deployable
from seizurewatch.research.dataset import DatasetDir, open_dataset
from seizurewatch.research.roc import fraction_flagged_at_sensitivity, roc
from seizurewatch.research.threshold import youden
from seizurewatch.research.train import TrainConfig, TrainResult, predict, train
from seizurewatch.typedyaml import load_typed_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str = ""
    hop_s: float = 1.0
    train: TrainConfig = field(default_factory=TrainConfig)
    source: str = ""


@dataclass(frozen=True, kw_only=True)
class _ModelConfigFile(TrainConfig):
    """A model config YAML: the training settings, and beside them what names the model."""

    name: str | None = None  # None or empty: the file's stem
    description: str = ""
    hop_s: float = 1.0


def load_model_config(path: str | Path) -> ModelSpec:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: model config not found")
    f, _ = load_typed_file(_ModelConfigFile, p)
    cfg = TrainConfig(**{k.name: getattr(f, k.name) for k in dataclasses.fields(TrainConfig)})
    return ModelSpec(name=f.name or p.stem, description=f.description, hop_s=f.hop_s, train=cfg, source=str(p))


def _device_name(manifest: dict[str, Any]) -> str:
    d = manifest.get("device")
    if isinstance(d, dict):
        return str(d.get("name", "unknown"))
    return Path(str(d)).stem if d else "unknown"


def first_threshold(y: np.ndarray, p: np.ndarray, where: str) -> dict[str, Any]:
    """Youden's J on the validation windows; 0.5 (said so) if they lack a class."""
    if len(y) and 0 < y.sum() < len(y):
        th = youden(roc(y, p))
        th["chosen_on"] = where
        return th
    log.warning("validation split lacks a class; threshold left at 0.5", extra={"where": where})
    return {"value": 0.5, "policy": "default", "target": None, "point": None, "auc": None, "chosen_on": where}


def training_meta(result: TrainResult, command: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "command": command, **extra, "config": result.config, "best_epoch": result.best_epoch,
        "epochs_run": len(result.history), "seconds": round(result.seconds, 2), "seed": result.config["seed"],
        "torch": torch.__version__, "python": sys.version.split()[0], "machine": platform.machine(),
        "seizurewatch": seizurewatch.__version__, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _risk_section(ds: DatasetDir, y: np.ndarray, p: np.ndarray, where: str) -> dict[str, Any] | None:
    """The model file's ``risk`` section: every output of a prediction dataset is a horizon (its manifest's
    ``horizons_s``, in output order) with its level thresholds chosen on the validation windows."""
    from seizurewatch.research.forecast import choose_levels

    horizons = ds.manifest.get("horizons_s") or []
    if len(horizons) != len(ds.outputs):
        log.warning("prediction dataset without one horizon per output; the model gets no risk levels",
                    extra={"dataset": str(ds.root), "outputs": ds.outputs, "horizons_s": horizons})
        return None
    return {name: {"horizon_s": float(h), **choose_levels(y[:, k], p[:, k], where)}
            for k, (name, h) in enumerate(zip(ds.outputs, horizons))}


@dataclass
class Trained:
    """A trained model with the metadata its file will carry and an example input for the export."""

    model: Deployable
    meta: dict[str, Any]
    example: torch.Tensor


def check_trainable(ds: DatasetDir, tr: np.ndarray, spec: ModelSpec, who: str) -> None:
    """What makes a fit meaningless, refused before it starts (one line, the value and the fix): filters
    the windows' rate cannot carry, and too few training windows of a class. (A model whose features
    cannot be made for the dataset's channels is refused by its own constructor: ``hills_forest`` on one
    channel.) A pretrained model (``architectures.NOTHING_TO_FIT``) needs no minimum of windows."""
    try:
        PreprocessSpec.from_json(ds.manifest["preprocess"]).check()
    except ValueError as exc:
        raise ConfigError(f"{ds.root}/manifest.json: {exc}: rebuild the dataset with a lower band edge") from None
    from seizurewatch.research.architectures import NOTHING_TO_FIT

    if spec.train.arch in NOTHING_TO_FIT:  # a pretrained model learns nothing here: no data is too little
        return
    need = spec.train.min_windows_per_class
    pos = ds.y[tr].sum(axis=0)
    for k, name in enumerate(ds.outputs):
        few = min(int(pos[k]), len(tr) - int(pos[k]))
        if few < need:
            raise DataError(f"{who}: {few} training window(s) of one class for output {name!r} "
                            f"({int(pos[k])} positive, {len(tr) - int(pos[k])} negative); at least {need} "
                            "(train.min_windows_per_class) are needed: add recordings, or shorten the stride")


def fit_dataset(dataset: str | Path | DatasetDir, model_config: str | Path | ModelSpec, output: str | Path,
                subject: str | None = None, resume: bool = False, progress: bool = True,
                command: str | None = None, checkpoint: str | Path | None = None) -> Trained:
    """Train on the ``train`` split (early stopping on ``val``) and write the metadata: the one
    writer of every model file's metadata (``train_from_dataset`` saves it as is; a recipe adds
    its name to ``training`` and may choose ``threshold`` and ``metrics.validation`` otherwise).
    ``architecture`` is the model's own ``get_config()``; ``training.config`` the training config."""
    ds = dataset if isinstance(dataset, DatasetDir) else open_dataset(dataset)
    spec = model_config if isinstance(model_config, ModelSpec) else load_model_config(model_config)
    tr, va = ds.rows("train", subject), ds.rows("val", subject)
    who = f"{ds.root}" + (f" (subject {subject})" if subject else "")
    if len(tr) == 0:
        raise DataError(f"{who}: no training windows (split 'train')")
    if not ds.y[tr].any(axis=0).all() or ds.y[tr].all(axis=0).any():
        raise DataError(f"{who}: the training split needs windows of both classes for every output "
                        f"({len(tr)} windows, positives per output {ds.y[tr].sum(axis=0).tolist()})")
    check_trainable(ds, tr, spec, who)
    out = Path(output)
    ckpt = Path(checkpoint) if checkpoint else out.with_name(out.name + ".ckpt")
    try:
        result = train(ds.x, ds.y, ds.x if len(va) else None, ds.y if len(va) else None, spec.train,
                       checkpoint=ckpt, progress=progress, resume=resume, rate=ds.spec.rate,
                       train_rows=tr, val_rows=va if len(va) else None)
    except (KeyError, TypeError, ValueError) as exc:
        why = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ConfigError(f"{spec.source or spec.name}: cannot build {spec.train.arch!r}: {why}") from None
    y_va = ds.y[va]
    threshold, risk, val_metrics = _on_validation(ds, va, result.model)
    train_recs = [Path(r).name for r in ds.recordings("train", subject)]
    val_recs = [Path(r).name for r in ds.recordings("val", subject)]
    dropped = {Path(e["path"]).name: e.get("dropped", {}) for e in ds.manifest.get("recordings", [])
               if Path(e["path"]).name in train_recs + val_recs}
    meta = {
        "name": spec.name + (f"-{subject}" if subject else ""),
        "description": spec.description,
        "task": ds.task,
        "outputs": ds.outputs,
        "device": _device_name(ds.manifest),
        "preprocess": ds.manifest["preprocess"],
        "window_s": ds.window_s,
        "hop_s": spec.hop_s,
        "threshold": threshold,
        **({"risk": risk} if risk else {}),
        "architecture": result.model.get_config(),
        "training": training_meta(result, command or f"seizurewatch train --dataset {ds.root} --model {spec.source}", {
            "dataset": str(ds.root), "model_config": spec.source, "subject": subject,
            "train_recordings": train_recs, "validation_recordings": val_recs,
            "test_recordings": [Path(r).name for r in ds.recordings("test", subject)],
            "train_windows": int(len(tr)), "train_positive": ds.y[tr].sum(axis=0).tolist(),
            "validation_windows": int(len(va)), "validation_positive": y_va.sum(axis=0).tolist() if len(va) else [],
            "dropped": dropped,
        }),
        "metrics": {"validation": val_metrics},
        "history": result.history,
    }
    example = torch.from_numpy(np.ascontiguousarray(ds.x[tr[:2]], dtype=np.float32))
    return Trained(result.model, meta, example)


def _on_validation(ds: DatasetDir, va: np.ndarray, model: Any) -> tuple[dict[str, Any], dict[str, Any] | None,
                                                                       dict[str, Any]]:
    """What the validation rows ``va`` give a freshly trained model: its first threshold (per output too),
    its risk levels (a prediction model) and its validation metrics."""
    p_va = predict(model, ds.x, rows=va) if len(va) else np.zeros((0, ds.y.shape[1]))
    y_va = ds.y[va]
    threshold = first_threshold(y_va[:, 0], p_va[:, 0], f"{ds.root.name}:val")
    if ds.y.shape[1] > 1:
        threshold["per_output"] = {name: first_threshold(y_va[:, k], p_va[:, k], f"{ds.root.name}:val")["value"]
                                   for k, name in enumerate(ds.outputs)}
    risk = _risk_section(ds, y_va, p_va, f"{ds.root.name}:val") if ds.task == "prediction" else None
    val_metrics: dict[str, Any] = {"windows": int(len(va)), "positive": int(y_va[:, 0].sum()) if len(va) else 0}
    if threshold["auc"] is not None:
        curve = roc(y_va[:, 0], p_va[:, 0])
        flagged = round(fraction_flagged_at_sensitivity(curve), 4)
        val_metrics.update(roc_auc=round(curve.auc, 4), fraction_interictal_flagged_at_99_sensitivity=flagged,
                           sensitivity_at_threshold=threshold["point"]["tpr"],
                           specificity_at_threshold=threshold["point"]["specificity"])
    return threshold, risk, val_metrics


def train_from_dataset(dataset: str | Path | DatasetDir, model_config: str | Path | ModelSpec, output: str | Path,
                       subject: str | None = None, resume: bool = False, progress: bool = True,
                       command: str | None = None, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Train on the ``train`` split (early stopping on ``val``), save to ``output``; returns the metadata."""
    run = fit_dataset(dataset, model_config, output, subject=subject, resume=resume, progress=progress,
                      command=command, checkpoint=checkpoint)
    return save_model(run.model, run.meta, output, run.example)


def train_per_subject(dataset: str | Path, model_config: str | Path, output_pattern: str, **kwargs: Any
                      ) -> dict[str, dict[str, Any]]:
    """One model per subject from one config; ``output_pattern`` contains ``{subject}``."""
    if "{subject}" not in output_pattern:
        raise ConfigError(f"--output {output_pattern!r}: per-subject training needs '{{subject}}' in the path")
    ds = open_dataset(dataset)
    spec = load_model_config(model_config)
    out = {}
    for subject in ds.subjects:
        if not len(ds.rows("train", subject)):
            log.warning("subject has no training windows; skipped", extra={"subject": subject})
            continue
        path = output_pattern.format(subject=subject)
        out[subject] = train_from_dataset(ds, spec, path, subject=subject, **kwargs)
        out[subject]["path"] = path
    if not out:
        raise DataError(f"{dataset}: no subject has training windows")
    return out

