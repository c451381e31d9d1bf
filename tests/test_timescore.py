"""Time-resolved scoring: a known probability trace gives a known AUC."""

import numpy as np
import pytest

from seizurewatch.research.timescore import SecondScores, probability_per_second, score_seconds, second_labels


def test_probability_in_force_is_the_latest_window_that_ended():
    # windows end at 10, 11, 12.5 (a late hop) and 14 s; 15 s of signal
    p = probability_per_second(np.array([10.0, 11.0, 12.5, 14.0]), np.array([0.1, 0.2, 0.3, 0.4]), 15.0)
    assert len(p) == 15
    assert np.isnan(p[:9]).all()  # seconds 0..8 end before the first full window
    assert p[9] == 0.1 and p[10] == 0.2
    assert p[11] == 0.2  # second [11, 12): no new window yet, 0.2 still in force
    assert p[12] == 0.3 and p[13] == 0.4 and p[14] == 0.4


def test_labels_by_midpoint_and_early_span():
    ictal, early = second_labels(40, [(10.0, 30.0)], early_s=15.0)
    assert np.flatnonzero(ictal).tolist() == list(range(10, 30))
    assert np.flatnonzero(early).tolist() == list(range(10, 25))


def test_known_trace_gives_known_aucs():
    # 100 s, seizure 40-70 s; probability in force: 0.9 for early seconds, 0.6 late ictal,
    # 0.1 interictal except ten interictal seconds at 0.7 (false positives)
    n = 100
    per_s = np.full(n, 0.1)
    per_s[40:55] = 0.9
    per_s[55:70] = 0.6
    per_s[80:90] = 0.7
    t_end = np.arange(1, n + 1, dtype=float)  # a window ends at the end of every second
    r = SecondScores.from_trace("rec", t_end, per_s, float(n), [(40.0, 70.0)])
    s = score_seconds([r])
    # seizure AUC: 30 ictal vs 70 other; the 15 late ictal at 0.6 lose to the 10 FPs at 0.7
    expected_seizure = 1 - (15 * 10) / (30 * 70)
    assert s["pooled"]["seizure_auc"] == pytest.approx(expected_seizure)
    # early AUC: the 15 early seconds beat all 85 others
    assert s["pooled"]["early_auc"] == pytest.approx(1.0)
    assert s["pooled"]["seconds_unscored"] == 0


def test_ties_count_half_and_unscored_seconds_are_reported():
    n = 20
    t_end = np.arange(5, n + 1, dtype=float)  # first window ends at 5 s: seconds 0..3 unscored
    p = np.full(len(t_end), 0.5)  # a constant output ranks nothing: AUC 0.5
    r = SecondScores.from_trace("flat", t_end, p, float(n), [(2.0, 12.0)])
    s = score_seconds([r])
    assert s["pooled"]["seizure_auc"] == pytest.approx(0.5)
    assert s["pooled"]["seconds_unscored"] == 4
    assert s["pooled"]["ictal_seconds_unscored"] == 2  # seconds 2 and 3


def test_pooled_differs_from_mean_when_recordings_are_calibrated_differently():
    n = 10
    t = np.arange(1, n + 1, dtype=float)
    a = np.r_[np.full(5, 0.0), np.full(5, 0.2)]  # perfect within, low scale
    b = np.r_[np.full(5, 0.5), np.full(5, 1.0)]  # perfect within, high scale
    recs = [SecondScores.from_trace("a", t, a, n, [(5.0, 10.0)]), SecondScores.from_trace("b", t, b, n, [(5.0, 10.0)])]
    s = score_seconds(recs)
    assert s["seizure_auc_mean"] == pytest.approx(1.0) and s["seizure_auc_min"] == pytest.approx(1.0)
    # pooled: a's ictal 0.2 lose to b's interictal 0.5 (25 of 100 pairs)
    assert s["pooled"]["seizure_auc"] == pytest.approx(1 - 25 / 100)
    assert [r["recording"] for r in s["recordings"]] == ["a", "b"]


def test_the_early_column_is_scored_both_ways():
    # the alarm score ranks late ictal seconds (0.6) above a run of seizure-like interictal ones (0.5)
    # and early ones above both; the model's own early output ranks the interictal run first
    n = 100
    t_end = np.arange(1, n + 1, dtype=float)
    score = np.full(n, 0.1)
    score[40:55], score[55:70], score[80:90] = 0.9, 0.6, 0.5
    early = np.full(n, 0.1)
    early[40:55], early[80:90] = 0.7, 0.8
    r = SecondScores.from_trace("rec", t_end, score, float(n), [(40.0, 70.0)], p_early=early)
    s = score_seconds([r])["pooled"]
    assert s["early_auc"] == pytest.approx(1.0)
    expected_own = 1 - (15 * 10) / (15 * 85)  # the 15 early seconds lose to the 10 interictal at 0.8
    assert s["early_auc_output"] == pytest.approx(expected_own)
    assert s["challenge_score"] == pytest.approx((s["seizure_auc"] + expected_own) / 2)
    # a model without an early output (on any recording) has no such column
    plain = SecondScores.from_trace("plain", t_end, score, float(n), [(40.0, 70.0)])
    both = score_seconds([r, plain])
    assert both["pooled"]["early_auc_output"] is None and both["pooled"]["challenge_score"] is None
    assert both["recordings"][0]["early_auc_output"] is None and both["early_auc_output_mean"] is None
