"""The dataset spec: which recordings, how they are preprocessed, windowed, labelled and split."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from seizurewatch.errors import ConfigError
from seizurewatch.research.labels import LabelRules
from seizurewatch.schedule import WindowSchedule
from seizurewatch.typedyaml import FilePath, load_typed_file


@dataclass(frozen=True)
class SplitSpec:
    by: Literal["recording", "seizure", "subject"] = "recording"
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train, val, test (by window count)
    assign: dict[str, Literal["train", "val", "test"]] = field(default_factory=dict)  # name or glob -> split


@dataclass(frozen=True, kw_only=True)
class DatasetSpec(LabelRules):
    """A dataset: its recordings, their preprocessing, windowing and split, and the label rules it inherits
    (``task``, ``exclusion_s``, ``horizons_s``, ``interictal_min_s``, ``postictal_s``, ``early_s``)."""

    recordings: tuple[FilePath, ...]  # EDF files, globs, clip folders (Kaggle, Delhi), single clips
    device: FilePath | None = None  # device profile: channels and rate (else `channels`/`rate`, else the first file)
    channels: tuple[str, ...] | None = None
    rate: float | None = None
    bandpass: tuple[float, float] | None = None
    notch: float | None = None
    window_s: float = 10.0
    stride_s: float = 1.0  # between interictal (negative) windows
    stride_ictal_s: float = 1.0  # inside the positive class: seizures (detection), preictal spans (prediction)
    # what a signal file is: "continuous" (a recording: replayed, scored per second and per event) or
    # "segments" (each file an independent segment, e.g. Bonn's 23.6-s text files: scored per segment).
    # Clips say it themselves: Kaggle clips are "clips", Delhi's are "segments".
    units: Literal["continuous", "segments"] = "continuous"
    balance: Literal["none", "subject"] = "none"  # subject: undersample the majority class per subject
    balance_splits: tuple[Literal["train", "val", "test"], ...] = ("train",)
    split: SplitSpec = field(default_factory=SplitSpec)
    subjects: dict[str, str] = field(default_factory=dict)  # recording name or glob -> subject
    annotations: dict[str, FilePath] = field(default_factory=dict)  # recording name -> annotation file
    seed: int = 0
    name: str = ""

    @property
    def schedule(self) -> WindowSchedule:
        """Windows of ``window_s`` every ``stride_s`` (``every(stride_ictal_s)`` inside the positive class)."""
        return WindowSchedule(self.window_s, self.stride_s)

    def check(self, where: str) -> None:
        if self.window_s <= 0 or self.stride_s <= 0 or self.stride_ictal_s <= 0:
            raise ConfigError(f"{where}: window_s, stride_s and stride_ictal_s must be > 0")
        if self.exclusion_s < 0:
            raise ConfigError(f"{where}: exclusion_s must be >= 0")
        if self.task == "prediction" and (not self.horizons_s or min(self.horizons_s) <= 0):
            raise ConfigError(f"{where}: horizons_s: prediction needs at least one horizon > 0")
        fr = self.split.fractions
        if min(fr) < 0 or not math.isclose(sum(fr), 1.0, abs_tol=1e-6):
            raise ConfigError(f"{where}: split.fractions must be >= 0 and sum to 1, got {list(fr)}")
        if self.units == "segments" and self.early_s is not None:
            raise ConfigError(f"{where}: early_s: independent segments carry no seizure onset (units: segments); "
                              "drop early_s")
        if not self.recordings:
            raise ConfigError(f"{where}: recordings: at least one recording or clip folder is needed")


def load_spec(path: str | Path) -> DatasetSpec:
    """A dataset spec YAML; relative paths are relative to the file."""
    spec, _ = load_typed_file(DatasetSpec, path)
    spec.check(str(path))
    return spec
