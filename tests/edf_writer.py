"""Write small real EDF/EDF+ files for tests (pyedflib), with annotations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyedflib


def write_edf(path: Path, data: np.ndarray, rate: float, labels: list[str],
              annotations: list[tuple[float, float, str]] = (), plus: bool = True) -> Path:
    """(channels, samples) µV -> EDF (EDF+ with ``annotations`` when ``plus``). Whole data records
    only: 1 s, or 2 s for a half-integer rate (398.5 Hz)."""
    record = 1 if float(rate).is_integer() else 2
    per_record = int(round(rate * record))
    n = data.shape[1] - data.shape[1] % per_record
    kind = pyedflib.FILETYPE_EDFPLUS if plus else pyedflib.FILETYPE_EDF
    w = pyedflib.EdfWriter(str(path), len(labels), file_type=kind)
    try:
        if record != 1:
            w.setDatarecordDuration(record)
        heads = []
        for i, lab in enumerate(labels):
            lo, hi = float(np.floor(data[i].min())) - 1.0, float(np.ceil(data[i].max())) + 1.0
            heads.append({"label": lab, "dimension": "uV", "sample_frequency": rate, "physical_min": lo,
                          "physical_max": hi, "digital_min": -32768, "digital_max": 32767,
                          "transducer": "", "prefilter": ""})
        w.setSignalHeaders(heads)
        w.writeSamples([np.ascontiguousarray(data[i, :n], dtype=np.float64) for i in range(len(labels))])
        for onset, duration, desc in annotations:
            w.writeAnnotation(onset, duration, desc)
    finally:
        w.close()
    return path


def noise(channels: int, seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 20, (channels, int(seconds * rate)))
