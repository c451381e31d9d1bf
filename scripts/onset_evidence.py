"""Issue #29 item 3, onset evidence: each idea measured leave one recording out on Dog_1, every choice out of fold.

What ``compare`` does per fold, done once for every idea: fold T's model is the recipe
(``config/models/hills-early-250ms.yaml``) trained on the three other recordings and replayed on T through
the daemon; its operating point is chosen by ``threshold.by_events`` (compare's ``events`` criterion) on
the three out-of-fold traces of the other recordings (each replayed with the recipe trained on the two
remaining ones). Four recordings need only ten distinct models (four triples, six pairs: fold T's model
without X is fold X's model without T), trained and replayed once into OUT/traces.

Ideas, each an alarm score made from the replays' two outputs (``seizure`` = P(s)(1 + w P(e|s))/(1 + w),
``early`` = P(s) P(e|s), w = 0.5), its threshold and rule chosen on the out-of-fold traces:
  weight    the early weight w (P(s) and P(e|s) recovered from the two outputs), w = 0, 1, 2, 4
  trigger   the early output as a second trigger: alarm evidence when seizure >= th or early >= th / g
            (the score max(seizure, g early)), g = 1.1, 1.25, 1.5, 2
  change    the change from the recent baseline of the score: seizure - median(seizure, previous 30 s)
Per idea family, the nested choice too: per fold, the variant whose out-of-fold point alarms most, then
with the fewest false alarms, then the least latency (ties: the shipped variant). The latency slack of
``events`` chosen out of fold is ``compare --threshold-method events_nested`` (research/nested.py).

    python scripts/onset_evidence.py DATASET_1S OUT_DIR [FAMILY ...]   (DATASET_1S: config/dataset-dog1-1s.yaml)
Writes OUT_DIR/onset-evidence.json and prints one line per variant and per nested choice.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seizurewatch.config import DecisionConfig
from seizurewatch.research.dataset import open_dataset
from seizurewatch.research.evaluate import second_scores
from seizurewatch.research.outoffold import recording_paths, with_roles
from seizurewatch.research.predict import Trace, stream_probabilities
from seizurewatch.research.threshold import by_events, outcome
from seizurewatch.research.timescore import score_seconds
from seizurewatch.research.training_run import load_model_config, train_from_dataset

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "config" / "models" / "hills-early-250ms.yaml"
W_SHIPPED = 0.5
Score = Callable[[Trace], np.ndarray]


def traces(dataset: str, out: Path) -> dict[tuple[str, str], Trace]:
    """(trained without, replayed) -> trace: each fold model's test replay and each pair model's two replays."""
    ds = open_dataset(dataset)
    paths = recording_paths(ds)
    recs = sorted(paths)
    spec = load_model_config(RECIPE)
    (out / "traces").mkdir(parents=True, exist_ok=True)
    jobs = [(tuple(r for r in recs if r != t), (t,)) for t in recs]
    jobs += [(tuple(r for r in recs if r not in pair), pair) for pair in itertools.combinations(recs, 2)]
    got: dict[tuple[str, str], Trace] = {}
    for train, replays in jobs:
        name = "+".join(Path(r).stem for r in train)
        model = out / "traces" / f"{name}.pt"
        for r in replays:
            cache = out / "traces" / f"{name}-on-{Path(r).stem}.pkl"
            if not cache.exists():
                if not model.exists():
                    train_from_dataset(with_roles(ds, dict.fromkeys(train, "train")), spec, model, progress=False,
                                       command="scripts/onset_evidence.py")
                cache.write_bytes(pickle.dumps(stream_probabilities(paths[r], str(model), DecisionConfig())))
            without = "+".join(sorted(set(recs) - set(train) - {r}))  # "" for a fold model
            got[(without, r)] = pickle.loads(cache.read_bytes())
    return got


def fold(got: dict[tuple[str, str], Trace], test: str) -> tuple[Trace, list[Trace]]:
    """Fold ``test``: its test trace and the out-of-fold traces of the other recordings."""
    return got[("", test)], [got[(test, r)] for r in sorted({r for _, r in got}) if r != test]


def parts(tr: Trace) -> tuple[np.ndarray, np.ndarray]:
    """P(seizure), P(early | seizure) from the two outputs of the conditional forests (w = 0.5)."""
    assert tr.outputs is not None
    p0, p1 = tr.outputs[:, 0].astype(np.float64), tr.outputs[:, 1].astype(np.float64)
    s = np.clip((1 + W_SHIPPED) * p0 - W_SHIPPED * p1, 0.0, 1.0)
    return s, np.clip(np.where(s > 1e-9, p1 / np.maximum(s, 1e-9), 0.0), 0.0, 1.0)


def weight(w: float) -> Score:
    def score(tr: Trace) -> np.ndarray:
        s, e = parts(tr)
        return s * (1 + w * e) / (1 + w)
    return score


def trigger(g: float) -> Score:
    def score(tr: Trace) -> np.ndarray:
        assert tr.outputs is not None
        return np.minimum(np.maximum(tr.outputs[:, 0], g * tr.outputs[:, 1]), 1.0).astype(np.float64)
    return score


def change(span_s: float) -> Score:
    def score(tr: Trace) -> np.ndarray:
        m = int(round(span_s / tr.hop_s))
        base = np.array([np.median(tr.p[max(0, i - m): i]) if i else 0.0 for i in range(len(tr.p))])
        return np.clip(tr.p - base, 1e-6, 1.0)
    return score


def shipped(tr: Trace) -> np.ndarray:
    return np.asarray(tr.p, dtype=np.float64)


FAMILIES: dict[str, list[tuple[str, Score]]] = {
    "weight": [("w 0.5 (shipped)", shipped)] + [(f"w {w:g}", weight(w)) for w in (0.0, 1.0, 2.0, 4.0)],
    "trigger": [("off (shipped)", shipped)] + [(f"early >= th/{g:g}", trigger(g)) for g in (1.1, 1.25, 1.5, 2.0)],
    "change": [("off (shipped)", shipped), ("minus median of the previous 30 s", change(30.0))],
}


def scored(tr: Trace, score: Score) -> Trace:
    return dataclasses.replace(tr, p=score(tr))


def family(got: dict[tuple[str, str], Trace], variants: list[tuple[str, Score]]) -> dict[str, Any]:
    """Each variant's LORO outcome at its out-of-fold operating point, and the nested choice among them."""
    dec = DecisionConfig()
    fixed: dict[str, list[tuple[dict[str, Any], Trace]]] = {name: [] for name, _ in variants}
    nested: list[tuple[dict[str, Any], Trace]] = []
    for test in sorted({r for _, r in got}):
        tt, oof = fold(got, test)
        best: tuple[tuple[float, ...], dict[str, Any], Trace] | None = None
        for i, (name, score) in enumerate(variants):
            ch = by_events([scored(o, score) for o in oof], dec)
            pt, t_s = ch["point"], scored(tt, score)
            lat = pt["latency_s_median"]
            key = (-pt["detected"], pt["false_alarms"], 1e9 if lat is None else lat, i)
            o = outcome([t_s], ch["value"], dec.for_model(ch, tt.hop_s)) | {"variant": name, "test": test}
            fixed[name].append((o, t_s))
            print(f"  {test} {name}: out of fold {key[:3]} -> test {o['latency_s']} FA {o['false_alarms']}",
                  flush=True)
            if best is None or key < best[0]:
                best = (key, o, t_s)
        assert best is not None
        nested.append((best[1], best[2]))
    return {"fixed": {name: summary(rows) for name, rows in fixed.items()}, "nested": summary(nested)}


def summary(rows: list[tuple[dict[str, Any], Trace]]) -> dict[str, Any]:
    lat = [v for o, _ in rows for v in o["latency_s"]]
    sec = score_seconds(second_scores([t for _, t in rows]))["pooled"]
    return {"alarmed": sum(o["detected"] for o, _ in rows), "seizures": sum(o["seizures"] for o, _ in rows),
            "false_alarms": sum(o["false_alarms"] for o, _ in rows), "latency_s": lat,
            "latency_s_median": float(np.median(lat)) if lat else None,
            "seizure_auc": sec["seizure_auc"], "early_auc": sec["early_auc"],
            "per_fold": [{k: o[k] for k in ("test", "variant", "threshold", "rule", "rule_s", "latency_s",
                                            "false_alarms")} for o, _ in rows]}


def main(argv: list[str]) -> None:
    dataset, out = argv[0], Path(argv[1])
    got = traces(dataset, out)
    result = {}
    for name in argv[2:] or list(FAMILIES):
        print(name, flush=True)
        result[name] = family(got, FAMILIES[name])
        for variant, s in list(result[name]["fixed"].items()) + [("nested choice", result[name]["nested"])]:
            print(f"{name} / {variant}: {s['alarmed']}/{s['seizures']} alarmed, {s['false_alarms']} FA, latencies "
                  f"{s['latency_s']} (median {s['latency_s_median']}), seizure AUC {s['seizure_auc']:.3f}, "
                  f"early AUC {s['early_auc']:.3f}", flush=True)
    (out / "onset-evidence.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
