"""Risk levels per horizon: from a prediction model's outputs to the retained ``risk`` message and
``risk`` events (docs/risk.schema.json).

Each prediction output (``modelfile.RiskOutput``: a horizon, an ``elevated`` and a ``high``
threshold chosen on held-out windows) gets one ``RiskTracker``. Risk is slow, so the level follows
the *median* probability of the windows of the last ``decision.risk_span_s`` seconds, at least
``RISK_MIN_WINDOWS`` of them: one window's blip never moves a median of three or more, so it is
never a level change. Levels rise as soon as the median reaches a threshold and fall only when it
drops ``decision.risk_hysteresis`` below the threshold of the level it leaves, so a median hovering
on a threshold does not flicker. A level change is an ``Event`` (kind ``risk``), journaled and
published through the outbox like an alarm; the retained message carries every horizon's
smoothed probability, level and the stream time it holds since.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from typing import Any

from seizurewatch.config import DecisionConfig
from seizurewatch.events import Context, Event, RiskChange, new_id
from seizurewatch.modelmeta import ModelMeta, RiskOutput

LEVELS = ("low", "elevated", "high")  # in rising order; "unknown" until RISK_MIN_WINDOWS windows were seen
RISK_MIN_WINDOWS = 3
SCHEMA = "seizurewatch/risk/1"


def span_windows(span_s: float, hop_s: float) -> int:
    """Windows the median is taken over: the span's hops, at least RISK_MIN_WINDOWS."""
    return max(RISK_MIN_WINDOWS, math.ceil(span_s / hop_s - 1e-9))


class RiskTracker:
    """One horizon's smoothed probability and level."""

    def __init__(self, out: RiskOutput, span_s: float, hysteresis: float, hop_s: float) -> None:
        self.out = out
        self.hop_s = hop_s
        self.hysteresis = hysteresis
        self.history: deque[float] = deque(maxlen=span_windows(span_s, hop_s))
        self.level = "unknown"
        self.since_t: float | None = None
        self.smoothed: float | None = None

    @property
    def thresholds(self) -> dict[str, float]:
        return {"elevated": self.out.elevated, "high": self.out.high}

    def reconfigure(self, span_s: float, hysteresis: float) -> None:
        self.hysteresis = hysteresis
        self.history = deque(self.history, maxlen=span_windows(span_s, self.hop_s))

    def reset(self) -> None:
        """After a gap the windows before it say nothing of the next ones; the level stands until the span
        has RISK_MIN_WINDOWS windows again."""
        self.history.clear()

    def target(self, m: float) -> str:
        """The level a median ``m`` means from the current level: up at once, down past the hysteresis."""
        rising = "high" if m >= self.out.high else "elevated" if m >= self.out.elevated else "low"
        if self.level == "unknown" or LEVELS.index(rising) >= LEVELS.index(self.level):
            return rising
        if self.level == "high" and m >= self.out.high - self.hysteresis:
            return "high"
        if self.level in ("high", "elevated") and m >= self.out.elevated - self.hysteresis:
            return "elevated"
        return "low"

    def update(self, t: float, p: float) -> Event | None:
        """One window's probability (ending at stream time ``t``); an event when the level changed."""
        self.history.append(p)
        if len(self.history) < RISK_MIN_WINDOWS:
            return None
        self.smoothed = float(statistics.median(self.history))
        new = self.target(self.smoothed)
        if new == self.level:
            return None
        previous, self.level, self.since_t = self.level, new, t
        change = RiskChange(self.out.name, self.out.horizon_s, new, previous, t, self.thresholds)
        return Event("risk", "change", new_id(), t, probability=self.smoothed, risk=change)

    def as_dict(self) -> dict[str, Any]:
        return {"output": self.out.name, "horizon_s": self.out.horizon_s,
                "probability": None if self.smoothed is None else round(self.smoothed, 5),
                "level": self.level, "since_t": None if self.since_t is None else round(self.since_t, 4),
                "thresholds": {k: round(v, 5) for k, v in self.thresholds.items()}}


class PatientRisk:
    """Every horizon of one patient; ``message`` is the retained ``<prefix>/<patient>/risk`` payload."""

    def __init__(self, meta: ModelMeta, decision: DecisionConfig) -> None:
        self.trackers = [RiskTracker(o, decision.risk_span_s, decision.risk_hysteresis, meta.hop_s)
                         for o in meta.risk_outputs]
        self.last_t = 0.0

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def update(self, t: float, row: Any) -> list[Event]:
        """A window's whole output row (every output of the model); events for the levels that changed."""
        self.last_t = t
        events = [tr.update(t, float(row[tr.out.index])) for tr in self.trackers]
        return [e for e in events if e is not None]

    def reset(self) -> None:
        for tr in self.trackers:
            tr.reset()

    def reconfigure(self, decision: DecisionConfig) -> None:
        for tr in self.trackers:
            tr.reconfigure(decision.risk_span_s, decision.risk_hysteresis)

    def message(self, ctx: Context, wall_time: float | None = None) -> dict[str, Any]:
        """The retained risk message (docs/risk.schema.json, ``risk``)."""
        return {"schema": SCHEMA, "patient": ctx.patient, "t": round(self.last_t, 4),
                "wall_time": round(time.time() if wall_time is None else wall_time, 4),
                "model": {"name": ctx.model_name, "weights_sha256": ctx.model_sha256},
                "horizons": [tr.as_dict() for tr in self.trackers]}
