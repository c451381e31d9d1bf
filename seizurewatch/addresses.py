"""The two network addresses seizurewatch reads from its users, each parsed in one place.

- A **broker URL** (``mqtt.url``, ``--mqtt-url``): ``mqtt://host[:port]`` or ``mqtts://host[:port]``; a host,
  a port in 1-65535 (default 1883, 8883 with TLS), nothing after the port, and no password (one comes from
  ``mqtt.password_file`` or ``mqtt.password_env``). The config check and the client both call
  ``parse_broker_url``, so a URL the config accepts is a URL the client can use (before, a password in the
  URL passed the config and was refused only when the client was built).
- A **listen address** (``metrics.listen``, ``station --listen``): ``HOST:PORT``, ``[IPv6]:PORT``, or a bare
  ``PORT`` (``:PORT``) meaning loopback; the host is an IP address or ``localhost`` (a name may resolve to
  several interfaces: say which one). One rule for both (before, the station took host names and refused a
  bare port, the metrics endpoint the reverse).

Errors are ``ValueError`` naming the key (each caller raises it as its own ConfigError or argparse error)
and never repeat what is before an '@' in a URL.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["BrokerURL", "parse_broker_url", "parse_listen"]

MAX_URL_CHARS = 256
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class BrokerURL:
    scheme: str  # "mqtt" | "mqtts"
    host: str
    port: int | None  # None: the scheme's default
    username: str | None

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"


def parse_broker_url(value: object, name: str) -> BrokerURL:
    """``value`` as a broker URL; ValueError starting with ``name`` otherwise."""
    expected = "expected mqtt://host:port or mqtts://host:port"
    shown = repr(value.rpartition("@")[2] if isinstance(value, str) else value)
    if not isinstance(value, str) or not value.startswith(("mqtt://", "mqtts://")):
        raise ValueError(f"{name}: {expected}, got {shown}")
    if not value.isprintable() or len(value) > MAX_URL_CHARS:
        raise ValueError(f"{name}: {expected}, printable and at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{name}: {expected}, got {shown} ({exc})") from None
    if not parts.hostname:
        raise ValueError(f"{name}: {expected}, got {shown} (no host)")
    if port is not None and port < 1:
        raise ValueError(f"{name}: port must be 1-65535, got {shown}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{name}: {expected} with nothing after the port, got {shown}")
    if parts.password:
        raise ValueError(f"{name}: a password in the URL is refused; use mqtt.password_file or mqtt.password_env")
    return BrokerURL(parts.scheme, parts.hostname, port, parts.username or None)


def parse_listen(value: str, name: str, example_port: int) -> tuple[str, int]:
    """``"127.0.0.1:9108"``, ``"9108"`` / ``":9108"`` (loopback), ``"[::1]:9108"`` -> (host, port);
    ValueError starting with ``name`` otherwise."""
    host, sep, port_s = value.rpartition(":")
    host = host.strip("[]") if sep else LOOPBACK
    try:
        port = int(port_s)
        if not 0 <= port <= 65535 or not port_s.isdigit():
            raise ValueError
        if host not in ("localhost",):
            ipaddress.ip_address(host or LOOPBACK)
    except ValueError:
        raise ValueError(f"{name}: expected HOST:PORT such as {LOOPBACK}:{example_port}, got {value!r}") from None
    return host or LOOPBACK, port
