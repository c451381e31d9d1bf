"""Logging: human-readable text, or one JSON object per line for journald (``--log-format json``).

- Under systemd (``JOURNAL_STREAM`` names our stderr) each line gets a ``<N>`` syslog
  priority prefix, which journald strips and stores as PRIORITY, so ``journalctl -p err``
  works while MESSAGE stays pure JSON.
- Repeats are rate-limited: the same logger, level, text and identifying extras (strings,
  e.g. patient, fault type, alarm id — not numbers such as t or p) pass at most once per
  ``RateLimit.seconds``; the next line that passes carries ``repeated=N``. A state change
  (alarm start → end, a new fault type) is a different line and always passes.
- PHI: the only patient detail the daemon knows by design is the configured patient id.
  As a safety net, extras named like EDF/LSL subject fields (name, birth date, sex, ...)
  are redacted before formatting.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, TextIO

_STD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime", "taskName"}
PHI_KEYS = frozenset({
    "patientname", "patient_name", "patientcode", "patient_code", "patient_additional", "birthdate",
    "birth_date", "dob", "sex", "gender", "subject", "subject_name", "admincode", "technician",
})
REDACTED = "[redacted]"
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: (REDACTED if k.lower() in PHI_KEYS else v) for k, v in vars(record).items() if k not in _STD}


class JsonFormatter(logging.Formatter):
    def __init__(self, syslog_prefix: bool = False) -> None:
        super().__init__()
        self.syslog_prefix = syslog_prefix

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        line = json.dumps(out, default=str, ensure_ascii=False)
        return f"<{_PRIORITY.get(record.levelno, 6)}>{line}" if self.syslog_prefix else line


class TextFormatter(logging.Formatter):
    def __init__(self, syslog_prefix: bool = False) -> None:
        super().__init__()
        self.syslog_prefix = syslog_prefix

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        head = f"{record.levelname:<7} {record.name.removeprefix('seizurewatch.')}: {record.getMessage()}"
        if self.syslog_prefix:  # journald stamps the time itself
            line = f"<{_PRIORITY.get(record.levelno, 6)}>{head}"
        else:
            line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {head}"
        if extra:
            line += f" [{extra}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _identity(value: Any) -> Any:
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return "#"  # numbers and other values vary from line to line: not part of "the same message"


class RateLimit(logging.Filter):
    """Drop a line repeated within ``seconds``; the next one that passes says how many were dropped."""

    MAX_KEYS = 4096

    def __init__(self, seconds: float = 10.0) -> None:
        super().__init__()
        self.seconds = seconds
        self.last: dict[tuple[Any, ...], float] = {}
        self.suppressed: dict[tuple[Any, ...], int] = {}

    def key(self, record: logging.LogRecord) -> tuple[Any, ...]:
        extras = tuple(sorted((k, _identity(v)) for k, v in _extras(record).items() if k != "repeated"))
        return (record.name, record.levelno, record.getMessage(), extras)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            key = self.key(record)
            hash(key)
        except Exception:  # noqa: BLE001 - an odd extra must never lose a log line
            return True
        now = time.monotonic()
        if now - self.last.get(key, -1e18) < self.seconds:
            self.suppressed[key] = self.suppressed.get(key, 0) + 1
            return False
        n = self.suppressed.pop(key, 0)
        if n:
            record.repeated = n
        self.last[key] = now
        if len(self.last) > self.MAX_KEYS:
            self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        for k in [k for k, t in self.last.items() if now - t >= self.seconds]:
            del self.last[k]
            self.suppressed.pop(k, None)


def under_journald(stream: TextIO) -> bool:
    """True when ``stream`` is the journal stream systemd gave us (``JOURNAL_STREAM=dev:inode``)."""
    js = os.environ.get("JOURNAL_STREAM")
    if not js:
        return False
    try:
        dev, ino = (int(x) for x in js.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None,
                  rate_limit_s: float = 10.0) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    out = stream or sys.stderr
    prefix = under_journald(out)
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter(prefix) if fmt == "json" else TextFormatter(prefix))
    handler.addFilter(RateLimit(rate_limit_s))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("amqtt", "transitions", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "DEBUG" else logging.INFO)
