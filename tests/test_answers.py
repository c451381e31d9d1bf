"""Answers that close the loop: ``seizurewatch ack`` waits for the daemon's answer and says it (exit 0 only when
the daemon journaled the ack), the daemon publishes why it refused one, and nobody waits forever for a patient no
daemon monitors. A real daemon replaying dog1_rec04 into a real Mosquitto."""

from __future__ import annotations

import time

import pytest
from alarm_support import daemon_config, lines, start_daemon, start_subscriber, stop, validate, wait_for
from conftest import run_cli

from seizurewatch.alarms.ack import ACK_GRACE_S, Ack, AckBook


@pytest.mark.slow
@pytest.mark.needs_data  # daemon_config replays the shared dog1_rec04
def test_ack_says_whether_the_daemon_took_it(mosquitto, tmp_path):
    # looped: the daemon stays online however long the four ack commands take on a loaded machine (it went
    # offline at the recording's end, and the last ack then read "daemon offline")
    cfg = daemon_config(tmp_path / "bed.yaml", mosquitto.url, tmp_path / "o.sqlite3", speed=4, loop=True)
    sub_out = tmp_path / "sub.jsonl"
    subscriber = start_subscriber(mosquitto.url, sub_out)
    daemon = start_daemon(cfg, tmp_path / "daemon.log")
    try:
        wait_for(lambda: any(e.get("kind") == "alarm" and e.get("event") == "start" for e in lines(sub_out)), 120,
                 "an alarm start from the daemon")
        alarm_id = next(e["alarm_id"] for e in lines(sub_out) if e.get("kind") == "alarm")
        url = ["--mqtt-url", mosquitto.url]

        unknown = run_cli("ack", "--patient", "bed1", "--alarm-id", "f" * 16, "--by", "nurse B", *url)
        assert unknown.returncode == 2, unknown.stderr
        assert "REFUSED by the daemon" in unknown.stderr
        assert "is not an alarm or fault of patient bed1" in unknown.stderr

        nobody = run_cli("ack", "--patient", "bed9", "--alarm-id", alarm_id, "--by", "nurse B", "--wait", "3", *url)
        assert nobody.returncode == 5, nobody.stderr
        assert "no daemon has announced patient bed9" in nobody.stderr

        good = run_cli("ack", "--patient", "bed1", "--alarm-id", alarm_id, "--by", "nurse B", *url)
        assert good.returncode == 0, good.stderr
        assert "accepted, journaled by the daemon as event" in good.stderr

        again = run_cli("ack", "--patient", "bed1", "--alarm-id", alarm_id, "--by", "nurse B", *url)
        assert again.returncode == 2 and "duplicate" in again.stderr, again.stderr
        wait_for(lambda: len([e for e in lines(sub_out) if e.get("kind") == "refusal"]) >= 2, 30,
                 "the refusals on the broker")
    finally:
        stop(daemon)
        stop(subscriber)
    refusals = [e for e in lines(sub_out) if e.get("kind") == "refusal"]
    for r in refusals:
        validate({k: v for k, v in r.items() if k != "kind"})
    assert [r["alarm_id"] for r in refusals] == ["f" * 16, alarm_id]
    assert [(r["by"], r["action"]) for r in refusals] == [("nurse B", "ack")] * 2


def test_the_book_refuses_a_plain_ack_of_an_alarm_ended_long_ago_and_says_why():
    book = AckBook(["bed1"])
    start = {"patient": "bed1", "alarm_id": "a" * 16, "kind": "alarm", "event": "start", "t": 60.0, "started_t": 60.0}
    book.observe(start)
    book.observe({**start, "event": "end", "t": 90.0, "wall_time": time.time() - ACK_GRACE_S - 1})
    just = {**start, "alarm_id": "b" * 16}
    book.observe(just)
    book.observe({**just, "event": "end", "t": 90.0, "wall_time": time.time() - 2})
    assert book.accept("bed1", Ack("b" * 16, "ack", "nurse C").to_json()) is not None  # ended on the nurse's way
    assert book.accept("bed1", Ack("a" * 16, "ack", "nurse C").to_json()) is None
    assert book.last_refusal is not None and "already ended" in book.last_refusal.reason
    assert book.last_refusal.answers(Ack("a" * 16, "ack", "nurse C"))
    validate(book.last_refusal.payload(1.7e9))
    assert book.accept("bed1", Ack("a" * 16, "false_alarm", "nurse C").to_json()) is not None  # a mark still lands
    assert book.accept("bed1", b"{") is None and book.last_refusal.alarm_id is None
    validate(book.last_refusal.payload(1.7e9))
