"""A training recipe: one YAML file that says how to go from annotated recordings to a
deployable model (windows -> train -> threshold on validation -> export with metadata).

Paths in a recipe are relative to the recipe file.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from seizurewatch.checks import check_number
from seizurewatch.devices import DeviceProfile, load_device
from seizurewatch.errors import ConfigError, DataError
from seizurewatch.modelfile import save_model
from seizurewatch.preprocess import PreprocessSpec
from seizurewatch.research.dataset.recording import RecordingWindows, windows_from_recording
from seizurewatch.research.labels import LabelRules
from seizurewatch.research.roc import fraction_flagged_at_sensitivity, roc, target_sensitivity, youden
from seizurewatch.research.train import TrainConfig, predict, train
from seizurewatch.typedyaml import load_typed, read_yaml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreprocessRecipe:
    rate: float | None = None  # None: the device's rate
    bandpass: tuple[float, float] | None = None
    notch: float | None = None


VALIDATION_POLICIES = ("youden", "sensitivity")
OOF_POLICIES = ("events", "seconds")


@dataclass(frozen=True)
class ThresholdRecipe:
    # chosen_on validation: youden | sensitivity (target 0..1) on the validation windows' ROC;
    # chosen_on out_of_fold: events | seconds (research/threshold.py ``transfer``) on the training
    # recordings, each replayed with a model trained on the others (none judges a model that saw it)
    policy: Literal["youden", "sensitivity", "events", "seconds"] = "youden"
    target: float | None = None  # sensitivity (0..1)
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


def out_of_fold_threshold(parts: list[RecordingWindows], recipe: Recipe, meta: dict[str, Any],
                          example: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each training recording replayed through the daemon's pipeline with a model trained on
    the others (no early stopping: the recipe's epochs), then ``threshold.transfer`` on those
    out-of-fold traces: the same method ``compare`` and ``threshold --policy oof`` use.
    Returns the threshold block and the out-of-fold time-resolved figures."""
    import tempfile

    from seizurewatch.config import DecisionConfig
    from seizurewatch.research.evaluate import second_scores
    from seizurewatch.research.predict import stream_probabilities
    from seizurewatch.research.threshold import transfer
    from seizurewatch.research.timescore import score_seconds

    decision = DecisionConfig()
    traces = []
    with tempfile.TemporaryDirectory(prefix="seizurewatch-oof-") as tmp:
        for i, part in enumerate(parts):
            x_o, y_o = stack([q for j, q in enumerate(parts) if j != i])
            cfg = dataclasses.replace(recipe.model, patience=0)
            model = train(x_o, y_o, None, None, cfg, progress=False, rate=float(meta["preprocess"]["rate"])).model
            path = Path(tmp) / f"oof-{i}.pt"
            save_model(model, {**meta, "threshold": {"value": 0.5, "policy": "out-of-fold placeholder"}}, path,
                       example)
            traces.append(stream_probabilities(part.recording, path, decision, device=recipe.device))
            log.info("out-of-fold replay", extra={"recording": Path(part.recording).name})
    th = transfer(traces, recipe.threshold.policy, decision, early_s=recipe.early_s or 15.0)
    return th, score_seconds(second_scores(traces, recipe.early_s or 15.0), recipe.early_s or 15.0)["pooled"]


def run_recipe(path: str | Path, output: str | None = None, progress: bool = True,
               command: str | None = None) -> dict[str, Any]:
    """Build windows, train, choose the threshold (on validation, or out of fold), export.
    Returns the metadata."""
    from seizurewatch.research.training_run import architecture_meta, training_meta

    recipe, _ = load_recipe(path)
    device = load_device(recipe.device)
    spec = spec_for(recipe, device)
    train_parts = collect(recipe.train, recipe, spec, device)
    th = recipe.threshold
    oof = th.chosen_on == "out_of_fold"
    if oof and len(train_parts) < 2:
        raise ConfigError(f"{path}: threshold.chosen_on: out_of_fold needs >= 2 training recordings")
    allowed = OOF_POLICIES if oof else VALIDATION_POLICIES
    if th.policy not in allowed:
        raise ConfigError(f"{path}: threshold.policy: {th.policy!r} with chosen_on: {th.chosen_on}; expected one of "
                          f"{', '.join(allowed)}")
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
    out_path = output or recipe.output
    meta: dict[str, Any] = {
        "name": recipe.name,
        "description": recipe.description,
        "task": recipe.task,
        "outputs": rules_for(recipe).outputs() if recipe.task == "detection"
        else [f"preictal_{int(h)}s" for h in recipe.horizons_s],
        "device": device.name,
        "preprocess": spec.to_json(),
        "window_s": recipe.window_s,
        "hop_s": recipe.hop_s,
        "architecture": architecture_meta(recipe.model, x_tr.shape, y_tr.shape[1], spec.rate),
        "training": training_meta(result, command or f"seizurewatch train {path}", {
            "recipe": Path(path).name,
            "train_recordings": [Path(f).name for f in recipe.train],
            "validation_recordings": [Path(f).name for f in recipe.validation],
            "train_windows": int(len(y_tr)), "train_positive": int(y_tr[:, 0].sum()),
            "validation_windows": int(len(y_va)), "validation_positive": int(y_va[:, 0].sum()) if len(y_va) else 0,
            "dropped": {Path(p.recording).name: p.dropped for p in train_parts + val_parts},
        }),
        "history": result.history,
    }
    example = torch.from_numpy((x_va if len(x_va) else x_tr)[:2].astype(np.float32))
    if oof:
        threshold, seconds = out_of_fold_threshold(train_parts, recipe, meta, example)
        threshold["chosen_on"] = [f"out-of-fold: {Path(f).name}" for f in recipe.train]
        validation: dict[str, Any] = {"out_of_fold_seconds": seconds, "at_threshold": threshold["point"]}
    else:
        p_va = predict(result.model, x_va)[:, 0]
        curve = roc(y_va[:, 0], p_va)
        threshold = (target_sensitivity(curve, th.target if th.target is not None else 0.95)
                     if th.policy == "sensitivity" else youden(curve))
        threshold["chosen_on"] = [Path(f).name for f in recipe.validation]
        validation = {
            "roc_auc": round(curve.auc, 4),
            "fraction_interictal_flagged_at_99_sensitivity": round(fraction_flagged_at_sensitivity(curve), 4),
            "sensitivity_at_threshold": threshold["point"]["tpr"],
            "specificity_at_threshold": threshold["point"]["specificity"],
        }
    meta["threshold"] = threshold
    meta["metrics"] = {"validation": validation}
    return save_model(result.model, meta, out_path, example)
