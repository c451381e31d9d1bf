"""Broker address, TLS and credentials from ``MqttConfig``, and one-line connection errors.

Rules: plaintext MQTT only to a loopback broker unless ``allow_plaintext_remote``; the
password comes from a file or an environment variable and never appears in a log line,
an exception or ``repr`` of anything this module returns.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
from pathlib import Path
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from seizurewatch.addresses import parse_broker_url
from seizurewatch.config import MqttConfig
from seizurewatch.errors import ConfigError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_secret_file(path: str, key: str, owner: str = "the daemon") -> str:
    """A password file's content (stripped); ConfigError if others may read it or it cannot be read."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o007:
            raise ConfigError(f"{key}: {path} is open to every user (mode {mode:04o}); chmod 600 {path} "
                              f"(or 640 with {owner}'s group)")
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path} ({exc.strerror})") from None


def read_password(cfg: MqttConfig) -> str | None:
    if cfg.password_file:
        return read_secret_file(cfg.password_file, "mqtt.password_file")
    if cfg.password_env:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise ConfigError(f"mqtt.password_env: environment variable {cfg.password_env} is not set")
        return value
    return None


def tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    """Verify the broker against ``ca_file`` (system CAs if unset); present cert/key if configured."""
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(cfg, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"mqtt.{key}: file not found: {path}")
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"mqtt.ca_file: not a usable CA certificate: {cfg.ca_file} ({exc})") from None
    if cfg.cert_file:
        try:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"mqtt.cert_file: cannot load client certificate {cfg.cert_file} / key "
                              f"{cfg.key_file} ({exc})") from None
    return ctx


def client_kwargs(cfg: MqttConfig, url: str | None = None) -> dict[str, Any]:
    """aiomqtt.Client arguments from the config (URL, TLS, credentials); validates the security rules."""
    try:
        u = parse_broker_url(url or cfg.url, "mqtt.url")  # the one URL rule (the config's check calls it too)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    tls = u.tls or cfg.ca_file is not None
    if not tls and not is_loopback(u.host) and not cfg.allow_plaintext_remote:
        raise ConfigError(
            f"mqtt.url: refusing plaintext MQTT to non-loopback host {u.host}; "
            "use mqtts:// with ca_file, or set mqtt.allow_plaintext_remote: true"
        )
    kw: dict[str, Any] = {
        "hostname": u.host,
        "port": u.port or (8883 if tls else 1883),
        "keepalive": cfg.keepalive_s,
        "timeout": cfg.connect_timeout_s,
        "username": cfg.username or u.username,
        "password": read_password(cfg),
    }
    if tls:
        kw["tls_context"] = tls_context(cfg)
    return kw


def describe_broker(kw: dict[str, Any]) -> str:
    scheme = "mqtts" if kw.get("tls_context") is not None else "mqtt"
    return f"{scheme}://{kw['hostname']}:{kw['port']}"


def protocol_attempts(setting: str) -> list[aiomqtt.ProtocolVersion]:
    if setting == "v5":
        return [aiomqtt.ProtocolVersion.V5]
    if setting == "v311":
        return [aiomqtt.ProtocolVersion.V311]
    return [aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311]


def is_transient(exc: BaseException) -> bool:
    """A connection failure a retry may cure (broker down, network) rather than a refusal or a TLS failure."""
    return not (isinstance(exc, MqttConnectError) or isinstance(exc, ssl.SSLError)
                or "certificate" in str(exc).lower())


MQTT_CONNECT = bytes.fromhex("100c00044d5154540402003c0000")  # 3.1.1 CONNECT, clean session, empty id


def scheme_mismatch(kw: dict[str, Any], timeout: float = 3.0) -> str | None:
    """When a connection failed without a word (reset, or no answer): does the port speak the other
    protocol? One line saying so (TLS where plain was asked, or the reverse), or None. Blocking: call it
    in a thread."""
    import socket

    host, port = kw.get("hostname", "127.0.0.1"), int(kw.get("port", 1883))
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if kw.get("tls_context") is not None:  # asked for TLS: does it answer plain MQTT?
                sock.sendall(MQTT_CONNECT)
                return ("speaks plain MQTT, not TLS, on this port: use mqtt:// (or the broker's TLS port)"
                        if sock.recv(1)[:1] == b"\x20" else None)
            probe = ssl.create_default_context()
            probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE  # only: is this TLS at all?
            with probe.wrap_socket(sock, server_hostname=host):
                return "speaks TLS on this port: use mqtts:// (with mqtt.ca_file)"
    except (OSError, ssl.SSLError):
        return None


LOGIN_REFUSED = (4, 5, 134, 135)  # CONNACK: 3.1.1 bad credentials / not authorised; v5 the same


def login_refused(exc: BaseException) -> bool:
    """The broker refused our login (credentials or authorisation), by code or by its words."""
    if not isinstance(exc, MqttConnectError):
        return False
    rc = getattr(exc, "rc", None)
    lower = str(exc).lower()
    return getattr(rc, "value", rc) in LOGIN_REFUSED or "not authori" in lower or "username or password" in lower


def connect_error_message(exc: BaseException, kw: dict[str, Any], broker: str | None = None) -> str:
    """One line: which broker, what went wrong, what to check. Never contains the password."""
    where = f"MQTT broker {broker or describe_broker(kw)}"
    text = str(exc) or type(exc).__name__
    lower = text.lower()
    user = kw.get("username")
    if isinstance(exc, MqttConnectError):
        if login_refused(exc):
            who = f"user {user!r}" if user else "anonymous login"
            msg = f"{where} refused the login ({who}): {text}; check mqtt.username and the password"
        else:
            msg = f"{where} refused the connection: {text}"
    elif "certificate" in lower or isinstance(exc, ssl.SSLError):
        msg = f"{where}: TLS handshake failed ({text}); check mqtt.ca_file and the broker's certificate"
    elif "timed out" in lower:
        msg = f"{where} unreachable: no answer within {kw.get('timeout')} s"
    else:
        msg = f"{where} unreachable: {text}"
    password = kw.get("password")
    if password:
        msg = msg.replace(str(password), "***")
    return msg
