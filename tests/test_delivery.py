"""Alarms are never lost: broker outages, daemon crashes and big backlogs, against a real Mosquitto.

Each test counts what the caregiver's `seizurewatch subscribe` printed (after its de-duplication
on (patient, seq)) against the rows of the daemon's SQLite journal.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time

import pytest
from alarm_support import (
    PersistentMosquitto,
    daemon_config,
    events,
    journal_rows,
    lines,
    pager,
    start_daemon,
    start_subscriber,
    stop,
    undelivered,
    validate,
    wait_all_arrived,
    wait_for,
    wait_subscribed,
    ward_accounts,
)
from conftest import Mosquitto, WardMosquitto

from seizurewatch.alarms.journal import JournalError
from seizurewatch.alarms.mqtt import PatientLink, topics
from seizurewatch.alarms.outbox import Outbox
from seizurewatch.config import MqttConfig

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]


def assert_exactly_once_in_order(received: list[dict], journal: list[tuple]) -> None:
    assert journal, "the daemon journaled nothing"
    assert all(row[3] is not None for row in journal), "journal rows left undelivered"
    assert [e["seq"] for e in received] == [row[0] for row in journal], "received != journal (order or count)"
    assert [e for e in received] == [json.loads(row[1]) for row in journal], "payloads differ from the journal"
    for e in received:
        validate(e)


def alarm_started(journal, delivered: bool | None = None) -> bool:
    """Whether the journal holds an alarm start (``delivered``: only one the broker acknowledged / has not)."""
    try:
        rows = journal_rows(journal)
    except JournalError:  # not created yet
        return False
    return any('"kind":"alarm"' in r[1] and '"event":"start"' in r[1]
               and (delivered is None or (r[3] is not None) == delivered) for r in rows)


def test_broker_killed_before_the_seizure_and_back_after_its_alarm_started(tmp_path):
    """The shipped ward broker config (persistence), killed while the daemon runs and the station waits;
    restarted once the daemon has journaled the seizure's alarm start without a broker."""
    broker = WardMosquitto(tmp_path)
    daemon_auth, station_url, station_args, probe_auth = ward_accounts(broker, tmp_path)
    broker.start()
    journal = tmp_path / "journal" / "outbox.sqlite3"
    cfg = daemon_config(tmp_path / "bed1.yaml", broker.url, journal, speed=10, mqtt_extra=daemon_auth)
    out = tmp_path / "sub.jsonl"
    sub = start_subscriber(station_url, out, *station_args, "--patient", "bed1", "--client-id", "nurse-station-1")
    daemon = None
    try:
        wait_subscribed(broker.port, out, "bed1", auth=probe_auth, store=broker.store_file)
        daemon = start_daemon(cfg, tmp_path / "daemon.log")
        wait_for(lambda: any(x.get("status") == "online" for x in lines(out)), 60, "the daemon to come online")
        assert not alarm_started(journal), "the alarm started before the outage: nothing would be tested"
        broker.kill()
        killed_at = time.time()
        wait_for(lambda: alarm_started(journal, delivered=False), 120, "the alarm start journaled in the outage")
        broker.start()
        back_at = time.time()
        assert daemon.wait(600) == 0, (tmp_path / "daemon.log").read_text()[-2000:]
        rows = journal_rows(journal)
        wait_for(lambda: len(events(out)) >= len(rows), 60, "the subscriber to catch up")
        wait_all_arrived(broker.port, out, "bed1", auth=probe_auth)  # a duplicate or extra event came before it
    finally:
        stop(sub)
        if daemon is not None:
            stop(daemon)
        broker.stop()
    during = [json.loads(r[1]) for r in rows if killed_at < r[2] < back_at]
    assert any(e["kind"] == "alarm" and e["event"] == "start" for e in during), \
        "the seizure's alarm start was not produced during the outage; the test did not test anything"
    received = events(out)
    assert_exactly_once_in_order(received, rows)
    alarms = [e for e in received if e["kind"] == "alarm"]
    assert alarms[0]["event"] == "start" and alarms[-1]["event"] == "end"
    log = (tmp_path / "daemon.log").read_text()
    assert "connection lost" in log.lower()


def test_daemon_sigkilled_with_backlog_resends_it_after_restart(tmp_path):
    broker = PersistentMosquitto(tmp_path)
    broker.start()
    journal = tmp_path / "outbox.sqlite3"
    cfg = daemon_config(tmp_path / "bed1.yaml", broker.url, journal, speed=10)
    out = tmp_path / "sub.jsonl"
    sub = start_subscriber(broker.url, out, "--patient", "bed1", "--client-id", "nurse-station-2")
    first = second = None
    try:
        wait_subscribed(broker.port, out, "bed1", store=broker.store_file)
        first = start_daemon(cfg, tmp_path / "first.log")
        wait_for(lambda: any(x.get("status") == "online" for x in lines(out)), 60, "the daemon to come online")
        broker.kill()
        def alarm_open() -> bool:  # (with the model's faults before onset, a backlog alone may hold no alarm)
            last = {}
            for r in journal_rows(journal):
                e = json.loads(r[1])
                last[(e["kind"], e["alarm_id"])] = e["event"]
            return any(k[0] == "alarm" and ev != "end" for k, ev in last.items())

        wait_for(lambda: undelivered(journal) >= 4 and alarm_open(), 60, "a backlog of 4 events and an open alarm")
        first.kill()  # SIGKILL: no drain, no goodbye
        first.wait()
        backlog = [r for r in journal_rows(journal) if r[3] is None]
        assert len(backlog) >= 4
        last = {}
        for r in journal_rows(journal):
            e = json.loads(r[1])
            last[(e["kind"], e["alarm_id"])] = e["event"]
        open_at_kill = {k for k, ev in last.items() if ev != "end"}
        assert any(k[0] == "alarm" for k in open_at_kill), "no alarm was open at the kill: nothing to end"
        broker.start()
        cfg2 = daemon_config(tmp_path / "bed1-fast.yaml", broker.url, journal, speed="max")
        second = start_daemon(cfg2, tmp_path / "second.log")
        assert second.wait(600) == 0, (tmp_path / "second.log").read_text()[-2000:]
        rows = journal_rows(journal)
        wait_for(lambda: len(events(out)) >= len(rows), 60, "the subscriber to catch up")
        wait_all_arrived(broker.port, out, "bed1")
    finally:
        stop(sub)
        for p in (first, second):
            if p is not None:
                stop(p)
        broker.stop()
    received = events(out)
    assert_exactly_once_in_order(received, rows)
    # the backlog of the killed run came first, then the second run's own events, seq continuing
    assert [e["seq"] for e in received[: len(backlog)]] == [r[0] for r in backlog]
    first_ids = {e["alarm_id"] for e in received[: len(backlog)]}
    later = [e for e in received if e["alarm_id"] not in first_ids]
    assert later and later[0]["seq"] > backlog[-1][0]
    assert any(e["kind"] == "alarm" and e["event"] == "start" for e in later)
    # what the SIGKILL left open was ended by the second start, with the reason (#14.3)
    ended = {(e["kind"], e["alarm_id"]) for e in received
             if e["event"] == "end" and "killed, crashed or power lost" in e.get("extra", {}).get("end_reason", "")}
    assert ended == open_at_kill


def test_10000_event_backlog_drains_in_order(tmp_path):
    """(Memory while draining is a figure: bench/bench_outbox.py, not a threshold here.)"""
    n = 10_000
    broker = PersistentMosquitto(tmp_path, extra_conf=f"max_queued_messages {2 * n}\n")
    broker.start()
    out = tmp_path / "sub.jsonl"
    sub = start_subscriber(broker.url, out, "--patient", "bed9", "--client-id", "count10k", "--count", str(n))
    # the broker keeps what arrives while the nurse station is away
    wait_subscribed(broker.port, out, "bed9", store=broker.store_file)

    async def main() -> tuple[int, int]:
        cfg = MqttConfig(url=broker.url, drain_timeout_s=120)
        box = Outbox.open_sync(str(tmp_path / "big.sqlite3"))
        link = PatientLink(cfg, box, "bed9")
        topic = topics(cfg.topic_prefix, "bed9")["alarm"]
        base = {"schema": "seizurewatch/event/1", "kind": "alarm", "event": "update", "alarm_id": "0123456789abcdef",
                "patient": "bed9", "t": 1.0, "wall_time": time.time(), "probability": 0.9, "threshold": 0.44,
                "threshold_policy": "youden", "model": {"name": "m", "weights_sha256": "0" * 64}, "started_t": 0.0,
                "duration_s": 1.0, "peak_probability": 0.95, "extra": {"pad": "x" * 300}}
        broker.kill()  # the outage: 10,000 events are journaled while the broker is away
        runner = asyncio.create_task(link.run())
        for i in range(0, n, 1000):
            await asyncio.to_thread(box.append_many_sync, "bed9", topic,
                                    [dict(base, t=float(j)) for j in range(i, i + 1000)])
        assert await box.depth("bed9") == n
        broker.start()
        link.wake()
        async with asyncio.timeout(600):
            while await box.depth("bed9"):
                await asyncio.sleep(0.2)
        link.close()
        await asyncio.wait_for(runner, 60)
        size = sum(len(r[1]) for r in box.all_rows_sync("bed9"))
        left = await box.depth("bed9")
        await box.close()
        return left, size

    try:
        left, journal_bytes = asyncio.run(main())
        assert sub.wait(600) == 0
    finally:
        stop(sub)
        broker.stop()
    assert left == 0
    got = events(out)
    assert [e["seq"] for e in got] == list(range(1, n + 1)), "backlog not delivered exactly once in order"
    validate(got[0])
    assert journal_bytes > 5_000_000  # ~6 MB of payload, delivered page by page


def test_broker_stopped_mid_drain_inflight_publishes_are_resent(tmp_path):
    """The connection drops while publishes wait for their PUBACK: they are abandoned at once and
    resent after the reconnect; after de-duplication the subscriber sees every event once, in order."""
    n = 3000
    broker = PersistentMosquitto(tmp_path, extra_conf=f"max_queued_messages {2 * n}\n")
    broker.start()
    out = tmp_path / "sub.jsonl"
    sub = start_subscriber(broker.url, out, "--patient", "bed5", "--client-id", "mid-drain", "--count", str(n))
    wait_subscribed(broker.port, out, "bed5", store=broker.store_file)

    async def main() -> tuple[int, int]:
        cfg = MqttConfig(url=broker.url, drain_timeout_s=60, max_inflight=50)
        box = Outbox.open_sync(str(tmp_path / "mid.sqlite3"))
        link = PatientLink(cfg, box, "bed5")
        topic = topics(cfg.topic_prefix, "bed5")["alarm"]
        await asyncio.to_thread(box.append_many_sync, "bed5", topic, [
            {"schema": "seizurewatch/event/1", "kind": "alarm", "event": "update", "alarm_id": "00000000000000b5",
             "patient": "bed5", "t": float(i), "wall_time": 1.7e9, "probability": 0.9, "threshold": 0.44,
             "threshold_policy": "youden", "model": {"name": "m", "weights_sha256": "0" * 64}, "started_t": 0.0,
             "duration_s": float(i), "peak_probability": 0.9} for i in range(n)])
        runner = asyncio.create_task(link.run())
        async with asyncio.timeout(600):
            while await box.depth("bed5") > n - 500:
                await asyncio.sleep(0.005)
        await asyncio.to_thread(broker.stop)  # mid-drain: publishes are on the wire
        stopped_with = await box.depth("bed5")
        async with asyncio.timeout(60):  # the link saw the connection go before the broker is back
            while link.connected.is_set():
                await asyncio.sleep(0.05)
        await asyncio.to_thread(broker.start)
        async with asyncio.timeout(600):
            while await box.depth("bed5"):
                await asyncio.sleep(0.1)
        link.close()
        await asyncio.wait_for(runner, 60)
        await box.close()
        return stopped_with, link.reconnects

    try:
        stopped_with, reconnects = asyncio.run(main())
        assert sub.wait(600) == 0
    finally:
        stop(sub)
        broker.stop()
    assert 0 < stopped_with < n, "the broker was not stopped mid-drain"
    assert reconnects >= 1
    assert [e["seq"] for e in events(out)] == list(range(1, n + 1))


def no_delay_flags(port: int) -> list[int]:
    """TCP_NODELAY of each of this process's TCP connections to 127.0.0.1:``port``."""
    import os
    import socket

    flags = []
    for name in os.listdir("/proc/self/fd"):
        try:
            s = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if s.family == socket.AF_INET and s.type == socket.SOCK_STREAM and s.getpeername()[1] == port:
                flags.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        except OSError:
            pass
        finally:
            s.close()
    return flags


def test_the_link_sends_without_nagle_delay(mosquitto, tmp_path):
    """TCP_NODELAY on the daemon's broker connection: a window of small QoS 1 publishes is not held back
    waiting for a delayed ACK (measured: the backlog drain at max_inflight 20 went from 530 to 961 events/s,
    4,739 with the broker's set_tcp_nodelay)."""
    async def main() -> list[int]:
        box = Outbox.open_sync(str(tmp_path / "nd.sqlite3"))
        link = PatientLink(MqttConfig(url=mosquitto.url), box, "bed3")
        runner = asyncio.create_task(link.run())
        await asyncio.wait_for(link.connected.wait(), 10)
        flags = no_delay_flags(mosquitto.port)
        link.close()
        await asyncio.wait_for(runner, 30)
        await box.close()
        return flags

    flags = asyncio.run(main())
    assert len(flags) == 1 and flags[0] != 0


@pytest.mark.parametrize("persistent", [True, False], ids=["ward-config-persistent", "debian-default-no-persistence"])
def test_broker_killed_during_an_alarm_while_the_station_is_away_the_station_still_raises_it_once(
        tmp_path, persistent):
    """The station (persistent session) is away while the alarm starts; the broker is SIGKILLed during
    the alarm and restarted. With the shipped ward config the broker kept the start for the station;
    with Mosquitto as Debian installs it (no persistence) it forgot it, and the station learns of the
    alarm from the retained state the daemon republishes after its reconnect. Either way: raised
    (--exec run) exactly once, for the alarm the journal holds, and its end is seen."""
    if persistent:
        broker = WardMosquitto(tmp_path)
        daemon_auth, station_url, station_args, probe_auth = ward_accounts(broker, tmp_path)
    else:
        broker = Mosquitto(tmp_path)  # persistence false
        broker.kill = lambda: broker.proc.kill() or broker.proc.wait()  # type: ignore[method-assign]
        daemon_auth, station_url, station_args, probe_auth = "", broker.url, (), None
    broker.start()
    journal = tmp_path / "outbox.sqlite3"
    cfg = daemon_config(tmp_path / "bed1.yaml", broker.url, journal, speed=4, mqtt_extra=daemon_auth)
    cmd, paged = pager(tmp_path)
    out = tmp_path / "station.jsonl"
    args = (*station_args, "--patient", "bed1", "--client-id", "nurse-station-7", "--exec", cmd)
    sub = start_subscriber(station_url, out, *args, err=tmp_path / "station.log")
    daemon = None
    try:
        wait_subscribed(broker.port, out, "bed1", auth=probe_auth, store=getattr(broker, "store_file", None))
        stop(sub)  # the station goes away; the broker keeps its session (and, if it can, its messages)

        daemon = start_daemon(cfg, tmp_path / "daemon.log")
        wait_for(lambda: alarm_started(journal, delivered=True), 120, "the alarm start to be accepted by the broker")
        if persistent:  # autosave_interval 1: a SIGKILL loses what the last save did not hold; wait for a save
            accepted, store = time.time(), broker.conf.parent / "store" / "mosquitto.db"
            wait_for(lambda: store.is_file() and store.stat().st_mtime > accepted, 60, "Mosquitto's next autosave")
        broker.kill()
        wait_for(lambda: "connection lost" in (tmp_path / "daemon.log").read_text().lower(), 60,
                 "the daemon to see the broker go")
        broker.start()
        sub = start_subscriber(station_url, out, *args, err=tmp_path / "station.log")
        assert daemon.wait(600) == 0, (tmp_path / "daemon.log").read_text()[-2000:]
        wait_for(lambda: any(e["kind"] == "alarm" and e["event"] == "end" for e in events(out)), 60,
                 "the station to see the alarm end")
        wait_all_arrived(broker.port, out, "bed1", auth=probe_auth)  # a second start or state notice came before
    finally:
        stop(sub)
        if daemon is not None:
            stop(daemon)
        broker.stop()
    starts = [json.loads(r[1]) for r in journal_rows(journal) if '"kind":"alarm"' in r[1] and '"event":"start"' in r[1]]
    assert len(starts) == 1
    alarm_id = starts[0]["alarm_id"]
    got = lines(out)
    received_start = [e for e in got if e.get("kind") == "alarm" and e.get("event") == "start"]
    from_state = [e for e in got if e.get("notice") == "alarm_in_progress"]
    if persistent:
        assert [e["alarm_id"] for e in received_start] == [alarm_id], "the ward broker lost the queued start"
        assert from_state == []
    else:
        assert received_start == [], "the broker kept the start: this case did not test a forgetful broker"
        # raised from the retained state, or from the first update if that came first
        assert [e["alarm_id"] for e in from_state] == [alarm_id]
    calls = lines(paged)
    assert [c["alarm_id"] for c in calls] == [alarm_id], "the station must page once for the alarm"


def test_two_daemons_on_two_journals_for_one_patient_do_not_kick_each_other_off_the_broker(mosquitto, tmp_path):
    """Client ids carry the journal's client key: two links for bed1 (two journals) both stay connected;
    the same journal reopened keeps its id (the broker replaces a stale connection, not a live one)."""
    cfg = MqttConfig(url=mosquitto.url)

    async def main() -> tuple[list[int], str, str, str]:
        boxes = [Outbox.open_sync(str(tmp_path / f"j{i}.sqlite3")) for i in (1, 2)]
        links = [PatientLink(cfg, b, "bed1") for b in boxes]
        runners = [asyncio.create_task(lk.run()) for lk in links]
        for lk in links:
            await asyncio.wait_for(lk.connected.wait(), 60)
        # Each link then delivers one event. Had the second connection kicked the first off the broker (same
        # client id), the first could deliver only over a new connection, counted in its reconnects.
        for box, lk in zip(boxes, links, strict=True):
            await asyncio.to_thread(box.append_sync, "bed1", topics(cfg.topic_prefix, "bed1")["alarm"],
                                    {"schema": "seizurewatch/event/1", "kind": "alarm", "event": "update"})
            lk.wake()
        async with asyncio.timeout(60):
            while any([await box.depth("bed1") for box in boxes]):
                await asyncio.sleep(0.05)
        reconnects = [lk.reconnects for lk in links]
        assert reconnects == [0, 0], "the two links kicked each other off the broker"
        ids = [lk.identifier for lk in links]
        for lk in links:
            lk.close()
        await asyncio.gather(*runners)
        for b in boxes:
            await b.close()
        again = Outbox.open_sync(str(tmp_path / "j1.sqlite3"))
        same = PatientLink(cfg, again, "bed1").identifier
        again.close_sync()
        return reconnects, ids[0], ids[1], same

    reconnects, first, second, reopened = asyncio.run(main())
    assert reconnects == [0, 0]
    assert first != second and first.startswith("seizurewatch-bed1-") and reopened == first


def test_reconnects_leave_no_future_exception_unretrieved(mosquitto, caplog):
    """The daemon link and the subscriber through three broker restarts: asyncio never reports
    'Future exception was never retrieved' (it did on every reconnect)."""
    from seizurewatch.alarms.subscriber import subscribe

    async def main() -> None:
        cfg = MqttConfig(url=mosquitto.url)
        box = Outbox.open_sync(":memory:")
        link = PatientLink(cfg, box, "bed1")
        runner = asyncio.create_task(link.run())
        ready = asyncio.Event()
        sub = asyncio.create_task(subscribe(cfg, lambda p: None, retries=30, client_id="nurse-gc", ready=ready))
        for _ in range(3):  # each restart once both are connected, and once the link has seen the broker go
            await asyncio.wait_for(link.connected.wait(), 60)
            await asyncio.wait_for(ready.wait(), 60)
            ready.clear()
            await asyncio.to_thread(mosquitto.stop)
            async with asyncio.timeout(60):
                while link.connected.is_set():
                    await asyncio.sleep(0.05)
            await asyncio.to_thread(mosquitto.start)
            gc.collect()
        await asyncio.wait_for(link.connected.wait(), 60)
        await asyncio.wait_for(ready.wait(), 60)
        gc.collect()
        sub.cancel()
        link.close()
        await asyncio.wait_for(runner, 30)
        await box.close()

    with caplog.at_level("ERROR", logger="asyncio"):
        asyncio.run(main())
        gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_the_subscriber_connects_through_the_same_policy_no_nagle_delay_either(mosquitto):
    """One connection policy: the station's connection gets TCP_NODELAY (aiomqtt's socket_options)
    like the daemon's link; before, only the link had it, set through paho's private socket."""
    from seizurewatch.alarms.subscriber import subscribe

    async def main() -> list[int]:
        ready = asyncio.Event()
        sub = asyncio.create_task(subscribe(MqttConfig(url=mosquitto.url), lambda p: None, ready=ready))
        await asyncio.wait_for(ready.wait(), 10)
        flags = no_delay_flags(mosquitto.port)
        sub.cancel()
        return flags

    flags = asyncio.run(main())
    assert len(flags) == 1 and flags[0] != 0
