"""Threshold policies on a known curve (answers computed by hand) and the stored result."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import CONVNET, DOG1

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import ConfigError, DataError
from seizurewatch.modelfile import load_model
from seizurewatch.research.predict import Trace
from seizurewatch.research.roc import fraction_flagged_at_sensitivity, roc
from seizurewatch.research.threshold import by_fa_budget, by_policy, candidates, choose_threshold, event_table

# 4 interictal, 4 seizure windows. Sorted by score: .9+ .8+ .7+ .6- .4+ .3- .2- .1-
Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
# thresholds inf .9 .8 .7 .6 .4 .3 .2 .1 -> TPR 0 .25 .5 .75 .75 1 1 1 1, FPR 0 0 0 0 .25 .25 .5 .75 1


def test_known_curve():
    c = roc(Y, P)
    assert c.tpr.tolist() == [0, 0.25, 0.5, 0.75, 0.75, 1, 1, 1, 1]
    assert c.fpr.tolist() == [0, 0, 0, 0, 0.25, 0.25, 0.5, 0.75, 1]
    assert c.auc == pytest.approx(15 / 16)  # one mis-ordered pair (.6 negative above .4 positive) of 16
    assert fraction_flagged_at_sensitivity(c, 0.99) == 0.25


def test_youden_picks_the_first_maximum_of_j():
    th = by_policy("youden", roc(Y, P), None, None)
    # J = TPR - FPR: 0 .25 .5 .75 .5 .75 .5 .25 0 -> max .75 first reached at threshold .7
    assert th["value"] == pytest.approx(0.7)
    assert th["point"] == {"tpr": 0.75, "fpr": 0.0, "specificity": 1.0}
    assert th["policy"] == "youden"


@pytest.mark.parametrize("target,expected,tpr", [(1.0, 0.4, 1.0), (0.75, 0.7, 0.75), (0.5, 0.8, 0.5),
                                                 (0.3, 0.8, 0.5), (0.25, 0.9, 0.25)])
def test_target_sensitivity_takes_the_highest_threshold_reaching_it(target, expected, tpr):
    th = by_policy("sensitivity", roc(Y, P), target, None)
    assert th["value"] == pytest.approx(expected)
    assert th["point"]["tpr"] == tpr and th["target"] == target


TABLE = [  # threshold, event sensitivity, false alarms / 24 h
    {"threshold": 0.2, "sensitivity": 1.0, "fa_per_24h": 48.0},
    {"threshold": 0.4, "sensitivity": 1.0, "fa_per_24h": 24.0},
    {"threshold": 0.5, "sensitivity": 1.0, "fa_per_24h": 24.0},
    {"threshold": 0.6, "sensitivity": 1.0, "fa_per_24h": 24.0},
    {"threshold": 0.7, "sensitivity": 0.5, "fa_per_24h": 0.0},
    {"threshold": 0.9, "sensitivity": 0.0, "fa_per_24h": 0.0},
]


@pytest.mark.parametrize("budget,expected", [(100, 0.5), (30, 0.5), (24, 0.5), (10, 0.7), (0, 0.7)])
def test_false_alarm_budget(budget, expected):
    # 100 and 30: sensitivity 1.0 at .2 (48/24 h, if allowed) .4 .5 .6 (24/24 h); fewest FA -> .4 .5 .6,
    # the middle of the three -> .5.  10 and 0: only .7 (0.5) and .9 (0.0) fit -> .7.
    th = by_fa_budget(TABLE, budget)
    assert th["value"] == pytest.approx(expected)
    assert th["policy"] == "fa_budget" and th["target"] == budget


def test_false_alarm_budget_ties_go_to_the_best_window_youden_j():
    # .4 .5 .6 tie on events; J .5 .75 .75 -> .5 and .6 remain -> the lower of the two middles, .5
    table = [dict(r, window_j=j) for r, j in zip(TABLE, [0.2, 0.5, 0.75, 0.75, 0.4, 0.0])]
    assert by_fa_budget(table, 30)["value"] == pytest.approx(0.5)
    table = [dict(r, window_j=j) for r, j in zip(TABLE, [0.2, 0.5, 0.6, 0.75, 0.4, 0.0])]
    assert by_fa_budget(table, 30)["value"] == pytest.approx(0.6)


def test_false_alarm_budget_that_nothing_meets_is_an_error():
    with pytest.raises(DataError, match=r"within 10/24 h.*lowest: 24/24 h at threshold 0.4"):
        by_fa_budget(TABLE[:4], 10)
    with pytest.raises(ConfigError, match="--target"):
        by_policy("fa_budget", None, None, TABLE)
    with pytest.raises(ConfigError, match="expected one of"):
        by_policy("magic", None, None, None)


def _trace() -> Trace:
    """One hour at 1 Hz: a seizure 1000-1060 s (p=.9), a bump 2000-2005 s (p=.6), one 3000-3003 s (p=.4)."""
    t = np.arange(1.0, 3601.0)
    p = np.full_like(t, 0.1)
    p[(t >= 1000) & (t < 1060)] = 0.9
    p[(t >= 2000) & (t < 2005)] = 0.6
    p[(t >= 3000) & (t < 3003)] = 0.4
    return Trace("synthetic.edf", "m", t, p, 3600.0, 0.5, DecisionConfig(), seizures=[(1000.0, 1060.0)])


def test_event_table_counts_alarms_after_the_daemon_smoothing():
    dec = DecisionConfig(k=3, n=4, hysteresis=0.0, off_hops=1, refractory_s=0.0)
    rows = {r["threshold"]: r for r in event_table([_trace()], np.array([0.3, 0.5, 0.7, 0.95]), dec)}
    assert rows[0.3]["sensitivity"] == 1.0 and rows[0.3]["fa_per_24h"] == pytest.approx(48.0)  # both bumps alarm
    assert rows[0.5]["fa_per_24h"] == pytest.approx(24.0)  # only the 5 s bump lasts 3 of 4 hops
    assert rows[0.7]["sensitivity"] == 1.0 and rows[0.7]["fa_per_24h"] == 0.0
    assert rows[0.7]["latency_s"] == 2.0  # 3rd hop over threshold: t = 1002
    assert rows[0.95]["sensitivity"] == 0.0
    strict = DecisionConfig(k=4, n=4, hysteresis=0.0, off_hops=1, refractory_s=0.0)
    rows = {r["threshold"]: r for r in event_table([_trace()], np.array([0.3]), strict)}
    assert rows[0.3]["fa_per_24h"] == pytest.approx(24.0)  # the 3 s bump no longer reaches 4 of 4
    assert candidates([_trace()]).tolist() == [0.1, 0.4, 0.6, 0.9]


def test_choose_threshold_writes_the_metadata_the_daemon_reads(tmp_path):
    model = tmp_path / "m.pt"
    shutil.copy(CONVNET, model)  # (re-saved as .pt2 below: the shipped forest is TorchScript only)
    before = load_model(model).meta
    th = choose_threshold(model, "fa_budget", 0.0, recordings=[str(DOG1 / "dog1_rec04.edf")])
    after = load_model(model).meta
    assert after.sha256 == before.sha256  # same weights
    assert after.threshold == pytest.approx(th["value"]) and after.threshold_policy == "fa_budget"
    assert after.raw["threshold"]["point"]["fa_per_24h"] == 0.0
    assert after.raw["threshold"]["point"]["event_sensitivity"] == 1.0
    assert after.raw["threshold"]["chosen_on"] == ["dog1_rec04.edf"]
    assert (tmp_path / "m-threshold.png").stat().st_size > 5000
    out = tmp_path / "sens.pt2"
    th2 = choose_threshold(model, "sensitivity", 0.9, recordings=[str(DOG1 / "dog1_rec04.edf")], output=out)
    assert load_model(out).meta.threshold == pytest.approx(th2["value"])
    assert th2["point"]["tpr"] >= 0.9
