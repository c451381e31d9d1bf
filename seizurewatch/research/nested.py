"""The ``events_nested`` criterion: ``events`` with its latency slack chosen out of fold too.

``threshold.events_at`` keeps the thresholds whose median latency is within a slack of the least,
then takes the middle of the widest run of them: the slack is how much alarm latency it may give
for a margin from the false-alarm edge (``LATENCY_SLACK_S``, 2 s). ``events_nested`` does not fix
it: each slack of ``LATENCY_SLACKS_S`` is tried by leave-one-out over the traces it chooses on
(the threshold and rule chosen on all traces but one, by ``events`` at that slack, then applied to
the one left out), and the slack whose left-out traces alarm on the most seizures, then with the
fewest false alarms, then with the least median latency wins (ties to the larger slack: more
margin). Then ``events`` at that slack chooses on all the traces. The traces are the out-of-fold
ones ``compare``, ``threshold --policy oof`` and a recipe hand it, so the slack, like the threshold
and the rule, never sees the recording it is judged on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import DataError
from seizurewatch.research.evaluate import SZCORE, EventRules
from seizurewatch.research.predict import Trace
from seizurewatch.research.threshold import LATENCY_SLACKS_S, by_events, outcome


def left_out(traces: list[Trace], decision: DecisionConfig, rules: EventRules, slack_s: float) -> dict[str, Any]:
    """Each trace judged at the operating point ``events`` chooses (at ``slack_s``) on the others."""
    detected = false_alarms = seizures = 0
    latencies: list[float] = []
    for i, held in enumerate(traces):
        th = by_events(traces[:i] + traces[i + 1:], decision, rules, slack_s=slack_s)
        o = outcome([held], th["value"], decision.for_model(th, held.hop_s), rules)
        detected, seizures = detected + o["detected"], seizures + o["seizures"]
        false_alarms += o["false_alarms"]
        latencies += o["latency_s"]
    return {"slack_s": slack_s, "detected": detected, "seizures": seizures, "false_alarms": false_alarms,
            "latency_s": latencies, "latency_s_median": float(np.median(latencies)) if latencies else None}


def by_events_nested(traces: list[Trace], decision: DecisionConfig, rules: EventRules = SZCORE,
                     slacks: tuple[float, ...] = LATENCY_SLACKS_S) -> dict[str, Any]:
    """The threshold and rule of ``events`` at the latency slack chosen by leave-one-out over ``traces``
    (see the module docstring); the block says which slack and how each did (``latency_slack``)."""
    if len(traces) < 2:
        raise DataError("events_nested chooses its latency slack by leaving each trace out: it needs >= 2 "
                        f"replayed recordings (got {len(traces)})")
    tried = [left_out(traces, decision, rules, s) for s in slacks]

    def key(r: dict[str, Any]) -> tuple[float, ...]:
        lat = r["latency_s_median"]
        return (-r["detected"], r["false_alarms"], float("inf") if lat is None else lat, -r["slack_s"])

    best = min(tried, key=key)
    th = by_events(traces, decision, rules, policy="oof_events_nested", slack_s=best["slack_s"])
    th["latency_slack"] = {"chosen_s": best["slack_s"], "tried": tried}
    return th
