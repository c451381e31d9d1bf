"""Helpers for the alarm-delivery tests: a killable, persistent Mosquitto, daemon configs with a
file outbox, a `seizurewatch subscribe` process, the payload schema, the journal's rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
from conftest import DOG1, MODEL, ROOT, Mosquitto

from seizurewatch.alarms.journal import Journal, JournalError

SCHEMA = json.loads((ROOT / "docs" / "alarm.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def validate(payload: dict[str, Any]) -> None:
    """Raise with every schema violation of one payload."""
    errors = sorted(VALIDATOR.iter_errors(payload), key=lambda e: list(e.path))
    if errors:
        raise AssertionError(f"payload violates docs/alarm.schema.json: {[e.message for e in errors]}: {payload}")


class PersistentMosquitto(Mosquitto):
    """Mosquitto that saves sessions every second (so a SIGKILL keeps the subscriber's
    persistent session) and can be killed outright."""

    def __init__(self, workdir: Path, extra_conf: str = "", port: int | None = None) -> None:
        store = workdir / "mosquitto-store"
        store.mkdir(exist_ok=True)
        self.store_file = store / "mosquitto.db"
        super().__init__(workdir, extra_conf=extra_conf, port=port)
        text = self.conf.read_text().replace("persistence false\n", "")
        # "user root": a broker started by root keeps root, so it can write the store under pytest's 0700 tmp dirs
        self.conf.write_text(text + f"persistence true\npersistence_location {store}/\nautosave_interval 1\n"
                             "user root\n")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def daemon_config(path: Path, broker_url: str, outbox: Path, speed: str | float = 10, patient: str = "bed1",
                  edf: Path = DOG1 / "dog1_rec04.edf", mqtt_extra: str = "", loop: bool = False) -> Path:
    """A one-bed daemon config replaying ``edf``; ``loop`` keeps the daemon online past the recording's end (a test
    that talks to it for as long as a loaded machine takes)."""
    path.write_text(
        f"streams:\n  - patient: {patient}\n"
        f"    source: {{kind: edf, path: {edf}, speed: {speed}, loop: {str(loop).lower()}}}\n"
        f"model: {{path: {MODEL}}}\n"
        f"mqtt:\n  url: {broker_url}\n  drain_timeout_s: 60\n{mqtt_extra}"
        f"outbox: {{path: {outbox}}}\n"
    )
    return path


def start_daemon(config: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "seizurewatch", "--log-level", "INFO", "run", "--config",
                             str(config)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)


def start_subscriber(url: str, out: Path, *extra: str, err: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "seizurewatch", "subscribe", "--mqtt-url", url, "--jsonl",
                             "--retries", "30", *extra], cwd=ROOT, stdout=out.open("ab"),
                            stderr=err.open("ab") if err else subprocess.DEVNULL, env=env)


PAGER = """\
import json, os, sys
payload = json.load(sys.stdin)
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"alarm_id": payload.get("alarm_id"), "env": dict(os.environ)}) + "\\n")
"""


def pager(tmp: Path) -> tuple[str, Path]:
    """An --exec hook that records each call (alarm id and its whole environment); (cmd, record)."""
    script, record = tmp / "pager.py", tmp / "paged.jsonl"
    script.write_text(PAGER)
    record.touch()
    return f"{sys.executable} {script} {record}", record


def wait_subscribed(broker_port: int, out: Path, patient: str, timeout: float = 60, settle: float = 0.0,
                    auth: tuple[str, str] | None = None, store: Path | None = None) -> None:
    """Publish probes on the patient's status topic until the subscriber prints one (it is subscribed).
    ``store``: the broker's persistence file; then also wait until Mosquitto's autosave wrote it after that
    moment (it then holds the subscriber's persistent session, which a SIGKILL of the broker must not lose).
    ``auth``: (user, password) of an account allowed to publish there. ``timeout``: a hang guard only."""
    wait_printed(broker_port, out, patient, "probe", timeout, auth)
    if store is not None:
        subscribed = time.time()
        wait_for(lambda: store.is_file() and store.stat().st_mtime > subscribed, timeout, f"an autosave of {store}")
    time.sleep(settle)


def wait_printed(broker_port: int, out: Path, patient: str, token: str, timeout: float = 60,
                 auth: tuple[str, str] | None = None) -> None:
    """Publish ``token`` (QoS 1) on the patient's status topic until the subscriber writing ``out`` prints it."""
    import asyncio

    import aiomqtt

    user, password = auth or (None, None)

    async def probe() -> None:
        async with aiomqtt.Client("127.0.0.1", broker_port, identifier=f"probe-{uuid.uuid4().hex[:8]}",
                                  username=user, password=password) as c:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                await c.publish(f"seizurewatch/{patient}/status", token.encode(), qos=1)
                if token in out.read_text():
                    return
                await asyncio.sleep(0.2)
            raise AssertionError(f"the subscriber never printed {token!r}")

    asyncio.run(probe())


def wait_all_arrived(broker_port: int, out: Path, patient: str, auth: tuple[str, str] | None = None) -> None:
    """A positive end marker instead of "wait a second for stragglers": a fresh token published after
    everything else reaches the subscriber after whatever the broker already held for it (one session,
    delivered in order), so once it is printed, any duplicate or extra event would have been printed too."""
    wait_printed(broker_port, out, patient, f"end-marker-{uuid.uuid4().hex[:8]}", auth=auth)


def lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def events(path: Path) -> list[dict[str, Any]]:
    return [x for x in lines(path) if x.get("kind") in ("alarm", "fault")]


def wait_for(predicate, timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def journal_rows(path: Path, patient: str = "bed1") -> list[tuple[int, str, float, float | None]]:
    """(seq, payload, created, delivered) straight from the journal, read-only (JournalError if it is not there)."""
    with Journal.read(path) as j:
        return [(r.seq, r.payload, r.created, r.delivered) for r in j.rows(patient)]


def undelivered(path: Path) -> int:
    try:
        with Journal.read(path) as j:
            return j.undelivered()
    except JournalError:
        return 0


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ward_accounts(broker: Any, tmp: Path) -> tuple[str, str, tuple[str, ...], tuple[str, str]]:
    """How the tests' daemon (bedside1, bed1) and station (station1, over TLS) log into a WardMosquitto:
    (daemon mqtt yaml lines, station URL, station CLI args, probe (user, password))."""
    daemon = f"  username: bedside1\n  password_file: {broker.password_file('bedside1')}\n"
    url = f"mqtts://127.0.0.1:{broker.tls_port}"
    station = daemon_config(tmp / "station.yaml", url, tmp / "unused.sqlite3",
                            mqtt_extra=f"  ca_file: {broker.ca}\n  username: station1\n"
                                       f"  password_file: {broker.password_file('station1')}\n")
    return daemon, url, ("--config", str(station)), ("bedside1", broker.password_file("bedside1").read_text().strip())
