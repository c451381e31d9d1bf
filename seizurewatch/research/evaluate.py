"""Held-out evaluation of a model file.

Window level: ROC AUC, PR AUC (average precision), confusion matrix and accuracy at the
model's threshold, the share of interictal windows flagged at 99 % sensitivity, and the
same for a logistic-regression baseline. Event level: each recording is replayed through
the daemon's own pipeline (``seizurewatch.replay.replay``), the daemon's AlarmDecision
turns probabilities into alarms, and ``timescoring`` scores them the SzCORE way (any
overlap, 30 s before / 60 s after tolerances): event sensitivity, precision, false alarms
per 24 h, latency from onset to the first alarm. Time level (``timescore``): the probability in
force at every second of the same replay, scored as seizure AUC and early AUC (the first
``early_s`` seconds after onset), seconds before the first full window counted as unscored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from timescoring.annotations import Annotation as TsAnnotation
from timescoring.scoring import EventScoring

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import DataError
from seizurewatch.modelfile import load_model
from seizurewatch.modelmeta import ModelMeta
from seizurewatch.research import plots
from seizurewatch.research.labels import LabelRules
from seizurewatch.research.parallel import Compute
from seizurewatch.research.predict import Trace, alarm_spans, stream_probabilities, timeline_png
from seizurewatch.research.report import Section, write_report
from seizurewatch.research.roc import fraction_flagged_at_sensitivity, pr_curve, roc
from seizurewatch.research.timescore import EARLY_S, SecondScores, score_seconds
from seizurewatch.research.train import predict
from seizurewatch.research.unitscore import NOT_CONTINUOUS, Units, fmt_auc, score_units, unit_scores, write_unit_csv
from seizurewatch.scoring import SZCORE, EventRules, verdicts

if TYPE_CHECKING:
    from seizurewatch.research.dataset.store import Windows

log = logging.getLogger(__name__)




# ----- window level -------------------------------------------------------------------------


def window_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    y = np.asarray(y).astype(bool).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    flag = p >= threshold
    cm = {"tp": int((flag & y).sum()), "fp": int((flag & ~y).sum()), "tn": int((~flag & ~y).sum()),
          "fn": int((~flag & y).sum())}
    out: dict[str, Any] = {"windows": int(len(y)), "positive": int(y.sum()), "threshold": float(threshold),
                           "confusion": cm, "accuracy": float((flag == y).mean()) if len(y) else float("nan"),
                           "sensitivity": cm["tp"] / max(cm["tp"] + cm["fn"], 1),
                           "specificity": cm["tn"] / max(cm["tn"] + cm["fp"], 1)}
    if 0 < y.sum() < len(y):
        curve = roc(y, p)
        out["roc_auc"] = curve.auc
        out["pr_auc"] = pr_curve(y, p)[3]
        out["fraction_interictal_flagged_at_99_sensitivity"] = fraction_flagged_at_sensitivity(curve, 0.99)
    return out


def recording_windows(meta: ModelMeta, recording: str, stride_s: float = 1.0) -> tuple[Windows, np.ndarray]:
    """Labelled windows of one held-out recording, cut on read with the model's own preprocessing."""
    from seizurewatch.research.annotations import find_annotations
    from seizurewatch.research.dataset.recording import plan_recording, preprocess_recording, window_views

    found = find_annotations(recording, required=False)
    schedule = meta.schedule.every(stride_s)
    piece = plan_recording(recording, meta.preprocess, schedule, stride_s, LabelRules(task="detection"),
                           annotations=found.annotations if found else None)
    signal, rec = preprocess_recording(recording, meta.preprocess)
    rec.close()
    return window_views(signal, piece.starts, meta.preprocess.rate, schedule, recording), piece.labels


# ----- event level --------------------------------------------------------------------------


def interictal_seconds(duration: float, seizures: list[tuple[float, float]], rules: EventRules = SZCORE) -> float:
    """The time on which an alarm counts as a false alarm: the recording less each seizure from
    ``alarm_before_onset_s`` before its onset to ``tolerance_end_s`` after its end (an alarm
    starting there is the seizure's)."""
    spans = sorted((max(0.0, a - rules.alarm_before_onset_s), min(duration, b + rules.tolerance_end_s))
                   for a, b in seizures)
    covered, reach = 0.0, 0.0
    for a, b in spans:
        a = max(a, reach)
        if b > a:
            covered, reach = covered + b - a, b
    return max(duration - covered, 0.0)


def fa_upper_per_24h(false_alarms: int, hours: float, confidence: float = 0.95) -> float | None:
    """The one-sided ``confidence`` upper bound on the false-alarm rate per 24 h that ``false_alarms``
    in ``hours`` of interictal signal allow (Poisson, exact: chi-square with 2(k+1) degrees of
    freedom over 2; 0 in T hours -> 3.0/T per hour, 72/T per 24 h). None without interictal time."""
    from scipy.stats import chi2

    if hours <= 0:
        return None
    return float(chi2.ppf(confidence, 2 * (false_alarms + 1)) / 2 / hours * 24)


def fa_evidence(false_alarms: int, hours: float) -> str:
    """``false_alarms`` with the interictal time they were counted on and the rate bound it implies,
    e.g. "0 in 2.2 min (95 % upper bound 1,961/24 h)": a zero is only as good as the time behind it."""
    up = fa_upper_per_24h(false_alarms, hours)
    span = f"{hours * 3600:.0f} s" if hours < 2 / 60 else f"{hours * 60:.1f} min" if hours < 2 else f"{hours:.1f} h"
    return f"{false_alarms} in {span}" + (f" (95 % upper bound {up:,.0f}/24 h)" if up is not None else "")


def score_events(traces: list[Trace], threshold: float, decision: DecisionConfig,
                 rules: EventRules = SZCORE) -> dict[str, Any]:
    """Event scores summed over recordings, after the daemon's decision logic.

    SzCORE (timescoring, any overlap): ``detected`` / ``false_alarms``. What the nurse sees, by alarm
    *starts* (``scoring.verdicts``, the rule ``replay`` and the demo print): ``alarmed`` seizures with their
    latencies, and ``unrelated`` alarms (false alarms to the nurse), among them those SzCORE's overlap rule
    would count as detections (an alarm already on long before the onset)."""
    tp = fp = ref = alarmed = other = 0
    hours = inter_h = 0.0
    latencies: list[float] = []
    per_rec = []
    for tr in traces:
        spans = alarm_spans(tr.t, tr.p, threshold, decision, tr.duration, tr.output("early"))
        n = max(1, int(round(tr.duration * 10)))
        clip = [(max(0.0, a), min(b, tr.duration)) for a, b in spans if b > a]
        refs = [(max(0.0, a), min(b, tr.duration)) for a, b in tr.seizures]
        s = EventScoring(TsAnnotation(refs, 10, n), TsAnnotation(clip, 10, n), rules.params())
        v = verdicts(tr.seizures, spans, rules)  # what the nurse sees: an alarm *starting* for a seizure
        lat, unrelated = v.latencies, v.unrelated
        tp, fp, ref, hours = tp + s.tp, fp + s.fp, ref + s.refTrue, hours + tr.duration / 3600
        inter = interictal_seconds(tr.duration, tr.seizures, rules) / 3600
        inter_h += inter
        alarmed, other = alarmed + len(lat), other + unrelated
        latencies += lat
        per_rec.append({"recording": Path(tr.recording).name, "seizures": int(s.refTrue), "detected": int(s.tp),
                        "false_alarms": int(s.fp), "alarmed": len(lat), "unrelated_alarms": unrelated,
                        "alarms": [[round(a, 2), round(b, 2)] for a, b in spans],
                        "latency_s": [round(v, 2) for v in lat], "hours": round(tr.duration / 3600, 4),
                        "interictal_hours": round(inter, 5)})
    return {
        "threshold": float(threshold),
        "seizures": int(ref), "detected": int(tp), "false_alarms": int(fp), "hours": round(hours, 4),
        "alarmed": int(alarmed), "unrelated_alarms": int(other), "interictal_hours": round(inter_h, 5),
        "unrelated_per_24h_upper95": fa_upper_per_24h(other, round(inter_h, 5)),  # on the hours reported
        "sensitivity": tp / ref if ref else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "fa_per_24h": fp / hours * 24 if hours else float("nan"),
        "latency_s": {"mean": float(np.mean(latencies)) if latencies else None,
                      "median": float(np.median(latencies)) if latencies else None,
                      "values": [round(v, 2) for v in latencies]},
        "recordings": per_rec,
        "rules": rules.describe(),
    }


# ----- the whole evaluation -----------------------------------------------------------------


def second_scores(traces: list[Trace], early_s: float = EARLY_S) -> list[SecondScores]:
    """The per-second samples of replayed recordings (what the nurse station showed each second)."""
    return [SecondScores.from_trace(Path(tr.recording).name, tr.t, tr.p, tr.duration, tr.seizures, early_s,
                                    p_early=tr.output("early")) for tr in traces]


@dataclass(frozen=True)
class RecordingTask:
    """What evaluating one recording needs: its replay (``trace``: done already by the caller, else replayed
    here) and, with ``windows``, its labelled windows scored by the model (and the baseline)."""

    recording: str
    model: str
    decision: DecisionConfig
    trace: Trace | None = None
    windows: bool = True
    baseline: str | None = None


def _none() -> np.ndarray:
    return np.zeros((0, 1))


@dataclass(frozen=True, eq=False)
class RecordingResult:
    """One recording evaluated: its replay, its timeline PNG and (when its windows were scored) their
    labels and probabilities."""

    trace: Trace
    timeline: bytes
    y: np.ndarray = field(default_factory=_none)  # (n, outputs) int8
    p: np.ndarray = field(default_factory=_none)  # (n, outputs) model probabilities
    p_baseline: np.ndarray = field(default_factory=_none)  # (n, outputs) the baseline's


def evaluate_recording(task: RecordingTask) -> RecordingResult:
    """Everything ``evaluate`` does per recording, as one task: the replay through the daemon, the window
    predictions and the timeline; the caller only aggregates."""
    trace = task.trace or stream_probabilities(task.recording, task.model, task.decision)
    if not task.windows:
        return RecordingResult(trace, timeline_png(trace))
    loaded = load_model(task.model)
    x, y = recording_windows(loaded.meta, task.recording)
    p = predict(loaded.module, x)
    pb = predict(load_model(task.baseline).module, x) if task.baseline else _none()
    return RecordingResult(trace, timeline_png(trace), y, p, pb)


@dataclass(frozen=True)
class EvaluateOptions:
    """How ``evaluate`` scores: ``baseline``, a second model scored beside (window level); ``decision`` the
    alarm rules (default: the model's, as the daemon would apply them); ``rules`` the event-scoring rule;
    ``early_s`` the early span after onset (time level); ``title`` of the report; ``threshold_policy``: how
    ``decision.threshold`` was chosen (default: "override"); ``compute``: where the recordings' tasks run."""

    baseline: str | Path | None = None
    decision: DecisionConfig | None = None
    rules: EventRules = SZCORE
    early_s: float = EARLY_S
    title: str | None = None
    threshold_policy: str | None = None
    compute: Compute = Compute()


def evaluate(model: str | Path, recordings: list[str], out_dir: str | Path,
             options: EvaluateOptions = EvaluateOptions(), *, windows: tuple[np.ndarray, np.ndarray] | None = None,
             traces: list[Trace] | None = None, units: Units | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on held-out ``recordings`` (and/or given labelled ``windows``) as ``options`` say;
    writes metrics.json, PNGs and report.html into ``out_dir``; returns the metrics.
    ``windows``: (x, y) to score instead of the recordings' own windows.
    ``traces``: replays of ``recordings`` with this model and decision already made by the
    caller (``predict.stream_probabilities``), so a recording is not replayed twice.
    Each recording is one task (``evaluate_recording`` on ``options.compute``): its replay, its windows and their
    probabilities, its timeline. The caller gathers them in recording order, so the metrics do not depend
    on where the tasks ran.
    ``units``: the rows of ``windows`` are clips or segments (``research.unitscore``): scored per unit (seizure AUC,
    early AUC for clips, their mean), never replayed; ``recordings`` must then be empty."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    o = options
    loaded = load_model(model)
    meta = loaded.meta
    if meta.risk_outputs and windows is None:  # a prediction model: per-horizon forecast figures
        from seizurewatch.research.forecast_eval import evaluate_forecast

        if not recordings:
            raise DataError("no recordings to evaluate")
        return evaluate_forecast(model, meta, [str(r) for r in recordings], out, o.decision or DecisionConfig())
    # the k of n (and the early gain) the daemon would apply
    decision = (o.decision or DecisionConfig()).with_rule(meta.rule, meta.hop_s, meta.early_gain)
    threshold = decision.threshold if decision.threshold is not None else meta.threshold
    _check_inputs(recordings, windows, traces, units)
    bl = load_model(o.baseline) if o.baseline else None
    tasks = [RecordingTask(str(r), str(model), decision, traces[k] if traces is not None else None,
                           windows is None, str(o.baseline) if o.baseline else None) for k, r in enumerate(recordings)]
    heavy = traces is None or windows is None  # else the tasks only draw: not worth a cluster
    done = (o.compute if heavy else dataclasses.replace(o.compute, workers=1)).run(evaluate_recording, tasks)
    y, p, pb = _window_scores(loaded, bl, windows, done)
    metrics: dict[str, Any] = {"model": meta.name, "model_path": str(model), "weights_sha256": meta.weights_sha256,
                               "threshold": {"value": threshold, "policy": meta.threshold_policy
                                             if decision.threshold is None else o.threshold_policy or "override"},
                               "held_out": [Path(r).name for r in recordings]}
    pngs = _window_level(metrics, meta.name, bl, y, p, pb, threshold, out)
    for d in done:
        png = out / f"{Path(d.trace.recording).stem}-timeline.png"
        png.write_bytes(d.timeline)
        pngs.append(png)
    replayed = [d.trace for d in done]
    if replayed:
        metrics["events"] = score_events(replayed, threshold, decision, o.rules)
        metrics["seconds"] = score_seconds(second_scores(replayed, o.early_s), o.early_s)
    metrics["decision"] = decision.describe()
    us = _unit_level(metrics, units, y, p, pb, threshold, meta.outputs, bl, o.early_s, out) if units else None
    (out / "metrics.json").write_text(json_text(metrics), encoding="utf-8")
    write_report(out / "report.html", o.title or f"Evaluation of {meta.name}", [section(metrics, pngs)])
    if us is not None:
        metrics["_unit_scores"] = us  # for a caller pooling folds (not in metrics.json)
    return metrics


def _check_inputs(recordings: list[str], windows: tuple[np.ndarray, np.ndarray] | None,
                  traces: list[Trace] | None, units: Units | None) -> None:
    if windows is None and not recordings:
        raise DataError("no recordings to evaluate")
    if units is not None and (recordings or windows is None):
        raise DataError(f"evaluate: {units.kind} are scored per unit from their windows, never replayed")
    if traces is not None and len(traces) != len(recordings):
        raise DataError(f"evaluate: {len(traces)} traces for {len(recordings)} recordings")


def _window_scores(loaded: Any, bl: Any, windows: tuple[np.ndarray, np.ndarray] | None,
                   done: list[RecordingResult]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(labels, model probabilities, baseline probabilities or None) of the given windows, else of the
    recordings' own (scored in their tasks)."""
    if windows is not None:
        x, y = windows
        return y, predict(loaded.module, x), predict(bl.module, x) if bl else None
    y = np.concatenate([d.y for d in done])
    p = np.concatenate([d.p for d in done])
    return y, p, np.concatenate([d.p_baseline for d in done]) if bl else None


def _window_level(metrics: dict[str, Any], name: str, bl: Any, y: np.ndarray, p: np.ndarray, pb: np.ndarray | None,
                  threshold: float, out: Path) -> list[Path]:
    """Window metrics of the model (and the baseline) into ``metrics``; their ROC/PR and confusion PNGs."""
    wm = metrics["windows"] = window_metrics(y[:, 0], p[:, 0], threshold)
    curves = {}
    if "roc_auc" in wm:
        curves[name] = (roc(y[:, 0], p[:, 0]), pr_curve(y[:, 0], p[:, 0])[:2] + (wm["pr_auc"],))
    if bl is not None and pb is not None:
        bwm = window_metrics(y[:, 0], pb[:, 0], bl.meta.threshold)
        metrics["baseline"] = {"model": bl.meta.name, "windows": bwm}
        if "roc_auc" in bwm:
            curves[f"{bl.meta.name} (baseline)"] = (roc(y[:, 0], pb[:, 0]),
                                                    pr_curve(y[:, 0], pb[:, 0])[:2] + (bwm["pr_auc"],))
    pngs = []
    if curves:
        pt = (1 - wm["specificity"], wm["sensitivity"])
        pngs.append(plots.roc_pr(curves, out / "roc_pr.png", point=pt))
    pngs.append(plots.confusion(wm["confusion"], threshold, out / "confusion.png"))
    return pngs


def _unit_level(metrics: dict[str, Any], units: Units, y: np.ndarray, p: np.ndarray, pb: np.ndarray | None,
                threshold: float, outputs: Sequence[str], bl: Any, early_s: float, out: Path) -> Any:
    """Clips or segments scored per unit into ``metrics`` (and units.csv); returns the model's unit scores."""
    us = unit_scores(units, y, p, early_s, outputs)
    right = float(np.mean((us.p >= threshold) == us.ictal)) if len(us.p) else None
    metrics["units"] = score_units(us, early_s) | {"threshold_accuracy": right}
    write_unit_csv(us, threshold, out / "units.csv")
    if bl is not None and pb is not None:
        metrics["baseline"]["units"] = score_units(unit_scores(units, y, pb, early_s, bl.meta.outputs), early_s)
    return us


def _f(v: Any, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    return f"{v:.3f}{unit}" if isinstance(v, float) else f"{v}{unit}"


def section(m: dict[str, Any], images: list[Path]) -> Section:
    """The report section of one evaluation (usable inside a larger report)."""
    w = m["windows"]
    rows = [["model", m["model"], m.get("baseline", {}).get("model", "-")]]
    b = m.get("baseline", {}).get("windows", {})
    for key in ("roc_auc", "pr_auc", "accuracy", "sensitivity", "specificity",
                "fraction_interictal_flagged_at_99_sensitivity"):
        rows.append([key.replace("_", " "), _f(w.get(key)), _f(b.get(key))])
    s = Section(f"Held-out evaluation: {m['model']}", tables=[(["window level", "model", "baseline"], rows)],
                images=list(images))
    s.paragraphs.append(f"Held out: {', '.join(m['held_out']) or '(given windows)'}; threshold "
                        f"{m['threshold']['value']:.4f} ({m['threshold']['policy']}). "
                        f"Confusion at the threshold: {w['confusion']}.")
    un = m.get("units")
    if un:
        b = m.get("baseline", {}).get("units", {})
        s.tables.insert(0, ([f"per {un['kind'][:-1]} ({un['units']}, {un['ictal_units']} ictal; one score each: the "
                             "mean of its windows)", "model", "baseline"], [
            ["seizure AUC", fmt_auc(un, "seizure_auc"), fmt_auc(b, "seizure_auc") if b else "-"],
            [f"early AUC (latency <= {un.get('early_s', EARLY_S):g} s) of the alarm score", fmt_auc(un, "early_auc"),
             fmt_auc(b, "early_auc") if b else "-"],
            ["early AUC of the early output (as the challenge scored it)", fmt_auc(un, "early_auc_output"),
             fmt_auc(b, "early_auc_output") if b else "-"],
            ["challenge score (seizure + early output AUC) / 2", fmt_auc(un, "challenge_score"),
             fmt_auc(b, "challenge_score") if b else "-"],
            ["latency onset -> alarm", NOT_CONTINUOUS, NOT_CONTINUOUS],
            ["false alarms / 24 h", NOT_CONTINUOUS, NOT_CONTINUOUS]]))
    sec = m.get("seconds")
    if sec:
        rows_s = [[r["recording"], _f(r["seizure_auc"]), _f(r["early_auc"]), _f(r.get("early_auc_output")),
                   r["seconds_scored"], r["ictal_seconds"], r["seconds_unscored"]] for r in sec["recordings"]]
        po = sec["pooled"]
        if len(sec["recordings"]) > 1:
            rows_s.append(["pooled", _f(po["seizure_auc"]), _f(po["early_auc"]), _f(po.get("early_auc_output")),
                           po["seconds_scored"], po["ictal_seconds"], po["seconds_unscored"]])
        s.tables.insert(0, ([f"time level (probability in force each second; early = first {sec['early_s']:g} s)",
                             "seizure AUC", "early AUC (alarm score)", "early AUC (early output, as the 2014 "
                             "challenge scored it)", "seconds scored", "ictal seconds", "unscored"], rows_s))
        s.paragraphs.append(f"Time level: {po['seconds_unscored']} s before the first full window of each recording "
                            f"are unscored ({po['ictal_seconds_unscored']} of them ictal); every later second "
                            "carries the probability of the latest window that ended by then.")
    ev = m.get("events")
    if ev:
        s.tables.append((["event level (after smoothing/hysteresis)", "value"], [
            ["seizures / alarmed (an alarm starts for it)", f"{ev['seizures']} / {ev['alarmed']}"],
            ["unrelated alarms (false alarms to the nurse) in the interictal time",
             fa_evidence(ev["unrelated_alarms"], ev["interictal_hours"])],
            ["SzCORE: seizures / detected (any overlap)", f"{ev['seizures']} / {ev['detected']}"],
            ["event sensitivity", _f(ev["sensitivity"])], ["precision", _f(ev["precision"])],
            ["SzCORE false alarms", ev["false_alarms"]], ["hours scored", _f(ev["hours"])],
            ["false alarms / 24 h", _f(ev["fa_per_24h"])],
            ["latency onset -> first alarm, mean (s)", _f(ev["latency_s"]["mean"])],
            ["latency onset -> first alarm, median (s)", _f(ev["latency_s"]["median"])],
        ]))
        if ev["hours"] < 1:
            s.warnings.append(f"Only {ev['hours'] * 60:.1f} min of signal were scored: one false alarm is "
                              f"{24 / ev['hours']:.0f} per 24 h. Treat FA/24 h as indicative only.")
    return s


def json_text(value: Any) -> str:
    """Strict JSON (a reader's ``JSON.parse``, ``jq``): an undefined metric (NaN, e.g. an AUC with one class)
    is ``null``, never the ``NaN`` Python's json writes by default."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, (float, np.floating)):
            return float(v) if np.isfinite(v) else None
        if isinstance(v, np.integer):
            return int(v)
        return v

    return json.dumps(clean(value), indent=2, default=float, allow_nan=False)
