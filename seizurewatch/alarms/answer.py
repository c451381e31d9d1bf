"""An acknowledgement that says whether it landed: publish it, then wait (bounded) for the daemon's answer.

The daemon answers every ack it receives: an ``"event": "ack"`` on the alarm's (or fault's) topic when it
journaled it, a refusal on ``<prefix>/<patient>/refusal`` when it did not (an id it never issued for that
patient, an alarm already ended, a duplicate, a malformed ack). No answer within the bound means no daemon
took it: the retained ``status`` says whether one monitors that patient at all.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import aiomqtt

from seizurewatch.alarms import wire
from seizurewatch.alarms.ack import Ack, Refusal, ack_topic, refusal_topic
from seizurewatch.alarms.connection import CheckedClient, ConnectionPolicy, PublishRefused, watch
from seizurewatch.alarms.subscriber import schema_error
from seizurewatch.config import MqttConfig
from seizurewatch.errors import BrokerError

ANSWER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Answer:
    accepted: bool
    reason: str  # accepted: the journaled event ("ack event 42"); otherwise why not
    answered: bool = True  # False: no daemon answered within the bound


class _Waiter:
    """Reads the patient's topics until the answer to ``ack`` arrives."""

    def __init__(self, prefix: str, patient: str, ack: Ack) -> None:
        self.prefix, self.patient, self.ack = prefix, patient, ack
        self.status: str | None = None  # the retained status: is a daemon there at all?
        self.answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

    def on_message(self, msg: aiomqtt.Message) -> None:
        leaf = str(msg.topic).rsplit("/", 1)[-1]
        raw = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
        if leaf == "status":
            self.status = raw.decode("utf-8", "replace").strip()[:20]
            return
        try:
            body = wire.loads(raw)  # the one strict parser of what comes from the network
        except (wire.WireError, UnicodeDecodeError):
            return
        if schema_error(leaf, body) is not None or self.answer.done():
            return
        a = self.ack
        if leaf == "refusal":
            refusal = Refusal(self.patient, body["reason"], body["alarm_id"], body["action"], body["by"])
            if refusal.answers(a) or refusal.alarm_id is None:
                self.answer.set_result(Answer(False, refusal.reason))
        elif (body.get("event"), body.get("alarm_id"), body.get("action"), body.get("by")) == \
                ("ack", a.alarm_id, a.action, a.by):
            self.answer.set_result(Answer(True, f"journaled by the daemon as event {body['seq']} "
                                                f"({body['kind']} {a.alarm_id})"))

    def silence(self, timeout_s: float) -> Answer:
        if self.status is None:
            why = f"no daemon has announced patient {self.patient} on this broker (no retained status)"
        elif self.status == "offline":
            why = f"the daemon of patient {self.patient} is offline"
        else:
            why = f"the daemon of patient {self.patient} is {self.status} but did not answer"
        return Answer(False, f"no answer within {timeout_s:g} s: {why}", answered=False)


async def ack_and_wait(cfg: MqttConfig, patient: str, ack: Ack, url: str | None = None,
                       timeout_s: float = ANSWER_TIMEOUT_S, retries: int = 2) -> Answer:
    """Publish ``ack`` (QoS 1) and return the daemon's answer, or the silence after ``timeout_s``;
    BrokerError (one line naming the broker) if the broker cannot be reached."""
    policy = ConnectionPolicy(cfg, url, retries=retries, final_on_refused_login=True)
    ident = f"seizurewatch-ack-{os.getpid()}-{os.urandom(3).hex()}"
    base = f"{cfg.topic_prefix}/{patient}"

    async def session(client: CheckedClient) -> Answer:
        waiter = _Waiter(cfg.topic_prefix, patient, ack)
        async with watch(client, waiter.on_message) as reader:
            for topic in (f"{base}/alarm", f"{base}/fault", refusal_topic(cfg.topic_prefix, patient), f"{base}/status"):
                await client.subscribe(topic, qos=1)
            await client.publish(ack_topic(cfg.topic_prefix, patient), ack.to_json(), qos=1,
                                 timeout=cfg.publish_timeout_s)
            waits: set[asyncio.Future[Any]] = {waiter.answer, reader}
            done, _ = await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            if waiter.answer in done:
                return waiter.answer.result()
            if reader in done:
                reader.result()  # the connection dropped: raises MqttError, retried by the policy
            return waiter.silence(timeout_s)

    try:
        answer = await policy.serve(lambda: policy.client(identifier=ident), session)  # BrokerError: gave up
    except PublishRefused as exc:  # the account may not ack (a daemon's): NOT sent, and said so
        who = f"account {cfg.username!r}" if cfg.username else "the anonymous login"
        raise BrokerError(f"MQTT broker {policy.broker} refused the ack ({exc.reason}, 0x{exc.code:02x}); it was "
                          f"NOT sent: {who} may not write {exc.topic} (a station account may)") from None
    assert answer is not None  # noqa: S101 - serve returns the session's answer (no give_up given)
    return answer
