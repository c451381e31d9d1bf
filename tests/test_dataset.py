import csv
import json
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest
import scipy.io
from conftest import DATA, DOG1, ROOT, run_cli
from edf_writer import noise, write_edf

from seizurewatch.errors import DataError
from seizurewatch.preprocess import PreprocessSpec
from seizurewatch.research.dataset import (
    DatasetSpec,
    SplitSpec,
    assign_splits,
    build_dataset,
    default_subject,
    load_spec,
    open_dataset,
)
from seizurewatch.research.dataset.recording import windows_from_recording
from seizurewatch.research.labels import LabelRules
from seizurewatch.schedule import WindowSchedule

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

RATE = 100


def rec(tmp_path, name, seconds, anns, labels=("a", "b"), seed=0):
    return write_edf(tmp_path / name, noise(len(labels), seconds, RATE, seed), RATE, list(labels), annotations=anns)


def index_rows(out):
    with open(out / "index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_windowing_exclusion_and_seams_arithmetic(tmp_path):
    # 300 s, seizure 100-130 s, seam at 150 s; window 10 s, stride 5 s, ictal stride 1 s, exclusion 50 s.
    r = rec(tmp_path, "s1_rec01.edf", 300, [(100, 30, "seizure"), (150, 0, "join")])
    spec = DatasetSpec(recordings=(str(r),), window_s=10, stride_s=5, stride_ictal_s=1, exclusion_s=50,
                       split=SplitSpec(assign={"*": "train"}))
    m = build_dataset(spec, tmp_path / "ds")
    # ictal: starts 100..120 every 1 s. interictal: 0..40 (>= 50 s before onset) and 150..290 (the
    # seam at 150 s cuts the post-ictal exclusion short: 130..140 excluded, 145 straddles the seam).
    assert m["counts"]["train"] == {"total": 21 + 9 + 29, "ictal": 21, "interictal": 38}
    assert m["recordings"][0]["dropped"] == {"exclusion": 13, "partly_ictal": 2, "seam": 1}
    rows = index_rows(tmp_path / "ds")
    ts = [float(r["t_start"]) for r in rows]
    y = np.load(tmp_path / "ds" / "y.npy")
    assert [t for t, v in zip(ts, y[:, 0]) if v] == list(np.arange(100.0, 121.0))
    assert {r["seizure_id"] for r, v in zip(rows, y[:, 0]) if v} == {"s1_rec01#1"}
    assert all(r["seizure_id"] == "" for r, v in zip(rows, y[:, 0]) if not v)
    x = open_dataset(tmp_path / "ds").x
    assert x.shape == (59, 2, 1000) and x[:3].dtype == np.float32


def test_prediction_multi_horizon_arithmetic(tmp_path):
    r = rec(tmp_path, "p_rec01.edf", 400, [(300, 20, "seizure")])
    spec = DatasetSpec(recordings=(str(r),), task="prediction", horizons_s=(30, 60), interictal_min_s=100,
                       window_s=10, stride_s=10, stride_ictal_s=10, split=SplitSpec(assign={"*": "train"}))
    m = build_dataset(spec, tmp_path / "ds")
    assert m["outputs"] == ["preictal_30s", "preictal_60s"]
    assert m["counts"]["train"] == {"total": 26, "preictal_30s": 3, "preictal_60s": 6, "interictal": 20}
    assert m["recordings"][0]["dropped"] == {"near_seizure": 4, "ictal": 2, "postictal": 8}
    y = np.load(tmp_path / "ds" / "y.npy")
    assert y.shape == (26, 2) and y.dtype == np.int8
    assert not (y[:, 0] > y[:, 1]).any()  # within 30 s implies within 60 s
    # the dense stride covers the preictal span (the positive class) of the longest horizon
    m = build_dataset(replace(spec, stride_ictal_s=1), tmp_path / "dense")
    assert m["counts"]["train"] == {"total": 71, "preictal_30s": 21, "preictal_60s": 51, "interictal": 20}
    with pytest.raises(DataError, match=r"no preictal windows after labelling .*horizons 5 s"):
        build_dataset(replace(spec, horizons_s=(5,)), tmp_path / "none")


def _two_subjects(tmp_path):
    paths = []
    for subj in ("s1", "s2"):
        for k in range(1, 4):
            anns = [(60, 20, "seizure"), (200, 15, "seizure")] if k < 3 else [(100, 20, "seizure")]
            paths.append(str(rec(tmp_path, f"{subj}_rec0{k}.edf", 300, anns, seed=k)))
    return paths


@pytest.mark.parametrize("by", ["recording", "seizure", "subject"])
def test_splits_never_share_a_seizure(tmp_path, by):
    paths = _two_subjects(tmp_path)
    spec = DatasetSpec(recordings=tuple(paths), window_s=10, stride_s=5, stride_ictal_s=2, exclusion_s=30,
                       split=SplitSpec(by=by, fractions=(0.5, 0.25, 0.25)), seed=3)
    m = build_dataset(spec, tmp_path / by)
    rows = index_rows(tmp_path / by)
    assert {r["subject"] for r in rows} == {"s1", "s2"}
    where = defaultdict(set)
    for r in rows:
        if r["seizure_id"]:
            where[r["seizure_id"]].add(r["split"])
    assert len(where) == 10 and all(len(s) == 1 for s in where.values())
    unit_splits = defaultdict(set)
    for r in rows:
        unit_splits[{"recording": r["recording"], "subject": r["subject"]}.get(by, r["seizure_id"])].add(r["split"])
    if by != "seizure":
        assert all(len(s) == 1 for s in unit_splits.values())
    if by == "seizure":  # one recording's two seizures may go to different splits
        assert set(m["split_units"]) >= {"s1_rec01.edf#1", "s1_rec01.edf#2"} or "s1_rec01#1" in m["split_units"]
    assert sum(c["total"] for c in m["counts"].values()) == m["n"] == len(rows)
    assert m["counts"]["train"]["ictal"] > 0 and m["counts"]["train"]["interictal"] > 0


def test_default_subjects():
    assert [default_subject(s) for s in ("chb01_03", "chb12_27+", "dog1_rec01", "aaaaaaac_s001_t000", "odd")] == \
        ["chb01", "chb12", "dog1", "aaaaaaac", "odd"]


def test_assign_splits_explicit_and_stratified():
    units = {"a.edf": (100, 10), "b.edf": (100, 10), "c.edf": (100, 10), "d.edf": (100, 0), "e.edf": (50, 0)}
    out = assign_splits(units, SplitSpec(assign={"c": "test"}), seed=0)
    assert out["c.edf"] == "test"
    assert {out["a.edf"], out["b.edf"]} == {"train", "val"}  # positives spread over the splits first
    assert out == assign_splits(units, SplitSpec(assign={"c": "test"}), seed=0)  # deterministic
    free = assign_splits(units, SplitSpec(), seed=5)
    assert {free["a.edf"], free["b.edf"], free["c.edf"]} == {"train", "val", "test"}


def test_balance_per_subject_seeded(tmp_path):
    paths = _two_subjects(tmp_path)
    spec = DatasetSpec(recordings=tuple(paths), window_s=10, stride_s=2, stride_ictal_s=5, exclusion_s=30,
                       balance="subject", split=SplitSpec(by="subject", assign={"s1": "train", "s2": "test"}))
    m = build_dataset(spec, tmp_path / "b1")
    assert m["counts"]["train"]["ictal"] == m["counts"]["train"]["interictal"] > 0
    assert m["counts"]["test"]["interictal"] > 2 * m["counts"]["test"]["ictal"]  # test left as it is
    assert sum(r["dropped"].get("balance", 0) for r in m["recordings"]) > 0
    build_dataset(spec, tmp_path / "b2")
    assert index_rows(tmp_path / "b1") == index_rows(tmp_path / "b2")
    build_dataset(replace(spec, seed=1), tmp_path / "b3")
    assert index_rows(tmp_path / "b1") != index_rows(tmp_path / "b3")


def test_bad_inputs_are_clear_errors(tmp_path):
    ok = rec(tmp_path, "s_rec01.edf", 200, [(20, 10, "seizure")])
    base = DatasetSpec(recordings=(str(ok),), window_s=10, exclusion_s=30)

    bare = write_edf(tmp_path / "s_rec02.edf", noise(2, 200, RATE), RATE, ["a", "b"], plus=False)
    with pytest.raises(DataError, match=r"s_rec02.edf: no annotations found"):
        build_dataset(replace(base, recordings=(str(ok), str(bare))), tmp_path / "o1")

    out_of = rec(tmp_path, "s_rec03.edf", 100, [])
    (tmp_path / "s_rec03.csv").write_text("onset,duration,description\n150,10,seizure\n")
    with pytest.raises(DataError, match=r"s_rec03.edf .*s_rec03.csv.*: seizure annotation 150-160 s lies outside"):
        build_dataset(replace(base, recordings=(str(out_of),)), tmp_path / "o2")

    overlap = rec(tmp_path, "s_rec04.edf", 200, [(20, 30, "seizure"), (40, 10, "seizure")])
    with pytest.raises(DataError, match="overlapping seizure annotations 20-50 s and 40-50 s"):
        build_dataset(replace(base, recordings=(str(overlap),)), tmp_path / "o3")

    other = rec(tmp_path, "s_rec05.edf", 200, [(50, 10, "seizure")], labels=("a", "c"))
    with pytest.raises(DataError, match=r"s_rec05.edf: channel\(s\) b missing"):
        build_dataset(replace(base, recordings=(str(ok), str(other))), tmp_path / "o4")

    with pytest.raises(DataError, match=r"s_rec01.edf: window of 500 s is longer than the recording \(200 s\)"):
        build_dataset(replace(base, window_s=500), tmp_path / "o5")

    with pytest.raises(DataError, match=r"no interictal windows after exclusion .*exclusion': 1"):
        build_dataset(replace(base, exclusion_s=300), tmp_path / "o6")
    none = rec(tmp_path, "s_rec06.edf", 200, [(199, 0, "join")])
    with pytest.raises(DataError, match="no ictal windows"):
        build_dataset(replace(base, recordings=(str(none),)), tmp_path / "o7")

    with pytest.raises(DataError, match="recording not found"):
        build_dataset(replace(base, recordings=(str(tmp_path / "nope.edf"),)), tmp_path / "o8")
    (tmp_path / "o9").mkdir()
    (tmp_path / "o9" / "precious.txt").write_text("x")
    with pytest.raises(DataError, match="not a dataset directory"):
        build_dataset(base, tmp_path / "o9")


def test_warns_about_a_split_without_seizures(tmp_path):
    a = rec(tmp_path, "s_rec01.edf", 200, [(20, 10, "seizure")])
    b = rec(tmp_path, "s_rec02.edf", 200, [(199, 0, "join")])
    spec = DatasetSpec(recordings=(str(a), str(b)), window_s=10, exclusion_s=30,
                       split=SplitSpec(assign={"s_rec01": "train", "s_rec02": "test"}))
    m = build_dataset(spec, tmp_path / "w")
    assert "split test: no positive windows" in m["warnings"] and "split val: no windows" in m["warnings"]


def test_dog1_dataset_matches_the_recordings(tmp_path):
    spec = load_spec(ROOT / "config" / "dataset-dog1.yaml")
    out = tmp_path / "dog1"
    m = build_dataset(spec, out, command="test")
    assert m["format"] == "seizurewatch-dataset/2" and m["task"] == "detection" and m["outputs"] == ["seizure"]
    # rec01-03: 322 windows, 72 ictal, 54 straddling a seam (the shipped model's figures); rec04: 83, 32 ictal
    assert m["counts"]["train"]["total"] + m["counts"]["val"]["total"] == 322
    assert m["counts"]["train"]["ictal"] + m["counts"]["val"]["ictal"] == 72
    assert m["counts"]["test"] == {"total": 83, "ictal": 32, "interictal": 51}
    assert sum(r["dropped"].get("seam", 0) for r in m["recordings"][:3]) == 54
    assert [r["split"] for r in m["recordings"]] == ["train", "train", "val", "test"]
    x = open_dataset(out).x
    assert x.shape == (m["n"], 16, 4000) == tuple(m["shape"]) and x[:2].dtype == np.float32
    y = np.load(out / "y.npy")
    assert y.shape == (m["n"], 1) and y.dtype == np.int8
    assert int(y.sum()) == sum(c["ictal"] for c in m["counts"].values())
    # the same windows as the recipe path (shared preprocessing), byte for byte
    rw = windows_from_recording(str(DOG1 / "dog1_rec04.edf"), PreprocessSpec.from_json(m["preprocess"]),
                                WindowSchedule(10, 1), 1,
                                LabelRules(exclusion_s=300))
    test_rows = [int(r["i"]) for r in index_rows(out) if r["split"] == "test"]
    np.testing.assert_array_equal(x[test_rows], rw.x)
    np.testing.assert_array_equal(y[test_rows], rw.y)
    ds = open_dataset(out)  # the models side's reader
    assert len(ds.rows("train")) == m["counts"]["train"]["total"]


def test_kaggle_detection_clip_folder(tmp_path):
    spec = DatasetSpec(recordings=(str(DOG1 / "clips"),), device=str(ROOT / "devices" / "dog1-ecog16.yaml"),
                       window_s=1, split=SplitSpec(by="seizure"), balance="subject")
    m = build_dataset(spec, tmp_path / "clips")
    rows = index_rows(tmp_path / "clips")
    where = defaultdict(set)
    for r in rows:
        if r["seizure_id"]:
            where[r["seizure_id"]].add(r["split"])
    assert len(where) == 4 and all(len(s) == 1 for s in where.values())
    assert all(m["counts"][s]["ictal"] > 0 for s in ("train", "val", "test"))
    assert m["counts"]["train"]["ictal"] == m["counts"]["train"]["interictal"]
    assert open_dataset(tmp_path / "clips").x.shape == (m["n"], 16, 400)
    with pytest.raises(DataError, match=r"window of 2 s is longer than the clip \(1 s\)"):
        build_dataset(replace(spec, window_s=2), tmp_path / "clips2")


def test_prediction_clips_and_delhi(tmp_path):
    rate = 10.0
    st = {"data": np.random.default_rng(0).normal(size=(2, 6000)), "data_length_sec": 600,
          "sampling_frequency": rate, "channels": np.array(["x_c1", "x_c2"], dtype=object), "sequence": 6}
    scipy.io.savemat(tmp_path / "Dog_9_preictal_segment_1.mat", {"preictal_segment_1": st})
    scipy.io.savemat(tmp_path / "Dog_9_interictal_segment_1.mat", {"interictal_segment_1": {**st, "sequence": 1}})
    spec = DatasetSpec(recordings=(str(tmp_path),), task="prediction", horizons_s=(600, 3600), window_s=60,
                       stride_s=60, channels=("c1", "c2"), rate=rate, split=SplitSpec(assign={"*": "train"}))
    m = build_dataset(spec, tmp_path / "pred")
    # the preictal hour ends 5 min before onset: clip 6 starts 15 min before it
    assert m["counts"]["train"] == {"total": 20, "preictal_600s": 5, "preictal_3600s": 10, "interictal": 10}
    d = DatasetSpec(recordings=(str(DATA / "delhi"),), window_s=5.12, split=SplitSpec(fractions=(0.6, 0.2, 0.2)))
    m = build_dataset(d, tmp_path / "delhi")
    assert m["n"] == 100 and sum(c["ictal"] for c in m["counts"].values()) == 50  # preictal dropped
    assert m["shape"] == [100, 1, 1024]


def test_cli_build_and_show(tmp_path):
    out = tmp_path / "cli"
    r = run_cli("dataset", "build", "--spec", "config/dataset-dog1.yaml", "--out", str(out), "--stride", "2",
                "--assign", "dog1_rec03=test")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["stride_s"] == 2 and m["recordings"][2]["split"] == "test" and "--stride 2" in m["command"]
    show = run_cli("dataset", "show", str(out))
    assert show.returncode == 0 and "dog1_rec04.edf" in show.stdout and f"{m['n']} windows" in show.stdout
    bad = run_cli("dataset", "build", "--recordings", str(tmp_path / "missing.edf"), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "missing.edf: recording not found" in bad.stderr


# ---------------------------------------------------------------------------------------------- storage


def _stored_bytes(folder):
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_stores_the_signal_once_whatever_the_stride(tmp_path):
    """10 s windows every 1 s: the folder is about the preprocessed signal (the x.npy layout was ~10x),
    and every window read back is the preprocessed signal's slice."""
    from seizurewatch.research.dataset.recording import preprocess_recording

    r = rec(tmp_path, "s1_rec01.edf", 600, [(300, 40, "seizure")], labels=("a", "b", "c", "d"))
    spec = DatasetSpec(recordings=(str(r),), window_s=10, stride_s=1, stride_ictal_s=1, exclusion_s=60,
                       split=SplitSpec(assign={"*": "train"}))
    out = tmp_path / "ds"
    m = build_dataset(spec, out)
    signal, _ = preprocess_recording(str(r), PreprocessSpec.from_json(m["preprocess"]))
    assert m["n"] > 400  # about 10x the signal if every window were copied
    assert _stored_bytes(out) <= 1.1 * signal.nbytes
    ds = open_dataset(out)
    assert len(ds.x) == m["n"]
    for row in (0, 17, m["n"] - 1):
        i0 = int(round(ds.index[row].t_start * RATE))
        np.testing.assert_array_equal(ds.x[row], signal[:, i0: i0 + 1000])
    batch = ds.x[np.array([3, 1, 2])]
    assert batch.shape == (3, 4, 1000) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[1], ds.x[1])


def test_old_layout_is_refused_with_how_to_rebuild(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    np.save(old / "x.npy", np.zeros((2, 2, 10), np.float32))
    np.save(old / "y.npy", np.zeros((2, 1), np.int8))
    (old / "manifest.json").write_text(json.dumps({"format": "seizurewatch-dataset/1"}))
    (old / "index.csv").write_text("i,recording,subject,t_start,seizure_id,split\n")
    with pytest.raises(DataError, match=r"old\b.*x\.npy.*seizurewatch dataset build --spec"):
        open_dataset(old)


def test_a_398_5_hz_file_is_resampled_as_the_daemon_does(tmp_path):
    """The daemon resamples a 398.5 Hz source for a 400 Hz model (the rates differ by more than the one
    tolerance); dataset build stores the same samples."""
    from seizurewatch.preprocess import Preprocessor, same_rate

    assert not same_rate(398.5, 400.0) and same_rate(399.61, 400.0)
    rate = 398.5
    data = np.random.default_rng(3).normal(0, 20, (2, int(60 * rate)))
    r = write_edf(tmp_path / "s1_rec01.edf", data, rate, ["a", "b"], annotations=[(30, 10, "seizure")])
    spec = DatasetSpec(recordings=(str(r),), channels=("a", "b"), rate=400.0, window_s=5, stride_s=1,
                       exclusion_s=5, split=SplitSpec(assign={"*": "train"}))
    out = tmp_path / "ds"
    build_dataset(spec, out)
    ds = open_dataset(out)
    stored = np.load(out / ds.manifest["signals"]["s1_rec01.edf"])
    from seizurewatch.edfio import EdfRecording

    with EdfRecording(r) as edf:
        assert edf.header.rate == pytest.approx(rate)
        live = Preprocessor(ds.spec, edf.header.channels, edf.header.rate, where="live")
        expected = np.concatenate([live.process(b) for _, b in edf.chunks(797)], axis=1)
    assert abs(stored.shape[1] - 60 * 400) <= 2  # at 400 Hz, not 398.5 Hz taken as 400
    np.testing.assert_allclose(stored, expected[:, : stored.shape[1]], rtol=1e-5, atol=1e-4)


def test_ready_cut_windows_round_trip_and_a_bad_split_is_named(tmp_path):
    from seizurewatch.research.dataset import write_dataset

    x = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    rows = [{"recording": r, "subject": "s", "t_start": t, "seizure_id": sid, "split": sp}
            for r, t, sid, sp in (("a.edf", 0.0, "", "train"), ("a.edf", 1.5, "a#1", "train"),
                                  ("b.edf", 123456.78125, "", "test"), ("a.edf", 3.0, "a#1", "val"))]
    manifest = {"preprocess": PreprocessSpec(channels=("c1", "c2"), rate=2.0).to_json(), "window_s": 1.5}
    ds = open_dataset(write_dataset(tmp_path / "ok", x, np.eye(4, 1, dtype=np.int8), rows, manifest))
    # t_start exactly as given, 34 h into a recording too (6 significant digits would have said 123457)
    assert [(r.recording, r.t_start, r.seizure_id, r.split) for r in ds.index] == [
        (r["recording"], r["t_start"], r["seizure_id"], r["split"]) for r in rows]
    np.testing.assert_array_equal(ds.x[:], x)
    with pytest.raises(DataError, match="index row 2: split 'unused', expected one of train, val, test"):
        write_dataset(tmp_path / "bad", x, np.zeros((4, 1)), [*rows[:2], {**rows[2], "split": "unused"}, rows[3]],
                      manifest)

    # the reader keeps columns, not a row object per window: splits by code, re-assigned per recording
    assert ds.index.recording.dtype == np.int32 and ds.index.recording_names == ["a.edf", "b.edf"]
    assert ds.rows("train").tolist() == [0, 1] and ds.recordings("val") == ["a.edf"] and ds.subjects == ["s"]
    moved = ds.index.with_splits({"b.edf": "train"}, "unused")
    assert [r.split for r in moved] == ["unused", "unused", "train", "unused"] and moved != ds.index
    # a broken index names its file and line; a window outside its signal names its row
    text = (tmp_path / "ok" / "index.csv").read_text().splitlines()
    (tmp_path / "ok" / "index.csv").write_text("\n".join([*text[:3], text[3].rsplit(",", 1)[0] + ",x", *text[4:]])
                                               + "\n")
    with pytest.raises(DataError, match=r"index.csv line 4: bad row"):
        open_dataset(tmp_path / "ok")
    (tmp_path / "ok" / "index.csv").write_text("\n".join([*text[:4], text[4].rsplit(",", 1)[0] + ",99", *text[5:]])
                                               + "\n")
    with pytest.raises(DataError, match=r"index.csv row 3: window at sample 99 of a.edf is outside its stored signal"):
        open_dataset(tmp_path / "ok")
