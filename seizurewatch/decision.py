"""From one probability per hop to alarm start / update / end events.

Smoothing: an alarm starts when at least ``k`` of the last ``n`` probabilities reach the
threshold (the config's k and n, else the rule the model file stores beside its threshold).
Hysteresis: it ends only after ``off_hops`` consecutive hops below ``threshold - hysteresis``.
Refractory: within ``refractory_s`` of an end, the same k-of-n
evidence no longer starts an alarm, so one event ringing around the threshold does not page
the nurse twice; but *stronger* evidence does: a start during the refractory period goes out
when at least ``k`` of the last ``n`` probabilities exceed the peak probability of the alarm
that just ended (the start event's ``detail`` says so). A false alarm therefore never hides a
seizure that the model sees more clearly than it saw the false alarm.
The same class scores replays offline, so evaluation sees what the nurse would have seen.

Times: every event of one stream is stamped by that stream's ``StreamClock``, which never goes backwards.
The stages report times from different points of the same stream (a window's end, the moment an LSL
inlet noticed the loss, the last sample seen at shutdown); stamped through one clock, an end is never
before its start (``t >= started_t``, ``duration_s >= 0``) whatever order those reports come in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from seizurewatch.config import DecisionConfig
from seizurewatch.events import Event, new_id


class StreamClock:
    """One stream's time as its events see it: the latest stream time any stage reported, never earlier."""

    def __init__(self) -> None:
        self.now = float("-inf")

    def stamp(self, t: float) -> float:
        """The time of an event reported at ``t``: ``t``, or the stream's latest time if that is later."""
        self.now = max(self.now, float(t))
        return self.now


class AlarmDecision:
    def __init__(self, cfg: DecisionConfig, threshold: float, clock: StreamClock | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or StreamClock()
        self.k, self.n = cfg.rule  # a config without k/n (no model to ask): the default rule
        self.threshold = threshold
        self.history: deque[float] = deque(maxlen=self.n)  # the last n probabilities
        self.alarm_id: str | None = None
        self.started_t = 0.0
        self.peak = 0.0
        self.below = 0
        self.last_update_t = 0.0
        self.refractory_until = float("-inf")
        self.ended_peak = 0.0  # peak probability of the alarm whose refractory period runs

    @property
    def active(self) -> bool:
        return self.alarm_id is not None

    @property
    def off_threshold(self) -> float:
        return max(self.threshold - self.cfg.hysteresis, 0.0)

    def reconfigure(self, cfg: DecisionConfig, threshold: float) -> None:
        """New parameters (SIGHUP); the current alarm, if any, carries on."""
        self.cfg, self.threshold = cfg, threshold
        self.k, self.n = cfg.rule
        self.history = deque(self.history, maxlen=self.n)

    def reset_history(self) -> None:
        """After a gap the recent hops say nothing about the next ones."""
        self.history.clear()

    def _k_over(self, level: float, strict: bool = False) -> bool:
        """At least k of the last n probabilities reach ``level`` (exceed it when ``strict``)."""
        return sum(q > level if strict else q >= level for q in self.history) >= self.k

    def update(self, t: float, p: float, early: float | None = None) -> list[Event]:
        """One hop: ``p`` the detection probability, ``early`` the model's early output (a second trigger
        when the config has an ``early_gain``: the hop counts max(p, early_gain x early), at most 1)."""
        t = self.clock.stamp(t)
        if self.cfg.early_gain and early is not None:
            p = max(p, min(1.0, self.cfg.early_gain * early))
        self.history.append(p)
        if self.alarm_id is None:
            if not self._k_over(self.threshold):
                return []
            detail = ""
            if t < self.refractory_until:
                if not self._k_over(self.ended_peak, strict=True):
                    return []
                detail = (f"during the refractory period: {self.k} of {self.n} above the ended "
                          f"alarm's peak {self.ended_peak:.3f}")
            self.alarm_id = new_id()
            self.started_t = self.last_update_t = t
            self.peak = p
            self.below = 0
            return [Event("alarm", "start", self.alarm_id, t, p, self.threshold, started_t=t,
                          peak_probability=self.peak, detail=detail)]
        self.peak = max(self.peak, p)
        self.below = self.below + 1 if p < self.off_threshold else 0
        if self.below >= self.cfg.off_hops:
            return [self.end(t, p)]
        if t - self.last_update_t >= self.cfg.update_every_s:
            self.last_update_t = t
            return [
                Event("alarm", "update", self.alarm_id, t, p, self.threshold,
                      started_t=self.started_t, peak_probability=self.peak)
            ]
        return []

    def end(self, t: float, p: float | None, detail: str = "") -> Event:
        assert self.alarm_id is not None
        t = self.clock.stamp(t)
        ev = Event("alarm", "end", self.alarm_id, t, p, self.threshold,
                   started_t=self.started_t, peak_probability=self.peak, detail=detail)
        self.alarm_id = None
        self.history.clear()
        self.refractory_until = t + self.cfg.refractory_s
        self.ended_peak = self.peak
        return ev


@dataclass
class _ActiveFault:
    alarm_id: str
    started_t: float
    channels: tuple[str, ...]


class FaultTracker:
    """Start/end events for conditions that mean 'cannot tell', distinct from 'no seizure'."""

    def __init__(self, clock: StreamClock | None = None) -> None:
        self.active: dict[str, _ActiveFault] = {}
        self.clock = clock or StreamClock()

    def set(self, fault_type: str, on: bool, t: float, channels: tuple[str, ...] = (), detail: str = "") -> list[Event]:
        cur = self.active.get(fault_type)
        if (on and cur is not None and channels == cur.channels) or (not on and cur is None):
            return []  # nothing changes: the clock is not moved by a report that says nothing
        t = self.clock.stamp(t)
        if on and cur is None:
            fid = new_id()
            self.active[fault_type] = _ActiveFault(fid, t, channels)
            return [Event("fault", "start", fid, t, fault_type=fault_type, channels=channels, detail=detail,
                          started_t=t)]
        if on and cur is not None and channels != cur.channels:
            cur.channels = channels
            return [Event("fault", "update", cur.alarm_id, t, fault_type=fault_type, channels=channels,
                          detail=detail, started_t=cur.started_t)]
        if not on and cur is not None:
            del self.active[fault_type]
            return [Event("fault", "end", cur.alarm_id, t, fault_type=fault_type, channels=cur.channels,
                          detail=detail, started_t=cur.started_t)]
        return []

    def instant(self, fault_type: str, t: float, detail: str, seconds: float = 0.0) -> list[Event]:
        """A fault with no duration of its own (a gap): start and end at once, ``seconds`` long (ending at ``t``)."""
        t = self.clock.stamp(t)
        seconds = max(float(seconds), 0.0)
        fid = new_id()
        return [
            Event("fault", "start", fid, t, fault_type=fault_type, detail=detail, started_t=t - seconds),
            Event("fault", "end", fid, t, fault_type=fault_type, detail=detail, started_t=t - seconds),
        ]
