"""One event-scoring rule (``seizurewatch.scoring``): replay's summary line, the demo's summary and
``evaluate`` give the same verdict and latency on the same recording."""

from __future__ import annotations

import asyncio
import io

import pytest
from conftest import DOG1, ROOT, run_cli

from seizurewatch.demo import DemoResult, run_demo
from seizurewatch.replay import ReplayOptions, replay
from seizurewatch.research.evaluate import EvaluateOptions, evaluate
from seizurewatch.research.parallel import Compute
from seizurewatch.resources import default_model_path, demo_recording_path
from seizurewatch.scoring import SZCORE, EventRules, payload_spans, verdicts


def test_the_rule_alarm_starts_from_5_s_before_onset_to_60_s_after_the_end_and_is_on_at_onset():
    seizures = [(100.0, 130.0)]
    v = verdicts(seizures, [(96.0, 140.0)])
    assert v.seizures[0].alarm == 96.0 and v.seizures[0].latency == -4.0 and v.unrelated == 0
    # Starting 6 s before the onset: an alarm a seizure happened to follow, not the seizure's.
    v = verdicts(seizures, [(94.0, 140.0)])
    assert v.seizures[0].alarm is None and v.unrelated == 1
    # Over before the onset: unrelated, even though it starts within the 5 s.
    assert verdicts(seizures, [(96.0, 99.0)]).unrelated == 1
    # Late but within 60 s of the end: the seizure's; later: unrelated.
    assert verdicts(seizures, [(185.0, 190.0)]).seizures[0].latency == 85.0
    assert verdicts(seizures, [(191.0, 195.0)]).unrelated == 1
    # The first start counts; a second start for the same seizure is not a false alarm.
    v = verdicts(seizures, [(104.0, 106.0), (110.0, 120.0)])
    assert v.seizures[0].latency == 4.0 and v.unrelated == 0 and v.alarmed == 1
    assert verdicts(seizures, [(94.0, 140.0)], EventRules(alarm_before_onset_s=10.0)).alarmed == 1


def test_the_summary_line():
    v = verdicts([(60.0, 101.0)], [(66.75, 102.5), (200.0, 210.0)])
    assert v.summary() == ("summary: seizure annotated at 60 s (until 101 s), alarm raised at 67 s (+7 s); "
                           "false alarms 1")
    assert verdicts([(60.0, 101.0)], [(57.0, 70.0)]).summary().startswith(
        "summary: seizure annotated at 60 s (until 101 s), alarm raised at 57 s (-3 s)")
    assert verdicts([(60.0, 101.0)], []).summary().endswith("(until 101 s): MISSED; false alarms 0")
    assert verdicts([], []).summary() == "summary: no seizure annotated; false alarms 0"


def test_payload_spans_join_starts_to_ends_and_an_open_alarm_lasts_to_the_end():
    events = [{"kind": "alarm", "event": "start", "alarm_id": "a", "t": 5.0},
              {"kind": "fault", "event": "start", "alarm_id": "f", "t": 6.0},
              {"kind": "alarm", "event": "update", "alarm_id": "a", "t": 7.0},
              {"kind": "alarm", "event": "end", "alarm_id": "a", "t": 9.0},
              {"kind": "alarm", "event": "start", "alarm_id": "b", "t": 20.0}]
    assert payload_spans(events, 30.0) == [(5.0, 9.0), (20.0, 30.0)]
    assert payload_spans(events)[1] == (20.0, float("inf"))


@pytest.mark.needs_data
def test_replay_demo_and_evaluate_agree_on_every_recording(tmp_path):
    recordings = [str(demo_recording_path())] + [str(DOG1 / f"dog1_rec0{k}.edf") for k in range(1, 5)]
    model = str(default_model_path())
    metrics = evaluate(model, recordings, tmp_path / "eval", EvaluateOptions(compute=Compute(workers=1)))
    scored = metrics["events"]["recordings"]
    assert metrics["events"]["rules"]["alarm_before_onset_s"] == SZCORE.alarm_before_onset_s
    for rec, ev in zip(recordings, scored):
        res = replay(rec, ReplayOptions(model=model))
        v = res.verdicts()
        demo = DemoResult([(s.onset, s.end) for s in v.seizures], events=list(res.events))
        assert demo.summary() == v.summary()  # the demo's verdict is replay's
        assert len(v.seizures) == ev["seizures"] == 1, rec
        assert v.alarmed == ev["alarmed"] and v.unrelated == ev["unrelated_alarms"], (rec, v, ev)
        assert v.latencies == pytest.approx(ev["latency_s"], abs=0.01), (rec, v, ev)
        flat = [x for span in ev["alarms"] for x in span]
        assert [x for span in res.alarms for x in span] == pytest.approx(flat, abs=0.01)  # the same alarms


@pytest.mark.needs_data
def test_the_cli_summary_and_the_demo_print_the_rule_s_verdict(tmp_path):
    rec = str(demo_recording_path())
    expected = replay(rec).verdicts().summary()
    r = run_cli("replay", rec)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith(expected + "; ")
    out = io.StringIO()
    shown = asyncio.run(run_demo(edf=rec, speed="max", out=out))
    assert out.getvalue().strip().splitlines()[-1] == expected == shown.summary()
    assert (ROOT / "README.md").read_text(encoding="utf-8").count(expected) == 1  # the README shows what it prints
