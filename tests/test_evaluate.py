"""Evaluation: window metrics by hand, SzCORE event scoring after the daemon's decision,
and the whole evaluate/predict path on a real Dog_1 recording through the daemon."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import DOG1, MODEL, run_cli

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import DataError
from seizurewatch.research.evaluate import EvaluateOptions, evaluate, score_events, window_metrics
from seizurewatch.research.predict import Trace, alarm_spans, predict_recording, stream_probabilities

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

REC04 = str(DOG1 / "dog1_rec04.edf")


def test_window_metrics_by_hand():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    m = window_metrics(y, p, 0.5)
    assert m["confusion"] == {"tp": 3, "fp": 1, "tn": 3, "fn": 1}
    assert m["accuracy"] == 0.75 and m["sensitivity"] == 0.75 and m["specificity"] == 0.75
    assert m["roc_auc"] == pytest.approx(15 / 16)
    # average precision: recall steps .25 .5 .75 (precision 1) and 1.0 at precision 4/5
    assert m["pr_auc"] == pytest.approx(0.25 * 3 + 0.25 * 0.8)
    assert m["fraction_interictal_flagged_at_99_sensitivity"] == 0.25


def _trace(seizure=(600.0, 660.0), bump=(1500.0, 1510.0)) -> Trace:
    t = np.arange(1.0, 1801.0)  # half an hour, one hop per second
    p = np.full_like(t, 0.05)
    p[(t >= seizure[0] + 4) & (t < seizure[1])] = 0.95  # the model catches up 4 s into the seizure
    p[(t >= bump[0]) & (t < bump[1])] = 0.8
    return Trace("x.edf", "m", t, p, 1800.0, 0.5, DecisionConfig(), seizures=[seizure])


def test_event_scoring_after_the_daemon_decision():
    dec = DecisionConfig(k=3, n=4, hysteresis=0.1, off_hops=3, refractory_s=30.0)
    tr = _trace()
    spans = alarm_spans(tr.t, tr.p, 0.5, dec, tr.duration)
    assert spans == [(606.0, 662.0), (1502.0, 1512.0)]  # 3rd hop over .5 starts; 3 hops below .4 end
    ev = score_events([tr, _trace(seizure=(100.0, 130.0), bump=(1000.0, 1001.0))], 0.5, dec)
    assert ev["seizures"] == 2 and ev["detected"] == 2
    assert ev["false_alarms"] == 1  # the 1 s bump is filtered by k-of-n
    assert ev["fa_per_24h"] == pytest.approx(1 / 1.0 * 24)  # one hour scored in all
    assert ev["precision"] == pytest.approx(2 / 3)
    assert ev["latency_s"]["values"] == [6.0, 6.0]
    assert ev["rules"]["tolerance_start_s"] == 30.0 and ev["rules"]["any_overlap"]
    # the time a false alarm was counted on: each recording less its seizure from 5 s before the onset to
    # 60 s after the end, and the Poisson 95 % upper bound it allows (1 alarm in that time)
    inter = (1800 - 125) + (1800 - 95)
    assert ev["interictal_hours"] == pytest.approx(inter / 3600, abs=1e-5)
    assert ev["unrelated_alarms"] == 1
    assert ev["unrelated_per_24h_upper95"] == pytest.approx(4.7439 / (inter / 3600) * 24, rel=1e-4)


def test_a_zero_is_reported_with_the_time_behind_it():
    from seizurewatch.research.evaluate import fa_evidence, fa_upper_per_24h, interictal_seconds

    assert fa_upper_per_24h(0, 10.0) == pytest.approx(2.9957 / 10 * 24, rel=1e-4)  # 0 in T h: 3.0/T per hour
    assert fa_upper_per_24h(2, 24.0) == pytest.approx(6.2958, rel=1e-4)  # chi-square, 6 degrees of freedom / 2
    assert fa_upper_per_24h(0, 0.0) is None
    assert fa_evidence(0, 37 / 3600) == "0 in 37 s (95 % upper bound 6,995/24 h)"
    assert fa_evidence(0, 2.2 / 60) == "0 in 2.2 min (95 % upper bound 1,961/24 h)"
    assert fa_evidence(1, 30.0) == "1 in 30.0 h (95 % upper bound 4/24 h)"
    # seizures near the ends and overlapping tolerances are not counted twice
    assert interictal_seconds(145.0, [(76.0, 107.0)]) == pytest.approx(145 - (145 - 71))
    assert interictal_seconds(300.0, [(10.0, 20.0), (50.0, 60.0)]) == pytest.approx(300 - (120 - 5))


def test_offline_decision_replays_the_daemon_exactly():
    tr = stream_probabilities(REC04, MODEL)
    # 118 s, 1-s windows every 0.25 s: 469 windows, less any a signal fault keeps from the decision
    assert tr.hop_s == 0.25 and tr.t[0] == 1.0 and 460 <= len(tr.t) <= 469
    assert np.allclose((tr.t - 1.0) / 0.25, np.round((tr.t - 1.0) / 0.25))  # on the 0.25-s schedule
    assert tr.alarms, "the shipped model alarms in rec04's seizure"
    assert alarm_spans(tr.t, tr.p, tr.threshold, tr.decision, tr.duration) == tr.alarms
    assert tr.seizures == [(60.0, 101.0)]


def test_predict_writes_csv_and_timeline(tmp_path):
    out = predict_recording(REC04, MODEL, tmp_path)
    with open(out["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == out["windows"] and 460 <= len(rows) <= 469  # 1-s windows every 0.25 s over 118 s
    assert {r["seizure"] for r in rows if 60 <= float(r["t_end"]) <= 101} == {"1"}
    assert any(r["alarm"] == "1" for r in rows) and all(r["alarm"] == "0" for r in rows if float(r["t_end"]) < 50)
    assert (tmp_path / "dog1_rec04-timeline.png").stat().st_size > 10_000


def test_predict_writes_the_alarms_as_szcore_hypothesis_events(tmp_path):
    """SzCORE's algorithm output: a BIDS events.tsv, one sz row per alarm the daemon raised; read back and
    scored against the recording's own annotation with timescoring, the seizure is found, nothing else."""
    from timescoring.annotations import Annotation as TsAnnotation
    from timescoring.scoring import EventScoring

    from seizurewatch.research.annotations import SZCORE_COLUMNS, read_bids_events, write_bids_events

    out = predict_recording(REC04, MODEL, tmp_path)
    assert out["events"] == str(tmp_path / "dog1_rec04_events.tsv")
    lines = (tmp_path / "dog1_rec04_events.tsv").read_text().splitlines()
    assert lines[0].split("\t") == list(SZCORE_COLUMNS) and len(lines) == 1 + len(out["alarms"]) >= 2
    row = lines[1].split("\t")
    (a, b), = out["alarms"]
    assert float(row[0]) == pytest.approx(a) and float(row[1]) == pytest.approx(b - a) and row[2] == "sz"
    assert out["threshold"] <= float(row[3]) <= 1 and row[6] == "118.000"
    from seizurewatch.edfio import EdfRecording

    with EdfRecording(REC04) as rec:  # the start the replay read from the header, not a second open
        assert row[5] == rec.header.start_datetime.replace("T", " ")[:19] != "n/a"
    hyp = read_bids_events(tmp_path / "dog1_rec04_events.tsv")
    assert [(h.onset, h.description) for h in hyp] == [(pytest.approx(a), "seizure")]
    n = 118 * 10
    s = EventScoring(TsAnnotation([(60.0, 101.0)], 10, n),
                     TsAnnotation([(h.onset, h.onset + h.duration) for h in hyp], 10, n))
    assert (s.tp, s.fp, s.refTrue) == (1, 0, 1)
    # no alarm: one bckg row over the recording, which reads back as no seizure
    quiet = write_bids_events(tmp_path / "quiet_events.tsv", [], 60.0, "2020-01-01T08:00:00")
    assert quiet.read_text().splitlines()[1].split("\t") == ["0.000", "60.000", "bckg", "n/a", "n/a",
                                                              "2020-01-01 08:00:00", "60.000"]
    assert read_bids_events(quiet) == []
    # never over the recording's own events file
    bids = tmp_path / "bids"
    bids.mkdir()
    rec = bids / "sub-01_task-x_eeg.edf"
    rec.symlink_to(REC04)
    (bids / "sub-01_task-x_events.tsv").write_text("onset\tduration\teventType\n60\t41\tsz\n")
    with pytest.raises(DataError, match="the recording's own events file"):
        predict_recording(rec, MODEL, bids)


def test_evaluate_writes_metrics_plots_and_report(tmp_path):
    m = evaluate(MODEL, [REC04], tmp_path, EvaluateOptions(baseline=MODEL))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["windows"]["roc_auc"] == pytest.approx(m["windows"]["roc_auc"])
    w = m["windows"]
    assert w["windows"] == sum(w["confusion"].values()) and 0.5 < w["roc_auc"] <= 1
    assert m["baseline"]["windows"]["accuracy"] == pytest.approx(w["accuracy"])  # same model as baseline
    ev = m["events"]
    assert ev["seizures"] == 1 and ev["detected"] == 1 and 0 <= ev["latency_s"]["mean"] <= 41
    for f in ("roc_pr.png", "confusion.png", "dog1_rec04-timeline.png", "report.html"):
        assert (tmp_path / f).stat().st_size > 2000, f
    html = (tmp_path / "report.html").read_text()
    assert "event sensitivity" in html and "data:image/png;base64," in html


def test_cli_errors_are_one_line(tmp_path):
    r = run_cli("evaluate", str(MODEL), "--dataset", str(tmp_path))
    assert r.returncode == 2 and "not a dataset directory" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("threshold", str(MODEL), "--policy", "fa_budget", "--recordings", REC04)
    assert r.returncode == 2 and "fa_budget needs --target" in r.stderr
    r = run_cli("train", "--dataset", str(tmp_path))
    assert r.returncode == 2 and "--model MODEL.yaml" in r.stderr
