"""One patient's monitoring state: what the windows decided (alarm decision, faults, context, stats) and
the state the outside world sees. ``StreamPipeline`` owns the loop (source, backpressure, batches in
flight) and hands each decided batch here; ``Service``, ``STATUS=`` and the watchdog read a snapshot."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seizurewatch.config import DecisionConfig
from seizurewatch.decision import AlarmDecision, FaultTracker, StreamClock
from seizurewatch.escalation import WHOLE_STREAM_FAULTS, fault_escalates
from seizurewatch.events import Context, Event
from seizurewatch.modelfile import output_problem
from seizurewatch.modelmeta import ModelMeta
from seizurewatch.risk import PatientRisk
from seizurewatch.types import Window

log = logging.getLogger(__name__)


@dataclass
class StreamStats:
    samples: int = 0
    windows: int = 0
    last_probability: float | None = None
    last_t: float = 0.0  # stream time of the latest decided window
    last_window_t: float = 0.0  # of the latest window at all (unusable ones too: a flat signal is never decided)
    first_sample_at: float | None = None
    last_sample_wall: float | None = None  # time.time() when the latest samples arrived ("last data" counts from it)
    last_progress: float = field(default_factory=time.monotonic)
    probabilities: list[tuple[float, float]] = field(default_factory=list)  # (t, p) when recording
    outputs: list[np.ndarray] = field(default_factory=list)  # every output of each window, when recording


@dataclass(frozen=True)
class PatientSnapshot:
    """What a reader (status line, watchdog, metrics) may know of a patient at one moment."""

    patient: str
    state: str
    faults: tuple[str, ...]
    probability: float | None
    windows: int
    last_progress: float
    waiting: str | None
    threshold: float
    alarm_id: str | None


class PatientState:
    def __init__(self, patient: str, meta: ModelMeta, decision: DecisionConfig, record_probabilities: bool = False,
                 metrics: Any = None) -> None:
        self.patient = patient
        self.meta = meta
        self.record = record_probabilities
        self.metrics = metrics
        self.clock = StreamClock()  # one clock for the alarm decision and the faults of this stream
        self.faults = FaultTracker(self.clock)
        self.stats = StreamStats()
        self.state = "unknown"
        self._shown_alarm: str | None = None  # what the last published state said
        self._shown_faults: dict[str, tuple[str, ...]] = {}  # type -> channels
        self._shown_blind: str | None = None  # why the last published state had no probability
        self.on_state: list[Callable[[str, dict[str, Any]], None]] = []
        self.on_risk: list[Callable[[dict[str, Any]], None]] = []  # the retained risk message, on a level change
        self.acks: Callable[[], list[dict[str, Any]]] = list  # the latest acks the state lists (the daemon's book)
        decision = decision.with_rule(meta.rule, meta.hop_s, meta.early_gain)
        self.decision = AlarmDecision(decision, self._threshold(decision), self.clock)
        self.context = self._context(decision)
        self.detection = meta.detection_output  # the output alarms follow (None: a prediction-only model)
        self.early = meta.outputs.index("early") if "early" in meta.outputs else None  # a second trigger's input
        self.risk = PatientRisk(meta, decision)  # the prediction outputs' levels (empty: none)

    def _threshold(self, decision: DecisionConfig) -> float:
        return decision.threshold if decision.threshold is not None else self.meta.threshold

    def _context(self, decision: DecisionConfig) -> Context:
        policy = "config override" if decision.threshold is not None else self.meta.threshold_policy
        return Context(self.patient, self.meta.name, self.meta.weights_sha256, policy)

    def reconfigure(self, decision: DecisionConfig) -> None:
        decision = decision.with_rule(self.meta.rule, self.meta.hop_s, self.meta.early_gain)
        self.context = self._context(decision)
        self.decision.reconfigure(decision, self._threshold(decision))
        self.risk.reconfigure(decision)

    def reset_history(self) -> None:
        """After a gap or a lost stream the recent windows say nothing about the next ones."""
        self.decision.reset_history()
        self.risk.reset()

    def snapshot(self, waiting: str | None = None) -> PatientSnapshot:
        return PatientSnapshot(self.patient, self.state, tuple(sorted(self.faults.active)),
                               self.stats.last_probability, self.stats.windows, self.stats.last_progress, waiting,
                               self.decision.threshold, self.decision.alarm_id)

    # ----- deciding ----------------------------------------------------------------------
    def decide(self, usable: list[Window], probs: np.ndarray) -> list[Event]:
        """The model's answer for ``usable`` windows -> events. What is not a probability is never decided on."""
        expected = (len(usable), len(self.meta.outputs))
        if probs.shape != expected:  # not one row per window: nothing of this batch can be decided on
            problem = f"returns shape {probs.shape}, expected {expected}"
            log.error("model output unusable", extra={"patient": self.patient, "problem": problem})
            return self.faults.set("model_error", True, usable[-1].t_end, detail=f"the model {problem}")
        # A row that is not a probability (NaN, infinite, outside [0, 1]) is "cannot tell" for its window:
        # a fault while it lasts, never a value the decision sees.
        valid = np.isfinite(probs).all(axis=1) & (probs >= 0).all(axis=1) & (probs <= 1).all(axis=1)
        events: list[Event] = []
        for w, row, ok in zip(usable, probs, valid):
            if not ok:
                if "model_error" not in self.faults.active:
                    log.error("model output is not a probability", extra={"patient": self.patient,
                                                                        "output": row.tolist()[:4]})
                events += self.faults.set("model_error", True, w.t_end,
                                          detail=f"the model {output_problem(row[None, :], 1, len(row))}")
                continue
            events += self.faults.set("model_error", False, w.t_end)
            self.stats.windows += 1
            self.stats.last_t = w.t_end
            events += self.risk.update(w.t_end, row)
            if self.record:  # every window's outputs; p: the detection output (prediction-only model: the first)
                self.stats.probabilities.append((w.t_end, float(row[self.detection or 0])))
                self.stats.outputs.append(row)
            if self.detection is None:
                continue  # no alarms: nothing here is a seizure probability
            p = float(row[self.detection])
            self.stats.last_probability = p
            events.extend(self.decision.update(w.t_end, p, None if self.early is None else float(row[self.early])))
            if self.metrics:
                self.metrics.window(self.patient, p, w.wall_received)
        self.stats.last_progress = time.monotonic()
        return events

    def quality_events(self, verdict: Any, t: float) -> list[Event]:
        events: list[Event] = []
        for ftype, channels in verdict.faults.items():
            events += self.faults.set(ftype, bool(channels), t, tuple(channels),
                                      detail=f"{ftype} on {', '.join(channels)}" if channels else "")
        return events

    @staticmethod
    def _state_of(alarm: bool, faults: bool, windows: int) -> str:
        # an alarm outranks a fault: a seizure often clips the amplifier, and "cannot tell" must not
        # hide "seizure" from the station; the faults still travel in the same state message
        return "alarm" if alarm else "fault" if faults else "ok" if windows else "unknown"

    def cannot_tell(self, faults: dict[str, tuple[str, ...]] | None = None) -> str | None:
        """Why the daemon has no current probability (``faults``: type -> channels; the active ones when None):
        the stream is lost, the model fails, or a signal fault covers at least half of the model's channels (the
        rule that escalates a fault). None when the latest probability is current."""
        if faults is None:
            faults = {k: f.channels for k, f in self.faults.active.items()}
        n = len(self.meta.preprocess.channels)
        for ftype in WHOLE_STREAM_FAULTS:
            if ftype in faults:
                return ftype.replace("_", " ")
        for ftype, channels in sorted(faults.items()):
            if fault_escalates(ftype, channels, n):
                return f"{ftype} on {len(channels)} of {n} channels"
        return None

    def state_payload(self, t: float, faults: dict[str, tuple[str, ...]] | None = None,
                      alarm_id: str | None = None, state: str | None = None) -> dict[str, Any]:
        """The retained state (docs/alarm.schema.json, ``state``) as of stream time ``t``; by default as it is now.
        The one builder of that message: every state the daemon publishes is made here (the MQTT link only adds
        the ``epoch`` and ``seq`` of the last event the broker accepted before it).
        While the daemon cannot tell, ``probability`` is null and ``probability_unavailable`` says why: the
        last number is never shown as if it were live. ``last_sample_wall``: when the latest EEG arrived. ``acks``:
        the latest answers (``self.acks``); ``model``: the model in force (the station shows it per bed: a day-one
        pretrained model or the patient's own)."""
        if faults is None:
            faults, alarm_id = {k: f.channels for k, f in self.faults.active.items()}, self.decision.alarm_id
        why = self.cannot_tell(faults)
        info: dict[str, Any] = {
            "state": state or self.state, "patient": self.patient, "t": round(t, 3), "wall_time": round(time.time(), 3),
            "probability": None if why else self.stats.last_probability, "faults": sorted(faults),
            "alarm_id": alarm_id, "last_sample_wall": self.stats.last_sample_wall,
            "threshold": round(self.decision.threshold, 5)}
        if why:
            info["probability_unavailable"] = why
        info["acks"] = self.acks()
        info["model"] = {"name": self.context.model_name, "weights_sha256": self.context.model_sha256}
        return info

    def current_state(self) -> dict[str, Any]:
        """The retained state as of now (the latest window's time)."""
        return self.state_payload(max(self.stats.last_t, self.stats.last_window_t))

    def update_state(self, t: float, events: list[Event] | None = None) -> None:
        """Publish every state the patient passed through: ``events`` (just emitted, in order) are
        walked first, so an alarm that started and ended inside one block (a fast replay decides
        30 s at a time) still shows as ``alarm`` between them; then the state as it is now. A risk level
        change republishes the retained risk message."""
        if events and any(ev.kind == "risk" for ev in events):
            message = self.risk.message(self.context)
            for cb in self.on_risk:
                cb(message)
        if events:
            alarm_id = self._shown_alarm
            faults = dict(self._shown_faults)
            for ev in events:
                if ev.kind == "alarm" and ev.event in ("start", "end"):
                    alarm_id = ev.alarm_id if ev.event == "start" else None
                elif ev.kind == "fault" and ev.event in ("start", "update", "end") and ev.fault_type:
                    if ev.event == "end":
                        faults.pop(ev.fault_type, None)
                    else:
                        faults[ev.fault_type] = ev.channels
                else:
                    continue
                self._show(self._state_of(alarm_id is not None, bool(faults), self.stats.windows), ev.t, faults,
                           alarm_id)
        self._show(self._state_of(self.decision.active, bool(self.faults.active), self.stats.windows), t,
                   {k: f.channels for k, f in self.faults.active.items()}, self.decision.alarm_id)

    def _show(self, state: str, t: float, faults: dict[str, tuple[str, ...]], alarm_id: str | None) -> None:
        self._shown_alarm, self._shown_faults = alarm_id, faults
        blind = self.cannot_tell(faults)
        if (state, blind) == (self.state, self._shown_blind):
            return
        self.state, self._shown_blind = state, blind
        info = self.state_payload(t, faults, alarm_id, state)
        for cb in self.on_state:
            cb(state, info)
