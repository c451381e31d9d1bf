"""``evaluate`` over recordings on 1 vs N Dask workers (``seizurewatch.research.parallel.run_tasks``): wall
seconds and their ratio, and whether the metrics are identical. ``workers_ratio`` is the reusable part
(any function of a list of items, e.g. a corpus build per recording, later)."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import DOG1, SHIPPED_MODELS, figure, log


def workers_ratio(name: str, fn: Callable[[int], Any], what: str, workers: tuple[int, int] = (1, 2)
                  ) -> dict[str, Any]:
    """Figures for ``fn(workers)`` timed at ``workers[0]`` and ``workers[1]``: seconds of each and the
    ratio (> 1: the second is faster), plus whether both returned equal results."""
    runs: dict[int, tuple[float, Any]] = {}
    for w in workers:
        t0 = time.perf_counter()
        res = fn(w)
        runs[w] = (time.perf_counter() - t0, res)
    (a, (ta, ra)), (b, (tb, rb)) = runs.items()
    return {
        f"{name}.seconds_{a}_worker": figure(ta, "s", f"{what} on {a} worker(s) (cluster start-up included)"),
        f"{name}.seconds_{b}_workers": figure(tb, "s", f"{what} on {b} worker(s) (cluster start-up included)"),
        f"{name}.speedup_{b}_vs_{a}": figure(ta / tb if tb else 0.0, "ratio",
                                            f"seconds on {a} / seconds on {b} worker(s): {what}",
                                            identical_results=bool(ra == rb)),
    }


def _evaluate_on(recordings: list[str], model: Path) -> Callable[[int], Any]:
    from seizurewatch.research.evaluate import evaluate

    def run(workers: int) -> Any:
        with tempfile.TemporaryDirectory() as out:
            # workers=1: serially, no cluster; else an in-process LocalCluster of that many processes
            m = evaluate(model, recordings, out, workers=workers)
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
