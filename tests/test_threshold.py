"""Threshold policies on a known curve (answers computed by hand) and the stored result."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import CONVNET, DOG1

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import ConfigError, DataError
from seizurewatch.modelfile import load_model
from seizurewatch.research.predict import Trace
from seizurewatch.research.roc import fraction_flagged_at_sensitivity, roc
from seizurewatch.research.threshold import by_fa_budget, by_policy, candidates, event_table
from seizurewatch.research.threshold_choice import Validation, choose_threshold

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

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


def mid(lo: float, hi: float) -> float:
    """The middle of (lo, hi] in log-odds: where a ROC point's threshold sits (inside the gap)."""
    z = (np.log(lo / (1 - lo)) + np.log(hi / (1 - hi))) / 2
    return float(1 / (1 + np.exp(-z)))


def test_youden_picks_the_first_maximum_of_j():
    th = by_policy("youden", roc(Y, P), None, None)
    # J = TPR - FPR: 0 .25 .5 .75 .5 .75 .5 .25 0 -> max .75 first reached at threshold .7; the value sits in
    # the gap down to the next score (.6), which flags the same windows
    assert th["value"] == pytest.approx(mid(0.6, 0.7))
    assert th["point"] == {"tpr": 0.75, "fpr": 0.0, "specificity": 1.0}
    assert th["policy"] == "youden"


@pytest.mark.parametrize("target,expected,tpr", [(1.0, (0.3, 0.4), 1.0), (0.75, (0.6, 0.7), 0.75),
                                                 (0.5, (0.7, 0.8), 0.5), (0.3, (0.7, 0.8), 0.5),
                                                 (0.25, (0.8, 0.9), 0.25)])
def test_target_sensitivity_takes_the_highest_threshold_reaching_it(target, expected, tpr):
    th = by_policy("sensitivity", roc(Y, P), target, None)
    assert th["value"] == pytest.approx(mid(*expected))
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
    th = choose_threshold(model, "fa_budget", 0.0, Validation([str(DOG1 / "dog1_rec04.edf")]))
    after = load_model(model).meta
    assert after.weights_sha256 == before.weights_sha256  # same weights
    assert after.threshold == pytest.approx(th["value"]) and after.threshold_policy == "fa_budget"
    assert after.raw["threshold"]["point"]["fa_per_24h"] == 0.0
    assert after.raw["threshold"]["point"]["event_sensitivity"] == 1.0
    assert after.raw["threshold"]["chosen_on"] == ["dog1_rec04.edf"]
    assert (tmp_path / "m-threshold.png").stat().st_size > 5000
    out = tmp_path / "sens.pt2"
    th2 = choose_threshold(model, "sensitivity", 0.9, Validation([str(DOG1 / "dog1_rec04.edf")]), output=out)
    assert load_model(out).meta.threshold == pytest.approx(th2["value"])
    assert th2["point"]["tpr"] >= 0.9


# ----- thresholds that transfer: chosen on out-of-fold traces ---------------------------------

def _oof(seizure, p_seizure, bump=None, duration=300.0) -> Trace:
    t = np.arange(1.0, duration + 1)  # window end times, one hop per second
    p = np.full_like(t, 0.1)
    p[(t >= seizure[0]) & (t < seizure[1])] = p_seizure
    if bump:
        p[(t >= bump[0]) & (t < bump[1])] = 0.6
    return Trace("oof.edf", "m", t, p, duration, 0.5, DecisionConfig(), seizures=[seizure])


OOF = [_oof((150.0, 200.0), 0.9, bump=(50.0, 60.0)), _oof((100.0, 150.0), 0.7)]
QUICK = DecisionConfig(k=3, n=4, hysteresis=0.0, off_hops=1, refractory_s=0.0)


def test_events_criterion_alarms_every_out_of_fold_seizure_with_the_fewest_false_alarms():
    from seizurewatch.research.threshold import by_events, outcome

    # up to 0.1 alarms from the first hops on (no seizure alarmed: 2 unrelated), up to 0.6 also on the
    # bump, above 0.7 misses the 0.7 seizure: only (0.6, 0.7] alarms both seizures and nothing else,
    # and the choice is the middle of that interval in log-odds
    th = by_events(OOF, QUICK)
    lo, hi = th["point"]["tied_range"]
    assert 0.6 < lo < 0.63 and hi == pytest.approx(0.7, abs=0.02) and hi <= 0.7
    mid = 1 / (1 + np.exp(-(np.log(lo / (1 - lo)) + np.log(hi / (1 - hi))) / 2))
    assert th["value"] == pytest.approx(mid) and th["policy"] == "oof_events"
    assert th["point"]["detected"] == 2 and th["point"]["false_alarms"] == 0
    assert th["point"]["latency_s_median"] == 2.0  # the 3rd hop over the threshold
    assert outcome(OOF, 0.6, QUICK)["false_alarms"] == 1 and outcome(OOF, 0.1, QUICK)["detected"] == 0
    assert outcome(OOF, 0.9, QUICK)["detected"] == 1


def test_events_criterion_keeps_a_margin_from_both_cliffs():
    from seizurewatch.research.threshold import by_events

    tr = _oof((100.0, 150.0), 0.9)
    tr.p[[20, 40, 60, 80]] = [0.2, 0.3, 0.4, 0.5]  # single hops: never 3 of 4, so (0.1, 0.9] all tie
    th = by_events([tr], QUICK)
    assert th["value"] == pytest.approx(0.5, abs=0.03)  # the middle of (0.1, 0.9] in log-odds: 0.5


def test_events_criterion_never_chooses_a_pocket_inside_the_passing_range():
    from seizurewatch.research.threshold import by_events, outcome

    # a pre-onset run at 0.45-0.55 ending one hop before the onset: between those values the alarm it
    # raises ends before the seizure (a false alarm to the nurse); below 0.45 it merges into the
    # seizure's alarm, above 0.55 it never alarms. The middle of the whole passing span (0.15..0.85)
    # sits in that pocket (the old choice); it must come from the widest passing run instead.
    tr = _oof((100.0, 150.0), 0.9)
    tr.p[(tr.t >= 92) & (tr.t < 99)] = 0.55  # ends at 99: one hop at 0.44 before the onset at 100
    tr.p[(tr.t >= 99) & (tr.t < 100)] = 0.44
    pocket = outcome([tr], 0.5, QUICK)
    assert pocket["false_alarms"] == 1 and pocket["detected"] == 1  # the pocket exists
    th = by_events([tr], QUICK)
    assert outcome([tr], th["value"], QUICK)["false_alarms"] == 0
    assert outcome([tr], th["value"], QUICK)["detected"] == 1
    assert not 0.44 < th["value"] <= 0.55  # one side of the pocket or the other, never inside


def test_events_criterion_trades_at_most_two_seconds_of_latency_for_margin():
    from seizurewatch.research.threshold import by_events, outcome

    tr = _oof((100.0, 160.0), 0.95)
    tr.p[(tr.t >= 100) & (tr.t < 110)] = np.linspace(0.15, 0.95, 10)  # the model catches up over 10 s
    th = by_events([tr], QUICK)
    fastest = min(outcome([tr], v, QUICK)["latency_s_median"] for v in (0.11, 0.12, 0.15))
    assert outcome([tr], th["value"], QUICK)["latency_s_median"] <= fastest + 2.0
    assert th["value"] > 0.15  # but not at the edge where background probability sits


def test_seconds_criterion_is_youden_on_the_probability_in_force_each_second():
    from seizurewatch.research.threshold import by_seconds, transfer

    th = by_seconds(OOF)
    # at 0.7: 98 of 100 ictal seconds flagged (each seizure's last second already shows 0.1), 2 of 500
    # others (the second before each onset shows the first ictal window); at 0.6 the bump adds 10 more
    assert th["value"] == pytest.approx(mid(0.6, 0.7)) and th["policy"] == "oof_seconds"  # inside the gap
    assert th["point"]["tpr"] == pytest.approx(0.98) and th["point"]["fpr"] == pytest.approx(2 / 500)
    assert transfer(OOF, "seconds", QUICK)["value"] == th["value"]
    with pytest.raises(ConfigError, match="expected one of"):
        transfer(OOF, "magic", QUICK)


def test_oof_policy_retrains_the_models_config_without_each_recording(tmp_path):
    import dataclasses

    from seizurewatch.research.dataset import build_dataset, load_spec
    from seizurewatch.research.training_run import train_from_dataset

    spec = load_spec(Path(__file__).parents[1] / "config" / "dataset-dog1.yaml")
    spec = dataclasses.replace(spec, recordings=tuple(str(DOG1 / Path(r).name) for r in spec.recordings))
    build_dataset(spec, tmp_path / "ds")
    cfg = tmp_path / "lr.yaml"
    cfg.write_text("name: lr\narch: bandpower_lr\nepochs: 3\nlr: 0.01\nbatch_size: 32\nseed: 0\npatience: 0\n")
    model = tmp_path / "lr.pt"
    train_from_dataset(tmp_path / "ds", cfg, model, progress=False)
    th = choose_threshold(model, "oof", on=Validation(dataset=tmp_path / "ds"))
    assert th["policy"] == "oof_events"
    assert th["chosen_on"] == ["dog1_rec01.edf", "dog1_rec02.edf", "dog1_rec03.edf"]  # never the test recording
    assert len(list((tmp_path / "lr.oof").glob("oof-*.pt"))) == 3  # one model without each of them
    assert load_model(model).meta.threshold == pytest.approx(th["value"])
    assert th["point"]["seizures"] == 3
    with pytest.raises(ConfigError, match="needs --dataset"):
        choose_threshold(model, "oof")


def test_an_alarm_starting_well_before_the_onset_is_a_false_alarm_to_the_nurse():
    from seizurewatch.research.evaluate import score_events
    from seizurewatch.scoring import EventRules

    # an alarm from 90 s that runs into a seizure at 100 s: SzCORE's overlap rule counts it as a
    # detection; to the nurse it started on seizure-free signal 10 s before the onset, and no alarm
    # starts for the seizure itself
    tr = _oof((100.0, 150.0), 0.9)
    tr.p[(tr.t >= 88) & (tr.t < 100)] = 0.8
    ev = score_events([tr], 0.5, QUICK)
    assert ev["detected"] == 1  # SzCORE
    assert ev["alarmed"] == 0 and ev["unrelated_alarms"] == 1
    # a start within alarm_before_onset_s (default 5 s) of the onset is the seizure's alarm
    tr.p[(tr.t >= 88) & (tr.t < 97)] = 0.1
    ev = score_events([tr], 0.5, QUICK)
    assert ev["alarmed"] == 1 and ev["unrelated_alarms"] == 0 and ev["latency_s"]["values"] == [-1.0]
    assert score_events([tr], 0.5, QUICK, EventRules(alarm_before_onset_s=0.0))["alarmed"] == 0


def test_events_criterion_chooses_the_k_of_n_rule_with_the_threshold_when_the_config_leaves_it():
    from seizurewatch.research.threshold import RULES, by_events, outcome

    # a 2-hop bump at 0.9 on the first recording: every 2-of-n rule alarms on it at any threshold that
    # catches the seizures, so the fastest rule without a false alarm needs 3 hops (latency 2 s); of the
    # 3-of-n rules, equally fast, the most persistent (3 of 6) is kept
    free = DecisionConfig(hysteresis=0.0, off_hops=1, refractory_s=0.0)
    bumpy = [_oof((150.0, 200.0), 0.9), _oof((100.0, 150.0), 0.9)]
    bumpy[0].p[(bumpy[0].t >= 50) & (bumpy[0].t < 52)] = 0.9
    th = by_events(bumpy, free)
    assert th["decision"]["k"] == 3 and th["decision"]["n"] == 6
    assert th["point"]["false_alarms"] == 0 and th["point"]["latency_s_median"] == 2.0
    assert th["rules_tried"] == [f"{k}/{n}" for k, n in RULES] and (1, 1) not in RULES
    # without the bump two hops suffice (latency 1 s)
    th = by_events([_oof((150.0, 200.0), 0.9), _oof((100.0, 150.0), 0.9)], free)
    assert (th["decision"]["k"], th["decision"]["n"]) == (2, 6) and th["point"]["latency_s_median"] == 1.0
    # a config that fixes k and n keeps them
    fixed = by_events(bumpy, QUICK)
    assert fixed["decision"]["k"] == 3 and fixed["decision"]["n"] == 4 and "rules_tried" not in fixed
    assert outcome(bumpy, th["value"], free.for_model(th, 1.0))["rule"] == "2/6"
    assert th["decision"]["evidence_s"] == 2.0 and th["decision"]["span_s"] == 6.0


def test_the_rule_is_chosen_in_seconds_at_the_traces_hop():
    import dataclasses

    from seizurewatch.config import stored_rule
    from seizurewatch.research.threshold import RULES, by_events, rules_at

    assert rules_at(1.0) == list(RULES) == [(k, n) for n in range(2, 7) for k in range(2, n + 1)]
    assert all(k >= 4 for k, _ in rules_at(0.25))  # at least 1 s of evidence: 4 hops of 0.25 s
    assert max(n for _, n in rules_at(0.25)) == 24  # spans up to 6 s
    free = DecisionConfig(hysteresis=0.0, off_hops=1, refractory_s=0.0)

    def quarter(tr: Trace) -> Trace:  # the same signal seen every 0.25 s
        t = np.arange(0.25, tr.duration + 0.125, 0.25)
        p = tr.p[np.clip(np.ceil(t).astype(int) - 1, 0, len(tr.p) - 1)]
        return dataclasses.replace(tr, t=t, p=p, hop_s=0.25)

    one = [_oof((150.0, 200.0), 0.9), _oof((100.0, 150.0), 0.9)]
    th1, th4 = by_events(one, free), by_events([quarter(t) for t in one], free)
    assert (th1["decision"]["k"], th1["decision"]["n"]) == (2, 6)  # 2 hops of 1 s
    assert (th4["decision"]["k"], th4["decision"]["hop_s"]) == (4, 0.25)  # 1 s of evidence at 0.25 s
    assert th4["point"]["latency_s_median"] < th1["point"]["latency_s_median"]
    assert stored_rule({"decision": th4["decision"]}, 0.25) == (th4["decision"]["k"], th4["decision"]["n"])
    with pytest.raises(DataError, match="different hops"):
        by_events([one[0], quarter(one[1])], free)
