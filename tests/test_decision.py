from hypothesis import given, settings
from hypothesis import strategies as st

from seizurewatch.config import DecisionConfig
from seizurewatch.decision import AlarmDecision, FaultTracker


def run(probs, **kw):
    d = AlarmDecision(DecisionConfig(**kw), threshold=0.5)
    events = []
    for i, p in enumerate(probs):
        events += d.update(float(i), p)
    return events


def test_k_of_n_smoothing():
    assert run([0.9, 0.1, 0.9, 0.1, 0.1], k=3, n=4) == []  # 2 of 4 never reaches 3
    ev = run([0.9, 0.1, 0.9, 0.9], k=3, n=4)
    assert [(e.event, e.t) for e in ev] == [("start", 3.0)]


def test_hysteresis_keeps_alarm_through_dips_above_off_threshold():
    probs = [0.9] * 3 + [0.45] * 10 + [0.1] * 3
    ev = run(probs, k=3, n=3, hysteresis=0.1, off_hops=3, update_every_s=100)
    assert [(e.event, e.t) for e in ev] == [("start", 2.0), ("end", 15.0)]
    assert ev[1].alarm_id == ev[0].alarm_id and ev[1].started_t == 2.0 and ev[1].peak_probability == 0.9


def test_refractory_blocks_restart():
    probs = [0.9] * 3 + [0.1] * 2 + [0.9] * 5
    ev = run(probs, k=1, n=1, off_hops=2, refractory_s=4, update_every_s=100)
    starts = [e.t for e in ev if e.event == "start"]
    assert starts == [0.0, 8.0]  # end at 4 -> no start before t=8


def test_updates_while_active():
    ev = run([0.9] * 12, k=1, n=1, update_every_s=5)
    assert [e.event for e in ev] == ["start", "update", "update"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), max_size=60), st.integers(1, 4), st.integers(0, 3), st.integers(1, 4))
def test_lifecycle_is_well_formed(probs, k, extra, off):
    ev = run(probs, k=k, n=k + extra, off_hops=off, update_every_s=3)
    active = None
    for e in ev:
        if e.event == "start":
            assert active is None
            active = e.alarm_id
        else:
            assert e.alarm_id == active
            if e.event == "end":
                active = None


def test_fault_tracker_start_update_end():
    ft = FaultTracker()
    assert [e.event for e in ft.set("flatline", True, 1.0, ("c1",))] == ["start"]
    assert ft.set("flatline", True, 2.0, ("c1",)) == []
    assert [e.event for e in ft.set("flatline", True, 3.0, ("c1", "c2"))] == ["update"]
    (end,) = ft.set("flatline", False, 4.0)
    assert end.event == "end" and end.started_t == 1.0
