"""`seizurewatch subscribe`: prints alarms and faults once each, runs --exec hooks, fails clearly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import aiomqtt
import pytest
from alarm_support import lines, pager, validate, wait_for, wait_subscribed
from conftest import ROOT, free_port, run_cli

from seizurewatch.alarms.subscriber import Deduper, format_event
from seizurewatch.decision import FaultTracker
from seizurewatch.events import Context, Event, to_payload

CTX = Context("bed3", "dog1-convnet", "b" * 64, "youden")
EPOCH = "00000000000000e1.1"


def lifecycle() -> list[dict]:
    evs = [Event("alarm", "start", "00000000000000a1", 66.0, 0.59, 0.443, started_t=66.0, peak_probability=0.59),
           Event("alarm", "update", "00000000000000a1", 71.0, 0.64, 0.443, started_t=66.0, peak_probability=0.64)]
    evs += FaultTracker().set("flatline", True, 72.0, ("c003",), "flatline on c003")
    evs.append(Event("alarm", "end", "00000000000000a1", 118.0, 0.2, 0.443, started_t=66.0, peak_probability=0.97))
    return [{**to_payload(e, CTX, seq=i + 1, wall_time=1.7e9 + i), "epoch": EPOCH} for i, e in enumerate(evs)]


async def publish(port: int, payloads: list[dict], resend: bool = True) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="fake-daemon") as c:
        await c.publish("seizurewatch/bed3/status", b"online", qos=1, retain=True)
        for p in payloads:
            body = json.dumps(p).encode()
            await c.publish(f"seizurewatch/bed3/{p['kind']}", body, qos=1)
            if resend:  # what a reconnecting daemon does: the same (patient, seq) again
                await c.publish(f"seizurewatch/bed3/{p['kind']}", body, qos=1)


def start(port: int, out: Path, *args: str) -> subprocess.Popen:
    """The subscriber, its stdout in ``out``; returns once it is subscribed."""
    proc = subprocess.Popen([sys.executable, "-m", "seizurewatch", "subscribe", *args], cwd=ROOT,
                            stdout=out.open("w"), stderr=subprocess.PIPE, text=True)
    wait_subscribed(port, out, "bed3", settle=0.0)
    return proc


def finish(proc: subprocess.Popen, out: Path) -> str:
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out.read_text()


@pytest.mark.slow
def test_jsonl_prints_each_event_once_in_order(mosquitto, tmp_path):
    payloads = lifecycle()
    for p in payloads:
        validate(p)
    proc = start(mosquitto.port, tmp_path / "out", "--mqtt-url", mosquitto.url, "--patient", "bed3", "--jsonl",
                 "--count", str(len(payloads)))
    asyncio.run(publish(mosquitto.port, payloads))
    out = finish(proc, tmp_path / "out")
    got = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    events = [g for g in got if g.get("kind") in ("alarm", "fault")]
    assert events == payloads  # duplicates dropped, order kept
    assert {"kind": "status", "patient": "bed3", "status": "online"} in got


@pytest.mark.slow
def test_human_readable_output(mosquitto, tmp_path):
    payloads = lifecycle()
    proc = start(mosquitto.port, tmp_path / "out", "--mqtt-url", mosquitto.url, "--count", str(len(payloads)))
    asyncio.run(publish(mosquitto.port, payloads, resend=False))
    out = finish(proc, tmp_path / "out")
    assert "[bed3] daemon online" in out
    assert "ALARM start  p=0.59" in out and "FAULT start  flatline [c003]" in out
    assert "ALARM end    p=0.20 (threshold 0.443) after 52s" in out


@pytest.mark.slow
def test_exec_runs_on_alarm_start_with_payload_on_stdin_and_env_without_a_shell(mosquitto, tmp_path):
    hook = tmp_path / "pager.py"
    record = tmp_path / "paged.jsonl"
    hook.write_text(textwrap.dedent(f"""\
        import json, os, sys
        payload = json.load(sys.stdin)
        env = {{k: v for k, v in os.environ.items() if k.startswith("SEIZUREWATCH_")}}
        with open({str(record)!r}, "a") as f:
            f.write(json.dumps({{"stdin": payload, "env": env, "argv": sys.argv[1:]}}) + "\\n")
        """))
    payloads = lifecycle()
    marker = tmp_path / "shell-ran"
    cmd = f"{sys.executable} {hook} 'ward 3; touch {marker}'"
    proc = start(mosquitto.port, tmp_path / "out", "--mqtt-url", mosquitto.url, "--patient", "bed3", "--jsonl",
                 "--exec", cmd, "--count", str(len(payloads)))
    asyncio.run(publish(mosquitto.port, payloads))
    finish(proc, tmp_path / "out")
    calls = lines(record)
    assert len(calls) == 1, "exactly one alarm start, paged once (its duplicate was dropped)"
    call = calls[0]
    assert call["stdin"] == payloads[0]
    assert json.loads(call["env"]["SEIZUREWATCH_PAYLOAD"]) == payloads[0]
    assert call["env"]["SEIZUREWATCH_PATIENT"] == "bed3" and call["env"]["SEIZUREWATCH_SEQ"] == "1"
    assert call["env"]["SEIZUREWATCH_ALARM_ID"] == "00000000000000a1"
    assert call["argv"] == [f"ward 3; touch {marker}"]  # one argument, no shell
    assert not marker.exists()


def test_unreachable_broker_exits_3_with_one_line():
    port = free_port()
    r = run_cli("subscribe", "--mqtt-url", f"mqtt://127.0.0.1:{port}", "--retries", "1", timeout=120)
    assert r.returncode == 3, r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("seizurewatch:")]
    assert len(err) == 1 and f"mqtt://127.0.0.1:{port}" in err[0] and "unreachable" in err[0]
    assert "Traceback" not in r.stderr


def test_plaintext_to_remote_broker_refused_before_any_traffic():
    r = run_cli("subscribe", "--mqtt-url", "mqtt://192.0.2.10:1883", timeout=60)
    assert r.returncode == 2
    assert "refusing plaintext MQTT to non-loopback host 192.0.2.10" in r.stderr


def test_deduper_drops_repeats_and_stays_bounded():
    d = Deduper(window=1000)
    assert d.fresh({"patient": "a", "seq": 1}) and not d.fresh({"patient": "a", "seq": 1})
    assert d.fresh({"patient": "b", "seq": 1})  # per patient
    for s in range(2, 5000):
        assert d.fresh({"patient": "a", "seq": s})
    assert not d.fresh({"patient": "a", "seq": 4999})
    assert len(d.seen["a"]) == 1000 and d.duplicates == 2


def test_format_event_lines():
    start_, *_ = lifecycle()
    assert format_event(start_) == "[bed3] t=    66.0s ALARM start  p=0.59 (threshold 0.443)"


@pytest.mark.slow
def test_home_assistant_discovery_configs_are_retained(mosquitto):
    from seizurewatch.alarms.mqtt import PatientLink
    from seizurewatch.alarms.outbox import Outbox
    from seizurewatch.config import MqttConfig

    async def main() -> dict[str, dict]:
        cfg = MqttConfig(url=mosquitto.url, homeassistant_discovery=True)
        link = PatientLink(cfg, Outbox.open_sync(":memory:"), "bed4")
        runner = asyncio.create_task(link.run())
        await asyncio.wait_for(link.connected.wait(), 30)
        link.close()
        await asyncio.wait_for(runner, 30)
        got: dict[str, dict] = {}
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="ha") as c:
            await c.subscribe("homeassistant/#", qos=1)
            async with asyncio.timeout(60):
                async for m in c.messages:
                    assert m.retain
                    got[str(m.topic)] = json.loads(m.payload)
                    if len(got) == 4:
                        break
        return got

    got = asyncio.run(main())
    alarm = got["homeassistant/binary_sensor/seizurewatch_bed4/alarm/config"]
    assert alarm["state_topic"] == "seizurewatch/bed4/state"
    assert alarm["availability_topic"] == "seizurewatch/bed4/status" and alarm["unique_id"] == "seizurewatch_bed4_alarm"
    assert "value_json.state == 'alarm'" in alarm["value_template"]
    assert got["homeassistant/sensor/seizurewatch_bed4/state/config"]["value_template"] == "{{ value_json.state }}"


async def publish_raw(port: int, msgs: list[tuple[str, bytes | str, bool]]) -> None:
    """(topic, payload, retain) as a careless or hostile client would send them."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="raw") as c:
        for topic, body, retain in msgs:
            await c.publish(topic, body.encode() if isinstance(body, str) else body, qos=1, retain=retain)


@pytest.mark.slow
def test_malformed_and_forged_messages_are_logged_and_ignored_and_the_subscriber_lives_on(mosquitto, tmp_path):
    """A retained `[1]` on a state topic (it used to crash every all-patients subscriber at start), an
    alarm with `"t": null`, non-JSON, and faults on seizurewatch/evil/ claiming to be bed3's (which used
    to make the real bed3 events with the same seq look like duplicates): each is ignored with a log
    line; every real event is printed once."""
    real = lifecycle()
    forged = [{**p, "alarm_id": "eeeeeeeeeeeeeeee"} for p in real]
    asyncio.run(publish_raw(mosquitto.port, [("seizurewatch/bed9/state", "[1]", True)]))
    proc = start(mosquitto.port, tmp_path / "out", "--mqtt-url", mosquitto.url, "--jsonl",
                 "--count", str(len(real)))
    asyncio.run(publish_raw(mosquitto.port, [
        ("seizurewatch/bed3/alarm", json.dumps({**real[0], "t": None, "seq": 99}), False),
        ("seizurewatch/bed3/alarm", b"\xff\xfe not json", False),
        ("seizurewatch/bed3/alarm", json.dumps(real[2]), False),  # a fault on the alarm topic
        ("seizurewatch/bed3/state", json.dumps({"state": "alarm", "patient": "bed1"}), False),
        *[(f"seizurewatch/evil/{p['kind']}", json.dumps(p), False) for p in forged],
        *[(f"seizurewatch/bed3/{p['kind']}", json.dumps(p), False) for p in real],
    ]))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    got = lines(tmp_path / "out")
    assert [g for g in got if g.get("kind") in ("alarm", "fault")] == real
    ignored = [ln for ln in err.splitlines()
               if "ignoring a malformed message" in ln or "invalid message from the daemon" in ln]
    assert len(ignored) >= 7, err  # repeats of one (topic, reason) within 10 s are folded by the log's rate limit
    assert any("topic=seizurewatch/bed9/state" in ln for ln in ignored)
    assert any("payload names patient 'bed3', the topic 'evil'" in ln for ln in ignored)
    # numbered for bed3 on bed3's topic: the daemon's bug to report, never an event the broker lost
    assert any("invalid message from the daemon" in ln and "t: None is not of type 'number'" in ln
               for ln in err.splitlines()), err
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_new_journal_reusing_seq_numbers_is_not_taken_for_duplicates(mosquitto, tmp_path):
    """The journal was lost: the next run starts at seq 1 again, in a new epoch; its alarm is printed
    (and paged) although a station that kept running saw seq 1 of the old journal."""
    old = lifecycle()[0]
    new = {**old, "epoch": "00000000000000e2.1", "alarm_id": "00000000000000b2"}
    cmd, record = pager(tmp_path)
    proc = start(mosquitto.port, tmp_path / "out", "--mqtt-url", mosquitto.url, "--patient", "bed3", "--jsonl",
                 "--exec", cmd, "--count", "2")
    asyncio.run(publish_raw(mosquitto.port, [("seizurewatch/bed3/alarm", json.dumps(p), False)
                                             for p in (old, old, new, new)]))
    finish(proc, tmp_path / "out")
    assert [e["alarm_id"] for e in lines(tmp_path / "out") if e.get("kind") == "alarm"] == [
        old["alarm_id"], new["alarm_id"]]
    assert sorted(c["alarm_id"] for c in lines(record)) == sorted([old["alarm_id"], new["alarm_id"]])


@pytest.mark.slow
def test_gaps_are_reported_and_a_retained_alarm_state_is_raised_once(mosquitto, tmp_path):
    """The broker forgot events 2-4 of bed3 (seq jumps 1 -> 5): 'missed events 2-4 from bed3'. A retained
    `state: alarm` for an alarm id never seen is raised (paged) once; its later update is not paged again;
    a state whose seq is beyond what was received reports that gap too."""
    evs = lifecycle()
    alarm = {"schema": "seizurewatch/event/1", **evs[1], "alarm_id": "00000000000000c7", "seq": 5}
    state = {"state": "alarm", "patient": "bed3", "t": 80.0, "wall_time": 1.7e9, "probability": 0.9, "faults": [],
             "alarm_id": "00000000000000c7", "epoch": EPOCH, "seq": 4}
    cmd, record = pager(tmp_path)
    asyncio.run(publish_raw(mosquitto.port, [("seizurewatch/bed3/state", json.dumps(state), True)]))
    proc = start(mosquitto.port, tmp_path / "out", "--mqtt-url", mosquitto.url, "--patient", "bed3",
                 "--exec", cmd, "--count", "3")
    asyncio.run(publish_raw(mosquitto.port, [
        ("seizurewatch/bed3/alarm", json.dumps(alarm), False),  # seq 5 after the state's 4: no gap
        ("seizurewatch/bed3/alarm", json.dumps({**evs[0], "seq": 9}), False),  # 6-8 missed
        ("seizurewatch/bed3/state", json.dumps({**state, "state": "ok", "alarm_id": None, "seq": 12}), False),
        ("seizurewatch/bed3/alarm", json.dumps({**evs[0], "seq": 13}), False),
    ]))
    out = finish(proc, tmp_path / "out")
    assert "[bed3] ALARM in progress (id 00000000000000c7; known from the retained state, its start event was " \
           "not received)" in out
    assert out.count("ALARM in progress") == 1
    assert "[bed3] missed events 6-8 from bed3" in out and "[bed3] missed events 10-12 from bed3" in out
    assert out.count("missed") == 2
    calls = lines(record)
    assert [c["alarm_id"] for c in calls] == ["00000000000000c7", evs[0]["alarm_id"]]
    assert calls[0]["env"]["SEIZUREWATCH_SOURCE"] == "state"


def test_exec_hooks_are_bounded_and_rate_limited(tmp_path):
    """300 fake alarms do not start 300 processes: 20 hooks a minute at most, 32 waiting, the rest
    dropped with an error naming the alarm."""
    from seizurewatch.alarms.hooks import HookRunner

    cmd, record = pager(tmp_path)

    async def main() -> tuple[list[bool], int, int]:
        runner = HookRunner(cmd, max_running=4, max_waiting=32, per_minute=20)
        accepted = [runner.submit({"patient": "bed3", "alarm_id": f"{i:016x}"}) for i in range(300)]
        # until the 20 hooks ran and finished and every slot is held by a later hook: those are waiting for the
        # rate limit (runner.ran counts a hook the moment the limit lets it through), so a 21st would show, with no
        # time window. 120 s: a hang guard only.
        async with asyncio.timeout(120):
            while len(lines(record)) < 20 or not runner._budgets["bed3"].slots.locked() or len(runner._tasks) > 12:
                await asyncio.sleep(0.1)
        assert runner.ran == 20
        ran, waiting = len(lines(record)), len(runner._tasks)
        for t in list(runner._tasks):
            t.cancel()
        await runner.drain()
        return accepted, ran, waiting

    accepted, ran, waiting = asyncio.run(main())
    assert accepted.count(True) == 32 and accepted[32:] == [False] * 268
    assert ran == 20 and waiting == 12


@pytest.mark.slow
def test_exec_hook_environment_holds_no_secret_of_the_subscriber(mosquitto, tmp_path):
    cmd, record = pager(tmp_path)
    env = dict(os.environ, SW_MQTT_PASSWORD="hunter2", AWS_SECRET_ACCESS_KEY="x", WARD="3")
    proc = subprocess.Popen([sys.executable, "-m", "seizurewatch", "subscribe", "--mqtt-url", mosquitto.url,
                             "--patient", "bed3", "--exec", cmd, "--exec-env", "WARD", "--count", "1"], cwd=ROOT,
                            stdout=(tmp_path / "out").open("w"), stderr=subprocess.PIPE, text=True, env=env)
    wait_subscribed(mosquitto.port, tmp_path / "out", "bed3", settle=0.0)
    asyncio.run(publish(mosquitto.port, lifecycle()[:1], resend=False))
    finish(proc, tmp_path / "out")
    (call,) = lines(record)
    assert "SW_MQTT_PASSWORD" not in call["env"] and "AWS_SECRET_ACCESS_KEY" not in call["env"]
    assert call["env"]["WARD"] == "3" and call["env"]["SEIZUREWATCH_PATIENT"] == "bed3"
    allowed = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "WARD"}
    assert {k for k in call["env"] if not k.startswith("SEIZUREWATCH_")} <= allowed | {"PWD", "SHLVL", "_"}


@pytest.mark.slow
def test_sigterm_waits_for_the_exec_hooks_already_started(mosquitto, tmp_path):
    """SIGTERM (systemctl stop) to ``subscribe --exec``: it stops subscribing, but a page already on its way is
    not cut off: the hook, told to finish only after the subscriber took the signal, finishes, then it exits 0."""
    started, go, finished = tmp_path / "started", tmp_path / "go", tmp_path / "finished"
    hook = tmp_path / "hook.py"
    hook.write_text(textwrap.dedent(f"""\
        import pathlib, sys, time
        sys.stdin.read()
        pathlib.Path({str(started)!r}).touch()
        while not pathlib.Path({str(go)!r}).exists():  # the test says when
            time.sleep(0.02)
        pathlib.Path({str(finished)!r}).write_text("paged")
        """))
    proc = start(mosquitto.port, tmp_path / "out", "--mqtt-url", mosquitto.url, "--patient", "bed3",
                 "--exec", f"{sys.executable} {hook}")
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        asyncio.run(publish(mosquitto.port, lifecycle()[:1], resend=False))
        wait_for(started.exists, 60, "the hook to start")
        proc.send_signal(signal.SIGTERM)
        took = "waiting for 1 --exec hook(s) to finish"
        wait_for(lambda: any(took in line for line in err) or proc.poll() is not None, 60,
                 "the subscriber to take SIGTERM")
        assert proc.poll() is None and not finished.exists(), f"exited without its hook: {err}"
        go.touch()
        assert proc.wait(60) == 0, err
    finally:
        go.touch()  # never leave the hook waiting
        if proc.poll() is None:
            proc.kill()
    assert finished.read_text() == "paged"
