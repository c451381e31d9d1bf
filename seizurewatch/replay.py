"""Replay a recording through the daemon's own pipeline (same code path as ``run``)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

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
from seizurewatch.scoring import SZCORE, EventRules, Verdicts, payload_spans, verdicts
from seizurewatch.types import Annotation

if TYPE_CHECKING:
    from seizurewatch.modelmeta import ModelMeta


@dataclass(frozen=True)
class ReplayOptions:
    """What is replayed, and how (every field optional: the shipped model, at full speed, nothing published).

    ``model``: a model file (default: ``base``'s, else the shipped one); ``decision`` replaces the config's
    decision rules; ``device``: a device profile YAML; ``speed``: 1 = real time, or "max"; ``patient``: the id
    in topics; ``base``: a daemon config supplying decision, mqtt and outbox settings; ``outbox``: the journal
    (else ``base``'s ``outbox.path``, else in memory); ``rate``: a text signal's sample rate (Hz) when no
    sidecar gives it; ``units``: what channels declaring no unit hold (else the device profile's units, else
    such a recording is refused); ``publish`` sends the events to MQTT (``mqtt_url`` or ``base``'s broker)."""

    model: str | Path | None = None
    decision: DecisionConfig | None = None
    device: str | None = None
    speed: float | str = "max"
    patient: str = "replay"
    base: Config | None = None
    outbox: str | None = None
    rate: float | None = None
    units: str | None = None
    mqtt_url: str | None = None
    publish: bool = False


@dataclass(frozen=True)
class ReplayHooks:
    """Who watches a replay: ``sinks`` see each payload as it is emitted; ``on_start`` runs after start-up,
    before the first sample (e.g. to subscribe); ``handle_signals``: SIGTERM/SIGINT stop the replay cleanly
    (for the CLI)."""

    sinks: Sequence[Callable[[dict[str, Any]], None]] = ()
    on_start: Callable[[ReplayStart], Awaitable[None]] | None = None
    handle_signals: bool = False


def replay_config(edf: str, options: ReplayOptions = ReplayOptions()) -> Config:
    """A one-stream Config replaying ``edf`` as ``options`` say (their ``decision`` replaces the config's).
    ConfigError (one line, naming the option) for a patient id, speed or broker URL the config would refuse."""
    try:
        cfg = _replay_config(edf, options)
    except ValueError as exc:
        raise ConfigError(f"replay: --{str(exc).replace('url:', 'mqtt-url:', 1)}") from None
    return cfg if options.decision is None else dataclasses.replace(cfg, decision=options.decision)


def _replay_config(edf: str, o: ReplayOptions) -> Config:
    stream = StreamConfig(
        patient=o.patient,
        device=str(Path(o.device).resolve()) if o.device else None,
        # the path as typed (made absolute, links kept): a text signal's sidecar sits beside the link
        source=SourceConfig(kind="edf", path=os.path.abspath(edf), speed=o.speed,  # type: ignore[arg-type]
                            rate=o.rate, units=o.units),
    )
    base = o.base
    model_path = str(Path(o.model).resolve()) if o.model else (base.model.path if base else str(default_model_path()))
    if base is not None:
        return dataclasses.replace(
            base, streams=(stream,), model=dataclasses.replace(base.model, path=model_path),
            mqtt=dataclasses.replace(base.mqtt, url=o.mqtt_url or base.mqtt.url),
            outbox=base.outbox if o.outbox is None else dataclasses.replace(base.outbox, path=o.outbox),
        )
    return Config(
        streams=(stream,),
        model=ModelConfig(path=model_path),
        decision=DecisionConfig(),
        mqtt=MqttConfig(url=o.mqtt_url or "mqtt://127.0.0.1:1883"),
        outbox=OutboxConfig(o.outbox or ":memory:"),
    )


@dataclass(frozen=True)
class ReplayStart:
    """What is known once the daemon has prepared and before the first sample flows."""

    recording: str
    meta: ModelMeta
    threshold: float
    annotations: tuple[Annotation, ...]
    rule: tuple[int, int] = (3, 4)  # k of n hops in force


@dataclass(frozen=True)
class ReplayResult:
    """One recording replayed through the daemon's own pipeline (``seizurewatch run``'s code path).

    ``events``: every payload the daemon emitted (alarm starts/ends, faults...), in order;
    ``t``/``p``: window end time (s, stream time) and first output per hop; ``annotations``: from
    the file, or from a sidecar next to it when there is one (``annotation_source`` says which)."""

    recording: str
    events: tuple[dict[str, Any], ...]
    t: np.ndarray
    p: np.ndarray
    annotations: tuple[Annotation, ...]
    annotation_source: str
    duration: float
    threshold: float
    meta: ModelMeta
    windows: int
    prepare_s: float
    run_s: float
    stages: dict[str, float]
    model_chunk: int
    start_datetime: str = ""  # the recording's start (ISO) as its header gives it; "" when it does not
    outputs: np.ndarray | None = None  # (windows, outputs): every model output per hop (``p`` is column 0)

    @property
    def alarms(self) -> list[tuple[float, float]]:
        """(start, end) of each alarm as the daemon raised it; one still on at the end ends there."""
        return payload_spans(self.events, self.duration)

    def verdicts(self, rules: EventRules = SZCORE) -> Verdicts:
        """The annotated seizures and these alarms scored by the one rule (``scoring.verdicts``)."""
        from seizurewatch.research.labels import is_seizure

        seizures = [(a.onset, a.end) for a in self.annotations if is_seizure(a.description)]
        return verdicts(seizures, self.alarms, rules)


def recording_annotations(edf: str, inside: tuple[Annotation, ...] = ()) -> tuple[tuple[Annotation, ...], str]:
    """The annotations of ``edf``: a sidecar's (``find_annotations``) when there is one, else ``inside``
    (those the EDF+ carries, as the replay source read them); and where they came from."""
    from seizurewatch.research.annotations import find_annotations

    found = find_annotations(edf, required=False)
    if found is not None:
        return tuple(found.annotations), found.source
    return tuple(inside), edf


def replay(edf: str | Path, options: ReplayOptions = ReplayOptions(), hooks: ReplayHooks = ReplayHooks()
           ) -> ReplayResult:
    """Replay ``edf`` through a real ``Daemon`` (the code path of ``seizurewatch run``) as ``options`` say,
    watched by ``hooks``, and return what it did."""
    return asyncio.run(replay_async(edf, options, hooks))


async def replay_async(edf: str | Path, options: ReplayOptions = ReplayOptions(),
                       hooks: ReplayHooks = ReplayHooks()) -> ReplayResult:
    """``replay`` inside a running event loop."""
    from seizurewatch.daemon import Daemon, DaemonOptions
    from seizurewatch.signals import capture_signals

    cfg = replay_config(str(edf), options)
    daemon = Daemon(cfg, DaemonOptions(mqtt_url=options.mqtt_url, publish=options.publish,
                                       record_probabilities=True))
    events: list[dict[str, Any]] = []
    daemon.payload_sinks.append(events.append)
    daemon.payload_sinks.extend(hooks.sinks)
    t0 = time.perf_counter()
    await daemon.prepare()
    t1 = time.perf_counter()
    pipe = daemon.pipelines[0]  # the one stream replay_config made
    if hooks.on_start is not None:
        await hooks.on_start(ReplayStart(str(edf), pipe.meta, float(pipe.decision.threshold),
                                   tuple(pipe.source.annotations), (pipe.decision.k, pipe.decision.n)))
    if hooks.handle_signals:
        with capture_signals({signal.SIGTERM: lambda sig: daemon.stop(), signal.SIGINT: lambda sig: daemon.stop()}):
            await daemon.run()
    else:
        await daemon.run()
    t2 = time.perf_counter()
    probs = np.asarray(pipe.stats.probabilities, dtype=np.float64).reshape(-1, 2)
    rate = pipe.source.rate
    anns, source = recording_annotations(str(edf), tuple(pipe.source.annotations))
    stages = pipe.times.as_dict()
    stages["read"] = round(float(getattr(pipe.source, "read_seconds", 0.0)), 6)
    return ReplayResult(
        recording=str(edf), events=tuple(events), t=probs[:, 0].copy(), p=probs[:, 1].copy(), annotations=anns,
        annotation_source=source, duration=pipe.stats.samples / rate if rate else 0.0,
        threshold=float(pipe.decision.threshold), meta=pipe.meta, windows=int(pipe.stats.windows),
        prepare_s=t1 - t0, run_s=t2 - t1, stages=stages, model_chunk=int(pipe.predictor.chunk),
        start_datetime=str(getattr(pipe.source, "start_datetime", "")),
        outputs=np.asarray(pipe.stats.outputs, dtype=np.float64).reshape(-1, len(pipe.meta.outputs)),
    )
