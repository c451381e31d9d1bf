"""Model architectures, built from a registry by name with keyword arguments (from YAML).

Every network maps (batch, channels, samples) standardised input to (batch, outputs) logits;
``Deployable`` wraps it with the input standardisation and the sigmoid, so the exported
file takes physical units and returns probabilities.

The model owns the description of its architecture (braindecode's ``get_config`` /
``from_config``): a network made by ``build`` answers ``get_config()`` with the block every
model file stores as ``architecture`` (arch, kwargs, n_channels, n_samples, n_outputs, rate),
and ``from_config`` of that block builds the same network again (export, threshold re-save).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

ARCHITECTURE_KEYS = ("arch", "kwargs", "n_channels", "n_samples", "n_outputs", "rate")


class Architecture(nn.Module):
    """Base of every registered network: ``build`` records the block that rebuilds it, and
    ``get_config`` returns it (a copy). A network constructed directly has none to give."""

    __jit_ignored_attributes__ = ["_config"]  # a plain dict for Python, never part of the exported module

    def get_config(self) -> dict[str, Any]:
        config = self.__dict__.get("_config")
        if config is None:
            raise ValueError(f"{type(self).__name__} was constructed directly; architectures.build(name, ...) "
                             "records the config a model file needs")
        return copy.deepcopy(config)


REGISTRY: dict[str, Callable[..., Architecture]] = {}


def register(name: str) -> Callable[[Callable[..., Architecture]], Callable[..., Architecture]]:
    def deco(fn: Callable[..., Architecture]) -> Callable[..., Architecture]:
        REGISTRY[name] = fn
        return fn

    return deco


def build(name: str, n_channels: int, n_samples: int, n_outputs: int, rate: float | None = None,
          **kwargs: Any) -> Architecture:
    """``rate`` (Hz) reaches architectures that take it (band powers need it), and no others;
    the network's ``get_config()`` records it either way (the rate of the windows it was built for)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(REGISTRY))}")
    factory = REGISTRY[name]
    config = {"arch": name, "kwargs": copy.deepcopy(kwargs), "n_channels": int(n_channels),
              "n_samples": int(n_samples), "n_outputs": int(n_outputs),
              "rate": None if rate is None else float(rate)}
    if rate is not None and "rate" in inspect.signature(factory).parameters and "rate" not in kwargs:
        kwargs["rate"] = rate
    net = factory(n_channels=n_channels, n_samples=n_samples, n_outputs=n_outputs, **kwargs)
    if not isinstance(net, Architecture):
        raise TypeError(f"architecture {name!r}: its factory must return an architectures.Architecture, "
                        f"got {type(net).__name__}")
    net.__dict__["_config"] = config
    return net


def from_config(config: dict[str, Any], where: str = "architecture") -> Architecture:
    """The network a ``get_config()`` block (a model file's ``architecture``) describes, untrained."""
    missing = [k for k in ARCHITECTURE_KEYS if k not in config]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)} (expected {', '.join(ARCHITECTURE_KEYS)})")
    return build(str(config["arch"]), int(config["n_channels"]), int(config["n_samples"]),
                 int(config["n_outputs"]), rate=config["rate"], **dict(config["kwargs"]))


def _flat_size(features: nn.Module, n_channels: int, n_samples: int) -> int:
    try:
        with torch.no_grad():
            return int(features(torch.zeros(1, n_channels, n_samples)).flatten(1).shape[1])
    except RuntimeError as exc:
        raise ValueError(f"the layers do not fit a window of {n_samples} samples ({str(exc)[:120]})") from None


class SeedConvNet(Architecture):
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
def seed_convnet(n_channels: int, n_samples: int, n_outputs: int = 1) -> Architecture:
    return SeedConvNet(n_channels, n_samples, n_outputs)


class Deployable(nn.Module):
    """Standardise per channel (training statistics), run the net, return probabilities."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.reshape(1, -1, 1).float())
        self.register_buffer("std", std.reshape(1, -1, 1).float().clamp_min(1e-6))

    def get_config(self) -> dict[str, Any]:
        """The network's architecture block (see ``Architecture.get_config``)."""
        if not isinstance(self.net, Architecture):
            raise ValueError(f"{type(self.net).__name__} is not an architectures.Architecture; no config to give")
        return self.net.get_config()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        z = torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
        return torch.sigmoid(self.net(z))


# ----- spectrogram ResNet (dog-iEEG study) -----------------------------------------------


class LogSpectrogram(nn.Module):
    """Per-channel STFT log-power inside the model, so an exported file takes raw windows:
    (B, C, T) -> (B, C, F, frames)."""

    def __init__(self, n_fft: int = 256, hop: int = 128, n_freq: int | None = None) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.n_freq = n_freq or n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        s = torch.stft(x.reshape(b * c, t), self.n_fft, self.hop, window=self.window, center=False,
                       return_complex=True)
        power = s.real**2 + s.imag**2
        power = power[:, : self.n_freq]
        return torch.log(power + 1e-6).reshape(b, c, power.shape[1], power.shape[2])


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with batch norm and an identity (or 1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.short(x))


class SpectrogramResNet(Architecture):
    """Log-spectrogram per channel -> ResNet18-style 2-D CNN trained from scratch ([2,2,2,2]
    basic blocks, widths w, 2w, 4w, 8w; a strided stem as in ResNet, kept small for CPUs).
    The EEG channels are the input planes of the stem convolution, so channels mix from the
    first layer on."""

    def __init__(self, n_channels: int, n_samples: int, n_outputs: int = 1, n_fft: int = 256, hop: int = 128,
                 n_freq: int | None = None, width: int = 8, blocks: tuple[int, ...] | list[int] = (2, 2, 2, 2),
                 dropout: float = 0.3, stem_stride: int = 2) -> None:
        super().__init__()
        if n_samples < n_fft:
            raise ValueError(f"window of {n_samples} samples is shorter than n_fft={n_fft}")
        self.spec = LogSpectrogram(n_fft, hop, n_freq)
        self.norm = nn.BatchNorm2d(n_channels)
        self.stem = nn.Sequential(nn.Conv2d(n_channels, width, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        layers: list[nn.Module] = []
        c_in = width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            for j in range(n):
                layers.append(BasicBlock(c_in, c_out, 2 if (j == 0 and i > 0) else 1))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(c_in, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(self.norm(self.spec(x)))))


@register("spectrogram_resnet")
def spectrogram_resnet(n_channels: int, n_samples: int, n_outputs: int = 1, **kwargs: Any) -> Architecture:
    return SpectrogramResNet(n_channels, n_samples, n_outputs, **kwargs)


# ----- configurable 1-D CNN (CHB-MIT tool) ------------------------------------------------


def _conv_layer(c_in: int, spec: dict[str, Any], i: int) -> tuple[list[nn.Module], int]:
    known = {"channels", "kernel", "stride", "padding", "pool_kernel", "pool_stride", "dropout", "batchnorm"}
    unknown = set(spec) - known
    if unknown or "channels" not in spec or "kernel" not in spec:
        raise ValueError(f"conv[{i}]: needs channels and kernel; known keys: {', '.join(sorted(known))}"
                         + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else ""))
    c_out = int(spec["channels"])
    mods: list[nn.Module] = [nn.Conv1d(c_in, c_out, int(spec["kernel"]), int(spec.get("stride", 1)),
                                       int(spec.get("padding", 0)))]
    if spec.get("batchnorm"):
        mods.append(nn.BatchNorm1d(c_out))
    mods.append(nn.ReLU())
    if spec.get("pool_kernel"):
        mods.append(nn.MaxPool1d(int(spec["pool_kernel"]), int(spec.get("pool_stride") or spec["pool_kernel"])))
    if spec.get("dropout"):
        mods.append(nn.Dropout(float(spec["dropout"])))
    return mods, c_out


class ConfigurableCNN(Architecture):
    """A 1-D CNN whose conv layers (channels, kernel, stride, padding, pooling, dropout) and
    dense layers are listed in the YAML, as the CHB-MIT tool allowed."""

    def __init__(self, n_channels: int, n_samples: int, n_outputs: int = 1,
                 conv: list[dict[str, Any]] | None = None, dense: list[int] | None = None,
                 dense_dropout: float = 0.5) -> None:
        super().__init__()
        conv = conv or [{"channels": 16, "kernel": 7, "stride": 2, "padding": 3, "pool_kernel": 4}]
        mods: list[nn.Module] = []
        c = n_channels
        for i, spec in enumerate(conv):
            layer, c = _conv_layer(c, dict(spec), i)
            mods += layer
        self.features = nn.Sequential(*mods)
        flat = _flat_size(self.features, n_channels, n_samples)
        head: list[nn.Module] = [nn.Flatten()]
        for units in dense or [32]:
            head += [nn.Dropout(dense_dropout), nn.Linear(flat, int(units)), nn.ReLU()]
            flat = int(units)
        head.append(nn.Linear(flat, n_outputs))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("cnn1d")
def cnn1d(n_channels: int, n_samples: int, n_outputs: int = 1, **kwargs: Any) -> Architecture:
    return ConfigurableCNN(n_channels, n_samples, n_outputs, **kwargs)


# ----- logistic regression on band powers (baseline) --------------------------------------

BANDS_HZ: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0), "gamma": (30.0, 100.0),
}


class BandPowerLR(Architecture):
    """Logistic regression on per-channel log band powers (delta..gamma) and log line length.
    A torch module, so it trains, exports and deploys exactly like the networks."""

    def __init__(self, n_channels: int, n_samples: int, n_outputs: int = 1, rate: float = 400.0,
                 bands: dict[str, list[float]] | None = None) -> None:
        super().__init__()
        bands_hz = {k: (float(v[0]), float(v[1])) for k, v in (bands or BANDS_HZ).items()}
        freqs = torch.fft.rfftfreq(n_samples, 1.0 / rate)
        masks = []
        for name, (lo, hi) in bands_hz.items():
            m = ((freqs >= lo) & (freqs < min(hi, rate / 2))).float()
            if m.sum() == 0:
                raise ValueError(f"band {name} ({lo}-{hi} Hz) has no FFT bin at {rate} Hz / {n_samples} samples")
            masks.append(m / m.sum())
        self.register_buffer("bands", torch.stack(masks, dim=1))  # (F, n_bands)
        self.n_features = n_channels * (len(masks) + 1)
        self.scale = nn.BatchNorm1d(self.n_features, affine=False, momentum=None)  # exact mean over batches
        self.linear = nn.Linear(self.n_features, n_outputs)
        nn.init.zeros_(self.linear.weight)  # logistic regression starts from "no evidence"
        nn.init.zeros_(self.linear.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.fft.rfft(x, dim=-1)
        power = (f.real**2 + f.imag**2) @ self.bands  # (B, C, n_bands) mean power per band
        line = (x[..., 1:] - x[..., :-1]).abs().mean(-1, keepdim=True)
        return torch.log(torch.cat([power, line], dim=-1) + 1e-6).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.scale(self.features(x)))


@register("bandpower_lr")
def bandpower_lr(n_channels: int, n_samples: int, n_outputs: int = 1, rate: float = 400.0,
                 **kwargs: Any) -> Architecture:
    return BandPowerLR(n_channels, n_samples, n_outputs, rate=rate, **kwargs)


# ----- the 2014 Kaggle winner's recipe (fitted once, see research/hills.py) --------------------


@register("hills_forest")
def hills_forest(n_channels: int, n_samples: int, n_outputs: int = 1, rate: float = 400.0,
                 **kwargs: Any) -> Architecture:
    from seizurewatch.research.hills import HillsForest

    return HillsForest(n_channels, n_samples, n_outputs, rate=rate, **kwargs)


# ----- published pretrained models (fitted once with nothing to fit, see seizurewatch/pretrained) ----------

NOTHING_TO_FIT = frozenset({"brainmaze"})  # no minimum of training windows: every window is out of fold for them


@register("brainmaze")
def brainmaze(n_channels: int, n_samples: int, n_outputs: int = 1, rate: float = 400.0,
              variant: str = "modelA") -> Architecture:
    from seizurewatch.pretrained.brainmaze import Brainmaze, load_onnx

    return load_onnx(Brainmaze(n_channels, n_samples, n_outputs, rate, variant))
