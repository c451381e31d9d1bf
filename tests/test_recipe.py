"""A recipe composes the dataset build, the one training run and the threshold: on the real
Dog_1 recordings, out of fold (the shipped model's recipe, with fewer trees and a 1-s hop) and on a validation
recording; the model file it writes carries the same metadata as ``train --dataset`` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import ConfigError
from seizurewatch.modelfile import load_model
from seizurewatch.research.dataset import build_dataset, open_dataset
from seizurewatch.research.outoffold import out_of_fold
from seizurewatch.research.recipe import dataset_spec, load_recipe, run_recipe
from seizurewatch.research.threshold import transfer
from seizurewatch.research.training_run import ModelSpec, train_from_dataset

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

ROOT = Path(__file__).resolve().parents[1]
DOG1 = ROOT.parent / "shared" / "data" / "dog1"


def _recipe(tmp_path: Path, **replace: str) -> Path:
    """config/train-dog1.yaml with absolute paths, the output in tmp_path and ``replace`` applied."""
    text = ((ROOT / "config" / "train-dog1.yaml").read_text()
            .replace("../devices/", f"{ROOT}/devices/").replace("../../shared/data/dog1/", f"{DOG1}/")
            .replace("../models/dog1-hills-early.pt", str(tmp_path / "m.pt")))
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def _validation_recipe(tmp_path: Path, policy: str = "youden", extra: str = "") -> Path:
    """Train on rec01-02, validate on rec03, a band-power logistic regression (quick)."""
    return _recipe(tmp_path, **{
        f"  - {DOG1}/dog1_rec03.edf\nvalidation: []": f"validation:\n  - {DOG1}/dog1_rec03.edf",
        "arch: hills_forest\n  arch_kwargs: {clip_s: 1.0, trees: 1000, bootstrap: false, combine: conditional, "
        "early_weight: 0.5}": "arch: bandpower_lr\n  epochs: 2\n  lr: 0.01\n  patience: 0\n  threads: 1",
        "policy: events_trigger\n  chosen_on: out_of_fold": f"policy: {policy}\n  chosen_on: validation{extra}"})


def test_recipe_chooses_the_threshold_out_of_fold_without_a_validation_recording(tmp_path):
    recipe = _recipe(tmp_path, **{"trees: 1000": "trees: 20", "hop_s: 0.25": "hop_s: 1"})  # hop 1 s: 4x fewer windows
    meta = run_recipe(recipe, progress=False)
    th = meta["threshold"]
    assert th["policy"] == "oof_events_trigger" and 0 < th["value"] < 1  # the recipe's criterion (research/trigger.py)
    assert [r["early_gain"] for r in th["early_trigger"]["tried"]] == [0.0, 1.1, 1.25, 1.5, 2.0]
    assert th["chosen_on"] == [f"out-of-fold: dog1_rec0{i}.edf" for i in (1, 2, 3)]
    assert meta["training"]["validation_recordings"] == [] and meta["outputs"] == ["seizure", "early"]
    assert meta["training"]["recipe"] == "r.yaml" and meta["training"]["dataset"] is None  # built in a temp folder
    assert meta["architecture"]["arch"] == "hills_forest" and meta["architecture"]["n_outputs"] == 2
    assert load_model(tmp_path / "m.pt").meta.threshold == pytest.approx(th["value"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "r.yaml"]  # no dataset, fold model or checkpoint
    # chosen on the three out-of-fold replays (one seizure each), which the metadata reports
    val = meta["metrics"]["validation"]
    assert th["point"]["seizures"] == 3 and val["at_threshold"] == th["point"]
    assert val["out_of_fold_seconds"]["ictal_seconds"] > 0 and val["out_of_fold_seconds"]["seizure_auc"] is not None
    # the same out-of-fold function compare and threshold --policy oof call, on the recipe's dataset; the
    # recipe ran one task per left-out recording on a cluster, this runs them here one after the other
    rcp, _ = load_recipe(recipe)
    build_dataset(dataset_spec(rcp), tmp_path / "ds")
    traces = out_of_fold(open_dataset(tmp_path / "ds"), ModelSpec(name="again", hop_s=rcp.hop_s, train=rcp.model),
                         [f"{DOG1}/dog1_rec0{i}.edf" for i in (1, 2, 3)], tmp_path / "oof", DecisionConfig(),
                         epochs=rcp.model.epochs, device=rcp.device, workers=1)
    assert [Path(t.recording).name for t in traces] == [f"dog1_rec0{i}.edf" for i in (1, 2, 3)]
    assert transfer(traces, "events_trigger", DecisionConfig(), early_s=15.0)["value"] == th["value"]


def test_a_recipe_and_a_dataset_training_write_the_same_metadata_and_model(tmp_path):
    recipe = _validation_recipe(tmp_path)
    meta = run_recipe(recipe, progress=False, keep_dataset=tmp_path / "kept")
    assert meta["training"]["dataset"] == str((tmp_path / "kept").resolve())
    assert meta["training"]["train_recordings"] == ["dog1_rec01.edf", "dog1_rec02.edf"]
    assert meta["training"]["validation_recordings"] == ["dog1_rec03.edf"]
    assert meta["threshold"]["chosen_on"] == ["dog1_rec03.edf"] and meta["threshold"]["policy"] == "youden"
    model_yaml = tmp_path / "lr.yaml"
    model_yaml.write_text(f"name: dog1-hills-early\nhop_s: {meta['hop_s']}\narch: bandpower_lr\nepochs: 2\nlr: 0.01\n"
                          "patience: 0\nthreads: 1\n")
    other = train_from_dataset(tmp_path / "kept", model_yaml, tmp_path / "d.pt", progress=False)
    assert set(meta) == set(other)
    assert set(meta["training"]) == set(other["training"]) | {"recipe"}
    assert set(meta["metrics"]["validation"]) == set(other["metrics"]["validation"])
    assert meta["architecture"] == other["architecture"] and meta["training"]["config"] == other["training"]["config"]
    for key in ("preprocess", "window_s", "hop_s", "outputs", "task", "device"):
        assert meta[key] == other[key], key
    assert meta["threshold"]["value"] == pytest.approx(other["threshold"]["value"])  # Youden on the same val split
    x = torch.randn(5, 16, 400, generator=torch.Generator().manual_seed(1)) * 50
    with torch.no_grad():
        np.testing.assert_array_equal(load_model(tmp_path / "m.pt").module(x).numpy(),
                                      load_model(tmp_path / "d.pt").module(x).numpy())


def test_a_recipe_can_choose_the_threshold_at_a_validation_sensitivity(tmp_path):
    meta = run_recipe(_validation_recipe(tmp_path, "sensitivity", "\n  target: 0.9"), progress=False)
    th = meta["threshold"]
    assert th["policy"] == "sensitivity" and th["target"] == 0.9 and th["point"]["tpr"] >= 0.9
    assert meta["metrics"]["validation"]["sensitivity_at_threshold"] == th["point"]["tpr"]
    assert th["chosen_on"] == ["dog1_rec03.edf"]


@pytest.mark.parametrize(("replace", "message"), [
    ({"policy: events_trigger": "policy: youden"}, "threshold.policy: 'youden' with chosen_on: out_of_fold"),
    ({"chosen_on: out_of_fold": "chosen_on: validation", "policy: events_trigger": "policy: youden"},
     "chosen_on: validation needs validation recordings"),
    ({"validation: []": f"validation: [{DOG1}/dog1_rec03.edf]"}, "listed twice .*dog1_rec03.edf"),
])
def test_recipe_refuses_a_threshold_or_recordings_that_do_not_fit(tmp_path, replace, message):
    with pytest.raises(ConfigError, match=message):
        run_recipe(_recipe(tmp_path, **replace), progress=False)
