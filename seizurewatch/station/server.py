"""``seizurewatch station``: one page for the nurse station (Starlette + uvicorn, no front-end build).

The server holds the only broker connection (the station's own credentials, from the config's
``mqtt`` section); the browser gets the ward as Server-Sent Events (``/events``, the whole ward
each time it changes, at most every ``push_every_s``) and acknowledges through ``POST /api/ack``,
which the server publishes to ``<prefix>/<patient>/ack``. The browser never sees broker credentials.

Listening anywhere but loopback needs a password (HTTP Basic, any user name; wrong ones back off), in a
file only its owner (and group) may read; use ``--ssl-certfile``/``--ssl-keyfile`` (or a TLS proxy) off
the machine so it is not sent in clear (a warning says so otherwise).

The station answers only itself: a request whose Host header is not the configured listen name, a
loopback name or an ``--allow-host`` name is refused (DNS rebinding), and an acknowledgement needs the
page's own origin and the unguessable token the server put in that page (CSRF).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from seizurewatch.addresses import parse_listen
from seizurewatch.alarms import wire
from seizurewatch.alarms.ack import AckError, ack_topic, parse_ack
from seizurewatch.alarms.connection import CheckedClient, ConnectionPolicy, PublishRefused, watch
from seizurewatch.alarms.security import is_loopback, read_secret_file
from seizurewatch.alarms.subscriber import LEAVES, Handlers, MessageChecker, schema_error
from seizurewatch.config import MqttConfig
from seizurewatch.errors import ConfigError
from seizurewatch.station.guards import ASGIApp, BasicAuth, HostGuard
from seizurewatch.station.ward import Ward

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
KEEPALIVE_S = 15.0
TRACE_EVERY_S = 5.0  # the probability traces go out this often (the rest of the ward at every push)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SESSIONS = 10_000  # page tokens remembered (one per page load), oldest forgotten first



@dataclass(frozen=True)
class StationOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    password: str | None = None
    station_name: str = "station"
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    push_every_s: float = 0.25
    stale_s: float = 15.0
    allow_hosts: tuple[str, ...] = ()  # Host header names accepted besides the listen name and loopback

    def host_names(self) -> set[str]:
        """The names this station answers to: loopback, the listen address unless a wildcard (then this
        machine's names), and ``allow_hosts``."""
        names = {*LOOPBACK_NAMES, *(h.lower() for h in self.allow_hosts)}
        if self.host in ("0.0.0.0", "::", ""):
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        else:
            names.add(self.host.lower())
        return names

    @classmethod
    def from_listen(cls, listen: str, password_file: str | None = None, **kw: Any) -> StationOptions:
        try:
            host, port = parse_listen(listen, "--listen", 8080)  # the one listen-address rule
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        password = None
        if password_file:
            password = read_secret_file(password_file, "--password-file", "the station")
            if not password:
                raise ConfigError(f"--password-file: {password_file} is empty")
        if not is_loopback(host) and password is None:
            raise ConfigError(f"--listen {listen}: not a loopback address; give --password-file so that only staff "
                              f"can see the ward and acknowledge alarms (and --ssl-certfile/--ssl-keyfile)")
        if bool(kw.get("ssl_certfile")) != bool(kw.get("ssl_keyfile")):
            raise ConfigError("--ssl-certfile and --ssl-keyfile: give both or neither")
        if not is_loopback(host) and not kw.get("ssl_certfile"):
            log.warning("station listens on %s without TLS: the page's password and the ward cross the network "
                        "in clear; give --ssl-certfile/--ssl-keyfile (or put a TLS proxy in front)", listen)
        return cls(host=host, port=port, password=password, **{k: v for k, v in kw.items() if v is not None})


class Station:
    """The ward model, the broker connection that feeds it, and the browsers it pushes to."""

    def __init__(self, cfg: MqttConfig, opts: StationOptions, url: str | None = None) -> None:
        self.cfg = cfg
        self.opts = opts
        # the shared policy (protocol fallback, backoff, TCP_NODELAY); a station server keeps trying and
        # shows the broker's error on the page rather than exiting
        self.policy = ConnectionPolicy(cfg, url)
        self.broker = self.policy.broker
        self.ward = Ward(stale_s=opts.stale_s)
        # the subscriber's checks: schema, topic vs payload, de-duplication on (patient, epoch, seq), gaps
        self.checker = MessageChecker(cfg.topic_prefix, Handlers(on_event=self._on_event, on_other=self._on_other,
                                                                 on_missed=self._on_missed,
                                                                 on_invalid=self._on_invalid,
                                                                 on_cleared=self.ward.forget))
        self.browsers: set[asyncio.Queue[str]] = set()
        self.connected = asyncio.Event()
        self.closing = asyncio.Event()
        self.messages = 0
        self.ignored = 0
        self._client: aiomqtt.Client | None = None
        self._broker_error = ""
        self.sessions: OrderedDict[str, None] = OrderedDict()  # tokens of the pages this server handed out

    # ----- broker ----------------------------------------------------------------------
    async def run_mqtt(self) -> None:
        """Subscribe and feed the ward; reconnect as the connection policy says, forever (the page shows
        the link's state)."""
        ident = f"seizurewatch-station-{os.getpid()}-{os.urandom(3).hex()}"
        await self.policy.serve(lambda: self.policy.client(identifier=ident), self._session, on_error=self._lost)

    async def _session(self, client: CheckedClient) -> None:
        prefix = self.cfg.topic_prefix
        try:
            async with watch(client, self._dispatch) as reader:
                for leaf in (*LEAVES, "status"):  # risk_change too: it shares the events' seq
                    await client.subscribe(f"{prefix}/+/{leaf}", qos=1)
                await client.subscribe(f"{prefix}/+/eeg/+", qos=1)  # the EEG behind each alarm
                self._client = client
                self._set_connected(True)
                await reader  # until the connection drops
        finally:
            self._client = None
            self._set_connected(False)

    def _lost(self, exc: BaseException, up: bool) -> None:
        self._broker_error = self.policy.message(exc)
        log.warning("station lost the broker; retrying", extra={"broker": self.broker, "error": self._broker_error})

    def _set_connected(self, up: bool) -> None:
        if up != self.connected.is_set():
            (self.connected.set if up else self.connected.clear)()
            self.ward.version += 1
            if up:
                self._broker_error = ""
                log.info("station connected to the broker", extra={"broker": self.broker})

    async def _dispatch(self, msg: aiomqtt.Message) -> None:
        self.messages += 1
        raw = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
        await self.handle(str(msg.topic), raw)

    async def handle(self, topic: str, raw: bytes) -> None:
        """One message from the broker: checked like ``seizurewatch subscribe`` checks it (anything malformed
        is logged and ignored), then into the ward."""
        if self._eeg(topic, raw):
            return
        before = self.checker.ignored
        await self.checker.handle(topic, raw)
        self.ignored += self.checker.ignored - before

    def _eeg(self, topic: str, raw: bytes) -> bool:
        """``<prefix>/<patient>/eeg/<alarm_id>``: the EEG behind an alarm, checked like every message (True: it
        was one, handled); an empty payload is the daemon clearing an old one."""
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != self.cfg.topic_prefix or parts[2] != "eeg":
            return False
        patient, alarm_id = parts[1], parts[3]
        if not raw:
            self.ward.on_eeg(patient, alarm_id, None)
            return True
        try:
            payload, why = wire.loads(raw), None
        except wire.WireError as exc:
            payload, why = None, str(exc)
        if payload is not None:
            why = schema_error("eeg", payload)
        if why is None and payload is not None and (payload.get("patient"), payload.get("alarm_id")) != (patient,
                                                                                                    alarm_id):
            why = "payload names another patient or alarm than its topic"
        if why is not None or payload is None:
            self.ignored += 1
            log.warning("ignoring a malformed EEG message", extra={"topic": topic[:200], "reason": why})
            return True
        self.ward.on_eeg(patient, alarm_id, payload)
        return True

    def eeg(self, patient: str, alarm_id: str) -> dict[str, Any] | None:
        bed = self.ward.beds.get(patient)
        return bed.eeg.get(alarm_id) if bed is not None else None

    def _on_event(self, payload: dict[str, Any]) -> None:
        self.ward.on_event(payload, time.time())

    def _on_other(self, topic: str, raw: bytes) -> None:
        patient, leaf = topic.split("/")[-2:]
        if leaf == "status":
            self.ward.on_status(patient, raw.decode("utf-8", "replace").strip(), time.time())
        elif leaf == "state":
            self.ward.on_state(patient, wire.loads(raw), time.time())
        elif leaf == "refusal":
            self.ward.on_refusal(patient, wire.loads(raw))
        elif leaf == "risk":
            self.ward.on_risk(patient, wire.loads(raw), time.time())

    def _on_missed(self, patient: str, first: int, last: int) -> None:
        self.ward.on_missed(patient, first, last)

    def _on_invalid(self, patient: str, payload: dict[str, Any], why: str) -> None:
        self.ward.on_invalid(patient)

    async def send_ack(self, patient: str, body: dict[str, Any]) -> dict[str, Any]:
        """Validate an ack from the page and publish it; (HTTP status, answer)."""
        client = self._client
        if client is None:
            return {"status": 503, "error": "the station is not connected to the broker; the ack was NOT sent"}
        try:
            ack = parse_ack(json.dumps(body).encode())
        except AckError as exc:
            return {"status": 400, "error": str(exc)}
        try:
            await client.publish(ack_topic(self.cfg.topic_prefix, patient), ack.to_json(), qos=1,
                                 timeout=self.cfg.publish_timeout_s)
        except (aiomqtt.MqttError, PublishRefused) as exc:
            return {"status": 503, "error": f"the broker did not take the ack ({exc}); it was NOT sent"}
        log.info("ack sent", extra={"patient": patient, "alarm_id": ack.alarm_id, "action": ack.action,
                                    "by": ack.by})
        return {"status": 200, "ok": True, "patient": patient, "alarm_id": ack.alarm_id, "action": ack.action}

    # ----- browsers --------------------------------------------------------------------
    def new_session(self) -> str:
        """An unguessable token for one page load; its acknowledgements must carry it."""
        token = secrets.token_urlsafe(24)
        self.sessions[token] = None
        while len(self.sessions) > SESSIONS:
            self.sessions.popitem(last=False)
        return token

    def valid_session(self, token: str) -> bool:
        return bool(token) and token in self.sessions

    def snapshot_json(self, history: bool = True) -> str:
        snap = self.ward.snapshot(time.time(), history=history)
        snap.update(broker={"connected": self.connected.is_set(), "name": self.broker, "error": self._broker_error},
                    station=self.opts.station_name)
        return wire.dumps(snap)

    async def push(self) -> None:
        """Push the ward to every browser when it changed (and once a second, for 'last seen' and offline);
        the probability traces every TRACE_EVERY_S (a browser that just connected gets them at once)."""
        seen, last_push, last_trace = -1, 0.0, 0.0
        while True:
            await asyncio.sleep(self.opts.push_every_s)
            now = time.monotonic()
            if self.browsers and (self.ward.version != seen or now - last_push >= 1.0):
                seen, last_push = self.ward.version, now
                traces = now - last_trace >= TRACE_EVERY_S
                last_trace = now if traces else last_trace
                try:
                    data = self.snapshot_json(history=traces)
                except Exception:  # noqa: BLE001 - supervised: the loop outlives any one bad ward
                    log.exception("station push failed; trying again at the next tick")
                    continue
                for q in list(self.browsers):
                    _replace(q, data)

    async def stream(self) -> AsyncIterator[str]:
        q: asyncio.Queue[str] = asyncio.Queue(maxsize=1)  # a slow browser gets the latest ward, not a backlog
        self.browsers.add(q)
        try:
            yield f"retry: 2000\ndata: {self.snapshot_json()}\n\n"
            while not self.closing.is_set():
                try:
                    data = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                yield f"data: {data}\n\n"
        finally:
            self.browsers.discard(q)


def _replace(q: asyncio.Queue[str], data: str) -> None:
    with contextlib.suppress(asyncio.QueueEmpty):
        q.get_nowait()
    q.put_nowait(data)


async def _ack(station: Station, request: Any) -> Any:
    """``POST /api/ack``: an acknowledgement from the page, checked (CSRF, the page's token, the bed, a name)
    before the server publishes it with its own credentials."""
    from starlette.responses import JSONResponse

    # A custom header cannot be sent cross-site without a CORS preflight this server never grants,
    # so another page open in the same browser cannot acknowledge alarms (CSRF).
    if request.headers.get("x-seizurewatch-station") != "1":
        return JSONResponse({"error": "missing X-Seizurewatch-Station header"}, status_code=403)
    origin, host = request.headers.get("origin"), request.headers.get("host", "")
    if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
        return JSONResponse({"error": f"cross-origin request from {origin[:80]} refused"}, status_code=403)
    if not station.valid_session(request.headers.get("x-seizurewatch-token", "")):
        return JSONResponse({"error": "no valid page token: reload the page"}, status_code=403)
    try:
        body = wire.loads(await request.body())
    except wire.WireError as exc:
        return JSONResponse({"error": f"expected a JSON body ({exc})"}, status_code=400)
    if not isinstance(body, dict) or not isinstance(body.get("patient"), str):
        return JSONResponse({"error": "expected {patient, alarm_id, action, by}"}, status_code=400)
    patient = body.pop("patient")
    if patient not in station.ward.beds:
        return JSONResponse({"error": f"no bed {patient!r} on the broker"}, status_code=404)
    if not str(body.get("by") or "").strip():  # who answered is part of the record: never "station"
        return JSONResponse({"error": "by: type your name first; the ack was NOT sent"}, status_code=400)
    answer = await station.send_ack(patient, body)
    return JSONResponse(answer, status_code=int(answer.pop("status")))


def make_app(station: Station) -> ASGIApp:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def page(request: Request) -> Response:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        meta = f'<meta name="seizurewatch-token" content="{station.new_session()}">\n</head>'
        return HTMLResponse(html.replace("</head>", meta, 1), headers={"Cache-Control": "no-store"})

    async def ward(request: Request) -> Response:
        return Response(station.snapshot_json(), media_type="application/json")

    async def eeg(request: Request) -> Response:
        found = station.eeg(request.path_params["patient"], request.path_params["alarm_id"])
        if found is None:
            return JSONResponse({"error": "no EEG for this alarm (yet)"}, status_code=404)
        return JSONResponse(found, headers={"Cache-Control": "no-store"})

    async def events(request: Request) -> Response:
        return StreamingResponse(station.stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def ack(request: Request) -> Response:
        return await _ack(station, request)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(station.run_mqtt(), name="station-mqtt"),
                 asyncio.create_task(station.push(), name="station-push")]
        try:
            yield
        finally:
            station.closing.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app: ASGIApp = Starlette(routes=[
        Route("/", page), Route("/api/ward", ward), Route("/events", events), Route("/api/ack", ack, methods=["POST"]),
        Route("/api/eeg/{patient}/{alarm_id}", eeg),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], lifespan=lifespan)
    if station.opts.password is not None:
        app = BasicAuth(app, station.opts.password)
    return HostGuard(app, station.opts.host_names())


def serve(cfg: MqttConfig, opts: StationOptions, url: str | None = None) -> None:
    """Run the station until SIGINT/SIGTERM (uvicorn owns the signals)."""
    import uvicorn

    station = Station(cfg, opts, url)
    config = uvicorn.Config(make_app(station), host=opts.host, port=opts.port, log_level="warning",
                            ssl_certfile=opts.ssl_certfile, ssl_keyfile=opts.ssl_keyfile,
                            timeout_graceful_shutdown=2, lifespan="on")
    log.info("station serving", extra={"url": f"{'https' if opts.ssl_certfile else 'http'}://{opts.host}:{opts.port}/",
                                       "broker": station.broker, "password": opts.password is not None})
    uvicorn.Server(config).run()
