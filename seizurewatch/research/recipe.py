"""A training recipe: one YAML file that says how to go from annotated recordings to a
deployable model. It composes the three steps the other commands run one by one:

  build      ``dataset_spec`` turns the recipe into a ``DatasetSpec`` (training recordings ->
             split ``train``, validation recordings -> split ``val``) and ``build_dataset``
             writes it, in a temporary folder unless ``keep_dataset`` names one (kept, it can be
             handed to ``evaluate``, ``threshold --policy oof`` or ``train --dataset``);
  train      ``training_run.fit_dataset``: the same training and the same metadata as
             ``seizurewatch train --dataset``, plus ``training.recipe``;
  threshold  on the ``val`` split (``youden`` / ``sensitivity``), or out of fold
             (``outoffold.out_of_fold``, then ``threshold.transfer``: what ``compare`` and
             ``threshold --policy oof`` do).

Validation windows are cut like the training ones (ictal windows every ``stride_ictal_s``: the
dataset layer has one windowing for every split). Paths in a recipe are relative to the recipe file.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from seizurewatch.checks import check_number
from seizurewatch.errors import ConfigError, DataError
from seizurewatch.modelfile import save_model
from seizurewatch.research.dataset import DatasetDir, DatasetSpec, SplitSpec, build_dataset, open_dataset
from seizurewatch.research.labels import LabelRules
from seizurewatch.research.train import TrainConfig
from seizurewatch.research.training_run import ModelSpec, Trained, fit_dataset
from seizurewatch.typedyaml import FilePath, load_typed_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreprocessRecipe:
    rate: float | None = None  # None: the device's rate
    bandpass: tuple[float, float] | None = None
    notch: float | None = None


VALIDATION_POLICIES = ("youden", "sensitivity")
OOF_POLICIES = ("events", "seconds", "events_nested", "events_trigger")


@dataclass(frozen=True)
class ThresholdRecipe:
    # chosen_on validation: youden | sensitivity (target 0..1) on the validation windows' ROC;
    # chosen_on out_of_fold: events | seconds | events_nested | events_trigger (research/threshold.py
    # ``transfer``) on the training recordings, each replayed with a model trained on the others (none judges
    # a model that saw it)
    policy: Literal["youden", "sensitivity", "events", "seconds", "events_nested", "events_trigger"] = "youden"
    target: float | None = None  # sensitivity (0..1)
    chosen_on: Literal["validation", "out_of_fold"] = "validation"


@dataclass(frozen=True, kw_only=True)
class Recipe(LabelRules):
    """A training recipe; the label rules (``task``, ``exclusion_s``, ``horizons_s``, ``early_s``...) are
    inherited, and handed to the dataset spec as they are."""

    name: str
    device: FilePath
    train: tuple[FilePath, ...]
    validation: tuple[FilePath, ...]
    output: FilePath
    window_s: float = 10.0
    hop_s: float = 1.0
    stride_s: float = 1.0
    stride_ictal_s: float = 1.0
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
    """A recipe YAML and its folder; relative paths in it are relative to that folder."""
    p = Path(path)
    recipe, base = load_typed_file(Recipe, p)
    for key, files in (("train", recipe.train), ("validation", recipe.validation)):
        for f in files:
            if not Path(f).is_file():
                raise ConfigError(f"{p}: {key}: recording not found: {f}")
    return recipe, base


def dataset_spec(recipe: Recipe) -> DatasetSpec:
    """The dataset the recipe trains on: training recordings in split ``train``, validation ones in
    ``val``, windowed, labelled and preprocessed as the recipe says (rate None: the device's)."""
    pp = recipe.preprocess
    assign: dict[str, Literal["train", "val", "test"]] = {Path(f).name: "train" for f in recipe.train}
    assign |= {Path(f).name: "val" for f in recipe.validation}
    return DatasetSpec(recordings=recipe.train + recipe.validation, device=recipe.device, rate=pp.rate,
                       bandpass=pp.bandpass, notch=pp.notch, window_s=recipe.window_s, stride_s=recipe.stride_s,
                       stride_ictal_s=recipe.stride_ictal_s, split=SplitSpec(by="recording", assign=assign),
                       name=recipe.name, **recipe.label_fields())


def check_policy(recipe: Recipe, where: str) -> None:
    th = recipe.threshold
    oof = th.chosen_on == "out_of_fold"
    if oof and len(recipe.train) < 2:
        raise ConfigError(f"{where}: threshold.chosen_on: out_of_fold needs >= 2 training recordings")
    allowed = OOF_POLICIES if oof else VALIDATION_POLICIES
    if th.policy not in allowed:
        raise ConfigError(f"{where}: threshold.policy: {th.policy!r} with chosen_on: {th.chosen_on}; expected one of "
                          f"{', '.join(allowed)}")
    if not oof and not recipe.validation:
        raise ConfigError(f"{where}: threshold.chosen_on: validation needs validation recordings (or chosen_on: "
                          "out_of_fold)")
    names = [Path(f).name for f in recipe.train + recipe.validation]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{where}: recordings listed twice (train / validation name them by file name): "
                          f"{', '.join(twice)}")


def on_validation(run: Trained, ds: DatasetDir, recipe: Recipe, where: str) -> None:
    """The ROC threshold on the ``val`` split: ``fit_dataset`` chose Youden's J there already;
    ``sensitivity`` moves it to the target."""
    from seizurewatch.research.roc import roc
    from seizurewatch.research.threshold import target_sensitivity
    from seizurewatch.research.train import predict

    va = ds.rows("val")
    y = ds.y[va, 0]
    if len(y) == 0 or y.all() or not y.any():
        raise DataError(f"{where}: the validation set needs windows of both classes (got {len(y)} windows, "
                        f"{int(y.sum())} positive)")
    th = run.meta["threshold"]
    if recipe.threshold.policy == "sensitivity":
        curve = roc(y, predict(run.model, ds.x, rows=va)[:, 0])
        target = recipe.threshold.target if recipe.threshold.target is not None else 0.95
        th = target_sensitivity(curve, target)
        run.meta["metrics"]["validation"].update(sensitivity_at_threshold=th["point"]["tpr"],
                                                 specificity_at_threshold=th["point"]["specificity"])
    th["chosen_on"] = [Path(f).name for f in recipe.validation]
    run.meta["threshold"] = th


def choose_out_of_fold(run: Trained, ds: DatasetDir, recipe: Recipe, workdir: Path, progress: bool,
                scheduler: str | None = None) -> None:
    """Each training recording replayed through the daemon's pipeline with a model trained on the
    others (the recipe's epochs, no early stopping), then ``threshold.transfer`` on those traces."""
    from seizurewatch.config import DecisionConfig
    from seizurewatch.research.evaluate import second_scores
    from seizurewatch.research.outoffold import out_of_fold
    from seizurewatch.research.threshold import transfer
    from seizurewatch.research.timescore import score_seconds

    decision = DecisionConfig()
    early_s = recipe.early_s or 15.0
    spec = ModelSpec(name=recipe.name, hop_s=recipe.hop_s, train=recipe.model)
    traces = out_of_fold(ds, spec, list(ds.recordings("train")), workdir, decision,
                                epochs=recipe.model.epochs, progress=progress, device=recipe.device,
                                scheduler=scheduler)
    th = transfer(traces, recipe.threshold.policy, decision, early_s=early_s)
    th["chosen_on"] = [f"out-of-fold: {Path(t.recording).name}" for t in traces]
    run.meta["threshold"] = th
    run.meta["metrics"]["validation"] = {"out_of_fold_seconds": score_seconds(second_scores(traces, early_s),
                                                                              early_s)["pooled"],
                                         "at_threshold": th["point"]}


def run_recipe(path: str | Path, output: str | None = None, progress: bool = True, command: str | None = None,
               keep_dataset: str | Path | None = None, scheduler: str | None = None) -> dict[str, Any]:
    """Build the recipe's dataset, train on it, choose the threshold (on validation, or out of
    fold), save the model file. ``keep_dataset``: build the dataset there and keep it (default: a
    temporary folder, removed at the end). ``scheduler``: a Dask scheduler for the build's and the
    out-of-fold threshold's tasks (one per recording). Returns the metadata."""
    recipe, _ = load_recipe(path)
    check_policy(recipe, str(path))
    out_path = output or recipe.output
    with tempfile.TemporaryDirectory(prefix="seizurewatch-recipe-") as tmp:
        folder = Path(keep_dataset) if keep_dataset else Path(tmp) / "dataset"
        build_dataset(dataset_spec(recipe), folder, command=f"seizurewatch train {path} (the recipe's dataset)",
                      progress=progress, scheduler=scheduler)
        ds = open_dataset(folder)
        spec = ModelSpec(name=recipe.name, description=recipe.description, hop_s=recipe.hop_s, train=recipe.model,
                         source=str(path))
        run = fit_dataset(ds, spec, out_path, progress=progress, command=command or f"seizurewatch train {path}",
                          checkpoint=Path(tmp) / "train.ckpt")
        run.meta["training"]["recipe"] = Path(path).name
        run.meta["training"]["dataset"] = str(folder.resolve()) if keep_dataset else None
        if recipe.threshold.chosen_on == "out_of_fold":
            choose_out_of_fold(run, ds, recipe, Path(tmp) / "oof", progress, scheduler)
        else:
            on_validation(run, ds, recipe, str(path))
        return save_model(run.model, run.meta, out_path, run.example)
