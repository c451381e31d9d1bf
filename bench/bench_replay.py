"""Replay throughput (``replay --speed max`` through the daemon's own pipeline) with a per-stage
breakdown, side by side with a plain baseline on the same windows (read the whole file with
pyedflib -> slice windows with numpy -> model per window), so the pipeline's overhead is a ratio.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import DOG1, SHIPPED_MODELS, figure, log, synth_recording, timed, timing_convnet

STAGES = ("read", "preprocess", "buffer", "inference", "decision", "publish")


def replay_max(edf: Path, model: Path, max_batch: int = 64) -> dict[str, Any]:
    """One ``replay --speed max`` run (``seizurewatch.replay.replay``, no MQTT); wall seconds, stage seconds,
    probabilities."""
    import dataclasses

    from seizurewatch.replay import ReplayOptions, replay, replay_config

    cfg = replay_config(str(edf), ReplayOptions(model=str(model), speed="max"))
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, max_batch=max_batch))
    res = replay(edf, ReplayOptions(base=cfg))
    return {
        "signal_s": res.duration,
        "prepare_s": res.prepare_s,
        "run_s": res.run_s,
        "windows": res.windows,
        "events": len(res.events),
        "stages": res.stages,
        "probabilities": res.p,
        "model_name": res.meta.name,
        "threads": cfg.model.threads,
        "chunk": res.model_chunk,
    }


def baseline(edf: Path, model_path: Path, batched: bool = False) -> dict[str, Any]:
    """The straightforward loop: whole file -> same preprocessing -> numpy windows -> model."""
    import pyedflib
    import torch

    from seizurewatch.devices import canonical_label
    from seizurewatch.modelfile import load_model
    from seizurewatch.preprocess import Preprocessor

    model = load_model(model_path)
    meta = model.meta
    with timed() as t_read:
        r = pyedflib.EdfReader(str(edf))
        try:
            from seizurewatch.edfio import dedupe_labels

            labels = dedupe_labels([lab.strip() for lab in r.getSignalLabels()])
            rate = float(r.getSampleFrequency(0))
            x = np.stack([r.readSignal(i) for i in range(len(labels))]).astype(np.float32)
        finally:
            r.close()
    with timed() as t_pre:
        pre = Preprocessor(meta.preprocess, labels, rate, str(edf), canon=canonical_label)
        y = pre.process(x)
    win, hop = meta.schedule.samples(meta.preprocess.rate)
    views = np.lib.stride_tricks.sliding_window_view(y, win, axis=1)[:, ::hop]  # (C, W, win), no copy
    n_windows, step = views.shape[1], (64 if batched else 1)
    probs, slice_s = [], 0.0
    with timed() as t_inf, torch.inference_mode():
        for i in range(0, n_windows, step):
            t0 = time.perf_counter()
            batch = np.ascontiguousarray(views[:, i : i + step].transpose(1, 0, 2))
            slice_s += time.perf_counter() - t0
            probs.append(model.module(torch.from_numpy(batch)).numpy()[:, 0])
    total = t_read() + t_pre() + t_inf()
    return {
        "signal_s": x.shape[1] / rate,
        "total_s": total,
        "windows": n_windows,
        "stages": {"read": t_read(), "preprocess": t_pre(), "slice": slice_s, "inference": t_inf() - slice_s},
        "probabilities": np.concatenate(probs) if probs else np.zeros(0),
    }


def _stage_fig(stages: dict[str, float], run_s: float, what: str) -> dict[str, Any]:
    share = {k: round(100.0 * v / run_s, 1) if run_s else 0.0 for k, v in stages.items()}
    accounted = sum(v for k, v in stages.items() if k != "inference")
    return figure(run_s, "s", f"{what}: seconds per stage of the run (inference runs in the model's thread, "
                  "overlapping the rest; 'other': event-loop time outside the stages, waiting for the model included)",
                  stages_s={k: round(v, 4) for k, v in stages.items()},
                  stages_percent=share, other_s=round(max(run_s - accounted, 0.0), 4))


def compare(name: str, edf: Path, model: Path, what: str, repeats: int,
            pipeline_repeats: int | None = None) -> dict[str, Any]:
    runs = [replay_max(edf, model) for _ in range(pipeline_repeats or repeats)]
    best = min(runs, key=lambda r: r["run_s"])
    base = min((baseline(edf, model) for _ in range(repeats)), key=lambda r: r["total_s"])
    base_b = min((baseline(edf, model, batched=True) for _ in range(repeats)), key=lambda r: r["total_s"])
    p_pipe, p_base = best["probabilities"], base["probabilities"]
    n = min(len(p_pipe), len(p_base))
    all_runs = ", ".join(f"{r['signal_s'] / r['run_s']:.0f}x" for r in runs)
    setup = (f"{what}; replay --speed max through Daemon(publish=False), the model run {best['chunk']} windows "
             f"at a time (max_batch 64, 1.5 MiB input per call), events {best['events']}, torch threads "
             f"{best['threads']}; best of {len(runs)} (all runs: {all_runs}); "
             "excludes start-up (model load, file open)")
    figs = {
        f"{name}.pipeline_x_realtime": figure(best["signal_s"] / best["run_s"], "x real time", setup,
                                             signal_s=round(best["signal_s"], 1), run_s=round(best["run_s"], 3),
                                             windows=best["windows"]),
        f"{name}.pipeline_x_realtime_with_startup": figure(
            best["signal_s"] / (best["run_s"] + best["prepare_s"]), "x real time",
            setup.replace("excludes start-up", "includes start-up") + f" ({best['prepare_s']:.2f} s)"),
        f"{name}.pipeline_windows_per_s": figure(best["windows"] / best["run_s"], "windows/s", setup),
        f"{name}.stages": _stage_fig(best["stages"], best["run_s"], what),
        f"{name}.baseline_x_realtime": figure(
            base["signal_s"] / base["total_s"], "x real time",
            f"{what}; plain loop: pyedflib reads the whole file, the same causal filters on the whole "
            "array, numpy strided windows, model called once per window (batch 1); best of "
            f"{repeats}", stages_s={k: round(v, 4) for k, v in base["stages"].items()}),
        f"{name}.baseline_batched_x_realtime": figure(
            base_b["signal_s"] / base_b["total_s"], "x real time",
            f"{what}; the same plain loop with the model called on 64 windows at a time",
            stages_s={k: round(v, 4) for k, v in base_b["stages"].items()}),
        f"{name}.pipeline_vs_baseline": figure(
            best["run_s"] / base["total_s"], "ratio",
            "pipeline run seconds / per-window baseline seconds on the same windows (< 1: the pipeline is faster)"),
        f"{name}.pipeline_vs_baseline_batched": figure(
            best["run_s"] / base_b["total_s"], "ratio",
            "pipeline run seconds / batched baseline seconds on the same windows (the overhead of streaming)"),
    }
    if n:
        figs[f"{name}.probability_max_abs_diff"] = figure(
            float(np.max(np.abs(p_pipe[:n] - p_base[:n]))), "probability",
            f"max |p_pipeline - p_baseline| over {n} windows (pipeline {len(p_pipe)}, baseline {len(p_base)} "
            "windows): the two classify the same windows")
    return figs


HOPS_S = (1.0, 0.5, 0.25)


def at_hop(model: Path, hop_s: float, folder: Path) -> Path:
    """A copy of the TorchScript ``model`` whose metadata says ``hop_s`` (the weights, and so their checksum,
    unchanged): the daemon then hands it a window every ``hop_s``."""
    import json

    import torch

    files = {"metadata.json": ""}
    module = torch.jit.load(str(model), _extra_files=files)
    meta = json.loads(files["metadata.json"]) | {"hop_s": hop_s}
    dst = folder / f"{model.stem}-hop{hop_s:g}.pt"
    torch.jit.save(module, str(dst), _extra_files={"metadata.json": json.dumps(meta)})
    return dst


def cpu_by_hop(edf: Path, model: Path, what: str, repeats: int) -> dict[str, Any]:
    """CPU seconds of the whole process (event loop, model thread) per second of signal while the daemon
    replays ``edf`` at speed max, after start-up, at each hop of ``HOPS_S``: the share of a core one
    real-time stream takes, and its ratio to the 1-s hop. Least of ``repeats`` runs (CPU time, not wall
    time: the machine's other load does not count, its cache effects do)."""
    import tempfile

    from seizurewatch.replay import ReplayHooks, ReplayOptions, ReplayStart, replay

    figs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cpu: dict[float, float] = {}
        for hop in HOPS_S:
            path = at_hop(model, hop, Path(tmp))
            runs = []
            for _ in range(repeats):
                started: list[float] = []

                async def mark(_: ReplayStart, started: list[float] = started) -> None:
                    started.append(time.process_time())

                res = replay(edf, ReplayOptions(model=path), ReplayHooks(on_start=mark))
                runs.append((time.process_time() - started[0]) / res.duration)
            cpu[hop] = min(runs)
            figs[f"hop{hop:g}.cpu_per_stream"] = figure(
                100 * cpu[hop], "% of a core",
                f"{what}, 1-s windows every {hop:g} s ({res.windows} windows): process CPU seconds (event loop "
                f"and model thread, torch threads 1) per signal second of replay --speed max after start-up; "
                f"least of {repeats}", windows=res.windows)
        for hop in HOPS_S:
            figs[f"hop{hop:g}.cpu_vs_1s_hop"] = figure(
                cpu[hop] / cpu[1.0], "ratio", f"CPU per stream at a {hop:g}-s hop / at the 1-s hop ({what})")
    return figs


def run(quick: bool) -> dict[str, Any]:
    rec04 = DOG1 / "dog1_rec04.edf"
    shipped = SHIPPED_MODELS / "dog1-convnet.pt"
    figures: dict[str, Any] = {}
    log("replay: dog1_rec04 with the shipped model")
    figures |= compare("dog1_rec04", rec04, shipped,
                       "dog1_rec04.edf (16 ch x 400 Hz, 118 s) with the shipped dog1-convnet (10 s window, 1 s hop)",
                       repeats=1 if quick else 2)
    log("replay: CPU per real-time stream at each hop, dog1_rec04 with the shipped dog1-hills-early")
    figures |= cpu_by_hop(rec04, SHIPPED_MODELS / "dog1-hills-early.pt",
                          "dog1_rec04.edf (16 ch x 400 Hz, 118 s) with the shipped dog1-hills-early",
                          repeats=1 if quick else 3)
    seconds = 120.0 if quick else 3600.0
    log(f"replay: synthesised 23 ch x 256 Hz, {seconds:.0f} s, timing-only seed ConvNet")
    edf = synth_recording(seconds)
    model = timing_convnet()
    figures |= compare("synth23", edf, model,
                       f"synthesised 23 ch x 256 Hz recording, {seconds:.0f} s tiled from the shared recordings, "
                       "untrained timing-only seed ConvNet (30 s window, 1 s hop, band-pass 1-70 Hz)",
                       repeats=1, pipeline_repeats=1 if quick else 3)
    figures["synth23.pipeline_x_realtime"]["target"] = 2000.0
    figures["synth23.pipeline_x_realtime"]["meets_target"] = (
        figures["synth23.pipeline_x_realtime"]["value"] >= 2000.0)
    return {"figures": figures}
