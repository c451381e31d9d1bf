"""Model inference alone: per-window latency (batch 1, p50/p99) and batched windows/s for each
shipped model and the timing-only 23-channel seed ConvNet, as TorchScript (.pt), eager
(the same weights in the nn.Module from ``research.architectures``) and ``torch.export`` (.pt2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.common import figure, log, percentiles, repeat_timing, shipped_models, timing_convnet, workdir

BATCHES = (16, 64)


def eager_copy(loaded: Any) -> Any:
    """The eager nn.Module with the file's weights (architecture from the metadata)."""
    from seizurewatch.research.architectures import Deployable, build

    meta = loaded.meta
    cfg = meta.training().config or {}
    arch = cfg.get("arch", "seed_convnet")
    n_ch, n_s = len(meta.preprocess.channels), meta.window_samples
    import torch

    net = build(arch, n_channels=n_ch, n_samples=n_s, n_outputs=len(meta.outputs), **cfg.get("arch_kwargs", {}))
    model = Deployable(net, torch.zeros(n_ch), torch.ones(n_ch))
    model.load_state_dict({k: v for k, v in loaded.module.state_dict().items()})
    return model.eval()


def pt2_copy(eager: Any, meta: dict[str, Any], shape: tuple[int, int], name: str) -> Path:
    import torch

    from seizurewatch.modelfile import save_model

    out = workdir() / f"{name}.pt2"
    if not out.is_file():
        meta = {k: v for k, v in meta.items() if k not in ("format", "weights_sha256")}
        save_model(eager, meta, out, torch.zeros(2, *shape))
    return out


def time_variant(module: Any, shape: tuple[int, int], n_single: int, n_batched: int) -> dict[str, Any]:
    import torch

    rng = np.random.default_rng(0)
    one = torch.from_numpy((rng.standard_normal((1, *shape)) * 50).astype(np.float32))
    out: dict[str, Any] = {}
    with torch.inference_mode():
        lat = repeat_timing(lambda: module(one), n_single, warmup=5)
        out["single"] = percentiles([t * 1000.0 for t in lat])
        for b in BATCHES:
            xb = torch.from_numpy((rng.standard_normal((b, *shape)) * 50).astype(np.float32))
            ts = repeat_timing(lambda xb=xb: module(xb), n_batched, warmup=2)  # type: ignore[misc]
            out[f"batch{b}"] = b / float(np.median(ts))
    return out


def bench_model(path: Path, label: str, quick: bool) -> dict[str, Any]:
    from seizurewatch.modelfile import load_model

    loaded = load_model(path)
    meta = loaded.meta
    shape = (len(meta.preprocess.channels), meta.window_samples)
    from seizurewatch.research.export import rebuild_eager

    variants = {"torchscript": loaded.module}
    if not isinstance(rebuild_eager(loaded), type(loaded.module)):  # a forest is TorchScript only
        eager = eager_copy(loaded)
        variants["eager"] = eager
        variants["pt2"] = load_model(pt2_copy(eager, meta.raw, shape, f"{meta.name}-export")).module
    n_single, n_batched = (20, 3) if quick else (200, 8)
    import torch

    threads = torch.get_num_threads()
    figs: dict[str, Any] = {}
    for kind, module in variants.items():
        log(f"inference: {meta.name} {kind}")
        r = time_variant(module, shape, n_single, n_batched)
        setup = (f"{label}: {meta.name} ({shape[0]} ch x {shape[1]} samples), {kind}, torch threads {threads}, "
                 "inference_mode, random input")
        figs[f"{meta.name}.{kind}.latency_p50"] = figure(r["single"]["p50"], "ms/window",
                                                         f"{setup}; batch 1, {n_single} calls")
        figs[f"{meta.name}.{kind}.latency_p99"] = figure(r["single"]["p99"], "ms/window",
                                                         f"{setup}; batch 1, {n_single} calls")
        for b in BATCHES:
            figs[f"{meta.name}.{kind}.batch{b}_windows_per_s"] = figure(
                r[f"batch{b}"], "windows/s", f"{setup}; batch {b}, median of {n_batched} calls")
    return figs


def run(quick: bool) -> dict[str, Any]:
    from seizurewatch.inference import configure_compute

    configure_compute(1)  # the daemon's default (model.threads: 1)
    figures: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for path in shipped_models():
        if path.suffix == ".pt2" and path.with_suffix(".pt").exists():
            continue  # the same weights; its own .pt2 copy is measured with the .pt
        try:
            figures |= bench_model(path, f"shipped models/{path.name}", quick)
        except Exception as exc:  # noqa: BLE001 - one odd model must not hide the others' figures
            errors[path.name] = f"{type(exc).__name__}: {exc}"
    if not quick:  # quick mode: the shipped models only (the export of a .pt2 copy takes seconds)
        figures |= bench_model(timing_convnet(), "timing-only untrained seed ConvNet (23 ch x 256 Hz x 30 s)", quick)
    return {"figures": figures, **({"errors": errors} if errors else {})}
