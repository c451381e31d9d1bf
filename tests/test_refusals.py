"""Issue 26 item 2: nothing silently ignored or impossible. Each refusal is one line, exit 2, nothing
written; what used to be ignored (``--assign``, a sidecar beside a symbolic link, a text signal's folder)
is now honoured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import ROOT, run_cli
from synthetic_dataset import make_dataset, tiny_model_yaml
from test_formats import RATE, _model

from seizurewatch.cli import build_parser
from seizurewatch.cli.data_cmds import spec_from_args
from seizurewatch.replay import ReplayOptions, replay
from seizurewatch.research.dataset import assign_splits, open_dataset

SEG_S = 20


def _one_line_refusal(r: subprocess.CompletedProcess, *needles: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def _segment(path: Path, seizure: bool, seed: int, sidecar: Path | None = None) -> Path:
    """A Bonn-style segment: one bare column, 20 s at 100 Hz; set E is ictal throughout (a 12 Hz rhythm)."""
    rng = np.random.default_rng(seed)
    t = np.arange(SEG_S * RATE) / RATE
    # test_formats' level model reads the mean over the last second / 1000 µV: 0.9 in a seizure, 0 outside
    x = rng.normal(0, 20, len(t)) + (900 + 150 * np.sin(2 * np.pi * 12 * t) if seizure else 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{v:.2f}\n" for v in x))
    side = sidecar or path
    side.parent.mkdir(parents=True, exist_ok=True)
    side.with_suffix(".json").write_text(json.dumps({"rate": RATE, "units": "uV"}))
    Path(str(side.with_suffix("")) + "_events.tsv").write_text(
        "onset\tduration\teventType\n" + (f"0\t{SEG_S}\tsz\n" if seizure else ""))
    return path


def _corpus(root: Path, n: int = 3) -> Path:
    for i in range(n):
        _segment(root / "E" / f"S{i:03d}.txt", True, i)
        _segment(root / "A" / f"Z{i:03d}.txt", False, 100 + i)
    return root


def test_command_line_assign_overrides_the_spec(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("recordings: [a.edf]\nsplit:\n  assign: {dog1_rec03: val, dog1_rec04: test, dog1_rec05: val}\n")
    args = build_parser().parse_args(["dataset", "build", "--spec", str(spec), "--out", str(tmp_path / "o"),
                                      "--assign", "dog1_rec0[1-4]=train"])
    s = spec_from_args(args)
    assert "overrides the spec's split.assign dog1_rec03: val, dog1_rec04: test" in capsys.readouterr().err
    units = {f"dog1_rec0{i}": (100, 10) for i in range(1, 6)}
    assert assign_splits(units, s.split, 0) == {"dog1_rec01": "train", "dog1_rec02": "train", "dog1_rec03": "train",
                                                "dog1_rec04": "train", "dog1_rec05": "val"}
    # an exact name on the command line beats the spec's glob too
    spec.write_text("recordings: [a.edf]\nsplit:\n  assign: {'dog1_*': train}\n")
    args = build_parser().parse_args(["dataset", "build", "--spec", str(spec), "--out", str(tmp_path / "o"),
                                      "--assign", "dog1_rec04=test"])
    assert assign_splits(units, spec_from_args(args).split, 0)["dog1_rec04"] == "test"


def test_text_segments_subject_is_the_folder_and_build_closes_its_cluster_quietly(tmp_path):
    corpus = _corpus(tmp_path / "bonn")
    out = tmp_path / "ds"
    r = run_cli("dataset", "build", "--recordings", str(corpus), "--window", "2", "--stride", "2",
                "--stride-ictal", "2", "--exclusion", "0", "--split-by", "subject", "--assign", "E=train",
                "A=train", "--out", str(out), timeout=600)
    assert r.returncode == 0, r.stderr
    assert "still alive" not in r.stderr and "killing" not in r.stderr  # the Dask cluster closed cleanly
    ds = open_dataset(out)
    assert {Path(e["path"]).parent.name: e["subject"] for e in ds.manifest["recordings"]} == {"E": "E", "A": "A"}
    assert sorted(ds.manifest["split_units"]) == ["A", "E"]
    # a second build into the same folder is refused (a build can take hours), unless asked to replace it
    args = ("dataset", "build", "--recordings", str(corpus), "--window", "4", "--stride", "4", "--stride-ictal", "4",
            "--exclusion", "0", "--split-by", "subject", "--assign", "E=train", "A=train", "--out", str(out))
    before = (out / "manifest.json").read_bytes()
    _one_line_refusal(run_cli(*args, timeout=600), f"{out}: holds a dataset already", "--overwrite")
    assert (out / "manifest.json").read_bytes() == before  # nothing written
    r = run_cli(*args, "--overwrite", timeout=600)
    assert r.returncode == 0, r.stderr
    assert open_dataset(out).window_s == 4.0


def test_band_edge_at_or_above_nyquist_refused_at_build_and_train(tmp_path):
    corpus = _corpus(tmp_path / "bonn", n=1)
    out = tmp_path / "ds"
    r = run_cli("dataset", "build", "--recordings", str(corpus), "--window", "2", "--bandpass", "1", "50",
                "--out", str(out))
    _one_line_refusal(r, "bandpass[1]", "50", "Nyquist frequency at 100 Hz is 50 Hz", "--bandpass")
    assert not out.exists()
    ds = make_dataset(tmp_path / "syn")
    manifest = json.loads((ds / "manifest.json").read_text())
    manifest["preprocess"]["bandpass"] = [1.0, 150.0]  # 256 Hz windows: Nyquist 128 Hz
    (ds / "manifest.json").write_text(json.dumps(manifest))
    model = tmp_path / "m.pt"
    r = run_cli("train", "--dataset", str(ds), "--model", str(tiny_model_yaml(tmp_path / "m.yaml")), "-o", str(model))
    _one_line_refusal(r, "manifest.json", "bandpass[1]", "128 Hz", "rebuild the dataset")
    assert not model.exists() and not list(tmp_path.glob("m.pt*"))


def test_window_longer_than_a_segment_refused(tmp_path):
    corpus = _corpus(tmp_path / "bonn", n=1)
    out = tmp_path / "ds"
    r = run_cli("dataset", "build", "--recordings", str(corpus), "--window", "30", "--out", str(out))
    _one_line_refusal(r, "window of 30 s is longer than the recording (20 s)", "--window 20 or less")
    assert not out.exists()


def test_too_few_windows_per_class_and_one_channel_hills_refused_at_train(tmp_path):
    few = make_dataset(tmp_path / "few", per_split={"train": 8, "val": 4, "test": 4})
    model = tmp_path / "m.pt"
    r = run_cli("train", "--dataset", str(few), "--model", str(tiny_model_yaml(tmp_path / "m.yaml")), "-o", str(model))
    _one_line_refusal(r, "4 training window(s) of one class", "at least 10 (train.min_windows_per_class)")
    assert not list(tmp_path.glob("m.pt*"))
    corpus = _corpus(tmp_path / "bonn", n=3)
    ds = tmp_path / "ds"
    r = run_cli("dataset", "build", "--recordings", str(corpus), "--window", "1", "--stride", "1",
                "--stride-ictal", "1", "--exclusion", "0", "--fractions", "1", "0", "0", "--out", str(ds),
                timeout=600)
    assert r.returncode == 0, r.stderr
    hills = tmp_path / "hills.yaml"
    hills.write_text("name: h\narch: hills_forest\narch_kwargs: {trees: 5}\n")
    r = run_cli("train", "--dataset", str(ds), "--model", str(hills), "-o", str(model))
    _one_line_refusal(r, "'hills_forest'", "correlate channels, and this dataset has 1", "bandpower_lr")
    assert not list(tmp_path.glob("m.pt*"))


def test_symlinked_text_signals_keep_their_sidecars(tmp_path):
    """The corpus holds links to signals stored elsewhere; the sidecars (rate, units, events) are beside the
    links only. build, replay, predict and evaluate use the path the user typed."""
    store = tmp_path / "store"
    linked = tmp_path / "corpus" / "E"
    sig = _segment(store / "blob1.txt", True, 1, sidecar=linked / "S001.txt")
    (linked / "S001.txt").symlink_to(sig)
    sig = _segment(store / "blob2.txt", False, 2, sidecar=tmp_path / "corpus" / "A" / "Z001.txt")
    (tmp_path / "corpus" / "A" / "Z001.txt").symlink_to(sig)
    link = linked / "S001.txt"
    model = _model(tmp_path, ["ch1"])
    res = replay(link, ReplayOptions(model=model))
    assert res.annotation_source.endswith("S001_events.tsv") and res.alarms
    r = run_cli("dataset", "build", "--recordings", str(link), str(tmp_path / "corpus" / "A" / "Z001.txt"),
                "--window", "2", "--exclusion", "0", "--assign", "*=train", "--out", str(tmp_path / "ds"),
                timeout=600)
    assert r.returncode == 0, r.stderr
    assert str(link) in [e["path"] for e in open_dataset(tmp_path / "ds").manifest["recordings"]]
    r = run_cli("predict", str(link), "--model", str(model), "--out", str(tmp_path / "pred"), timeout=600)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pred" / "S001-probabilities.csv").is_file()
    r = run_cli("evaluate", str(model), "--recordings", str(link), "--out", str(tmp_path / "ev"), timeout=600)
    assert r.returncode == 0, r.stderr
    assert "blob1" not in r.stdout + r.stderr


def test_a_closed_stdout_ends_quietly(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    p = subprocess.Popen([sys.executable, "-m", "seizurewatch", "dataset", "show", str(ds), "--json"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # the reader went away before a line was written (`| head -0`)
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141, err
    assert err == ""
