"""``compare`` for prediction datasets of clips or segments: grouped K-fold cross-validation, per-horizon
clip AUC against chance (``forecast.auc_against_chance``).

A prediction dataset of clips has no continuous recording to replay, so the folds are over clip groups
(a clip's seizure id, i.e. a Kaggle preictal hour, else the clip itself), stratified by class: fold i
tests its groups, fold i+1's validate (early stopping, the risk levels), the rest train. Each clip's
probability comes from the one fold model that never saw it (out-of-fold), averaged over its windows.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.errors import DataError
from seizurewatch.modelmeta import ModelMeta
from seizurewatch.research.dataset import DatasetDir, open_dataset
from seizurewatch.research.forecast import auc_against_chance, choose_levels, clip_scores
from seizurewatch.research.outoffold import with_roles
from seizurewatch.research.train import predict
from seizurewatch.research.training_run import ModelSpec, fit_dataset, load_model_config

log = logging.getLogger(__name__)

DEFAULT_FOLDS = 5


def prediction_units(dataset: str | Path) -> None:
    """DataError unless the prediction dataset is made of clips or segments (what ``compare_segments`` scores)."""
    ds = open_dataset(dataset)
    continuous = [Path(str(e.get("path"))).name for e in ds.manifest.get("recordings", [])
                  if e.get("annotations") != "clip label"]
    if continuous:
        raise DataError(f"{ds.root}: a prediction dataset of continuous recordings ({', '.join(continuous[:3])}"
                        f"{'...' if len(continuous) > 3 else ''}): compare scores prediction on clips or segments; "
                        "for continuous recordings use 'seizurewatch evaluate' (alarm-based figures per horizon)")


def clip_groups(ds: DatasetDir) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """(window clip names, window group names, clip -> group): a clip's seizure id, else the clip."""
    idx = ds.index
    names = np.asarray(idx.recording_names, dtype=object)[idx.recording]
    seizures = np.asarray(idx.seizure_names, dtype=object)[idx.seizure] if len(idx) else np.zeros(0, object)
    groups = np.where(seizures != "", seizures, names)
    return names.tolist(), groups, dict(zip(names.tolist(), groups.tolist()))


def assign_folds(groups: np.ndarray, positive: np.ndarray, k: int, seed: int = 0) -> dict[str, int]:
    """Group -> fold, each class's groups dealt round-robin after a seeded shuffle (stratified)."""
    rng = np.random.default_rng(seed)
    label: dict[str, bool] = {}
    for g, pos in zip(groups.tolist(), positive.tolist()):
        label[g] = label.get(g, False) or bool(pos)
    out: dict[str, int] = {}
    for cls in (True, False):
        members = sorted(g for g, v in label.items() if v == cls)
        for i, g in enumerate(rng.permutation(members).tolist()):
            out[g] = i % k
    return out


def out_of_fold_probabilities(ds: DatasetDir, spec: ModelSpec, folds: int, workdir: Path, seed: int = 0) -> np.ndarray:
    """(windows, outputs) probabilities, each from the fold model that did not see the window's clip."""
    names, groups, _ = clip_groups(ds)
    positive = np.asarray(np.asarray(ds.y).any(axis=1), dtype=bool)
    fold_of = assign_folds(groups, positive, folds, seed)
    fold = np.array([fold_of[g] for g in groups.tolist()])
    p = np.full(ds.y.shape, np.nan)
    for i in range(folds):
        val = (i + 1) % folds
        roles = {n: "test" if f == i else "val" if f == val else "train" for n, f in zip(names, fold.tolist())}
        run = fit_dataset(with_roles(ds, roles), spec, workdir / f"{spec.name}-fold{i}.pt", progress=False,
                          checkpoint=workdir / f"{spec.name}-fold{i}.ckpt")
        rows = np.flatnonzero(fold == i)
        p[rows] = predict(run.model, ds.x, rows=rows)
        log.info("fold done", extra={"model": spec.name, "fold": i, "test_windows": len(rows)})
    return p


def out_of_fold_levels(meta: ModelMeta, dataset: str | Path, workdir: str | Path,
                       folds: int = DEFAULT_FOLDS, seed: int = 0) -> dict[str, Any]:
    """A prediction model's ``risk`` section with every output's levels chosen on out-of-fold windows of
    ``dataset`` (clips or segments): the model's own training config retrained per fold."""
    from seizurewatch.research.threshold_choice import training_spec

    prediction_units(dataset)
    ds = open_dataset(dataset)
    risk = dict(meta.raw.get("risk") or {})  # the stored section, rewritten level by level
    if list(ds.outputs) != list(meta.outputs):
        raise DataError(f"{ds.root}: outputs {ds.outputs} are not the model's {list(meta.outputs)}")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    p = out_of_fold_probabilities(ds, training_spec(meta), folds, work, seed)
    ok = ~np.isnan(p).any(axis=1)
    y = np.asarray(ds.y)
    for j, name in enumerate(ds.outputs):
        if name in risk:
            risk[name] = {"horizon_s": risk[name]["horizon_s"],
                          **choose_levels(y[ok, j], p[ok, j], f"{ds.root.name}: out-of-fold windows")}
    return risk


def compare_segments(dataset: str | Path, model_configs: list[str], out_dir: str | Path,
                     folds: int = DEFAULT_FOLDS, seed: int = 0) -> dict[str, Any]:
    """Per model and horizon: clip AUC (out-of-fold) against the shuffled-label chance AUC."""
    ds = open_dataset(dataset)
    if ds.task != "prediction":
        raise DataError(f"{ds.root}: a {ds.task} dataset; per-horizon AUC needs a prediction dataset "
                        "('seizurewatch dataset build --task prediction')")
    names, _, group_of = clip_groups(ds)
    n_groups = len(set(group_of.values()))
    if n_groups < 2 * folds:
        raise DataError(f"{ds.root}: {n_groups} clip groups are too few for {folds} folds")
    horizons = [float(h) for h in ds.manifest.get("horizons_s", [])]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = []
    for cfg in model_configs:
        spec = load_model_config(cfg)
        p = out_of_fold_probabilities(ds, spec, folds, out, seed)
        clips, yc, pc = clip_scores(names, np.asarray(ds.y), p)
        ok = ~np.isnan(p).any(axis=1)  # every window has its out-of-fold probability
        per = [{"output": name, "horizon_s": horizons[j] if j < len(horizons) else None,
                **auc_against_chance(yc[:, j], pc[:, j], [group_of[c] for c in clips], seed=seed),
                "levels": choose_levels(np.asarray(ds.y)[ok, j], p[ok, j], "out-of-fold windows")}
               for j, name in enumerate(ds.outputs)]
        models.append({"model": spec.name, "config": cfg, "clips": len(clips), "horizons": per})
    result: dict[str, Any] = {"dataset": str(ds.root), "folds": folds, "seed": seed, "groups": n_groups,
                              "models": models}
    md = markdown(result)
    result["markdown"] = md
    (out / "compare.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (out / "compare.md").write_text(md + "\n", encoding="utf-8")
    return result


def markdown(res: dict[str, Any]) -> str:
    lines = [f"Per-horizon clip AUC, {res['folds']}-fold cross-validation over {res['groups']} clip groups "
             f"(out-of-fold; a clip's probability is the mean of its windows). Chance: the clips' labels shuffled "
             "between groups; median and 95th percentile of the shuffled AUCs, p = how often chance reached the "
             "observed AUC. Levels: the risk thresholds chosen on the out-of-fold windows (elevated: Youden's J, "
             "high: specificity 0.95).", "",
             "| model | output | horizon | clips (pre/inter) | AUC | chance median | chance 95 % | p | "
             "levels elevated / high |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in res["models"]:
        for h in m["horizons"]:
            hz = f"{h['horizon_s']:g} s" if h["horizon_s"] is not None else "-"
            lines.append(f"| {m['model']} | {h['output']} | {hz} | {h['positive']}/{h['negative']} | {h['auc']} | "
                         f"{h['chance_median']} | {h['chance_95']} | {h['p_value']} | "
                         f"{h['levels']['elevated']:.3f} / {h['levels']['high']:.3f} |")
    return "\n".join(lines)
