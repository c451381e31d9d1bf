"""The SQLite journal: sequence numbers, paging, pruning, corruption, full or read-only disks."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alarm_support import daemon_config
from conftest import DOG1, mount_tmpfs, run_cli

from seizurewatch.alarms.journal import Journal
from seizurewatch.alarms.outbox import Outbox
from seizurewatch.errors import ConfigError

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

TOPIC = "seizurewatch/bed1/alarm"


def ev(i: int) -> dict:
    return {"kind": "alarm", "event": "update", "t": float(i)}


def test_seq_per_patient_strictly_increasing_and_survives_restart(tmp_path):
    path = str(tmp_path / "j.sqlite3")
    box = Outbox.open_sync(path)
    assert [box.append_sync("bed1", TOPIC, ev(i)) for i in range(3)] == [1, 2, 3]
    assert box.append_sync("bed2", "seizurewatch/bed2/alarm", ev(0)) == 1
    box.close_sync()
    box = Outbox.open_sync(path)
    assert box.append_sync("bed1", TOPIC, ev(3)) == 4
    rows = box.all_rows_sync("bed1")
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert json.loads(rows[-1][1]) == {**ev(3), "seq": 4, "epoch": box.epoch}
    assert box.epoch.endswith(".2")  # the second opening of this journal
    box.close_sync()


def test_a_batch_of_events_is_journaled_in_order_with_its_topics_in_one_transaction(tmp_path):
    import asyncio

    box = Outbox.open_sync(str(tmp_path / "j.sqlite3"))
    box.append_sync("bed1", TOPIC, ev(0))
    fault = "seizurewatch/bed1/fault"
    batch = [(fault, ev(1)), (TOPIC, ev(2)), (fault, ev(3))]

    async def journal() -> tuple[list[int], list]:
        seqs = await box.append_all("bed1", batch)
        return seqs, await box.pending("bed1")

    statements: list[str] = []
    box._db.set_trace_callback(statements.append)  # type: ignore[union-attr]  # what the journal runs
    seqs, pending = asyncio.run(journal())
    assert seqs == [2, 3, 4]
    assert [(r.seq, r.topic, json.loads(r.payload)["t"]) for r in pending] == [
        (1, TOPIC, 0.0), (2, fault, 1.0), (3, TOPIC, 2.0), (4, fault, 3.0)]
    assert sum(st.strip().upper() == "COMMIT" for st in statements) == 1  # one fsync'd commit for the three
    box.close_sync()


def test_journal_is_wal_with_full_sync(tmp_path):
    path = tmp_path / "j.sqlite3"
    Outbox.open_sync(str(path)).close_sync()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_pending_pages_oldest_first_and_mark_delivered(tmp_path):
    box = Outbox.open_sync(str(tmp_path / "j.sqlite3"))
    box.append_many_sync("bed1", TOPIC, [ev(i) for i in range(250)])
    box.append_sync("bed2", "seizurewatch/bed2/alarm", ev(0))

    import asyncio

    async def walk() -> list[int]:
        seqs, last = [], 0
        while rows := await box.pending("bed1", after_id=last, limit=100):
            assert len(rows) <= 100
            seqs += [r.seq for r in rows]
            last = rows[-1].id
        first = await box.pending("bed1", limit=10)
        await box.mark_delivered([r.id for r in first])
        return seqs

    assert asyncio.run(walk()) == list(range(1, 251))
    assert box.depth_sync("bed1") == 240
    assert box.depth_sync() == 241
    box.close_sync()


def test_prune_drops_only_old_delivered_rows_and_seq_never_rewinds(tmp_path):
    import asyncio

    box = Outbox.open_sync(str(tmp_path / "j.sqlite3"), keep_delivered_s=0.0)
    box.append_many_sync("bed1", TOPIC, [ev(i) for i in range(5)])

    async def deliver_three() -> None:
        rows = await box.pending("bed1", limit=3)
        await box.mark_delivered([r.id for r in rows])

    time.sleep(0.01)
    asyncio.run(deliver_three())  # the first delivery of a run also prunes
    assert [r[0] for r in box.all_rows_sync("bed1")] == [4, 5]  # undelivered kept
    asyncio.run(box.mark_delivered([r.id for r in asyncio.run(box.pending("bed1"))]))
    time.sleep(0.01)
    assert box.prune_sync() == 2
    assert box.all_rows_sync("bed1") == []
    box.close_sync()
    box = Outbox.open_sync(str(tmp_path / "j.sqlite3"))
    assert box.append_sync("bed1", TOPIC, ev(9)) == 6  # not 1: the sequence outlives its rows
    box.close_sync()


def test_keep_delivered_days_keeps_recent_rows(tmp_path):
    import asyncio

    box = Outbox.open_sync(str(tmp_path / "j.sqlite3"), keep_delivered_s=3600.0)
    box.append_many_sync("bed1", TOPIC, [ev(i) for i in range(3)])
    asyncio.run(box.mark_delivered([r.id for r in asyncio.run(box.pending("bed1"))]))
    assert box.prune_sync() == 0
    assert len(box.all_rows_sync("bed1")) == 3
    box.close_sync()


def test_corrupt_journal_is_quarantined_salvaged_and_seq_jumps_ahead(tmp_path, caplog):
    path = tmp_path / "j.sqlite3"
    box = Outbox.open_sync(str(path))
    box.append_many_sync("bed1", TOPIC, [ev(i) for i in range(400)])
    box.close_sync()
    raw = bytearray(path.read_bytes())
    # wreck pages in the middle of the file (leave the header: the damage is found by quick_check)
    for off in range(8192, min(len(raw), 8192 + 8192)):
        raw[off] = 0xA5
    path.write_bytes(bytes(raw))
    with caplog.at_level("ERROR"):
        box = Outbox.open_sync(str(path))
    assert box.quarantined and Path(box.quarantined).exists()
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    seq = box.append_sync("bed1", TOPIC, ev(999))
    assert seq > 400 and seq >= int(time.time() * 1000) - 60_000  # never collides with an old seq
    # salvaged rows (if any were readable) keep their seq and come out first
    salvaged = [r[0] for r in box.all_rows_sync("bed1")][:-1]
    assert salvaged == sorted(salvaged) and all(s <= 400 for s in salvaged)
    assert box.salvaged == len(salvaged)
    box.close_sync()


def test_garbage_file_is_quarantined_and_a_fresh_journal_works(tmp_path):
    path = tmp_path / "j.sqlite3"
    path.write_bytes(b"this is not a database at all" * 100)
    box = Outbox.open_sync(str(path))
    assert box.quarantined is not None
    assert Path(box.quarantined).read_bytes().startswith(b"this is not")
    assert box.append_sync("bed1", TOPIC, ev(0)) > 1_000_000_000
    box.close_sync()


def fill_disk(folder: Path) -> None:
    """Write zeros into ``folder`` until the file system refuses (ENOSPC)."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.fixture
def small_mount(tmp_path):
    """A tiny tmpfs (needs root); skipped where mounting is not allowed."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount_tmpfs(mnt, "size=64k")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_a_clear_error_at_start(small_mount):
    fill_disk(small_mount)
    with pytest.raises(ConfigError, match=r"outbox.path: .*(full|No space|free)"):
        Outbox.open_sync(str(small_mount / "j.sqlite3"))


def test_almost_full_disk_is_refused_at_start(small_mount):
    with pytest.raises(ConfigError, match=r"outbox.path: only \d+ KiB free"):
        Outbox.open_sync(str(small_mount / "j.sqlite3"))


def test_read_only_journal_folder_is_a_clear_error_at_start(small_mount):
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    with pytest.raises(ConfigError, match=r"outbox.path: cannot write in .*Read-only"):
        Outbox.open_sync(str(small_mount / "j.sqlite3"))


def test_daemon_exits_2_with_one_line_on_read_only_journal(small_mount, tmp_path):
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    cfg = daemon_config(tmp_path / "bed1.yaml", "mqtt://127.0.0.1:1", small_mount / "j.sqlite3")
    r = run_cli("run", "--config", str(cfg), timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("seizurewatch: error: outbox.path:") and "Read-only" in lines[-1]
    assert "Traceback" not in r.stderr


def test_daemon_continues_after_quarantining_a_corrupt_journal(tmp_path):
    """`replay --config` style: a corrupt journal at start is logged, moved aside, and the run goes on."""
    journal = tmp_path / "j.sqlite3"
    journal.write_bytes(os.urandom(64 * 1024))
    cfg = daemon_config(tmp_path / "bed1.yaml", "mqtt://127.0.0.1:1", journal, speed="max")

    import asyncio

    from seizurewatch.config import load_config
    from seizurewatch.daemon import Daemon, DaemonOptions

    async def main() -> Daemon:
        d = Daemon(load_config(cfg), DaemonOptions(publish=False))
        await d.prepare()
        await d.run()
        return d

    d = asyncio.run(main())
    assert d.outbox is not None and d.outbox.quarantined
    assert d.events_emitted > 0
    assert list(tmp_path.glob("j.sqlite3.corrupt-*"))
    box = Outbox.open_sync(str(journal))
    assert len(box.all_rows_sync("bed1")) == d.events_emitted
    box.close_sync()


def test_disk_filling_up_while_running_keeps_events_in_memory_then_journals_them(tmp_path, caplog):
    """No exception reaches the pipeline: the event gets its seq, is deliverable, and is journaled
    once space is back; sequence numbers are never issued twice."""
    import asyncio

    mnt = tmp_path / "mnt2"
    mnt.mkdir()
    mount_tmpfs(mnt, "size=2m")
    try:
        box = Outbox.open_sync(str(mnt / "j.sqlite3"))
        assert box.append_sync("bed1", TOPIC, ev(0)) == 1
        fill_disk(mnt)
        with caplog.at_level("ERROR"):
            seqs = [box.append_sync("bed1", TOPIC, {**ev(i), "pad": "x" * 2000}) for i in range(1, 40)]
        assert seqs == list(range(2, 41))
        assert any("keeping the event in memory" in r.getMessage() for r in caplog.records)
        assert box.depth_sync("bed1") == 40

        async def deliver_first_two() -> list[int]:
            rows = await box.pending("bed1", limit=2)
            await box.mark_delivered([r.id for r in rows])  # may fail to write: then they stay pending
            return [r.seq for r in await box.pending("bed1", limit=1000)]

        pending = asyncio.run(deliver_first_two())
        assert pending[-1] == 40 and pending == sorted(pending)
        (mnt / "filler").unlink()
        assert box.append_sync("bed1", TOPIC, ev(99)) == 41  # space is back: everything journaled
        on_disk = box.all_rows_sync("bed1")
        assert [r[0] for r in on_disk] == list(range(1, 42))
        assert on_disk[1][2] is not None  # seq 2 was delivered from memory; the journal says so
        box.close_sync()
        box = Outbox.open_sync(str(mnt / "j.sqlite3"))
        assert box.append_sync("bed1", TOPIC, ev(100)) == 42
        box.close_sync()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# ----- journal identity (#14.1) ---------------------------------------------------------------
def test_a_deleted_journal_never_reissues_an_identity_a_subscriber_has_seen(tmp_path):
    from seizurewatch.alarms.subscriber import Deduper

    path = tmp_path / "j.sqlite3"
    box = Outbox.open_sync(str(path))
    box.append_sync("bed1", TOPIC, ev(0))
    first = json.loads(box.all_rows_sync("bed1")[0][1])
    box.close_sync()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    box = Outbox.open_sync(str(path))
    assert box.append_sync("bed1", TOPIC, ev(1)) == 1  # seq starts again...
    second = json.loads(box.all_rows_sync("bed1")[0][1])
    box.close_sync()
    assert first["seq"] == second["seq"] == 1
    assert first["epoch"] != second["epoch"]  # ...under another journal id
    d = Deduper()
    assert d.fresh({**first, "patient": "bed1"}) and d.fresh({**second, "patient": "bed1"})


def test_numbers_issued_from_memory_on_a_full_disk_are_reissued_only_under_a_new_incarnation(tmp_path):
    """The disk stays full until the daemon exits: the events held in memory never reach the
    `sequences` table and the next run issues their numbers again, but in its own epoch."""
    mnt = tmp_path / "mnt3"
    mnt.mkdir()
    mount_tmpfs(mnt, "size=2m")
    try:
        box = Outbox.open_sync(str(mnt / "j.sqlite3"))
        assert box.append_sync("bed1", TOPIC, ev(0)) == 1
        fill_disk(mnt)
        assert [box.append_sync("bed1", TOPIC, {**ev(i), "pad": "x" * 2000}) for i in (1, 2)] == [2, 3]
        lost_epoch = box.epoch
        box.close_sync()  # disk still full: seq 2 and 3 never reach the journal
        (mnt / "filler").unlink()
        box = Outbox.open_sync(str(mnt / "j.sqlite3"))
        assert box.append_sync("bed1", TOPIC, ev(9)) == 2
        again = json.loads(box.all_rows_sync("bed1")[-1][1])
        box.close_sync()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    assert again["seq"] == 2 and again["epoch"] != lost_epoch
    assert again["epoch"].split(".")[0] == lost_epoch.split(".")[0]  # the same journal, a later incarnation


# ----- one journal, one daemon (#14.2) ----------------------------------------------------------
def test_a_second_instance_on_the_same_journal_refuses_to_start_naming_the_first_ones_pid(tmp_path):
    path = tmp_path / "j.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from seizurewatch.alarms.outbox import Outbox; "
         f"Outbox.open_sync({str(path)!r}); print('open', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(ConfigError) as exc:
            Outbox.open_sync(str(path))
        assert str(exc.value) == (f"outbox.path: journal {path} is in use by another seizurewatch (PID {holder.pid});"
                                  " stop that one, or give this one its own outbox.path")
        assert Outbox.check_path(str(path)) == holder.pid  # run --check looks without taking it
    finally:
        holder.kill()
        holder.wait()
    assert Outbox.check_path(str(path)) is None
    box = Outbox.open_sync(str(path))  # the kernel released the lock of the killed holder
    assert box.quarantined is None
    box.close_sync()


def test_a_sequence_number_already_in_the_journal_is_not_taken_for_corruption(tmp_path, caplog):
    path = tmp_path / "j.sqlite3"
    box = Outbox.open_sync(str(path))
    assert box.append_sync("bed1", TOPIC, ev(0)) == 1
    other = sqlite3.connect(path)  # another writer took seq 2 and 3 behind our back
    with other:
        other.execute("INSERT INTO events (patient, seq, topic, payload, created) VALUES "
                      "('bed1', 2, ?, '{}', 0), ('bed1', 3, ?, '{}', 0)", (TOPIC, TOPIC))
    other.close()
    with caplog.at_level("ERROR"):
        assert box.append_sync("bed1", TOPIC, ev(1)) == 4
    assert box.quarantined is None and not list(tmp_path.glob("*.corrupt-*"))
    assert [r[0] for r in box.all_rows_sync("bed1")] == [1, 2, 3, 4]
    assert any("already holds these sequence numbers" in r.getMessage() for r in caplog.records)
    box.close_sync()


# ----- alarms left open by a SIGKILL (#14.3) ----------------------------------------------------
def test_alarms_and_faults_left_open_are_ended_at_the_next_open_with_a_reason(tmp_path):
    from alarm_support import validate

    from seizurewatch.decision import FaultTracker
    from seizurewatch.events import Context, Event, to_payload

    ctx = Context("bed1", "dog1-convnet", "b" * 64, "youden")
    evs = [Event("alarm", "start", "00000000000000a1", 66.0, 0.59, 0.44, started_t=66.0, peak_probability=0.59),
           Event("alarm", "update", "00000000000000a1", 71.0, 0.64, 0.44, started_t=66.0, peak_probability=0.64),
           Event("alarm", "start", "00000000000000a0", 10.0, 0.5, 0.44, started_t=10.0, peak_probability=0.5),
           Event("alarm", "end", "00000000000000a0", 20.0, 0.2, 0.44, started_t=10.0, peak_probability=0.5)]
    evs += FaultTracker().set("flatline", True, 72.0, ("c003",), "flatline on c003")
    path = str(tmp_path / "j.sqlite3")
    box = Outbox.open_sync(path)
    for e in evs:
        box.append_sync("bed1", f"seizurewatch/bed1/{e.kind}", to_payload(e, ctx, seq=0, wall_time=1.7e9))
    box.close_sync()  # what a SIGKILL leaves: every event committed, no end for a1 nor the flatline
    box = Outbox.open_sync(path)
    assert box.closed_at_open == 2
    rows = [json.loads(r[1]) for r in box.all_rows_sync("bed1")]
    box.close_sync()
    ended = rows[len(evs):]
    assert [(e["kind"], e["event"], e["alarm_id"]) for e in ended] == [
        ("alarm", "end", "00000000000000a1"), ("fault", "end", evs[-1].alarm_id)]
    for e in ended:
        validate(e)
        assert "killed, crashed or power lost" in e["extra"]["end_reason"]
        assert e["epoch"] != rows[0]["epoch"]
    assert ended[0]["t"] == 71.0 and ended[0]["started_t"] == 66.0 and ended[0]["seq"] == len(evs) + 1
    box = Outbox.open_sync(path)  # nothing left open now
    assert box.closed_at_open == 0
    box.close_sync()


def test_an_open_alarm_whose_last_event_is_an_escalation_or_an_ack_is_ended_too(tmp_path):
    """#24: only start/update as the last event used to count as open; an alarm escalated or acknowledged
    before the crash stayed open for ever on every station. An ack after the end reopens nothing."""
    from alarm_support import validate

    from seizurewatch.events import Context, Event, to_payload

    ctx = Context("bed1", "dog1-convnet", "b" * 64, "youden")
    a = dict(started_t=66.0, peak_probability=0.7)
    evs = [Event("alarm", "start", "00000000000000a1", 66.0, 0.7, 0.44, **a),
           Event("alarm", "escalate", "00000000000000a1", 96.0, 0.7, 0.44, level=1, **a),
           Event("alarm", "start", "00000000000000a2", 66.0, 0.7, 0.44, **a),
           Event("alarm", "ack", "00000000000000a2", 80.0, 0.7, 0.44, action="ack", by="nurse", **a),
           Event("alarm", "start", "00000000000000a3", 10.0, 0.5, 0.44, started_t=10.0, peak_probability=0.5),
           Event("alarm", "end", "00000000000000a3", 20.0, 0.2, 0.44, started_t=10.0, peak_probability=0.5),
           Event("alarm", "ack", "00000000000000a3", 30.0, 0.2, 0.44, action="false_alarm", by="nurse",
                 started_t=10.0, peak_probability=0.5)]
    path = str(tmp_path / "j.sqlite3")
    box = Outbox.open_sync(path)
    for e in evs:
        box.append_sync("bed1", "seizurewatch/bed1/alarm", to_payload(e, ctx, seq=0, wall_time=1.7e9))
    box.close_sync()
    box = Outbox.open_sync(path)
    rows = [json.loads(r[1]) for r in box.all_rows_sync("bed1")]
    box.close_sync()
    ended = rows[len(evs):]
    assert [(e["event"], e["alarm_id"]) for e in ended] == [("end", "00000000000000a1"), ("end", "00000000000000a2")]
    for e in ended:
        validate(e)
        assert "level" not in e and "action" not in e and "by" not in e


# ----- permissions (#14.15) ---------------------------------------------------------------------
def test_journal_and_its_lock_are_private_or_group_readable_in_a_setgid_folder(tmp_path):
    import stat

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    old = os.umask(0o022)  # a shell's usual umask: files would be 0644
    try:
        box = Outbox.open_sync(str(tmp_path / "j.sqlite3"))
        box.append_sync("bed1", TOPIC, ev(0))
        assert mode(tmp_path / "j.sqlite3") == 0o600 and mode(tmp_path / "j.sqlite3.lock") == 0o600
        assert mode(tmp_path / "j.sqlite3-wal") == 0o600
        box.close_sync()
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o2750)
        box = Outbox.open_sync(str(shared / "j.sqlite3"))
        assert mode(shared / "j.sqlite3") == 0o640
        box.close_sync()
        loose = tmp_path / "loose.sqlite3"
        sqlite3.connect(loose).close()
        loose.chmod(0o644)
        Outbox.open_sync(str(loose)).close_sync()
        assert mode(loose) == 0o600
    finally:
        os.umask(old)


@pytest.mark.slow
def test_replay_with_a_config_journals_where_its_outbox_path_says(mosquitto, tmp_path):
    journal = tmp_path / "ward" / "replay-journal.sqlite3"
    cfg = daemon_config(tmp_path / "bed1.yaml", mosquitto.url, journal, speed="max")
    r = run_cli("replay", str(DOG1 / "dog1_rec04.edf"), "--config", str(cfg), "--jsonl", "--patient", "bed1")
    assert r.returncode == 0, r.stderr
    printed = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    with Journal.read(journal) as j:
        rows = j.rows("bed1", by_seq=True)
    assert [json.loads(r.payload) for r in rows] == printed and printed
    assert all(r.delivered is not None for r in rows)  # delivered to the broker, and the journal says so


def test_undelivered_rows_from_before_epochs_get_one_so_stations_accept_them(tmp_path):
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, patient TEXT NOT NULL, seq INTEGER "
                     "NOT NULL, topic TEXT NOT NULL, payload TEXT NOT NULL, created REAL NOT NULL, delivered REAL, "
                     "UNIQUE (patient, seq));")
    with db:
        db.execute("INSERT INTO events (patient, seq, topic, payload, created) VALUES "
                   "('bed1', 7, ?, '{\"kind\":\"alarm\",\"seq\":7}', 0)", (TOPIC,))
    db.close()
    box = Outbox.open_sync(str(path))
    (row,) = box.all_rows_sync("bed1")
    assert json.loads(row[1]) == {"kind": "alarm", "seq": 7, "epoch": box.epoch}
    assert box.append_sync("bed1", TOPIC, ev(1)) == 8
    box.close_sync()


@pytest.mark.slow
def test_a_second_daemon_on_a_running_daemons_journal_exits_2_naming_it(mosquitto, tmp_path):
    from alarm_support import start_daemon, stop, wait_for

    journal = tmp_path / "j.sqlite3"
    cfg = daemon_config(tmp_path / "bed1.yaml", mosquitto.url, journal, speed=1)
    first = start_daemon(cfg, tmp_path / "first.log")
    try:
        wait_for(lambda: "ready" in (tmp_path / "first.log").read_text(), 60, "the first daemon to be ready")
        r = run_cli("run", "--config", str(cfg))
    finally:
        stop(first)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"seizurewatch: error: outbox.path: journal {journal} is in use by another seizurewatch (PID {first.pid}); "
        "stop that one, or give this one its own outbox.path")
    assert not list(tmp_path.glob("*.corrupt-*"))
    assert first.returncode == 0  # the first one drained and stopped cleanly, its journal intact
