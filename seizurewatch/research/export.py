"""Export a trained model as TorchScript (``.pt``) or ``torch.export`` (``.pt2``) with its
metadata and SHA-256, and check the exported file computes what the trained module computes.

A model file can be re-exported in the other format: the eager module is rebuilt from the
``architecture`` block of its metadata (the trained model's own ``get_config()``, see
``architectures.from_config``) and the file's weights are loaded into it. A file without that
block predates it and is refused with the command that retrains it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seizurewatch.errors import ModelError
from seizurewatch.modelfile import LoadedModel, load_model, save_model
from seizurewatch.modelmeta import ModelMeta
from seizurewatch.research.architectures import Deployable, from_config
from seizurewatch.research.hills import FittedModel

log = logging.getLogger(__name__)

ATOL = 1e-5


def rebuild_eager(loaded: LoadedModel) -> nn.Module:
    """The eager ``Deployable`` with the weights of a loaded model file. A model fitted once (a
    forest) keeps its trees in traced submodules that no architecture rebuilds: its
    TorchScript module is the reference itself (re-export to .pt; .pt2 is not supported)."""
    a = loaded.meta.architecture()
    try:
        net = from_config(a, where=f"{loaded.path}: architecture")
    except (KeyError, TypeError, ValueError) as exc:
        why = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ModelError(f"{loaded.path}: cannot rebuild architecture {a.get('arch')!r}: {why}") from None
    if isinstance(net, FittedModel):
        if loaded.kind != "torchscript":
            raise ModelError(f"{loaded.path}: a fitted {a['arch']!r} model is rebuilt from its TorchScript file only")
        return loaded.module
    model = Deployable(net, torch.zeros(a["n_channels"]), torch.ones(a["n_channels"]))
    state = {k: v for k, v in loaded.module.state_dict().items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{loaded.path}: weights do not fit architecture {a['arch']!r} ({str(exc)[:200]})") from None
    return model.eval()


def example_input(meta: ModelMeta, n: int = 4, seed: int = 0) -> torch.Tensor:
    """``n`` seeded noise windows of the shape the model's architecture takes."""
    a = meta.architecture()
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, a["n_channels"], a["n_samples"], generator=g) * 50.0


@torch.no_grad()
def max_difference(reference: nn.Module, path: str | Path, x: torch.Tensor) -> float:
    """Largest absolute difference between ``reference`` and the model file at ``path`` on ``x``."""
    reference.eval()
    got = load_model(path).module(x)
    return float((got - reference(x)).abs().max())


def save_checked(model: nn.Module, meta: dict[str, Any], path: str | Path, x: torch.Tensor) -> dict[str, Any]:
    """save_model, then reload and compare outputs; ModelError if the file computes otherwise."""
    out = save_model(model, {k: v for k, v in meta.items() if k not in ("format", "weights_sha256")}, path, x[:2])
    diff = max_difference(model, path, x)
    if diff > ATOL:
        raise ModelError(f"{path}: exported model differs from the trained one by {diff:.3g} (> {ATOL})")
    log.info("exported", extra={"path": str(path), "weights_sha256": out["weights_sha256"][:12], "max_abs_diff": diff})
    return {**out, "max_abs_diff": diff}


def export(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Re-export model file ``src`` to ``dst`` (.pt TorchScript or .pt2 torch.export), checked."""
    if Path(dst).suffix not in (".pt", ".pt2"):
        raise ModelError(f"{dst}: export to a .pt (TorchScript) or .pt2 (torch.export) file")
    loaded = load_model(src)
    eager = rebuild_eager(loaded)
    if isinstance(eager, torch.jit.ScriptModule) and Path(dst).suffix == ".pt2":
        raise ModelError(f"{src}: a model fitted once (a forest) exports as TorchScript (.pt) only, not {dst}")
    x = example_input(loaded.meta)
    with torch.no_grad():
        diff_src = float((loaded.module(x) - eager(x)).abs().max())
    if diff_src > ATOL:
        raise ModelError(f"{src}: rebuilt module differs from the file by {diff_src:.3g}; not exporting")
    return save_checked(eager, loaded.meta.raw, dst, x)
