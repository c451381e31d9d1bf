"""A tiny dataset directory in the ``seizurewatch dataset build`` format, made of synthetic
windows: 'seizure' windows carry a strong 12 Hz rhythm, the others are noise. Small enough
that every architecture trains in about a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seizurewatch.research.dataset import write_dataset

RATE = 256.0
WINDOW_S = 12.0
CHANNELS = ("c1", "c2", "c3")


def windows(n: int, positive: bool, rng: np.random.Generator, horizons: int = 1) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(int(RATE * WINDOW_S)) / RATE
    x = rng.normal(0, 10, (n, len(CHANNELS), len(t)))
    if positive:
        phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
        x += 40 * np.sin(2 * np.pi * 12 * t + phase)
    y = np.full((n, horizons), int(positive), dtype=np.int8)
    return x.astype(np.float32), y


def make_dataset(root: Path, seed: int = 0, horizons: int = 1, subjects: tuple[str, ...] = ("s1",),
                 per_split: dict[str, int] | None = None) -> Path:
    """Per subject and split: equal numbers of positive and negative windows, one recording each."""
    rng = np.random.default_rng(seed)
    per_split = per_split or {"train": 24, "val": 10, "test": 10}
    xs, ys, rows = [], [], []
    for subject in subjects:
        for split, n in per_split.items():
            for positive in (False, True):
                x, y = windows(n // 2, positive, rng, horizons)
                if horizons > 1 and positive:
                    y[:, 0] = 0  # the nearest horizon sees only half of the preictal windows
                    y[: n // 4, 0] = 1
                xs.append(x)
                ys.append(y)
                rows += [{"recording": f"{subject}_{split}.edf", "subject": subject, "t_start": float(i),
                          "seizure_id": f"{subject}-{split}" if positive else "", "split": split}
                         for i in range(len(x))]
    outputs = ["seizure"] if horizons == 1 else [f"preictal_{600 * (k + 1)}s" for k in range(horizons)]
    manifest = {"task": "detection" if horizons == 1 else "prediction", "outputs": outputs,
                "horizons_s": [] if horizons == 1 else [600.0 * (k + 1) for k in range(horizons)],
                "preprocess": {"channels": list(CHANNELS), "rate": RATE, "bandpass": None, "notch": None},
                "window_s": WINDOW_S, "stride_s": 1.0, "device": "synthetic", "recordings": []}
    return write_dataset(root, np.concatenate(xs), np.concatenate(ys), rows, manifest)


def tiny_model_yaml(path: Path, arch: str = "seed_convnet", epochs: int = 4, extra: str = "") -> Path:
    kwargs = {
        "seed_convnet": "",
        "bandpower_lr": "",
        "cnn1d": "arch_kwargs:\n  conv:\n    - {channels: 4, kernel: 5, stride: 2, padding: 2, pool_kernel: 2}\n"
                 "  dense: [8]\n",
        "spectrogram_resnet": "arch_kwargs:\n  n_fft: 64\n  hop: 64\n  width: 4\n  blocks: [1, 1]\n",
    }[arch]
    path.write_text(f"name: tiny-{arch}\narch: {arch}\n{kwargs}epochs: {epochs}\nlr: 0.01\nbatch_size: 16\n"
                    f"seed: 0\npatience: 0\nthreads: 1\n{extra}")
    return path
