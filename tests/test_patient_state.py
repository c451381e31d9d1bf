"""The retained state a station sees: every state the patient passed through, alarm above fault."""

from conftest import MODEL

from seizurewatch.config import DecisionConfig
from seizurewatch.events import Event
from seizurewatch.modelfile import load_model
from seizurewatch.patient import PatientState


def _state() -> tuple[PatientState, list[tuple[str, float, str | None, list[str]]]]:
    ps = PatientState("bed1", load_model(MODEL).meta, DecisionConfig(k=3, n=4))  # not the rule the model stores
    seen: list[tuple[str, float, str | None, list[str]]] = []
    ps.on_state.append(lambda state, info: seen.append((state, info["t"], info["alarm_id"], info["faults"])))
    ps.stats.windows = 1
    ps.update_state(10.0)
    return ps, seen


def test_an_alarm_that_starts_and_ends_inside_one_block_is_still_shown():
    ps, seen = _state()
    # a fast replay decides a whole block at once: by the time the state is read the alarm is over
    events = [Event("alarm", "start", "a1", 67.0, 0.7, 0.5), Event("alarm", "update", "a1", 72.0, 0.8, 0.5),
              Event("alarm", "end", "a1", 116.0, 0.3, 0.5)]
    ps.update_state(116.0, events)
    assert [(s, t, a) for s, t, a, _ in seen] == [("ok", 10.0, None), ("alarm", 67.0, "a1"), ("ok", 116.0, None)]


def test_an_alarm_outranks_a_fault_and_the_fault_travels_with_it():
    ps, seen = _state()
    events = ps.faults.set("clipping", True, 65.0, ("c005",))
    for t in (65.0, 66.0, 67.0):  # three hops over the threshold: k of n (3 of 4) starts the alarm
        events += ps.decision.update(t, 0.99)
    assert [e.kind for e in events] == ["fault", "alarm"]
    ps.update_state(67.0, events)
    alarm_id = ps.decision.alarm_id
    assert seen[1:] == [("fault", 65.0, None, ["clipping"]), ("alarm", 67.0, alarm_id, ["clipping"])]
    ps.update_state(80.0, ps.faults.set("clipping", False, 80.0))
    assert seen[-1] == ("alarm", 67.0, alarm_id, ["clipping"])  # still an alarm: nothing new published
    ps.update_state(90.0, [ps.decision.end(90.0, 0.2)])
    assert seen[-1] == ("ok", 90.0, None, [])
