"""The early output as a second trigger: the decision rule, its place in the model file, its choice out of fold."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DOG1, MODEL

from seizurewatch.config import DecisionConfig, stored_gain
from seizurewatch.decision import AlarmDecision
from seizurewatch.research.predict import Trace, alarm_spans
from seizurewatch.research.threshold import outcome, transfer
from seizurewatch.research.trigger import EARLY_GAINS, by_events_trigger

QUICK = DecisionConfig(k=3, n=4, hysteresis=0.0, off_hops=1, refractory_s=0.0)


def _starts(dec: AlarmDecision, p: list[float], early: list[float | None]) -> list[float]:
    return [ev.t for i, (pi, ei) in enumerate(zip(p, early)) for ev in dec.update(float(i), pi, ei)
            if ev.event == "start"]


def test_the_early_output_counts_as_evidence_only_with_a_gain():
    p, early = [0.3] * 6, [0.4] * 6  # the score never reaches 0.5; the early output reaches 0.5 / 1.25
    assert _starts(AlarmDecision(QUICK, 0.5), p, early) == []  # no gain: as before
    with_gain = DecisionConfig(k=3, n=4, hysteresis=0.0, off_hops=1, refractory_s=0.0, early_gain=1.25)
    assert _starts(AlarmDecision(with_gain, 0.5), p, early) == [2.0]  # the third hop over 0.5 / 1.25
    assert _starts(AlarmDecision(with_gain, 0.5), p, [None] * 6) == []  # a model without an early output
    assert _starts(AlarmDecision(with_gain, 0.5), p, [0.39] * 6) == []  # 0.39 x 1.25 < 0.5


def test_the_model_file_stores_the_gain_beside_the_rule_and_the_config_may_override_it():
    block = {"value": 0.5, "decision": {"evidence_s": 1.0, "span_s": 2.0, "early_gain": 1.5}}
    assert stored_gain(block) == 1.5 and stored_gain({"decision": {"evidence_s": 1.0, "span_s": 2.0}}) is None
    assert stored_gain({"decision": {"early_gain": "x"}}) is None
    assert stored_gain({"decision": {"early_gain": -1}}) is None
    assert DecisionConfig().for_model(block, 0.25).early_gain == 1.5
    assert DecisionConfig(k=2, n=3).for_model(block, 0.25).early_gain == 1.5  # the rule configured, the gain not
    assert DecisionConfig(early_gain=0.0).for_model(block, 0.25).early_gain == 0.0  # 0: switched off
    # the daemon's path: the model's rule and gain from its typed metadata (ModelMeta.rule, .early_gain)
    assert DecisionConfig().with_rule((6, 24), 0.25, 1.5).early_gain == 1.5
    assert DecisionConfig(early_gain=0.0).with_rule((6, 24), 0.25, 1.5).early_gain == 0.0
    assert DecisionConfig(early_gain=1.5).describe(0.25)["early_gain"] == 1.5
    assert "early_gain" not in DecisionConfig(early_gain=0.0).describe(0.25)  # none: the rule reads as before
    with pytest.raises(ValueError, match="early_gain"):
        DecisionConfig(early_gain=-1.0)


def _trace(name: str, early_lead_s: float, bump: float | None = None) -> Trace:
    """300 s at 0.1; a seizure at 100-160 s the score sees from 103 s and the early output from
    103 - ``early_lead_s`` (at 0.45: below the score's threshold unless a gain lifts it); optionally a 5-s
    interictal bump of the early output alone (250-255 s)."""
    t = np.arange(1.0, 301.0)
    p = np.full_like(t, 0.1)
    p[(t >= 103) & (t < 160)] = 0.9
    early = p.copy()
    early[(t >= 103 - early_lead_s) & (t < 103)] = 0.45
    if bump is not None:
        early[(t >= 250) & (t < 255)] = bump
    return Trace(f"{name}.edf", "m", t, p, 300.0, 0.5, QUICK, seizures=[(100.0, 160.0)],
                 outputs=np.stack([p, early], 1), output_names=("seizure", "early"))


def test_a_gain_is_chosen_when_the_early_output_sees_the_onset_first_and_off_when_it_costs_a_false_alarm():
    free = DecisionConfig(hysteresis=0.0, off_hops=1, refractory_s=0.0)
    leading = [_trace("a", 2.0), _trace("b", 2.0)]
    th = by_events_trigger(leading, free)
    gain = th["early_trigger"]["chosen_gain"]
    assert gain > 0 and th["decision"]["early_gain"] == gain and th["policy"] == "oof_events_trigger"
    assert [r["early_gain"] for r in th["early_trigger"]["tried"]] == list(EARLY_GAINS)
    on = outcome(leading, th["value"], free.for_model(th, 1.0))
    off = next(r for r in th["early_trigger"]["tried"] if r["early_gain"] == 0.0)
    assert on["false_alarms"] == 0 and on["latency_s_median"] < off["latency_s_median"]
    assert transfer(leading, "events_trigger", free)["value"] == th["value"]
    # the early output alone bumps to 0.45 on interictal signal too: a gain that would catch the lead
    # alarms on the bump, so none is chosen (and the rule stored reads as before)
    bumpy = [_trace("a", 2.0, bump=0.45), _trace("b", 2.0, bump=0.45)]
    th = by_events_trigger(bumpy, free)
    assert th["early_trigger"]["chosen_gain"] == 0.0 and "early_gain" not in th["decision"]
    assert outcome(bumpy, th["value"], free.for_model(th, 1.0))["false_alarms"] == 0


@pytest.mark.needs_data
def test_replay_and_evaluation_apply_the_same_second_trigger():
    from seizurewatch.research.predict import stream_probabilities

    rec = DOG1 / "dog1_rec04.edf"
    dec = DecisionConfig(early_gain=1.5)
    tr = stream_probabilities(rec, MODEL, dec)
    assert tr.decision.early_gain == 1.5 and tr.output("early") is not None
    # the daemon's alarms are the ones the evaluation computes from the replay's outputs
    assert alarm_spans(tr.t, tr.p, tr.threshold, tr.decision, tr.duration, tr.output("early")) == tr.alarms
    plain = stream_probabilities(rec, MODEL, DecisionConfig())
    assert tr.alarms and plain.alarms and tr.alarms[0][0] <= plain.alarms[0][0]
    assert np.array_equal(tr.p, plain.p)  # the recorded probability is the model's, trigger or not
