"""research.parallel.run_tasks on a real Dask cluster (a `dask scheduler` + `dask worker` started here on
loopback, and the default in-process LocalCluster): results in input order, one error naming the failing
item after the others finished, and evaluate giving exactly the serial results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DOG1, MODEL, ROOT, free_port, wait_port

from seizurewatch.errors import ConfigError, SeizurewatchError
from seizurewatch.research.evaluate import EvaluateOptions, evaluate
from seizurewatch.research.parallel import SCHEDULER_ENV, Compute, TaskError, cluster_client, in_worker, run_tasks
from seizurewatch.research.predict import stream_probabilities

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

RECS = [str(DOG1 / "dog1_rec03.edf"), str(DOG1 / "dog1_rec04.edf")]
BIN = Path(sys.executable).parent


def square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError(f"no {x}")
    time.sleep(0.01 * (5 - x))  # later items finish first: order comes from the input, not completion
    return x * x


@pytest.fixture(scope="module")
def scheduler():
    """A real two-process cluster on 127.0.0.1 free ports (one worker, one thread), no dashboards."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    # the workers import this module for the test's own task function
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_port(port, timeout=30)
        procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                       "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "0"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with cluster_client(address) as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def serial_traces():
    return [stream_probabilities(r, MODEL) for r in RECS]


def test_results_in_input_order_on_every_path(scheduler):
    items = [0, 1, 2, 4]
    want = [0, 1, 4, 16]
    assert run_tasks(square_or_fail, items, workers=1) == want
    assert run_tasks(square_or_fail, items, scheduler=scheduler) == want
    assert run_tasks(square_or_fail, items, workers=2) == want  # a LocalCluster of two processes
    assert run_tasks(square_or_fail, [], scheduler=scheduler) == []


def task_key(_: int) -> str:
    from distributed import get_worker

    return str(get_worker().get_current_task())


def fan_out(n: int) -> tuple[str, list[str], list[int]]:
    """A task that runs tasks of its own (as compare's fold runs its left-out recordings)."""
    return task_key(0), run_tasks(task_key, list(range(n))), run_tasks(square_or_fail, [0, 1, 2, 4])


def test_a_task_s_own_tasks_run_on_its_cluster_in_order(scheduler):
    """On a one-worker, one-thread cluster: two outer tasks each fan out to three inner tasks, which run as
    tasks of their own (their keys are not the outer task's), and everything finishes (the outer task's
    thread leaves the pool while its inner tasks run, so one thread is enough)."""
    runs = run_tasks(fan_out, [3, 3], scheduler=scheduler)
    keys = [k for outer, inner, _ in runs for k in (outer, *inner)]
    assert len(set(keys)) == 8  # 2 outer + 6 inner, each a task of its own
    assert all(squares == [0, 1, 4, 16] for _, _, squares in runs)
    # one item or workers=1 inside a task: here, in the task itself
    assert run_tasks(fan_one, [0], scheduler=scheduler) == [True]


def fan_one(_: int) -> bool:
    outer = task_key(0)
    return run_tasks(task_key, [0]) == [outer] and run_tasks(task_key, [0, 1], workers=1) == [outer, outer]


def test_one_error_names_the_failing_item_after_the_others_finished(scheduler, tmp_path):
    for kw in ({"workers": 1}, {"scheduler": scheduler}):
        with pytest.raises(TaskError, match=r"1 task\(s\) failed: recording 3: ValueError: no 3") as err:
            run_tasks(square_or_fail, [1, 3, 4], **kw)
        assert isinstance(err.value.__cause__, ValueError)
    # a missing recording among real ones: named by its path, the real one still replayed
    missing = str(tmp_path / "gone.edf")
    with pytest.raises(SeizurewatchError, match="1 task\\(s\\) failed: recording .*gone.edf") as err:
        run_tasks(stream_probabilities, [RECS[1], missing], scheduler=scheduler)
    assert "dog1_rec04" not in str(err.value)


def in_a_worker(_: int) -> bool:
    return in_worker()


def test_scheduler_from_the_environment_dask_config_and_a_wrong_address(scheduler, monkeypatch):
    import dask.config

    assert run_tasks(in_a_worker, [0]) == [False]  # one item, no scheduler named: here
    monkeypatch.setenv(SCHEDULER_ENV, scheduler)
    assert run_tasks(in_a_worker, [0]) == [True]  # one item, but the env names a cluster: it runs there
    monkeypatch.delenv(SCHEDULER_ENV)
    with dask.config.set({"scheduler-address": scheduler}):  # Dask's own config key (~/.config/dask/*.yaml)
        assert run_tasks(in_a_worker, [0]) == [True]
    port = free_port()
    with pytest.raises(ConfigError, match=f"--scheduler tcp://127.0.0.1:{port}: no Dask scheduler"):
        run_tasks(square_or_fail, [1, 2], scheduler=f"tcp://127.0.0.1:{port}")


def model_beside_the_replay(model: str) -> bool:
    from seizurewatch.inference import Predictor
    from seizurewatch.modelfile import load_model

    predictor = Predictor(load_model(model))
    try:
        return not predictor.one_core
    finally:
        predictor.close()


def test_a_worker_is_one_core_and_replays_as_the_caller_does(scheduler, serial_traces):
    """Here the replay reads on while the model runs on its thread; in a worker it waits for each block
    (one core per worker); the probabilities every hop and the alarms are the same."""
    assert model_beside_the_replay(str(MODEL))
    assert run_tasks(model_beside_the_replay, [str(MODEL)], scheduler=scheduler) == [False]
    remote = run_tasks(stream_probabilities, RECS, scheduler=scheduler)
    for a, b in zip(remote, serial_traces):
        assert len(a.t) > 100
        assert a.t.tobytes() == b.t.tobytes() and a.p.tobytes() == b.p.tobytes()
        assert a.alarms == b.alarms and a.seizures == b.seizures


def _metrics(out: Path, compute: Compute | None = None, traces=None) -> dict:
    evaluate(MODEL, RECS, out, EvaluateOptions(compute=compute or Compute()), traces=traces)
    m = json.loads((out / "metrics.json").read_text())
    m.pop("model_path")
    return m


def test_evaluate_on_a_cluster_equals_the_serial_run(scheduler, serial_traces, tmp_path):
    """Each recording's replay, windows, window probabilities and timeline run as its task; wherever the
    tasks ran, the metrics and the timelines are the serial run's."""
    serial = _metrics(tmp_path / "serial", Compute(workers=1))  # every task here, one after the other
    remote = _metrics(tmp_path / "remote", Compute(scheduler=scheduler))
    local = _metrics(tmp_path / "local", traces=serial_traces)  # replays given; the rest on a LocalCluster
    assert remote == serial
    assert local == serial
    assert serial["events"]["seizures"] >= 1 and len(serial["events"]["recordings"]) == 2
    assert serial["windows"]["windows"] > 100 and 0 < serial["windows"]["positive"] < serial["windows"]["windows"]
    pngs = sorted(p.name for p in (tmp_path / "serial").glob("*-timeline.png"))
    assert pngs == ["dog1_rec03-timeline.png", "dog1_rec04-timeline.png"]
    for name in pngs:
        assert (tmp_path / "remote" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()


def test_dataset_build_on_a_cluster_writes_the_serial_folder(scheduler, tmp_path):
    """One task per recording on the tcp cluster; the folder (signals, labels, index) equals the serial build."""
    import numpy as np

    from seizurewatch.research.dataset import DatasetSpec, SplitSpec, build_dataset, open_dataset

    spec = DatasetSpec(recordings=tuple(RECS), device=str(ROOT / "devices" / "dog1-ecog16.yaml"), window_s=10,
                       stride_s=5, stride_ictal_s=1, bandpass=(1.0, 150.0),
                       split=SplitSpec(assign={"dog1_rec03": "train", "dog1_rec04": "test"}))
    build_dataset(spec, tmp_path / "serial")
    build_dataset(spec, tmp_path / "cluster", scheduler=scheduler)
    a, b = open_dataset(tmp_path / "serial"), open_dataset(tmp_path / "cluster")
    assert a.index == b.index and len(a.index) > 50
    assert np.array_equal(a.y, b.y) and np.array_equal(a.x[:], b.x[:])

