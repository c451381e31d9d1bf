"""The one event-scoring rule: which alarm is a seizure's and which is a false alarm to the nurse.

``replay``'s summary line, the demo's summary and ``research.evaluate`` (and through it the threshold
choice and ``compare``) all call ``verdicts``, so the same recording gets the same verdict everywhere.
The rule (``EventRules``): SzCORE's event scoring (timescoring defaults, any overlap) for what counts as
overlap, plus what the nurse sees by alarm *starts*: a seizure is alarmed when an alarm starts between
``alarm_before_onset_s`` before its onset and ``tolerance_end_s`` after its end and is still on at the onset
(latency = that start - onset); every other alarm is unrelated (a false alarm to the nurse).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from timescoring.scoring import EventScoring


@dataclass(frozen=True)
class EventRules:
    """SzCORE event scoring (timescoring defaults), plus how early an alarm *start* may come and
    still be the nurse's alarm for a seizure (``alarm_before_onset_s``): SzCORE's 30 s allow for
    a late annotation when scoring overlap, but an alarm that starts 10 s before the onset on
    signal taken hours from any seizure (as in the Dog_1 files) is a false alarm that a seizure
    happened to follow, and choosing a threshold must not reward it as a fast detection."""

    tolerance_start_s: float = 30.0
    alarm_before_onset_s: float = 5.0
    tolerance_end_s: float = 60.0
    min_overlap: float = 0.0
    max_event_s: float = 300.0
    merge_within_s: float = 90.0

    def params(self) -> EventScoring.Parameters:
        from timescoring.scoring import EventScoring

        return EventScoring.Parameters(self.tolerance_start_s, self.tolerance_end_s, self.min_overlap,
                                       self.max_event_s, self.merge_within_s)

    def describe(self) -> dict[str, Any]:
        return {"any_overlap": self.min_overlap == 0, "tolerance_start_s": self.tolerance_start_s,
                "alarm_before_onset_s": self.alarm_before_onset_s,
                "tolerance_end_s": self.tolerance_end_s, "max_event_s": self.max_event_s,
                "merge_within_s": self.merge_within_s}


SZCORE = EventRules()


@dataclass(frozen=True)
class SeizureVerdict:
    """One annotated seizure and the first alarm that started for it (None: missed)."""

    onset: float
    end: float
    alarm: float | None

    @property
    def latency(self) -> float | None:
        return None if self.alarm is None else self.alarm - self.onset


@dataclass(frozen=True)
class Verdicts:
    """A recording's seizures as the nurse saw them, and the alarms that belonged to none."""

    seizures: tuple[SeizureVerdict, ...]
    unrelated: int

    @property
    def alarmed(self) -> int:
        return sum(1 for s in self.seizures if s.alarm is not None)

    @property
    def latencies(self) -> list[float]:
        return [s.latency for s in self.seizures if s.latency is not None]

    def summary(self) -> str:
        """The one-line verdict ``replay`` and the demo print."""
        parts = []
        for s in self.seizures:
            if s.alarm is not None:
                parts.append(f"seizure annotated at {s.onset:.0f} s (until {s.end:.0f} s), alarm raised at "
                             f"{s.alarm:.0f} s ({s.alarm - s.onset:+.0f} s)")
            else:
                parts.append(f"seizure annotated at {s.onset:.0f} s (until {s.end:.0f} s): MISSED")
        if not self.seizures:
            parts.append("no seizure annotated")
        parts.append(f"false alarms {self.unrelated}")
        return "summary: " + "; ".join(parts)


def verdicts(seizures: Sequence[tuple[float, float]], alarms: Iterable[tuple[float, float]],
             rules: EventRules = SZCORE) -> Verdicts:
    """Score alarm spans (start, end; one still on at the end ends with the recording) against the annotated
    ``seizures`` (onset, end) by the rule above."""
    spans = list(alarms)
    out, raised = [], set()
    for onset, end in seizures:
        hits = [a for a, b in spans if onset - rules.alarm_before_onset_s <= a <= end + rules.tolerance_end_s
                and b >= onset]
        out.append(SeizureVerdict(onset, end, min(hits) if hits else None))
        raised |= set(hits)
    return Verdicts(tuple(out), sum(1 for a, _ in spans if a not in raised))


def payload_spans(events: Iterable[dict[str, Any]], until: float = float("inf")) -> list[tuple[float, float]]:
    """(start, end) of each alarm in published payloads (``alarm_id`` joins a start to its end); one with no
    end yet lasts ``until``."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for e in events:
        if e.get("kind") == "alarm" and e.get("event") in ("start", "end"):
            (starts if e["event"] == "start" else ends)[e["alarm_id"]] = e["t"]
    return sorted((s, ends.get(a, max(until, s))) for a, s in starts.items())
