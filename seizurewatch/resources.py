"""Files shipped inside the package (so the demo runs after a plain ``pip install``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_MODEL = "dog1-hills-early.pt"
DEMO_RECORDING = "dog1_rec04.edf"
LSL_LOOPBACK = "lsl_loopback.cfg"


def _data(name: str) -> Path:
    return Path(str(resources.files("seizurewatch") / "data" / name))


def default_model_path() -> Path:
    """The shipped default model (a copy of models/dog1-hills-early.pt)."""
    return _data(DEFAULT_MODEL)


def demo_recording_path() -> Path:
    """dog1_rec04.edf: a Dog_1 recording the default model was never trained on (1.5 MB)."""
    return _data(DEMO_RECORDING)


def lsl_loopback_config_path() -> Path:
    return _data(LSL_LOOPBACK)


def alarm_schema_path() -> Path:
    """The JSON Schema of every MQTT payload (the same file as docs/alarm.schema.json)."""
    return _data("alarm.schema.json")


def risk_schema_path() -> Path:
    """The JSON Schema of the risk messages (the same file as docs/risk.schema.json)."""
    return _data("risk.schema.json")
