"""Issue 16 item 5: formats and corpus layouts as published, each on a small corpus written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyedflib
import pytest
import torch
from conftest import run_cli
from edf_writer import noise, write_edf

from seizurewatch.errors import DataError
from seizurewatch.modelfile import save_model
from seizurewatch.recordings import Recording, TextRecording, open_recording
from seizurewatch.research.annotations import find_annotations
from seizurewatch.research.corpus import discover
from seizurewatch.research.predict import stream_probabilities
from seizurewatch.types import Annotation

RATE = 100


def _write_bdf(path, data, rate, labels, annotations=()):
    w = pyedflib.EdfWriter(str(path), len(labels), file_type=pyedflib.FILETYPE_BDFPLUS)
    try:
        w.setSignalHeaders([{"label": lab, "dimension": "uV", "sample_frequency": rate, "physical_min": -1000.0,
                             "physical_max": 1000.0, "digital_min": -8388608, "digital_max": 8388607,
                             "transducer": "", "prefilter": ""} for lab in labels])
        w.writeSamples([np.ascontiguousarray(row, dtype=np.float64) for row in data])
        for onset, dur, desc in annotations:
            w.writeAnnotation(onset, dur, desc)
    finally:
        w.close()
    return path


def test_chbmit_layout_subjects_and_summary_seizures(tmp_path):
    subj = tmp_path / "chb01"
    subj.mkdir()
    labels = ["FP1-F7", "F7-T7", "T8-P8", "T8-P8"]
    for i in (1, 2):
        write_edf(subj / f"chb01_0{i}.edf", noise(4, 60, 256, seed=i), 256, labels, plus=False)
    (subj / "chb01-summary.txt").write_text(
        "Data Sampling Rate: 256 Hz\n\nFile Name: chb01_01.edf\nNumber of Seizures in File: 0\n\n"
        "File Name: chb01_02.edf\nNumber of Seizures in File: 1\nSeizure 1 Start Time: 12 seconds\n"
        "Seizure 1 End Time: 40 seconds\n")
    recs = discover(tmp_path)
    assert [(r.subject, r.layout, r.format) for r in recs] == [("chb01", "chbmit", "edf")] * 2
    assert recs[0].annotations == () and recs[0].annotation_source.endswith("chb01-summary.txt")
    assert recs[1].annotations == (Annotation(12.0, 28.0, "seizure"),)
    with open_recording(recs[1].path) as rec:
        assert rec.header.channels == ("FP1-F7", "F7-T7", "T8-P8-0", "T8-P8-1")


def test_tusz_layout_montage_from_the_file_and_csv_bi(tmp_path):
    d = tmp_path / "edf" / "train" / "aaaaaaac" / "s001_2002" / "02_tcp_le"
    d.mkdir(parents=True)
    data = noise(3, 30, 250, seed=3)
    edf = write_edf(d / "aaaaaaac_s001_t000.edf", data, 250, ["EEG FP1-LE", "EEG F7-LE", "EEG T3-LE"], plus=False)
    edf.with_suffix(".csv_bi").write_text(
        "# version = csv_v1.0.0\n# bname = aaaaaaac_s001_t000\n# duration = 30.00 secs\n#\n"
        "channel,start_time,stop_time,label,confidence\nTERM,0.0000,10.0000,bckg,1.0000\n"
        "TERM,10.0000,21.5000,seiz,1.0000\nTERM,21.5000,30.0000,bckg,1.0000\n")
    (rec,) = discover(tmp_path)
    assert (rec.subject, rec.session, rec.layout) == ("aaaaaaac", "s001", "tusz")
    assert rec.annotations == (Annotation(10.0, 11.5, "seizure"),)
    assert rec.montage == "LE"  # from the file's own labels (EEG FP1-LE), not only the folder's name
    with open_recording(rec.path) as r:
        assert r.header.channels == ("FP1", "F7", "T3")
        assert r.header.reference == "LE"
        np.testing.assert_allclose(r.read(0, 250), data[:, :250], atol=0.05)
    # a file whose labels name no reference: the release's folder says it (01_tcp_ar)
    d2 = tmp_path / "edf" / "train" / "aaaaaaad" / "s002_2003" / "01_tcp_ar"
    d2.mkdir(parents=True)
    other = write_edf(d2 / "aaaaaaad_s002_t001.edf", data, 250, ["FP1", "F7", "T3"], plus=False)
    other.with_suffix(".csv_bi").write_text(edf.with_suffix(".csv_bi").read_text())
    assert {r.subject: r.montage for r in discover(tmp_path)} == {"aaaaaaac": "LE", "aaaaaaad": "tcp_ar"}
    # the dataset manifest records each recording's montage
    from seizurewatch.research.dataset import DatasetSpec, SplitSpec, build_dataset

    spec = DatasetSpec(recordings=(str(edf),), window_s=2, stride_s=2, stride_ictal_s=1, exclusion_s=2,
                       split=SplitSpec(by="recording", assign={"aaaaaaac_s001_t000": "train"}))
    manifest = build_dataset(spec, tmp_path / "ds")
    assert [e["montage"] for e in manifest["recordings"]] == ["LE"]


def test_bids_layout_szcore_events_and_sidecar(tmp_path):
    eeg = tmp_path / "sub-01" / "ses-01" / "eeg"
    eeg.mkdir(parents=True)
    stem = "sub-01_ses-01_task-szMonitoring_run-00"
    write_edf(eeg / f"{stem}_eeg.edf", noise(2, 60, RATE, seed=4), RATE, ["Fp1-Avg", "F3-Avg"], plus=False)
    (eeg / f"{stem}_eeg.json").write_text(json.dumps({"SamplingFrequency": RATE, "TaskName": "szMonitoring"}))
    (eeg / f"{stem}_events.tsv").write_text(
        "onset\tduration\teventType\tconfidence\tchannels\tdateTime\trecordingDuration\n"
        "0.0\t20.0\tbckg\tn/a\tn/a\t2020-01-01 00:00:00\t60.0\n"
        "20.0\t15.5\tsz_foc_ia\tn/a\tn/a\t2020-01-01 00:00:00\t60.0\n"
        "41.0\t5.0\tsz\tn/a\tn/a\t2020-01-01 00:00:00\t60.0\n")
    (tmp_path / "participants.tsv").write_text("participant_id\nsub-01\n")
    (rec,) = discover(tmp_path)
    assert (rec.subject, rec.session, rec.layout) == ("01", "01", "bids")
    assert rec.annotations == (Annotation(20.0, 15.5, "seizure"), Annotation(41.0, 5.0, "seizure"))
    assert rec.annotation_source.endswith(f"{stem}_events.tsv")


def test_a_bids_tree_written_by_mne_bids_is_read_as_written(tmp_path):
    """The reference writer of BIDS (mne-bids ``write_raw_bids``: the EDF copied into
    ``sub-*/ses-*/eeg``, events.tsv from its annotations, channels/scans/participants tables, a README)
    gives the subjects, sessions, runs and seizures it was told, and no sidecar taken for a signal."""
    mne = pytest.importorskip("mne")
    mne_bids = pytest.importorskip("mne_bids")
    src = tmp_path / "src"
    src.mkdir()
    root = tmp_path / "bids"
    want = {}
    for sub, ses, run, seizures in (("p01", "night1", "01", [(12.0, 9.5)]), ("p01", "night2", "01", []),
                                    ("p02", "night1", "02", [(30.0, 6.0), (44.0, 4.0)])):
        edf = write_edf(src / f"{sub}{ses}.edf", noise(2, 60, RATE, seed=len(want)), RATE, ["Fp1", "F3"], plus=False)
        raw = mne.io.read_raw_edf(edf, preload=False, verbose="error")
        raw.set_annotations(mne.Annotations([a for a, _ in seizures], [d for _, d in seizures],
                                            ["sz_foc_ia"] * len(seizures)))
        path = mne_bids.BIDSPath(subject=sub, session=ses, task="szMonitoring", run=run, datatype="eeg", root=root)
        mne_bids.write_raw_bids(raw, path, verbose="error")
        want[(sub, ses)] = tuple(Annotation(a, d, "seizure") for a, d in seizures)
    assert (root / "participants.tsv").is_file() and any(root.rglob("*_channels.tsv"))
    recs = discover(root)
    assert [(r.subject, r.session, r.layout, r.format) for r in recs] == [
        ("p01", "night1", "bids", "edf"), ("p01", "night2", "bids", "edf"), ("p02", "night1", "bids", "edf")]
    for r in recs:
        assert r.annotations == want[(r.subject, r.session)], r.path
        # mne-bids writes no events.tsv for a recording without events: no seizures, no source
        assert r.annotation_source.endswith("_events.tsv") == bool(r.annotations)
        assert Path(r.path).name.endswith("_eeg.edf") and "_run-" in Path(r.path).name


def test_bdf_plus_signal_and_annotations(tmp_path):
    t = np.arange(20 * RATE) / RATE
    data = np.stack([100 * np.sin(2 * np.pi * 3 * t), 50 * np.cos(2 * np.pi * 7 * t)])
    bdf = _write_bdf(tmp_path / "rec.bdf", data, RATE, ["C3", "C4"], [(5.0, 4.0, "seizure")])
    with open_recording(bdf) as rec:
        assert isinstance(rec, Recording)
        assert rec.header.channels == ("C3", "C4") and rec.header.rate == RATE
        # 24-bit samples over +-1000 uV: a quantum of 0.00012 uV.
        np.testing.assert_allclose(rec.read(0, rec.header.n_samples), data, atol=1e-3)
    assert find_annotations(bdf).annotations == [Annotation(5.0, 4.0, "seizure")]
    (found,) = discover(tmp_path)
    assert found.format == "bdf" and found.annotations == (Annotation(5.0, 4.0, "seizure"),)


def test_csv_with_header_and_json_sidecar_with_events(tmp_path):
    rows = np.round(np.random.default_rng(5).normal(0, 30, (500, 3)), 3)
    csv = tmp_path / "patient7" / "rec.csv"
    csv.parent.mkdir()
    csv.write_text("Fp1,Fp2,Cz\n" + "".join(",".join(f"{v:.3f}" for v in r) + "\n" for r in rows))
    (csv.parent / "rec.json").write_text(json.dumps({"rate": 250, "units": "uV"}))
    (csv.parent / "rec_events.tsv").write_text("onset\tduration\ttrial_type\n0.4\t0.8\tseizure\n")
    with open_recording(csv) as rec:
        h = rec.header
        assert (h.channels, h.rate, h.n_samples, h.units) == (("Fp1", "Fp2", "Cz"), 250.0, 500, ("uV",) * 3)
        np.testing.assert_array_equal(rec.read(0, 500), rows.T.astype(np.float32))
        np.testing.assert_array_equal(np.concatenate([b for _, b in rec.chunks(128)], axis=1),
                                      rows.T.astype(np.float32))
    (found,) = discover(tmp_path)
    assert (found.subject, found.layout, found.format) == ("patient7", "text", "text")
    assert found.annotations == (Annotation(0.4, 0.8, "seizure"),)


def test_bonn_bare_column_with_rate_argument_or_sidecar(tmp_path):
    values = np.arange(-200, 200, dtype=np.int64)
    z = tmp_path / "Z" / "Z001.txt"
    z.parent.mkdir()
    z.write_text("".join(f"{v}\n" for v in values))
    with open_recording(z, rate=173.61, units="uV") as rec:
        assert rec.header.channels == ("ch1",) and rec.header.rate == 173.61
        np.testing.assert_array_equal(rec.read(10, 5)[0], values[10:15].astype(np.float32))
    (z.parent / "Z001.json").write_text(json.dumps({"SamplingFrequency": 173.61, "channels": ["EEG"],
                                                    "units": "mV"}))
    with open_recording(z) as rec:
        assert rec.header.channels == ("EEG",) and rec.header.n_samples == 400
        np.testing.assert_array_equal(rec.read(10, 5)[0], 1000 * values[10:15].astype(np.float32))
    whitespace = tmp_path / "w.txt"
    whitespace.write_text("1 2\n3   4\n")
    np.testing.assert_array_equal(TextRecording(whitespace, rate=1, units="uV").read(0, 2), [[1, 3], [2, 4]])


def test_bad_text_inputs_name_the_file_the_line_and_the_fix(tmp_path):
    z = tmp_path / "Z002.txt"
    z.write_text("1\n2\n")
    with pytest.raises(DataError, match=r"Z002\.txt: a text signal carries no sample rate; give it with --rate.*"
                                        r"Z002\.json"):
        open_recording(z)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: 'x' is not a number"):
        open_recording(bad, rate=10)
    short = tmp_path / "short.csv"
    short.write_text("a,b\n1,2\n3\n")
    with pytest.raises(DataError, match=r"short\.csv:3: 1 values, expected 2"):
        open_recording(short, rate=10)
    (tmp_path / "short.json").write_text('{"rate": "fast"}')
    with pytest.raises(DataError, match=r"short\.json: rate: expected a positive number"):
        open_recording(short)
    (tmp_path / "Z002.json").write_text('{"rate": 100}')
    with pytest.raises(DataError, match=r"--rate 50 disagrees with Z002\.json"):
        open_recording(z, rate=50)
    with pytest.raises(DataError, match=r"unknown signal format '\.xyz'"):
        open_recording(tmp_path / "x.xyz")
    ev = tmp_path / "r_events.tsv"
    ev.write_text("onset\tlabel\n1\tsz\n")
    with pytest.raises(DataError, match=r"r_events\.tsv:1: expected tab-separated columns onset, duration"):
        find_annotations(tmp_path / "r.txt")


# ------------------------------------------------------------------------------------- replay through the daemon

class _Level(torch.nn.Module):
    """P(seizure) = the mean of channel a over the window's last second / 1000 uV."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, :1, -100:].mean(dim=2) / 1000.0).clamp(0.0, 1.0)


def _model(tmp_path, channels):
    meta = {"name": "level", "outputs": ["seizure"], "window_s": 2.0, "hop_s": 1.0,
            "preprocess": {"channels": channels, "rate": float(RATE), "bandpass": None, "notch": None},
            "threshold": {"value": 0.5, "policy": "test"}}
    path = tmp_path / "level.pt"
    save_model(_Level(), meta, path, torch.zeros(2, len(channels), 2 * RATE))
    return path


def _signal(seconds=40):
    t = np.arange(seconds * RATE) / RATE
    data = np.random.default_rng(0).normal(0, 1, (2, len(t)))
    data[0] += np.where((t >= 20) & (t < 30), 900.0, 100.0)
    return data


def _check_trace(tr):
    late = tr.p[(tr.t >= 23) & (tr.t <= 30)]
    early = tr.p[tr.t <= 19]
    assert len(tr.t) >= 35 and np.allclose(early, 0.1, atol=0.01) and np.allclose(late, 0.9, atol=0.01)
    assert tr.seizures == [(20.0, 30.0)]
    assert tr.alarms and 20 <= tr.alarms[0][0] <= 25


def test_csv_and_bdf_replay_through_the_daemon(tmp_path):
    model = _model(tmp_path, ["a", "b"])
    data = _signal()
    csv = tmp_path / "rec.csv"
    csv.write_text("a,b\n" + "".join(f"{x:.4f},{y:.4f}\n" for x, y in data.T))
    (tmp_path / "rec.json").write_text(json.dumps({"rate": RATE, "units": "uV"}))
    (tmp_path / "rec_events.tsv").write_text("onset\tduration\teventType\n20\t10\tsz\n")
    _check_trace(stream_probabilities(csv, model))
    bdf = _write_bdf(tmp_path / "rec2.bdf", data, RATE, ["a", "b"], [(20.0, 10.0, "seizure")])
    _check_trace(stream_probabilities(bdf, model))


def test_cli_replays_a_bare_text_file_given_its_rate(tmp_path):
    model = _model(tmp_path, ["ch1"])
    z = tmp_path / "Z003.txt"
    z.write_text("".join(f"{v:.3f}\n" for v in _signal()[0]))
    r = run_cli("replay", str(z), "--model", str(model), "--probabilities", str(tmp_path / "p.csv"))
    assert r.returncode == 2 and "Z003.txt: a text signal carries no sample rate" in r.stderr
    r = run_cli("replay", str(z), "--rate", str(RATE), "--model", str(model),
                "--probabilities", str(tmp_path / "p.csv"))
    assert r.returncode == 2 and "Z003.txt: channel ch1 declares no unit" in r.stderr and "--units" in r.stderr
    assert not (tmp_path / "p.csv").exists()
    r = run_cli("replay", str(z), "--rate", str(RATE), "--units", "uV", "--model", str(model),
                "--probabilities", str(tmp_path / "p.csv"))
    assert r.returncode == 0, r.stderr
    rows = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    assert len(rows) >= 35 and np.allclose(rows[rows[:, 0] <= 19, 1], 0.1, atol=0.01)
    assert np.allclose(rows[(rows[:, 0] >= 23) & (rows[:, 0] <= 30), 1], 0.9, atol=0.01)


def _write_brainvision(folder, stem, data, rate, labels, markers):
    """A minimal BrainVision triplet (vhdr/vmrk + float32 multiplexed eeg), as recorders write it."""
    (folder / f"{stem}.eeg").write_bytes(np.ascontiguousarray(data.T, dtype="<f4").tobytes())
    chans = "".join(f"Ch{i + 1}={lab},,1,µV\n" for i, lab in enumerate(labels))
    (folder / f"{stem}.vhdr").write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={stem}.eeg\nMarkerFile={stem}.vmrk\nDataFormat=BINARY\nDataOrientation=MULTIPLEXED\n"
        f"NumberOfChannels={len(labels)}\nSamplingInterval={1e6 / rate:g}\n\n[Binary Infos]\n"
        f"BinaryFormat=IEEE_FLOAT_32\n\n[Channel Infos]\n{chans}", encoding="utf-8")
    mk = "".join(f"Mk{i + 2}=Comment,{desc},{int(onset * rate) + 1},{int(dur * rate)},0\n"
                 for i, (onset, dur, desc) in enumerate(markers))
    (folder / f"{stem}.vmrk").write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={stem}.eeg\n\n[Marker Infos]\nMk1=New Segment,,1,1,0\n{mk}", encoding="utf-8")
    return folder / f"{stem}.vhdr"


def test_brainvision_signal_and_markers(tmp_path):
    data = np.round(np.random.default_rng(6).normal(0, 40, (2, 10 * RATE)), 2)
    vhdr = _write_brainvision(tmp_path, "bv", data, RATE, ["Fz", "Cz"], [(5.0, 3.0, "seizure")])
    with open_recording(vhdr) as rec:
        assert rec.header.channels == ("Fz", "Cz") and rec.header.rate == RATE and rec.header.n_samples == 1000
        np.testing.assert_allclose(rec.read(100, 300), data[:, 100:400], atol=1e-3)
    found = find_annotations(vhdr)
    assert [(a.onset, a.duration) for a in found.annotations] == [(5.0, 3.0)]
    assert "seizure" in found.annotations[0].description
    (r,) = discover(tmp_path)
    assert r.format == "brainvision" and len(r.annotations) == 1


def test_inspect_a_text_signal_and_csv_annotations_next_to_it(tmp_path):
    from seizurewatch.research.inspect import inspect_recording

    z = tmp_path / "S" / "S001.txt"
    z.parent.mkdir()
    z.write_text("".join(f"{v:.2f}\n" for v in np.sin(np.arange(2000) / 10.0) * 50))
    (z.parent / "S001.csv").write_text("onset,duration,description\n3,4,seizure\n")
    res = inspect_recording(z, tmp_path / "out", rate=173.61, units="uV")
    assert res.header.rate == 173.61 and res.header.channels == ("ch1",)
    assert res.annotations == [Annotation(3.0, 4.0, "seizure")]
    (r,) = discover(tmp_path / "S")  # S001.csv is the annotations of S001.txt, not a second signal
    assert r.path == str(z) and r.annotations == (Annotation(3.0, 4.0, "seizure"),)


def test_dataset_build_reads_a_chbmit_folder_and_text_signals(tmp_path):
    """dataset build takes a corpus folder in any readable format: recordings found by discover(),
    seizures from the layout's own annotation files, subjects from the file names."""
    from seizurewatch.research.dataset import DatasetSpec, SplitSpec, build_dataset, open_dataset

    labels = ["FP1-F7", "F7-T7", "T8-P8"]
    for s in ("chb01", "chb02"):
        (tmp_path / "chb" / s).mkdir(parents=True)
        for i in (1, 2):
            write_edf(tmp_path / "chb" / s / f"{s}_0{i}.edf", noise(3, 60, 256, seed=i), 256, labels, plus=False)
        (tmp_path / "chb" / s / f"{s}-summary.txt").write_text(
            f"File Name: {s}_01.edf\nNumber of Seizures in File: 0\n\n"
            f"File Name: {s}_02.edf\nNumber of Seizures in File: 1\nSeizure 1 Start Time: 20 seconds\n"
            "Seizure 1 End Time: 30 seconds\n")
    spec = DatasetSpec(recordings=(str(tmp_path / "chb"),), window_s=2, stride_s=2, stride_ictal_s=1, exclusion_s=5,
                       split=SplitSpec(by="subject", assign={"chb01": "train", "chb02": "test"}))
    build_dataset(spec, tmp_path / "ds")
    ds = open_dataset(tmp_path / "ds")
    rows = ds.index
    assert sorted({r.recording for r in rows}) == ["chb01_01.edf", "chb01_02.edf", "chb02_01.edf", "chb02_02.edf"]
    assert {r.subject: r.split for r in rows} == {"chb01": "train", "chb02": "test"}
    ictal = [r for r in rows if ds.y[r.i, 0] > 0.5]
    assert {r.recording for r in ictal} == {"chb01_02.edf", "chb02_02.edf"}  # from the summary files only

    text = tmp_path / "txt"
    text.mkdir()
    for i in (1, 2):
        np.savetxt(text / f"s{i}.csv", noise(2, 30, 100, seed=i).T, delimiter=",", header="a,b", comments="")
        (text / f"s{i}.json").write_text(json.dumps({"rate": 100, "units": "uV"}))
        (text / f"s{i}_events.tsv").write_text("onset\tduration\teventType\n10\t6\tsz\n")
    spec = DatasetSpec(recordings=(str(text),), window_s=2, stride_s=2, exclusion_s=2,
                       split=SplitSpec(assign={"*": "train"}))
    m = build_dataset(spec, tmp_path / "ds-text")
    assert [Path(r["path"]).name for r in m["recordings"]] == ["s1.csv", "s2.csv"]
    assert all(r["positive"] and r["annotations"].endswith("_events.tsv") for r in m["recordings"])
    assert open_dataset(tmp_path / "ds-text").x.shape[1:] == (2, 200)
