"""The model file format shared by the offline tools and the daemon.

A model is a TorchScript archive (``.pt``) or a ``torch.export`` archive (``.pt2``) whose
extra file ``metadata.json`` says what it expects (channels, rate, window, hop,
preprocessing), how its threshold was chosen, what it was trained on, and the SHA-256 of
its weights (parsed by ``modelmeta.parse_meta``). The forward pass takes
``(batch, channels, samples)`` float32 in physical units and returns ``(batch, outputs)``
probabilities.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seizurewatch.checks import check_sha256
from seizurewatch.errors import ModelError
from seizurewatch.modelmeta import FORMAT, ModelMeta, parse_meta

METADATA_FILE = "metadata.json"


@contextlib.contextmanager
def quiet_torchscript() -> Iterator[None]:
    """TorchScript is deprecated in torch 2.13; silence exactly that warning, nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"`torch\.jit\.(script|trace|save|load)` is deprecated",
            category=DeprecationWarning,
        )
        yield


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """Hash of parameter names and values; identical for eager, TorchScript and .pt2 copies."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


@dataclass
class LoadedModel:
    module: Any  # torch.jit.ScriptModule or torch.nn.Module from ExportedProgram.module()
    meta: ModelMeta
    path: str
    kind: str  # "torchscript" | "export"
    file_sha256: str = ""  # of the whole file, as loaded (what model.sha256 pins)


def file_sha256(data: bytes) -> str:
    """What ``model.sha256`` pins: the whole file (TorchScript and .pt2 archives are code, not only weights)."""
    return hashlib.sha256(data).hexdigest()


def save_model(module: torch.nn.Module, meta: dict[str, Any], path: str | Path, example: torch.Tensor) -> dict:
    """Write ``module`` as TorchScript (.pt) or torch.export (.pt2), by suffix. Returns the metadata."""
    p = Path(path)
    module = module.eval()
    meta = {**meta, "format": FORMAT, "weights_sha256": weights_sha256(module.state_dict())}
    blob = json.dumps(meta, indent=2, sort_keys=True)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".pt2":
        if any(isinstance(m, torch.jit.ScriptModule) for m in module.modules()):
            raise ModelError(f"{p}: this model holds TorchScript parts (a converted forest); save it as .pt")
        batch = torch.export.Dim("batch", min=1, max=4096)
        ep = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(ep, str(p), extra_files={METADATA_FILE: blob})
    else:
        with quiet_torchscript():
            scripted = torch.jit.script(module)
            torch.jit.save(scripted, str(p), _extra_files={METADATA_FILE: blob})
    return meta


def load_problem(exc: BaseException) -> str:
    """What torch's load error means, in one line of whole words (torch's own text runs to paragraphs)."""
    text = " ".join(str(exc).split())
    if "zip archive" in text or "central directory" in text:
        return "not a TorchScript (.pt) or torch.export (.pt2) archive (not a ZIP file: truncated, or not a model)"
    first = text.split(". ")[0].rstrip(".")
    if len(first) > 160:
        first = first[:160].rsplit(" ", 1)[0] + " …"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# other frameworks' files, refused by name before any loader sees their bytes
FOREIGN_FORMATS = {".onnx": "ONNX", ".h5": "Keras/HDF5", ".keras": "Keras", ".tflite": "TensorFlow Lite",
                   ".pb": "TensorFlow", ".safetensors": "safetensors (weights only)", ".pkl": "a pickle",
                   ".joblib": "a joblib pickle"}


def load_model(path: str | Path, expect_sha256: str | None = None) -> LoadedModel:
    """Load a model file and check its metadata and weights hash; ModelError on any mismatch.

    ``expect_sha256`` (the config's ``model.sha256``) is the whole file's SHA-256, full length: the
    bytes are read once, hashed, and only if they match handed to torch's loader (never the path, so
    the file cannot be swapped between the check and the load). Loading a model runs its code; an
    unpinned file is loaded only where the caller allowed it."""
    p = Path(path)
    where = str(p)
    if not p.is_file():
        raise ModelError(f"{where}: model file not found")
    if p.suffix.lower() in FOREIGN_FORMATS:
        raise ModelError(f"{where}: {FOREIGN_FORMATS[p.suffix.lower()]} is not a format seizurewatch runs; export the "
                         "model to TorchScript (.pt) or torch.export (.pt2) with its metadata (seizurewatch train "
                         "writes .pt)")
    pin = None
    if expect_sha256 is not None:
        try:
            pin = check_sha256(expect_sha256, "model.sha256")
        except ValueError as exc:
            raise ModelError(f"{where}: {exc}") from None
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelError(f"{where}: cannot read model file ({exc.strerror})") from None
    digest = file_sha256(data)
    if pin is not None and digest != pin:
        raise ModelError(f"{where}: file sha256 {digest} is not the pinned {pin} (model.sha256); "
                         "refused before loading: a model file is code")
    module, state, kind, blob = _open_archive(data, p.suffix == ".pt2", where)
    if not blob:
        raise ModelError(f"{where}: no metadata.json inside; export it with 'seizurewatch export'")
    try:
        raw = json.loads(blob)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{where}: metadata.json is not valid JSON ({exc})") from None
    meta = parse_meta(raw, where)
    actual = weights_sha256(state)
    if actual != meta.weights_sha256:
        raise ModelError(
            f"{where}: weights checksum mismatch (metadata weights_sha256 {meta.weights_sha256[:12]}…, weights are "
            f"{actual[:12]}…)"
        )
    if kind == "torchscript":
        module.eval()  # (an ExportedProgram's module was exported in eval mode and refuses .eval())
    return LoadedModel(module=module, meta=meta, path=where, kind=kind, file_sha256=digest)


def _open_archive(data: bytes, exported: bool, where: str) -> tuple[Any, dict[str, Any], str, str]:
    """torch's loader on the file's bytes: the module, its state dict, its kind and the metadata text."""
    extra: dict[str, Any] = {METADATA_FILE: ""}
    try:
        if exported:
            ep = torch.export.load(io.BytesIO(data), extra_files=extra)
            state = dict(ep.state_dict)
            return ep.module(), state, "export", extra[METADATA_FILE]
        with quiet_torchscript():
            module = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
        return module, dict(module.state_dict()), "torchscript", extra[METADATA_FILE]
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt archive
        raise ModelError(f"{where}: cannot load model: {load_problem(exc)}; export it again with "
                         "'seizurewatch export' (or check the file was copied whole)") from None


def check_forward(model: LoadedModel) -> None:
    """A dry forward pass on windows of the shape the metadata gives: the output must be (batch, outputs)
    probabilities.

    Run at start (and by ``run --check``), so a model that cannot take the windows its metadata promises,
    or answers with the wrong shape, NaN or values outside [0, 1], is refused before the first sample.
    The windows are seeded noise at an EEG-like 20 µV, not zeros: an all-zero window is a flatline, which
    the quality checks keep from the model (and on which a correlation-based model legitimately fails)."""
    meta = model.meta
    shape = (2, len(meta.preprocess.channels), meta.window_samples)
    x = torch.from_numpy(np.random.default_rng(0).normal(0.0, 20.0, shape).astype(np.float32))
    try:
        with torch.inference_mode():
            out = model.module(x)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a shape mismatch
        raise ModelError(f"{model.path}: the model fails on a window of the shape its metadata gives "
                         f"{shape} ({type(exc).__name__}: {str(exc)[:200]})") from None
    problem = output_problem(out, shape[0], len(meta.outputs))
    if problem:
        raise ModelError(f"{model.path}: on noise windows of shape {shape} the model {problem}")


def output_problem(out: Any, batch: int, n_outputs: int) -> str | None:
    """Why ``out`` is not ``batch`` rows of ``n_outputs`` probabilities, or None when it is."""
    if not isinstance(out, torch.Tensor | np.ndarray):
        return f"returns {type(out).__name__}, not a tensor"
    if tuple(out.shape) != (batch, n_outputs):
        return f"returns shape {tuple(out.shape)}, expected {(batch, n_outputs)} (batch, outputs in metadata)"
    values = out.detach().numpy() if isinstance(out, torch.Tensor) else out
    bad = ~np.isfinite(values)
    if bad.any():
        return f"returns {int(bad.sum())} non-finite value(s) (NaN or infinite)"
    if (values < 0).any() or (values > 1).any():
        lo, hi = float(values.min()), float(values.max())
        return f"returns values outside [0, 1] ({lo:.3g} to {hi:.3g}): not probabilities"
    return None


def read_metadata(path: str | Path) -> dict[str, Any]:
    return load_model(path).meta.raw
