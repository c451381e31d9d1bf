"""Scale: how many real-time streams one box keeps up with, and the memory each one costs.

Every trial is a fresh process running ONE Daemon with N streams (23 ch x 256 Hz EDF replay at
speed 1, the timing-only seed ConvNet: 30 s window, 1 s hop, one shared model and inference
thread). Each stream starts like an LSL inlet that connects to an outlet holding 30 s of
backlog (one block fills the window), then receives 0.25 s blocks in real time; stream starts
are spread over one hop, as unsynchronised patients would be. A stream falls behind when its
lag (wall clock minus the stream time of its last classified window) grows. The count is
searched by doubling, then bisection, within a time budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    ROOT,
    TIMING_HOP_S,
    TIMING_WINDOW_S,
    figure,
    log,
    rss_mb,
    synth_recording,
    timing_convnet,
    workdir,
)
from seizurewatch.types import Block

BEHIND_GROWTH_S = 0.5  # lag growth over the measurement that counts as falling behind
BEHIND_LAG_S = 2.5  # or a lag this large at the end (a hop is 1 s, a block 0.25 s)


_RECORDINGS: dict[str, tuple[Any, np.ndarray]] = {}


def _recording(path: str) -> tuple[Any, np.ndarray]:
    """The whole recording, read once per process and shared by every stream replaying it."""
    if path not in _RECORDINGS:
        from seizurewatch.edfio import EdfRecording

        with EdfRecording(path) as rec:
            _RECORDINGS[path] = (rec.header, rec.read(0, rec.header.n_samples))
    return _RECORDINGS[path]


class BackfilledRealtime:
    """EDF replay at speed 1 from one shared in-memory copy of the recording (edflib opens at most
    64 files per process): first ``backfill_s`` at once, then real-time 0.25 s blocks."""

    def __init__(self, path: str, backfill_s: float, phase_s: float, chunk_s: float = 0.25) -> None:
        self.path = path
        self.backfill_s, self.phase_s, self.chunk_s = backfill_s, phase_s, chunk_s
        self.channels: tuple[str, ...] = ()
        self.rate = 0.0
        self.annotations: tuple[Any, ...] = ()
        self.description = f"edf:{path} (in memory, real time after a {backfill_s:g} s backfill)"
        self.start_wall = 0.0  # wall (monotonic) time of stream time 0

    async def open(self) -> None:
        header, _ = _recording(self.path)
        self.channels, self.rate, self.annotations = header.channels, header.rate, header.annotations

    async def close(self) -> None:
        pass

    async def items(self) -> Any:
        _, data = _recording(self.path)
        rate = self.rate
        self.start_wall = time.monotonic() - self.backfill_s + self.phase_s
        pos, n_total = 0, data.shape[1]
        first = int(round(self.backfill_s * rate))
        chunk = int(round(self.chunk_s * rate))
        while pos < n_total:
            block = data[:, pos : pos + (first if pos == 0 else chunk)]
            n = block.shape[1]
            delay = self.start_wall + (pos + n) / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield Block(block, rate, pos / rate, self.channels, time.monotonic())
            pos += n


async def _trial(n: int, edf: Path, model: Path, warm_s: float, measure_s: float) -> dict[str, Any]:
    from seizurewatch.config import Config, DecisionConfig, ModelConfig, OutboxConfig, SourceConfig, StreamConfig
    from seizurewatch.daemon import Daemon, DaemonOptions

    # a daemon refuses one EDF for two streams (edflib opens a file once per process), so each stream names a
    # hard link of its own; every source below replays the one in-memory copy of ``edf`` all the same
    links = [edf.with_name(f"{edf.stem}-bed{i:04d}{edf.suffix}") for i in range(n)]
    for link in links:
        if not link.exists():
            os.link(edf, link)
    streams = tuple(StreamConfig(patient=f"bed{i:04d}", source=SourceConfig(kind="edf", path=str(link), speed=1.0))
                    for i, link in enumerate(links))
    cfg = Config(streams=streams, model=ModelConfig(path=str(model)), decision=DecisionConfig(),
                 outbox=OutboxConfig(":memory:"))
    import seizurewatch.startup as startup_mod

    sources: list[BackfilledRealtime] = []

    def make_source(stream: StreamConfig, device: object = None) -> BackfilledRealtime:
        phase = len(sources) / n * TIMING_HOP_S
        src = BackfilledRealtime(str(edf), backfill_s=TIMING_WINDOW_S, phase_s=phase)
        sources.append(src)
        return src

    _recording(str(edf))
    rss0 = rss_mb()
    original = startup_mod.make_source
    startup_mod.make_source = make_source  # this trial only: the shared in-memory replay above
    try:
        daemon = Daemon(cfg, DaemonOptions(publish=False))
        await daemon.prepare()
    finally:
        startup_mod.make_source = original
    rss_model = rss_mb()
    task = asyncio.create_task(daemon.run())
    t_start = time.monotonic()
    while not all(p.stats.windows for p in daemon.pipelines):  # every stream has classified its first window
        if task.done() or time.monotonic() - t_start > 120:
            break
        await asyncio.sleep(0.05)
    first_all_s = time.monotonic() - t_start
    await asyncio.sleep(warm_s)
    cpu0, t0 = os.times(), time.monotonic()
    samples: list[tuple[float, np.ndarray]] = []
    while time.monotonic() - t0 < measure_s and not task.done():
        now = time.monotonic()
        samples.append((now - t0, np.array([now - (s.start_wall + p.stats.last_t)
                                             for s, p in zip(sources, daemon.pipelines)])))
        await asyncio.sleep(0.1)
    cpu1, t1 = os.times(), time.monotonic()
    rss_run = rss_mb()
    daemon.stop()
    try:
        await asyncio.wait_for(task, 30)
    except TimeoutError:
        task.cancel()
    # The lag is a saw-tooth (a window is classified once per hop): compare its floor per 2 s.
    times = np.array([t for t, _ in samples])
    lags = np.stack([lag for _, lag in samples]) if samples else np.zeros((0, n))
    buckets = [lags[(times >= b) & (times < b + 2.0)] for b in np.arange(0.0, measure_s - 1.0, 2.0)]
    floors = np.stack([b.min(axis=0) for b in buckets if len(b)]) if buckets else np.zeros((1, n))
    growth = floors[-1] - floors[0]
    worst_final = floors[-1].max()
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {
        "streams": n,
        "ok": bool(growth.max() <= BEHIND_GROWTH_S and worst_final <= BEHIND_LAG_S and first_all_s < 120),
        "lag_growth_max_s": float(growth.max()),
        "lag_floor_final_max_s": float(worst_final),
        "lag_floor_final_median_s": float(np.median(floors[-1])),
        "first_window_all_s": first_all_s,
        "rss_before_mb": rss0,
        "rss_model_mb": rss_model,
        "rss_run_mb": rss_run,
        "cpu_percent": 100.0 * cpu_s / (t1 - t0),
        "loadavg_1m": os.getloadavg()[0],  # above the core count: other processes took CPU from this trial
    }


def run_trial(n: int, warm_s: float, measure_s: float, seconds: float, in_process: bool = False
              ) -> dict[str, Any]:
    """One trial in a fresh process (clean RSS, no state from the previous trial)."""
    if in_process:  # quick mode: spare the start-up of another process
        return asyncio.run(_trial(n, synth_recording(seconds), timing_convnet(), warm_s, measure_s))
    env = dict(os.environ, BENCH_WORKDIR=str(workdir()), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "bench.bench_scale", "--trial", str(n), "--warm", str(warm_s),
           "--measure", str(measure_s), "--seconds", str(seconds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"scale trial with {n} streams failed: {proc.stderr.strip()[-400:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def search(quick: bool) -> tuple[list[dict[str, Any]], int]:
    """Doubling from ``start`` until a trial falls behind, then bisection, within the budget."""
    start, budget_s, warm_s, measure_s = (2, 1.0, 0.5, 3.0) if quick else (64, 35.0, 2.0, 5.0)
    max_n = 2 if quick else 2048
    seconds = 120.0 if quick else 3600.0
    synth_recording(seconds)
    timing_convnet()
    t0 = time.monotonic()
    trials: list[dict[str, Any]] = []
    lo, hi = 0, None  # largest count that kept up, smallest that fell behind
    n = start
    while time.monotonic() - t0 < budget_s:
        log(f"scale: trial with {n} streams")
        r = run_trial(n, warm_s, measure_s, seconds, in_process=quick)
        trials.append(r)
        if r["ok"]:
            lo = max(lo, n)
        else:
            hi = n if hi is None else min(hi, n)
        if hi is None:
            if n >= max_n:
                break
            n = min(n * 2, max_n)
        else:
            if hi - lo <= max(1, lo // 8):
                break
            n = (lo + hi) // 2 if lo else max(1, hi // 2)
    return trials, lo


def run(quick: bool) -> dict[str, Any]:
    trials, best = search(quick)
    by_n = {t["streams"]: t for t in trials}
    setup = ("one Daemon, N streams of a synthesised 23 ch x 256 Hz EDF replayed at speed 1 (one in-memory "
             "copy; 0.25 s blocks after a 30 s backfill, starts spread over a hop), timing-only seed ConvNet "
             "(30 s window, 1 s hop), one shared model, torch threads 1, no MQTT; a stream falls behind when "
             f"its lag floor grows > {BEHIND_GROWTH_S} s or ends > {BEHIND_LAG_S} s; doubling then bisection")
    figures: dict[str, Any] = {
        "scale.realtime_streams": figure(best, "streams", setup,
                                         upper_bound_fell_behind=min((t["streams"] for t in trials if not t["ok"]),
                                                                     default=None)),
    }
    ok = sorted((t for t in trials if t["ok"]), key=lambda t: t["streams"])
    if ok:
        top = ok[-1]
        base = by_n.get(1) or ok[0]
        if top["streams"] > base["streams"]:
            per = (top["rss_run_mb"] - base["rss_run_mb"]) / (top["streams"] - base["streams"])
            how = f"(RSS at {top['streams']} - RSS at {base['streams']} streams) / difference, in separate processes"
        else:
            per = top["rss_run_mb"] - top["rss_model_mb"]
            how = "RSS while running minus RSS after loading the model, one stream"
        figures["scale.memory_per_stream"] = figure(per, "MiB/stream", how)
        figures["scale.rss_at_max"] = figure(top["rss_run_mb"], "MiB",
                                             f"process RSS with {top['streams']} streams running")
        figures["scale.cpu_per_stream"] = figure(top["cpu_percent"] / top["streams"], "% of one core/stream",
                                                 f"process CPU time / wall time with {top['streams']} streams, "
                                                 "divided by the count")
        figures["scale.lag_at_max"] = figure(top["lag_floor_final_median_s"], "s",
                                             f"median lag floor at the end with {top['streams']} streams "
                                             "(wall clock minus stream time of the last classified window)")
    return {"figures": figures, "trials": trials}


def main() -> None:
    ap = argparse.ArgumentParser(description="one scale trial (used by bench_scale.run)")
    ap.add_argument("--trial", type=int, required=True)
    ap.add_argument("--warm", type=float, default=2.0)
    ap.add_argument("--measure", type=float, default=8.0)
    ap.add_argument("--seconds", type=float, default=3600.0)
    args = ap.parse_args()
    import logging

    logging.getLogger("seizurewatch").setLevel(logging.ERROR)
    from seizurewatch.inference import configure_compute

    configure_compute(1)
    result = asyncio.run(_trial(args.trial, synth_recording(args.seconds), timing_convnet(), args.warm, args.measure))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
