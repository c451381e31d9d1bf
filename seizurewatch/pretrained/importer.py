"""``seizurewatch import brainmaze``: a pretrained model as a regular, pinnable model file.

The file is the same TorchScript archive ``train`` writes (``modelfile.save_model``), checked by
reloading it (``export.save_checked``), with its metadata: the device's channels and rate, the
causal context (``window_s``) and hop, the band it needs, where the weights come from (package,
version, variant, the ONNX file's SHA-256) and the package's licence text, so the licence travels
inside the file with the weights (and beside it, ``FILE.LICENSE``, for a reader without torch).
No patient data: the threshold is the model's own 0.5 until one is chosen on recordings
(``seizurewatch threshold``; ``compare`` chooses it out of fold like a patient model's).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

import seizurewatch
from seizurewatch.devices import load_device
from seizurewatch.errors import ConfigError
from seizurewatch.preprocess import PreprocessSpec
from seizurewatch.pretrained.brainmaze import N_FREQ, VARIANTS, check_rate, source
from seizurewatch.research.architectures import Deployable, build
from seizurewatch.research.export import save_checked
from seizurewatch.research.train import TrainConfig

CONTEXT_S = 10.0  # measured on Dog_1 against 5, 20 and 30 s (README, "Day one: a pretrained model")
HOP_S = 1.0


def pretrained_block(variant: str, context_s: float, rate: int) -> dict[str, Any]:
    """What the metadata says about the model's use: the facts a reader of the file needs."""
    return {"causal": True, "context_s": context_s, "variant": variant, "band_hz": [0, N_FREQ - 1],
            "rates": f"a whole, even rate >= 200 Hz; this file runs at {rate} Hz",
            "output": "P(seizure) of the window's newest 1-s spectrogram column, per channel; the maximum over "
                      "channels", "trained_on": "Mayo Clinic iEEG (brainmaze-eeg-models); no data of this patient"}


def import_brainmaze(out: str | Path, device: str | Path, variant: str = "modelA", context_s: float = CONTEXT_S,
                     hop_s: float = HOP_S, rate: float | None = None, threshold: float = 0.5) -> dict[str, Any]:
    """Write the brainmaze model for ``device``'s channels as model file ``out``; returns its metadata with
    ``file_sha256`` (what a daemon config's ``model.sha256`` pins)."""
    if variant not in VARIANTS:
        raise ConfigError(f"--variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    if Path(out).suffix != ".pt":
        raise ConfigError(f"--out {out}: the model file is TorchScript, name it .pt")
    profile = load_device(device)
    try:
        fs = check_rate(profile.sampling_rate if rate is None else rate,
                        "--rate" if rate else f"{device}: sampling_rate")
        if context_s < 2 or not float(context_s).is_integer():
            raise ValueError(f"--context-s {context_s:g}: whole seconds, >= 2")
        if not 0 < hop_s <= context_s:
            raise ValueError(f"--hop-s {hop_s:g}: > 0 and <= the context ({context_s:g} s)")
        if not 0 < threshold < 1:
            raise ValueError(f"--threshold {threshold:g}: strictly between 0 and 1")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    n_ch, n_samples = len(profile.channels), int(context_s) * fs
    net = build("brainmaze", n_ch, n_samples, 1, rate=float(fs), variant=variant)
    model = Deployable(net, torch.zeros(n_ch), torch.ones(n_ch)).eval()  # the net z-scores each window itself
    src = source(variant)
    src.pop("path")
    meta = {
        "name": f"brainmaze-{variant}-{int(context_s)}s", "task": "detection", "outputs": ["seizure"],
        "description": f"brainmaze-eeg-models {variant} (CNN + BiLSTM over 1-s spectrogram columns 0-99 Hz), causal "
                       f"{int(context_s)}-s context, maximum over channels; pretrained, not trained on this patient",
        "device": profile.name, "window_s": float(context_s), "hop_s": float(hop_s),
        "preprocess": PreprocessSpec(tuple(profile.channels), float(fs)).to_json(),
        "threshold": {"value": float(threshold), "policy": "default", "target": None, "point": None, "auc": None,
                      "chosen_on": None},
        "architecture": model.get_config(), "source": src, "pretrained": pretrained_block(variant, context_s, fs),
        # the config a fold "trains" (nothing to fit): threshold --policy oof --dataset DIR replays it out of fold
        "training": {"config": asdict(TrainConfig(arch="brainmaze", arch_kwargs={"variant": variant})),
                     "command": f"seizurewatch import brainmaze --variant {variant} --device {device} "
                                f"--context-s {int(context_s)} --out {out}", "seizurewatch": seizurewatch.__version__,
                     "torch": torch.__version__},  # no date: the same package and options give the same file
    }
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, n_ch, n_samples, generator=g) * 50.0
    saved = save_checked(model, meta, out, x)
    Path(str(out) + ".LICENSE").write_text(src["license_text"], encoding="utf-8")
    return {**saved, "file_sha256": hashlib.sha256(Path(out).read_bytes()).hexdigest()}
