"""The one broker-connection policy every seizurewatch MQTT client follows (the daemon's per-patient
link, the ``subscribe`` station, the station server, ``ack``), and the one reconnect loop they share.

How to use it (the caller owns what a connection does; the policy owns when to connect again, as aiomqtt's
docs/reconnection.md advises)::

    policy = ConnectionPolicy(cfg, url, retries=None)          # None: keep trying for ever

    async def session(client: CheckedClient) -> None:
        async with watch(client, on_message) as gone:
            ...                                                # publish, subscribe; gone.done() = link dropped

    await policy.serve(lambda: policy.client(identifier="..."), session)

``serve`` connects, calls ``connected()``, runs the session, and after a connection error waits what
``failed()`` says (raising ``BrokerError`` when it is time to give up) before connecting again; a session
that returns ends it with its value. Hooks let a caller log in its own words (``on_error``), wait its own
way (``wait``), stop (``give_up``) or pick the delay itself (``on_error`` returning seconds: a refusal
waiting will not cure faster, such as a publish the broker's ACL refused).

What the policy decides, in one place:
- **protocol**: with ``protocol: auto`` MQTT v5 first; a broker that refuses v5 (CONNACK 1 / 132),
  or stays mute on it before we were ever connected, is retried with 3.1.1 at once;
- **login refusal** (CONNACK 4/5/134/135: ``security.LOGIN_REFUSED``) is final for a client that asks so
  (``final_on_refused_login``: a station at a desk), retried with backoff otherwise (a bedside
  daemon keeps its events on disk and keeps trying, loudly);
- **backoff**: 0.5 s doubling to 10 s, with jitter (beds do not reconnect in lockstep), reset by
  ``connected()``; ``retries`` consecutive failures end in ``BrokerError``;
- **socket**: TCP_NODELAY through aiomqtt's public ``socket_options`` (no Nagle delay on small
  QoS 1 publishes).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from seizurewatch.alarms.security import (
    client_kwargs,
    connect_error_message,
    describe_broker,
    is_transient,
    login_refused,
    protocol_attempts,
    scheme_mismatch,
)
from seizurewatch.config import MqttConfig
from seizurewatch.errors import BrokerError

log = logging.getLogger(__name__)

__all__ = ["CONNECTION_ERRORS", "CheckedClient", "ConnectionLost", "ConnectionPolicy", "PublishRefused",
           "publish_window", "watch"]

T = TypeVar("T")
Session = Callable[["CheckedClient"], Awaitable[T]]
# (the error, whether the connection was up when it came) -> None: the policy's backoff; seconds: wait that long
OnError = Callable[[BaseException, bool], float | None]

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0
NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
PROTOCOL_REFUSED = (1, 132)  # 3.1.1 unacceptable protocol version; v5 unsupported protocol version
# What a dropped or refused connection raises (OSError/TimeoutError: socket or TLS failures paho did not wrap).
CONNECTION_ERRORS = (aiomqtt.MqttError, OSError, TimeoutError)


_MIDS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("seizurewatch_publish_mids", default=None)


class PublishRefused(Exception):  # noqa: N818 - what the broker said, not a bug of ours
    """The broker answered a publish with a failure reason code (MQTT v5 PUBACK >= 0x80, e.g. 0x87 Not
    authorized when the account's ACL does not allow the topic): the message was NOT accepted."""

    def __init__(self, topic: str, reason: str, code: int) -> None:
        super().__init__(f"the broker refused the publish on {topic}: {reason} (0x{code:02x})")
        self.topic = topic
        self.reason = reason
        self.code = code


class CheckedClient(aiomqtt.Client):
    """aiomqtt.Client whose QoS 1 ``publish`` raises PublishRefused when the PUBACK carries a failure reason
    code. aiomqtt 2.5 sets a publish's confirmation whatever the broker answered (paho hands the reason code
    to ``on_publish``; aiomqtt drops it), so a refused publish looked delivered. Under MQTT 3.1.1 a broker
    has no way to say no (it acks and drops): ``ConnectionPolicy.check_publish`` sees that by the echo."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusals: dict[int, Any] = {}

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            self._refusals[mid] = reason_code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    @contextlib.contextmanager
    def _pending_call(self, mid: int, value: T, pending_dict: dict[int, T]) -> Iterator[None]:
        mids = _MIDS.get()
        if mids is not None and pending_dict is self._pending_publishes:
            self._refusals.pop(mid, None)  # a stale answer for a reused id (a publish abandoned earlier)
            mids.append(mid)
        with super()._pending_call(mid, value, pending_dict):
            yield

    async def publish(self, /, topic: str, payload: Any = None, qos: int = 0, retain: bool = False,  # noqa: FBT001, FBT002
                      properties: Any = None, *args: Any, timeout: float | None = None, **kwargs: Any) -> None:
        mids: list[int] = []
        token = _MIDS.set(mids)
        try:
            await super().publish(topic, payload, qos, retain, properties, *args, timeout=timeout, **kwargs)
        finally:
            _MIDS.reset(token)
        for mid in mids:
            rc = self._refusals.pop(mid, None)
            if rc is not None:
                raise PublishRefused(topic, str(rc), int(getattr(rc, "value", 0x80)))


def _reason(exc: BaseException) -> Any:
    rc = getattr(exc, "rc", None)
    return getattr(rc, "value", rc)


class ConnectionPolicy:
    """Broker address, credentials and TLS from ``MqttConfig`` (validated at construction: a bad
    setting is a ConfigError now, not at the first alarm), and what to do after each failure."""

    def __init__(self, cfg: MqttConfig, url: str | None = None, *, retries: int | None = None,
                 final_on_refused_login: bool = False) -> None:
        self.cfg = cfg
        self.kw = client_kwargs(cfg, url)
        self.broker = describe_broker(self.kw)
        self.protocols = protocol_attempts(cfg.protocol)
        self.retries = retries
        self.final_on_refused_login = final_on_refused_login
        self.failures = 0  # consecutive
        self.ever_connected = False
        self._backoff = BACKOFF_MIN_S

    @property
    def protocol(self) -> aiomqtt.ProtocolVersion:
        return self.protocols[0]

    def client(self, *, identifier: str, persistent: bool = False, **extra: Any) -> CheckedClient:
        """An aiomqtt.Client for the current protocol; ``persistent`` keeps the broker-side session
        (a station's QoS 1 subscription survives while it is away)."""
        args: dict[str, Any] = {**self.kw, **extra, "identifier": identifier, "socket_options": (NO_DELAY,)}
        if self.protocol == aiomqtt.ProtocolVersion.V5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 7 * 86400 if persistent else 0
            args["properties"] = props
            args["clean_start"] = not persistent
        else:
            args["clean_session"] = not persistent
        return CheckedClient(**args, protocol=self.protocol)

    def connected(self) -> None:
        self.ever_connected = True
        self.failures = 0
        self._backoff = BACKOFF_MIN_S

    def message(self, exc: BaseException) -> str:
        """One line naming the broker and what to check; never the password."""
        return connect_error_message(exc, self.kw, self.broker)

    def refused_login(self, exc: BaseException) -> bool:
        return login_refused(exc)

    def fall_back(self, exc: BaseException) -> bool:
        """True (and 3.1.1 chosen) when the broker refused MQTT v5, or never answered it."""
        if len(self.protocols) > 1 and (
            (isinstance(exc, MqttConnectError)
             and (_reason(exc) in PROTOCOL_REFUSED or "protocol version" in str(exc).lower()))
            or (not self.ever_connected and "timed out" in str(exc).lower())  # v3-only brokers may stay mute
        ):
            log.info("broker refused MQTT v5 (or did not answer); trying 3.1.1", extra={"broker": self.broker})
            self.protocols = self.protocols[1:]
            return True
        return False

    def failed(self, exc: BaseException) -> float:
        """Seconds to wait before the next attempt (0 after a protocol fallback); BrokerError (one
        line) when the login was refused and that is final, or after ``retries`` failures in a row."""
        if self.fall_back(exc):
            return 0.0
        if self.final_on_refused_login and self.refused_login(exc):
            raise BrokerError(self.message(exc)) from None
        self.failures += 1
        if self.retries is not None and self.failures > self.retries:
            raise BrokerError(f"{self.message(exc)} (gave up after {self.retries} retries)") from None
        delay = self._backoff * (0.5 + random.random())
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
        return delay

    async def serve(self, connect: Callable[[], CheckedClient], session: Session[T], *,
                    on_error: OnError | None = None, wait: Callable[[float], Awaitable[None]] = asyncio.sleep,
                    give_up: Callable[[], bool] | None = None, errors: tuple[type[BaseException], ...] = ()
                    ) -> T | None:
        """The one reconnect loop: connect (``connect()``, a fresh client each time), ``connected()``, run
        ``session(client)`` and return what it returns. A connection error (or one of ``errors``) goes to
        ``on_error(exc, up)`` (``up``: the connection was established), then, unless ``give_up()`` says
        stop (None returned), the loop waits ``on_error``'s seconds or the policy's backoff (``failed``:
        BrokerError when it is time to give up; 0 after a protocol fallback: at once) and connects again."""
        caught: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, *errors)
        while True:
            up = False
            try:
                async with connect() as client:
                    self.connected()
                    up = True
                    return await session(client)
            except caught as exc:
                chosen = on_error(exc, up) if on_error is not None else None
                if give_up is not None and give_up():
                    return None
                if chosen is None and not isinstance(exc, CONNECTION_ERRORS):
                    raise
                delay = self.failed(exc) if chosen is None else chosen
                if delay > 0:
                    await wait(delay)

    async def check(self, identifier: str, **extra: Any) -> None:
        """Connect once, now (falling back to 3.1.1 if need be); BrokerError with one line if the broker
        is unreachable or refuses us."""
        await self._once(lambda: self.client(identifier=identifier, **extra), None)

    async def check_publish(self, identifier: str, topic: str) -> None:
        """Connect and publish on ``topic`` (QoS 1, not retained) what the broker holds retained there (or
        ``offline`` when nothing is), so a running daemon's station sees nothing change; BrokerError (one
        line) if the broker refuses it (MQTT v5 reason code) or, under 3.1.1 where a broker cannot say no,
        never routes it back to us."""
        await self._once(lambda: self.client(identifier=identifier), lambda client: self._test_publish(client, topic))

    async def _once(self, connect: Callable[[], CheckedClient], session: Session[None] | None) -> None:
        """One connection (again at once only after a protocol fallback); BrokerError (one line; transient
        when waiting may cure it) otherwise."""
        while True:
            try:
                async with connect() as client:
                    if session is not None:
                        await session(client)
                    return
            except CONNECTION_ERRORS as exc:
                if self.fall_back(exc):
                    continue
                await self._mismatch(exc)
                raise BrokerError(self.message(exc), is_transient(exc)) from None  # transient: run waits

    async def _mismatch(self, exc: BaseException) -> None:
        """A reset or a silence may be TLS against a plain port (or the reverse): BrokerError saying so
        (not transient: waiting does not fix a URL)."""
        text = str(exc).lower()
        if any(k in text for k in ("reset by peer", "timed out", "eof occurred", "connection closed")):
            found = await asyncio.to_thread(scheme_mismatch, self.kw)
            if found:
                raise BrokerError(f"MQTT broker {self.broker} {found}") from None

    async def _test_publish(self, client: CheckedClient, topic: str) -> None:
        got: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()
        account = f"account {self.kw.get('username')!r}" if self.kw.get("username") else "the anonymous login"
        fix = f"let {account} write {topic} in the broker's ACL (config/mosquitto/seizurewatch.acl)"
        async with watch(client, got.put_nowait):
            await client.subscribe(topic, qos=1)
            held = b"offline"
            with contextlib.suppress(TimeoutError):
                first = await asyncio.wait_for(got.get(), 1.0)
                if first.retain and isinstance(first.payload, bytes):
                    held = first.payload
            try:
                await client.publish(topic, held, qos=1, timeout=self.cfg.publish_timeout_s)
            except PublishRefused as exc:
                raise BrokerError(f"MQTT broker {self.broker} refused a test publish on {topic} ({exc.reason}, "
                                  f"0x{exc.code:02x}): {fix}") from None
            if self.protocol == aiomqtt.ProtocolVersion.V5:
                return  # the PUBACK said accepted
            try:
                async with asyncio.timeout(max(self.cfg.publish_timeout_s, 2.0)):
                    while True:
                        msg = await got.get()
                        if not msg.retain and msg.payload == held:
                            return
            except TimeoutError:
                raise BrokerError(f"MQTT broker {self.broker} took a test publish on {topic} but never routed "
                                  f"it back (MQTT 3.1.1 brokers drop what the ACL refuses silently): {fix}") from None


class ConnectionLost(aiomqtt.MqttError):
    """The connection dropped while publishes were waiting for their PUBACK."""


async def publish_window(client: aiomqtt.Client, gone: asyncio.Task[None], msgs: list[tuple[str, bytes, bool]],
                         timeout: float) -> tuple[list[bool], ConnectionLost | PublishRefused | None]:
    """Publish ``msgs`` ((topic, payload, retain), QoS 1) in order, all on the wire at once; which the broker
    accepted, and why not (a refusal in a PUBACK is not a delivery). aiomqtt does not wake pending publishes
    on a disconnect (they would sit until their timeout), so the window races the connection's reader
    (``gone``, from ``watch``)."""
    tasks = [asyncio.ensure_future(client.publish(t, p, qos=1, retain=r, timeout=timeout)) for t, p, r in msgs]
    everything = asyncio.gather(*tasks, return_exceptions=True)
    waits: set[asyncio.Future[Any]] = {everything, gone}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if not everything.done():
        everything.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await everything
    acked = [t.done() and not t.cancelled() and t.exception() is None for t in tasks]
    if all(acked):
        return acked, None
    errors = [t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception()]
    refused = next((e for e in errors if isinstance(e, PublishRefused)), None)
    if refused is not None:
        return acked, refused  # the accepted ones count; the refused do not
    return acked, ConnectionLost(f"no PUBACK for {acked.count(False)} message(s): "
                                 f"{errors[0] if errors else 'connection lost'}")


MessageHandler = Callable[[aiomqtt.Message], Awaitable[None] | None]


async def _read(client: aiomqtt.Client, on_message: MessageHandler | None) -> None:
    async for msg in client.messages:  # raises MqttError when the connection drops
        if on_message is not None:
            res = on_message(msg)
            if res is not None:
                await res


@contextlib.asynccontextmanager
async def watch(client: aiomqtt.Client, on_message: MessageHandler | None = None) -> AsyncIterator[asyncio.Task[None]]:
    """Read the connection's incoming messages (handing each to ``on_message``, in order) in a task
    that ends, with the MqttError, when the connection drops: await it or race against it. Its
    outcome is always collected, so no 'Future exception was never retrieved' is left behind."""
    task = asyncio.create_task(_read(client, on_message), name="mqtt-read")
    try:
        yield task
    except CONNECTION_ERRORS:
        # The link dropped under a publish: let the reader see the drop too, so aiomqtt's
        # 'disconnected' future is read (not left to the garbage collector's warning).
        await asyncio.wait({task}, timeout=1.0)
        raise
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, *CONNECTION_ERRORS):
            await task
