"""Issue #29 item 3, idea (b): the change from the patient's recent baseline as features, measured leave one
recording out on Dog_1 beside a control that reproduces the shipped recipe's figures.

Hills features (research/hills.py) of every 1-s window every 0.25 s, from the daemon's preprocessing
(``Preprocessor``: causal, as a replay sees it); the baseline is the median of the windows' features over the
previous N s (not the current second); the recipe's conditional forests (1000 trees, w = 0.5) on [F, F - B]
("base") or on F alone ("none": the control, whose LORO figures equal compare's for the shipped recipe),
trained on the windows every whole second that are wholly ictal or interictal. Ten models per variant (the
four fold models, the six out-of-fold pair models); the traces are pickled to
/tmp/baseline-features-VARIANT-N.pkl and scored as compare scores them (``evaluate``: each fold's threshold
and rule by ``events`` on its out-of-fold traces).

    python scripts/baseline_features.py N_S TREES VARIANT[,VARIANT]     e.g. 30 1000 none,base
"""

import itertools
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier

from seizurewatch.config import DecisionConfig
from seizurewatch.devices import load_device
from seizurewatch.modelfile import load_model
from seizurewatch.preprocess import Preprocessor
from seizurewatch.recordings import open_recording
from seizurewatch.research.hills import HillsFeatures
from seizurewatch.research.labels import is_seizure
from seizurewatch.research.predict import Trace

N_S = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
TREES = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dog1"
R = ["01", "02", "03", "04"]
meta = load_model(ROOT / "models" / "dog1-hills-early.pt").meta
dev = load_device(ROOT / "devices" / "dog1-ecog16.yaml")
HOP, RATE = 0.25, meta.preprocess.rate

def features(r):
    cache = Path(f"/tmp/baseline-features-rec{r}.pkl")
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    path = DATA / f"dog1_rec{r}.edf"
    with open_recording(path, units=dev.units) as rec:
        h = rec.header
        proc = Preprocessor(meta.preprocess, h.channels, h.rate, where=str(path), canon=dev.canonical)
        sig = np.concatenate([proc.process(b) for _, b in rec.chunks(int(30 * h.rate))], axis=1)
    n = int(RATE)
    ends = np.arange(n, sig.shape[1] + 1, int(HOP * RATE))
    x = torch.from_numpy(np.stack([sig[:, e - n: e] for e in ends]).astype(np.float32))
    with torch.no_grad():
        f = HillsFeatures(sig.shape[0], n, RATE)(x).numpy()
    out = (ends / RATE, f, sig.shape[1] / RATE)
    cache.write_bytes(pickle.dumps(out))
    return out

def seizure_of(r):
    import csv
    rows = list(csv.DictReader(open(DATA / f"dog1_rec{r}.csv")))
    sz = [(float(a["onset"]), float(a["onset"]) + float(a["duration"])) for a in rows if is_seizure(a["description"])]
    return sz

def with_baseline(t, f, n_s):
    m = int(round(n_s / HOP))
    b = np.empty_like(f)
    for i in range(len(f)):
        past = f[max(0, i - m): i - 3] if i - 3 > 0 else f[:1]   # the previous N s, not this second
        b[i] = np.median(past, axis=0)
    return np.concatenate([f, f - b], axis=1)

def labels(t, sz):
    on, end = sz[0]
    ictal = (t - 1 >= on) & (t <= end)
    inter = (t <= on) | (t - 1 >= end)
    early = ictal & (t <= on + 15)
    return ictal, inter, early

DATASETS = {}
for r in R:
    t, f, dur = features(r)
    DATASETS[r] = (t, f, with_baseline(t, f, N_S), dur, seizure_of(r))

def fit(train, variant):
    X, Y, E = [], [], []
    for r in train:
        t, f, fb, dur, sz = DATASETS[r]
        ict, inter, early = labels(t, sz)
        whole = np.isclose(t % 1.0, 0.0) | np.isclose(t % 1.0, 1.0)  # trained on windows every second
        keep = whole & (ict | inter)
        X.append((fb if variant == "base" else f)[keep])
        Y.append(ict[keep])
        E.append(early[keep])
    X, Y, E = np.concatenate(X), np.concatenate(Y), np.concatenate(E)
    kw = dict(n_estimators=TREES, max_features="sqrt", min_samples_leaf=1, bootstrap=False, random_state=0, n_jobs=1)
    s = RandomForestClassifier(**kw).fit(X, Y.astype(int))
    e = RandomForestClassifier(**kw).fit(X[Y], E[Y].astype(int))
    return s, e

def trace(model, r, variant):
    s, e = model
    t, f, fb, dur, sz = DATASETS[r]
    X = fb if variant == "base" else f
    ps, pe = s.predict_proba(X)[:, 1], e.predict_proba(X)[:, 1]
    p0, p1 = ps * (1 + 0.5 * pe) / 1.5, ps * pe
    return Trace(f"dog1_rec{r}.edf", variant, t, p0, dur, 0.5, DecisionConfig(), seizures=sz, hop_s=HOP,
                 outputs=np.stack([p0, p1], 1), output_names=("seizure", "early"))


def evaluate(got, variant):
    """compare's protocol on these traces: each fold's threshold and rule by ``events`` on its out-of-fold traces."""
    from seizurewatch.research.evaluate import second_scores
    from seizurewatch.research.threshold import by_events, outcome
    from seizurewatch.research.timescore import score_seconds

    dec, lat, fa, tests = DecisionConfig(), [], 0, []
    for T in R:
        test = got[("test", T)]
        ch = by_events([got[("oof", T, X)] for X in R if X != T], dec)
        o = outcome([test], ch["value"], dec.for_model(ch, test.hop_s))
        print(variant, T, f"{o['threshold']:.3f} {o['rule']}", o["latency_s"], "FA", o["false_alarms"], flush=True)
        lat, fa, tests = lat + o["latency_s"], fa + o["false_alarms"], tests + [test]
    sec = score_seconds(second_scores(tests))["pooled"]
    print(f"{variant}: latencies {lat} median {np.median(lat)}, {fa} false alarms, seizure AUC "
          f"{sec['seizure_auc']:.3f}, early AUC {sec['early_auc']:.3f}, early output AUC {sec['early_auc_output']:.3f}")


for variant in sys.argv[3].split(","):
    out = {}
    for T in R:
        key = tuple(x for x in R if x != T)
        t0 = time.time()
        m = fit(key, variant)
        out[("test", T)] = trace(m, T, variant)
        print(variant, "fold model", key, f"{time.time() - t0:.0f}s", flush=True)
    for T, X in itertools.combinations(R, 2):
        m = fit(tuple(x for x in R if x not in (T, X)), variant)
        out[("oof", T, X)] = trace(m, X, variant)   # fold T's out-of-fold trace of X
        out[("oof", X, T)] = trace(m, T, variant)
        print(variant, "pair", T, X, flush=True)
    Path(f"/tmp/baseline-features-{variant}-{N_S:g}.pkl").write_bytes(pickle.dumps(out))
    evaluate(out, variant)
