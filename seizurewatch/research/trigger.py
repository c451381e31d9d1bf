"""The ``events_trigger`` criterion: ``events`` with the model's early output as a second trigger, its gain
chosen out of fold with the threshold and the rule.

A model with an ``early`` output (the conditional forests: P(seizure) x P(early | seizure)) may alarm on
it too: a hop is evidence when the alarm score reaches the threshold *or* the early output reaches
threshold / g (``DecisionConfig.early_gain`` g: the decision's input is max(score, g x early), at most 1;
``decision.AlarmDecision``, live, on replay and in evaluation). Each gain of ``EARLY_GAINS`` (0: no
second trigger) gets its threshold and rule by ``events`` on the same traces; the gain whose point alarms
on the most seizures, then with the fewest false alarms, then with the least median latency wins, ties
to the smaller gain (none first). The traces are the out-of-fold ones ``compare``, ``threshold --policy
oof`` and a recipe hand it, so the gain, like the threshold, never sees the recording it is judged on.
The model file stores it beside the rule (``threshold.decision.early_gain``; absent: none).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import DataError
from seizurewatch.research.evaluate import SZCORE, EventRules
from seizurewatch.research.predict import Trace
from seizurewatch.research.threshold import by_events

EARLY_GAINS = (0.0, 1.1, 1.25, 1.5, 2.0)


def by_events_trigger(traces: list[Trace], decision: DecisionConfig, rules: EventRules = SZCORE,
                      gains: tuple[float, ...] = EARLY_GAINS) -> dict[str, Any]:
    """The threshold, rule and early gain chosen together on ``traces`` (see the module docstring); a
    decision that sets its own ``early_gain`` keeps it. The block says how each gain did (``early_trigger``)."""
    if decision.early_gain is not None:
        return by_events(traces, decision, rules, policy="oof_events_trigger")
    if any(t.output("early") is None for t in traces):
        raise DataError("events_trigger: the model has no 'early' output to trigger on (a dataset built with "
                        "early_s and a model with the outputs seizure, early)")
    best: tuple[tuple[float, ...], dict[str, Any]] | None = None
    tried = []
    for i, g in enumerate(gains):
        th = by_events(traces, dataclasses.replace(decision, early_gain=g), rules, policy="oof_events_trigger")
        pt = th["point"]
        lat = pt["latency_s_median"]
        tried.append({"early_gain": g, "threshold": th["value"], "detected": pt["detected"],
                      "false_alarms": pt["false_alarms"], "latency_s_median": lat})
        key = (-pt["detected"], pt["false_alarms"], float("inf") if lat is None else float(lat), i)
        if best is None or key < best[0]:
            best = (key, th)
    assert best is not None
    best[1]["early_trigger"] = {"chosen_gain": gains[int(best[0][-1])], "tried": tried}
    return best[1]
