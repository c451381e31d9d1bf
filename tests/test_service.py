"""The daemon as a service, as systemd runs it: a subprocess with NOTIFY_SOCKET / WATCHDOG_USEC
pointing at a datagram socket this test owns, a real Mosquitto, real EDF replay and a real
LSL outlet on loopback; signals as systemd sends them; /metrics scraped over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
import yaml
from conftest import DOG1, MODEL, ROOT, free_port

from seizurewatch.alarms.journal import Journal
from seizurewatch.modelfile import load_model

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]

DEVICE = ROOT / "devices" / "dog1-ecog16.yaml"
REC04 = DOG1 / "dog1_rec04.edf"


# ----- helpers -----------------------------------------------------------------------------
class NotifySocket:
    """What systemd's side of sd_notify sees: every datagram, with its arrival time."""

    def __init__(self) -> None:
        self.address = f"@seizurewatch-test-{uuid.uuid4().hex[:12]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._recv, daemon=True)
        self._thread.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            now = time.monotonic()
            for line in data.decode().splitlines():
                self.messages.append((now, line))

    def lines(self, prefix: str, since: float = 0.0) -> list[tuple[float, str]]:
        return [(t, m) for t, m in list(self.messages) if m.startswith(prefix) and t >= since]

    def wait_for(self, prefix: str, timeout: float, since: float = 0.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.lines(prefix, since)
            if got:
                return got[0][0]
            time.sleep(0.05)
        raise AssertionError(f"no {prefix!r} within {timeout} s; got {[m for _, m in self.messages][-10:]}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class Subscriber:
    """The nurse station: every message on seizurewatch/<patient>/#, in arrival order."""

    def __init__(self, port: int, patient: str) -> None:
        self.messages: list[tuple[str, str]] = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"seizurewatch/{patient}/#", qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload.decode()))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(60), "subscriber could not subscribe"

    def events(self, kind: str = "alarm") -> list[dict[str, Any]]:
        return [json.loads(p) for t, p in list(self.messages) if t.endswith(f"/{kind}")]

    def wait(self, pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; got {self.messages[-8:]}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Daemon:
    """``python -m seizurewatch run --config`` as systemd would start it; stderr (JSON logs) collected."""

    def __init__(self, config: Path, notify: NotifySocket, watchdog_usec: int = 1_000_000) -> None:
        env = dict(os.environ, NOTIFY_SOCKET=notify.address, WATCHDOG_USEC=str(watchdog_usec),
                   PYTHONUNBUFFERED="1")
        env.pop("WATCHDOG_PID", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "seizurewatch", "--log-format", "json", "run",
                                      "--config", str(config)], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.log: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.raw.append(line)
            try:
                self.log.append(json.loads(line))
            except json.JSONDecodeError:
                pass

    def logged(self, msg: str) -> list[dict[str, Any]]:
        return [r for r in list(self.log) if r.get("msg") == msg]

    def wait_logged(self, msg: str, timeout: float, count: int = 1) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.logged(msg)
            if len(got) >= count:
                return got[count - 1]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no log line {msg!r}; stderr tail: {''.join(self.raw[-15:])}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def write_config(path: Path, mqtt_url: str, source: dict[str, Any], patient: str = "bed1",
                 decision: dict[str, Any] | None = None, metrics_port: int | None = None) -> Path:
    cfg: dict[str, Any] = {
        "streams": [{"patient": patient, "device": str(DEVICE), "source": source}],
        "model": {"path": str(MODEL), "threads": 1},
        "decision": decision or {},
        "mqtt": {"url": mqtt_url},
        "outbox": {"path": str(path.parent / "outbox.sqlite3")},
        "logging": {"level": "INFO", "format": "json"},
    }
    if metrics_port:
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    path.write_text(yaml.safe_dump(cfg))
    return path


def scrape(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def wait_until(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll ``pred`` until true; ``timeout`` is a hang guard only."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def undelivered(outbox: Path) -> int:
    with Journal.read(outbox) as j:
        return j.undelivered()


@pytest.fixture
def notify():
    n = NotifySocket()
    yield n
    n.close()


# ----- tests -------------------------------------------------------------------------------
def test_ready_watchdog_metrics_then_sigterm_during_alarm_drains(tmp_path, mosquitto, notify):
    """READY after model+broker+samples; WATCHDOG while replaying; counters move; SIGTERM mid-alarm
    ends the alarm, publishes offline, leaves nothing undelivered in the journal, exits 0."""
    mport = free_port()
    # speed 5: the alarm (about 68-104 s of signal) stays open 7 s of wall time for the scrape and the SIGTERM
    cfg = write_config(tmp_path / "bed1.yaml", mosquitto.url, {"kind": "edf", "path": str(REC04), "speed": 5},
                       metrics_port=mport)
    sub = Subscriber(mosquitto.port, "bed1")
    d = Daemon(cfg, notify)
    try:
        t_ready = notify.wait_for("READY=1", timeout=60)
        ready_log = d.wait_logged("ready", 60)
        assert ready_log["startup_s"] > 0
        started = d.logged("started")[0]  # torch's thread pools set from model.threads, not left to torch
        assert started["torch_threads"] == 1 and started["torch_interop_threads"] == 1
        assert started["streams"] == ["bed1"] and started["model"] == "dog1-hills-early"
        statuses = [m for _, m in notify.lines("STATUS=")]
        assert any("loading model" in s for s in statuses), statuses  # said what it was doing before READY
        first = scrape(mport)
        assert first["seizurewatch_broker_connected{patient=bed1}"] == 1
        assert first["seizurewatch_stream_connected{patient=bed1}"] == 1
        info = [k for k in first if k.startswith("seizurewatch_model_info{")]
        shipped = load_model(MODEL).meta.threshold
        assert len(info) == 1 and "name=dog1-hills-early" in info[0] and f"threshold={shipped:.5g}" in info[0], info
        assert first["seizurewatch_threshold{patient=bed1}"] == pytest.approx(shipped, abs=1e-3)
        assert first["process_resident_memory_bytes{}"] > 50e6

        sub.wait(lambda: any(e["event"] == "start" for e in sub.events()), 60, "alarm start")
        second = scrape(mport)
        for name in ("seizurewatch_samples_received_total", "seizurewatch_windows_classified_total",
                     "seizurewatch_inference_seconds_count", "seizurewatch_end_to_end_seconds_count"):
            assert second[f"{name}{{patient=bed1}}"] > first.get(f"{name}{{patient=bed1}}", 0), name
        assert second["seizurewatch_alarms_total{event=start,patient=bed1}"] == 1
        assert second["seizurewatch_alarm_active{patient=bed1}"] == 1
        assert 0 <= second["seizurewatch_buffer_fill_ratio{patient=bed1}"] <= 1
        assert second["seizurewatch_probability{patient=bed1}"] >= 0.3
        pings = notify.lines("WATCHDOG=1", since=t_ready)
        assert len(pings) >= 2, "no periodic watchdog pings while the replay runs"

        d.signal(signal.SIGTERM)
        rc = d.wait(60)
        assert rc == 0, "".join(d.raw[-20:])
    finally:
        d.kill()
    sub.wait(lambda: sub.messages and sub.messages[-1] == ("seizurewatch/bed1/status", "offline"), 60, "offline")
    sub.close()
    alarms = sub.events()
    assert alarms[-1]["event"] == "end" and alarms[-1]["alarm_id"] == alarms[0]["alarm_id"]
    assert alarms[-1]["t"] < 118, "the replay ran to its end: SIGTERM did not stop it"
    assert undelivered(tmp_path / "outbox.sqlite3") == 0
    assert notify.lines("STOPPING=1")
    assert d.logged("draining") and d.logged("stopped")


def test_sigterm_with_a_hung_broker_still_exits_0_and_keeps_the_events(tmp_path, mosquitto, notify):
    """The broker freezes (SIGSTOP: the TCP connection stays open, no PUBACK ever comes) during an
    alarm; SIGTERM must still end the process with status 0, the unsent events kept in the journal."""
    cfg = write_config(tmp_path / "bed1.yaml", mosquitto.url, {"kind": "edf", "path": str(REC04), "speed": 10})
    sub = Subscriber(mosquitto.port, "bed1")
    d = Daemon(cfg, notify)
    assert mosquitto.proc is not None
    try:
        notify.wait_for("READY=1", timeout=60)
        sub.wait(lambda: any(e["event"] == "start" for e in sub.events()), 60, "alarm start")
        mosquitto.proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: undelivered(tmp_path / "outbox.sqlite3") >= 1, 60, "an event journaled, not acknowledged")
        d.signal(signal.SIGTERM)
        assert d.wait(60) == 0, "".join(d.raw[-20:])
    finally:
        mosquitto.proc.send_signal(signal.SIGCONT)
        d.kill()
        sub.close()
    assert undelivered(tmp_path / "outbox.sqlite3") >= 1  # at least the alarm's end: kept for the next start
    with Journal.read(tmp_path / "outbox.sqlite3") as j:
        kinds = [json.loads(r.payload)["event"] for r in j.rows(undelivered=True)]
    assert "end" in kinds
    # the link gives up at mqtt.drain_timeout_s (the bound in force; the service's timer is a margin behind it)
    assert d.logged("shutting down with undelivered events; they are resent at the next start") or \
        d.logged("drain did not finish in time; exiting with undelivered events kept in the outbox")
    assert not d.logged("pipeline stalled; withholding watchdog pings so systemd restarts us")  # draining != stalled


def test_sighup_changes_threshold_and_broken_config_keeps_the_old(tmp_path, mosquitto, notify):
    src = {"kind": "edf", "path": str(REC04), "speed": 10, "loop": True}
    cfg = write_config(tmp_path / "bed1.yaml", mosquitto.url, src, decision={"threshold": 0.3})
    sub = Subscriber(mosquitto.port, "bed1")
    d = Daemon(cfg, notify)
    try:
        notify.wait_for("READY=1", timeout=60)
        sub.wait(lambda: any(e["event"] == "start" for e in sub.events()), 60, "alarm start")
        assert sub.events()[0]["threshold"] == pytest.approx(0.3)

        write_config(cfg, mosquitto.url, src, decision={"threshold": 0.6})
        t_hup = notify.lines("")[-1][0]
        d.signal(signal.SIGHUP)
        reloaded = d.wait_logged("config reloaded", 60)
        assert reloaded["threshold"] == pytest.approx(0.6)
        notify.wait_for("RELOADING=1", 60, since=t_hup)
        n_before = len(sub.events())
        sub.wait(lambda: len(sub.events()) >= n_before + 2, 30, "events after the reload")
        after = [e for e in sub.events() if e["wall_time"] > reloaded["ts"] + 0.01]
        assert after and all(e["threshold"] == pytest.approx(0.6) for e in after), after

        cfg.write_text(cfg.read_text().replace("threshold: 0.6", "threshold: three"))
        d.signal(signal.SIGHUP)
        rejected = d.wait_logged("reload rejected; keeping the running config", 60)
        assert "decision.threshold" in rejected["error"] and str(cfg) in rejected["error"]
        n_before = len(sub.events())
        sub.wait(lambda: len(sub.events()) >= n_before + 2, 30, "events after the rejected reload")
        later = [e for e in sub.events() if e["wall_time"] > rejected["ts"] + 0.01]
        assert later and all(e["threshold"] == pytest.approx(0.6) for e in later)
        assert d.proc.poll() is None, "a broken config took the daemon down"
        # the stream was never dropped: no gap/lost faults, no offline in between
        assert not [f for f in sub.events("fault") if f["fault_type"] in ("stream_gap", "stream_lost")]
        assert ("seizurewatch/bed1/status", "offline") not in sub.messages
        d.signal(signal.SIGTERM)
        assert d.wait(60) == 0
    finally:
        d.kill()
        sub.close()


class StallableOutlet:
    """A stand-in amplifier: a real LSL outlet pushing dog1_rec04 in real time from a thread,
    which can freeze (stop pushing, like a hung driver) and resume."""

    def __init__(self, source_id: str) -> None:
        from seizurewatch.edfio import EdfRecording
        from seizurewatch.lslconfig import import_pylsl

        self.pylsl = pylsl = import_pylsl()
        rec = EdfRecording(str(REC04))
        self.rate = rec.header.rate
        self.data = rec.read(0, rec.header.n_samples).astype(np.float32)
        labels = rec.header.channels
        rec.close()
        info = pylsl.StreamInfo("stall-test", "EEG", len(labels), self.rate, pylsl.cf_float32, source_id)
        chans = info.desc().append_child("channels")
        for lab in labels:
            c = chans.append_child("channel")
            c.append_child_value("label", lab)
            c.append_child_value("unit", "microvolts")
            c.append_child_value("type", "EEG")
        self.outlet = pylsl.StreamOutlet(info, chunk_size=40)
        self.running = threading.Event()
        self.running.set()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._push, daemon=True)
        self.thread.start()

    def _push(self) -> None:
        chunk = int(self.rate / 10)
        pos = 0
        next_t = time.monotonic()
        while not self._stop.is_set():
            if not self.running.is_set():
                self.running.wait(0.1)
                next_t = time.monotonic()
                continue
            block = self.data[:, pos:pos + chunk]
            if block.shape[1] < chunk:
                pos = 0
                continue
            self.outlet.push_chunk(np.ascontiguousarray(block.T))
            pos += chunk
            next_t += chunk / self.rate
            time.sleep(max(next_t - time.monotonic(), 0))

    def close(self) -> None:
        self._stop.set()
        self.running.set()
        self.thread.join(5)
        del self.outlet


def test_watchdog_pings_stop_while_the_source_stalls_and_resume(tmp_path, mosquitto, notify):
    sid = f"stall-{uuid.uuid4().hex[:8]}"
    outlet = StallableOutlet(sid)
    src = {"kind": "lsl", "source_id": sid, "type": "EEG", "resolve_timeout_s": 15, "lost_after_s": 60}
    cfg = write_config(tmp_path / "bed1.yaml", mosquitto.url, src)
    d = Daemon(cfg, notify, watchdog_usec=1_000_000)
    try:
        t_ready = notify.wait_for("READY=1", timeout=60)
        wait_until(lambda: len(notify.lines("WATCHDOG=1", since=t_ready)) >= 2, 60, "two pings while samples flow")
        outlet.running.clear()  # the amplifier driver hangs: no more samples, no disconnect
        d.wait_logged("pipeline stalled; withholding watchdog pings so systemd restarts us", 60)
        # Each watchdog tick that withholds its ping says so in STATUS= (with the stall's age in seconds, so a new
        # line about every second), on the same socket as the pings, in order: between the first and the third
        # such line, ticks ran and none pinged. (Before the first, the pipeline may still work off its queue.)
        wait_until(lambda: len(notify.lines("STATUS=STALLED")) >= 3, 60, "three ticks that withheld their ping")
        said = [m for _, m in list(notify.messages)]
        stalled_at = [i for i, m in enumerate(said) if m.startswith("STATUS=STALLED")]
        assert "WATCHDOG=1" not in said[stalled_at[0]:stalled_at[2]], "pinged although nothing moved"
        assert d.proc.poll() is None
        outlet.running.set()  # the driver comes back
        t_resume = time.monotonic()
        notify.wait_for("WATCHDOG=1", timeout=60, since=t_resume)
        d.signal(signal.SIGTERM)
        assert d.wait(60) == 0
    finally:
        d.kill()
        outlet.close()


# ----- the unit file ---------------------------------------------------------------------
UNIT = ROOT / "systemd" / "seizurewatch@.service"


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_passes_systemd_analyze_verify(tmp_path):
    import shutil

    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (scripts/test.sh installs the Debian 'systemd' package)")
    cli = Path(sys.executable).with_name("seizurewatch")
    assert cli.exists(), f"console script missing next to {sys.executable}"
    text = UNIT.read_text().replace("/opt/seizurewatch/venv/bin/seizurewatch", str(cli))
    unit = tmp_path / "seizurewatch@bed1.service"
    unit.write_text(text)
    r = subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "not executable" not in r.stderr and unit.name not in r.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {r.stderr.strip()[:200]}")
    # verify exits 0 even for unknown keys or unparsable values: any line about our unit is a failure
    assert r.returncode == 0 and unit.name not in r.stderr + r.stdout, r.stderr


def test_unit_has_the_service_contract():
    s = unit_settings(UNIT.read_text())
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert int(one["WatchdogSec"]) > 0 and one["Restart"] == "on-failure"
    assert one["ExecReload"].endswith("kill -HUP $MAINPID")
    assert one["User"] == "seizurewatch" and "DynamicUser" not in s
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "CapabilityBoundingSet": ""}.items():
        assert one[key] == value, key
    assert set(one["RestrictAddressFamilies"].split()) >= {"AF_UNIX", "AF_INET"}
    assert one["MemoryMax"].endswith("M")
    assert "--config /etc/seizurewatch/%i.yaml" in one["ExecStart"]
    # the shipped bedside config journals into the unit's StateDirectory
    bedside = yaml.safe_load((ROOT / "config" / "bedside.yaml").read_text())
    patient = bedside["streams"][0]["patient"]
    state_dir = "/var/lib/" + one["StateDirectory"].replace("%i", patient)
    assert bedside["outbox"]["path"].startswith(state_dir + "/")
    # the drain bound (mqtt.drain_timeout_s, the one in force, plus the service's margin) fits inside the stop
    # timeout, for the default and for the shipped bedside config
    from seizurewatch.config import MqttConfig
    from seizurewatch.service import DRAIN_MARGIN_S

    drain = bedside.get("mqtt", {}).get("drain_timeout_s", MqttConfig().drain_timeout_s)
    for seconds in (MqttConfig().drain_timeout_s, drain):
        assert seconds + DRAIN_MARGIN_S < int(one["TimeoutStopSec"])
