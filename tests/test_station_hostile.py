"""The station under hostile and careless input (issue #24): a retained state with NaN or an absurd time,
a cleared retained state, an alarm whose end was missed, DNS rebinding, cross-site acks, a password file
others can read, password guessing; and a real browser that keeps working through all of it."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import aiomqtt
import pytest
from alarm_support import stop
from conftest import ROOT, Mosquitto, free_port, wait_port
from test_station import _browser  # Debian's headless Chromium, as the station's other browser tests drive it

from seizurewatch.config import MqttConfig
from seizurewatch.errors import ConfigError
from seizurewatch.station.server import Station, StationOptions
from seizurewatch.station.ward import Ward


def _state(patient: str, state: str = "ok", wall: float = 1000.0, alarm_id: str | None = None, **kw) -> dict:
    return {"state": state, "patient": patient, "t": 10.0, "wall_time": wall, "probability": 0.2, "faults": [],
            "alarm_id": alarm_id, **kw}


def _start(patient: str, alarm_id: str, wall: float, seq: int = 1) -> dict:
    from seizurewatch.events import Context, Event, to_payload

    ctx = Context(patient=patient, model_name="m", model_sha256="0" * 64, threshold_policy="youden")
    ev = Event("alarm", "start", alarm_id, 66.0, 0.9, 0.5, started_t=66.0, peak_probability=0.9)
    return {**to_payload(ev, ctx, seq=seq, wall_time=wall), "epoch": "00000000000000aa.1"}


HOSTILE = {  # retained states a bedside account may publish on its own bed's topic
    "nan": b'{"state":"ok","patient":"nan","t":1,"wall_time":1700000000,"probability":NaN,"faults":[],'
           b'"alarm_id":null}',
    "inf": b'{"state":"ok","patient":"inf","t":1e999,"wall_time":1700000000,"probability":0.1,"faults":[],'
           b'"alarm_id":null}',
    "far": json.dumps(_state("far", wall=1e300)).encode(),
}


def test_a_hostile_state_is_refused_at_the_boundary_and_the_ward_stays_serialisable():
    async def main() -> tuple[int, dict]:
        st = Station(MqttConfig(), StationOptions())
        await st.handle("seizurewatch/bed1/state", json.dumps(_state("bed1", wall=1.7e9)).encode())
        for patient, raw in HOSTILE.items():
            await st.handle(f"seizurewatch/{patient}/state", raw)
        return st.ignored, json.loads(st.snapshot_json())

    ignored, snap = asyncio.run(main())
    assert ignored == len(HOSTILE)
    assert [b["patient"] for b in snap["beds"]] == ["bed1"]


def test_one_bed_that_cannot_be_shown_is_dropped_and_marked_never_the_page():
    w = Ward()
    w.on_state("bed1", _state("bed1"), 1000.0)
    w.on_state("bad", _state("bad"), 1000.0)
    w.beds["bad"].probability = float("nan")  # however it got there
    snap = w.snapshot(1001.0)
    assert [b["patient"] for b in snap["beds"]] == ["bed1"]
    assert [u["patient"] for u in snap["unreadable"]] == ["bad"]
    json.loads(json.dumps(snap, allow_nan=False))


def test_a_cleared_state_removes_the_bed_and_a_missed_end_is_reconciled_by_the_state():
    async def main() -> dict:
        st = Station(MqttConfig(), StationOptions())
        for bed in ("bed1", "bed2"):
            await st.handle(f"seizurewatch/{bed}/state", json.dumps(_state(bed, wall=1.7e9)).encode())
        await st.handle("seizurewatch/bed1/alarm", json.dumps(_start("bed1", "a" * 16, 1.7e9 + 1)).encode())
        # bed1's daemon crashed; its end was never published; after the restart its state says ok
        await st.handle("seizurewatch/bed1/state", json.dumps(_state("bed1", wall=1.7e9 + 60)).encode())
        await st.handle("seizurewatch/bed2/state", b"")  # bed2 left the ward (retained state cleared)
        return st.ward.snapshot(1.7e9 + 61)

    snap = asyncio.run(main())
    assert [b["patient"] for b in snap["beds"]] == ["bed1"]
    bed1 = snap["beds"][0]
    assert bed1["shown"] == "ok" and bed1["alarms"] == []
    assert [(r["alarm_id"], r["reconciled"]) for r in bed1["review"]] == [("a" * 16, True)]


def test_station_refuses_a_password_file_others_can_read_and_warns_without_tls(tmp_path, caplog):
    pw = tmp_path / "pw"
    pw.write_text("night shift\n")
    pw.chmod(0o644)
    with pytest.raises(ConfigError) as exc:
        StationOptions.from_listen("0.0.0.0:8080", password_file=str(pw))
    assert str(exc.value) == (f"--password-file: {pw} is open to every user (mode 0644); chmod 600 {pw} "
                              "(or 640 with the station's group)")
    pw.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        StationOptions.from_listen("0.0.0.0:8080", password_file=str(pw))
    assert any("without TLS" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        StationOptions.from_listen("127.0.0.1:8080")
    assert not any("without TLS" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------------ real parts

def _station(tmp_path: Path, broker: Mosquitto, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cfg = tmp_path / "station.yaml"
    cfg.write_text(f"mqtt:\n  url: {broker.url}\n")
    proc = subprocess.Popen([sys.executable, "-m", "seizurewatch", "--log-level", "INFO", "station", "--config",
                             str(cfg), "--listen", f"127.0.0.1:{port}", *extra], cwd=ROOT,
                            stdout=(tmp_path / "station.log").open("wb"), stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wait_port(port, timeout=30)
    return proc, port


def _http(port: int, path: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.slow
def test_station_answers_only_its_own_names_origin_and_page_token(tmp_path, mosquitto):
    proc, port = _station(tmp_path, mosquitto)
    try:
        assert _http(port, "/", headers={"Host": f"rebound.example:{port}"})[0] == 421  # DNS rebinding
        assert _http(port, "/api/ward", headers={"Host": "rebound.example"})[0] == 421
        for name in (f"127.0.0.1:{port}", f"localhost:{port}", f"192.0.2.7:{port}", f"[::1]:{port}"):
            assert _http(port, "/api/ward", headers={"Host": name})[0] == 200
        status, _, html = _http(port, "/")
        token = re.search(rb'name="seizurewatch-token" content="([^"]+)"', html)
        assert status == 200 and token and len(token.group(1)) >= 32
        body = json.dumps({"patient": "bed1", "alarm_id": "a" * 16, "action": "false_alarm", "by": "x"}).encode()
        base = {"Content-Type": "application/json", "X-Seizurewatch-Station": "1"}
        assert _http(port, "/api/ack", body, base)[0] == 403  # no page token
        assert _http(port, "/api/ack", body, {**base, "X-Seizurewatch-Token": "guess"})[0] == 403
        own = {**base, "X-Seizurewatch-Token": token.group(1).decode()}
        assert _http(port, "/api/ack", body, {**own, "Origin": "http://evil.example"})[0] == 403
        status, _, answer = _http(port, "/api/ack", body, {**own, "Origin": f"http://127.0.0.1:{port}"})
        assert status == 404 and b"no bed" in answer  # past every check: the bed is simply not there
    finally:
        stop(proc)


@pytest.mark.slow
def test_wrong_passwords_back_off(tmp_path, mosquitto):
    pw = tmp_path / "page.pw"
    pw.write_text("ward-7\n")
    pw.chmod(0o600)
    proc, port = _station(tmp_path, mosquitto, "--password-file", str(pw))
    try:
        bad = {"Authorization": "Basic " + base64.b64encode(b"nurse:guess").decode()}
        good = {"Authorization": "Basic " + base64.b64encode(b"nurse:ward-7").decode()}
        assert _http(port, "/api/ward", headers=good)[0] == 200
        assert [_http(port, "/api/ward", headers=bad)[0] for _ in range(5)] == [401] * 5
        status, headers, _ = _http(port, "/api/ward", headers=good)  # even the right one waits now
        assert status == 429 and int(headers["retry-after"]) >= 1
    finally:
        stop(proc)


async def _publish(port: int, msgs: list[tuple[str, bytes, bool]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="hostile-bedside") as c:
        for topic, body, retain in msgs:
            await c.publish(topic, body, qos=1, retain=retain)


@pytest.mark.slow
def test_browser_keeps_working_while_a_hostile_retained_state_sits_on_the_broker(tmp_path, mosquitto):
    """Hostile retained states (NaN, an overflowing number, a time in the year 10^292) sit on the broker
    before the station starts; a real alarm on bed1 still reaches the page, a cleared bed leaves it, an
    alarm whose end was lost is settled by the bed's state, and a page whose pushes stop says so."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    asyncio.run(_publish(mosquitto.port, [
        *[(f"seizurewatch/{p}/state", raw, True) for p, raw in HOSTILE.items()],
        ("seizurewatch/bed2/state", json.dumps(_state("bed2", wall=1.7e9)).encode(), True),
    ]))
    proc, port = _station(tmp_path, mosquitto)
    driver = _browser()
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 60, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))
        wait.until(lambda d: d.find_elements(By.ID, "bed-bed2"))
        import time

        now = time.time()
        asyncio.run(_publish(mosquitto.port, [
            ("seizurewatch/bed1/state", json.dumps(_state("bed1", "alarm", now, "a" * 16)).encode(), True),
            ("seizurewatch/bed1/alarm", json.dumps(_start("bed1", "a" * 16, now)).encode(), False),
        ]))
        wait.until(lambda d: d.find_element(By.ID, "bed-bed1").get_attribute("data-shown") == "alarm")
        assert not driver.find_elements(By.ID, "bed-nan") and not driver.find_elements(By.ID, "bed-far")
        assert driver.execute_script("return document.getElementById('stale').hidden") is True
        asyncio.run(_publish(mosquitto.port, [
            ("seizurewatch/bed2/state", b"", True),  # bed2 leaves the ward
            ("seizurewatch/bed1/state", json.dumps(_state("bed1", "ok", now + 5)).encode(), True),  # end lost
        ]))
        wait.until(lambda d: not d.find_elements(By.ID, "bed-bed2"))
        wait.until(lambda d: d.find_element(By.ID, "bed-bed1").get_attribute("data-shown") != "alarm")
        assert "Ended alarm, not answered" in driver.find_element(By.ID, "bed-bed1").text
        driver.save_screenshot(str(tmp_path / "hostile.png"))
        os.kill(proc.pid, signal.SIGSTOP)  # the server stops pushing (stuck); the page must say so
        try:
            wait.until(lambda d: d.execute_script("return document.getElementById('stale').hidden") is False)
            assert "No update from the station server" in driver.find_element(By.ID, "stale").text
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        wait.until(lambda d: d.execute_script("return document.getElementById('stale').hidden") is True)
    finally:
        driver.quit()
        stop(proc)
    log = (tmp_path / "station.log").read_text()
    assert "Traceback" not in log, log[-3000:]
