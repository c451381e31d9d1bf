"""Pick the operating point from the ROC trade-off on validation data (``threshold_choice.choose_threshold``
writes it into the model's metadata: value, policy, target, the curve point, re-saving the model file).

Policies:
  youden       maximise sensitivity + specificity - 1 over the window-level ROC
  sensitivity  the highest threshold whose window sensitivity reaches the target
  fa_budget    replay the validation recordings through the daemon's pipeline, apply its
               smoothing/hysteresis at each candidate threshold, and keep the one with the best
               event sensitivity whose false alarms per 24 h stay within the budget
  oof          out-of-fold (the method that transfers): leave each training recording out in
               turn, train the same config on the others, replay the left-out recording through
               the daemon's pipeline, and choose on those out-of-fold traces (``transfer``)
The daemon uses the stored value unless its config sets ``decision.threshold``.

Choosing on out-of-fold traces (``outoffold.out_of_fold`` gives them, ``transfer`` chooses;
``compare`` does it per fold, ``threshold --policy oof`` on a dataset, a recipe with ``chosen_on:
out_of_fold`` on its training recordings), two criteria for what the nurse sees:
  events   after the daemon's decision rules, by alarm starts (``score_events``: ``alarmed``,
           ``unrelated_alarms``): alarm on the most out-of-fold seizures, then the fewest
           false alarms, then a median latency within 2 s of the least (an alarm at or before
           the onset counts 0 s); the middle, in log-odds, of the thresholds still in (a margin
           on both sides for a recording not yet seen). Unless the decision config fixes k and n,
           the k-of-n rule is chosen with the threshold, in seconds (``RULES_S``: at least
           ``evidence_s`` over the threshold within the last ``span_s``, turned into hops of the
           model's hop by ``rules_at``): the most seizures, the fewest false alarms, the least
           latency, ties to the more persistent rule; the model file stores it in seconds
           (``threshold.decision.evidence_s/span_s``, with k/n at its hop) and the daemon applies it
           at the model's hop unless its config sets ``decision.k``/``decision.n``
  seconds  Youden's J on the per-second probabilities (ictal seconds vs the others)
  events_nested  ``events`` with the latency it may give for a margin (its slack) chosen by leave-one-out
           over the same traces (``research/nested.py``)
  events_trigger  ``events`` with the early output as a second trigger, its gain chosen with the threshold
           (``research/trigger.py``)
``compare`` reports the chosen criterion and another on every test recording beside the threshold that would have been
best there (``events`` applied to the test recording itself).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.config import DecisionConfig, rule_in_hops
from seizurewatch.errors import ConfigError, DataError
from seizurewatch.research.evaluate import score_events
from seizurewatch.research.predict import Trace
from seizurewatch.research.roc import Curve, roc
from seizurewatch.scoring import SZCORE, EventRules

log = logging.getLogger(__name__)

POLICIES = ("youden", "sensitivity", "fa_budget", "oof")
TRANSFER = ("events", "seconds", "events_nested", "events_trigger")
LATENCY_SLACK_S = 2.0  # "least latency" to within this: a margin from the false-alarm edge is worth 2 s
# the slacks ``events_nested`` chooses among, by leave-one-out over the traces it chooses on (research/nested.py)
LATENCY_SLACKS_S = (2.0, 1.0, 0.5)
# the rules ``events`` chooses among when the decision leaves k and n to the model, in seconds:
# (evidence_s, span_s), at least evidence_s of hops over the threshold within the last span_s. At a 1-s
# hop they are the k-of-n rules 2..6 of 2..6 hops; ``rules_at`` keeps those of at least 2 hops (one hop
# never pages the nurse). Evidence starts at 1 s: at a short hop overlapping 1-s windows see the same
# second of signal, so less than a second of evidence would be one second seen several times
EVIDENCE_S = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0)
SPAN_S = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0)
RULES_S = tuple((e, s) for s in SPAN_S for e in EVIDENCE_S if e <= s)


def rules_at(hop_s: float) -> list[tuple[int, int]]:
    """The distinct k-of-n rules of ``RULES_S`` at ``hop_s`` with k >= 2, shortest span first."""
    out: list[tuple[int, int]] = []
    for e, s in RULES_S:
        k, n = rule_in_hops(e, s, hop_s)
        if k >= 2 and (k, n) not in out:
            out.append((k, n))
    return sorted(out, key=lambda r: (r[1], r[0]))


RULES = tuple(rules_at(1.0))  # at a 1-s hop: 2..6 of 2..6 hops


def hop_of(traces: list[Trace]) -> float:
    """The hop all ``traces`` share (one model's replays); a rule in seconds is chosen at it."""
    hops = {round(t.hop_s, 9) for t in traces}
    if len(hops) > 1:
        raise DataError(f"traces at different hops ({', '.join(f'{h:g} s' for h in sorted(hops))}): choose a "
                        "rule on one model's replays")
    return hops.pop() if hops else 1.0


def candidates(traces: list[Trace], most: int = 200) -> np.ndarray:
    """Candidate thresholds: the distinct probabilities seen (thinned to ``most`` quantiles)."""
    p = np.unique(np.concatenate([t.p for t in traces])) if traces else np.zeros(0)
    if len(p) > most:
        p = np.unique(np.quantile(p, np.linspace(0, 1, most)))
    return np.clip(p, 1e-6, 1 - 1e-6)


def curve_point(curve: Curve, value: float) -> dict[str, float]:
    """Where ``value`` sits on the window-level ROC (windows with p >= value are flagged)."""
    i = int(np.searchsorted(-curve.thresholds, -value, side="right") - 1)
    return {"tpr": float(curve.tpr[i]), "fpr": float(curve.fpr[i]), "specificity": float(1 - curve.fpr[i])}


def event_table(traces: list[Trace], thresholds: np.ndarray, decision: DecisionConfig,
                rules: EventRules = SZCORE, curve: Curve | None = None) -> list[dict[str, float]]:
    """Event sensitivity and false alarms per 24 h at each threshold, after the daemon's decision
    logic (plus the window-level Youden J there, when a validation ROC ``curve`` is given)."""
    rows = []
    for th in thresholds:
        ev = score_events(traces, float(th), decision, rules)
        row = {"threshold": float(th), "sensitivity": ev["sensitivity"], "fa_per_24h": ev["fa_per_24h"],
               "latency_s": ev["latency_s"]["mean"]}
        if curve is not None:
            pt = curve_point(curve, float(th))
            row["window_j"] = pt["tpr"] - pt["fpr"]
        rows.append(row)
    return rows


def _clip_threshold(t: float) -> float:
    """Thresholds must be usable as strict probabilities in (0, 1)."""
    return float(min(max(t, 1e-6), 1 - 1e-6))


def inside_gap(curve: Curve, i: int) -> float:
    """A threshold that flags exactly the windows ROC point ``i`` flags, in the middle (log-odds) of the gap
    between the lowest score it flags and the highest it leaves: on separable validation data the middle of
    the gap between the classes, not the lowest seizure score (there every test seizure a hair weaker is
    missed at AUC 1.0). With nothing left unflagged, the lowest score."""
    hi = _clip_threshold(float(curve.thresholds[i]))
    if i + 1 >= len(curve.thresholds):
        return hi
    lo = _clip_threshold(float(curve.thresholds[i + 1]))
    return _logodds_middle(lo, hi) if lo < hi else hi


def _point(curve: Curve, i: int, policy: str, target: float | None) -> dict[str, Any]:
    return {
        "value": inside_gap(curve, i),
        "policy": policy,
        "target": target,
        "point": {"tpr": float(curve.tpr[i]), "fpr": float(curve.fpr[i]), "specificity": float(1 - curve.fpr[i])},
        "auc": curve.auc,
    }


def youden(curve: Curve) -> dict[str, Any]:
    """Maximise sensitivity + specificity - 1 over the ROC points (``inside_gap`` of the best one)."""
    j = curve.tpr - curve.fpr
    i = int(np.argmax(j[1:]) + 1)
    return _point(curve, i, "youden", None)


def target_sensitivity(curve: Curve, target: float) -> dict[str, Any]:
    """The highest threshold whose sensitivity reaches ``target`` (fewest false alarms; ``inside_gap``)."""
    ok = np.flatnonzero(curve.tpr >= target)
    i = int(ok[0]) if len(ok) else len(curve.tpr) - 1
    i = max(i, 1)
    return _point(curve, i, "sensitivity", target)


def by_fa_budget(table: list[dict[str, float]], budget: float) -> dict[str, Any]:
    """Best event sensitivity with false alarms / 24 h <= ``budget``; among ties, the fewest
    false alarms, then the best window-level Youden J (if the rows carry ``window_j``: short
    validation recordings leave long ties, and J keeps the choice away from thresholds that
    flag much interictal signal), then the middle of the tied thresholds."""
    ok = [r for r in table if r["fa_per_24h"] <= budget + 1e-9]
    if not ok:
        lowest = min(table, key=lambda r: r["fa_per_24h"])
        raise DataError(f"no threshold keeps false alarms within {budget:g}/24 h on the validation recordings "
                        f"(lowest: {lowest['fa_per_24h']:.3g}/24 h at threshold {lowest['threshold']:.4g})")
    best_sens = max(r["sensitivity"] for r in ok)
    tied = [r for r in ok if r["sensitivity"] == best_sens]
    best_fa = min(r["fa_per_24h"] for r in tied)
    tied = [r for r in tied if r["fa_per_24h"] == best_fa]
    if all("window_j" in r for r in tied):
        best_j = max(r["window_j"] for r in tied)
        tied = [r for r in tied if r["window_j"] >= best_j - 1e-12]
    tied = sorted(tied, key=lambda r: r["threshold"])
    r = tied[(len(tied) - 1) // 2]
    return {"value": float(r["threshold"]), "policy": "fa_budget", "target": float(budget),
            "point": {"event_sensitivity": r["sensitivity"], "fa_per_24h": r["fa_per_24h"]}}


def logodds_grid(step: float = 0.1, span: float = 12.0) -> np.ndarray:
    """Candidate thresholds evenly spaced in log-odds (probabilities 6e-6 .. 1 - 6e-6)."""
    z = np.arange(-span, span + step / 2, step)
    return 1.0 / (1.0 + np.exp(-z))


def _logodds_middle(lo: float, hi: float) -> float:
    zl, zh = (float(np.log(v / (1 - v))) for v in (lo, hi))
    return float(1.0 / (1.0 + np.exp(-(zl + zh) / 2)))


def _widest_run(rows: list[dict[str, Any]], ok: list[bool]) -> tuple[float, float]:
    """First and last threshold of the longest run of consecutive grid points that pass: the
    thresholds that pass need not be contiguous (a pre-onset alarm that ends a second before the
    onset is a false alarm at some thresholds in the middle of a good range), and the middle of
    the whole span could fall in such a pocket."""
    best: tuple[int, int] = (0, -1)
    i = 0
    while i < len(ok):
        if not ok[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(ok) and ok[j + 1]:
            j += 1
        if j - i > best[1] - best[0]:
            best = (i, j)
        i = j + 1
    return rows[best[0]]["threshold"], rows[best[1]]["threshold"]


def by_events(traces: list[Trace], decision: DecisionConfig, rules: EventRules = SZCORE,
              policy: str = "oof_events", slack_s: float = LATENCY_SLACK_S) -> dict[str, Any]:
    """``events`` at the decision's k of n, or, when it leaves them unset (the model's rule), the
    threshold and the rule chosen together: each rule of ``RULES_S`` at the traces' hop (``rules_at``)
    gets its threshold (``events_at``), and the rule that alarms on the most seizures, then with the
    fewest false alarms, then with the least median latency wins; ties go to the more persistent rule
    (more evidence, then a longer span). The block's ``decision`` says which rule, in seconds too; the
    daemon applies it at the model's hop. ``slack_s``: the latency ``events_at`` may give for a margin."""
    if decision.k is not None:
        return events_at(traces, decision, rules, policy, slack_s)
    hop = hop_of(traces)
    tried = rules_at(hop)
    best: tuple[tuple[float, ...], dict[str, Any]] | None = None
    for k, n in tried:
        th = events_at(traces, dataclasses.replace(decision, k=k, n=n), rules, policy, slack_s)
        pt = th["point"]
        lat = pt["latency_s_median"]
        key = (-pt["detected"], pt["false_alarms"], float("inf") if lat is None else float(lat), -k, -n)
        if best is None or key < best[0]:
            best = (key, th)
    assert best is not None
    best[1]["rules_tried"] = [f"{k}/{n}" for k, n in tried]
    return best[1]


def events_at(traces: list[Trace], decision: DecisionConfig, rules: EventRules = SZCORE,
              policy: str = "oof_events", slack_s: float = LATENCY_SLACK_S) -> dict[str, Any]:
    """After the daemon's decision rules: the most seizures alarmed, then the fewest false alarms,
    then a median latency within ``slack_s`` (default ``LATENCY_SLACK_S``) of the least (an alarm at or before the onset
    counts 0 s), then the middle in log-odds of the widest run of consecutive thresholds still in:
    as far from both cliffs (missed seizures above, false alarms below) as the traces allow, for a
    recording not yet seen.
    (Taking the very least latency, or the middle of candidates spaced by probability quantiles,
    sat at the false-alarm edge: on Dog_1 it chose 0.12 and 0.0005 and alarmed all recording long.)"""
    if not traces:
        raise DataError("choosing a threshold on events needs at least one replayed recording")
    rows = []
    p = np.concatenate([t.p for t in traces])
    grid = logodds_grid()
    if len(p):  # beyond the probabilities seen every threshold acts alike: one grid point either side
        i, j = np.searchsorted(grid, [p.min(), p.max()])
        grid = grid[max(i - 1, 0): j + 1]
    for th in grid:
        ev = score_events(traces, float(th), decision, rules)
        values = ev["latency_s"]["values"]
        late = float(np.median(np.maximum(values, 0.0))) if values else float("inf")
        rows.append({"threshold": float(th), "detected": ev["alarmed"], "seizures": ev["seizures"],
                     "false_alarms": ev["unrelated_alarms"], "latency_s": ev["latency_s"]["median"], "late": late})
    best = min((-r["detected"], r["false_alarms"]) for r in rows)
    fastest = min(r["late"] for r in rows if (-r["detected"], r["false_alarms"]) == best)
    ok = [(-r["detected"], r["false_alarms"]) == best and r["late"] <= fastest + slack_s for r in rows]
    lo, hi = _widest_run(rows, ok)
    value = _logodds_middle(lo, hi)
    at = score_events(traces, value, decision, rules)
    return {"value": value, "policy": policy, "target": None,
            "point": {"detected": at["alarmed"], "seizures": at["seizures"], "false_alarms": at["unrelated_alarms"],
                      "latency_s_median": at["latency_s"]["median"], "tied_range": [lo, hi]},
            "decision": decision.describe(hop_of(traces)), "chosen_on": [Path(t.recording).name for t in traces]}


def by_seconds(traces: list[Trace], early_s: float = 15.0, decision: DecisionConfig | None = None
               ) -> dict[str, Any]:
    """Youden's J on the per-second probabilities in force (ictal seconds vs every other)."""
    from seizurewatch.research.evaluate import second_scores

    secs = second_scores(traces, early_s)
    p = np.concatenate([s.p[s.scored] for s in secs]) if secs else np.zeros(0)
    y = np.concatenate([s.ictal[s.scored] for s in secs]) if secs else np.zeros(0, bool)
    if not 0 < int(y.sum()) < len(y):
        raise DataError("choosing a threshold on seconds needs ictal and interictal seconds")
    th = youden(roc(y, p))
    th["policy"] = "oof_seconds"
    th["decision"] = (decision or DecisionConfig()).describe(hop_of(traces))
    th["chosen_on"] = [Path(t.recording).name for t in traces]
    return th


def transfer(traces: list[Trace], method: str, decision: DecisionConfig, rules: EventRules = SZCORE,
             early_s: float = 15.0) -> dict[str, Any]:
    """The operating point from out-of-fold ``traces`` (see the module docstring)."""
    if method not in TRANSFER:
        raise ConfigError(f"threshold method {method!r}: expected one of {', '.join(TRANSFER)}")
    if method in ("events_nested", "events_trigger"):
        from seizurewatch.research.nested import by_events_nested
        from seizurewatch.research.trigger import by_events_trigger

        return (by_events_nested if method == "events_nested" else by_events_trigger)(traces, decision, rules)
    return by_events(traces, decision, rules) if method == "events" else by_seconds(traces, early_s, decision)


def outcome(traces: list[Trace], threshold: float, decision: DecisionConfig,
            rules: EventRules = SZCORE) -> dict[str, Any]:
    """What the nurse would have seen at ``threshold``: seizures alarmed, false alarms, latency."""
    ev = score_events(traces, threshold, decision, rules)
    k, n = decision.rule
    hop = hop_of(traces)
    return {"threshold": float(threshold), "rule": f"{k}/{n}", "rule_s": [round(k * hop, 6), round(n * hop, 6)],
            "detected": ev["alarmed"], "seizures": ev["seizures"],
            "false_alarms": ev["unrelated_alarms"], "latency_s_median": ev["latency_s"]["median"],
            "latency_s": ev["latency_s"]["values"]}


def by_policy(policy: str, curve: Curve | None, target: float | None, table: list[dict[str, float]] | None
              ) -> dict[str, Any]:
    if policy not in POLICIES:
        raise ConfigError(f"threshold policy {policy!r}: expected one of {', '.join(POLICIES)}")
    if policy == "oof":
        raise ConfigError("the oof policy retrains the model's config on a dataset: choose_threshold(dataset=...)")
    if policy == "fa_budget":
        if table is None:
            raise ConfigError("fa_budget needs continuous validation recordings")
        if target is None:
            raise ConfigError("fa_budget needs --target (false alarms per 24 h)")
        return by_fa_budget(table, target)
    if curve is None:
        raise DataError("the validation windows need both classes for a ROC-based threshold")
    if policy == "sensitivity":
        t = 0.95 if target is None else target
        if not 0 < t <= 1:
            raise ConfigError(f"--target {t}: a sensitivity between 0 and 1")
        return target_sensitivity(curve, t)
    return youden(curve)
