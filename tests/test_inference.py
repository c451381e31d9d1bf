"""The model's thread: cache-sized chunks of a strided batch, the ring's memory never handed to the model,
and an allocator that keeps the model's buffers instead of page-faulting them in afresh."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from seizurewatch.inference import BATCH_BYTES, Predictor, batch_size
from seizurewatch.modelfile import load_model, save_model
from seizurewatch.research.architectures import Deployable, build
from seizurewatch.ringbuffer import RingBuffer, as_batch
from seizurewatch.schedule import WindowSchedule

CHANNELS = ("a", "b", "c")
RATE, WINDOW, HOP = 100.0, 2000, 100


def _meta() -> dict:
    return {"name": "tiny", "outputs": ["seizure"], "window_s": WINDOW / RATE, "hop_s": HOP / RATE,
            "preprocess": {"channels": list(CHANNELS), "rate": RATE, "bandpass": None, "notch": None},
            "threshold": {"value": 0.5, "policy": "youden"}}


def _ring_windows(n: int) -> tuple[RingBuffer, list]:
    rng = np.random.default_rng(0)
    ring = RingBuffer(len(CHANNELS), WindowSchedule(WINDOW / RATE, HOP / RATE), RATE)
    ring.reset(0.0)
    windows = ring.push((30 * rng.standard_normal((len(CHANNELS), WINDOW + (n - 1) * HOP))).astype(np.float32))
    assert len(windows) == n
    return ring, windows


def _run(predictor: Predictor, batch: np.ndarray) -> np.ndarray:
    async def go() -> np.ndarray:
        probs, _ = await predictor.submit(batch)
        return probs

    try:
        return asyncio.run(go())
    finally:
        predictor.close()


def test_batch_size_keeps_a_call_within_the_cache_budget():
    assert batch_size((23, 7680), 64) == 2  # 30 s of 23 ch x 256 Hz: 706 KB per window
    assert batch_size((16, 4000), 64) == 6  # 10 s of 16 ch x 400 Hz: 256 KB per window
    assert batch_size((16, 4000), 4) == 4  # max_batch still caps it
    assert batch_size((64, 200_000), 64) == 1  # a window above the budget still runs, alone
    assert 4 * 23 * 7680 * batch_size((23, 7680), 64) <= BATCH_BYTES


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_a_strided_batch_run_in_chunks_gives_each_window_its_own_output(tmp_path, suffix):
    torch.manual_seed(0)
    net = build("seed_convnet", n_channels=len(CHANNELS), n_samples=WINDOW, n_outputs=1)
    path = tmp_path / f"m{suffix}"
    save_model(Deployable(net, torch.zeros(3), torch.full((3,), 30.0)), _meta(), path, torch.zeros(2, 3, WINDOW))
    model = load_model(path)
    _, windows = _ring_windows(8)
    batch = as_batch(windows)
    assert not batch.flags.c_contiguous and not batch.flags.writeable  # a view of the ring, as the pipeline sends
    predictor = Predictor(model, max_batch=3)  # chunks of 3, 3 and 2
    assert predictor.chunk == 3
    got = _run(predictor, batch)
    with torch.inference_mode():
        want = np.concatenate([model.module(torch.from_numpy(w.data.copy()[None])).numpy() for w in windows])
    assert got.shape == (8, 1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


class _Scribbler(torch.nn.Module):
    """A model that overwrites its input in place (allowed in inference mode) before answering."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2))
        x.zero_()
        return torch.sigmoid(m + x.sum(dim=(1, 2)))[:, None]


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_a_model_writing_into_its_input_never_touches_the_ring(tmp_path, suffix):
    path = tmp_path / f"scribbler{suffix}"
    save_model(_Scribbler(), _meta(), path, torch.zeros(2, 3, WINDOW))
    _, windows = _ring_windows(5)
    before = np.stack([w.data.copy() for w in windows])
    got = _run(Predictor(load_model(path), max_batch=2), as_batch(windows))
    after = np.stack([w.data for w in windows])
    np.testing.assert_array_equal(after, before)  # the model only ever saw copies
    np.testing.assert_allclose(got[:, 0], 1 / (1 + np.exp(-before.mean(axis=(1, 2)))), rtol=1e-5)


def test_configure_compute_sizes_the_pools_and_tunes_the_allocator_where_it_can():
    """What the setting does, not how fast it makes the model (that is bench/bench_allocator.py): torch's
    pools are sized and, on glibc, the allocator's thresholds are set."""
    script = textwrap.dedent("""
        import sys, torch
        from seizurewatch.inference import configure_compute
        tuned = configure_compute(2)
        print(torch.get_num_threads(), torch.get_num_interop_threads(), tuned)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    threads, interop, tuned = out.stdout.split()
    assert (threads, interop) == ("2", "1")
    assert tuned == ("True" if sys.platform.startswith("linux") else "False")
