"""Secure MQTT: TLS with a CA made in the test, username/password against Mosquitto's password
file, client certificates, MQTT v5, and the config's refusal of plaintext to remote brokers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest
from alarm_support import daemon_config, events, stop, validate, wait_for
from conftest import DOG1, OPENSSL, ROOT, Mosquitto, make_ca, make_cert, run_cli

from seizurewatch.alarms.mqtt import PatientLink
from seizurewatch.alarms.outbox import Outbox
from seizurewatch.alarms.security import client_kwargs
from seizurewatch.config import MqttConfig
from seizurewatch.errors import BrokerError, ConfigError

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

PASSWORD = "s3cret-Pa55word!"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    if not Path(OPENSSL).exists():
        pytest.skip("openssl CLI not installed")
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_cert(d, "server", "ca", san="IP:127.0.0.1,DNS:localhost")
    make_cert(d, "nurse", "ca")
    make_ca(d, "other-ca")
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(passwd).exists():
        pytest.skip("mosquitto_passwd not installed")
    subprocess.run([passwd, "-b", "-c", str(d / "passwords"), "bedside", PASSWORD], check=True, capture_output=True)
    (d / "password.txt").write_text(PASSWORD + "\n")
    (d / "wrong.txt").write_text("not-the-password\n")
    for name in ("password.txt", "wrong.txt"):
        (d / name).chmod(0o600)  # a password file others can read is refused
    return d


def tls_broker(tmp_path: Path, pki: Path, require_cert: bool = False) -> Mosquitto:
    conf = (f"allow_anonymous false\npassword_file {pki / 'passwords'}\ncafile {pki / 'ca.crt'}\n"
            f"certfile {pki / 'server.crt'}\nkeyfile {pki / 'server.key'}\n"
            # a broker started by root keeps root, so it can read files under pytest's 0700 tmp dirs
            "user root\n")
    if require_cert:
        conf += "require_certificate true\n"
    b = Mosquitto(tmp_path, extra_conf=conf)
    b.start()
    return b


def mqtt_cfg(b: Mosquitto, pki: Path, **kw) -> MqttConfig:
    base = dict(url=f"mqtts://127.0.0.1:{b.port}", ca_file=str(pki / "ca.crt"), username="bedside",
                password_file=str(pki / "password.txt"))
    base.update(kw)
    return MqttConfig(**{k: v for k, v in base.items() if v is not None})


def _status_probe(b: Mosquitto, pki: Path, out: Path) -> str:
    """Publish a retained-free 'online' probe over TLS; returns what the subscriber printed so far."""
    cfg = mqtt_cfg(b, pki)

    async def main() -> None:
        async with aiomqtt.Client(**client_kwargs(cfg), identifier="probe") as c:
            await c.publish("seizurewatch/bedT/status", b"online", qos=1)

    asyncio.run(main())
    return out.read_text()


def check(cfg: MqttConfig) -> PatientLink:
    async def main() -> PatientLink:
        link = PatientLink(cfg, Outbox(":memory:"), "bedT")
        await link.check()
        return link

    return asyncio.run(main())


@pytest.mark.slow
def test_replay_over_tls_with_password_reaches_a_tls_subscriber(tmp_path, pki):
    b = tls_broker(tmp_path, pki)
    try:
        extra = (f"  ca_file: {pki / 'ca.crt'}\n  username: bedside\n  password_file: {pki / 'password.txt'}\n")
        cfg = daemon_config(tmp_path / "tls.yaml", f"mqtts://127.0.0.1:{b.port}", tmp_path / "j.sqlite3",
                            speed="max", patient="bedT", mqtt_extra=extra)
        out = tmp_path / "sub.jsonl"
        sub = subprocess.Popen([sys.executable, "-m", "seizurewatch", "subscribe", "--config", str(cfg),
                                "--patient", "bedT", "--jsonl"], cwd=ROOT, stdout=out.open("w"),
                               stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: sub.poll() is None and "online" in _status_probe(b, pki, out), 30, "the subscriber")
            r = run_cli("--log-level", "DEBUG", "replay", str(DOG1 / "dog1_rec04.edf"), "--config", str(cfg),
                        "--patient", "bedT", "--jsonl")
            assert r.returncode == 0, r.stderr[-2000:]
            sent = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
            wait_for(lambda: len(events(out)) >= len(sent), 30, "the events over TLS")
        finally:
            stop(sub)
        err = sub.stderr.read() if sub.stderr else ""
    finally:
        b.stop()
    got = events(out)
    assert got == sent and any(e["kind"] == "alarm" and e["event"] == "start" for e in got)
    for e in got:
        validate(e)
    out = out.read_text()
    assert PASSWORD not in r.stderr + r.stdout + out + err  # never logged, even at DEBUG


@pytest.mark.slow
def test_tls_password_connects_with_mqtt_v5(tmp_path, pki, monkeypatch):
    b = tls_broker(tmp_path, pki)
    try:
        link = check(mqtt_cfg(b, pki))
        assert link.policy.protocols[0] == aiomqtt.ProtocolVersion.V5
        monkeypatch.setenv("SW_TEST_MQTT_PASSWORD", PASSWORD)
        link = check(mqtt_cfg(b, pki, password_file=None, password_env="SW_TEST_MQTT_PASSWORD", protocol="v311"))
        assert link.policy.protocols[0] == aiomqtt.ProtocolVersion.V311
    finally:
        b.stop()


@pytest.mark.slow
def test_wrong_password_is_one_clear_line_naming_the_broker_and_never_the_password(tmp_path, pki):
    b = tls_broker(tmp_path, pki)
    try:
        with pytest.raises(BrokerError) as exc:
            check(mqtt_cfg(b, pki, password_file=str(pki / "wrong.txt")))
        msg = str(exc.value)
        assert f"mqtts://127.0.0.1:{b.port}" in msg and "refused the login" in msg and "'bedside'" in msg
        assert "not-the-password" not in msg and "\n" not in msg
        # the daemon: exit 3, one line
        extra = (f"  ca_file: {pki / 'ca.crt'}\n  username: bedside\n  password_file: {pki / 'wrong.txt'}\n")
        cfg = daemon_config(tmp_path / "bad.yaml", f"mqtts://127.0.0.1:{b.port}", tmp_path / "j.sqlite3",
                            mqtt_extra=extra)
        r = run_cli("--log-level", "DEBUG", "run", "--config", str(cfg))
        assert r.returncode == 3, r.stderr[-2000:]
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("seizurewatch: error: MQTT broker mqtts://127.0.0.1:") and "refused the login" in last
        assert "not-the-password" not in r.stderr and "Traceback" not in r.stderr
        # the subscriber: exit 3 at once (a bad login is not retried)
        r = run_cli("subscribe", "--config", str(cfg), timeout=60)
        assert r.returncode == 3 and "refused the login" in r.stderr and "not-the-password" not in r.stderr
    finally:
        b.stop()


@pytest.mark.slow
def test_broker_certificate_from_another_ca_is_refused(tmp_path, pki):
    b = tls_broker(tmp_path, pki)
    try:
        with pytest.raises(BrokerError, match=r"TLS handshake failed .*check mqtt.ca_file"):
            check(mqtt_cfg(b, pki, ca_file=str(pki / "other-ca.crt")))
    finally:
        b.stop()


@pytest.mark.slow
def test_client_certificate_when_the_broker_requires_one(tmp_path, pki):
    b = tls_broker(tmp_path, pki, require_cert=True)
    try:
        check(mqtt_cfg(b, pki, cert_file=str(pki / "nurse.crt"), key_file=str(pki / "nurse.key")))
        with pytest.raises(BrokerError, match=rf"MQTT broker mqtts://127.0.0.1:{b.port}"):
            check(mqtt_cfg(b, pki, connect_timeout_s=1.0))
    finally:
        b.stop()


def test_plaintext_to_a_remote_broker_is_refused_unless_allowed():
    with pytest.raises(ConfigError, match="refusing plaintext MQTT to non-loopback host broker.ward"):
        client_kwargs(MqttConfig(url="mqtt://broker.ward:1883"))
    kw = client_kwargs(MqttConfig(url="mqtt://broker.ward:1883", allow_plaintext_remote=True))
    assert kw["hostname"] == "broker.ward" and "tls_context" not in kw
    for host in ("127.0.0.1", "localhost", "[::1]"):
        assert "tls_context" not in client_kwargs(MqttConfig(url=f"mqtt://{host}:1883"))


def test_password_rules(tmp_path, monkeypatch):
    # one URL rule (addresses.parse_broker_url): refused where the config is read and where --mqtt-url is used
    with pytest.raises(ValueError, match="url: a password in the URL is refused") as exc:
        MqttConfig(url="mqtts://nurse:hunter2@broker.ward:8883")
    assert "hunter2" not in str(exc.value)
    with pytest.raises(ConfigError, match="mqtt.url: a password in the URL is refused") as exc:
        client_kwargs(MqttConfig(), "mqtts://nurse:hunter2@broker.ward:8883")
    assert "hunter2" not in str(exc.value)
    with pytest.raises(ConfigError, match="mqtt.password_env: environment variable SW_NOPE is not set"):
        client_kwargs(MqttConfig(username="u", password_env="SW_NOPE"))
    with pytest.raises(ConfigError, match="mqtt.password_file: cannot read"):
        client_kwargs(MqttConfig(username="u", password_file=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="mqtt.ca_file: file not found"):
        client_kwargs(MqttConfig(url="mqtts://127.0.0.1:8883", ca_file=str(tmp_path / "missing.crt")))
    (tmp_path / "pw").write_text("topsecret\n")
    (tmp_path / "pw").chmod(0o600)
    kw = client_kwargs(MqttConfig(username="u", password_file=str(tmp_path / "pw")))
    assert kw["password"] == "topsecret"


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o606])
def test_a_password_file_other_users_can_read_is_refused(tmp_path, mode):
    pw = tmp_path / "pw"
    pw.write_text("topsecret\n")
    pw.chmod(mode)
    with pytest.raises(ConfigError) as exc:
        client_kwargs(MqttConfig(username="u", password_file=str(pw)))
    assert str(exc.value) == (f"mqtt.password_file: {pw} is open to every user (mode {mode:04o}); "
                              f"chmod 600 {pw} (or 640 with the daemon's group)")
    assert "topsecret" not in str(exc.value)
    pw.chmod(0o640)  # the daemon's group may read it
    assert client_kwargs(MqttConfig(username="u", password_file=str(pw)))["password"] == "topsecret"


def test_config_file_rejects_inconsistent_credentials(tmp_path):
    cfg = daemon_config(tmp_path / "c.yaml", "mqtt://127.0.0.1:1883", tmp_path / "j.sqlite3",
                        mqtt_extra="  password_env: X\n")
    r = run_cli("run", "--config", str(cfg), "--check")
    assert r.returncode == 2 and "mqtt" in r.stderr and "username: required" in r.stderr
    os.environ.pop("X", None)


def test_run_check_validates_the_mqtt_security_settings_without_connecting(tmp_path):
    cfg = daemon_config(tmp_path / "c.yaml", "mqtts://127.0.0.1:8883", tmp_path / "j.sqlite3",
                        mqtt_extra=f"  username: bed1\n  password_file: {tmp_path / 'missing-pw'}\n")
    r = run_cli("run", "--config", str(cfg), "--check")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        f"seizurewatch: error: mqtt.password_file: cannot read {tmp_path / 'missing-pw'} (No such file or directory)")


@pytest.mark.slow
def test_shipped_ward_broker_config_lets_only_a_patients_daemon_publish_and_only_stations_ack(ward_broker):
    """config/mosquitto/seizurewatch.conf + seizurewatch.acl, as shipped: no anonymous login; bedside1
    (bed1's daemon) publishes under seizurewatch/bed1/ only, never acks; station1 publishes acks only."""
    b = ward_broker
    import ssl

    def pw(user: str) -> str:
        return b.password_file(user).read_text().strip()

    async def main() -> list[tuple[str, bytes]]:
        got: list[tuple[str, bytes]] = []
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", b.port, identifier="anon"):
                pass
        tls = ssl.create_default_context(cafile=str(b.ca))
        v3 = aiomqtt.ProtocolVersion.V311
        async with aiomqtt.Client("127.0.0.1", b.tls_port, username="station1", password=pw("station1"),
                                  tls_context=tls, identifier="station1", protocol=v3) as station:
            await station.subscribe("seizurewatch/#", qos=1)
            async with aiomqtt.Client("127.0.0.1", b.port, username="bedside1", password=pw("bedside1"),
                                      identifier="bedside1", protocol=v3) as daemon:
                await daemon.publish("seizurewatch/bed2/alarm", b"forged by bed1's daemon", qos=1)
                await daemon.publish("seizurewatch/bed1/ack", b"a daemon acking its own alarm", qos=1)
                await daemon.publish("seizurewatch/bed1/alarm", b"bed1 alarm", qos=1)
            await station.publish("seizurewatch/bed1/alarm", b"forged by a station", qos=1)
            await station.publish("seizurewatch/bed1/ack", b"station ack", qos=1)
            async with asyncio.timeout(60):
                async for m in station.messages:
                    got.append((str(m.topic), bytes(m.payload)))
                    if m.payload == b"station ack":
                        break
        return got

    got = asyncio.run(main())
    assert ("seizurewatch/bed1/alarm", b"bed1 alarm") in got
    assert ("seizurewatch/bed1/ack", b"station ack") in got
    assert len(got) == 2, got


def test_the_connection_policy_falls_back_refuses_logins_for_stations_and_backs_off():
    from aiomqtt.exceptions import MqttConnectError

    from seizurewatch.alarms.connection import BACKOFF_MAX_S, ConnectionPolicy

    station = ConnectionPolicy(MqttConfig(url="mqtt://127.0.0.1:1883"), retries=3, final_on_refused_login=True)
    assert station.protocol == aiomqtt.ProtocolVersion.V5
    assert station.failed(MqttConnectError(132)) == 0.0 and station.protocol == aiomqtt.ProtocolVersion.V311
    with pytest.raises(BrokerError, match=r"refused the login \(anonymous login\)"):
        station.failed(MqttConnectError(5))
    delays = [station.failed(aiomqtt.MqttError("[Errno 111] Connection refused")) for _ in range(3)]
    assert delays[0] < delays[2]  # 0.5 s, 1 s, 2 s, each with +-50 % jitter
    with pytest.raises(BrokerError, match=r"unreachable: \[Errno 111\] Connection refused \(gave up after 3"):
        station.failed(aiomqtt.MqttError("[Errno 111] Connection refused"))
    daemon = ConnectionPolicy(MqttConfig(url="mqtt://127.0.0.1:1883"))  # a daemon never gives up
    delays = [daemon.failed(MqttConnectError(5)) for _ in range(50)]
    assert max(delays) <= 1.5 * BACKOFF_MAX_S and delays[-1] >= 0.5 * BACKOFF_MAX_S
    daemon.connected()
    assert daemon.failed(aiomqtt.MqttError("gone")) <= 0.75  # backoff starts again after a connection
