"""A corpus tiled from the shared Dog_1 recordings at several sizes: ``research.dataset.build_dataset`` disk,
build time and peak RSS per size, and ``evaluate`` on 1 vs 2 workers on the smallest full size.

The corpus: Dog_1 rec01..04 (16 ch, 400 Hz) concatenated and repeated, cut into EDF+ files of one hour
(``FILE_S``), each carrying the seizure annotations of the copies it holds (shifted to its time line; a
seizure cut by a file boundary is clipped to it). Written with pyedflib into the bench work folder.

Sizes in hours: ``SIZES_H`` (10, 50, 200), or ``BENCH_CORPUS_HOURS=2,10`` (quick: 0.25 and 0.5 h). Each build
runs in its own process (``python -m bench.bench_corpus build``), serially (``workers=1``), so its peak RSS
(``ru_maxrss``) is the build's alone.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_parallel import _evaluate_on, workers_ratio
from bench.common import DOG1, ROOT, SHIPPED_MODELS, figure, log, workdir

SIZES_H = (10.0, 50.0, 200.0)
QUICK_SIZES_H = (0.25, 0.5)
FILE_S = 3600.0
RATE = 400
DEVICE = ROOT / "devices" / "dog1-ecog16.yaml"
MODEL = SHIPPED_MODELS / "dog1-hills-early.pt"
WINDOW_S = 10.0
STRIDE_S = 1.0
FINE_STRIDE_S = 0.25
# Dog_1's four recordings are short (about 2.2 min each) with one seizure each: tiled, a seizure comes every
# ~2.2 min, so the default 300 s exclusion would leave no interictal window; 20 s keeps some.
EXCLUSION_S = 20.0


def sizes(quick: bool) -> tuple[float, ...]:
    env = os.environ.get("BENCH_CORPUS_HOURS")
    if env:
        return tuple(float(h) for h in env.split(","))
    return QUICK_SIZES_H if quick else SIZES_H


# ----- the tiled corpus ------------------------------------------------------------------
def _dog1_stream() -> tuple[np.ndarray, list[tuple[float, float]], list[str]]:
    """rec01..04 concatenated: (16, n) µV float64, the seizures (onset, duration) on that time line, labels."""
    from seizurewatch.edfio import EdfRecording
    from seizurewatch.research.annotations import find_annotations
    from seizurewatch.research.labels import is_seizure

    parts, seizures, offset = [], [], 0.0
    labels: list[str] = []
    for i in range(1, 5):
        path = DOG1 / f"dog1_rec0{i}.edf"
        with EdfRecording(path) as rec:
            x = rec.read(0, rec.header.n_samples)
            labels = list(rec.header.channels)
        found = find_annotations(path)
        assert found is not None
        seizures += [(offset + a.onset, a.duration) for a in found.annotations if is_seizure(a.description)]
        parts.append(np.asarray(x, dtype=np.float64))
        offset += x.shape[1] / RATE
    return np.concatenate(parts, axis=1), seizures, labels


def corpus(hours: float) -> list[Path]:
    """EDF+ files of ``FILE_S`` (the last one shorter) summing to ``hours``, tiled from Dog_1 (cached)."""
    import pyedflib

    folder = workdir() / f"corpus-dog1-{hours:g}h"
    done = folder / "complete"
    if done.is_file():
        return sorted(folder.glob("*.edf"))
    folder.mkdir(parents=True, exist_ok=True)
    x, seizures, labels = _dog1_stream()
    period = x.shape[1]
    lo = np.floor(x.min(axis=1)) - 1.0
    hi = np.ceil(x.max(axis=1)) + 1.0
    total = int(round(hours * 3600 * RATE))
    per_file = int(FILE_S * RATE)
    files = []
    for k, start in enumerate(range(0, total, per_file)):
        n = min(per_file, total - start)
        n -= n % RATE
        path = folder / f"tile{k:04d}.edf"
        w = pyedflib.EdfWriter(str(path), len(labels), file_type=pyedflib.FILETYPE_EDFPLUS)
        try:
            w.setSignalHeaders([{"label": lab, "dimension": "uV", "sample_frequency": RATE,  # type: ignore[arg-type]
                                 "physical_min": float(lo[i]), "physical_max": float(hi[i]), "digital_min": -32768,
                                 "digital_max": 32767, "transducer": "", "prefilter": ""}
                                for i, lab in enumerate(labels)])
            for s in range(0, n, RATE * 60):  # a minute at a time, from the repeated stream
                idx = (start + s + np.arange(min(RATE * 60, n - s))) % period
                chunk = x[:, idx]
                w.writeSamples([np.ascontiguousarray(chunk[i]) for i in range(len(labels))])
            t0, t1 = start / RATE, (start + n) / RATE
            first = int(t0 // (period / RATE))
            for rep in range(first, int(t1 // (period / RATE)) + 1):
                for onset, dur in seizures:
                    a, b = rep * period / RATE + onset, rep * period / RATE + onset + dur
                    a, b = max(a, t0), min(b, t1)
                    if b > a:
                        w.writeAnnotation(a - t0, b - a, "seizure")
        finally:
            w.close()
        files.append(path)
    done.write_text("")
    return files


# ----- one build, in its own process -----------------------------------------------------
def build_child(folder: str, out: str, stride_s: float) -> dict[str, Any]:
    import resource

    from seizurewatch.research.dataset import DatasetSpec, build_dataset

    spec = DatasetSpec(recordings=(str(Path(folder) / "*.edf"),), device=str(DEVICE), window_s=WINDOW_S,
                       stride_s=stride_s, stride_ictal_s=stride_s, exclusion_s=EXCLUSION_S, name="bench-corpus")
    t0 = time.perf_counter()
    manifest = build_dataset(spec, out, workers=1)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "n": manifest["n"],
            "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def build(files: list[Path], tag: str, stride_s: float) -> dict[str, Any]:
    import shutil

    out = workdir() / f"dataset-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "bench.bench_corpus", "build", str(files[0].parent), str(out), str(stride_s)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"dataset build of {tag} failed: {proc.stderr.strip().splitlines()[-1:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    n_samples = 0
    for f in files:  # the preprocessed signal: 16 ch float32 at the device rate, as long as the files
        from seizurewatch.edfio import EdfRecording

        with EdfRecording(f) as rec:
            n_samples += rec.header.n_samples * len(rec.header.channels)
    res["disk_bytes"] = disk
    res["signal_bytes"] = n_samples * 4
    shutil.rmtree(out, ignore_errors=True)
    return res


def run(quick: bool) -> dict[str, Any]:
    hs = sizes(quick)
    figs: dict[str, Any] = {}
    where = (f"corpus tiled from Dog_1 rec01..04 (16 ch, 400 Hz) into EDF+ files of {FILE_S / 3600:g} h with their "
             f"seizure annotations; dataset spec: device dog1-ecog16, {WINDOW_S:g}-s windows, exclusion "
             f"{EXCLUSION_S:g} s; build_dataset(workers=1) in its own process")
    rss = {}
    for h in hs:
        log(f"corpus: writing {h:g} h")
        files = corpus(h)
        log(f"corpus: building the dataset of {h:g} h ({len(files)} files)")
        r = build(files, f"{h:g}h", STRIDE_S)
        setup = f"{h:g} h {where}, stride {STRIDE_S:g} s ({r['n']} windows)"
        figs[f"{h:g}h.disk_vs_signal"] = figure(r["disk_bytes"] / r["signal_bytes"], "ratio",
                                                f"dataset folder bytes / preprocessed signal bytes (16 ch float32 "
                                                f"x samples): {setup}; target <= 1.1",
                                                disk_bytes=r["disk_bytes"], signal_bytes=r["signal_bytes"])
        figs[f"{h:g}h.build_s"] = figure(r["seconds"], "s", f"build_dataset wall seconds: {setup}")
        figs[f"{h:g}h.peak_rss"] = figure(r["maxrss_mib"], "MiB", f"peak RSS (ru_maxrss) of the build process: {setup}")
        rss[h] = r["maxrss_mib"]
    h0 = hs[0]
    log(f"corpus: building {h0:g} h at stride {FINE_STRIDE_S:g} s")
    r = build(corpus(h0), f"{h0:g}h-fine", FINE_STRIDE_S)
    figs[f"{h0:g}h.stride{FINE_STRIDE_S:g}.disk_vs_signal"] = figure(
        r["disk_bytes"] / r["signal_bytes"], "ratio",
        f"as disk_vs_signal at stride {FINE_STRIDE_S:g} s ({r['n']} windows): {h0:g} h {where}; target <= 1.1",
        disk_bytes=r["disk_bytes"], signal_bytes=r["signal_bytes"])
    figs[f"{h0:g}h.stride{FINE_STRIDE_S:g}.build_s"] = figure(r["seconds"], "s", f"build at stride {FINE_STRIDE_S:g} s")
    if len(hs) > 1:
        lo, hi = hs[0], hs[-1]
        figs["peak_rss_growth"] = figure(rss[hi] / rss[lo] - 1.0, "fraction",
                                         f"peak RSS of the {hi:g} h build / that of the {lo:g} h build - 1; target "
                                         f"within +-0.10 (memory that does not grow with the corpus)")
    recs = [str(p) for p in corpus(h0)]
    log(f"corpus: evaluate {MODEL.name} on the {h0:g} h corpus on 1 and 2 workers")
    figs |= workers_ratio(f"evaluate_{h0:g}h", _evaluate_on(recs, MODEL),
                          f"evaluate (one task per 1-h file: its replay through the daemon, its windows and their "
                          f"probabilities, its timeline; the caller gathers the metrics) "
                          f"of the shipped {MODEL.name} on the {h0:g} h tiled corpus ({len(recs)} files); target "
                          f"2 workers >= 1.7x one")
    log(f"corpus: the replays alone on the {h0:g} h corpus on 1 and 2 workers")
    figs |= workers_ratio(f"replay_{h0:g}h", _replays_on(recs, MODEL),
                          f"the replays alone (research.parallel.run_tasks over predict.stream_probabilities, one "
                          f"task per 1-h file) of the shipped {MODEL.name} on the {h0:g} h tiled corpus: the part of "
                          f"evaluate's task that is not windows, window probabilities or the timeline")
    log("corpus: the machine's own ceiling: a loop, then the same replays, in 1 vs 2 plain processes, no Dask")
    figs |= process_ceiling(recs[:4], MODEL)
    return {"figures": figs, "sizes_h": list(hs)}


_REPLAY_SCRIPT = """
import logging, sys
logging.disable(logging.CRITICAL)
from seizurewatch.inference import one_core
one_core()  # as in a Dask worker: torch on one thread, the replay waits for its model
from seizurewatch.research.predict import stream_probabilities
for f in sys.argv[2:]:
    stream_probabilities(f, sys.argv[1])
"""

_SPIN_SCRIPT = """
import sys
for _ in range(int(sys.argv[1])):
    s = 0
    for i in range(5_000_000):
        s += i
"""


def _timed_processes(groups: list[list[str]], script: str) -> float:
    """Wall seconds of one process per group, all started together (``python -c script *group``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", script, *g], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for g in groups]
    if any(pr.wait() != 0 for pr in procs):
        raise RuntimeError("a benchmark process failed")
    return time.perf_counter() - t0


def process_ceiling(recordings: list[str], model: Path) -> dict[str, Any]:
    """What two cores give two independent jobs on this machine, no scheduler at all: a pure-Python loop
    (the cores themselves), and the replays (one core each, as in a worker): the files replayed by one
    process, then split between two processes started together. A 2-worker speed-up can reach this, not more."""
    spin_one = _timed_processes([["8"]], _SPIN_SCRIPT)
    spin_two = _timed_processes([["4"], ["4"]], _SPIN_SCRIPT)
    one = _timed_processes([[str(model), *recordings]], _REPLAY_SCRIPT)
    two = _timed_processes([[str(model), *recordings[0::2]], [str(model), *recordings[1::2]]], _REPLAY_SCRIPT)
    what = (f"{len(recordings)} 1-h files of the tiled corpus replayed with {model.name}, one core per process "
            f"(inference.one_core, as a Dask worker)")
    return {"cores.speedup_2_vs_1": figure(spin_one / spin_two if spin_two else 0.0, "ratio",
                                           "a pure-Python loop: 8 units in one process / 4 units in each of two "
                                           "processes at once: what the machine's two cores give any work"),
            "processes.seconds_1": figure(one, "s", f"one process: {what} (interpreter start and imports included)"),
            "processes.seconds_2": figure(two, "s", f"two processes at once, half the files each: {what}"),
            "processes.speedup_2_vs_1": figure(one / two if two else 0.0, "ratio",
                                               f"seconds in 1 process / in 2: the ceiling of a 2-worker speed-up of "
                                               f"these replays on this machine ({what})")}


def _replays_on(recordings: list[str], model: Path) -> Any:
    from seizurewatch.research.parallel import run_tasks
    from seizurewatch.research.predict import stream_probabilities

    def run(scheduler: str | None) -> Any:
        traces = run_tasks(functools.partial(stream_probabilities, model=str(model)), recordings,
                           workers=1 if scheduler is None else None, scheduler=scheduler)
        return [(t.t.tobytes(), t.p.tobytes()) for t in traces]

    return run


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "build":
        print(json.dumps(build_child(sys.argv[2], sys.argv[3], float(sys.argv[4]))))
    else:
        raise SystemExit("usage: python -m bench.bench_corpus build CORPUS_FOLDER OUT STRIDE_S")
