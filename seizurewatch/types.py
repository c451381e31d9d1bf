"""Small typed objects the pipeline stages hand to each other."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Annotation:
    """An annotated span of a recording (EDF+ TAL, CSV, summary file...)."""

    onset: float  # seconds from the start of the recording
    duration: float  # seconds; 0 for instants such as "join"
    description: str

    @property
    def end(self) -> float:
        return self.onset + max(self.duration, 0.0)


@dataclass(frozen=True)
class Block:
    """A chunk of samples from a source: (channels, samples) float32 in physical units."""

    data: np.ndarray
    rate: float
    t0: float  # stream time of the first sample, seconds
    channels: tuple[str, ...]
    wall_received: float = 0.0  # time.monotonic() when the source got it (latency metrics)

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[1])


@dataclass(frozen=True)
class Gap:
    """The source saw a discontinuity: windows must not be stitched across it."""

    t: float
    seconds: float
    reason: str = "stream_gap"


@dataclass(frozen=True)
class Window:
    """One analysis window handed to the model."""

    data: np.ndarray  # (channels, samples) float32
    rate: float
    t_start: float
    t_end: float  # stream time just after the last sample: the moment the window is complete
    index: int
    wall_received: float = 0.0


@dataclass(frozen=True)
class Scored:
    """A window's model output."""

    t: float  # = window.t_end
    probability: float
    wall_received: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamStatus:
    """The source lost (``up=False``) or regained (``up=True``) its stream."""

    up: bool
    t: float
    detail: str = ""


@dataclass(frozen=True)
class RateStatus:
    """A live source's effective rate, from its timestamps, left (``ok=False``) or came back within tolerance
    of its nominal rate (a stream that declares 200 Hz and delivers 400 samples/s is not 200 Hz EEG)."""

    ok: bool
    t: float
    nominal: float
    effective: float
