"""MQTT side of the daemon (aiomqtt): one connection per patient, so each has its own
last-will ``offline`` on ``<prefix>/<patient>/status``.

Topics, for patient P under prefix ``seizurewatch``:
    seizurewatch/P/alarm   alarm events, QoS 1, not retained
    seizurewatch/P/fault   fault events, QoS 1, not retained
    seizurewatch/P/state   current state, QoS 1, retained
    seizurewatch/P/risk    risk level per horizon of a prediction model, QoS 1, retained (risk.py)
    seizurewatch/P/risk_change  risk level changes (events), QoS 1, not retained
    seizurewatch/P/status  "online" / "offline" (LWT), QoS 1, retained
    seizurewatch/P/ack     subscribed by the daemon: acknowledgements from the station (alarms/ack.py)
    seizurewatch/P/refusal why an ack was refused, QoS 1, not retained, best effort (not journaled)

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
import time
from collections import deque
from typing import Any

import aiomqtt

from seizurewatch.alarms import discovery
from seizurewatch.alarms.connection import (
    CheckedClient,
    ConnectionLost,
    ConnectionPolicy,
    PublishRefused,
    publish_window,
    watch,
)
from seizurewatch.alarms.outbox import Outbox, OutboxRow
from seizurewatch.config import MqttConfig

__all__ = ["PatientLink", "topics"]

log = logging.getLogger(__name__)

PAGE = 200
STATE_BACKLOG = 64  # state changes kept while the broker is away (the last one matters most)
REFUSED_RETRY_S = 30.0  # the broker refused a publish (its ACL): tried again this often


def topics(prefix: str, patient: str) -> dict[str, str]:
    base = f"{prefix}/{patient}"
    return {k: f"{base}/{k}" for k in ("alarm", "fault", "state", "status", "risk", "risk_change")}


class PatientLink:
    """Delivers one patient's journaled events in order, reconnecting as ``ConnectionPolicy`` says.

    After every (re)connect it restates what is open: ``online`` and the current state (retained,
    with the alarm id), so a station that subscribes later, or a broker that forgot everything,
    still learns that an alarm is in progress. Each state carries the ``epoch`` and ``seq`` of the
    last event the broker accepted before it, so a station can tell which events it missed.
    ``on_message`` (optional) receives what the link's connection is subscribed to.
    """

    def __init__(self, cfg: MqttConfig, outbox: Outbox, patient: str, url: str | None = None) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.patient = patient
        self.policy = ConnectionPolicy(cfg, url)  # a daemon never gives up: its events wait on disk
        self.broker = self.policy.broker
        self.topics = topics(cfg.topic_prefix, patient)
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._closing = False
        self._close_deadline = float("inf")
        self._state: dict[str, Any] | None = None  # the latest state payload
        self._state_sent = False  # the broker holds the latest state (False after a reconnect)
        self._risk: dict[str, Any] | None = None  # the latest risk message (a prediction model's levels)
        self._risk_sent = False
        self.horizons: tuple[float, ...] = ()  # the model's prediction horizons (Home Assistant: a sensor each)
        self._transitions: deque[dict[str, Any]] = deque(maxlen=STATE_BACKLOG)  # changes not yet published
        self._last_event: tuple[str, int] | None = None  # (epoch, seq) of the last event the broker accepted
        self.delivered = 0
        self.reconnects = 0
        self.on_change: list[Any] = []  # callbacks(connected: bool) for metrics/logs
        # callbacks(refusal: PublishRefused | None): the broker refused a publish (None: it accepts again)
        self.on_refused: list[Any] = []
        self.refused: PublishRefused | None = None
        self.subscriptions: list[str] = []  # topics the link's connection subscribes to (QoS 1)
        self.on_message: Any = None  # async or plain callable(aiomqtt.Message)
        self._discovery_due = False  # Home Assistant's configs to (re)publish
        self._refresh_queued = False  # the newest queued state is a periodic refresh (replaceable)
        self._notices: deque[tuple[str, bytes, bool]] = deque(maxlen=STATE_BACKLOG)  # (topic, body, retain)

    @property
    def identifier(self) -> str:
        """``<client_id>-<patient>-<the journal's client key>``: two daemons on two journals never kick each
        other off the broker (one journal has one daemon: see ``Outbox``'s lock); a restart reuses the id;
        and the key is never published, so no other account can take the id over (the journal id can be
        read from every payload's epoch)."""
        return f"{self.cfg.client_id or 'seizurewatch'}-{self.patient}-{self.outbox.client_key}"

    def _client(self) -> CheckedClient:
        will = aiomqtt.Will(self.topics["status"], b"offline", qos=1, retain=True)
        client = self.policy.client(identifier=self.identifier, will=will,
                                    max_inflight_messages=self.cfg.max_inflight)
        client.pending_calls_threshold = self.cfg.max_inflight + 10  # our window is deliberate, not a leak
        return client

    async def check(self) -> None:
        """Connect once, now; BrokerError with one clear line if the broker is unreachable or refuses us.
        With ``protocol: auto`` a broker that refuses MQTT v5 is retried with 3.1.1."""
        will = aiomqtt.Will(self.topics["status"], b"offline", qos=1, retain=True)
        await self.policy.check(self.identifier, will=will)

    def wake(self) -> None:
        self._wake.set()

    def set_state(self, payload: dict[str, Any]) -> None:
        self._state = payload  # built whole by PatientState.state_payload; the link adds only epoch and seq
        self._transitions.append(self._state)
        self._refresh_queued = False
        self._wake.set()

    def set_risk(self, payload: dict[str, Any]) -> None:
        """The retained risk message: only the latest matters (each level change is also an event)."""
        self._risk = payload
        self._risk_sent = False
        self._wake.set()

    def refresh_state(self, payload: dict[str, Any]) -> None:
        """The same state with fresher numbers (the periodic republish): it replaces a refresh still
        queued instead of queuing behind it, so an outage never pushes real changes out of the backlog."""
        self._state = payload
        if self._refresh_queued and self._transitions:
            self._transitions[-1] = self._state
        else:
            self._transitions.append(self._state)
            self._refresh_queued = True
        self._wake.set()

    def notify(self, topic: str, payload: dict[str, Any] | bytes, retain: bool = False) -> None:
        """Publish a message that is not an event (an ack refusal, an alarm's EEG; b"" clears a retained one):
        after the journal's events and the state, best effort (kept while the broker is away, up to
        STATE_BACKLOG, not journaled)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        self._notices.append((topic, body, retain))
        self._wake.set()

    async def _incoming(self, msg: aiomqtt.Message) -> None:
        """Home Assistant's birth message is the link's own business; the rest goes to ``on_message``."""
        if discovery.enabled(self.cfg) and str(msg.topic) == discovery.birth_topic(self.cfg):
            if isinstance(msg.payload, bytes) and msg.payload.strip() == b"online":  # HA (re)started
                self._discovery_due = True
                self._wake.set()
            return
        if self.on_message is not None:
            try:
                res = self.on_message(msg)
                if asyncio.iscoroutine(res):
                    await res
            except Exception:  # noqa: BLE001 - a message must never take the link down
                log.exception("message handler failed; message ignored",
                              extra={"patient": self.patient, "topic": str(msg.topic)})

    async def _announce(self, client: aiomqtt.Client, gone: asyncio.Task[None]) -> None:
        """Publish the retained Home Assistant discovery configs (alarms/discovery.py)."""
        self._discovery_due = False
        for topic, config in discovery.discovery_configs(self.cfg, self.patient, self.horizons).items():
            await self._publish(client, gone, topic, json.dumps(config, separators=(",", ":")).encode(), retain=True)
        log.info("Home Assistant discovery published", extra={"patient": self.patient})

    async def run(self) -> None:
        """Deliver until ``close()`` and drained (or its deadline passed), reconnecting through the policy's
        one loop (``ConnectionPolicy.serve``); a publish the broker refuses is retried every REFUSED_RETRY_S."""
        done = await self.policy.serve(self._client, self._session, on_error=self._lost, wait=self._pause,
                                       give_up=lambda: self._closing and time.monotonic() >= self._close_deadline,
                                       errors=(PublishRefused,))
        left = 0 if done else await self.outbox.depth(self.patient)
        if left:
            log.error("shutting down with undelivered events; they are resent at the next start",
                      extra={"patient": self.patient, "undelivered": left, "broker": self.broker})

    async def _session(self, client: aiomqtt.Client) -> bool:
        """One connection: subscribe, announce ``online``, serve; ``offline`` and True once closing and drained."""
        try:
            self._set_connected(True)
            async with watch(client, self._incoming) as gone:
                birth = [discovery.birth_topic(self.cfg)] if discovery.enabled(self.cfg) else []
                for topic in [*self.subscriptions, *birth]:
                    await client.subscribe(topic, qos=1)
                await self._publish(client, gone, self.topics["status"], b"online", retain=True)
                self._discovery_due = discovery.enabled(self.cfg)
                self._state_sent = self._risk_sent = False
                await self._serve(client, gone)
                await self._publish(client, gone, self.topics["status"], b"offline", retain=True)
                return True
        finally:
            self._set_connected(False)

    def _lost(self, exc: BaseException, up: bool) -> float | None:
        """Say why the link is down; a refused publish is retried after REFUSED_RETRY_S (an ACL is fixed
        by hand: no hammering, the login itself worked), the rest after the policy's backoff."""
        if isinstance(exc, PublishRefused):
            self._refused(exc)
            return REFUSED_RETRY_S
        if up:
            log.warning("MQTT connection lost; events stay in the outbox",
                        extra={"patient": self.patient, "broker": self.broker, "error": str(exc)})
        elif self.policy.refused_login(exc):
            log.error("MQTT broker refused the login; events stay in the outbox, retrying",
                      extra={"patient": self.patient, "error": self.policy.message(exc)})
        elif self.reconnects % 10 == 0:
            log.warning("MQTT broker unreachable; retrying",
                        extra={"patient": self.patient, "error": self.policy.message(exc)})
        return None

    async def _pause(self, delay: float) -> None:
        """Wait before reconnecting: no longer than what is left of the close deadline, and not on once
        ``close()`` is asked meanwhile (try once more at once)."""
        closing_seen = self._closing
        if closing_seen:
            delay = min(delay, max(self._close_deadline - time.monotonic(), 0.0))
        self.reconnects += 1
        end = time.monotonic() + delay
        while time.monotonic() < end and not (self._closing and not closing_seen):
            await asyncio.sleep(min(0.05, max(end - time.monotonic(), 0.0)))

    def _refused(self, exc: PublishRefused | None) -> None:
        """The broker refused a publish (the account's ACL does not cover this bed?), or accepts again."""
        if exc is None and self.refused is None:
            return
        if exc is not None and self.refused is not None and exc.topic == self.refused.topic:
            for cb in self.on_refused:
                cb(exc)  # counted again; logged once
            return
        if exc is not None:
            log.error("MQTT broker refused a publish; events stay in the outbox, retrying: let account %s write "
                      "%s/%s/# in the broker's ACL", self.cfg.username or "(anonymous)", self.cfg.topic_prefix,
                      self.patient, extra={"patient": self.patient, "broker": self.broker, "topic": exc.topic,
                                           "reason": exc.reason, "code": exc.code})
        else:
            log.warning("MQTT broker accepts this bed's publishes again", extra={"patient": self.patient})
        self.refused = exc
        for cb in self.on_refused:
            cb(exc)

    async def _publish(self, client: aiomqtt.Client, gone: asyncio.Task[None], topic: str, payload: bytes,
                       retain: bool = False) -> None:
        """One QoS 1 publish, returning after its PUBACK; ConnectionLost if the link drops first."""
        acked, error = await self._publish_all(client, gone, [(topic, payload, retain)])
        if error is not None:
            raise error

    async def _publish_all(
        self, client: aiomqtt.Client, gone: asyncio.Task[None], msgs: list[tuple[str, bytes, bool]]
    ) -> tuple[list[bool], aiomqtt.MqttError | PublishRefused | None]:
        """``publish_window`` at this link's timeout; a topic the broker refused that takes our messages again
        (not just any topic) ends the refusal."""
        acked, error = await publish_window(client, gone, msgs, self.cfg.publish_timeout_s)
        if error is None and self.refused is not None and any(t == self.refused.topic for t, _, _ in msgs):
            self._refused(None)
        return acked, error

    async def _deliver(self, client: aiomqtt.Client, gone: asyncio.Task[None], rows: list[OutboxRow]) -> None:
        """Send a page of journal rows, ``max_inflight`` at a time; mark each window's acknowledged rows."""
        step = self.cfg.max_inflight
        for i in range(0, len(rows), step):
            window = rows[i : i + step]
            acked, error = await self._publish_all(client, gone,
                                                   [(r.topic, r.payload.encode(), False) for r in window])
            done = [r for r, ok in zip(window, acked) if ok]
            await self.outbox.mark_delivered([r.id for r in done])
            self.delivered += len(done)
            if done:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self._last_event = (str(json.loads(done[-1].payload)["epoch"]), done[-1].seq)
            if error is not None:
                raise error

    def _state_body(self, state: dict[str, Any]) -> bytes:
        if self._last_event is not None:
            state = {**state, "epoch": self._last_event[0], "seq": self._last_event[1]}
        return json.dumps(state, separators=(",", ":")).encode()

    async def _serve(self, client: aiomqtt.Client, gone: asyncio.Task[None]) -> None:
        """Drain backlog and live events, then the state changes; return once closing and drained."""
        while True:
            self._wake.clear()
            if self._discovery_due:
                await self._announce(client, gone)
            last = 0
            while True:
                rows = await self.outbox.pending(self.patient, after_id=last, limit=PAGE)
                if not rows:
                    break
                await self._deliver(client, gone, rows)
                last = rows[-1].id
            if self._state is not None and not self._state_sent and not self._transitions:
                self._transitions.append(self._state)  # a new connection: restate where we are
            while self._transitions:  # every change in order (a short alarm is seen), then the latest stays
                if len(self._transitions) == 1:
                    self._refresh_queued = False  # being sent: the next refresh queues behind it
                await self._publish(client, gone, self.topics["state"], self._state_body(self._transitions[0]),
                                    retain=True)
                self._transitions.popleft()
                self._state_sent = True
            risk = self._risk
            if risk is not None and not self._risk_sent:
                await self._publish(client, gone, self.topics["risk"],
                                    json.dumps(risk, separators=(",", ":")).encode(), retain=True)
                self._risk_sent = self._risk is risk
            while self._notices:  # best effort: a notice the broker refuses is dropped, never in the events' way
                topic = self._notices[0][0]
                acked, error = await self._publish_all(client, gone, [self._notices[0]])
                if isinstance(error, PublishRefused):
                    log.error("MQTT broker refused a notice; dropped (let this daemon's account write %s in the "
                              "broker's ACL)", topic, extra={"patient": self.patient, "topic": topic})
                elif error is not None:
                    raise error
                self._notices.popleft()
            if self._closing and not self._wake.is_set():
                return
            waiter = asyncio.ensure_future(self._wake.wait())
            idle: set[asyncio.Future[Any]] = {waiter, gone}
            await asyncio.wait(idle, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if gone.done():
                raise ConnectionLost("connection lost while idle")

    def _set_connected(self, up: bool) -> None:
        if up == self.connected.is_set():
            return
        if up:
            self.connected.set()
            log.info("MQTT connected", extra={"patient": self.patient, "broker": self.broker,
                                              "protocol": self.policy.protocol.name})
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

