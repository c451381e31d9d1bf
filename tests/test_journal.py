"""Issue #28: the journal has one reader (``alarms.journal.Journal``) beside its writer (``Outbox``), and an alarm
has one daemon-side record (``alarms.record.AlarmRecord``) that acks, escalation and recovery update."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import pytest
from conftest import MODEL, ROOT

from seizurewatch.alarms.ack import Ack, AckBook
from seizurewatch.alarms.journal import Journal, JournalError
from seizurewatch.alarms.outbox import INTERRUPTED, Outbox
from seizurewatch.alarms.record import AlarmBook
from seizurewatch.escalation import Escalator
from seizurewatch.research.marks import export_marks

A, B = "a" * 16, "b" * 16
TOPIC = "seizurewatch/bed1/alarm"


def _alarm(event: str, alarm_id: str = A, t: float = 10.0, **extra) -> dict:
    return {"kind": "alarm", "event": event, "patient": "bed1", "alarm_id": alarm_id, "t": t, "started_t": 10.0,
            "wall_time": 1.7e9 + t, "peak_probability": 0.8, "threshold": 0.5, **extra}


# ----- one reader ---------------------------------------------------------------------------------
def test_no_module_outside_the_journals_owners_reads_its_tables():
    """The journal's tables are read only by the modules that own its schema (alarms/journal.py and the
    outbox's parts); the tests read it through Journal too. (Writes in tests simulate a foreign tool.)"""
    tables = "|".join(("events", "eeg", "meta", "sequences"))
    read = re.compile(rf"\bFROM\s+({tables})\b|sqlite3\.connect\(f?\"file:")  # SQL keywords in capitals
    owners = {"journal.py", "journalfile.py", "outbox.py", "outbox_write.py", "outbox_delivery.py",
              "outbox_recovery.py"}
    offenders = []
    for path in [*(ROOT / "seizurewatch").rglob("*.py"), *(ROOT / "tests").glob("*.py"),
                 *(ROOT / "bench").glob("*.py")]:
        if path.parent.name == "alarms" and path.name in owners or path.name == Path(__file__).name:
            continue
        if read.search(path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_acks_and_labels_are_read_through_the_journal_beside_a_running_writer(tmp_path):
    """A daemon holds the journal (locked, writing) while a restarted ack book and the label export read it:
    the marks, the ack list of the state and the EEG all come through Journal."""
    path = tmp_path / "outbox.sqlite3"
    box = Outbox.open_sync(str(path))
    try:
        box.append_sync("bed1", TOPIC, _alarm("start"))
        box.append_sync("bed1", TOPIC, _alarm("end", t=40.0))
        box.append_sync("bed1", TOPIC, _alarm("ack", t=41.0, action="false_alarm", by="nurse A", note="chewing"))
        box.append_sync("bed1", TOPIC, _alarm("start", B, t=90.0))  # still open
        import asyncio

        asyncio.run(box.save_eeg("bed1", A, {"alarm_id": A, "rate": 10.0}))
        book = AckBook(["bed1"])
        assert book.load(str(path)) == 4
        rec = book.issued["bed1"][A]
        assert (rec.open, rec.acks, rec.started_t) == (False, [("false_alarm", "nurse A", "chewing")], 10.0)
        assert book.issued["bed1"][B].open and not book.acknowledged("bed1", B)
        assert book.acks_of("bed1") == [{"alarm_id": A, "kind": "alarm", "action": "false_alarm", "by": "nurse A",
                                         "wall_time": round(1.7e9 + 41.0, 3)}]
        assert book.accept("bed1", Ack(A, "false_alarm", "nurse A", "chewing").to_json()) is None  # journaled
        summary = export_marks(path, tmp_path / "labels")
    finally:
        box.close_sync()
    rows = list(csv.reader((tmp_path / "labels" / "bed1.csv").open()))
    assert rows[0] == ["onset", "duration", "description"]
    assert ["0.000", "40.000", "interictal: false alarm (marked by nurse A)"] in rows
    assert summary["false_alarm"] == 1 and [u["alarm_id"] for u in summary["unreviewed"]] == [B]
    assert json.loads((tmp_path / "labels" / "bed1.eeg.json").read_text()) == {A: {"alarm_id": A, "rate": 10.0}}


def test_the_reader_pages_counts_and_orders_like_the_writer(tmp_path):
    path = tmp_path / "j.sqlite3"
    box = Outbox.open_sync(str(path))
    box.append_many_sync("bed1", TOPIC, [_alarm("update", t=float(i)) for i in range(5)])
    box.append_sync("bed2", "seizurewatch/bed2/alarm", {**_alarm("start"), "patient": "bed2"})
    import asyncio

    page = asyncio.run(box.pending("bed1", after_id=0, limit=3))
    asyncio.run(box.mark_delivered([r.id for r in page]))
    with Journal.read(path) as j:
        assert j.undelivered() == 3 and j.undelivered("bed1") == 2
        assert [r.seq for r in j.rows("bed1", undelivered=True)] == [4, 5]
        assert [r.seq for r in j.rows("bed1", after_id=page[-1].id, limit=1)] == [4]
        assert [(r.seq, r.payload, r.delivered) for r in j.rows("bed1", by_seq=True)] == box.all_rows_sync("bed1")
        assert j.last_seqs() == {"bed1": 5, "bed2": 1}
        assert j.meta("journal_id") == box.journal_id
        assert all(p["epoch"] == box.epoch for p in j.payloads())
    box.close_sync()


def test_a_missing_or_foreign_file_is_one_journal_error(tmp_path):
    with pytest.raises(JournalError, match="journal not found"):
        with Journal.read(tmp_path / "nope.sqlite3"):
            pass
    (tmp_path / "x.sqlite3").write_bytes(b"not a database at all" * 100)
    with pytest.raises(JournalError, match="not a readable seizurewatch journal"):
        with Journal.read(tmp_path / "x.sqlite3") as j:
            j.rows()


# ----- one alarm record ---------------------------------------------------------------------------
def test_acks_and_escalation_update_one_record():
    """The ack book and the escalator are two views of the same AlarmRecord: the level the escalator raises
    is the record's, and the ack the book accepts stops the escalation."""
    alarms = AlarmBook(["bed1"])
    acks, esc = AckBook(["bed1"], alarms), Escalator(60.0, alarms=alarms)

    def journal(payload: dict, now: float) -> None:  # as Daemon._sink: the record, then its two views
        rec = alarms.observe(payload)
        acks.follow(rec, payload)
        esc.follow(rec, payload, now)

    journal(_alarm("start"), 0.0)
    rec = alarms.get("bed1", A)
    assert rec is not None and acks.issued["bed1"][A] is rec and esc.pending[("bed1", A)] is rec
    (due,) = esc.due(60.0)
    assert due.record is rec and rec.level == 1 and (due.patient, due.kind, due.level) == ("bed1", "alarm", 1)
    journal(_alarm("escalate", t=70.0, level=1), 60.0)
    assert rec.level == 1
    found = acks.accept("bed1", Ack(A, "ack", "nurse A").to_json())
    assert found is not None and found[1] is rec and rec.answered
    journal(_alarm("ack", action="ack", by="nurse A"), 61.0)
    assert esc.due(1000.0) == [] and rec.open
    journal(_alarm("end", t=80.0), 62.0)
    assert not rec.open and not rec.stopped and acks.acks_of("bed1")[0]["action"] == "ack"


def test_a_crash_during_an_escalated_alarm_is_ended_by_its_record_and_its_level_carried(tmp_path):
    """Recovery ends the alarm the crash left open (the record's interrupted end, journaled at the next open);
    the restarted daemon's book reads it back through Journal and carries the level to the next alarm."""
    path = str(tmp_path / "j.sqlite3")
    box = Outbox.open_sync(path)
    box.append_sync("bed1", TOPIC, _alarm("start"))
    box.append_sync("bed1", TOPIC, _alarm("escalate", t=70.0, level=1))
    box.append_sync("bed1", TOPIC, _alarm("escalate", t=130.0, level=2))
    box.close_sync()  # no end: the daemon was killed
    box = Outbox.open_sync(path)
    assert box.closed_at_open == 1
    end = json.loads(box.all_rows_sync("bed1")[-1][1])
    box.close_sync()
    assert end["event"] == "end" and end["extra"]["end_reason"] == INTERRUPTED and end["t"] == 10.0
    assert end["peak_probability"] == 0.8 and end["seq"] == 4
    alarms = AlarmBook(["bed1"])
    journaled: list[dict] = []
    AckBook(["bed1"], alarms).load(path, also=journaled.append)
    rec = alarms.get("bed1", A)
    assert rec is not None and not rec.open and rec.stopped and rec.level == 2 and not rec.answered
    esc = Escalator(60.0, alarms=alarms)
    assert esc.carry(journaled, time.monotonic()) == {"bed1": 2}


# ----- one builder of the retained state ----------------------------------------------------------
def test_the_retained_state_is_built_in_one_place_and_published_as_built():
    from seizurewatch.alarms.mqtt import PatientLink
    from seizurewatch.config import DecisionConfig, MqttConfig
    from seizurewatch.modelfile import load_model
    from seizurewatch.patient import PatientState

    ps = PatientState("bed1", load_model(MODEL).meta, DecisionConfig())
    acks = [{"alarm_id": A, "kind": "alarm", "action": "ack", "by": "nurse A", "wall_time": 1.0}]
    ps.acks = lambda: list(acks)
    ps.faults.set("stream_lost", True, 5.0)
    state = ps.current_state()
    assert list(state) == ["state", "patient", "t", "wall_time", "probability", "faults", "alarm_id",
                           "last_sample_wall", "threshold", "probability_unavailable", "acks", "model"]
    assert state["probability"] is None and state["probability_unavailable"] == "stream lost"
    assert state["acks"] == acks and state["model"] == {"name": ps.context.model_name,
                                                        "weights_sha256": ps.context.model_sha256}
    link = PatientLink(MqttConfig(), Outbox.open_sync(":memory:"), "bed1")
    link.set_state(state)
    assert link._transitions[-1] is state  # noqa: SLF001 - the link adds nothing but epoch/seq when it sends
