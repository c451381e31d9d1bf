"""One unit convention: every reader and every live source hands the pipeline microvolts.

The one table of the physical dimensions a recording or a stream may declare, and the one function
that turns them into per-channel factors to µV (EDF's physical dimension, BDF's, a text sidecar's
``units``, BrainVision's, an LSL channel's ``<unit>``). The spellings are the ones EDF writers use,
as mne reads them (``uV``, ``µV`` as the micro sign or the Greek mu, the Shift-JIS mu some Japanese
systems write, ``mV``, ``V``, ``nV``), plus the words LSL outlets use. A unit not in the table, or
none, is refused naming the file and the channel, unless the caller says what it is (a device
profile's ``units``, ``--units``): never taken as µV silently.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seizurewatch.errors import DataError

_SPELLINGS = {
    1e6: ("V", "volt", "volts"),
    1e3: ("mV", "millivolt", "millivolts"),
    # micro sign, Greek mu, the Shift-JIS mu and a UTF-8 micro sign as a Latin-1 header reader decodes them
    1.0: ("uV", "\u00b5V", "\u03bcV", "\x83\xcaV", "\u00c2\u00b5V", "microvolt", "microvolts"),
    1e-3: ("nV", "nanovolt", "nanovolts"),
}
MICROVOLTS_PER = {name.lower(): factor for factor, names in _SPELLINGS.items() for name in names}
KNOWN = "V, mV, µV (uV), nV"


def microvolts_per(unit: str) -> float | None:
    """µV in one ``unit`` (case and surrounding spaces ignored); None for a unit not in the table."""
    return MICROVOLTS_PER.get(unit.strip().lower())


def check_unit(value: str, key: str) -> str:
    """A unit given in a config, a device profile or a flag: returned as given; ValueError naming ``key``."""
    if not isinstance(value, str) or microvolts_per(value) is None:
        raise ValueError(f"{key}: expected one of {KNOWN}, got {value!r}")
    return value


def microvolt_factors(where: str, channels: Sequence[str], declared: Sequence[str],
                      assume: str | None = None) -> np.ndarray:
    """Per-channel factors (float64) from the units a recording or stream ``declared`` to µV. A channel
    with no unit or one not in the table takes ``assume`` (a device profile's or a flag's); without it,
    DataError naming ``where`` and the channel."""
    factors = np.empty(len(channels), dtype=np.float64)
    fallback = microvolts_per(assume) if assume else None
    if assume and fallback is None:
        raise DataError(f"{where}: units {assume!r} is not a unit seizurewatch knows ({KNOWN})")
    for i, (ch, unit) in enumerate(zip(channels, declared, strict=True)):
        f = microvolts_per(unit)
        if f is None:
            f = fallback
        if f is None:
            said = f"declares unit {unit.strip()!r}" if unit.strip() else "declares no unit"
            raise DataError(f"{where}: channel {ch} {said}; seizurewatch reads {KNOWN}: declare it in the "
                            "recording (EDF physical dimension, sidecar \"units\", LSL <unit>), or say what "
                            "it is with --units or the device profile's units")
        factors[i] = f
    return factors


def to_microvolts(data: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(channels, samples) in the declared units -> a new float32 array of µV (multiplied in float64, then
    rounded once). Always a copy: a live source's pull buffer is reused for the next chunk."""
    if np.all(factors == 1.0):
        return np.array(data, dtype=np.float32)
    return (np.asarray(data, dtype=np.float64) * factors[:, None]).astype(np.float32)
