"""A training recipe: one YAML file that says how to go from annotated recordings to a
deployable model (windows -> train -> threshold on validation -> export with metadata).

Paths in a recipe are relative to the recipe file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import seizurewatch
from seizurewatch.checks import check_number
from seizurewatch.devices import DeviceProfile, load_device
from seizurewatch.errors import ConfigError, DataError
from seizurewatch.modelfile import save_model
from seizurewatch.preprocess import PreprocessSpec
from seizurewatch.research.labels import LabelRules
from seizurewatch.research.roc import fraction_flagged_at_sensitivity, roc, target_sensitivity, youden
from seizurewatch.research.train import TrainConfig, predict, train
from seizurewatch.research.windows import RecordingWindows, windows_from_recording
from seizurewatch.typedyaml import load_typed, read_yaml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreprocessRecipe:
    rate: float | None = None  # None: the device's rate
    bandpass: tuple[float, float] | None = None
    notch: float | None = None


@dataclass(frozen=True)
class ThresholdRecipe:
    policy: Literal["youden", "sensitivity", "fa_budget"] = "youden"
    target: float | None = None  # sensitivity (0..1), or false alarms allowed (fa_budget, out of fold; default 0)
    # validation: on the validation recordings; out_of_fold: on the training recordings, each
    # predicted by a model trained on the others (no recording judges a model that saw it)
    chosen_on: Literal["validation", "out_of_fold"] = "validation"


@dataclass(frozen=True)
class Recipe:
    name: str
    device: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    output: str
    task: Literal["detection", "prediction"] = "detection"
    window_s: float = 10.0
    hop_s: float = 1.0
    stride_s: float = 1.0
    stride_ictal_s: float = 1.0
    exclusion_s: float = 300.0
    horizons_s: tuple[float, ...] = (600.0, 3600.0)
    early_s: float | None = None  # detection: also learn "early" (the window ends <= early_s after onset)
    preprocess: PreprocessRecipe = field(default_factory=PreprocessRecipe)
    model: TrainConfig = field(default_factory=TrainConfig)
    threshold: ThresholdRecipe = field(default_factory=ThresholdRecipe)
    description: str = ""

    def __post_init__(self) -> None:
        check_number(self.window_s, "window_s", low=0, low_open=True, high=3600)
        check_number(self.hop_s, "hop_s", low=0, low_open=True, high=self.window_s)
        for key in ("stride_s", "stride_ictal_s"):
            check_number(getattr(self, key), key, low=0, low_open=True, high=3600)
        check_number(self.exclusion_s, "exclusion_s", low=0, high=86_400 * 7)
        for h in self.horizons_s:
            check_number(h, "horizons_s", low=0, low_open=True, high=86_400 * 7)


def load_recipe(path: str | Path) -> tuple[Recipe, Path]:
    p = Path(path)
    data = read_yaml(p)
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    recipe = load_typed(Recipe, data, str(p))
    base = p.resolve().parent

    def res(s: str) -> str:
        q = Path(s).expanduser()
        return str(q if q.is_absolute() else (base / q).resolve())

    recipe = dataclasses.replace(
        recipe, device=res(recipe.device), train=tuple(res(s) for s in recipe.train),
        validation=tuple(res(s) for s in recipe.validation), output=res(recipe.output),
    )
    for key, files in (("train", recipe.train), ("validation", recipe.validation)):
        for f in files:
            if not Path(f).is_file():
                raise ConfigError(f"{p}: {key}: recording not found: {f}")
    return recipe, base


def spec_for(recipe: Recipe, device: DeviceProfile) -> PreprocessSpec:
    pp = recipe.preprocess
    return PreprocessSpec(channels=device.channels, rate=pp.rate or device.sampling_rate,
                          bandpass=pp.bandpass, notch=pp.notch)


def rules_for(recipe: Recipe) -> LabelRules:
    return LabelRules(task=recipe.task, exclusion_s=recipe.exclusion_s, horizons_s=recipe.horizons_s,
                      early_s=recipe.early_s)


def collect(files: tuple[str, ...], recipe: Recipe, spec: PreprocessSpec, device: DeviceProfile,
            stride_ictal_s: float | None = None) -> list[RecordingWindows]:
    out = []
    for f in files:
        rw = windows_from_recording(f, spec, recipe.window_s, recipe.stride_s,
                                    stride_ictal_s or recipe.stride_ictal_s, rules_for(recipe), device=device)
        log.info("windows", extra={"recording": Path(f).name, "n": len(rw.y), "positive": int(rw.y[:, 0].sum()),
                                   "dropped": rw.dropped})
        out.append(rw)
    return out


def stack(parts: list[RecordingWindows]) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([p.x for p in parts])
    y = np.concatenate([p.y for p in parts])
    return x, y


def _false_alarms(part: RecordingWindows, p: np.ndarray, threshold: float, window_s: float) -> int:
    """Alarms the daemon's rules raise on one recording's window sequence that start on an
    interictal window."""
    from seizurewatch.config import DecisionConfig
    from seizurewatch.research.predict import alarm_spans

    t_end = part.t_start + window_s
    spans = alarm_spans(t_end, p, threshold, DecisionConfig(), float(t_end.max()) if len(t_end) else 0.0)
    ictal = {round(float(t), 3) for t, y in zip(t_end, part.y[:, 0]) if y}
    return sum(1 for a, _ in spans if round(a, 3) not in ictal)


def out_of_fold_threshold(parts: list[RecordingWindows], recipe: Recipe, rate: float
                          ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Each training recording predicted by a model trained on the others (no early stopping:
    the recipe's epochs), then the policy on those out-of-fold predictions: ``fa_budget``
    takes the lowest threshold at which the daemon's decision rules raise at most ``target``
    (default 0) false alarms over all of them; ``youden`` / ``sensitivity`` the pooled ROC."""
    preds = []
    for i, part in enumerate(parts):
        x_o, y_o = stack([q for j, q in enumerate(parts) if j != i])
        cfg = dataclasses.replace(recipe.model, patience=0)
        preds.append(predict(train(x_o, y_o, None, None, cfg, progress=False, rate=rate).model, part.x)[:, 0])
        log.info("out-of-fold predictions", extra={"recording": Path(part.recording).name})
    y = np.concatenate([q.y[:, 0] for q in parts])
    p = np.concatenate(preds)
    th = recipe.threshold
    curve = roc(y, p)
    if th.policy == "youden":
        return youden(curve), y, p
    if th.policy == "sensitivity":
        return target_sensitivity(curve, th.target if th.target is not None else 0.95), y, p
    budget = int(th.target or 0)
    cands = np.unique(np.round(p, 4))
    value = float(min(cands.max(), 0.999))
    for c in cands[(cands > 0) & (cands < 1)]:
        if sum(_false_alarms(q, pr, float(c), recipe.window_s) for q, pr in zip(parts, preds)) <= budget:
            value = float(c)
            break
    flag = p >= value
    point = {"tpr": float(flag[y == 1].mean()), "specificity": float((~flag[y == 0]).mean())}
    return {"value": value, "policy": "fa_budget", "target": budget, "point": point, "auc": curve.auc}, y, p


def run_recipe(path: str | Path, output: str | None = None, progress: bool = True,
               command: str | None = None) -> dict[str, Any]:
    """Build windows, train, choose the threshold on validation, export. Returns the metadata."""
    recipe, _ = load_recipe(path)
    device = load_device(recipe.device)
    spec = spec_for(recipe, device)
    train_parts = collect(recipe.train, recipe, spec, device)
    oof = recipe.threshold.chosen_on == "out_of_fold"
    if oof and len(train_parts) < 2:
        raise ConfigError(f"{path}: threshold.chosen_on: out_of_fold needs >= 2 training recordings")
    val_parts = collect(recipe.validation, recipe, spec, device, stride_ictal_s=recipe.stride_s)
    x_tr, y_tr = stack(train_parts)
    x_va, y_va = stack(val_parts) if val_parts else (x_tr[:0], y_tr[:0])
    for name, y in (("train", y_tr), ("validation", y_va)):
        if (name == "train" or not oof) and (len(y) == 0 or y[:, 0].all() or not y[:, 0].any()):
            raise DataError(f"{path}: the {name} set needs windows of both classes (got {len(y)} windows, "
                            f"{int(y[:, 0].sum()) if len(y) else 0} positive)")
    has_val = len(y_va) > 0
    result = train(x_tr, y_tr, x_va if has_val else None, y_va if has_val else None, recipe.model,
                   progress=progress, rate=spec.rate)
    th = recipe.threshold
    if oof:
        threshold, y_va, p_va = out_of_fold_threshold(train_parts, recipe, spec.rate)
    else:
        p_va = predict(result.model, x_va)[:, 0]
        y_va = y_va[:, 0]
    curve = roc(y_va, p_va)
    if not oof and th.policy == "sensitivity":
        threshold = target_sensitivity(curve, th.target if th.target is not None else 0.95)
    elif not oof:
        threshold = youden(curve)
    threshold["chosen_on"] = ([f"out-of-fold: {Path(f).name}" for f in recipe.train] if oof
                              else [Path(f).name for f in recipe.validation])
    out_path = output or recipe.output
    meta = {
        "name": recipe.name,
        "description": recipe.description,
        "task": recipe.task,
        "outputs": rules_for(recipe).outputs() if recipe.task == "detection"
        else [f"preictal_{int(h)}s" for h in recipe.horizons_s],
        "device": device.name,
        "preprocess": spec.to_json(),
        "window_s": recipe.window_s,
        "hop_s": recipe.hop_s,
        "threshold": threshold,
        "training": {
            "command": command or f"seizurewatch train {path}",
            "recipe": Path(path).name,
            "train_recordings": [Path(f).name for f in recipe.train],
            "validation_recordings": [Path(f).name for f in recipe.validation],
            "train_windows": int(len(y_tr)), "train_positive": int(y_tr[:, 0].sum()),
            "validation_windows": int(len(y_va)), "validation_positive": int(y_va.sum()),
            "dropped": {Path(p.recording).name: p.dropped for p in train_parts + val_parts},
            "config": result.config,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "seconds": round(result.seconds, 2),
            "seed": recipe.model.seed,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "seizurewatch": seizurewatch.__version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "metrics": {
            "validation": {
                "roc_auc": round(curve.auc, 4),  # (out of fold with chosen_on: out_of_fold)
                "fraction_interictal_flagged_at_99_sensitivity": round(fraction_flagged_at_sensitivity(curve), 4),
                "sensitivity_at_threshold": threshold["point"]["tpr"],
                "specificity_at_threshold": threshold["point"]["specificity"],
            }
        },
        "history": result.history,
    }
    example = torch.from_numpy((x_va if len(x_va) else x_tr)[:2].astype(np.float32))
    meta = save_model(result.model, meta, out_path, example)
    return meta
