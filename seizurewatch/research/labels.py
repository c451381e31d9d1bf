"""Window labelling arithmetic: which windows are ictal, preictal, interictal, or dropped.

A recording may be stitched from pieces ("join" annotations mark the seams, as in the
dog1 EDFs). Continuity matters: a window that straddles a seam is dropped, and the
exclusion margin around a seizure does not extend across a seam (the signal on the other
side was recorded hours away).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from seizurewatch.errors import DataError
from seizurewatch.schedule import WindowSchedule
from seizurewatch.types import Annotation

SEIZURE_WORDS = ("seiz", "ictal", "sz")
JOIN_WORDS = ("join", "discontinuity", "gap")


def is_seizure(desc: str) -> bool:
    d = desc.strip().lower()
    return any(w in d for w in SEIZURE_WORDS) and "interictal" not in d and "preictal" not in d


def is_join(desc: str) -> bool:
    return desc.strip().lower() in JOIN_WORDS


@dataclass(frozen=True)
class Seizure:
    onset: float
    end: float


def seizures_of(anns: tuple[Annotation, ...] | list[Annotation], duration: float, where: str) -> list[Seizure]:
    """Seizure spans, checked: inside the recording, not overlapping each other."""
    out = sorted((Seizure(a.onset, a.end) for a in anns if is_seizure(a.description)), key=lambda s: s.onset)
    for s in out:
        if s.onset < 0 or s.onset >= duration or s.end > duration + 1.0:
            raise DataError(f"{where}: seizure annotation {s.onset:g}-{s.end:g} s lies outside the recording "
                            f"(0-{duration:g} s)")
        if s.end <= s.onset:
            raise DataError(f"{where}: seizure annotation at {s.onset:g} s has no duration")
    for a, b in zip(out, out[1:]):
        if b.onset < a.end:
            raise DataError(f"{where}: overlapping seizure annotations {a.onset:g}-{a.end:g} s and "
                            f"{b.onset:g}-{b.end:g} s")
    return out


def joins_of(anns: tuple[Annotation, ...] | list[Annotation]) -> list[float]:
    return sorted({a.onset for a in anns if is_join(a.description)})


@dataclass(frozen=True)
class LabelRules:
    """How windows are labelled: the one declaration of these fields. A dataset spec and a training recipe
    are label rules with more beside them (they subclass this; their YAML keys sit at the top level)."""

    task: Literal["detection", "prediction"] = "detection"
    exclusion_s: float = 300.0  # detection: interictal windows at least this far from a seizure
    horizons_s: tuple[float, ...] = (600.0, 3600.0)  # prediction: preictal = within H before onset
    interictal_min_s: float = 4 * 3600.0  # prediction: interictal at least this far from any seizure
    postictal_s: float = 600.0  # prediction: dropped after a seizure
    early_s: float | None = None  # detection: a second output "early", the window ends <= early_s after onset

    def label_fields(self) -> dict[str, Any]:
        """The label rules' fields and values, to build another object that embeds them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(LabelRules)}

    def rules(self) -> LabelRules:
        """Only the label rules (of a spec or a recipe that embeds them)."""
        return LabelRules(**{**self.label_fields(), "horizons_s": tuple(self.horizons_s)})

    def outputs(self) -> list[str]:
        if self.task == "detection":
            return ["seizure"] if self.early_s is None else ["seizure", "early"]
        return [f"preictal_{h:g}s" for h in self.horizons_s]


def is_early(latency: float | None, early_s: float) -> bool:
    """The 2014 Kaggle detection challenge's early class: an ictal clip whose ``latency`` (seconds since
    the seizure's onset) is at most ``early_s`` (15 s there: ``latency <= 15``). The one definition, for
    building datasets and for scoring clips."""
    return latency is not None and latency <= early_s + 1e-9


def _continuous(a: float, b: float, joins: list[float]) -> bool:
    """True if no seam lies in [a, b]: the signal at a and at b belong to one piece."""
    return not any(a <= j <= b for j in joins)


def label_window(
    start: float, end: float, seizures: list[Seizure], joins: list[float], rules: LabelRules
) -> tuple[int, ...] | None:
    """Labels for window [start, end): detection -> (ictal,) or, with ``early_s``, (ictal, early)
    (early: the window ends at most ``early_s`` after the onset, the challenge's early class),
    prediction -> one flag per horizon.
    None means the window is dropped (straddles a seam, partly ictal, too near a seizure...)."""
    if any(start < j < end for j in joins):
        return None
    if rules.task == "detection":
        neg: tuple[int, ...] = (0,) if rules.early_s is None else (0, 0)
        for s in seizures:
            if s.onset <= start and end <= s.end:
                return (1,) if rules.early_s is None else (1, int(end <= s.onset + rules.early_s + 1e-9))
        for s in seizures:
            if start < s.end and s.onset < end:
                return None  # partly ictal
            if end <= s.onset and s.onset - end < rules.exclusion_s and _continuous(end, s.onset, joins):
                return None
            if s.end <= start and start - s.end < rules.exclusion_s and _continuous(s.end, start, joins):
                return None
        return neg
    flags = tuple(
        int(any(end <= s.onset and s.onset - start <= h and _continuous(end, s.onset, joins) for s in seizures))
        for h in rules.horizons_s
    )
    if any(flags):
        return flags
    for s in seizures:
        if start < s.end and s.onset < end:
            return None
        if s.end <= start and start - s.end < rules.postictal_s and _continuous(s.end, start, joins):
            return None
        if end <= s.onset and s.onset - end < rules.interictal_min_s and _continuous(end, s.onset, joins):
            return None
        if s.end <= start and start - s.end < rules.interictal_min_s and _continuous(s.end, start, joins):
            return None
    return tuple(0 for _ in rules.horizons_s)


def window_starts(duration: float, schedule: WindowSchedule, stride_ictal_s: float,
                  seizures: list[Seizure]) -> list[float]:
    """Window start times on ``schedule``, and ``stride_ictal_s`` apart inside seizures (oversampling)."""
    if schedule.window > duration:
        return []
    starts = {round(t, 6) for t in schedule.starts(duration)}
    ictal = schedule.every(stride_ictal_s)
    for s in seizures:
        starts.update(round(t, 6) for t in ictal.starts(min(s.end, duration), start=s.onset))
    return sorted(starts)


def drop_reason(start: float, end: float, seizures: list[Seizure], joins: list[float], rules: LabelRules) -> str:
    """Why ``label_window`` dropped the window [start, end) (for the dataset manifest)."""
    if any(start < j < end for j in joins):
        return "seam"
    if any(start < s.end and s.onset < end for s in seizures):
        return "partly_ictal" if rules.task == "detection" else "ictal"
    if rules.task == "detection":
        return "exclusion"
    if any(s.end <= start and start - s.end < rules.postictal_s and _continuous(s.end, start, joins)
           for s in seizures):
        return "postictal"
    return "near_seizure"  # prediction: beyond every horizon but closer than interictal_min_s


def seizure_index(start: float, end: float, seizures: list[Seizure], joins: list[float], rules: LabelRules,
                  positive: bool) -> int | None:
    """Which seizure a window belongs to: the one it lies in (detection) or leads to (prediction),
    for positive windows; the nearest seizure in time for negative ones (None without seizures)."""
    if not seizures:
        return None
    if positive:
        for k, s in enumerate(seizures):
            if rules.task == "detection" and s.onset <= start and end <= s.end:
                return k
            if rules.task == "prediction" and end <= s.onset and _continuous(end, s.onset, joins):
                return k
    dist = [max(s.onset - end, start - s.end, 0.0) for s in seizures]
    return int(min(range(len(seizures)), key=lambda k: dist[k]))
