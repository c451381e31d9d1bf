"""MQTT side of the daemon (aiomqtt): one connection per patient, so each has its own
last-will ``offline`` on ``<prefix>/<patient>/status``.

Topics, for patient P under prefix ``seizurewatch``:
    seizurewatch/P/alarm   alarm events, QoS 1, not retained
    seizurewatch/P/fault   fault events, QoS 1, not retained
    seizurewatch/P/state   current state, QoS 1, retained
    seizurewatch/P/status  "online" / "offline" (LWT), QoS 1, retained

Delivery: the link pages through the patient's undelivered journal rows oldest first,
keeps up to ``max_inflight`` QoS 1 publishes on the wire, and marks a row delivered only
after its PUBACK. A publish still waiting for its PUBACK when the connection drops is
abandoned at once (not after a timeout) and resent on the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import time
from collections import deque
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from seizurewatch.alarms.outbox import Outbox, OutboxRow
from seizurewatch.alarms.security import client_kwargs, connect_error_message, describe_broker, protocol_attempts
from seizurewatch.config import MqttConfig
from seizurewatch.errors import BrokerError

__all__ = ["PatientLink", "client_kwargs", "describe_broker", "make_client", "topics"]

log = logging.getLogger(__name__)

PAGE = 200
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
STATE_BACKLOG = 64  # state changes kept while the broker is away (the last one matters most)


def _no_delay(client: aiomqtt.Client) -> None:
    """Send each publish at once (TCP_NODELAY): with Nagle on, a window of small QoS 1 publishes waits
    for the previous segment's ACK, which the broker delays (~40 ms per window)."""
    sock = client._client.socket()  # noqa: SLF001 - paho's socket; aiomqtt exposes no option for it
    if isinstance(sock, socket.socket):  # a TLS socket too (ssl.SSLSocket is one)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def topics(prefix: str, patient: str) -> dict[str, str]:
    base = f"{prefix}/{patient}"
    return {k: f"{base}/{k}" for k in ("alarm", "fault", "state", "status")}


def homeassistant_configs(cfg: MqttConfig, patient: str) -> dict[str, dict[str, Any]]:
    """Home Assistant MQTT discovery: a 'seizure alarm' binary sensor and a 'monitoring state' sensor
    per patient, both driven by the retained state topic, unavailable when the daemon is offline."""
    t = topics(cfg.topic_prefix, patient)
    node = f"seizurewatch_{patient}"
    device = {"identifiers": [node], "name": f"seizurewatch {patient}", "manufacturer": "seizurewatch"}
    common = {"state_topic": t["state"], "availability_topic": t["status"], "payload_available": "online",
              "payload_not_available": "offline", "device": device, "json_attributes_topic": t["state"]}
    return {
        f"{cfg.homeassistant_prefix}/binary_sensor/{node}/alarm/config": {
            **common, "name": "Seizure alarm", "unique_id": f"{node}_alarm", "device_class": "safety",
            "value_template": "{{ 'ON' if value_json.state == 'alarm' else 'OFF' }}"},
        f"{cfg.homeassistant_prefix}/sensor/{node}/state/config": {
            **common, "name": "Monitoring state", "unique_id": f"{node}_state",
            "value_template": "{{ value_json.state }}"},
    }


def make_client(kw: dict[str, Any], protocol: aiomqtt.ProtocolVersion, persistent: bool = False,
                **extra: Any) -> aiomqtt.Client:
    """An aiomqtt.Client for ``protocol``; ``persistent`` keeps the broker-side session (subscribers)."""
    args = {**kw, **extra}
    if protocol == aiomqtt.ProtocolVersion.V5:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7 * 86400 if persistent else 0
        args["properties"] = props
        args["clean_start"] = not persistent
    else:
        args["clean_session"] = not persistent
    return aiomqtt.Client(**args, protocol=protocol)


def disconnected(client: aiomqtt.Client) -> asyncio.Future[None] | None:
    """The client's 'connection gone' future. aiomqtt does not wake pending publishes on a
    disconnect (they would sit until their timeout), so the link races against this."""
    fut = getattr(client, "_disconnected", None)
    return fut if isinstance(fut, asyncio.Future) else None


class ConnectionLost(aiomqtt.MqttError):
    """The connection dropped while publishes were waiting for their PUBACK."""


class PatientLink:
    """Delivers one patient's journaled events in order, reconnecting with backoff and jitter."""

    def __init__(self, cfg: MqttConfig, outbox: Outbox, patient: str, url: str | None = None) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.patient = patient
        self.kw = client_kwargs(cfg, url)
        self.broker = describe_broker(self.kw)
        self.protocols = protocol_attempts(cfg.protocol)
        self.topics = topics(cfg.topic_prefix, patient)
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._closing = False
        self._close_deadline = float("inf")
        self._state: str | None = None  # the latest state payload
        self._state_sent: str | None = None  # what the broker holds (None after a reconnect)
        self._transitions: deque[str] = deque(maxlen=STATE_BACKLOG)  # changes not yet published, in order
        self.delivered = 0
        self.reconnects = 0
        self._ever_connected = False
        self.on_change: list[Any] = []  # callbacks(connected: bool) for metrics/logs

    def _client(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self.topics["status"], b"offline", qos=1, retain=True)
        ident = f"{self.cfg.client_id or 'seizurewatch'}-{self.patient}"
        client = make_client(self.kw, self.protocols[0], will=will, identifier=ident,
                             max_inflight_messages=self.cfg.max_inflight)
        client.pending_calls_threshold = self.cfg.max_inflight + 10  # our window is deliberate, not a leak
        return client

    async def check(self) -> None:
        """Connect once, now; BrokerError with one clear line if the broker is unreachable or refuses us.
        With ``protocol: auto`` a broker that refuses MQTT v5 is retried with 3.1.1."""
        while True:
            try:
                async with self._client():
                    return
            except aiomqtt.MqttError as exc:
                if self._fallback(exc):
                    continue
                raise BrokerError(connect_error_message(exc, self.kw, self.broker)) from None

    def _fallback(self, exc: Exception) -> bool:
        """True (and the next protocol chosen) when the broker refused the protocol version."""
        if len(self.protocols) > 1 and (
            (isinstance(exc, MqttConnectError) and _is_protocol_refusal(exc))
            or (not self._ever_connected and "timed out" in str(exc).lower())  # v3-only brokers may just stay mute
        ):
            log.info("broker refused MQTT v5 (or did not answer); trying 3.1.1",
                     extra={"patient": self.patient, "broker": self.broker})
            self.protocols = self.protocols[1:]
            return True
        return False

    def wake(self) -> None:
        self._wake.set()

    def set_state(self, payload: dict[str, Any]) -> None:
        self._state = json.dumps({**payload, "patient": self.patient}, separators=(",", ":"))
        self._transitions.append(self._state)
        self._wake.set()

    async def run(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            try:
                async with self._client() as client:
                    _no_delay(client)
                    self._set_connected(True)
                    backoff = BACKOFF_MIN_S
                    await self._publish(client, self.topics["status"], b"online", retain=True)
                    if self.cfg.homeassistant_discovery:
                        for topic, config in homeassistant_configs(self.cfg, self.patient).items():
                            await self._publish(client, topic, json.dumps(config).encode(), retain=True)
                    self._state_sent = None
                    if await self._serve(client):
                        await self._publish(client, self.topics["status"], b"offline", retain=True)
                        return
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                # OSError/TimeoutError: a socket or TLS failure paho did not wrap; same remedy.
                if self._fallback(exc):
                    continue
                if self.connected.is_set():
                    log.warning("MQTT connection lost; events stay in the outbox",
                                extra={"patient": self.patient, "broker": self.broker, "error": str(exc)})
                elif self.reconnects % 10 == 0:
                    log.warning("MQTT broker unreachable; retrying",
                                extra={"patient": self.patient,
                                       "error": connect_error_message(exc, self.kw, self.broker)})
                self._set_connected(False)
                if self._closing and time.monotonic() >= self._close_deadline:
                    await self._give_up()
                    return
                delay = backoff * (0.5 + random.random())  # jitter: beds do not reconnect in lockstep
                if self._closing:
                    delay = min(delay, max(self._close_deadline - time.monotonic(), 0.0))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                self.reconnects += 1
                await self._sleep_unless_closing(delay)
            finally:
                self._set_connected(False)

    async def _give_up(self) -> None:
        left = await self.outbox.depth(self.patient)
        if left:
            log.error("shutting down with undelivered events; they are resent at the next start",
                      extra={"patient": self.patient, "undelivered": left, "broker": self.broker})

    async def _sleep_unless_closing(self, delay: float) -> None:
        closing_seen = self._closing
        end = time.monotonic() + delay
        while time.monotonic() < end:
            if self._closing and not closing_seen:
                return  # close() asked: try once more at once
            await asyncio.sleep(min(0.05, max(end - time.monotonic(), 0.0)))

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: bytes, retain: bool = False) -> None:
        """One QoS 1 publish, returning after its PUBACK; ConnectionLost if the link drops first."""
        acked, error = await self._publish_all(client, [(topic, payload, retain)])
        if error is not None:
            raise error

    async def _publish_all(
        self, client: aiomqtt.Client, msgs: list[tuple[str, bytes, bool]]
    ) -> tuple[list[bool], ConnectionLost | None]:
        """Publish ``msgs`` in order, all on the wire at once; which got their PUBACK, and why not."""
        tasks = [asyncio.ensure_future(client.publish(t, p, qos=1, retain=r, timeout=self.cfg.publish_timeout_s))
                 for t, p, r in msgs]
        everything = asyncio.gather(*tasks, return_exceptions=True)
        gone = disconnected(client)
        waits: set[asyncio.Future[Any]] = {everything} | ({gone} if gone is not None else set())
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not everything.done():
            everything.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await everything
        acked = [t.done() and not t.cancelled() and t.exception() is None for t in tasks]
        if all(acked):
            return acked, None
        errors = [t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception()]
        return acked, ConnectionLost(f"no PUBACK for {acked.count(False)} message(s): "
                                     f"{errors[0] if errors else 'connection lost'}")

    async def _deliver(self, client: aiomqtt.Client, rows: list[OutboxRow]) -> None:
        """Send a page of journal rows, ``max_inflight`` at a time; mark each window's acknowledged rows."""
        step = self.cfg.max_inflight
        for i in range(0, len(rows), step):
            window = rows[i : i + step]
            acked, error = await self._publish_all(client, [(r.topic, r.payload.encode(), False) for r in window])
            done = [r.id for r, ok in zip(window, acked) if ok]
            await self.outbox.mark_delivered(done)
            self.delivered += len(done)
            if error is not None:
                raise error

    async def _serve(self, client: aiomqtt.Client) -> bool:
        """Drain backlog and live events; True once closing and drained."""
        gone = disconnected(client)
        while True:
            self._wake.clear()
            if self._state is not None and self._state_sent is None and not self._transitions:
                self._transitions.append(self._state)  # a new connection: restate where we are
            while self._transitions:  # every change in order (a short alarm is seen), then the latest stays
                state = self._transitions[0]
                await self._publish(client, self.topics["state"], state.encode(), retain=True)
                self._state_sent = state
                self._transitions.popleft()
            last = 0
            while True:
                rows = await self.outbox.pending(self.patient, after_id=last, limit=PAGE)
                if not rows:
                    break
                await self._deliver(client, rows)
                last = rows[-1].id
            if self._closing and not self._wake.is_set():
                return True
            waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
            if gone is not None:
                waits.add(gone)
            _, pending = await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            for fut in pending:
                if fut is not gone:
                    fut.cancel()
            if gone is not None and gone.done():
                raise ConnectionLost("connection lost while idle")

    def _set_connected(self, up: bool) -> None:
        if up == self.connected.is_set():
            return
        if up:
            self._ever_connected = True
            self.connected.set()
            log.info("MQTT connected", extra={"patient": self.patient, "broker": self.broker,
                                              "protocol": self.protocols[0].name})
        else:
            self.connected.clear()
        for cb in self.on_change:
            cb(up)

    def close(self) -> None:
        """Ask ``run`` to deliver what is pending (trying for up to ``drain_timeout_s`` if the broker
        is away), publish ``offline`` and return."""
        if not self._closing:
            self._close_deadline = time.monotonic() + self.cfg.drain_timeout_s
        self._closing = True
        self._wake.set()


def _is_protocol_refusal(exc: MqttConnectError) -> bool:
    rc = getattr(exc, "rc", None)
    value = getattr(rc, "value", rc)
    # 3.1.1 CONNACK 1 "unacceptable protocol version"; v5 reason 132 "unsupported protocol version"
    return value in (1, 132) or "protocol version" in str(exc).lower()
