"""The 2014 UPenn/Mayo (Kaggle) seizure detection winner's features, in torch, so an exported
model file computes them itself from the raw window the daemon hands it.

Michael Hills' winning entry described its features as "FFT with time and frequency
correlation, taking both correlation coefficients and eigenvalues" on 1-s clips resampled to
400 Hz, with a random forest (3000 trees) per subject. Per clip (channels x samples):

- per channel, log10 |FFT| magnitudes of the 1-47 Hz bins (1 Hz resolution on a 1-s clip);
- the correlation matrix between channels of those spectra, each channel's spectrum
  normalised first: its upper triangle and its eigenvalues (absolute, sorted);
- the correlation matrix between channels of the time-domain signal, each channel
  normalised first: its upper triangle and its eigenvalues (absolute, sorted).

Written from that description (not from the entry's code). The features are of the *last*
``clip_s`` seconds of the window, so a model with a longer window still scores the newest
second.
"""

from __future__ import annotations

import torch
from torch import nn

from seizurewatch.research.architectures import Architecture


def _corr(z: torch.Tensor) -> torch.Tensor:
    """(B, C, N) -> (B, C, C) Pearson correlation between rows (a flat row correlates 0)."""
    z = z - z.mean(dim=-1, keepdim=True)
    norm = torch.sqrt((z * z).sum(dim=-1, keepdim=True)).clamp_min(1e-6)
    z = z / norm
    return z @ z.transpose(1, 2)


class HillsFeatures(nn.Module):
    """(B, C, T) raw window -> (B, F) features of its last ``clip_s`` seconds:
    C*n_bins log10 magnitudes, then per correlation (spectral, temporal) C*(C-1)/2
    coefficients and C sorted eigenvalues."""

    def __init__(self, n_channels: int, n_samples: int, rate: float, clip_s: float = 1.0,
                 f_lo: float = 1.0, f_hi: float = 47.0) -> None:
        super().__init__()
        if n_channels < 2:
            raise ValueError(f"the Hills features correlate channels, and this dataset has {n_channels}: its "
                             "correlation coefficients and eigenvalues would be constants; use an architecture "
                             "without channel correlations (e.g. bandpower_lr, seed_convnet)")
        clip = int(round(clip_s * rate))
        if clip < 2 or clip > n_samples:
            raise ValueError(f"clip of {clip_s:g} s ({clip} samples) does not fit a window of {n_samples} samples")
        freqs = torch.fft.rfftfreq(clip, 1.0 / rate)
        keep = torch.nonzero((freqs >= f_lo - 1e-9) & (freqs <= f_hi + 1e-9)).flatten()
        if len(keep) == 0:
            raise ValueError(f"no FFT bin between {f_lo:g} and {f_hi:g} Hz at {rate:g} Hz / {clip} samples")
        self.clip = clip
        self.lo, self.hi = int(keep[0]), int(keep[-1]) + 1
        iu = torch.triu_indices(n_channels, n_channels, offset=1)
        self.register_buffer("iu_flat", (iu[0] * n_channels + iu[1]).long())
        self.n_channels = n_channels
        n_bins = self.hi - self.lo
        self.n_features = n_channels * n_bins + 2 * (len(iu[0]) + n_channels)

    def _corr_block(self, z: torch.Tensor) -> torch.Tensor:
        c = _corr(z)
        upper = c.flatten(1)[:, self.iu_flat]  # type: ignore[index]
        eig = torch.linalg.eigvalsh(c).abs()
        eig, _ = torch.sort(eig, dim=-1)
        return torch.cat([upper, eig], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[..., x.shape[-1] - self.clip:]
        mag = torch.log10(torch.fft.rfft(x, dim=-1).abs()[..., self.lo: self.hi] + 1e-6)
        return torch.cat([mag.flatten(1), self._corr_block(mag), self._corr_block(x)], dim=1)


# ----- classifiers fitted once (not by epochs), exported as torch ------------------------------


class _Unfitted(nn.Module):
    def forward(self, f: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this model has not been fitted")


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1.0 - 1e-6)
    return torch.log(p) - torch.log1p(-p)


class _ForestHead(nn.Module):
    """P(class 1) of a hummingbird-converted forest: the traced tree-traversal operator."""

    def __init__(self, op: nn.Module) -> None:
        super().__init__()
        self.op = op

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.op(f)[1][:, 1]


def forest_to_torch(forest: object, example: torch.Tensor) -> nn.Module:
    """A fitted scikit-learn forest as a TorchScript module: ``hummingbird-ml`` converts it to
    tree-traversal tensors, and tracing makes the operator scriptable inside a model file."""
    import warnings

    from hummingbird.ml import convert

    op = convert(forest, "torch", extra_config={"tree_implementation": "tree_trav"}).model._operators[0]
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated in torch 2.13 but is the model file format; silence exactly that
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated",
                                category=DeprecationWarning)
        return torch.jit.trace(_ForestHead(op.eval()), example, check_trace=False)


class FittedModel(Architecture):
    """A model fitted once on features of the training windows (``train.train`` calls
    ``features`` in chunks, then ``fit_features``) instead of by gradient epochs. Built by
    ``architectures.build``, it gives its architecture block by ``get_config`` like any other."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fit_features(self, f: torch.Tensor, y: torch.Tensor, threads: int = 1) -> None:
        raise NotImplementedError


class HillsForest(FittedModel):
    """Hills features of the newest ``clip_s`` -> one random forest per output (the winner
    trained a seizure and an early-seizure classifier per subject).

    With the outputs ``seizure, early`` (a dataset built with ``early_s``), ``combine`` makes
    output 0 an alarm score that ranks early ictal seconds above late ictal ones and both
    above interictal ones, which is what the seizure and early AUCs reward together:

    - ``mean``: ``(P(seizure) + P(early)) / 2``, two forests on all windows;
    - ``conditional``: the second forest learns early vs late on ictal windows only, and
      output 0 is ``P(seizure) * (1 + w P(early | seizure)) / (1 + w)`` (``early_weight`` w:
      a late ictal second keeps 1 / (1 + w) of P(seizure)), output 1 ``P(seizure) *
      P(early | seizure)``. The score never exceeds P(seizure): an interictal second the
      early forest mistakes for an onset cannot rise above the seizure forest's verdict."""

    def __init__(self, n_channels: int, n_samples: int, n_outputs: int = 1, rate: float = 400.0,
                 clip_s: float = 1.0, trees: int = 3000, max_features: str | float = "sqrt",
                 min_samples_leaf: int = 1, bootstrap: bool = False, combine: str = "none", early_weight: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__()
        if combine not in ("none", "mean", "conditional"):
            raise ValueError(f"combine: 'none', 'mean' or 'conditional', got {combine!r}")
        if combine != "none" and n_outputs != 2:
            raise ValueError(f"combine: {combine} needs two outputs (seizure, early); build the dataset with early_s")
        self.feat = HillsFeatures(n_channels, n_samples, rate, clip_s)
        if early_weight < 0:
            raise ValueError(f"early_weight: must be >= 0, got {early_weight}")
        self.n_outputs, self.combine, self.early_weight = n_outputs, combine, float(early_weight)
        self.params = {"n_estimators": int(trees), "max_features": max_features,
                       "min_samples_leaf": int(min_samples_leaf), "bootstrap": bool(bootstrap), "random_state": seed}
        self.heads = nn.ModuleList([_Unfitted() for _ in range(n_outputs)])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feat(x)

    def fit_features(self, f: torch.Tensor, y: torch.Tensor, threads: int = 1) -> None:
        from sklearn.ensemble import RandomForestClassifier

        for k in range(self.n_outputs):
            conditional = k == 1 and self.combine == "conditional"  # early vs late, ictal windows only
            rows = (y[:, 0] == 1) if conditional else torch.ones(len(y), dtype=torch.bool)
            fk, yk = f[rows].numpy(), y[rows, k].numpy().astype(int)
            if len(yk) == 0 or yk.min() == yk.max():
                raise ValueError(f"output {k}: the training windows hold one class only; cannot fit a forest")
            rf = RandomForestClassifier(**self.params, n_jobs=threads).fit(fk, yk)
            self.heads[k] = forest_to_torch(rf, f[:2].contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.feat(x)
        p = torch.stack([head(f) for head in self.heads], dim=1)
        if self.combine == "mean":
            p = torch.cat([p.mean(dim=1, keepdim=True), p[:, 1:]], dim=1)
        elif self.combine == "conditional":
            w = self.early_weight
            p = torch.stack([p[:, 0] * (1.0 + w * p[:, 1]) / (1.0 + w), p[:, 0] * p[:, 1]], dim=1)
        return _logit(p)
