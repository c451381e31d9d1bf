"""Model architectures, built from a registry by name with keyword arguments (from YAML).

Every network maps (batch, channels, samples) standardised input to (batch, outputs) logits;
``Deployable`` wraps it with the input standardisation and the sigmoid, so the exported
file takes physical units and returns probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        REGISTRY[name] = fn
        return fn

    return deco


def build(name: str, n_channels: int, n_samples: int, n_outputs: int, **kwargs: Any) -> nn.Module:
    if name not in REGISTRY:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](n_channels=n_channels, n_samples=n_samples, n_outputs=n_outputs, **kwargs)


def _flat_size(features: nn.Module, n_channels: int, n_samples: int) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, n_channels, n_samples)).flatten(1).shape[1])


class SeedConvNet(nn.Module):
    """The CHB-MIT detection tool's 1-D ConvNet, with input channels and flatten size adapted:
    Conv1d C->10 k10 s5 p9, ReLU, MaxPool 15/10, Conv1d 10->5 k5 s4 p4, ReLU, MaxPool 10/5,
    Dropout 0.5, Linear F->15, Linear 15->outputs (the original had 2 softmax outputs; one
    logit per output with a sigmoid is the same model for a binary task)."""

    def __init__(self, n_channels: int, n_samples: int, n_outputs: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(n_channels, 10, kernel_size=10, stride=5, padding=9),
            nn.ReLU(),
            nn.MaxPool1d(15, 10),
            nn.Conv1d(10, 5, kernel_size=5, stride=4, padding=4),
            nn.ReLU(),
            nn.MaxPool1d(10, 5),
        )
        flat = _flat_size(self.features, n_channels, n_samples)
        if flat < 1:
            raise ValueError(f"window of {n_samples} samples is too short for the seed ConvNet")
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(flat, 15), nn.Linear(15, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("seed_convnet")
def seed_convnet(n_channels: int, n_samples: int, n_outputs: int = 1) -> nn.Module:
    return SeedConvNet(n_channels, n_samples, n_outputs)


class Deployable(nn.Module):
    """Standardise per channel (training statistics), run the net, return probabilities."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.reshape(1, -1, 1).float())
        self.register_buffer("std", std.reshape(1, -1, 1).float().clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        z = torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
        return torch.sigmoid(self.net(z))
