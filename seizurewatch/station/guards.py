"""The station's two guards in front of the page, pure ASGI (event streams pass untouched): ``BasicAuth`` (one
shared password, wrong ones back off per address) and ``HostGuard`` (only the station's own names: DNS
rebinding). Internal (the public API is ``seizurewatch.api``)."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger("seizurewatch.station.server")  # the station's one logger name, as before the split

FREE_TRIES = 5  # wrong passwords from one address before it must wait
LOCKOUT_MAX_S = 60.0

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BasicAuth:
    """HTTP Basic with one shared password (any user name); pure ASGI so event streams pass untouched."""

    def __init__(self, app: ASGIApp, password: str) -> None:
        self.app = app
        self.password = password.encode()
        self.failures: dict[str, tuple[int, float]] = {}  # client address -> (wrong passwords in a row, wait until)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        who = str((scope.get("client") or ("?",))[0])
        count, until = self.failures.get(who, (0, 0.0))
        wait = until - time.monotonic()
        if wait > 0:  # backoff: no password is even tried from this address until then
            await _plain(send, 429, b"too many wrong passwords; wait and try again\n",
                         [(b"retry-after", str(int(wait) + 1).encode())])
            return
        headers = dict(scope.get("headers") or [])
        if not self._ok(headers):
            if b"authorization" in headers:  # a wrong password (a first visit sends none)
                count += 1
                lock = min(2.0 ** (count - FREE_TRIES), LOCKOUT_MAX_S) if count >= FREE_TRIES else 0.0
                self.failures[who] = (count, time.monotonic() + lock)
                if lock:
                    log.warning("station: %d wrong passwords in a row from %s; it waits %.0f s", count, who, lock)
            await _plain(send, 401, b"password required\n",
                         [(b"www-authenticate", b'Basic realm="seizurewatch station", charset="UTF-8"')])
            return
        self.failures.pop(who, None)
        await self.app(scope, receive, send)

    def _ok(self, headers: dict[bytes, bytes]) -> bool:
        auth = headers.get(b"authorization", b"")
        if not auth.lower().startswith(b"basic "):
            return False
        try:
            _, _, given = base64.b64decode(auth[6:].strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self.password)


async def _plain(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*(headers or []), (b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": body})


def host_name(header: bytes) -> str:
    """The name in a Host header, without its port (``[::1]:8080`` -> ``::1``)."""
    host = header.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostGuard:
    """Refuses a request whose Host header is not one of the station's names (or an IP address): a page on
    another site whose name was rebound to this address (DNS rebinding) sends its own name, and gets nothing."""

    def __init__(self, app: ASGIApp, names: set[str]) -> None:
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = host_name(dict(scope.get("headers") or []).get(b"host", b""))
            if host not in self.names and not _is_ip(host):  # an address typed as such is never a rebinding
                log.warning("station: request for host %r refused (not one of this station's names)", host[:80])
                await _plain(send, 421, b"this station does not answer to that host name\n")
                return
        await self.app(scope, receive, send)
