"""The nurse-station page: the ward model, the server's rules (loopback, password, CSRF header, no broker
credentials for the browser), and a real headless Chromium (Debian's chromium + chromium-driver, driven by
selenium) that sees a replayed alarm arrive through a real Mosquitto, clicks Acknowledge, and the ack
comes back journaled by the daemon and published on the broker."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from alarm_support import daemon_config, journal_rows, lines, start_daemon, start_subscriber, stop, validate, wait_for
from conftest import ROOT, Mosquitto, free_port, wait_port

from seizurewatch.errors import ConfigError
from seizurewatch.station.server import StationOptions
from seizurewatch.station.ward import Ward

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
BROKER_PASSWORD = "broker-secret-7f3a"

# The shipped ward ACL (config/mosquitto/seizurewatch.acl), its accounts bedside1 (the daemon of bed1)
# and station1: only the daemon publishes bed1's events, only the station publishes acks.
ACL = (ROOT / "config" / "mosquitto" / "seizurewatch.acl").read_text()


# ------------------------------------------------------------------------------------------------ ward model

def _ev(patient: str, alarm_id: str, event: str, wall: float, kind: str = "alarm", seq: int = 1, **kw) -> dict:
    return {"patient": patient, "alarm_id": alarm_id, "kind": kind, "event": event, "wall_time": wall, "seq": seq,
            "probability": 0.9 if kind == "alarm" else None, "peak_probability": 0.95 if kind == "alarm" else None,
            **kw}


def test_ward_puts_unanswered_alarms_first_then_offline_fault_and_ok():
    w = Ward(stale_s=15.0)
    now = 1000.0
    for bed, state in [("bed-ok", "ok"), ("bed-fault", "fault"), ("bed-old-alarm", "alarm"), ("bed-new-alarm", "alarm"),
                       ("bed-answered", "alarm"), ("bed-silent", "ok")]:
        w.on_status(bed, "online", now - 20 if bed == "bed-silent" else now)
        w.on_state(bed, {"state": state, "probability": 0.2, "wall_time": now - 20 if bed == "bed-silent" else now,
                         "alarm_id": None, "faults": []}, now - 20 if bed == "bed-silent" else now)
    w.on_status("bed-gone", "offline", now)
    w.on_event(_ev("bed-old-alarm", "a" * 16, "start", now - 300), now)
    w.on_event(_ev("bed-new-alarm", "b" * 16, "start", now - 10), now)
    w.on_event(_ev("bed-answered", "c" * 16, "start", now - 600), now)
    w.on_event(_ev("bed-answered", "c" * 16, "ack", now - 500, seq=2, action="ack", by="nurse A"), now)
    w.on_event(_ev("bed-fault", "d" * 16, "start", now - 60, kind="fault", fault_type="stream_lost"), now)
    order = [b["patient"] for b in w.snapshot(now)["beds"]]
    # unanswered alarms (longest waiting first), then what nobody looks at yet, then what someone attends
    assert order[:2] == ["bed-old-alarm", "bed-new-alarm"], order
    assert set(order[2:4]) == {"bed-gone", "bed-silent"}, order
    assert order[4:] == ["bed-fault", "bed-answered", "bed-ok"], order
    w.on_event(_ev("bed-fault", "d" * 16, "ack", now, kind="fault", seq=2, action="ack", by="tech"), now)
    assert [b["patient"] for b in w.snapshot(now)["beds"]][4:] == ["bed-answered", "bed-fault", "bed-ok"]
    shown = {b["patient"]: b["shown"] for b in w.snapshot(now)["beds"]}
    assert shown["bed-silent"] == "offline", "a bed that went silent must not stay 'ok'"
    answered = next(b for b in w.snapshot(now)["beds"] if b["patient"] == "bed-answered")
    assert answered["alarms"][0]["acks"][0]["by"] == "nurse A"


def test_ward_keeps_an_ended_unanswered_alarm_for_review_until_marked():
    w = Ward()
    w.on_event(_ev("bed1", "a" * 16, "start", 100.0), 100.0)
    w.on_event(_ev("bed1", "a" * 16, "end", 110.0, seq=2), 110.0)
    w.on_event(_ev("bed1", "a" * 16, "end", 110.0, seq=2), 110.0)  # duplicate delivery: ignored by seq upstream
    bed = w.snapshot(111.0)["beds"][0]
    assert bed["alarms"] == [] and [r["alarm_id"] for r in bed["review"]] == ["a" * 16]
    w.on_state("bed1", {"state": "ok", "probability": 0.1, "wall_time": 120.0,
                        "acks": [{"alarm_id": "a" * 16, "kind": "alarm", "action": "false_alarm", "by": "N",
                                  "wall_time": 119.0}]}, 120.0)
    assert w.snapshot(121.0)["beds"][0]["review"] == [], "a mark from the retained state settles the review"


def test_station_refuses_a_non_loopback_address_without_a_password(tmp_path):
    with pytest.raises(ConfigError, match="not a loopback address; give --password-file"):
        StationOptions.from_listen("0.0.0.0:8080")
    # one listen-address rule (addresses.parse_listen, as metrics.listen): a bare port is loopback; a host is an
    # IP address or localhost
    assert (StationOptions.from_listen("8080").host, StationOptions.from_listen("8080").port) == ("127.0.0.1", 8080)
    for bad in ("ward-pc:8080", "127.0.0.1:http", "127.0.0.1:99999", ""):
        with pytest.raises(ConfigError, match="--listen: expected HOST:PORT"):
            StationOptions.from_listen(bad)
    (tmp_path / "pw").write_text("")
    (tmp_path / "pw").chmod(0o600)  # a password file others can read is refused
    with pytest.raises(ConfigError, match="is empty"):
        StationOptions.from_listen("0.0.0.0:8080", password_file=str(tmp_path / "pw"))
    (tmp_path / "pw").write_text("night shift\n")
    opts = StationOptions.from_listen("0.0.0.0:8080", password_file=str(tmp_path / "pw"))
    assert opts.password == "night shift" and opts.host == "0.0.0.0"
    assert StationOptions.from_listen("127.0.0.1:9000").password is None
    assert StationOptions.from_listen("[::1]:9000").host == "::1"


# ------------------------------------------------------------------------------------------------ real parts

def _passwords(tmp_path: Path) -> Path:
    exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(exe).exists():
        pytest.skip("mosquitto_passwd not installed (apt-get install mosquitto)")
    pw = tmp_path / "passwords"
    subprocess.run([exe, "-b", "-c", str(pw), "bedside1", "bedside-secret"], check=True)
    subprocess.run([exe, "-b", str(pw), "station1", BROKER_PASSWORD], check=True)
    os.chmod(pw, 0o600)
    (tmp_path / "acl").write_text(ACL)
    for name, secret in (("bedside.pw", "bedside-secret"), ("station.pw", BROKER_PASSWORD)):
        (tmp_path / name).write_text(secret + "\n")
        os.chmod(tmp_path / name, 0o600)  # a password file others can read is refused
    return pw


@pytest.fixture
def secured_broker(tmp_path):
    pw = _passwords(tmp_path)
    broker = Mosquitto(tmp_path, extra_conf=f"allow_anonymous false\npassword_file {pw}\nacl_file {tmp_path / 'acl'}\n"
                                            "user root\n")
    broker.start()
    yield broker
    broker.stop()


def _station_config(tmp_path: Path, broker: Mosquitto) -> Path:
    cfg = tmp_path / "station.yaml"  # a station's own file: only the mqtt section, the password file relative
    cfg.write_text(f"mqtt:\n  url: {broker.url}\n  username: station1\n  password_file: station.pw\n")
    return cfg


def _start_station(tmp_path: Path, broker: Mosquitto, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = (tmp_path / "station.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "seizurewatch", "--log-level", "INFO", "station", "--config",
                             str(_station_config(tmp_path, broker)), "--listen", f"127.0.0.1:{port}", *extra],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wait_port(port, timeout=30)
    return proc, port


def _http(port: int, path: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.slow
def test_station_password_csrf_header_and_no_broker_credentials_for_the_browser(tmp_path, secured_broker):
    (tmp_path / "page.pw").write_text("ward-7\n")
    (tmp_path / "page.pw").chmod(0o600)
    proc, port = _start_station(tmp_path, secured_broker, "--password-file", str(tmp_path / "page.pw"))
    try:
        assert _http(port, "/")[0] == 401
        bad = {"Authorization": "Basic " + base64.b64encode(b"nurse:wrong").decode()}
        assert _http(port, "/api/ward", headers=bad)[0] == 401
        good = {"Authorization": "Basic " + base64.b64encode(b"nurse:ward-7").decode()}
        wait_for(lambda: json.loads(_http(port, "/api/ward", headers=good)[1])["broker"]["connected"], 30,
                 "the station to connect to the password-protected broker")
        served = b"".join(_http(port, p, headers=good)[1] for p in ("/", "/api/ward", "/static/station.js",
                                                                   "/static/station.css"))
        assert b"seizurewatch" in served
        assert BROKER_PASSWORD.encode() not in served and b"station.pw" not in served
        body = json.dumps({"patient": "bed1", "alarm_id": "a" * 16, "action": "ack", "by": "x"}).encode()
        status, _ = _http(port, "/api/ack", body, {**good, "Content-Type": "application/json"})
        assert status == 403, "an ack without the station's header (a cross-site form) was accepted"
        token = json.dumps(_http(port, "/", headers=good)[1].decode().split('seizurewatch-token" content="')[1]
                           .split('"')[0])[1:-1]
        status, answer = _http(port, "/api/ack", body, {**good, "Content-Type": "application/json",
                                                        "X-Seizurewatch-Station": "1", "X-Seizurewatch-Token": token})
        assert status == 404 and b"no bed" in answer
    finally:
        stop(proc)


def _browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are needed (scripts/test.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)


@pytest.mark.slow
def test_browser_sees_the_alarm_clicks_acknowledge_and_the_daemon_journals_it(tmp_path, secured_broker):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    outbox = tmp_path / "outbox.sqlite3"
    creds = f"  username: bedside1\n  password_file: {tmp_path / 'bedside.pw'}\n"
    cfg = daemon_config(tmp_path / "bedside.yaml", secured_broker.url, outbox, speed=4, mqtt_extra=creds)
    station, port = _start_station(tmp_path, secured_broker, "--station-name", "ward 7 desk")
    sub_out = tmp_path / "subscriber.jsonl"
    sub_cfg = _station_config(tmp_path, secured_broker)
    subscriber = start_subscriber(secured_broker.url, sub_out, "--config", str(sub_cfg))
    daemon = start_daemon(cfg, tmp_path / "daemon.log")
    driver = _browser()
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 120, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))
        wait.until(lambda d: d.find_element(By.ID, "bed-bed1").get_attribute("data-shown") == "alarm")
        card = driver.find_element(By.ID, "bed-bed1")
        assert "ALARM" in card.find_element(By.CLASS_NAME, "badge").text, "colour without the word"
        assert card.find_element(By.CLASS_NAME, "model").text == "model: dog1-hills-early"  # the model in force
        assert driver.find_elements(By.CSS_SELECTOR, "#beds > section")[0].get_attribute("id") == "bed-bed1"
        name = driver.find_element(By.ID, "by")
        name.send_keys("nurse Selenium")
        driver.execute_script("arguments[0].dispatchEvent(new Event('change'))", name)
        if os.environ.get("SEIZUREWATCH_STATION_SCREENSHOT"):
            driver.save_screenshot(os.environ["SEIZUREWATCH_STATION_SCREENSHOT"])

        def click(d) -> bool:
            d.find_element(By.CSS_SELECTOR, "#bed-bed1 button.ack").click()
            return True

        wait.until(click)
        wait.until(lambda d: "Acknowledged by nurse Selenium" in d.find_element(By.ID, "bed-bed1").text)
        driver.save_screenshot(str(tmp_path / "after-ack.png"))
        wait_for(lambda: any(e.get("event") == "ack" for e in lines(sub_out)), 30, "the ack event on the broker")
        assert daemon.wait(120) == 0, (tmp_path / "daemon.log").read_text()[-2000:]
    finally:
        driver.quit()
        stop(daemon)
        stop(subscriber)
        stop(station)
    on_broker = [e for e in lines(sub_out) if e.get("event") == "ack"]
    assert len(on_broker) == 1 and on_broker[0]["by"] == "nurse Selenium" and on_broker[0]["action"] == "ack"
    journaled = [json.loads(r[1]) for r in journal_rows(outbox)]
    acks = [p for p in journaled if p["event"] == "ack"]
    assert [(a["alarm_id"], a["by"], a["seq"]) for a in acks] == [(on_broker[0]["alarm_id"], "nurse Selenium",
                                                                   on_broker[0]["seq"])]
    starts = [p for p in journaled if p["event"] == "start" and p["kind"] == "alarm"]
    assert acks[0]["alarm_id"] in {s["alarm_id"] for s in starts}
    validate(acks[0])
    states = [e for e in lines(sub_out) if e.get("kind") == "state" and e.get("acks")]
    assert states and states[-1]["acks"][-1]["by"] == "nurse Selenium", "retained state does not say who acknowledged"


def test_a_station_file_holds_only_its_mqtt_section(tmp_path):
    from seizurewatch.config import load_mqtt_section

    (tmp_path / "station.yaml").write_text("mqtt:\n  url: mqtts://broker.ward:8883\n  username: station\n"
                                           "  password_file: secrets/station.pw\n  ca_file: /etc/ward-ca.crt\n")
    cfg = load_mqtt_section(tmp_path / "station.yaml")
    assert cfg.username == "station" and cfg.password_file == str(tmp_path / "secrets" / "station.pw")
    assert cfg.ca_file == "/etc/ward-ca.crt"
    (tmp_path / "bad.yaml").write_text("mqtt:\n  urll: mqtt://x\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: mqtt.urll: unknown key"):
        load_mqtt_section(tmp_path / "bad.yaml")
    (tmp_path / "worse.yaml").write_text("- just a list\n")
    with pytest.raises(ConfigError, match="expected a mapping with an 'mqtt:' section"):
        load_mqtt_section(tmp_path / "worse.yaml")
