"""``evaluate`` over recordings in this process and on a Dask cluster of 1 and of N workers
(``seizurewatch.research.parallel.run_tasks``): wall seconds, their ratios, and whether the metrics are
identical. ``workers_ratio`` is the reusable part (any function of a scheduler address)."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import DOG1, SHIPPED_MODELS, figure, log


def workers_ratio(name: str, fn: Callable[[str | None], Any], what: str, workers: tuple[int, int] = (1, 2)
                  ) -> dict[str, Any]:
    """Figures for ``fn(None)`` (serially in this process: no cluster, the model on its own thread beside
    each replay, as ``workers=1``) and for ``fn(address)`` on a LocalCluster of ``workers[0]`` and of
    ``workers[1]`` processes (one core each, as ``run_tasks`` makes them), each cluster started and warmed
    (imports done in every worker) before its clock starts; its start-up is a figure of its own.
    Ratios > 1: the second is faster. ``identical_results``: all three returned equal results."""
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    serial = fn(None)
    runs: dict[str, tuple[float, Any]] = {"serial": (time.perf_counter() - t0, serial)}
    startup: dict[int, float] = {}
    for w in workers:
        t0 = time.perf_counter()
        with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0",
                          memory_limit=0) as cluster, Client(cluster) as client:
            client.wait_for_workers(w)
            client.run(_warm)
            startup[w] = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = fn(cluster.scheduler_address)
            runs[str(w)] = (time.perf_counter() - t0, res)
    a, b = workers
    (ts, rs), (ta, ra), (tb, rb) = runs["serial"], runs[str(a)], runs[str(b)]
    same = bool(rs == ra == rb)
    return {
        f"{name}.seconds_serial": figure(ts, "s", f"{what}: serially in this process (workers=1: no cluster; the "
                                                  f"model on its own thread beside each replay)"),
        f"{name}.seconds_{a}_worker": figure(ta, "s", f"{what}: on a LocalCluster of {a} worker(s), one core each "
                                                      f"(started before the clock: {startup[a]:.1f} s)"),
        f"{name}.seconds_{b}_workers": figure(tb, "s", f"{what}: on a LocalCluster of {b} workers, one core each "
                                                       f"(started before the clock: {startup[b]:.1f} s)"),
        f"{name}.speedup_{b}_vs_{a}": figure(ta / tb if tb else 0.0, "ratio",
                                            f"seconds on {a} worker(s) / on {b}: {what}", identical_results=same),
        f"{name}.speedup_{b}_vs_serial": figure(ts / (tb + startup[b]) if tb else 0.0, "ratio",
                                               f"seconds serially / on {b} workers with the cluster's start-up "
                                               f"({startup[b]:.1f} s): what a caller of {what} gains on this "
                                               f"machine", identical_results=same),
    }


def _warm() -> None:
    import torch  # noqa: F401

    import seizurewatch.research.evaluate  # noqa: F401


def _evaluate_on(recordings: list[str], model: Path) -> Callable[[str | None], Any]:
    from seizurewatch.research.evaluate import EvaluateOptions, evaluate
    from seizurewatch.research.parallel import Compute

    def run(scheduler: str | None) -> Any:
        with tempfile.TemporaryDirectory() as out:
            # no scheduler: serially, no cluster; else one task per recording on that cluster
            compute = Compute(scheduler=scheduler, workers=1 if scheduler is None else None)
            m = evaluate(model, recordings, out, EvaluateOptions(compute=compute))
            m.pop("model_path", None)
            return json.dumps(m, sort_keys=True, default=float)

    return run


def cluster_startup(workers: int = 2) -> dict[str, Any]:
    """Seconds until an in-process LocalCluster of ``workers`` has run a task on each worker (torch imported)."""
    from seizurewatch.research.parallel import cluster_client

    t0 = time.perf_counter()
    with cluster_client(workers=workers) as client:
        client.wait_for_workers(workers)
        client.run(_import_torch)
        dt = time.perf_counter() - t0
    return {f"local_cluster_{workers}_workers.startup_s": figure(
        dt, "s", f"LocalCluster({workers} processes, 1 thread each) started and torch imported in every worker: "
                 "the fixed cost a parallel evaluate pays before its first replay")}


def _import_torch() -> None:
    import torch  # noqa: F401


def run(quick: bool) -> dict[str, Any]:
    recs = [str(DOG1 / "dog1_rec03.edf"), str(DOG1 / "dog1_rec04.edf")]
    model = SHIPPED_MODELS / "dog1-convnet.pt"
    log("parallel: evaluate dog1_rec03 + dog1_rec04 on 1 and 2 workers")
    figs = cluster_startup(2)
    return {"figures": figs | workers_ratio(
        "evaluate_dog1_rec03_rec04", _evaluate_on(recs, model),
        "evaluate (one task per recording: its replay through the daemon, its windows and their probabilities, its "
        "timeline; then the metrics) of the "
        "shipped dog1-convnet on dog1_rec03.edf + dog1_rec04.edf")}
