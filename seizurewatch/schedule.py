"""The one window schedule: a window of ``window`` seconds every ``hop`` seconds.

Everything that cuts a signal into windows takes one and asks it, so no two places can drift apart:
the model file states one (``ModelMeta.schedule``: its ``window_s``/``hop_s``); the daemon's ring buffer
and its streaming quality checks both take that one (their windows pair one to one by construction);
the dataset planner takes the spec's (its stride is the hop, ``stride_ictal_s`` a denser one inside
seizures); the threshold replays label a replayed window from its end time with it. (A decision rule in
seconds becomes hops of the model's ``hop_s`` in ``config.rule_in_hops``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class WindowSchedule:
    """A window of ``window`` s every ``hop`` s (both > 0)."""

    window: float
    hop: float

    def __post_init__(self) -> None:
        if not (self.window > 0 and self.hop > 0):  # also refuses NaN
            raise ValueError(f"window and hop must be > 0 s, got {self.window!r} / {self.hop!r}")

    def every(self, hop: float) -> WindowSchedule:
        """The same windows at another hop (e.g. the dataset's denser stride inside seizures)."""
        return replace(self, hop=hop)

    # ----- in samples: the ring buffer, the quality checks, the dataset's windows -----------------
    def window_samples(self, rate: float) -> int:
        return int(round(self.window * rate))

    def hop_samples(self, rate: float) -> int:
        return int(round(self.hop * rate))

    def samples(self, rate: float) -> tuple[int, int]:
        """(window, hop) in samples at ``rate``; ValueError when either is under one sample."""
        window, hop = self.window_samples(rate), self.hop_samples(rate)
        if window < 1 or hop < 1:
            raise ValueError(f"window and hop must be >= 1 sample: {self.window:g} s / {self.hop:g} s at "
                             f"{rate:g} Hz are {window} / {hop} samples")
        return window, hop

    @staticmethod
    def sample_at(t: float, rate: float) -> int:
        """The index of the sample at ``t`` s (a window starting there starts at this sample)."""
        return int(round(t * rate))

    def fits(self, start: float, n_samples: int, rate: float) -> bool:
        """Whether the window starting at ``start`` s ends within ``n_samples`` samples."""
        return self.sample_at(start, rate) + self.window_samples(rate) <= n_samples

    # ----- in seconds: the dataset planner, the threshold replays --------------------------------
    def starts(self, stop: float, start: float = 0.0) -> Iterator[float]:
        """Start times ``start``, ``start + hop``, ... of the windows that end by ``stop`` (s), accumulated
        hop by hop as the dataset layer always has (its window starts are on disk)."""
        t = start
        while t + self.window <= stop + 1e-9:
            yield t
            t += self.hop

    def span(self, t_end: float) -> tuple[float, float]:
        """(start, end) of the window that ended at ``t_end`` (a replayed window is known by its end)."""
        return t_end - self.window, t_end
