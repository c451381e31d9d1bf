"""Acknowledgements and escalation: the ack payload's validation, the ack book, the escalation clock,
and the daemon end to end against a real Mosquitto (bad acks logged and ignored, a good one journaled,
published, in the retained state, escalation before it and none after)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiomqtt
import jsonschema
import pytest
from alarm_support import validate
from conftest import DOG1, MODEL, ROOT

from seizurewatch.alarms.ack import MAX_ACK_BYTES, Ack, AckBook, AckError, parse_ack
from seizurewatch.alarms.journal import Journal
from seizurewatch.escalation import Escalator, fault_escalates

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

ACK_SCHEMA = json.loads((ROOT / "docs" / "ack.schema.json").read_text())
GOOD = {"alarm_id": "0123456789abcdef", "action": "false_alarm", "by": "nurse A", "note": "artefact, chewing"}


def test_good_ack_parses_and_matches_the_documented_schema():
    jsonschema.validate(GOOD, ACK_SCHEMA)
    ack = parse_ack(json.dumps(GOOD).encode())
    assert ack == Ack("0123456789abcdef", "false_alarm", "nurse A", "artefact, chewing")
    assert parse_ack(ack.to_json()) == ack


@pytest.mark.parametrize("raw, why", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (json.dumps({**GOOD, "action": "mute"}).encode(), "action"),
    (json.dumps({**GOOD, "alarm_id": "xyz"}).encode(), "alarm_id"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "by"}).encode(), "by"),
    (json.dumps({**GOOD, "by": "   "}).encode(), "by"),
    (json.dumps({**GOOD, "patient": "bed2"}).encode(), "unknown key"),
    (json.dumps({**GOOD, "note": "x" * 501}).encode(), "note"),
    (b"{" + b" " * (1 << 20) + b"}", "larger than"),
])
def test_bad_ack_payloads_are_refused_with_a_reason(raw, why):
    with pytest.raises(AckError, match=why):
        parse_ack(raw)
    if len(raw) <= MAX_ACK_BYTES:
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return
        assert not jsonschema.Draft202012Validator(ACK_SCHEMA).is_valid(body), "schema and parser disagree"


def _start(patient: str, alarm_id: str, kind: str = "alarm", **extra) -> dict:
    return {"patient": patient, "alarm_id": alarm_id, "kind": kind, "event": "start", "t": 10.0, "started_t": 10.0,
            "peak_probability": 0.7, **extra}


def test_ack_book_honours_only_its_patients_and_their_alarms(caplog):
    book = AckBook(["bed1", "bed2"])
    book.observe(_start("bed1", "a" * 16))
    book.observe(_start("bed9", "b" * 16))  # not ours: never known
    raw = Ack("a" * 16, "ack", "nurse A").to_json()
    with caplog.at_level(logging.WARNING):
        assert book.accept("bed2", raw) is None, "bed1's alarm acknowledged on bed2's topic"
        assert book.accept("bed9", Ack("b" * 16, "ack", "x").to_json()) is None
        assert book.accept("bed1", Ack("c" * 16, "ack", "x").to_json()) is None
    assert "not an alarm or fault of patient bed2" in caplog.text
    assert "not a patient this daemon monitors" in caplog.text
    got = book.accept("bed1", raw)
    assert got is not None and got[1].alarm_id == "a" * 16 and got[1].kind == "alarm"
    assert book.accept("bed1", raw) is None, "a retransmitted ack journaled twice"
    assert book.accept("bed1", Ack("a" * 16, "false_alarm", "nurse A").to_json()) is not None  # a second opinion
    assert book.refused == 4
    book.observe({"patient": "bed1", "alarm_id": "a" * 16, "kind": "alarm", "event": "end", "t": 50.0})
    assert not book.issued["bed1"]["a" * 16].open
    assert book.accept("bed1", Ack("a" * 16, "confirmed", "Dr B").to_json()) is not None, "ended alarms can be marked"


def test_escalation_levels_every_interval_until_answered():
    esc = Escalator(60.0, {"bed1": 16})
    esc.observe(_start("bed1", "a" * 16), now=1000.0)
    assert esc.due(1059.0) == []
    assert [d.level for d in esc.due(1060.0)] == [1]
    assert esc.due(1100.0) == []
    assert [d.level for d in esc.due(1185.0)] == [2, 3], "a late tick still issues every level, in order"
    esc.observe({"patient": "bed1", "alarm_id": "a" * 16, "kind": "alarm", "event": "ack"}, now=1190.0)
    assert esc.due(5000.0) == []


def test_escalation_stops_at_the_end_and_can_be_off():
    esc = Escalator(10.0)
    esc.observe(_start("bed1", "a" * 16), now=0.0)
    esc.observe({"patient": "bed1", "alarm_id": "a" * 16, "kind": "alarm", "event": "end"}, now=5.0)
    assert esc.due(100.0) == []
    off = Escalator(0.0)
    off.observe(_start("bed1", "a" * 16), now=0.0)
    assert not off.enabled and off.due(1e6) == []


def test_lasting_faults_escalate_only_when_the_daemon_cannot_tell():
    assert fault_escalates("stream_lost", (), 16) and fault_escalates("model_error", (), 16)
    assert fault_escalates("flatline", [f"c{i:03d}" for i in range(8)], 16)
    assert not fault_escalates("flatline", ["c001", "c002"], 16)
    esc = Escalator(30.0, {"bed1": 16})
    esc.observe(_start("bed1", "a" * 16, kind="fault", fault_type="clipping", channels=["c001"]), now=0.0)
    assert esc.due(1000.0) == []
    wide = [f"c{i:03d}" for i in range(1, 12)]
    esc.observe({**_start("bed1", "a" * 16, kind="fault", fault_type="clipping", channels=wide), "event": "update"},
                now=1000.0)
    assert [(d.kind, d.level) for d in esc.due(1030.0)] == [("fault", 1)], "the clock starts when it widens"
    esc.observe(_start("bed1", "b" * 16, kind="fault", fault_type="stream_lost"), now=0.0)
    assert [d.alarm_id for d in esc.due(1031.0)] == ["b" * 16] * 34


# ------------------------------------------------------------------------------------------------ end to end

def _config(tmp_path: Path, url: str, escalate_after_s: float = 1.0):
    from seizurewatch.config import load_config

    path = tmp_path / "bedside.yaml"
    path.write_text(
        "streams:\n"
        f"  - patient: bed1\n    source: {{kind: edf, path: {DOG1 / 'dog1_rec04.edf'}, speed: 5}}\n"
        f"  - patient: bed2\n    source: {{kind: edf, path: {DOG1 / 'dog1_rec01.edf'}, speed: 10}}\n"
        f"model: {{path: {MODEL}}}\n"
        f"decision: {{escalate_after_s: {escalate_after_s}}}\n"
        f"mqtt: {{url: {url}, state_every_s: 0.5}}\n"
        f"outbox: {{path: {tmp_path / 'outbox.sqlite3'}}}\n")
    return load_config(path)


def journal(path: Path, patient: str) -> list[dict]:
    with Journal.read(path) as j:
        return [json.loads(r.payload) for r in j.rows(patient, by_seq=True)]


@pytest.mark.slow
def test_daemon_journals_good_acks_ignores_bad_ones_and_escalates_until_answered(mosquitto, tmp_path, caplog):
    from seizurewatch.daemon import Daemon

    cfg = _config(tmp_path, mosquitto.url)

    async def main() -> tuple[list[dict], dict, str]:
        seen: list[dict] = []
        state: dict = {}
        alarm_id = ""
        daemon = Daemon(cfg)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="nurse") as c:
            await c.subscribe("seizurewatch/#", qos=1)
            runner = asyncio.create_task(daemon.run())
            async with asyncio.timeout(120):
                async for m in c.messages:
                    topic = str(m.topic)
                    if topic == "seizurewatch/bed1/state":
                        state = json.loads(m.payload)
                    elif topic == "seizurewatch/bed1/alarm":
                        ev = json.loads(m.payload)
                        seen.append(ev)
                    else:
                        continue
                    if any(a["by"] == "nurse A" for a in state.get("acks", [])) and \
                            any(e["event"] == "ack" for e in seen):
                        break
                    if topic != "seizurewatch/bed1/alarm":
                        continue
                    if ev["event"] == "escalate" and ev["level"] == 2 and not alarm_id:
                        alarm_id = ev["alarm_id"]
                        good = Ack(alarm_id, "false_alarm", "nurse A", "chewing artefact").to_json()
                        for topic_, raw in [
                            ("seizurewatch/bed1/ack", Ack("f" * 16, "ack", "x").to_json()),  # wrong alarm id
                            ("seizurewatch/bed1/ack", good.replace(b"false_alarm", b"silence")),  # unknown action
                            ("seizurewatch/bed2/ack", good),  # bed1's alarm on another patient's topic
                            ("seizurewatch/bed9/ack", good),  # a patient this daemon does not monitor
                            ("seizurewatch/bed1/ack", b"{\"alarm_id\": "),  # malformed JSON
                            ("seizurewatch/bed1/ack", b"x" * (1 << 20)),  # 1 MB
                            ("seizurewatch/bed1/ack", good),
                            ("seizurewatch/bed1/ack", good),  # retransmitted: journaled once
                        ]:
                            await c.publish(topic_, raw, qos=1)
            await runner
        metrics = daemon.metrics.registry.get_sample_value
        counts.update(acks=metrics("seizurewatch_acks_total", {"patient": "bed1", "action": "false_alarm"}),
                      ignored=metrics("seizurewatch_acks_ignored_total", {"patient": "bed1"}),
                      escalated=metrics("seizurewatch_escalations_total", {"patient": "bed1", "kind": "alarm"}))
        return seen, state, alarm_id

    counts: dict[str, float | None] = {}
    with caplog.at_level(logging.WARNING, logger="seizurewatch"):
        seen, state, alarm_id = asyncio.run(main())
    rows = journal(tmp_path / "outbox.sqlite3", "bed1")
    ours = [r for r in rows if r["alarm_id"] == alarm_id]
    phases = [r["event"] for r in ours]
    assert phases[0] == "start" and phases[-1] == "end", phases
    acks = [r for r in ours if r["event"] == "ack"]
    assert len(acks) == 1, f"expected exactly the one good ack journaled, got {acks}"
    assert acks[0]["action"] == "false_alarm" and acks[0]["by"] == "nurse A" and acks[0]["note"] == "chewing artefact"
    levels = [r["level"] for r in ours if r["event"] == "escalate"]
    assert levels[:2] == [1, 2] and levels == list(range(1, len(levels) + 1))
    assert all(r["seq"] < acks[0]["seq"] for r in ours if r["event"] == "escalate"), "escalated after the ack"
    assert not [r for r in journal(tmp_path / "outbox.sqlite3", "bed2") if r["event"] == "ack"]
    for r in rows:
        validate(r)
    assert [e["seq"] for e in seen if e["event"] == "ack"] == [acks[0]["seq"]], "ack event not on the broker"
    assert state["acks"][-1] == {**state["acks"][-1], "alarm_id": alarm_id, "action": "false_alarm", "by": "nurse A"}
    validate(state)
    # Prometheus: one ack; wrong id, unknown action, malformed, 1 MB, duplicate refused on bed1's topic
    assert counts["acks"] == 1 and counts["ignored"] == 5 and (counts["escalated"] or 0) >= 2, counts
    for why in ("is not an alarm or fault of patient bed1", "action: expected one of", "of patient bed2",
                "not JSON", "larger than 4096", "duplicate"):
        assert why in caplog.text, f"no log line for a bad ack ({why})"


def _flat_copy(src: Path, dest: Path, flat: int) -> Path:
    import numpy as np
    import pyedflib
    from edf_writer import write_edf

    with pyedflib.EdfReader(str(src)) as r:
        labels = r.getSignalLabels()
        rate = int(r.getSampleFrequency(0))
        data = np.vstack([r.readSignal(i) for i in range(len(labels))])
    data[:flat] = 0.0  # electrodes off
    return write_edf(dest, data, rate, labels, plus=False)


@pytest.mark.slow
def test_a_lasting_fault_on_most_channels_escalates_one_on_a_single_channel_does_not(mosquitto, tmp_path):
    from seizurewatch.config import load_config
    from seizurewatch.daemon import Daemon

    most = _flat_copy(DOG1 / "dog1_rec02.edf", tmp_path / "most_flat.edf", flat=12)
    one = _flat_copy(DOG1 / "dog1_rec02.edf", tmp_path / "one_flat.edf", flat=1)
    path = tmp_path / "ward.yaml"
    path.write_text(
        "streams:\n"
        f"  - patient: bed1\n    source: {{kind: edf, path: {most}, speed: 4}}\n"
        f"  - patient: bed2\n    source: {{kind: edf, path: {one}, speed: 4}}\n"
        f"model: {{path: {MODEL}}}\ndecision: {{escalate_after_s: 1}}\n"
        f"mqtt: {{url: {mosquitto.url}}}\noutbox: {{path: {tmp_path / 'outbox.sqlite3'}}}\n")
    cfg = load_config(path)

    async def main() -> None:
        daemon = Daemon(cfg)
        runner = asyncio.create_task(daemon.run())
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="pager") as c:
            await c.subscribe("seizurewatch/+/fault", qos=1)
            started: dict[str, float] = {}
            async with asyncio.timeout(120):
                async for m in c.messages:
                    ev = json.loads(m.payload)
                    if ev["event"] == "start" and ev["fault_type"] == "flatline":
                        started.setdefault(ev["patient"], asyncio.get_running_loop().time())
                    if ev["patient"] == "bed1" and ev["event"] == "escalate" and ev["level"] >= 2 and \
                            "bed2" in started and asyncio.get_running_loop().time() - started["bed2"] > 2.5:
                        break
        daemon.stop()
        await runner

    asyncio.run(main())
    bed1 = journal(tmp_path / "outbox.sqlite3", "bed1")
    esc = [r for r in bed1 if r["event"] == "escalate"]
    assert esc and esc[0]["kind"] == "fault" and esc[0]["fault_type"] == "flatline" and len(esc[0]["channels"]) >= 8
    assert [r["level"] for r in esc if r["alarm_id"] == esc[0]["alarm_id"]][:2] == [1, 2]
    bed2 = journal(tmp_path / "outbox.sqlite3", "bed2")
    assert any(r["event"] == "start" and r["fault_type"] == "flatline" for r in bed2)
    assert not [r for r in bed2 if r["event"] == "escalate"], "a one-channel flatline paged someone"
    for r in bed1 + bed2:
        validate(r)


def test_a_restarted_daemon_learns_earlier_alarms_and_acks_from_its_journal(tmp_path):
    from seizurewatch.alarms.outbox import Outbox

    path = tmp_path / "outbox.sqlite3"
    box = Outbox.open_sync(str(path))
    a, f = "a" * 16, "f" * 16
    box.append_sync("bed1", "seizurewatch/bed1/alarm", _start("bed1", a, wall_time=1.0))
    box.append_sync("bed1", "seizurewatch/bed1/alarm", {**_start("bed1", a), "event": "end", "t": 50.0})
    box.append_sync("bed1", "seizurewatch/bed1/fault", _start("bed1", f, kind="fault", fault_type="stream_lost"))
    box.append_sync("bed1", "seizurewatch/bed1/alarm", {**_start("bed1", a), "event": "ack", "action": "ack",
                                                        "by": "nurse A", "wall_time": 60.0})
    box.close_sync()
    book = AckBook(["bed1"])
    assert book.load(str(path)) == 4
    assert book.acknowledged("bed1", a) and not book.issued["bed1"][a].open
    assert book.acks_of("bed1") == [{"alarm_id": a, "kind": "alarm", "action": "ack", "by": "nurse A",
                                     "wall_time": 60.0}]
    assert book.accept("bed1", Ack(a, "ack", "nurse A").to_json()) is None, "journaled before the restart"
    assert book.accept("bed1", Ack(a, "false_alarm", "nurse A").to_json()) is not None, "a mark after a restart"
    assert book.accept("bed1", Ack(f, "ack", "tech").to_json()) is not None
    assert AckBook(["bed1"]).load(":memory:") == 0
    assert AckBook(["bed1"]).load(str(tmp_path / "missing.sqlite3")) == 0


def test_periodic_state_refreshes_never_push_real_changes_out_of_an_outage_backlog():
    from seizurewatch.alarms.mqtt import PatientLink
    from seizurewatch.alarms.outbox import Outbox
    from seizurewatch.config import MqttConfig

    link = PatientLink(MqttConfig(), Outbox.open_sync(":memory:"), "bed1")  # never connected: a long outage
    link.set_state({"state": "ok", "n": 0})
    for i in range(500):  # 1000 s of refreshes at state_every_s = 2
        link.refresh_state({"state": "ok", "n": i})
    link.set_state({"state": "alarm", "n": 500})
    for i in range(501, 1000):
        link.refresh_state({"state": "alarm", "n": i})
    queued = list(link._transitions)  # noqa: SLF001 - what will be published, in order
    assert [(q["state"], q["n"]) for q in queued] == [("ok", 0), ("ok", 499), ("alarm", 500), ("alarm", 999)]


def test_an_escalation_level_survives_a_restart():
    """#24: bed1's alarm reached level 2 unanswered and the daemon stopped (its end says why); the seizure
    goes on, so the first alarm after the restart escalates to level 3, not 1. An answered alarm, or one
    that ended by itself, carries nothing."""
    from seizurewatch.alarms.outbox import INTERRUPTED

    def night(patient: str, end: dict, acked: bool = False) -> list[dict]:
        base = {"kind": "alarm", "patient": patient, "alarm_id": f"{patient:0>16}"[-16:]}
        evs = [{**base, "event": "start"}, {**base, "event": "escalate", "level": 1},
               {**base, "event": "escalate", "level": 2}]
        if acked:
            evs.append({**base, "event": "ack", "action": "ack", "by": "n"})
        return [*evs, {**base, "event": "end", **end}]

    journal = (night("bed1", {"detail": "stream ended"}) + night("bed2", {"extra": {"end_reason": INTERRUPTED}})
               + night("bed3", {"detail": "stream ended"}, acked=True) + night("bed4", {}))
    esc = Escalator(60.0)
    assert esc.carry(journal, 1000.0) == {"bed1": 2, "bed2": 2}
    for p in ("bed1", "bed3", "bed4"):
        esc.observe({"kind": "alarm", "patient": p, "alarm_id": "f" * 16, "event": "start"}, 1010.0)
    assert esc.due(1069.0) == []
    assert [(d.patient, d.level) for d in esc.due(1070.0)] == [("bed1", 3), ("bed3", 1), ("bed4", 1)]
