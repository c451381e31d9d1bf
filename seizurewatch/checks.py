"""One vocabulary for argument checks (after mne-lsl's ``utils/_checks.py``).

Each check returns the value it accepted and raises ``ValueError`` naming the key and what
was expected; the caller turns that into its own error class with the file in front
(``typedyaml`` for config and recipe files, ``modelfile`` for a model's metadata, the CLI
for command-line paths). No ad-hoc ``if``s in the dataclasses: they call these.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

# MQTT topic levels we build from config values: a bound well under MQTT's 65,535 bytes, and long
# enough for any bed, room or hospital naming scheme.
MAX_ID_CHARS = 128
MAX_PREFIX_CHARS = 256


def check_number(value: float, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """A finite number within [low, high] (open ends with ``low_open`` / ``high_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    lo_bad = low is not None and (value <= low if low_open else value < low)
    hi_bad = high is not None and (value >= high if high_open else value > high)
    if lo_bad or hi_bad:
        raise ValueError(f"{name}: must be {_interval(low, high, low_open, high_open)} (got {value!r})")
    return value


def check_int(value: int, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """An integer within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    check_number(value, name, low=low, high=high)
    return value


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"{'>' if low_open else '>='} {low:g} and {'<' if high_open else '<='} {high:g}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    assert high is not None
    return f"{'<' if high_open else '<='} {high:g}"


def check_text(value: str, name: str, *, max_chars: int = MAX_PREFIX_CHARS) -> str:
    """A printable string without NUL or line breaks, at most ``max_chars`` long."""
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {value!r}")
    if len(value) > max_chars:
        raise ValueError(f"{name}: at most {max_chars} characters (got {len(value):,})")
    if not value.isprintable():
        raise ValueError(f"{name}: must be printable text, without NUL, line breaks or other control "
                         f"characters (got {value[:80]!r})")
    return value


def check_topic_level(value: str, name: str) -> str:
    """One MQTT topic level built from config (a patient id): no '/', wildcards, spaces or control
    characters; at most MAX_ID_CHARS."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: must be a non-empty string (got {value!r})")
    check_text(value, name, max_chars=MAX_ID_CHARS)
    bad = sorted({c for c in value if c in "/#+ "})
    if bad:
        raise ValueError(f"{name}: must be free of '/', '#', '+' and spaces (got {value!r})")
    return value


def check_topic_prefix(value: str, name: str) -> str:
    """A topic prefix ('seizurewatch', 'ward3/seizurewatch'): levels without wildcards, none empty,
    not starting with '$' (reserved by brokers)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: must be a non-empty string (got {value!r})")
    check_text(value, name, max_chars=MAX_PREFIX_CHARS)
    if "#" in value or "+" in value:
        raise ValueError(f"{name}: must not contain the MQTT wildcards '#' or '+' (got {value!r})")
    if value.startswith("$") or "" in value.split("/"):
        raise ValueError(f"{name}: levels must be non-empty and not start with '$' (got {value!r})")
    return value


def check_broker_url(value: str, name: str) -> str:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` (``addresses.parse_broker_url``: the one URL rule)."""
    from seizurewatch.addresses import parse_broker_url

    parse_broker_url(value, name)
    return value


def check_sha256(value: str, name: str) -> str:
    """A full SHA-256 hex digest (64 characters): a prefix would let another file pass."""
    v = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(v, str) or len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise ValueError(f"{name}: expected the file's full SHA-256, 64 hex digits (got {value!r}); "
                         "print it with: sha256sum MODEL_FILE")
    return v


def check_output_file(path: str | Path, name: str) -> Path:
    """A file we are about to write: not a directory, in an existing folder we can write to."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"{name}: {p} is a directory; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{name}: folder {parent} does not exist")
    if (p.exists() and not os.access(p, os.W_OK)) or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: {p} is not writable by this user")
    return p


def check_output_dir(path: str | Path, name: str) -> Path:
    """A folder we are about to fill: an existing folder, or creatable (not an existing file)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{name}: {p} exists and is not a folder")
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: {existing} is not a writable folder")
    return p


def check_xpath(value: str, name: str) -> str:
    """An XPath 1.0 expression (liblsl's ``resolve_bypred`` syntax): liblsl does not say when one is
    malformed, it finds nothing and waits for ever, so the syntax is checked here (elementpath's parser)."""
    from elementpath import XPath1Parser
    from elementpath.exceptions import ElementPathError

    try:
        XPath1Parser().parse(value)
    except ElementPathError as exc:
        found = re.search(r"column (\d+): \[err:\w+\] (.*)", str(exc))
        detail = f"{found.group(2)} at column {found.group(1)}" if found else str(exc)[:120]
        raise ValueError(f"{name}: not a valid XPath 1.0 expression ({detail}): {value!r}") from None
    return value
