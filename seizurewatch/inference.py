"""Runs the model off the event loop: one executor thread, batches of windows.

A batch (a block's windows, usually a strided view of the ring buffer) goes to the model's thread
in one hand-over and is run there in cache-sized chunks, each made contiguous just before the model
reads it: the model never sees the ring's memory, and a chunk's copy is still in cache when the model
reads it. For TorchScript models the chunk loop itself is TorchScript, so the thread does not take
the GIL back between chunks (each hand-back waits for the event loop to yield it).

Where one process is one core of a cluster (a Dask worker replaying recordings, ``one_core()``), the
model still runs on its thread, but the pipeline waits for each block's result before it reads on
(``Predictor.one_core``): the cluster is the parallelism, and reading beside the model would only take
a core from the other worker. The probabilities and decisions are the same.
"""

from __future__ import annotations

import asyncio
import ctypes
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from seizurewatch.modelfile import LoadedModel, quiet_torchscript

# A batch the model reads while it still sits in one core's L2 cache: measured on the seed ConvNet,
# 23 ch x 30 s windows run fastest 2 at a time (0.40 ms/window against 0.63 ms at 8 or more),
# 16 ch x 10 s windows 4-8 at a time.
BATCH_BYTES = 3 << 19  # 1.5 MiB

# glibc returns blocks above its mmap threshold (128 KiB at first) to the kernel when freed, so each
# batch's input and activations (megabytes) would be page-faulted in afresh: ~1,000 faults per call,
# the model running 1.5-3x slower. Freed blocks up to these sizes stay in the heap for reuse instead.
_MMAP_THRESHOLD = 32 << 20
_TRIM_THRESHOLD = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>

_ONE_CORE = False  # one_core(): this process is one core of a cluster


def configure_compute(threads: int) -> bool:
    """Size every compute thread pool explicitly and keep freed buffers for reuse; once, at start.

    Thread pools: torch's, and numpy's BLAS (OpenBLAS would otherwise start one spinning thread per
    core for any matrix product and fight the model's thread for the cores). Returns whether the
    allocator could be tuned (glibc only; elsewhere it is left as it is). A ``one_core()`` process keeps
    torch on one thread whatever ``threads`` says."""
    torch.set_num_threads(1 if _ONE_CORE else threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
    threadpool_limits(1, user_api="blas")
    return _keep_freed_blocks()


def one_core() -> None:
    """This process is one core of a cluster: torch on one thread, and every ``Predictor`` made from now on
    says ``one_core`` (its pipeline does not read on while the model runs). Called in each Dask worker."""
    global _ONE_CORE
    torch.set_num_threads(1)
    _ONE_CORE = True


def is_one_core() -> bool:
    """Whether ``one_core()`` was called in this process (a Dask worker)."""
    return _ONE_CORE


def _keep_freed_blocks() -> bool:
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):  # no mallopt (macOS): nothing to tune
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def batch_size(window_shape: tuple[int, ...], max_batch: int) -> int:
    """Windows per model call: as many as fit BATCH_BYTES (float32), at least 1, at most ``max_batch``."""
    per_window = 4 * int(np.prod(window_shape))
    return max(1, min(max_batch, BATCH_BYTES // per_window))


class _Chunked(torch.nn.Module):
    """Runs the model over a batch in chunks of ``step`` windows, each made contiguous (a copy of a view)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, step: int) -> torch.Tensor:
        return torch.cat([self.model(chunk.contiguous()) for chunk in x.split(step)])


class Predictor:
    """Thread-safe enough for one pipeline per stream sharing a model: calls are serialised."""

    def __init__(self, model: LoadedModel, max_batch: int = 64) -> None:
        self.model = model
        self.meta = model.meta
        self.chunk = batch_size((len(model.meta.preprocess.channels), model.meta.window_samples), max_batch)
        self._run: torch.nn.Module = _Chunked(model.module)
        if model.kind == "torchscript":  # the chunk loop as TorchScript too: no GIL between chunks
            with quiet_torchscript():
                self._run = torch.jit.script(self._run)
        # torch warns that a read-only array's tensor could be written through; ours are only read (copied
        # chunk by chunk). A filter installed once: catch_warnings on every call would not be thread-safe.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.one_core = _ONE_CORE  # the caller waits for each batch instead of working beside the model

    def _timed(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """(B, C, T) float32 -> ((B, outputs) probabilities, seconds in the model thread).

        ``batch`` may be a read-only strided view of overlapping windows: torch wraps it without a copy,
        and only contiguous copies of its chunks reach the model."""
        t0 = time.perf_counter()
        x = torch.from_numpy(batch if batch.dtype == np.float32 else batch.astype(np.float32))
        with torch.inference_mode():
            out = self._run(x, self.chunk)
        return out.detach().numpy().astype(np.float64), time.perf_counter() - t0

    def submit(self, batch: np.ndarray) -> asyncio.Future[tuple[np.ndarray, float]]:
        """Queue a batch on the model's thread now; the future gives (probabilities, seconds in the model)."""
        return asyncio.get_running_loop().run_in_executor(self._executor, self._timed, batch)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
