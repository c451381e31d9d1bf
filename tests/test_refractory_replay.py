"""Issue 15: a false alarm followed within 30 s by a seizure, replayed through the daemon.

A real EDF+ (pyedflib) carries a DC level on channel a that a tiny TorchScript model reads
back as its probability, so the probability trace is known: 0.1, a false alarm at 0.55-0.59
for 16 s, 0.1 for 14 s, then the annotated seizure at 0.95. With the daemon's defaults
(k=3 of n=4, 30 s refractory) the old rule held the seizure's alarm back until the refractory
period ran out (19 s after onset); evidence stronger than the false alarm's peak now alarms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edf_writer import write_edf

from seizurewatch.config import DecisionConfig
from seizurewatch.modelfile import save_model
from seizurewatch.research.evaluate import EvaluateOptions, evaluate
from seizurewatch.research.predict import stream_probabilities

RATE = 100
CHANNELS = ["a", "b", "c"]
ONSET, END = 70.0, 100.0


class _Level(torch.nn.Module):
    """P(seizure) = the mean of channel a over the window's last second / 1000 uV."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, :1, -100:].mean(dim=2) / 1000.0).clamp(0.0, 1.0)


def _level(t: np.ndarray) -> np.ndarray:
    p = np.full_like(t, 0.1)
    fa = (t >= 40) & (t < 56)
    p[fa] = np.where(np.floor(t[fa]) % 2 == 0, 0.55, 0.59)
    p[(t >= ONSET) & (t < END)] = 0.95
    return p


def _files(tmp_path):
    t = np.arange(130 * RATE) / RATE
    rng = np.random.default_rng(0)
    data = rng.normal(0, 5, (len(CHANNELS), len(t)))
    data[0] += 1000.0 * _level(t)
    edf = write_edf(tmp_path / "fa_then_seizure.edf", data, RATE, CHANNELS,
                    annotations=[(ONSET, END - ONSET, "seizure")])
    meta = {"name": "level", "outputs": ["seizure"], "window_s": 2.0, "hop_s": 1.0,
            "preprocess": {"channels": CHANNELS, "rate": float(RATE), "bandpass": None, "notch": None},
            "threshold": {"value": 0.5, "policy": "test"}}
    model = tmp_path / "level.pt"
    save_model(_Level(), meta, model, torch.zeros(2, len(CHANNELS), 2 * RATE))
    return edf, model


def test_a_false_alarm_does_not_delay_the_seizure_alarm_in_replay_and_evaluate(tmp_path):
    edf, model = _files(tmp_path)
    dec = DecisionConfig(refractory_s=30.0)
    tr = stream_probabilities(edf, model, dec)
    assert tr.seizures == [(ONSET, END)]
    starts = [a for a, _ in tr.alarms]
    assert len(starts) == 2 and 40 < starts[0] < 50  # the false alarm, raised by the daemon itself
    fa_end = tr.alarms[0][1]
    assert ONSET - fa_end < 30  # the seizure begins inside the false alarm's refractory period
    assert ONSET <= starts[1] <= ONSET + 4  # k=3 of 4 hops: at most a few seconds, not 19
    m = evaluate(model, [str(edf)], tmp_path / "eval", EvaluateOptions(decision=dec),
                 windows=(np.zeros((2, 3, 200)), np.eye(2)[:, :1]))
    ev = m["events"]
    assert ev["alarmed"] == 1 and ev["unrelated_alarms"] == 1
    assert ev["latency_s"]["values"][0] <= 4.0
    sec = m["seconds"]["pooled"]
    assert sec["seconds_unscored"] == 1  # the first 2-s window ends at 2 s: second 0 has no probability
    assert sec["seizure_auc"] > 0.9


def test_the_daemon_applies_the_rule_stored_beside_the_threshold_unless_the_config_sets_one(tmp_path):
    """A model file's ``threshold.decision`` (k of n, chosen with the threshold) is what the daemon
    and ``evaluate`` apply; ``decision.k``/``decision.n`` in the config override it."""
    edf, _ = _files(tmp_path)
    starts = {}
    for k, n in ((1, 1), (5, 5)):
        meta = {"name": f"level-{k}of{n}", "outputs": ["seizure"], "window_s": 2.0, "hop_s": 1.0,
                "preprocess": {"channels": CHANNELS, "rate": float(RATE), "bandpass": None, "notch": None},
                "threshold": {"value": 0.9, "policy": "test", "decision": {"k": k, "n": n}}}
        model = tmp_path / f"level-{k}of{n}.pt"
        save_model(_Level(), meta, model, torch.zeros(2, len(CHANNELS), 2 * RATE))
        tr = stream_probabilities(edf, model, DecisionConfig())
        starts[(k, n)] = tr.alarms[0][0]  # 0.9 only inside the seizure: one alarm, at the k-th hop over
        m = evaluate(model, [str(edf)], tmp_path / f"eval-{k}", EvaluateOptions(decision=DecisionConfig()),
                     windows=(np.zeros((2, 3, 200)), np.eye(2)[:, :1]), traces=[tr])
        assert m["decision"]["k"] == k and m["decision"]["n"] == n
        assert m["events"]["latency_s"]["values"] == [pytest.approx(starts[(k, n)] - ONSET)]
        fixed = stream_probabilities(edf, model, DecisionConfig(k=3, n=3))
        starts[(k, n, "config 3/3")] = fixed.alarms[0][0]
    assert starts[(5, 5)] - starts[(1, 1)] == pytest.approx(4.0)  # four more hops of evidence
    assert starts[(1, 1, "config 3/3")] == starts[(5, 5, "config 3/3")] == pytest.approx(starts[(1, 1)] + 2.0)


def test_k_and_n_are_set_together_or_left_to_the_model():
    with pytest.raises(ValueError, match="set both or neither"):
        DecisionConfig(k=2)
    assert DecisionConfig().for_model({"decision": {"k": 2, "n": 6}}, 1.0).rule == (2, 6)
    assert DecisionConfig(k=3, n=4).for_model({"decision": {"k": 2, "n": 6}}, 1.0).rule == (3, 4)
    assert DecisionConfig().for_model({"decision": {"k": 7, "n": 6}}, 1.0).rule == (3, 4)  # not a rule: the default
    assert DecisionConfig().for_model(None, 1.0).rule == (3, 4)
    assert DecisionConfig().for_model(None, 0.25).rule == (12, 16)  # the default is 3 of the last 4 s too


def test_a_rule_in_seconds_means_the_same_at_every_hop_and_old_files_keep_their_hops():
    from seizurewatch.config import stored_rule

    block = {"decision": {"k": 2, "n": 6, "evidence_s": 2.0, "span_s": 6.0}}
    assert stored_rule(block, 1.0) == (2, 6)
    assert stored_rule(block, 0.5) == (4, 12)
    assert stored_rule(block, 0.25) == (8, 24)
    assert stored_rule({"decision": {"evidence_s": 1.0, "span_s": 1.5}}, 0.4) == (3, 4)  # never less evidence
    # a file written before rules were stated in seconds: k/n are hops of its own hop, whatever it is
    assert stored_rule({"decision": {"k": 2, "n": 6}}, 0.25) == (2, 6)
    assert DecisionConfig().for_model(block, 0.25).rule == (8, 24)
    assert DecisionConfig(k=3, n=4).for_model(block, 0.25).rule == (3, 4)  # the config's hops win
    for broken in ({"evidence_s": 3.0, "span_s": 2.0}, {"evidence_s": 0, "span_s": 2.0}, {"evidence_s": 1.0},
                   {"evidence_s": "1", "span_s": 2.0}, {"evidence_s": 1.0, "span_s": float("nan")}):
        assert stored_rule({"decision": broken}, 1.0) is None, broken
    assert DecisionConfig(k=2, n=6).describe(0.25) | {} == {
        "k": 2, "n": 6, "hysteresis": 0.1, "off_hops": 3, "refractory_s": 30.0, "hop_s": 0.25,
        "evidence_s": 0.5, "span_s": 1.5}


def test_a_model_file_with_a_broken_rule_is_refused_at_load(tmp_path):
    from seizurewatch.errors import ModelError
    from seizurewatch.modelfile import load_model

    meta = {"name": "level", "outputs": ["seizure"], "window_s": 2.0, "hop_s": 1.0,
            "preprocess": {"channels": CHANNELS, "rate": float(RATE), "bandpass": None, "notch": None},
            "threshold": {"value": 0.5, "policy": "test", "decision": {"k": 7, "n": 6}}}
    save_model(_Level(), meta, tmp_path / "bad.pt", torch.zeros(2, len(CHANNELS), 2 * RATE))
    with pytest.raises(ModelError, match=r"threshold.decision: expected evidence_s <= span_s .* or k and n with "
                                         r"1 <= k <= n <= 1000 hops of 1 s"):
        load_model(tmp_path / "bad.pt")
    meta["threshold"]["decision"] = {"k": 2, "n": 6, "evidence_s": 7.0, "span_s": 6.0}
    save_model(_Level(), meta, tmp_path / "bad_s.pt", torch.zeros(2, len(CHANNELS), 2 * RATE))
    with pytest.raises(ModelError, match=r"threshold.decision: expected evidence_s <= span_s"):
        load_model(tmp_path / "bad_s.pt")
