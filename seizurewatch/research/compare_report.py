"""The figures and report of ``crossval.compare`` on continuous recordings: each model's pooled and per-fold
figures (``model_summary``), the markdown table (``markdown``) and the report's sections."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seizurewatch.research.evaluate import fa_evidence, fa_upper_per_24h
from seizurewatch.research.report import Section
from seizurewatch.research.timescore import EARLY_S, score_seconds

if TYPE_CHECKING:
    from seizurewatch.research.crossval import Fold

log = logging.getLogger("seizurewatch.research.crossval")


def auc_why(run: dict[str, Any]) -> str:
    """Why a fold's per-second AUCs cannot be computed ("" when they can)."""
    po = (run.get("seconds") or {}).get("pooled")
    if not po:
        return "n/a: test recording not replayed"
    if po["ictal_seconds"] == 0:
        return "n/a: no ictal second in the test part"
    if po["ictal_seconds"] == po["seconds_scored"]:
        return "n/a: every scored second is ictal"
    return ""


def _summary(name: str, runs: list[dict[str, Any]], early_s: float) -> dict[str, Any]:
    aucs = [r["windows"].get("roc_auc") for r in runs if r["windows"].get("roc_auc") is not None]
    ev = [r["events"] for r in runs if "events" in r]
    seizures = sum(e["seizures"] for e in ev)
    detected = sum(e["alarmed"] for e in ev)
    fa = sum(e["unrelated_alarms"] for e in ev)
    hours = sum(e["hours"] for e in ev)
    inter = sum(e["interictal_hours"] for e in ev)
    lat = [v for e in ev for v in e["latency_s"]["values"]]
    secs = [s for r in runs for s in r.get("_second_scores", [])]
    pr = [r["windows"]["pr_auc"] for r in runs if "pr_auc" in r["windows"]]
    return {"model": name, "folds": len(runs), "roc_auc_mean": float(np.mean(aucs)) if aucs else None,
            "roc_auc_min": float(np.min(aucs)) if aucs else None,
            "pr_auc_mean": float(np.mean(pr)) if pr else None,
            "accuracy_mean": float(np.mean([r["windows"]["accuracy"] for r in runs])),
            "seconds": score_seconds(secs, early_s) if secs else None,
            "seizures": seizures, "detected": detected, "event_sensitivity": detected / seizures if seizures else None,
            "false_alarms": fa, "hours": hours, "interictal_hours": inter,
            "false_alarms_upper95_per_24h": fa_upper_per_24h(fa, inter) if ev else None,
            "szcore_detected": sum(e["detected"] for e in ev),
            "szcore_false_alarms": sum(e["false_alarms"] for e in ev), "fa_per_24h": fa / hours * 24 if hours else None,
            "latency_s_mean": float(np.mean(lat)) if lat else None,
            "latency_s_median": float(np.median(lat)) if lat else None, "latency_s": lat,
            "train_seconds": [r["train_seconds"] for r in runs],
            "threshold_seconds": [r["threshold_seconds"] for r in runs]}


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _aucs(sec: dict[str, Any] | None, key: str) -> str:
    if not sec:
        return "n/a"
    return (f"{_fmt(sec['pooled'][key], '.3f')} ({_fmt(sec[key + '_mean'], '.3f')}, "
            f"{_fmt(sec[key + '_min'], '.3f')})")


def _out(o: dict[str, Any] | None) -> str:
    if not o:
        return "-"
    rule = o.get("rule", "")
    if o.get("rule_s"):
        rule += f" ({o['rule_s'][0]:g} of {o['rule_s'][1]:g} s)"
    if o.get("early_gain"):
        rule += f", or the early output over threshold / {o['early_gain']:g}"
    if o.get("latency_slack_s") is not None:
        rule += f", latency slack {o['latency_slack_s']:g} s"
    return (f"{o['threshold']:.3f} {rule}: {o['detected']}/{o['seizures']}, {o['false_alarms']} FA, "
            f"{_fmt(o['latency_s_median'], '.1f')} s")


def transfer_verdict(summaries: list[dict[str, Any]]) -> str:
    """Which threshold criterion did better on the test recordings, summed over models and folds."""
    tot: dict[str, list[float]] = {}
    for s in summaries:
        for tt in s.get("transfer", []):
            for key in ("chosen", "other"):
                o = tt.get(key)
                if o:
                    a = tot.setdefault(o["policy"], [0, 0, 0])
                    a[0], a[1], a[2] = a[0] + o["detected"], a[1] + o["seizures"], a[2] + o["false_alarms"]
    if not tot:
        return "Threshold: each fold's model kept its validation Youden threshold (no out-of-fold choice)."
    parts = [f"{k}: {int(d)}/{int(n)} seizures alarmed, {int(fa)} false alarms"
             for k, (d, n, fa) in sorted(tot.items())]
    return "Out-of-fold threshold criteria on the test recordings (all models, all folds): " + "; ".join(parts) + "."


def fold_line(folds_: list[Fold]) -> str:
    """The folds in one line: test / validation / train (parts of more than 3 units by their count)."""
    def part(names: tuple[str, ...]) -> str:
        return ", ".join(Path(x).stem for x in names) if len(names) <= 3 else f"{len(names)} units"
    return "Folds (test / validation / train): " + "; ".join(
        f"{f.name + ': ' if len(f.test) > 1 else ''}{part(f.test)} / {part(f.val)} / {part(f.train)}" for f in folds_)


def markdown(summaries: list[dict[str, Any]], folds_: list[Fold], early_s: float = EARLY_S) -> str:
    e = f"{early_s:g}"
    lines = [f"| model | seizure AUC per second, pooled (mean, min over folds) | early AUC ({e} s) of the alarm score, "
             f"pooled (mean, min) | early AUC ({e} s) of the early output, as the challenge scored it, pooled "
             "(mean, min) | challenge score (seizure + early output AUC) / 2, pooled "
             "| window ROC AUC mean (min) | seizures alarmed | false alarms in the interictal time (95 % upper bound "
             "per 24 h) | latency onset->alarm median (s) | training s per fold |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        sec = s["seconds"] or {}
        lines.append(f"| {s['model']} | {_aucs(s['seconds'], 'seizure_auc')} | {_aucs(s['seconds'], 'early_auc')} | "
                     f"{_aucs(s['seconds'], 'early_auc_output')} | "
                     f"{_fmt((sec.get('pooled') or {}).get('challenge_score'), '.3f')} | "
                     f"{_fmt(s['roc_auc_mean'], '.3f')} ({_fmt(s['roc_auc_min'], '.3f')}) | "
                     f"{s['detected']}/{s['seizures']} | {fa_evidence(s['false_alarms'], s['interictal_hours'])} | "
                     f"{_fmt(s['latency_s_median'], '.1f')} | "
                     f"{', '.join(f'{v:.0f}' for v in s['train_seconds'])} |")
    lines += ["", "Per fold (held-out recording; threshold chosen out-of-fold -> on the test recording: seizures "
              "alarmed, false alarms, median latency; best on test = the threshold the test recording itself "
              "would have picked, for reference only):", "",
              "| model | test | seizure AUC | early AUC (alarm score) | early AUC (early output) | window AUC "
              "| threshold chosen (policy) | chosen -> test | other criterion -> test | best on test | training s "
              "| threshold s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        for f in s["per_fold"]:
            why = f.get("why") or "n/a"
            lines.append(f"| {s['model']} | {f['test']} | {_fmt(f['seizure_auc'], '.3f').replace('n/a', why)} | "
                         f"{_fmt(f['early_auc'], '.3f').replace('n/a', why)} | "
                         f"{_fmt(f['early_auc_output'], '.3f').replace('n/a', why)} | "
                         f"{_fmt(f['roc_auc'], '.3f')} | "
                         f"{f['threshold']:.3f} ({f['policy']}) | "
                         f"{_out(f['transfer'].get('chosen'))} | {_out(f['transfer'].get('other'))} | "
                         f"{_out(f['transfer'].get('best_on_test'))} | {f['train_seconds']:.0f} | "
                         f"{f['threshold_seconds']:.0f} |")
    lines += ["", transfer_verdict(summaries)]
    unscored = [f"{s['model']} {s['seconds']['pooled']['seconds_unscored']}" for s in summaries if s["seconds"]]
    if unscored:
        lines.append("Unscored seconds, all folds (before each recording's first full window): "
                     + ", ".join(unscored) + ".")
    lines.append("")
    lines.append(fold_line(folds_))
    return "\n".join(lines)


def _per_fold(r: dict[str, Any]) -> dict[str, Any]:
    """One fold's row: its held-out figures, threshold and the transfer of the criteria to it."""
    pooled = (r.get("seconds") or {}).get("pooled", {})
    return {
        "test": r["fold_test"],
        "seizure_auc": pooled.get("seizure_auc"),
        "early_auc": pooled.get("early_auc"),
        "early_auc_output": pooled.get("early_auc_output"),
        "why": auc_why(r), "roc_auc": r["windows"].get("roc_auc"), "threshold": r["threshold"]["value"],
        "policy": (r["threshold"]["policy"] if r["threshold"]["policy"] != "default"
                   else "default 0.5: the validation recording lacks a class"),
        "transfer": r.get("threshold_transfer", {}),
        "events": {"detected": r["events"]["alarmed"], "seizures": r["events"]["seizures"],
                   "false_alarms": r["events"]["unrelated_alarms"]} if "events" in r else None,
        "latency_s": r["events"]["latency_s"]["values"] if "events" in r else [],
        "train_seconds": r["train_seconds"], "threshold_seconds": r["threshold_seconds"]}


def model_summary(name: str, config: str, data: str, runs: list[dict[str, Any]], early_s: float,
                  out: Path) -> tuple[dict[str, Any], Section]:
    """One model's figures over its folds (pooled, per fold) and its report section."""
    for m in runs:
        log.info("fold done", extra={"model": name, "test": Path(m["fold_test"]).stem,
                                     "seizure_auc": (m.get("seconds") or {}).get("pooled", {}).get("seizure_auc")})
    s = _summary(name, runs, early_s)
    s["config"], s["dataset"] = config, str(data)
    s["per_fold"] = [_per_fold(r) for r in runs]
    s["transfer"] = [f["transfer"] for f in s["per_fold"]]
    section = Section(f"{name} (leave-one-recording-out)", tables=[(
        ["held-out recording", "seizure AUC (s)", "early AUC (s)", "window ROC AUC", "detected", "false alarms",
         "latency (s)", "threshold (policy)", "other criterion -> test", "best on test -> test", "training s",
         "threshold s"],
        [[f["test"], f["seizure_auc"], f["early_auc"], f["roc_auc"],
          f"{f['events']['detected']}/{f['events']['seizures']}" if f["events"] else "-",
          f["events"]["false_alarms"] if f["events"] else "-", ", ".join(str(v) for v in f["latency_s"]) or "-",
          f"{f['threshold']:.3f} ({f['policy']})", _out(f["transfer"].get("other")),
          _out(f["transfer"].get("best_on_test")), f["train_seconds"], f["threshold_seconds"]]
         for f in s["per_fold"]])],
        images=[p for r in runs for p in sorted(
            (out / name / f"eval-{Path(r['fold_test']).stem}").glob("*-timeline.png"))])
    return s, section


def head_section(root: str, summaries: list[dict[str, Any]], md: str, early_s: float) -> Section:
    """The report's first section: every model side by side."""
    summary_rows = [[s["model"], _aucs(s["seconds"], "seizure_auc"), _aucs(s["seconds"], "early_auc"),
                     _aucs(s["seconds"], "early_auc_output"), s["roc_auc_mean"], f"{s['detected']}/{s['seizures']}",
                     fa_evidence(s["false_alarms"], s["interictal_hours"]),
                     s["latency_s_median"], sum(s["train_seconds"])] for s in summaries]
    return Section("Comparison", paragraphs=[f"Dataset {root}; " + md.splitlines()[-1], transfer_verdict(summaries)],
                   tables=[(["model", "seizure AUC pooled (mean, min)", f"early AUC {early_s:g} s pooled (mean, min)",
                             f"early output's AUC {early_s:g} s pooled (mean, min)",
                             "window ROC AUC (mean)", "seizures alarmed", "false alarms (95 % upper bound)",
                             "latency median (s)",
                             "training s (all folds)"], summary_rows)])
