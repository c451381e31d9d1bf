"""Runs the model off the event loop: one executor thread, batches of windows."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from seizurewatch.modelfile import LoadedModel


def configure_threads(threads: int) -> None:
    """Size every compute thread pool explicitly: torch's, and numpy's BLAS (OpenBLAS would otherwise
    start one spinning thread per core for any matrix product and fight the model's thread for the cores)."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
    threadpool_limits(1, user_api="blas")


class Predictor:
    """Thread-safe enough for one pipeline per stream sharing a model: calls are serialised."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.meta = model.meta
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    def _timed(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """(B, C, T) float32 -> ((B, outputs) probabilities, seconds in the model).

        The batch may be a strided view of overlapping windows: made contiguous here, in the model's
        thread, not on the event loop."""
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        return out.detach().numpy().astype(np.float64), time.perf_counter() - t0

    def submit(self, batch: np.ndarray) -> asyncio.Future[tuple[np.ndarray, float]]:
        """Queue a batch on the model's thread now; the future gives (probabilities, seconds in the model)."""
        return asyncio.get_running_loop().run_in_executor(self._executor, self._timed, batch)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
