"""The model file format shared by the offline tools and the daemon.

A model is a TorchScript archive (``.pt``) or a ``torch.export`` archive (``.pt2``) whose
extra file ``metadata.json`` says what it expects (channels, rate, window, hop,
preprocessing), how its threshold was chosen, what it was trained on, and the SHA-256 of
its weights. The forward pass takes ``(batch, channels, samples)`` float32 in physical
units and returns ``(batch, outputs)`` probabilities.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seizurewatch.errors import ModelError
from seizurewatch.preprocess import PreprocessSpec

FORMAT = "seizurewatch-model/1"
METADATA_FILE = "metadata.json"
REQUIRED_KEYS = ("format", "name", "outputs", "preprocess", "window_s", "hop_s", "threshold", "weights_sha256")


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


@dataclass(frozen=True)
class ModelMeta:
    raw: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.raw["name"])

    @property
    def sha256(self) -> str:
        return str(self.raw["weights_sha256"])

    @property
    def preprocess(self) -> PreprocessSpec:
        return PreprocessSpec.from_json(self.raw["preprocess"])

    @property
    def window_s(self) -> float:
        return float(self.raw["window_s"])

    @property
    def hop_s(self) -> float:
        return float(self.raw["hop_s"])

    @property
    def outputs(self) -> list[str]:
        return list(self.raw["outputs"])

    @property
    def threshold(self) -> float:
        return float(self.raw["threshold"]["value"])

    @property
    def threshold_policy(self) -> str:
        return str(self.raw["threshold"].get("policy", "unknown"))

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.preprocess.rate))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_s * self.preprocess.rate))


def _validate_meta(raw: Any, where: str) -> ModelMeta:
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: metadata.json is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ModelError(f"{where}: metadata.json lacks {', '.join(missing)}")
    if raw["format"] != FORMAT:
        raise ModelError(f"{where}: unsupported model format {raw['format']!r} (expected {FORMAT})")
    try:
        meta = ModelMeta(raw)
        _ = (meta.preprocess, meta.window_samples, meta.hop_samples, meta.threshold)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: metadata.json is malformed ({exc!r})") from None
    if not meta.outputs:
        raise ModelError(f"{where}: metadata.json lists no outputs")
    return meta


@dataclass
class LoadedModel:
    module: Any  # torch.jit.ScriptModule or torch.nn.Module from ExportedProgram.module()
    meta: ModelMeta
    path: str
    kind: str  # "torchscript" | "export"


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


def load_model(path: str | Path, expect_sha256: str | None = None) -> LoadedModel:
    """Load a model file and check its metadata and weights hash; ModelError on any mismatch."""
    p = Path(path)
    where = str(p)
    if not p.is_file():
        raise ModelError(f"{where}: model file not found")
    extra: dict[str, Any] = {METADATA_FILE: ""}
    try:
        if p.suffix == ".pt2":
            ep = torch.export.load(str(p), extra_files=extra)
            state = dict(ep.state_dict)
            module: Any = ep.module()
            kind = "export"
        else:
            with quiet_torchscript():
                module = torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
            state = dict(module.state_dict())
            kind = "torchscript"
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt archive
        raise ModelError(f"{where}: cannot load model ({type(exc).__name__}: {str(exc)[:200]})") from None
    blob = extra[METADATA_FILE]
    if not blob:
        raise ModelError(f"{where}: no metadata.json inside; export it with 'seizurewatch export'")
    try:
        raw = json.loads(blob)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{where}: metadata.json is not valid JSON ({exc})") from None
    meta = _validate_meta(raw, where)
    actual = weights_sha256(state)
    if actual != meta.sha256:
        raise ModelError(
            f"{where}: weights checksum mismatch (metadata says {meta.sha256[:12]}…, weights are {actual[:12]}…)"
        )
    if expect_sha256 and not actual.startswith(expect_sha256.lower()):
        raise ModelError(f"{where}: weights sha256 {actual[:12]}… is not the pinned {expect_sha256[:12]}…")
    if kind == "torchscript":
        module.eval()  # (an ExportedProgram's module was exported in eval mode and refuses .eval())
    return LoadedModel(module=module, meta=meta, path=where, kind=kind)


def read_metadata(path: str | Path) -> dict[str, Any]:
    return load_model(path).meta.raw
