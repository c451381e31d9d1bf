"""events_nested: the latency slack of the events criterion chosen by leave-one-out over the traces."""

from __future__ import annotations

import numpy as np
import pytest

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import DataError
from seizurewatch.research.evaluate import SZCORE
from seizurewatch.research.nested import by_events_nested, left_out
from seizurewatch.research.predict import Trace
from seizurewatch.research.threshold import LATENCY_SLACKS_S, by_events, outcome, transfer

QUICK = DecisionConfig(k=3, n=4, hysteresis=0.0, off_hops=1, refractory_s=0.0)


def _ramp(name: str, bump: float | None = None) -> Trace:
    """300 s at 0.1, a seizure at 100-160 s that the model catches up with over 10 s (0.15 -> 0.95), and
    optionally a 5-s interictal bump at ``bump`` (250-255 s, beyond the tolerance after the seizure)."""
    t = np.arange(1.0, 301.0)
    p = np.full_like(t, 0.1)
    p[(t >= 100) & (t < 160)] = 0.95
    p[(t >= 100) & (t < 110)] = np.linspace(0.15, 0.95, 10)
    if bump is not None:
        p[(t >= 250) & (t < 255)] = bump
    return Trace(f"{name}.edf", "m", t, p, 300.0, 0.5, QUICK, seizures=[(100.0, 160.0)])


def test_a_smaller_slack_wins_when_no_left_out_trace_pays_for_it():
    traces = [_ramp("a"), _ramp("b"), _ramp("c")]
    th = by_events_nested(traces, QUICK)
    tried = {r["slack_s"]: r for r in th["latency_slack"]["tried"]}
    assert sorted(tried) == sorted(LATENCY_SLACKS_S)
    assert all(r["detected"] == 3 and r["false_alarms"] == 0 for r in tried.values())
    smallest = min(LATENCY_SLACKS_S)
    assert tried[smallest]["latency_s_median"] < tried[max(LATENCY_SLACKS_S)]["latency_s_median"]
    assert th["latency_slack"]["chosen_s"] == smallest and th["policy"] == "oof_events_nested"
    assert th["value"] == by_events(traces, QUICK, slack_s=smallest)["value"]
    # faster than events at its fixed slack, and still no false alarm
    fixed = by_events(traces, QUICK)
    assert outcome(traces, th["value"], QUICK)["latency_s_median"] < outcome(traces, fixed["value"],
                                                                              QUICK)["latency_s_median"]
    assert outcome(traces, th["value"], QUICK)["false_alarms"] == 0
    assert transfer(traces, "events_nested", QUICK)["value"] == th["value"]


def test_a_slack_whose_left_out_trace_false_alarms_loses():
    two = [_ramp("a"), _ramp("b")]
    low = by_events(two, QUICK, slack_s=min(LATENCY_SLACKS_S))["value"]
    high = by_events(two, QUICK, slack_s=max(LATENCY_SLACKS_S))["value"]
    assert low < high
    # a third recording whose interictal bump sits between the two choices made without it: left out,
    # the small slack's threshold alarms on the bump, the large slack's does not
    bumpy = _ramp("c", bump=float(np.sqrt(low * high)))
    traces = two + [bumpy]
    assert left_out(traces, QUICK, SZCORE, min(LATENCY_SLACKS_S))["false_alarms"] >= 1
    assert left_out(traces, QUICK, SZCORE, max(LATENCY_SLACKS_S))["false_alarms"] == 0
    th = by_events_nested(traces, QUICK)
    tried = th["latency_slack"]["tried"]
    clean = [r for r in tried if r["false_alarms"] == 0 and r["detected"] == 3]
    fastest = min(clean, key=lambda r: (r["latency_s_median"], -r["slack_s"]))
    assert th["latency_slack"]["chosen_s"] == fastest["slack_s"]
    assert th["latency_slack"]["chosen_s"] > min(LATENCY_SLACKS_S)
    assert outcome(traces, th["value"], QUICK)["false_alarms"] == 0


def test_it_needs_two_traces_to_leave_one_out():
    with pytest.raises(DataError, match=">= 2"):
        by_events_nested([_ramp("a")], QUICK)


def test_compare_names_the_slack_events_nested_chose_in_its_fold_table():
    from seizurewatch.research.compare_report import _out

    traces = [_ramp("a"), _ramp("b")]
    th = transfer(traces, "events_nested", QUICK)
    o = outcome(traces, th["value"], QUICK) | {"policy": th["policy"],
                                               "latency_slack_s": th["latency_slack"]["chosen_s"]}
    assert f"latency slack {th['latency_slack']['chosen_s']:g} s" in _out(o)
    assert "latency slack" not in _out(o | {"latency_slack_s": None})  # events: as before
