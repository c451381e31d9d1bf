"""The dataset spec: which recordings, how they are preprocessed, windowed, labelled and split."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from seizurewatch.errors import ConfigError
from seizurewatch.research.labels import LabelRules
from seizurewatch.schedule import WindowSchedule
from seizurewatch.typedyaml import load_typed_file, resolve_path


@dataclass(frozen=True)
class SplitSpec:
    by: Literal["recording", "seizure", "subject"] = "recording"
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train, val, test (by window count)
    assign: dict[str, Literal["train", "val", "test"]] = field(default_factory=dict)  # name or glob -> split


@dataclass(frozen=True)
class DatasetSpec:
    recordings: tuple[str, ...]  # EDF files, globs, clip folders (Kaggle, Delhi), single clips
    task: Literal["detection", "prediction"] = "detection"
    device: str | None = None  # device profile: channels and rate (else `channels`/`rate`, else the first file)
    channels: tuple[str, ...] | None = None
    rate: float | None = None
    bandpass: tuple[float, float] | None = None
    notch: float | None = None
    window_s: float = 10.0
    stride_s: float = 1.0  # between interictal (negative) windows
    stride_ictal_s: float = 1.0  # inside the positive class: seizures (detection), preictal spans (prediction)
    exclusion_s: float = 300.0  # detection: interictal windows at least this far from a seizure
    horizons_s: tuple[float, ...] = (600.0, 3600.0)  # prediction: preictal = within H before onset
    interictal_min_s: float = 4 * 3600.0  # prediction: interictal at least this far from any seizure
    postictal_s: float = 600.0
    early_s: float | None = None  # detection: add the output "early" (window ends <= early_s after onset)
    # what a signal file is: "continuous" (a recording: replayed, scored per second and per event) or
    # "segments" (each file an independent segment, e.g. Bonn's 23.6-s text files: scored per segment).
    # Clips say it themselves: Kaggle clips are "clips", Delhi's are "segments".
    units: Literal["continuous", "segments"] = "continuous"
    balance: Literal["none", "subject"] = "none"  # subject: undersample the majority class per subject
    balance_splits: tuple[Literal["train", "val", "test"], ...] = ("train",)
    split: SplitSpec = field(default_factory=SplitSpec)
    subjects: dict[str, str] = field(default_factory=dict)  # recording name or glob -> subject
    annotations: dict[str, str] = field(default_factory=dict)  # recording name -> annotation file
    seed: int = 0
    name: str = ""

    def rules(self) -> LabelRules:
        return LabelRules(task=self.task, exclusion_s=self.exclusion_s, horizons_s=tuple(self.horizons_s),
                          interictal_min_s=self.interictal_min_s, postictal_s=self.postictal_s, early_s=self.early_s)

    def outputs(self) -> list[str]:
        return self.rules().outputs()

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
    spec, base = load_typed_file(DatasetSpec, path)

    def res(s: str) -> str:
        return resolve_path(base, s)

    spec = dataclasses.replace(
        spec, recordings=tuple(res(r) for r in spec.recordings),
        device=res(spec.device) if spec.device else None,
        annotations={k: res(v) for k, v in spec.annotations.items()},
    )
    spec.check(str(path))
    return spec
