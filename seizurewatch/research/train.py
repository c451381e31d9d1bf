"""Training loop: seeded, class-weighted, validated each epoch, early stopping, checkpoints
(resumable), CPU-friendly, with a tqdm progress bar."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from seizurewatch.research.architectures import Deployable, build

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


@dataclass
class TrainResult:
    model: Deployable
    history: list[dict[str, float]]
    best_epoch: int
    seconds: float
    config: dict[str, Any]


def channel_stats(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over all training windows (the model's input standardisation)."""
    mean = x.mean(axis=(0, 2), dtype=np.float64)
    std = x.std(axis=(0, 2), dtype=np.float64)
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def _batches(n: int, size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    idx = rng.permutation(n) if rng is not None else np.arange(n)
    return [idx[i : i + size] for i in range(0, n, size)]


def _loss_fn(y: np.ndarray, use_weights: bool) -> nn.Module:
    if not use_weights:
        return nn.BCEWithLogitsLoss()
    pos = y.sum(axis=0).astype(np.float64)
    neg = len(y) - pos
    weight = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weight, dtype=torch.float32))


def train(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    cfg: TrainConfig,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fit ``cfg.arch`` on (N, C, T) windows with (N, outputs) 0/1 labels."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    torch.set_num_threads(cfg.threads)
    n, c, t = x_train.shape
    n_out = y_train.shape[1]
    net = build(cfg.arch, c, t, n_out, **cfg.arch_kwargs)
    mean, std = channel_stats(x_train)
    model = Deployable(net, mean, std)
    opt = torch.optim.Adam(model.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = _loss_fn(y_train, cfg.class_weights)
    history: list[dict[str, float]] = []
    start_epoch, best, best_epoch, best_state = 0, float("inf"), -1, None
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"] + 1, state["history"]
        best, best_epoch, best_state = state["best"], state["best_epoch"], state["best_state"]
        rng = np.random.default_rng(cfg.seed + start_epoch)
        log.info("resuming from checkpoint", extra={"checkpoint": str(ckpt), "epoch": start_epoch})
    t0 = time.perf_counter()
    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    yt = torch.from_numpy(y_train.astype(np.float32))
    bar = tqdm(range(start_epoch, cfg.epochs), desc=f"train {cfg.arch}", disable=not progress, unit="epoch")
    for epoch in bar:
        model.train()
        total = 0.0
        for idx in _batches(n, cfg.batch_size, rng):
            ti = torch.from_numpy(idx)
            z = (xt[ti] - model.mean) / model.std
            loss = loss_fn(model.net(z), yt[ti])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        row = {"epoch": epoch, "train_loss": total / n}
        if x_val is not None and y_val is not None and len(x_val):
            row.update(_validate(model, x_val, y_val, loss_fn))
        history.append(row)
        monitor = row.get("val_loss", row["train_loss"])
        if monitor < best - 1e-4:
            best, best_epoch = monitor, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
        if ckpt:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                        "history": history, "best": best, "best_epoch": best_epoch, "best_state": best_state},
                       ckpt)
        if cfg.patience and epoch - best_epoch >= cfg.patience:
            log.info("early stopping", extra={"epoch": epoch, "best_epoch": best_epoch})
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, history, best_epoch, time.perf_counter() - t0, asdict(cfg))


@torch.no_grad()
def _validate(model: Deployable, x: np.ndarray, y: np.ndarray, loss_fn: nn.Module) -> dict[str, float]:
    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    logits = model.net((xt - model.mean) / model.std)
    loss = float(loss_fn(logits, torch.from_numpy(y.astype(np.float32))))
    p = torch.sigmoid(logits).numpy()[:, 0]
    acc = float(((p >= 0.5) == (y[:, 0] == 1)).mean())
    return {"val_loss": loss, "val_acc": acc}


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """(N, C, T) -> (N, outputs) probabilities, with a deployed (or loaded) model."""
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        out.append(model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch], dtype=np.float32))).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1))
