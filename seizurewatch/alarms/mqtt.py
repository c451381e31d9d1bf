"""MQTT side of the daemon (aiomqtt): one connection per patient, so each has its own
last-will ``offline`` on ``<prefix>/<patient>/status``.

Topics, for patient P under prefix ``seizurewatch``:
    seizurewatch/P/alarm   alarm events, QoS 1, not retained
    seizurewatch/P/fault   fault events, QoS 1, not retained
    seizurewatch/P/state   current state, QoS 1, retained
    seizurewatch/P/status  "online" / "offline" (LWT), QoS 1, retained
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import random
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiomqtt

from seizurewatch.alarms.outbox import Outbox
from seizurewatch.config import MqttConfig
from seizurewatch.errors import BrokerError, ConfigError

log = logging.getLogger(__name__)


def topics(prefix: str, patient: str) -> dict[str, str]:
    base = f"{prefix}/{patient}"
    return {k: f"{base}/{k}" for k in ("alarm", "fault", "state", "status")}


def _is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _password(cfg: MqttConfig) -> str | None:
    if cfg.password_file:
        try:
            return Path(cfg.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file: cannot read {cfg.password_file} ({exc.strerror})") from None
    if cfg.password_env:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise ConfigError(f"mqtt.password_env: environment variable {cfg.password_env} is not set")
        return value
    return None


def client_kwargs(cfg: MqttConfig, url: str | None = None) -> dict[str, Any]:
    """aiomqtt.Client arguments from the config (URL, TLS, credentials); validates security rules."""
    u = urlparse(url or cfg.url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ConfigError(f"mqtt.url: expected mqtt://host:port or mqtts://host:port, got {url or cfg.url!r}")
    tls = u.scheme == "mqtts" or cfg.ca_file is not None
    if not tls and not _is_loopback(u.hostname) and not cfg.allow_plaintext_remote:
        raise ConfigError(
            f"mqtt.url: refusing plaintext MQTT to non-loopback host {u.hostname}; "
            "use mqtts:// with ca_file, or set mqtt.allow_plaintext_remote: true"
        )
    kw: dict[str, Any] = {
        "hostname": u.hostname,
        "port": u.port or (8883 if tls else 1883),
        "keepalive": cfg.keepalive_s,
        "timeout": cfg.connect_timeout_s,
        "username": cfg.username or u.username,
        "password": _password(cfg) or u.password,
    }
    if tls:
        ctx = ssl.create_default_context(cafile=cfg.ca_file)
        if cfg.cert_file:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        kw["tls_context"] = ctx
    return kw


def describe_broker(kw: dict[str, Any]) -> str:
    scheme = "mqtts" if "tls_context" in kw else "mqtt"
    return f"{scheme}://{kw['hostname']}:{kw['port']}"


class PatientLink:
    """Delivers one patient's journaled events in order, reconnecting with backoff forever."""

    def __init__(self, cfg: MqttConfig, outbox: Outbox, patient: str, url: str | None = None) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.patient = patient
        self.kw = client_kwargs(cfg, url)
        self.topics = topics(cfg.topic_prefix, patient)
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._closing = False
        self._state: str | None = None
        self._state_sent: str | None = None
        self.delivered = 0
        self.reconnects = 0
        self.on_change: list[Any] = []  # callbacks(connected: bool) for metrics/logs

    def _client(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self.topics["status"], b"offline", qos=1, retain=True)
        ident = f"{self.cfg.client_id or 'seizurewatch'}-{self.patient}"
        return aiomqtt.Client(**self.kw, will=will, identifier=ident, clean_session=True)

    async def check(self) -> None:
        """Connect once, now; BrokerError with a clear line if the broker is unreachable (start-up check)."""
        try:
            async with self._client():
                pass
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"MQTT broker {describe_broker(self.kw)} unreachable: {exc}") from None

    def wake(self) -> None:
        self._wake.set()

    def set_state(self, payload: dict[str, Any]) -> None:
        self._state = json.dumps(payload, separators=(",", ":"))
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with self._client() as client:
                    self._set_connected(True)
                    backoff = 0.5
                    await client.publish(self.topics["status"], b"online", qos=1, retain=True)
                    self._state_sent = None
                    if await self._serve(client):
                        await client.publish(self.topics["status"], b"offline", qos=1, retain=True)
                        return
            except aiomqtt.MqttError as exc:
                if self.connected.is_set():
                    log.warning("MQTT connection lost; events are kept in the outbox",
                                extra={"patient": self.patient, "error": str(exc)})
                self._set_connected(False)
                if self._closing:
                    log.warning("shutting down with undelivered events in the outbox", extra={"patient": self.patient})
                    return
                delay = backoff * (0.5 + random.random())
                backoff = min(backoff * 2, 30.0)
                self.reconnects += 1
                try:
                    await asyncio.wait_for(self._wait_closing(), timeout=delay)
                except TimeoutError:
                    pass
            finally:
                self._set_connected(False)

    async def _wait_closing(self) -> None:
        while not self._closing:
            await asyncio.sleep(0.05)

    async def _serve(self, client: aiomqtt.Client) -> bool:
        """Drain backlog and live events; True once closing and drained."""
        while True:
            self._wake.clear()
            if self._state is not None and self._state != self._state_sent:
                state = self._state
                await client.publish(self.topics["state"], state.encode(), qos=1, retain=True)
                self._state_sent = state
            last = 0
            while True:
                rows = await self.outbox.pending(self.patient, after_id=last, limit=200)
                if not rows:
                    break
                done = []
                for row in rows:
                    await client.publish(row.topic, row.payload.encode(), qos=1, retain=False)
                    done.append(row.id)
                    last = row.id
                await self.outbox.mark_delivered(done)
                self.delivered += len(done)
            if self._closing and not self._wake.is_set():
                return True
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except TimeoutError:
                pass

    def _set_connected(self, up: bool) -> None:
        if up == self.connected.is_set():
            return
        if up:
            self.connected.set()
            log.info("MQTT connected", extra={"patient": self.patient, "broker": describe_broker(self.kw)})
        else:
            self.connected.clear()
        for cb in self.on_change:
            cb(up)

    def close(self) -> None:
        """Ask ``run`` to deliver what is pending, publish ``offline`` and return."""
        self._closing = True
        self._wake.set()
