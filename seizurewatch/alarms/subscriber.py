"""The caregiver side: subscribe to a patient's (or every patient's) alarms and faults,
de-duplicate on (patient, seq) — delivery is at-least-once — and hand each event on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiomqtt

from seizurewatch.alarms.mqtt import client_kwargs
from seizurewatch.config import MqttConfig


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
    def __init__(self) -> None:
        self.last_seq: dict[str, int] = {}
        self.seen: dict[str, set[int]] = {}

    def fresh(self, payload: dict[str, Any]) -> bool:
        patient, seq = str(payload.get("patient")), int(payload.get("seq", -1))
        seen = self.seen.setdefault(patient, set())
        if seq in seen:
            return False
        seen.add(seq)
        if len(seen) > 100_000:  # bounded memory on week-long subscriptions
            cutoff = max(seen) - 50_000
            self.seen[patient] = {s for s in seen if s > cutoff}
        return True


async def subscribe(
    cfg: MqttConfig,
    on_event: Callable[[dict[str, Any]], Any],
    patient: str = "+",
    url: str | None = None,
    on_other: Callable[[str, bytes], Any] | None = None,
    ready: asyncio.Event | None = None,
    retries: int = 5,
) -> None:
    """Run until cancelled. Raises aiomqtt.MqttError if the broker stays unreachable after retries."""
    kw = client_kwargs(cfg, url)
    dedupe = Deduper()
    prefix = cfg.topic_prefix
    failures = 0
    while True:
        try:
            async with aiomqtt.Client(**kw, identifier=f"seizurewatch-sub-{int(time.time() * 1000) % 10**9}") as c:
                failures = 0
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
                            continue
                        if dedupe.fresh(payload):
                            res = on_event(payload)
                            if asyncio.iscoroutine(res):
                                await res
                    elif on_other is not None:
                        on_other(topic, raw)
        except aiomqtt.MqttError:
            failures += 1
            if failures > retries:
                raise
            await asyncio.sleep(min(0.5 * 2**failures, 10.0))
