"""One task per recording (or per fold x model) on a Dask cluster, results in input order.

``run_tasks(fn, items)`` is the only way offline work fans out: evaluate/predict/threshold
replay each recording as one task, ``compare`` trains and scores each fold x model as one.
Without ``scheduler`` an in-process ``LocalCluster`` sized to the machine runs the tasks (worker
processes, one thread each, one core per worker: torch on one thread, and a replay waits for its
model instead of reading on, ``inference.one_core``); ``scheduler='tcp://host:port'`` sends them to a running
cluster (``dask scheduler`` + ``dask worker``); ``workers=1`` (or one item)
runs them here, serially, with no cluster at all: the same function on the same items, so the same
results. A call from inside a task sends its items to the task's own cluster (``worker_client``).
The scheduler can also come from the environment (``SEIZUREWATCH_SCHEDULER``) or from Dask's config
key ``scheduler-address``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from seizurewatch.errors import ConfigError, SeizurewatchError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

SCHEDULER_ENV = "SEIZUREWATCH_SCHEDULER"


class SchedulerLost(SeizurewatchError):
    """The Dask scheduler went away mid-run (killed, network): which items are not known to be done (a task
    may have finished its own writes before the scheduler died; the caller can check its outputs)."""

    exit_code = 3

    def __init__(self, message: str, lost: list[Any] | None = None) -> None:
        super().__init__(message)
        self.lost = lost or []


class TaskError(RuntimeError):
    """One or more tasks failed with an internal error; every other task finished first. (Failures that are
    all ``SeizurewatchError`` of one kind, bad input, are raised as that kind, so the exit status stays 2.)"""


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def scheduler_from_env(scheduler: str | None) -> str | None:
    """``scheduler`` if given, else ``$SEIZUREWATCH_SCHEDULER``, else Dask's own config key
    ``scheduler-address`` (``~/.config/dask/*.yaml``, or ``$DASK_SCHEDULER_ADDRESS``); empty: none."""
    if scheduler or os.environ.get(SCHEDULER_ENV):
        return scheduler or os.environ.get(SCHEDULER_ENV)
    import dask.config

    return str(dask.config.get("scheduler-address", None) or "") or None


@contextlib.contextmanager
def cluster_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` on ``scheduler``, or on a new in-process LocalCluster of ``workers``
    processes with one thread each (closed on exit)."""
    from distributed import Client, LocalCluster

    from seizurewatch.research.worker import SeizurewatchWorker

    plugin = SeizurewatchWorker(logging.getLogger("seizurewatch").getEffectiveLevel())
    quiet = logging.getLogger("distributed")
    if quiet.getEffectiveLevel() < logging.WARNING:  # the cluster's start/stop chatter is not ours to show
        quiet.setLevel(logging.WARNING)
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise ConfigError(f"--scheduler {scheduler}: no Dask scheduler answers there ({exc}); start one with "
                              "`dask scheduler` and `dask worker ADDRESS`, or leave --scheduler out") from None
        with client:
            client.register_plugin(plugin)
            yield client
        return
    with LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
                      dashboard_address=":0", memory_limit=0) as cluster, Client(cluster) as client:
        client.register_plugin(plugin)
        yield client


def in_worker() -> bool:
    """Whether this runs inside a Dask task (nested fan-out goes to the task's cluster)."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Compute:
    """Where a command's tasks run (``run_tasks``): ``scheduler``, a running Dask scheduler's address, else an
    in-process cluster of ``workers`` (``workers=1``: serially here); ``progress``: a bar over tasks."""

    scheduler: str | None = None
    workers: int | None = None
    progress: bool = False

    def run(self, fn: Callable[[T], R], items: Sequence[T], what: str = "recording") -> list[R]:
        return run_tasks(fn, items, scheduler=self.scheduler, progress=self.progress, what=what,
                         workers=self.workers)


def _describe(item: Any) -> str:
    return str(item)


def run_tasks(fn: Callable[[T], R], items: Sequence[T], *, scheduler: str | None = None, progress: bool = False,
              what: str = "recording", workers: int | None = None, client: Any = None) -> list[R]:
    """``[fn(item) for item in items]``, one task per item, results in input order.

    ``scheduler``: address of a running Dask scheduler (``tcp://host:port``; default
    ``$SEIZUREWATCH_SCHEDULER``), else an in-process LocalCluster of ``workers`` processes (default: one per
    core); ``workers=1`` or a single item: serially in this process. ``client``: an existing
    ``distributed.Client`` to use instead. ``fn`` and the items must pickle (a module-level function or a
    ``functools.partial`` of one). ``progress``: a tqdm bar over tasks. When tasks fail the others still
    finish, then one error names each failing ``what`` (its item) and its error: ``TaskError``, or the
    failures' own ``SeizurewatchError`` class when they are all bad input of one kind."""
    items = list(items)
    if client is None and in_worker():
        if workers == 1 or len(items) <= 1:
            return _serial(fn, items, progress, what)
        from distributed import worker_client

        # a task's own tasks (compare's fold -> its left-out recordings) go to the same cluster; this task's
        # thread leaves the worker's pool while they run and waits for a slot to come back, so a worker still
        # computes one task at a time
        with worker_client() as c:
            return _on_client(c, fn, items, False, what)
    scheduler = scheduler_from_env(scheduler)
    if client is None and (workers == 1 or (not scheduler and len(items) <= 1)):
        return _serial(fn, items, progress, what)
    if client is not None:
        return _on_client(client, fn, items, progress, what)
    with cluster_client(scheduler, min(workers or default_workers(), len(items))) as c:
        return _on_client(c, fn, items, progress, what)


def _bar(total: int, progress: bool, what: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not progress, unit=what, desc=f"{what}s", leave=False)


def _serial(fn: Callable[[T], R], items: list[T], progress: bool, what: str) -> list[R]:
    out: list[Any] = []
    failed: list[tuple[T, BaseException]] = []
    with _bar(len(items), progress, what) as bar:
        for item in items:
            try:
                out.append(fn(item))
            except Exception as exc:  # the others still run; one error names them all below
                failed.append((item, exc))
                out.append(None)
            bar.update(1)
    _raise_failed(failed, what)
    return out


def _on_client(client: Any, fn: Callable[[T], R], items: list[T], progress: bool, what: str) -> list[R]:
    import concurrent.futures

    from distributed import as_completed

    # pure=False: the same item given twice is two tasks; keys stay unique per call
    futures = client.map(fn, items, pure=False)
    index = {f.key: i for i, f in enumerate(futures)}
    failed: dict[int, BaseException] = {}
    finished: set[int] = set()
    try:
        with _bar(len(items), progress, what) as bar:
            for fut in as_completed(futures):
                if fut.status == "error":
                    failed[index[fut.key]] = fut.exception()
                elif fut.status == "finished":
                    finished.add(index[fut.key])
                bar.update(1)
        if len(finished) + len(failed) < len(items):  # cancelled: the client lost the scheduler
            raise concurrent.futures.CancelledError
        _raise_failed([(items[i], failed[i]) for i in sorted(failed)], what)
        results: list[R] = client.gather(futures)
    except (OSError, TimeoutError, concurrent.futures.CancelledError) as exc:
        lost = [items[i] for i in range(len(items)) if i not in finished and i not in failed]
        address = getattr(getattr(client, "scheduler", None), "address", "?")
        raise SchedulerLost(f"the Dask scheduler {address} went away: {len(lost)} of {len(items)} {what}(s) not "
                            f"known to be done: {', '.join(_describe(x) for x in lost[:50])}", lost) from exc
    return results


def _raise_failed(failed: list[tuple[Any, BaseException]], what: str) -> None:
    if not failed:
        return
    lines = [f"{what} {_describe(item)}: {type(exc).__name__}: {exc}" for item, exc in failed]
    first = failed[0][1]
    message = f"{len(failed)} task(s) failed: " + "; ".join(lines)
    kinds = {type(exc) for _, exc in failed}
    if all(isinstance(exc, SeizurewatchError) for _, exc in failed):
        kind = kinds.pop() if len(kinds) == 1 else SeizurewatchError
        try:
            err: BaseException = kind(message)
        except TypeError:  # an error class that wants more than a message
            err = SeizurewatchError(message)
        raise err from first
    raise TaskError(message) from first
