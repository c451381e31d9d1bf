"""The pretrained brainmaze model's causal context: how many seconds of past signal each score sees,
against the seizure / early AUC per second on Dog_1, the alarms at the stored 0.5 threshold after the
daemon's rules (latency onset -> alarm, false alarms), and the model's time per window (one thread).

Every figure comes from the daemon's own pipeline (``stream_probabilities``) on the four Dog_1
recordings, with a file written by ``seizurewatch import brainmaze --context-s S``. The model is not
trained on any of them, so nothing here is in-sample; the threshold is the file's default 0.5.
``python -m bench.pretrained_context`` writes ``bench/results/<date>-pretrained-context.json``. A measurement
that chose a setting, run once, not a module of the suite (``python -m bench`` runs ``bench_*.py``): it needs
the optional extra and a quarter of an hour on Dog_1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, figure, log, percentiles, repeat_timing, today, workdir

CONTEXTS_S = (5, 10, 20, 30)
DOG1 = ROOT.parent / "shared" / "data" / "dog1"
DEVICE = ROOT / "devices" / "dog1-ecog16.yaml"


def one_context(context_s: int, recordings: list[Path]) -> dict[str, Any]:
    import torch

    from seizurewatch.config import DecisionConfig
    from seizurewatch.modelfile import load_model
    from seizurewatch.pretrained.importer import import_brainmaze
    from seizurewatch.research.evaluate import score_events, second_scores
    from seizurewatch.research.predict import stream_probabilities
    from seizurewatch.research.timescore import score_seconds

    path = workdir() / f"brainmaze-{context_s}s.pt"
    import_brainmaze(path, DEVICE, context_s=float(context_s))
    decision = DecisionConfig()
    traces = [stream_probabilities(r, path, decision) for r in recordings]
    sec = score_seconds(second_scores(traces))
    ev = score_events(traces, 0.5, traces[0].decision)  # the rule in force at the model's hop
    model = load_model(path)
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 50, (1, 16, model.meta.window_samples)).astype(np.float32))
    torch.set_num_threads(1)
    with torch.inference_mode():
        ms = [1000 * s for s in repeat_timing(lambda: model.module(x), 20)]
    pooled = sec["pooled"]
    log(f"context {context_s} s: seizure AUC {pooled['seizure_auc']:.3f}, early {pooled['early_auc']:.3f}")
    return {"context_s": context_s,
            "seizure_auc_pooled": sec["pooled"]["seizure_auc"], "early_auc_pooled": sec["pooled"]["early_auc"],
            "seizure_auc_min": sec["seizure_auc_min"], "early_auc_min": sec["early_auc_min"],
            "unscored_s": sec["pooled"]["seconds_unscored"],
            "at_0.5": {"alarmed": ev["alarmed"], "seizures": ev["seizures"], "false_alarms": ev["unrelated_alarms"],
                       "hours": ev["hours"], "latency_s": ev["latency_s"]["values"]},
            "ms_per_window": figure(percentiles(ms)["p50"], "ms", "one 16-channel window, one thread, p50 of 20",
                                    p99=percentiles(ms)["p99"])}


def run(quick: bool) -> dict[str, Any]:
    recordings = sorted(DOG1.glob("dog1_rec*.edf"))
    contexts = (10,) if quick else CONTEXTS_S
    rows = [one_context(c, recordings[:1] if quick else recordings) for c in contexts]
    return {"recordings": [r.name for r in recordings], "threshold": 0.5, "rule": "3 of 4 (the daemon's default)",
            "contexts": rows}


if __name__ == "__main__":
    result = run("--quick" in sys.argv)
    out = ROOT / "bench" / "results" / f"{today()}-pretrained-context.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
