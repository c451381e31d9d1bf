"""compare: leave-one-recording-out over a dataset, the strongest baseline always beside the
models, training errors that say which model and fold. (The full path with out-of-fold
thresholds, replays and time-resolved scores runs on Dog_1 in the README's comparison; the
pieces are tested in test_threshold.py, test_timescore.py and test_refractory_replay.py.)"""

from __future__ import annotations

import json

import pytest
from synthetic_dataset import make_dataset

from seizurewatch.errors import DataError
from seizurewatch.research.crossval import CompareOptions, compare, default_baseline, parse_model_arg
from seizurewatch.research.train import TrainingError

# one Dask cluster runs every fold task here
pytestmark = [pytest.mark.usefixtures("shared_cluster"), pytest.mark.needs_data]


def _yaml(path, arch, batch_size=16, epochs=2):
    # compare's plumbing on a tiny dataset: a fold trains on one 10-window recording, below train's usual
    # minimum of 10 windows a class (that refusal has its own test in test_refusals.py)
    path.write_text(f"name: {path.stem}\narch: {arch}\nepochs: {epochs}\nlr: 0.01\nbatch_size: {batch_size}\n"
                    "seed: 0\npatience: 0\nthreads: 1\nmin_windows_per_class: 1\n")
    return str(path)


def test_compare_adds_the_baseline_and_reports_every_fold(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    models = tmp_path / "models"
    models.mkdir()
    convnet = _yaml(models / "convnet.yaml", "seed_convnet")
    _yaml(models / "bandpower-lr.yaml", "bandpower_lr")
    assert default_baseline([convnet]) == str(models / "bandpower-lr.yaml")
    res = compare(ds, [convnet], tmp_path / "out", CompareOptions(threshold_method=None))
    assert [m["model"] for m in res["models"]] == ["convnet", "bandpower-lr"]  # the baseline, unasked
    for m in res["models"]:
        assert len(m["per_fold"]) == 3 and len(m["train_seconds"]) == 3
        assert {f["test"] for f in m["per_fold"]} == {"s1_train.edf", "s1_val.edf", "s1_test.edf"}
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "seizure AUC per second" in md and "early AUC (15 s)" in md and "best on test" in md
    assert md.count("| convnet |") == 1 + 3  # the summary row and one row per fold
    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert saved["threshold_method"] is None and saved["early_s"] == 15.0
    assert (tmp_path / "out" / "report.html").stat().st_size > 1000
    # no duplicate when the baseline is asked for, and none at all on request
    res = compare(ds, [convnet, str(models / "bandpower-lr.yaml")], tmp_path / "out2",
                  CompareOptions(threshold_method=None, baseline=None))
    assert [m["model"] for m in res["models"]] == ["convnet", "bandpower-lr"]


def test_a_training_failure_names_the_model_and_the_fold(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    bad = _yaml(tmp_path / "lr1.yaml", "bandpower_lr", batch_size=1)  # BatchNorm cannot train on one window
    with pytest.raises(TrainingError, match=r"compare lr1, fold test s1_train: training 'bandpower_lr' failed in "
                                            r"epoch 0, batch 0"):
        compare(ds, [bad], tmp_path / "out", CompareOptions(threshold_method=None, baseline=None))


def test_model_arguments_may_bring_their_own_dataset():
    assert parse_model_arg("a.yaml@d1s", "d10") == ("a.yaml", "d1s")
    assert parse_model_arg("a.yaml", "d10") == ("a.yaml", "d10")


def test_unknown_threshold_method_is_refused(tmp_path):
    with pytest.raises(DataError, match="threshold method 'magic'"):
        compare(make_dataset(tmp_path / "ds"), [], tmp_path / "out", CompareOptions(threshold_method="magic"))


def test_a_model_fitted_once_trains_on_the_validation_recording_too(tmp_path):
    from seizurewatch.modelfile import load_model
    from seizurewatch.research.crossval import fits_once
    from seizurewatch.research.dataset import open_dataset
    from seizurewatch.research.training_run import load_model_config

    ds_path = make_dataset(tmp_path / "ds")
    models = tmp_path / "models"
    models.mkdir()
    convnet = _yaml(models / "convnet.yaml", "seed_convnet")
    forest = models / "forest.yaml"
    forest.write_text("name: forest\narch: hills_forest\narch_kwargs: {clip_s: 1.0, trees: 5}\nseed: 0\n")
    ds = open_dataset(ds_path)
    assert fits_once(ds, load_model_config(str(forest))) and not fits_once(ds, load_model_config(convnet))
    compare(ds_path, [convnet, str(forest)], tmp_path / "out", CompareOptions(threshold_method=None, baseline=None))
    for name, n_train in (("convnet", 1), ("forest", 2)):  # of three recordings, one is the test
        meta = load_model(tmp_path / "out" / name / "test-s1_test.pt").meta.raw["training"]
        assert len(meta["train_recordings"]) == n_train and meta["test_recordings"] == ["s1_test.edf"]


def test_the_summary_scores_the_early_column_both_ways_and_gives_each_zero_its_time():
    import numpy as np

    from seizurewatch.config import DecisionConfig
    from seizurewatch.research.compare_report import _summary, markdown
    from seizurewatch.research.evaluate import score_events, second_scores
    from seizurewatch.research.predict import Trace

    runs = []
    for name, onset in (("a.edf", 100.0), ("b.edf", 60.0)):
        t = np.arange(1.0, 201.0)
        score = np.where((t > onset) & (t <= onset + 30), 0.7, 0.1)
        score[(t > onset) & (t <= onset + 15)] = 0.9
        early = np.where((t > onset) & (t <= onset + 15), 0.8, 0.05)
        early[(t > 170) & (t <= 180)] = 0.9  # the early output alone ranks an interictal run first
        tr = Trace(name, "m", t, score, 200.0, 0.5, DecisionConfig(k=2, n=3), seizures=[(onset, onset + 30)],
                   outputs=np.stack([score, early], axis=1), output_names=("seizure", "early"))
        runs.append({"windows": {"roc_auc": 1.0, "accuracy": 1.0}, "train_seconds": 1.0, "threshold_seconds": 0.0,
                     "events": score_events([tr], 0.5, tr.decision), "_second_scores": second_scores([tr])})
    s = _summary("m", runs, 15.0)
    pooled = s["seconds"]["pooled"]
    assert pooled["early_auc"] == pytest.approx(1.0)
    assert pooled["early_auc_output"] == pytest.approx(1 - 20 / 370)  # 20 interictal seconds above 30 early
    inter = 2 * (200 - 95)  # each recording less its seizure from 5 s before the onset to 60 s after the end
    assert s["false_alarms"] == 0 and s["interictal_hours"] == pytest.approx(inter / 3600, abs=1e-4)
    assert s["false_alarms_upper95_per_24h"] == pytest.approx(2.9957 * 24 / (inter / 3600), rel=1e-3)
    s["per_fold"] = []
    md = markdown([s], [])
    assert "early AUC (15 s) of the early output, as the challenge scored it" in md
    assert "| 0 in 3.5 min (95 % upper bound 1,232/24 h) |" in md
