"""The preprocessing filters' coefficients and scipy's second-order-sections kernel, without
``import scipy.signal``.

``scipy/signal/__init__.py`` imports every signal tool at once (peak finding pulls in
``scipy.stats``, the LTI systems ``scipy.interpolate``): 0.85 s and 60 MiB of a daemon that
only runs one band-pass. So:

- the designs the shipped models and the benchmark use are kept, computed once by scipy's own
  ``butter`` / ``iirnotch``, in ``data/filter_designs.json`` (floats stored by ``repr``, so
  bit for bit; ``tests/test_preprocess.py`` checks them against scipy). Any other design is
  made by scipy at the first use, as before;
- the filtering is scipy's compiled ``sosfilt`` kernel, loaded from its file without running
  the package's ``__init__``, with ``sosfilt``'s own argument handling (same bits out:
  ``tests/test_preprocess.py`` compares it with ``scipy.signal.sosfilt``).

Regenerate the table after adding a model with another band: ``python -m seizurewatch.filters``.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

TABLE = Path(__file__).resolve().parent / "data" / "filter_designs.json"
BUTTER_ORDER = 4
NOTCH_Q = 30.0
# designs kept in the table: (rate, bandpass, notch) of the shipped models and the benchmark's timing ConvNet
KEPT: tuple[tuple[float, tuple[float, float] | None, float | None], ...] = (
    (400.0, (1.0, 150.0), None),  # models/dog1-hills-early.pt, models/dog1-convnet.pt
    (256.0, (1.0, 70.0), None),  # bench/common.py timing_convnet (CHB-MIT layout)
)


def _key(rate: float, bandpass: tuple[float, float] | None, notch: float | None) -> str:
    return json.dumps([float(rate), [float(b) for b in bandpass] if bandpass else None,
                       float(notch) if notch else None])


def scipy_design(rate: float, bandpass: tuple[float, float] | None, notch: float | None) -> np.ndarray | None:
    """The cascade as scipy designs it: Butterworth band-pass (order 4, upper edge at most 0.95 x
    Nyquist) then an IIR notch (Q 30); None when there is nothing to filter."""
    from scipy import signal

    sos = []
    nyq = rate / 2
    if bandpass:
        lo, hi = bandpass
        sos.append(signal.butter(BUTTER_ORDER, [lo, min(hi, 0.95 * nyq)], btype="bandpass", fs=rate, output="sos"))
    if notch and notch < nyq:
        b, a = signal.iirnotch(notch, NOTCH_Q, fs=rate)
        sos.append(signal.tf2sos(b, a))
    return np.vstack(sos) if sos else None


@functools.cache
def _table() -> dict[str, list[list[float]]]:
    return dict(json.loads(TABLE.read_text())["designs"]) if TABLE.is_file() else {}


def design(rate: float, bandpass: tuple[float, float] | None, notch: float | None) -> np.ndarray | None:
    """The second-order sections for (rate, band-pass, notch): from the kept table, else from scipy."""
    kept = _table().get(_key(rate, bandpass, notch))
    if kept is not None:
        return np.array(kept, dtype=np.float64)
    return scipy_design(rate, bandpass, notch)


@functools.cache
def _kernel() -> Callable[[np.ndarray, np.ndarray, np.ndarray], None]:
    """scipy's compiled ``_sosfilt(sos, x, zi)`` (in place, float64, C-contiguous), from its file."""
    name = "scipy.signal._sosfilt"
    if name not in sys.modules:
        import scipy

        folder = Path(scipy.__file__).resolve().parent / "signal"
        path = next((folder / f"_sosfilt{s}" for s in importlib.machinery.EXTENSION_SUFFIXES
                     if (folder / f"_sosfilt{s}").is_file()), None)
        if path is None:  # another scipy layout: the package's own import (slower start, same result)
            from scipy.signal._signaltools import _sosfilt  # type: ignore[attr-defined]

            return _sosfilt  # type: ignore[no-any-return]
        loader = importlib.machinery.ExtensionFileLoader(name, str(path))
        spec = importlib.util.spec_from_file_location(name, path, loader=loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        sys.modules[name] = module  # scipy.signal, if imported later, finds its kernel already loaded
    return sys.modules[name]._sosfilt  # type: ignore[no-any-return]


def sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.sosfilt(sos, x, axis=1, zi=zi)`` for x (channels, samples) and zi (sections,
    channels, 2): the same dtype promotion, copies and kernel, so the same bits."""
    dtype = np.result_type(sos, x, zi)
    n_sections = sos.shape[0]
    z = np.ascontiguousarray(np.moveaxis(np.array(zi, dtype=dtype), 0, -2).reshape(-1, n_sections, 2))
    y = np.array(x, dtype, order="C")
    _kernel()(sos.astype(dtype, copy=False), y, z)
    return y, np.moveaxis(z, -2, 0)


def main() -> None:
    """Recompute the kept designs with scipy and rewrite the table."""
    designs = {}
    for rate, bandpass, notch in KEPT:
        sos = scipy_design(rate, bandpass, notch)
        if sos is not None:
            designs[_key(rate, bandpass, notch)] = sos.tolist()
    TABLE.write_text(json.dumps({"about": "seizurewatch/filters.py: scipy's designs, kept (python -m "
                                 "seizurewatch.filters rewrites this file)", "designs": designs}, indent=1) + "\n")
    print(f"wrote {len(designs)} designs to {TABLE}")


if __name__ == "__main__":
    main()
