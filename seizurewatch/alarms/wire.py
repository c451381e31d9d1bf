"""The one parser of JSON that comes from the network (MQTT payloads, the station page's requests).

Python's ``json`` accepts ``NaN``, ``Infinity`` and numbers that overflow to infinity (``1e999``); a
schema's ``minimum``/``maximum`` do not catch them (every comparison with NaN is false), and one such
number in a retained state froze the station (its push task died on ``round(inf)``; the browser's
``JSON.parse`` refuses ``NaN``). Here they are refused before anything reads the message, as are
integers beyond what a browser holds exactly. Ranges (times, probabilities) are the schema's
(docs/alarm.schema.json), checked by the subscriber after this parse.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["WireError", "dumps", "loads"]

MAX_INT = 2**53  # a browser's exact integers


class WireError(ValueError):
    """Why a message is not acceptable JSON (one line, for the log)."""


def _constant(name: str) -> Any:
    raise WireError(f"non-finite number {name} (JSON has none)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise WireError(f"number {text[:40]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text) > 17 or abs(value := int(text)) > MAX_INT:
        raise WireError(f"integer {text[:40]} is out of range")
    return value


def loads(raw: bytes | str) -> Any:
    """The JSON value in ``raw`` (UTF-8); WireError naming the problem otherwise (never anything else)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except WireError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise WireError(f"not JSON ({str(exc)[:120]})") from None


def dumps(value: Any) -> str:
    """Compact JSON that a browser's ``JSON.parse`` reads: ValueError on a non-finite number."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def printable(text: str) -> str:
    """``text`` for a terminal or a log line: every control character (line break, escape sequence) shown as
    its escape (``\\n``, ``\\x1b``), so a name from the network can never forge a line or move the cursor."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
