"""The caregiver side: subscribe to a patient's (or every patient's) alarms and faults, check and
de-duplicate them, notice what was missed, and hand each event on.

- Every message is checked before it is believed: the payload must match docs/alarm.schema.json
  and the patient (and kind) its topic names; anything else is logged and ignored, never fatal.
- Delivery is at-least-once: duplicates are dropped on ``(patient, epoch, seq)``.
- Gaps: within one journal a patient's seq has no holes, so a jump ("missed events 4-9 from
  bed1") is reported, from events and from the ``seq`` the retained state carries.
- An alarm is raised once per alarm id: from its start event or, when that was lost (a broker
  without persistence restarted while this station was away), from the first update or the
  retained ``state: alarm`` naming an alarm id not seen yet.

With a ``client_id`` the broker keeps the session (QoS 1 subscription) while the subscriber is
away, so events published meanwhile are delivered when it comes back, if the broker itself
keeps them (``persistence true``: config/mosquitto/seizurewatch.conf).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import aiomqtt
import jsonschema

from seizurewatch.alarms import wire
from seizurewatch.alarms.connection import ConnectionPolicy, watch
from seizurewatch.config import MqttConfig
from seizurewatch.resources import alarm_schema_path, risk_schema_path

log = logging.getLogger(__name__)

MAX_PAYLOAD = 64 * 1024  # an alarm is ~600 bytes; anything this big is not ours


def format_event(p: dict[str, Any]) -> str:
    """One human-readable line for a payload."""
    who = p.get("patient", "?")
    t = p.get("t", 0.0)
    if p.get("event") == "ack":
        note = f" ({p['note']})" if p.get("note") else ""
        return f"[{who}] t={t:8.1f}s {str(p.get('kind')).upper()} {p.get('action')} by {p.get('by')}{note}"
    if p.get("event") == "escalate":
        return f"[{who}] t={t:8.1f}s {str(p.get('kind')).upper()} ESCALATE level {p.get('level')} (not acknowledged)"
    if p.get("kind") == "risk":
        return (f"[{who}] t={t:8.1f}s RISK  {p.get('horizon_s', 0):g} s horizon: {str(p.get('previous')).upper()} -> "
                f"{str(p.get('level')).upper()} (median p={p.get('probability')}, {p.get('output')})")
    if p.get("kind") == "fault":
        chans = f" [{', '.join(p.get('channels', []))}]" if p.get("channels") else ""
        return f"[{who}] t={t:8.1f}s FAULT {p.get('event', '?'):6} {p.get('fault_type')}{chans} {p.get('detail', '')}"
    prob = p.get("probability")
    probs = f"p={prob:.2f}" if isinstance(prob, (int, float)) else ""
    dur = f" after {p['duration_s']:.0f}s" if p.get("event") == "end" and "duration_s" in p else ""
    return f"[{who}] t={t:8.1f}s ALARM {p.get('event', '?'):6} {probs} (threshold {p.get('threshold')}){dur}"


# topic leaf -> (schema file, its definition): every JSON message a daemon publishes
LEAVES = {"alarm": (alarm_schema_path, "alarm"), "fault": (alarm_schema_path, "fault"),
          "state": (alarm_schema_path, "state"), "risk": (risk_schema_path, "risk"),
          "risk_change": (risk_schema_path, "change"), "refusal": (alarm_schema_path, "refusal")}
# checked the same way but not a <prefix>/<patient>/<leaf> topic: <prefix>/<patient>/eeg/<alarm_id>
SCHEMA_LEAVES = {**LEAVES, "eeg": (alarm_schema_path, "eeg")}
EVENT_LEAVES = ("alarm", "fault", "risk_change")  # journaled events: one (epoch, seq) sequence per patient


@lru_cache(maxsize=1)
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    out = {}
    for leaf, (path, name) in SCHEMA_LEAVES.items():
        schema = json.loads(path().read_text(encoding="utf-8"))
        cls = jsonschema.validators.validator_for(schema)
        out[leaf] = cls({"$ref": f"#/$defs/{name}", "$defs": schema["$defs"]})
    return out


def schema_error(leaf: str, payload: Any) -> str | None:
    """Why ``payload`` is not a valid ``leaf`` (alarm, fault, state, risk, risk_change) message, or None."""
    err = jsonschema.exceptions.best_match(_validators()[leaf].iter_errors(payload))
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path) or "payload"
    return f"{where}: {err.message[:200]}"


class Deduper:
    """Remembers the last ``window`` (epoch, seq) per patient (bounded memory on week-long runs)."""

    def __init__(self, window: int = 50_000) -> None:
        self.window = window
        self.seen: dict[str, set[tuple[str, int]]] = {}
        self.order: dict[str, deque[tuple[str, int]]] = {}
        self.duplicates = 0

    def fresh(self, payload: dict[str, Any]) -> bool:
        patient = str(payload.get("patient"))
        key = (str(payload.get("epoch")), int(payload["seq"]))
        seen = self.seen.setdefault(patient, set())
        if key in seen:
            self.duplicates += 1
            return False
        seen.add(key)
        order = self.order.setdefault(patient, deque())
        order.append(key)
        if len(order) > self.window:
            seen.discard(order.popleft())
        return True


class SequenceGaps:
    """Highest seq seen per (patient, journal id); a jump past it is events this station missed.
    The first number seen of a journal is only a baseline (we cannot know what came before)."""

    def __init__(self) -> None:
        self.high: dict[tuple[str, str], int] = {}

    def see(self, patient: str, epoch: str, seq: int, inclusive: bool = False) -> tuple[int, int] | None:
        """Record ``seq``; the (first, last) missed, if any. ``inclusive``: ``seq`` itself was
        issued before this message (a state's), so it is missed too if unseen."""
        key = (patient, epoch.split(".")[0])
        high = self.high.get(key)
        self.high[key] = max(high or 0, seq)
        if high is None:
            return None
        last = seq if inclusive else seq - 1
        return (high + 1, last) if last > high else None


class AlarmsSeen:
    """Alarm ids already raised per patient (bounded), so each alarm is raised once."""

    def __init__(self, window: int = 10_000) -> None:
        self.ids: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.window = window

    def first(self, patient: str, alarm_id: str) -> bool:
        key = (patient, alarm_id)
        if key in self.ids:
            return False
        self.ids[key] = None
        if len(self.ids) > self.window:
            self.ids.popitem(last=False)
        return True


@dataclass
class Handlers:
    """What a station does with what it receives; each may be a plain function or a coroutine function."""

    on_event: Callable[[dict[str, Any]], Any]  # a fresh, valid alarm or fault event
    on_other: Callable[[str, bytes], Any] | None = None  # status (plain text), valid state and refusal messages
    # once per alarm id: (payload, how it was first seen: "start", "update" (start lost) or "state" (retained))
    on_alarm: Callable[[dict[str, Any], str], Any] | None = None
    on_missed: Callable[[str, int, int], Any] | None = None  # (patient, first seq, last seq) never received
    # (patient, payload, why): a numbered event the daemon sent that fails the schema (a bug to report)
    on_invalid: Callable[[str, dict[str, Any], str], Any] | None = None
    on_cleared: Callable[[str], Any] | None = None  # (patient): its retained state was cleared (empty message)


class MessageChecker:
    """Checks, de-duplicates and dispatches messages from ``<prefix>/<patient>/<leaf>`` topics."""

    def __init__(self, prefix: str, handlers: Handlers) -> None:
        self.prefix = prefix
        self.h = handlers
        self.dedupe = Deduper()
        self.gaps = SequenceGaps()
        self.alarms = AlarmsSeen()
        self.ignored = 0
        self.invalid = 0  # numbered events from the daemon that failed the schema

    def _ignore(self, topic: str, why: str) -> None:
        self.ignored += 1
        log.warning("ignoring a malformed message", extra={"topic": topic[:200], "reason": why})

    def _where(self, topic: str) -> tuple[str, str] | None:
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head):].split("/")
        return (parts[0], parts[1]) if len(parts) == 2 else None

    async def handle(self, topic: str, raw: bytes) -> None:
        where = self._where(topic)
        if where is None:
            return self._ignore(topic, "not a <prefix>/<patient>/<leaf> topic")
        patient, leaf = where
        if leaf == "status":
            if self.h.on_other is not None:
                await _call(self.h.on_other, topic, raw[:200])
            return None
        if len(raw) > MAX_PAYLOAD:
            return self._ignore(topic, f"{len(raw)} bytes")
        if leaf == "state" and not raw:  # the retained state was cleared: the bed left the ward
            if self.h.on_cleared is not None:
                await _call(self.h.on_cleared, patient)
            return None
        try:
            payload = wire.loads(raw)
        except wire.WireError as exc:
            return self._ignore(topic, str(exc))
        if leaf not in LEAVES:
            return self._ignore(topic, f"unknown leaf {leaf!r}")
        why = schema_error(leaf, payload)
        if why is None and payload.get("patient") != patient:
            why = f"payload names patient {str(payload.get('patient'))[:64]!r}, the topic {patient!r}"
        if why is not None:
            if leaf != "state" and _numbered(payload, patient):
                return await self._invalid(patient, payload, why)
            return self._ignore(topic, why)
        if leaf == "state":
            await self._state(topic, patient, payload, raw)
        elif leaf in ("risk", "refusal"):  # refusal: an ack the daemon did not take, and why
            if self.h.on_other is not None:
                await _call(self.h.on_other, topic, raw)
        else:
            await self._event(patient, payload)
        return None

    async def _missed(self, patient: str, gap: tuple[int, int] | None) -> None:
        if gap is None:
            return
        log.error("missed events %d-%d from %s (the broker did not deliver them)", gap[0], gap[1], patient,
                  extra={"patient": patient, "first": gap[0], "last": gap[1]})
        if self.h.on_missed is not None:
            await _call(self.h.on_missed, patient, gap[0], gap[1])

    async def _invalid(self, patient: str, payload: dict[str, Any], why: str) -> None:
        """An event the daemon numbered and sent, that fails the schema: delivered (its seq is not missed),
        not believed, and reported as the daemon's bug it is."""
        self.invalid += 1
        log.error("invalid message from the daemon (a bug to report): %s", why,
                  extra={"patient": patient, "epoch": payload["epoch"], "seq": payload["seq"], "reason": why})
        # not de-duplicated: a message on the wrong topic must not hide the real event with its number
        await self._missed(patient, self.gaps.see(patient, payload["epoch"], payload["seq"]))
        if self.h.on_invalid is not None:
            await _call(self.h.on_invalid, patient, payload, why)

    async def _event(self, patient: str, payload: dict[str, Any]) -> None:
        if not self.dedupe.fresh(payload):
            return
        await self._missed(patient, self.gaps.see(patient, payload["epoch"], payload["seq"]))
        await _call(self.h.on_event, payload)
        if payload["kind"] == "alarm" and self.alarms.first(patient, payload["alarm_id"]) \
                and payload["event"] != "end":
            if payload["event"] != "start":
                log.warning("alarm in progress whose start event was not received",
                            extra={"patient": patient, "alarm_id": payload["alarm_id"], "seq": payload["seq"]})
            if self.h.on_alarm is not None:
                await _call(self.h.on_alarm, payload, payload["event"])

    async def _state(self, topic: str, patient: str, state: dict[str, Any], raw: bytes) -> None:
        if "epoch" in state and "seq" in state:
            await self._missed(patient, self.gaps.see(patient, state["epoch"], state["seq"], inclusive=True))
        if self.h.on_other is not None:
            await _call(self.h.on_other, topic, raw)
        alarm_id = state.get("alarm_id")
        if state["state"] == "alarm" and alarm_id and self.alarms.first(patient, alarm_id):
            log.warning("alarm in progress known only from the state topic (its start event was not received)",
                        extra={"patient": patient, "alarm_id": alarm_id})
            if self.h.on_alarm is not None:
                await _call(self.h.on_alarm, state, "state")


def _numbered(payload: Any, patient: str) -> bool:
    """The payload is an event the daemon numbered for ``patient`` (right schema id, epoch and seq), whatever
    else is wrong with it: the broker delivered it, so its seq must not be reported as missed."""
    if not isinstance(payload, dict) or payload.get("schema") != "seizurewatch/event/1":
        return False
    epoch, seq = payload.get("epoch"), payload.get("seq")
    return (payload.get("patient") == patient and isinstance(epoch, str) and "." in epoch
            and isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1)


async def _call(fn: Callable[..., Any], *args: Any) -> None:
    res = fn(*args)
    if asyncio.iscoroutine(res):
        await res


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
    on_alarm: Callable[[dict[str, Any], str], Any] | None = None,
    on_missed: Callable[[str, int, int], Any] | None = None,
    on_invalid: Callable[[str, dict[str, Any], str], Any] | None = None,
) -> None:
    """Run until cancelled. Raises BrokerError (one line naming the broker) if the broker stays
    unreachable for ``retries`` consecutive attempts, or refuses the login."""
    policy = ConnectionPolicy(cfg, url, retries=retries, final_on_refused_login=True)
    station = MessageChecker(cfg.topic_prefix, Handlers(on_event, on_other, on_alarm, on_missed, on_invalid))
    ident = _identifier(client_id)

    async def dispatch(msg: aiomqtt.Message) -> None:
        raw = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
        await station.handle(str(msg.topic), raw)

    last: list[BaseException] = []  # the latest connection error
    waited = [False]  # connecting again after a failure (not after a protocol fallback)

    async def session(client: aiomqtt.Client) -> None:
        if waited[0]:
            log.info("subscriber reconnected", extra={"broker": policy.broker})
            waited[0] = False
        async with watch(client, dispatch) as reader:
            for leaf in (*LEAVES, "status"):
                await client.subscribe(f"{cfg.topic_prefix}/{patient}/{leaf}", qos=1)
            if ready is not None:
                ready.set()
            await reader  # until the connection drops (MqttError)

    def lost(exc: BaseException, up: bool) -> None:
        last[:] = [exc]

    async def wait(delay: float) -> None:
        waited[0] = True
        log.warning("subscriber lost the broker; retrying",
                    extra={"broker": policy.broker, "attempt": policy.failures, "error": policy.message(last[0])})
        await asyncio.sleep(delay)

    await policy.serve(lambda: policy.client(identifier=ident, persistent=client_id is not None), session,
                       on_error=lost, wait=wait)  # BrokerError when it is time to give up
