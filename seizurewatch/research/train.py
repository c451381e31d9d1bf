"""Training loop: seeded, class-weighted, validated each epoch, early stopping, checkpoints
(resumable), CPU-friendly, with a tqdm progress bar."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from seizurewatch.checks import check_int, check_number
from seizurewatch.errors import DataError, SeizurewatchError
from seizurewatch.inference import is_one_core
from seizurewatch.research.architectures import Deployable, build
from seizurewatch.research.hills import FittedModel
from seizurewatch.research.roc import roc

if TYPE_CHECKING:
    from seizurewatch.research.dataset.store import Windows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "seed_convnet"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    seed: int = 0
    patience: int = 8  # early stopping on validation loss; 0 disables
    class_weights: bool = True
    threads: int = 2
    # refuse a fit with fewer training windows than this in either class of any output (3 windows grew a
    # 3,000-tree forest that meant nothing, with a warning only)
    min_windows_per_class: int = 10

    def __post_init__(self) -> None:
        check_int(self.epochs, "epochs", low=1, high=100_000)
        check_number(self.lr, "lr", low=0, low_open=True, high=10)
        check_number(self.weight_decay, "weight_decay", low=0, high=10)
        check_int(self.batch_size, "batch_size", low=1, high=65_536)
        check_int(self.patience, "patience", low=0, high=100_000)
        check_int(self.threads, "threads", low=1, high=256)
        check_int(self.min_windows_per_class, "min_windows_per_class", low=1, high=1_000_000)


class TrainingError(SeizurewatchError):
    """Training failed inside an epoch (not while building the model from its config)."""


@dataclass
class TrainResult:
    model: Deployable
    history: list[dict[str, float]]
    best_epoch: int
    seconds: float
    config: dict[str, Any]


def channel_stats(x: np.ndarray | Windows, rows: np.ndarray | None = None,
                  chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over all training windows (the model's input standardisation),
    accumulated in chunks so a memory-mapped dataset is never loaded whole."""
    if rows is None and isinstance(x, np.ndarray) and not isinstance(x, np.memmap):  # in memory: the shipped formula
        mean64, std64 = x.mean(axis=(0, 2), dtype=np.float64), x.std(axis=(0, 2), dtype=np.float64)
        return torch.from_numpy(mean64).float(), torch.from_numpy(std64).float()
    rows = np.arange(len(x)) if rows is None else rows
    s1 = np.zeros(x.shape[1]) if len(rows) else np.zeros(0)
    s2 = np.zeros_like(s1)
    n = 0
    for i in range(0, len(rows), chunk):
        xb = np.asarray(x[np.sort(rows[i : i + chunk])], dtype=np.float64)
        s1 += xb.sum(axis=(0, 2))
        s2 += (xb**2).sum(axis=(0, 2))
        n += xb.shape[0] * xb.shape[2]
    mean = s1 / max(n, 1)
    std = np.sqrt(np.maximum(s2 / max(n, 1) - mean**2, 0.0))
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint, loaded ``weights_only``: tensors and plain values, never code (a crafted
    checkpoint's pickle is refused, not run)."""
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle raises many types for a crafted or corrupt file
        raise DataError(f"{path}: not a checkpoint this trainer can resume from safely "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); delete it to start over") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "epoch"} <= state.keys():
        raise DataError(f"{path}: not a training checkpoint (no model/optimizer/epoch); delete it to start over")
    return state


def _batches(n: int, size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Shuffled batches of ``size`` windows. A last batch of a single window joins the one before:
    BatchNorm cannot normalise one sample in training mode, and the window still trains."""
    idx = rng.permutation(n) if rng is not None else np.arange(n)
    out = [idx[i : i + size] for i in range(0, n, size)]
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2:] = [np.concatenate(out[-2:])]
    return out


def _take(x: np.ndarray | Windows, rows: np.ndarray) -> torch.Tensor:
    """Rows of a (possibly memory-mapped) array as a float32 tensor (sorted reads are faster on disk)."""
    return torch.from_numpy(np.ascontiguousarray(x[rows], dtype=np.float32))


def _loss_fn(y: np.ndarray, use_weights: bool) -> nn.Module:
    if not use_weights:
        return nn.BCEWithLogitsLoss()
    pos = y.sum(axis=0).astype(np.float64)
    neg = len(y) - pos
    weight = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weight, dtype=torch.float32))


def train(
    x_train: np.ndarray | Windows,
    y_train: np.ndarray,
    x_val: np.ndarray | Windows | None,
    y_val: np.ndarray | None,
    cfg: TrainConfig,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    resume: bool = True,
    rate: float | None = None,
    train_rows: np.ndarray | None = None,
    val_rows: np.ndarray | None = None,
) -> TrainResult:
    """Fit ``cfg.arch`` on (N, C, T) windows with (N, outputs) 0/1 labels.

    ``x_*`` may be memory-mapped; ``*_rows`` select the windows to use (default: all), and
    ``y_*`` hold the labels of all of ``x_*``. With a ``checkpoint`` the state (weights,
    optimiser, RNGs) is saved every epoch; ``resume`` continues from it, giving the same
    model as an uninterrupted run.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    torch.set_num_threads(cfg.threads)
    tr = np.arange(len(x_train)) if train_rows is None else np.asarray(train_rows)
    va = None if x_val is None else (np.arange(len(x_val)) if val_rows is None else np.asarray(val_rows))
    _, c, t = x_train.shape
    n = len(tr)
    n_out = y_train.shape[1]
    net = build(cfg.arch, c, t, n_out, rate=rate, **cfg.arch_kwargs)
    mean, std = channel_stats(x_train, None if train_rows is None else tr)
    model = Deployable(net, mean, std)
    loss_fn = _loss_fn(y_train[tr], cfg.class_weights)
    if isinstance(net, FittedModel):  # fitted once (a forest): no epochs, no optimiser, nothing to resume
        return _fit_once(model, net, x_train, y_train, tr, x_val, y_val, va, loss_fn, cfg)
    opt = torch.optim.Adam(model.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt = Path(checkpoint) if checkpoint else None
    st = _Progress()
    if ckpt and ckpt.is_file() and resume:
        rng = st.resume(ckpt, model, opt, rng, cfg.seed)
    t0 = time.perf_counter()
    yt = torch.from_numpy(y_train.astype(np.float32))
    stopped = bool(st.history) and cfg.patience > 0 and st.history[-1]["epoch"] - st.best_epoch >= cfg.patience
    bar = tqdm(range(st.start_epoch, 0 if stopped else cfg.epochs), desc=f"train {cfg.arch}", disable=not progress,
               unit="epoch")
    for epoch in bar:
        row = {"epoch": epoch, "train_loss": _epoch(model, opt, loss_fn, x_train, yt, tr, rng, cfg, epoch) / max(n, 1)}
        if x_val is not None and y_val is not None and va is not None and len(va):
            row.update(_validate(model, x_val, y_val, va, loss_fn))
        st.record(row, model)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
        if ckpt:
            st.save(ckpt, model, opt, epoch, rng)
        if cfg.patience and epoch - st.best_epoch >= cfg.patience:
            log.info("early stopping", extra={"epoch": epoch, "best_epoch": st.best_epoch})
            break
    if st.best_state is not None:
        model.load_state_dict(st.best_state)
    model.eval()
    return TrainResult(model, st.history, st.best_epoch, time.perf_counter() - t0, asdict(cfg))


def _epoch(model: Deployable, opt: torch.optim.Optimizer, loss_fn: Any, x: np.ndarray | Windows, yt: torch.Tensor,
           tr: np.ndarray, rng: np.random.Generator, cfg: TrainConfig, epoch: int) -> float:
    """One epoch over the rows ``tr`` in shuffled batches; the summed training loss."""
    model.train()
    total, n = 0.0, len(tr)
    for b, idx in enumerate(_batches(n, cfg.batch_size, rng)):
        rows = tr[idx]  # (unsorted: the batch order of the shipped model's training)
        try:
            z = (_take(x, rows) - model.mean) / model.std  # type: ignore[operator]
            loss = loss_fn(model.net(z), yt[torch.from_numpy(rows)])
            opt.zero_grad()
            loss.backward()
            opt.step()
        except (RuntimeError, ValueError) as exc:
            raise TrainingError(f"training {cfg.arch!r} failed in epoch {epoch}, batch {b} ({len(idx)} of "
                                f"{n} windows, batch_size {cfg.batch_size}): {exc}") from exc
        total += loss.item() * len(idx)
    return total


@dataclass
class _Progress:
    """Where training stands: its history and the best epoch so far (what a checkpoint carries)."""

    start_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: float = float("inf")
    best_epoch: int = -1
    best_state: dict[str, Any] | None = None

    def record(self, row: dict[str, float], model: Deployable) -> None:
        """One epoch's figures; the model's state is kept when it beats the best (validation loss, else train)."""
        self.history.append(row)
        monitor = row.get("val_loss", row["train_loss"])
        if monitor < self.best - 1e-4:
            self.best, self.best_epoch = monitor, int(row["epoch"])
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def resume(self, ckpt: Path, model: Deployable, opt: torch.optim.Optimizer, rng: np.random.Generator,
               seed: int) -> np.random.Generator:
        """Continue from ``ckpt``: weights, optimiser, progress and the RNGs (the generator to go on with)."""
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        self.start_epoch, self.history = state["epoch"] + 1, state["history"]
        self.best, self.best_epoch, self.best_state = state["best"], state["best_epoch"], state["best_state"]
        if "rng" in state:
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
        else:
            rng = np.random.default_rng(seed + self.start_epoch)
        log.info("resuming from checkpoint", extra={"checkpoint": str(ckpt), "epoch": self.start_epoch})
        return rng

    def save(self, ckpt: Path, model: Deployable, opt: torch.optim.Optimizer, epoch: int,
             rng: np.random.Generator) -> None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        # Tensors and plain Python values only (no numpy scalars), so resuming can load it weights_only.
        plain_history = [{k: int(v) if k == "epoch" else float(v) for k, v in r.items()} for r in self.history]
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                    "history": plain_history, "best": float(self.best), "best_epoch": self.best_epoch,
                    "best_state": self.best_state, "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state()}, ckpt)


@torch.no_grad()
def _fit_once(model: Deployable, net: FittedModel, x: np.ndarray | Windows, y: np.ndarray, tr: np.ndarray,
              x_val: np.ndarray | Windows | None, y_val: np.ndarray | None, va: np.ndarray | None, loss_fn: nn.Module,
              cfg: TrainConfig, chunk: int = 256) -> TrainResult:
    """A model fitted once (a forest): features of the standardised training windows, in
    chunks so a memory-mapped dataset is never loaded whole, then one ``fit_features``.
    The same validation figures as an epoch, so the history and the threshold read alike."""
    t0 = time.perf_counter()
    feats = torch.cat([net.features((_take(x, tr[i : i + chunk]) - model.mean) / model.std)  # type: ignore[operator]
                       for i in range(0, len(tr), chunk)])
    # a forest's trees do not depend on how many threads grow them: a one-core worker grows them on one
    threads = 1 if is_one_core() else cfg.threads
    net.fit_features(feats, torch.from_numpy(y[tr].astype(np.int64)), threads=threads)
    model.eval()
    row: dict[str, float] = {"epoch": 0, "train_loss": _validate(model, x, y, tr, loss_fn)["val_loss"]}
    if x_val is not None and y_val is not None and va is not None and len(va):
        row.update(_validate(model, x_val, y_val, va, loss_fn))
    log.info("fitted", extra={"arch": cfg.arch, "windows": len(tr), "features": int(feats.shape[1])})
    return TrainResult(model, [row], 0, time.perf_counter() - t0, asdict(cfg))


@torch.no_grad()
def _validate(model: Deployable, x: np.ndarray | Windows, y: np.ndarray, rows: np.ndarray, loss_fn: nn.Module,
              chunk: int = 256) -> dict[str, float]:
    model.eval()
    logits = torch.cat([model.net((_take(x, rows[i : i + chunk]) - model.mean) / model.std)  # type: ignore[operator]
                        for i in range(0, len(rows), chunk)])
    yv = y[rows]
    loss = float(loss_fn(logits, torch.from_numpy(yv.astype(np.float32))))
    p = torch.sigmoid(logits).numpy()
    acc = float(((p >= 0.5) == (yv == 1)).mean())
    out = {"val_loss": loss, "val_acc": acc}
    if 0 < yv[:, 0].sum() < len(yv):
        out["val_auc"] = roc(yv[:, 0], p[:, 0]).auc
    return out


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray | Windows, batch: int = 256, rows: np.ndarray | None = None) -> np.ndarray:
    """(N, C, T) -> (N, outputs) probabilities, with a deployed (or loaded) model; ``rows``
    picks windows of a memory-mapped array."""
    if isinstance(model, (Deployable, torch.jit.ScriptModule)):
        model.eval()  # (a torch.export module is already in eval mode and refuses .eval())
    rows = np.arange(len(x)) if rows is None else np.asarray(rows)
    out = [model(_take(x, rows[i : i + batch])).numpy() for i in range(0, len(rows), batch)]
    return np.concatenate(out) if out else np.zeros((0, 1))
