"""What each Dask worker process of seizurewatch's clusters does at start and at shutdown (imported only
where a cluster is made: it needs ``distributed``)."""

from __future__ import annotations

import gc
import logging
from typing import Any

from distributed import WorkerPlugin


class SeizurewatchWorker(WorkerPlugin):
    """At start: one core per worker process (the cluster is the parallelism: torch on one thread, a replay
    waiting for its model instead of reading on, ``inference.one_core``), and the caller's log level for
    seizurewatch (a replay's alarm warnings are the caller's output, not the log's).

    At shutdown: every object is frozen out of the garbage collector. A worker that imported torch spent
    1.8-2.8 s of its exit in the interpreter's final collection (0.5 s frozen), past the 4 s the nanny
    waits on a loaded machine before it kills the process and logs "Worker process still alive after 4.0
    seconds, killing" at the end of every research command; closing a 2-worker LocalCluster went from
    3.7-4.2 s (with that warning) to 0.8-0.9 s (without)."""

    name = "seizurewatch-worker"

    def __init__(self, level: int) -> None:
        self.level = level

    def setup(self, worker: Any) -> None:
        from seizurewatch.inference import one_core

        one_core()
        logging.getLogger("seizurewatch").setLevel(self.level)

    def teardown(self, worker: Any) -> None:
        gc.freeze()
