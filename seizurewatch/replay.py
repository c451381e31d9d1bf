"""Replay a recording through the daemon's own pipeline (same code path as ``run``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from seizurewatch.config import (
    Config,
    DecisionConfig,
    ModelConfig,
    MqttConfig,
    OutboxConfig,
    SourceConfig,
    StreamConfig,
)
from seizurewatch.errors import ConfigError
from seizurewatch.resources import default_model_path


def replay_config(
    edf: str,
    model: str | None = None,
    speed: float | str = "max",
    mqtt_url: str | None = None,
    patient: str = "replay",
    device: str | None = None,
    base: Config | None = None,
    outbox: str | None = None,
) -> Config:
    """A one-stream Config replaying ``edf``; ``base`` supplies decision, mqtt and outbox settings if
    given. The journal is ``outbox``, else the base config's ``outbox.path``, else in memory.
    ConfigError (one line, naming the option) for a patient id, speed or broker URL the config would refuse."""
    try:
        return _replay_config(edf, model, speed, mqtt_url, patient, device, base, outbox)
    except ValueError as exc:
        raise ConfigError(f"replay: --{str(exc).replace('url:', 'mqtt-url:', 1)}") from None


def _replay_config(edf: str, model: str | None, speed: float | str, mqtt_url: str | None, patient: str,
                   device: str | None, base: Config | None, outbox: str | None) -> Config:
    stream = StreamConfig(
        patient=patient,
        device=str(Path(device).resolve()) if device else None,
        source=SourceConfig(kind="edf", path=str(Path(edf).resolve()), speed=speed),  # type: ignore[arg-type]
    )
    model_path = str(Path(model).resolve()) if model else (base.model.path if base else str(default_model_path()))
    if base is not None:
        return dataclasses.replace(
            base, streams=(stream,), model=dataclasses.replace(base.model, path=model_path),
            mqtt=dataclasses.replace(base.mqtt, url=mqtt_url or base.mqtt.url),
            outbox=base.outbox if outbox is None else dataclasses.replace(base.outbox, path=outbox),
        )
    return Config(
        streams=(stream,),
        model=ModelConfig(path=model_path),
        decision=DecisionConfig(),
        mqtt=MqttConfig(url=mqtt_url or "mqtt://127.0.0.1:1883"),
        outbox=OutboxConfig(outbox or ":memory:"),
    )
