"""The ward broker attacked (issue #24): an account that may not publish for its bed, a bed's session
taken over by another account, a flood of forged alarms; against the shipped config/mosquitto/ files."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest
from alarm_support import pager, stop, wait_for, wait_subscribed, ward_accounts
from conftest import DOG1, MODEL, ROOT, WardMosquitto, run_cli, run_daemon_until

from seizurewatch.alarms.journal import Journal
from seizurewatch.config import load_config
from seizurewatch.daemon import Daemon, DaemonOptions

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]


def ward_daemon_config(path: Path, b: WardMosquitto, patient: str, account: str, speed: str = "max") -> Path:
    path.write_text(
        f"streams:\n  - patient: {patient}\n"
        f"    source: {{kind: edf, path: {DOG1 / 'dog1_rec04.edf'}, speed: {speed}}}\n"
        f"model: {{path: {MODEL}}}\n"
        f"mqtt:\n  url: mqtt://127.0.0.1:{b.port}\n  drain_timeout_s: 2\n  username: {account}\n"
        f"  password_file: {b.password_file(account)}\n"
        f"outbox: {{path: {path.parent / (patient + '.sqlite3')}}}\n")
    return path


def journal(path: Path) -> list[tuple[str, float | None]]:
    with Journal.read(path) as j:
        return [(r.payload, r.delivered) for r in j.rows()]


@pytest.mark.needs_data
def test_a_daemon_whose_acl_is_for_another_bed_keeps_its_events_undelivered_and_faults(ward_broker, tmp_path,
                                                                                       caplog):
    """bedside1's ACL block is for bed1; a daemon monitoring bed2 under it (a copied block not edited) gets
    PUBACK 0x87 for everything: nothing is marked delivered, the fault and metric say so, --check fails."""
    cfg_path = ward_daemon_config(tmp_path / "bed2.yaml", ward_broker, "bed2", "bedside1")
    r = run_cli("run", "--config", str(cfg_path), "--check", timeout=120)
    assert r.returncode == 3, (r.stdout, r.stderr[-2000:])
    last = r.stderr.strip().splitlines()[-1]
    assert "refused a test publish on seizurewatch/bed2/status" in last and "'bedside1'" in last, last
    assert "OK" not in r.stdout

    daemon = Daemon(load_config(cfg_path), DaemonOptions())

    def refused_alarm_journaled() -> bool:
        pipe = daemon.pipelines[0] if daemon.pipelines else None
        return pipe is not None and "publish_refused" in pipe.faults.active and any(
            '"event":"start"' in p and '"kind":"alarm"' in p for p, _ in journal(tmp_path / "bed2.sqlite3"))

    asyncio.run(run_daemon_until(daemon, refused_alarm_journaled, timeout=120))
    rows = journal(tmp_path / "bed2.sqlite3")
    assert any('"kind":"alarm"' in p and '"event":"start"' in p for p, _ in rows)
    assert rows and all(delivered is None for _, delivered in rows), "a refused publish was marked delivered"
    assert any('"fault_type":"publish_refused"' in p for p, _ in rows)
    refused = daemon.metrics.registry.get_sample_value("seizurewatch_publish_refused_total", {"patient": "bed2"})
    assert refused and refused >= 1
    assert any("refused a publish" in rec.getMessage() and "bedside1" in rec.getMessage() for rec in caplog.records)


@pytest.mark.needs_data
def test_run_check_passes_with_the_right_account(ward_broker, tmp_path):
    cfg_path = ward_daemon_config(tmp_path / "bed1.yaml", ward_broker, "bed1", "bedside1")
    r = run_cli("run", "--config", str(cfg_path), "--check", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1].startswith(f"{cfg_path}: OK")


def _alarm_start(patient: str, alarm_id: str, seq: int) -> bytes:
    from seizurewatch.events import Context, Event, to_payload

    ctx = Context(patient=patient, model_name="m", model_sha256="0" * 64, threshold_policy="youden")
    ev = Event("alarm", "start", alarm_id, 66.0, 0.9, 0.5, started_t=66.0, peak_probability=0.9)
    return json.dumps({**to_payload(ev, ctx, seq=seq, wall_time=1.7e9 + seq),
                       "epoch": "00000000000000aa.1"}).encode()


def test_a_flood_of_forged_alarms_on_one_bed_never_drops_another_beds_page(ward_broker, tmp_path):
    """bed2's account (compromised) publishes 300 valid-looking alarm starts; then bed1's daemon account
    publishes a real one: the station's --exec pages bed1 (the flood fills bed2's budget only)."""
    b = ward_broker
    cmd, record = pager(tmp_path)
    _, _, station_args, _ = ward_accounts(b, tmp_path)
    out, err = tmp_path / "out", tmp_path / "err"
    sub = subprocess.Popen([sys.executable, "-m", "seizurewatch", "subscribe", *station_args, "--exec", cmd],
                           cwd=ROOT, stdout=out.open("w"), stderr=err.open("w"))
    try:
        wait_subscribed(b.port, out, "bed1", auth=("bedside1", b.password_file("bedside1").read_text().strip()),
                        settle=0.0)

        async def flood() -> None:
            pw = {u: b.password_file(u).read_text().strip() for u in ("bedside1", "bedside2")}
            async with aiomqtt.Client("127.0.0.1", b.port, username="bedside2", password=pw["bedside2"],
                                      identifier="forger") as c:
                for i in range(300):
                    await c.publish("seizurewatch/bed2/alarm", _alarm_start("bed2", f"{i + 1:016x}", i + 1), qos=1)
            async with aiomqtt.Client("127.0.0.1", b.port, username="bedside1", password=pw["bedside1"],
                                      identifier="real") as c:
                await c.publish("seizurewatch/bed1/alarm", _alarm_start("bed1", "b" * 16, 1), qos=1)

        asyncio.run(flood())
        wait_for(lambda: any(c["alarm_id"] == "b" * 16 for c in _paged(record)), 60, "bed1's page")
        wait_for(lambda: "dropped" in err.read_text(), 30, "the flood's drops to be logged")
    finally:
        stop(sub)
    log = err.read_text()
    dropped = [line for line in log.splitlines() if "too many hooks pending" in line]
    assert dropped and all("bed2" in line for line in dropped), log[-2000:]
    assert not any("bed1" in line for line in log.splitlines() if "dropped" in line), log[-2000:]
    assert sum(1 for c in _paged(record) if c["env"]["SEIZUREWATCH_PATIENT"] == "bed2") <= 20


def _paged(record: Path) -> list[dict]:
    """The pager's calls so far: whole lines only (a hook may be writing its line right now)."""
    text = record.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line.startswith("{")]


def test_acks_are_rate_limited_per_patient():
    from seizurewatch.alarms.ack import ACKS_PER_MINUTE, AckBook

    book = AckBook(["bed1", "bed2"])
    for p in ("bed1", "bed2"):
        book.observe({"patient": p, "alarm_id": "a" * 16, "kind": "alarm", "event": "start", "t": 1.0})
    flood = [book.accept("bed1", json.dumps({"alarm_id": "a" * 16, "action": "ack", "by": f"n{i}"}).encode())
             for i in range(100)]
    assert sum(x is not None for x in flood) == ACKS_PER_MINUTE
    assert flood[ACKS_PER_MINUTE:] == [None] * (100 - ACKS_PER_MINUTE)
    assert book.accept("bed2", b'{"alarm_id": "' + b"a" * 16 + b'", "action": "ack", "by": "nurse"}') is not None


def test_another_account_cannot_take_over_a_beds_session(ward_broker, tmp_path):
    """Every payload carries the journal's id (its epoch); connecting under the ids one could build from it
    (the old ``seizurewatch-bed1-<journal id[:8]>``) no longer pushes bed1's daemon off the broker."""
    from seizurewatch.alarms.mqtt import PatientLink
    from seizurewatch.alarms.outbox import Outbox
    from seizurewatch.config import MqttConfig

    b = ward_broker
    cfg = MqttConfig(url=f"mqtt://127.0.0.1:{b.port}", username="bedside1",
                     password_file=str(b.password_file("bedside1")))
    station_pw = b.password_file("station1").read_text().strip()

    async def main() -> tuple[int, str, str, str, str]:
        box = Outbox.open_sync(str(tmp_path / "j.sqlite3"))
        link = PatientLink(cfg, box, "bed1")
        runner = asyncio.create_task(link.run())
        await asyncio.wait_for(link.connected.wait(), 10)
        epoch = box.epoch  # what every published payload says
        guesses = [f"seizurewatch-bed1-{epoch[:8]}", f"seizurewatch-bed1-{epoch[:16]}", f"seizurewatch-bed1-{epoch}"]
        for ident in guesses * 3:
            async with aiomqtt.Client("127.0.0.1", b.port, username="station1", password=station_pw,
                                      identifier=ident):
                pass
        status = await _retained(b.port, station_pw, "seizurewatch/bed1/status")
        reconnects, ident = link.reconnects, link.identifier
        link.close()
        await runner
        await box.close()
        again = Outbox.open_sync(str(tmp_path / "j.sqlite3"))
        reopened = PatientLink(cfg, again, "bed1").identifier
        again.close_sync()
        return reconnects, status, ident, reopened, epoch

    reconnects, status, ident, reopened, epoch = asyncio.run(main())
    assert reconnects == 0 and status == "online", "another account pushed bed1's daemon off the broker"
    assert epoch.split(".")[0][:8] not in ident and reopened == ident  # a restart still takes over its own


async def _retained(port: int, password: str, topic: str) -> str:
    async with aiomqtt.Client("127.0.0.1", port, username="station1", password=password, identifier="reader") as c:
        await c.subscribe(topic, qos=1)
        async with asyncio.timeout(10):
            async for m in c.messages:
                return bytes(m.payload).decode()
    return ""


def test_ack_names_with_control_characters_are_refused_at_the_boundary():
    from seizurewatch.alarms.ack import AckError, parse_ack

    for by, note in (("Nurse X\n0,7200,seizure\n#", ""), ("\x1b[2Jnurse", ""), ("nurse", "line\rbreak")):
        body = json.dumps({"alarm_id": "a" * 16, "action": "confirmed", "by": by, "note": note}).encode()
        with pytest.raises(AckError, match="control characters"):
            parse_ack(body)
    r = run_cli("ack", "--patient", "bed1", "--alarm-id", "a" * 16, "--by", "Nurse X\n0,7200,seizure",
                "--mqtt-url", "mqtt://127.0.0.1:1")
    assert r.returncode == 2 and "by: control characters" in r.stderr.strip().splitlines()[-1]


def test_subscribe_never_prints_a_control_character_from_the_network(mosquitto, tmp_path):
    """A fault detail and a status carrying a terminal escape and a line break reach the terminal escaped."""
    from seizurewatch.decision import FaultTracker
    from seizurewatch.events import Context, to_payload

    ctx = Context(patient="bed1", model_name="m", model_sha256="0" * 64, threshold_policy="youden")
    (ev,) = FaultTracker().set("flatline", True, 5.0, ("c1",), "flat\x1b]0;pwned\x07\n[bed1] ALARM forged")
    fault = {**to_payload(ev, ctx, seq=1, wall_time=1.7e9), "epoch": "00000000000000aa.1"}
    out = tmp_path / "out"
    sub = subprocess.Popen([sys.executable, "-m", "seizurewatch", "subscribe", "--mqtt-url", mosquitto.url,
                            "--count", "1"], cwd=ROOT, stdout=out.open("w"), stderr=subprocess.DEVNULL)
    try:
        wait_subscribed(mosquitto.port, out, "bed1", settle=0.0)

        async def send() -> None:
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="evil") as c:
                await c.publish("seizurewatch/bed1/status", b"online\x1b[2J\nforged line", qos=1)
                await c.publish("seizurewatch/bed1/fault", json.dumps(fault).encode(), qos=1)

        asyncio.run(send())
        assert sub.wait(60) == 0
    finally:
        stop(sub)
    text = out.read_text()
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;pwned\\x07\\n[bed1] ALARM forged" in text and "online\\x1b[2J\\nforged line" in text
    assert not any(line.startswith("forged") or line.startswith("[bed1] ALARM") for line in text.splitlines())


def test_an_ack_the_broker_refuses_is_reported_not_sent(ward_broker, tmp_path):
    """bed1's daemon account may not publish acks (shipped ACL): `seizurewatch ack` with it says NOT sent,
    exit 3, instead of 'sent' (or a traceback)."""
    b = ward_broker
    cfg = tmp_path / "daemon-account.yaml"
    cfg.write_text(f"mqtt:\n  url: mqtt://127.0.0.1:{b.port}\n  username: bedside1\n"
                   f"  password_file: {b.password_file('bedside1')}\n")
    r = run_cli("ack", "--config", str(cfg), "--patient", "bed1", "--alarm-id", "a" * 16, "--by", "nurse")
    assert r.returncode == 3, r.stderr[-1500:]
    last = r.stderr.strip().splitlines()[-1]
    assert "refused the ack (Not authorized, 0x87); it was NOT sent" in last and "'bedside1'" in last, last
    assert "Traceback" not in r.stderr
