"""Issue 26 items 3-4: clips and segments as first-class research data (scored per unit, never replayed,
no latency or false alarms per 24 h), grouped k-fold in compare, early = latency <= 15 s, and ROC
thresholds inside the gap between separable classes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.io
from conftest import run_cli

from seizurewatch.errors import DataError
from seizurewatch.research.dataset import DatasetSpec, SplitSpec, build_dataset, open_dataset
from seizurewatch.research.labels import is_early
from seizurewatch.research.roc import roc
from seizurewatch.research.threshold import target_sensitivity, youden
from seizurewatch.research.unitscore import NOT_CONTINUOUS, kind_of

RATE = 100


def _clip(folder, name, ictal, seed, latency=None):
    rng = np.random.default_rng(seed)
    t = np.arange(RATE) / RATE
    data = rng.normal(0, 5, (2, RATE)) + (60 * np.sin(2 * np.pi * 8 * t) if ictal else 0)
    mat = {"data": data, "freq": float(RATE), "channels": np.array(["Dog_9_c1", "Dog_9_c2"], dtype=object)}
    if latency is not None:
        mat["latency"] = float(latency)
    scipy.io.savemat(folder / name, mat)


def _clips(tmp_path):
    """3 seizures of 4 one-second clips (latency 0, 10, 15, 16 s) and 12 interictal clips (3 blocks)."""
    folder = tmp_path / "clips"
    folder.mkdir()
    n = 0
    for _ in range(3):
        for lat in (0, 10, 15, 16):
            n += 1
            _clip(folder, f"Dog_9_ictal_segment_{n}.mat", True, n, lat)
    for k in range(1, 13):
        _clip(folder, f"Dog_9_interictal_segment_{k}.mat", False, 100 + k)
    return folder


def _model(tmp_path):
    p = tmp_path / "lr.yaml"
    p.write_text("name: lr\narch: bandpower_lr\nepochs: 3\nlr: 0.05\nbatch_size: 8\npatience: 0\nseed: 0\n"
                 "min_windows_per_class: 1\n")  # the tiny corpora here
    return p


def _no_continuous_figures(text):
    """Nothing of a replay: no latency or false-alarm figure other than the 'not continuous' marker."""
    data = json.loads(text) if isinstance(text, str) else text
    flat = json.dumps(data)
    for key in ("latency_s", "fa_per_24h", "events"):
        for chunk in flat.split(f'"{key}": ')[1:]:
            assert chunk.startswith(json.dumps(NOT_CONTINUOUS)), (key, chunk[:60])
    assert '"seconds"' not in flat and '"alarms"' not in flat


def test_early_is_latency_at_most_15_s_as_the_challenge_scored(tmp_path):
    assert is_early(15.0, 15) and is_early(0.0, 15) and not is_early(15.5, 15) and not is_early(None, 15)
    folder = _clips(tmp_path)
    spec = DatasetSpec(recordings=(str(folder),), window_s=1, stride_s=1, stride_ictal_s=1, early_s=15,
                       channels=("c1", "c2"), rate=RATE, split=SplitSpec(assign={"*": "train"}))
    m = build_dataset(spec, tmp_path / "ds")
    ds = open_dataset(tmp_path / "ds")
    assert m["units"] == "clips" and kind_of(ds) == "clips"
    latency = {r["path"].rsplit("/", 1)[-1]: r.get("latency") for r in m["recordings"]}
    early = {row.recording: int(ds.y[row.i, 1]) for row in ds.index}
    at_15 = [n for n, v in latency.items() if v == 15.0]
    assert len(at_15) == 3 and all(early[n] == 1 for n in at_15)  # was 0 with latency < 15
    assert all(early[n] == 0 for n, v in latency.items() if v == 16.0)
    assert sum(early.values()) == 9  # latencies 0, 10, 15 of 3 seizures


def test_a_threshold_on_separable_data_sits_inside_the_gap():
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    p = np.array([0.05, 0.1, 0.2, 0.3, 0.9, 0.95, 0.99])
    for th in (youden(roc(y, p)), target_sensitivity(roc(y, p), 1.0)):
        v = th["value"]
        assert 0.3 < v < 0.9, v  # not the lowest seizure score (0.9), not the highest negative
        logit = math.log(v / (1 - v))
        assert math.isclose(logit, (math.log(0.3 / 0.7) + math.log(0.9 / 0.1)) / 2, rel_tol=1e-9)
        assert th["point"] == {"tpr": 1.0, "fpr": 0.0, "specificity": 1.0}
    # not separable: the value still flags exactly the windows of the chosen ROC point
    y2 = np.array([0, 0, 1, 0, 1, 1])
    p2 = np.array([0.1, 0.2, 0.4, 0.5, 0.8, 0.9])
    v2 = youden(roc(y2, p2))["value"]
    assert 0.5 < v2 < 0.8 or 0.2 < v2 < 0.4


@pytest.fixture(scope="module")
def clip_ds(tmp_path_factory):
    """The clips as a dataset split by seizure (sz3 + one interictal block test, sz2 + another validate), and
    a quick model trained on it."""
    from seizurewatch.research.training_run import train_from_dataset

    tmp = tmp_path_factory.mktemp("clips")
    folder = _clips(tmp)
    spec = DatasetSpec(recordings=(str(folder),), window_s=1, stride_s=1, stride_ictal_s=1, early_s=15,
                       channels=("c1", "c2"), rate=RATE,
                       split=SplitSpec(by="seizure", assign={
                           "Dog_9#ictal-sz3": "test", "Dog_9#interictal-block3": "test", "Dog_9#ictal-sz2": "val",
                           "Dog_9#interictal-block2": "val", "*": "train"}))
    m = build_dataset(spec, tmp / "ds")
    assert m["split_units"]["Dog_9#ictal-sz3"] == "test" and m["split_units"]["Dog_9#interictal-block1"] == "train"
    train_from_dataset(tmp / "ds", _model(tmp), tmp / "m.pt", progress=False)
    return tmp, folder, tmp / "ds", tmp / "m.pt"


def test_compare_k_fold_on_clips_groups_each_seizure_and_scores_per_clip(clip_ds, tmp_path):
    from seizurewatch.research.crossval import CompareOptions, compare
    from seizurewatch.research.parallel import Compute

    root, _, ds_dir, _ = clip_ds
    res = compare(ds_dir, [str(_model(root))], tmp_path / "cmp",
                  CompareOptions(baseline=None, k=3, compute=Compute(workers=1)))
    assert res["units"] == "clips" and res["folding"] == "grouped stratified 3-fold by seizure"
    (s,) = res["models"]
    assert len(s["per_fold"]) == 3
    # each seizure's clips stay in one fold; every fold tests on ictal, early and interictal clips
    tests = [set(f["test"]) for f in res["folds"]]
    for k in range(3):
        seizure = {f"Dog_9_ictal_segment_{4 * k + j}.mat" for j in (1, 2, 3, 4)}
        assert sum(seizure <= t for t in tests) == 1
    for f in s["per_fold"]:
        assert f["units"]["units"] == 8 and f["units"]["ictal_units"] == 4 and f["units"]["early_units"] == 3
        assert f["policy"] == "youden" and 0 < f["threshold"] < 1
    assert s["pooled"]["units"] == 24 and s["pooled"]["early_units"] == 9
    assert s["pooled"]["seizure_auc"] > 0.9  # 8-Hz bursts against noise
    # the dataset has the early class, so the model an early output: the challenge's column is scored on it
    po = s["pooled"]
    assert po["early_auc"] is not None and po["early_auc_output"] is not None
    assert po["challenge_score"] == (po["seizure_auc"] + po["early_auc_output"]) / 2
    _no_continuous_figures({"models": res["models"]})
    assert NOT_CONTINUOUS in res["markdown"] and "fold3" in res["markdown"]
    assert (tmp_path / "cmp" / "roc_units.png").stat().st_size > 0 and (tmp_path / "cmp" / "report.html").is_file()
    with pytest.raises(DataError, match="use --folds K"):
        compare(ds_dir, [str(_model(root))], tmp_path / "loo",
                CompareOptions(baseline=None, compute=Compute(workers=1)))
    with pytest.raises(DataError, match="only 3 seizure group"):
        compare(ds_dir, [str(_model(root))], tmp_path / "k4",
                CompareOptions(baseline=None, k=4, compute=Compute(workers=1)))


def test_evaluate_scores_a_clip_dataset_per_clip_without_replaying(clip_ds, tmp_path):
    _, _, ds_dir, model = clip_ds
    r = run_cli("evaluate", str(model), "--dataset", str(ds_dir), "--split", "test", "--baseline", "none",
                "--out", str(tmp_path / "ev"), timeout=280)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    summary = json.loads(r.stdout)
    assert summary["clips"]["units"] == 8 and summary["clips"]["ictal_units"] == 4
    assert summary["clips"]["early_units"] == 3 and summary["clips"]["seizure_auc"] is not None
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert "events" not in metrics and "seconds" not in metrics
    _no_continuous_figures(summary)
    rows = (tmp_path / "ev" / "units.csv").read_text().splitlines()
    assert rows[0] == "unit,ictal,early,latency_s,score,flagged" and len(rows) == 9
    assert any(line.startswith("Dog_9_ictal_segment_11.mat,1,1,15,") for line in rows)  # latency 15: early


def test_predict_reads_clips(clip_ds, tmp_path):
    _, folder, _, model = clip_ds
    r = run_cli("predict", str(folder), "--model", str(model), "--out", str(tmp_path / "pr"), timeout=280)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["clips"] == 24 and out["scores"]["early_units"] == 9 and out["scores"]["ictal_units"] == 12
    _no_continuous_figures(out)
    csv = (tmp_path / "pr" / "clips-probabilities.csv").read_text().splitlines()
    assert len(csv) == 25 and any(line.startswith("Dog_9_ictal_segment_3.mat,ictal,15,") for line in csv)


def test_threshold_and_evaluate_never_replay_clips(clip_ds, tmp_path):
    from seizurewatch.errors import ConfigError
    from seizurewatch.research.threshold_choice import Validation, choose_threshold

    _, folder, ds_dir, model = clip_ds
    with pytest.raises(ConfigError, match="holds clips"):
        choose_threshold(model, "fa_budget", 0, Validation(dataset=ds_dir), output=tmp_path / "t.pt")
    with pytest.raises(ConfigError, match="holds clips"):
        choose_threshold(model, "oof", None, Validation(dataset=ds_dir), output=tmp_path / "t.pt")
    th = choose_threshold(model, "youden", None, Validation(dataset=ds_dir), output=tmp_path / "t.pt")
    assert th["chosen_on"] == ["ds:val"] and th["policy"] == "youden"  # the clips' windows, nothing replayed
    r = run_cli("evaluate", str(model), "--recordings", str(folder / "Dog_9_ictal_segment_1.mat"), "--baseline",
                "none", "--out", str(tmp_path / "ev2"))
    assert r.returncode == 2 and "scored per clip" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _bonn(tmp_path, n=6):
    """A Bonn-style text-segment corpus as the tests write it: set Z (healthy) and set E (ictal), one bare
    column per file, a STEM.json rate sidecar and STEM_events.tsv (E: the whole segment is a seizure)."""
    rate, seconds = 173.61, 4
    k = int(rate * seconds)
    root = tmp_path / "bonn"
    for s in ("Z", "E"):
        (root / s).mkdir(parents=True)
        for i in range(1, n + 1):
            rng = np.random.default_rng(i + (100 if s == "E" else 0))
            x = rng.normal(0, 20, k) + (150 * np.sin(2 * np.pi * 5 * np.arange(k) / rate) if s == "E" else 0)
            stem = root / s / f"{s}{i:03d}"
            stem.with_suffix(".txt").write_text("".join(f"{int(v)}\n" for v in x))
            stem.with_suffix(".json").write_text(json.dumps({"SamplingFrequency": rate, "channels": ["EEG"],
                                                             "units": "uV"}))
            events = "onset\tduration\teventType\n" + (f"0\t{k / rate:.4f}\tsz\n" if s == "E" else "")
            (root / s / f"{s}{i:03d}_events.tsv").write_text(events)
    return root


def test_a_segment_dataset_with_k_fold_compare_and_evaluate(tmp_path):
    from seizurewatch.research.crossval import CompareOptions, compare
    from seizurewatch.research.parallel import Compute
    from seizurewatch.research.training_run import train_from_dataset

    root = _bonn(tmp_path)
    ds_dir = tmp_path / "ds"
    spec = DatasetSpec(recordings=(str(root),), units="segments", window_s=2, stride_s=1, stride_ictal_s=1,
                       exclusion_s=0, bandpass=(0.5, 40.0), split=SplitSpec(by="recording"))
    build_dataset(spec, ds_dir)
    assert kind_of(open_dataset(ds_dir)) == "segments"
    res = compare(ds_dir, [str(_model(tmp_path))], tmp_path / "cmp",
                  CompareOptions(baseline=None, k=3, compute=Compute(workers=1)))
    (s,) = res["models"]
    assert res["units"] == "segments" and len(s["per_fold"]) == 3
    assert sum(f["units"]["units"] for f in s["per_fold"]) == 12  # every segment tested once
    assert all(f["units"]["ictal_units"] == 2 for f in s["per_fold"])  # stratified: 2 of 4 per fold
    assert s["pooled"]["early_auc"] is None and s["pooled"]["early_auc_why"] == "n/a: segments carry no onset"
    _no_continuous_figures({"models": res["models"]})
    model = tmp_path / "m.pt"
    train_from_dataset(ds_dir, _model(tmp_path), model, progress=False)
    r = run_cli("evaluate", str(model), "--dataset", str(ds_dir), "--split", "test", "--baseline", "none",
                "--out", str(tmp_path / "ev"), timeout=280)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    assert summary["segments"]["units"] >= 2
    assert "events" not in json.loads((tmp_path / "ev" / "metrics.json").read_text())
    _no_continuous_figures(summary)


def test_segments_refuse_an_early_output():
    from seizurewatch.errors import ConfigError

    with pytest.raises(ConfigError, match="segments carry no seizure onset"):
        DatasetSpec(recordings=("x",), units="segments", early_s=15).check("spec.yaml")


def test_k_fold_on_continuous_recordings_groups_by_subject(tmp_path):
    from synthetic_dataset import make_dataset

    from seizurewatch.research.crossval import CompareOptions, compare, kfolds
    from seizurewatch.research.parallel import Compute

    ds_dir = make_dataset(tmp_path / "ds", subjects=("s1", "s2", "s3"), per_split={"train": 4, "val": 2, "test": 2})
    ds = open_dataset(ds_dir)
    assert kind_of(ds) == "continuous"
    fs = kfolds(ds, 3, "subject")
    assert all(len({r.split("_")[0] for r in f.test}) == 1 for f in fs)  # one subject per test part
    assert sorted(r for f in fs for r in f.test) == sorted(ds.index.recording_names)  # each tested once
    for f in fs:
        assert not set(f.test) & set(f.val) and not (set(f.test) | set(f.val)) & set(f.train)
    res = compare(ds_dir, [str(_model(tmp_path))], tmp_path / "cmp",
                  CompareOptions(baseline=None, k=3, group_by="subject", threshold_method=None,
                                 compute=Compute(workers=1)))
    (s,) = res["models"]
    assert [f["test"] for f in s["per_fold"]] == ["fold1", "fold2", "fold3"]
    assert all(f["roc_auc"] is not None for f in s["per_fold"])
    # the synthetic recordings are not on disk: nothing replayed, and the table says so instead of a bare n/a
    assert all(f["why"] == "n/a: test recording not replayed" for f in s["per_fold"])
    assert res["markdown"].count("n/a: test recording not replayed") == 3 * 3  # seizure, early x2, per fold
