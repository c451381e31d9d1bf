"""The caregiver side: subscribe to a patient's (or every patient's) alarms and faults,
de-duplicate on (patient, seq) — delivery is at-least-once — and hand each event on.

With a ``client_id`` the broker keeps the session (QoS 1 subscription) while the
subscriber is away, so events published meanwhile are delivered when it comes back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from seizurewatch.alarms.mqtt import make_client
from seizurewatch.alarms.security import (
    client_kwargs,
    connect_error_message,
    describe_broker,
    protocol_attempts,
)
from seizurewatch.config import MqttConfig
from seizurewatch.errors import BrokerError

log = logging.getLogger(__name__)


def format_event(p: dict[str, Any]) -> str:
    """One human-readable line for a payload."""
    who = p.get("patient", "?")
    t = p.get("t", 0.0)
    if p.get("kind") == "fault":
        chans = f" [{', '.join(p.get('channels', []))}]" if p.get("channels") else ""
        return f"[{who}] t={t:8.1f}s FAULT {p.get('event', '?'):6} {p.get('fault_type')}{chans} {p.get('detail', '')}"
    prob = p.get("probability")
    probs = f"p={prob:.2f}" if isinstance(prob, (int, float)) else ""
    dur = f" after {p['duration_s']:.0f}s" if p.get("event") == "end" and "duration_s" in p else ""
    return f"[{who}] t={t:8.1f}s ALARM {p.get('event', '?'):6} {probs} (threshold {p.get('threshold')}){dur}"


class Deduper:
    """Remembers the last ``window`` sequence numbers per patient (bounded memory on week-long runs)."""

    def __init__(self, window: int = 50_000) -> None:
        self.window = window
        self.seen: dict[str, set[int]] = {}
        self.order: dict[str, deque[int]] = {}
        self.duplicates = 0

    def fresh(self, payload: dict[str, Any]) -> bool:
        patient = str(payload.get("patient"))
        try:
            seq = int(payload.get("seq", -1))
        except (TypeError, ValueError):
            return True  # not ours to judge; pass it on
        seen = self.seen.setdefault(patient, set())
        if seq in seen:
            self.duplicates += 1
            return False
        seen.add(seq)
        order = self.order.setdefault(patient, deque())
        order.append(seq)
        if len(order) > self.window:
            seen.discard(order.popleft())
        return True


def _identifier(client_id: str | None) -> str:
    return client_id or f"seizurewatch-sub-{os.getpid()}-{os.urandom(3).hex()}"


async def subscribe(
    cfg: MqttConfig,
    on_event: Callable[[dict[str, Any]], Any],
    patient: str = "+",
    url: str | None = None,
    on_other: Callable[[str, bytes], Any] | None = None,
    ready: asyncio.Event | None = None,
    retries: int = 5,
    client_id: str | None = None,
) -> None:
    """Run until cancelled. Raises BrokerError (one line naming the broker) if the broker stays
    unreachable for ``retries`` consecutive attempts, or refuses the login."""
    kw = client_kwargs(cfg, url)
    broker = describe_broker(kw)
    protocols = protocol_attempts(cfg.protocol)
    dedupe = Deduper()
    prefix = cfg.topic_prefix
    failures = 0
    ident = _identifier(client_id)
    connected_once = False
    while True:
        try:
            async with make_client(kw, protocols[0], persistent=client_id is not None, identifier=ident) as c:
                if failures:
                    log.info("subscriber reconnected", extra={"broker": broker})
                failures = 0
                connected_once = True
                for leaf in ("alarm", "fault", "state", "status"):
                    await c.subscribe(f"{prefix}/{patient}/{leaf}", qos=1)
                if ready is not None:
                    ready.set()
                async for msg in c.messages:
                    topic = str(msg.topic)
                    raw = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                    if topic.endswith(("/alarm", "/fault")):
                        try:
                            payload = json.loads(raw)
                        except json.JSONDecodeError:
                            log.warning("ignoring a message that is not JSON", extra={"topic": topic})
                            continue
                        if isinstance(payload, dict) and dedupe.fresh(payload):
                            res = on_event(payload)
                            if asyncio.iscoroutine(res):
                                await res
                    elif on_other is not None:
                        res = on_other(topic, raw)
                        if asyncio.iscoroutine(res):
                            await res
        except aiomqtt.MqttError as exc:
            value = getattr(getattr(exc, "rc", None), "value", None)
            if len(protocols) > 1 and not connected_once and (
                    value in (1, 132) or "timed out" in str(exc).lower()):  # v3-only brokers may stay mute on v5
                protocols = protocols[1:]
                continue
            if isinstance(exc, MqttConnectError):
                if value in (4, 5, 134, 135):  # bad login: retrying will not help
                    raise BrokerError(connect_error_message(exc, kw, broker)) from None
            failures += 1
            if failures > retries:
                raise BrokerError(f"{connect_error_message(exc, kw, broker)} (gave up after {retries} retries)") \
                    from None
            log.warning("subscriber lost the broker; retrying",
                        extra={"broker": broker, "attempt": failures, "error": connect_error_message(exc, kw, broker)})
            await asyncio.sleep(min(0.5 * 2**failures, 10.0))
