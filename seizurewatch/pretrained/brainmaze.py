"""brainmaze-eeg-models' seizure detector (Mayo Clinic, BSD-3-Clause) as a torch module.

The published model (Sladky et al., Brain Communications 2022) is a CNN + BiLSTM over the
spectrogram of one iEEG channel: 1-s Tukey-windowed segments every 0.5 s, bins 0-99 Hz, each
bin z-scored over the window; 4 classes per column, class 3 = seizure. The package runs it
offline on ONNX Runtime over 300-s windows with a minute of future context. Here it runs
causally: the window is the last ``n_samples`` (the context), and the score is the seizure
probability of its *last* column (the newest second), per channel; the channels combine by
their maximum (an iEEG seizure may start on one contact).

The preprocessing is the package's ``preprocess_input`` written in torch (float64, as its
numpy code) and the network is rebuilt from the ONNX file's weights (ONNX LSTM gates i,o,f,c
reordered to torch's i,f,g,o). The parity with the package's own ONNX Runtime run is tested
(``tests/test_pretrained.py``). onnx2torch was not used: it imports torchvision, whose CPU build
for torch 2.13 is not on the package index (only CUDA builds, which do not load on a CPU torch).
"""

from __future__ import annotations

import hashlib
import importlib
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.signal import get_window
from torch import nn

from seizurewatch.errors import ModelError
from seizurewatch.research.hills import FittedModel

PACKAGE = "brainmaze-eeg-models"
VARIANTS = ("modelA", "modelB")  # modelA: the published model; modelB: an extended training set
N_FREQ = 100  # 0-99 Hz at 1 Hz
N_CLASSES = 4
SEIZURE_CLASS = 3
MIN_RATE = 200
HIDDEN = 100
INSTALL = "pip install 'seizurewatch[pretrained]' (brainmaze-eeg-models, onnx)"


def check_rate(rate: float, where: str = "rate") -> int:
    """The package's rule: a whole, even number of Hz >= 200 (1-Hz bins to 99 Hz, a 0.5-s hop)."""
    if not float(rate).is_integer() or int(rate) < MIN_RATE or int(rate) % 2:
        raise ValueError(f"{where}: {rate:g} Hz; the brainmaze model needs a whole, even rate >= {MIN_RATE} Hz "
                         "(resample to e.g. 400 or 500 Hz)")
    return int(rate)


class Spectrogram(nn.Module):
    """``brainmaze_eeg_models.seizure.preprocess_input`` in torch: (N, T) -> (N, 100, 2 T/fs - 1) float32.

    Per row: z-score (population std; a flat row is only centred); scipy's default spectrogram
    (Tukey 0.25 window, constant detrend, one-sided PSD density) with ``nperseg = fs`` and a
    ``fs/2`` hop, bins 0-99; each bin z-scored over the columns with power (others stay 0)."""

    def __init__(self, rate: int) -> None:
        super().__init__()
        self.fs, self.hop, self.n_freq = int(rate), int(rate) // 2, N_FREQ
        win = torch.from_numpy(np.asarray(get_window(("tukey", 0.25), self.fs), dtype=np.float64))
        self.register_buffer("window", win)
        self.scale = 1.0 / (self.fs * float((win * win).sum()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        x = x - x.mean(dim=1, keepdim=True)
        sd = torch.sqrt((x * x).mean(dim=1, keepdim=True))
        x = x / torch.where(sd > 0, sd, torch.ones_like(sd))
        seg = x.unfold(1, self.fs, self.hop)  # (N, cols, fs)
        seg = (seg - seg.mean(dim=2, keepdim=True)) * self.window
        spec = torch.fft.rfft(seg, dim=2)[:, :, : self.n_freq]
        p = (spec.real * spec.real + spec.imag * spec.imag) * self.scale
        p = torch.cat([p[:, :, :1], 2.0 * p[:, :, 1:]], dim=2).transpose(1, 2)  # (N, 100, cols)
        valid = (p.sum(dim=1, keepdim=True) != 0).double()  # (N, 1, cols)
        n = valid.sum(dim=2, keepdim=True).clamp_min(1.0)
        mu = (p * valid).sum(dim=2, keepdim=True) / n
        sd_f = torch.sqrt((((p - mu) * valid) ** 2).sum(dim=2, keepdim=True) / n)
        sd_f = torch.where(sd_f > 0, sd_f, torch.ones_like(sd_f))
        return torch.where(valid > 0, (p - mu) / sd_f, torch.zeros_like(p)).float()


class BrainmazeNet(nn.Module):
    """The ONNX graph as torch layers: (N, 100, cols) spectrograms -> (cols, N, 4) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, (5, 5), padding=(0, 2))
        self.conv2 = nn.Conv2d(20, 200, (96, 3), padding=(0, 1))
        self.lstm = nn.LSTM(200, HIDDEN, num_layers=2, bidirectional=True)
        self.fc1 = nn.Linear(2 * HIDDEN, N_CLASSES)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2(torch.relu(self.conv1(s.unsqueeze(1))))).squeeze(2)  # (N, 200, cols)
        out, _ = self.lstm(h.permute(2, 0, 1))
        return self.fc1(out)


class Brainmaze(FittedModel):
    """(B, C, T) window -> (B, 1) seizure logit of the newest second: the maximum over channels of
    each channel's seizure log-odds (``Deployable``'s sigmoid makes it the maximum probability).
    Pretrained: nothing to fit; the weights are set by ``load_onnx`` (``build`` does it)."""

    def __init__(self, n_channels: int, n_samples: int, n_outputs: int = 1, rate: float = 400.0,
                 variant: str = "modelA") -> None:
        super().__init__()
        if n_outputs != 1:
            raise ValueError(f"the brainmaze model gives one output (seizure), the dataset has {n_outputs}; "
                             "build it without early_s")
        if variant not in VARIANTS:
            raise ValueError(f"variant: {variant!r}, expected one of {', '.join(VARIANTS)}")
        fs = check_rate(rate)
        if n_samples % fs or n_samples < 2 * fs:
            raise ValueError(f"window of {n_samples} samples at {fs} Hz: the context must be whole seconds, >= 2 s")
        self.variant, self.seizure = variant, SEIZURE_CLASS
        self.spec = Spectrogram(fs)
        self.net = BrainmazeNet()

    def seizure_logit(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C) seizure log-odds of the last column, per channel."""
        b, c, t = x.shape
        logits = self.net(self.spec(x.reshape(b * c, t)))[-1]  # (B*C, 4), the newest column
        k = self.seizure
        other = torch.logsumexp(torch.cat([logits[:, :k], logits[:, k + 1:]], dim=1), dim=1)
        return (logits[:, k] - other).reshape(b, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seizure_logit(x).amax(dim=1, keepdim=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros((x.shape[0], 0))  # pretrained: nothing to fit, so no features to compute

    def fit_features(self, f: torch.Tensor, y: torch.Tensor, threads: int = 1) -> None:
        """Pretrained: the training windows change nothing (every recording is out of fold for it)."""


def _package() -> Any:
    try:
        return importlib.import_module("brainmaze_eeg_models.seizure._models")
    except ImportError:
        raise ModelError(f"{PACKAGE} is not installed; {INSTALL}") from None


def source(variant: str) -> dict[str, Any]:
    """Where the weights come from: package, version, file, its SHA-256 and the licence text."""
    models = _package()
    fname, sha = models.TRAINED_MODELS[variant]
    path = Path(models.__file__).parent / fname
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha:
        raise ModelError(f"{path}: sha256 {digest} is not the package's {sha}; reinstall {PACKAGE}")
    dist = metadata.distribution(PACKAGE)
    md = dist.metadata
    licence = (md.get_all("License-Expression") or md.get_all("License") or [None])[0]
    licences = sorted(str(f) for f in dist.files or [] if Path(str(f)).name in ("LICENSE", "NOTICE.md"))
    return {"package": PACKAGE, "version": dist.version, "variant": variant, "file": fname, "onnx_sha256": digest,
            "path": str(path), "license": licence,
            "license_text": "\n\n".join(Path(str(dist.locate_file(f))).read_text(encoding="utf-8") for f in licences),
            "reference": "Sladky V et al., Brain Communications 2022 (Mayo Clinic brain co-processor)"}


def _reorder(w: np.ndarray) -> torch.Tensor:
    """ONNX LSTM gate blocks (i, o, f, c) -> torch's (i, f, g, o)."""
    i, o, f, c = np.split(w, 4, axis=0)
    return torch.from_numpy(np.ascontiguousarray(np.concatenate([i, f, c, o], axis=0), dtype=np.float32))


def onnx_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The ONNX file's weights as a ``BrainmazeNet`` state dict, found by the graph's nodes."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ModelError(f"onnx is not installed; {INSTALL}") from None
    graph = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = {k: torch.from_numpy(init[k].copy()) for k in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias")}
    lstms = [n for n in graph.node if n.op_type == "LSTM"]
    if len(lstms) != 2:
        raise ModelError(f"{path}: expected 2 LSTM layers, found {len(lstms)}")
    for layer, node in enumerate(lstms):
        w, r, b = (init[name] for name in node.input[1:4])
        for d, suffix in enumerate(("", "_reverse")):
            state[f"lstm.weight_ih_l{layer}{suffix}"] = _reorder(w[d])
            state[f"lstm.weight_hh_l{layer}{suffix}"] = _reorder(r[d])
            state[f"lstm.bias_ih_l{layer}{suffix}"] = _reorder(b[d, : 4 * HIDDEN])
            state[f"lstm.bias_hh_l{layer}{suffix}"] = _reorder(b[d, 4 * HIDDEN:])
    matmul = next(n for n in graph.node if n.op_type == "MatMul")
    state["fc1.weight"] = torch.from_numpy(np.ascontiguousarray(init[matmul.input[1]].T))
    state["fc1.bias"] = torch.from_numpy(init["fc1.bias"].copy())
    return state


def load_onnx(model: Brainmaze) -> Brainmaze:
    """Set ``model``'s weights from the installed package's ONNX file of its variant."""
    model.net.load_state_dict(onnx_state(source(model.variant)["path"]), strict=True)
    return model.eval()
