"""The daemon's start-up, in order: the model (pin, metadata, a dry forward pass), the device profiles, the
metrics port, the journal, each stream's source and pipeline and its broker link, then the brokers.

What a retry cannot fix is one clear error (the caller exits 2); with ``keep_trying`` (``run``) what may
come by itself is waited for and noted (``Daemon.notes``): a stream not there yet, a broker down, a metrics
port in use. ``Daemon.prepare`` runs it and closes what was opened when it refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from seizurewatch.alarms.ack import ack_topic
from seizurewatch.alarms.mqtt import PatientLink
from seizurewatch.alarms.outbox import Outbox
from seizurewatch.config import Config, StreamConfig
from seizurewatch.devices import DeviceProfile, load_device
from seizurewatch.errors import BrokerError, ConfigError, DataError, SourceUnavailable, StorageError
from seizurewatch.inference import Predictor, configure_compute
from seizurewatch.metrics import PortInUse, parse_listen
from seizurewatch.modelfile import LoadedModel, check_forward, file_sha256, load_model
from seizurewatch.modelmeta import ModelMeta
from seizurewatch.pipeline import StreamPipeline
from seizurewatch.preprocess import check_device_fits_model
from seizurewatch.resources import default_model_path
from seizurewatch.sources import Source

if TYPE_CHECKING:
    from seizurewatch.daemon import Daemon

log = logging.getLogger("seizurewatch.daemon")

RETRY_S = 5.0  # a metrics port in use is tried again this often


def make_source(stream: StreamConfig, device: DeviceProfile | None = None) -> Source:
    """The stream's source; a channel declaring no unit holds ``source.units``, else the device profile's."""
    s = stream.source
    units = s.units or (device.units if device else None)
    if s.kind == "edf":
        from seizurewatch.sources.edf import EdfReplaySource

        assert s.path is not None
        return EdfReplaySource(s.path, speed=s.speed, chunk_s=s.chunk_s, loop=s.loop, rate=s.rate, units=units)
    from seizurewatch.sources.lsl import LslSource

    return LslSource(s, units=units)


def load_checked_model(cfg: Config, require_pin: bool) -> LoadedModel:
    """The config's model: pinned (when required), loaded from the hashed bytes, metadata valid, and a dry
    forward pass on noise windows answering probabilities of the right shape; ModelError/ConfigError otherwise."""
    m = cfg.model
    if require_pin and m.sha256 is None and not m.trusted:
        path = Path(m.path)
        digest = file_sha256(path.read_bytes()) if path.is_file() else None
        if digest is None or digest != file_sha256(default_model_path().read_bytes()):
            pin = f"sha256: {digest}" if digest else "sha256: <the file's sha256sum>"
            raise ConfigError(
                f"{cfg.source_file}: model.sha256: required to run {m.path} (a model file is code, and the daemon "
                f"runs it): once you know where the file came from, pin it with '{pin}' under model:, or set "
                "'trusted: true' there")
    model = load_model(m.path, m.sha256)
    check_forward(model)
    return model


def check_journal_folder(path: str) -> None:
    """The journal's folder when it does not exist: under a path that is not a folder, ConfigError (exit 2);
    under one that cannot be written (a disk not mounted yet), StorageError (exit 4, systemd restarts the unit
    until it is there). An existing folder is the outbox's to check (writable, free space)."""
    if path != ":memory:" and Path(path).is_dir():
        raise ConfigError(f"outbox.path: {path} is a folder; give the journal's file name, e.g. {path}/outbox.sqlite3")
    folder = Path(path).parent
    if path == ":memory:" or folder.is_dir():
        return
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"outbox.path: cannot create the journal's folder {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(f"outbox.path: the journal's folder {folder} does not exist and {existing} cannot be "
                           "written (a disk not mounted yet?); systemd restarts the unit until it is there")


def check_listen(listen: str) -> None:
    """Bind ``metrics.listen`` once and let go: PortInUse (retried) or ConfigError (an address not on this host)."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server binds it
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"metrics.listen: {listen} is in use by another process") from None
            raise ConfigError(f"metrics.listen: cannot listen on {listen} ({exc.strerror})") from None


async def prepare(d: Daemon) -> None:
    """Every start-up check of ``d``, in order (the docstring above); fills its pipelines, links and journal."""
    cfg = d.cfg
    configure_compute(cfg.model.threads)
    model = await asyncio.to_thread(load_checked_model, cfg, d.opts.require_pin)
    d.model_sha256 = model.file_sha256
    predictor = Predictor(model, max_batch=cfg.model.max_batch)
    meta = model.meta
    d.model_path = model.path
    d.metrics.set_model(meta.name, meta.weights_sha256, meta.threshold, meta.threshold_policy, model.path)
    devices = _devices(cfg, meta)
    _check_metrics_port(d)
    check_journal_folder(cfg.outbox.path)
    await _open_journal(d)
    for stream in cfg.streams:
        pipe = await _open_stream(d, stream, devices[stream.patient], predictor)
        d.pipelines.append(pipe)
        d.escalator.n_channels[stream.patient] = len(meta.preprocess.channels)
        if d.opts.publish:
            _link(d, pipe, meta)
        pipe.snippet_sink = functools.partial(d._on_snippet, pipe.patient)
        pipe.status.acks = functools.partial(d.acks.acks_of, pipe.patient)  # the retained state lists them
    await _check_brokers(d)
    if cfg.metrics.listen and not d._metrics_pending:
        d.metrics.serve(cfg.metrics.listen)


def _devices(cfg: Config, meta: ModelMeta) -> dict[str, DeviceProfile | None]:
    """Each stream's device profile (None: as the source describes itself), checked against the model."""
    devices: dict[str, DeviceProfile | None] = {}
    for i, stream in enumerate(cfg.streams):
        device = load_device(stream.device) if stream.device else None
        if device is not None:
            check_device_fits_model(device, meta.preprocess, f"{cfg.source_file}: streams[{i}].device")
        devices[stream.patient] = device
    return devices


def _check_metrics_port(d: Daemon) -> None:
    listen = d.cfg.metrics.listen
    if not listen:
        return
    try:
        check_listen(listen)
    except PortInUse as exc:
        if not d.opts.keep_trying:
            raise
        d._metrics_pending = True
        d.notes.append(f"{exc}; trying again every {RETRY_S:g} s")
        log.error("metrics port in use; trying again", extra={"listen": listen, "retry_s": RETRY_S})


async def _open_journal(d: Daemon) -> None:
    """The outbox (run --check: looked at, not taken from a running daemon), the acks and escalation levels
    it carries over a restart."""
    cfg = d.cfg
    if d.opts.check_only:
        holder = await asyncio.to_thread(Outbox.check_path, cfg.outbox.path)
        if holder:
            d.notes.append(f"outbox.path: {cfg.outbox.path} is in use by seizurewatch PID {holder}; "
                           "run refuses to start while that one runs")
        d.outbox = await asyncio.to_thread(Outbox.open_sync, ":memory:")
        return
    d.outbox = await asyncio.to_thread(Outbox.open_sync, cfg.outbox.path, cfg.outbox.keep_delivered_days * 86400.0)
    await asyncio.to_thread(d.desk.load, cfg.outbox.path)


async def _open_stream(d: Daemon, stream: StreamConfig, device: DeviceProfile | None,
                       predictor: Predictor) -> StreamPipeline:
    """The stream's pipeline with its source opened, or (a service) waiting for a source not there yet."""
    pipe = StreamPipeline(stream, device, make_source(stream, device), predictor, d.cfg.decision,
                          d._sink, record_probabilities=d.opts.record_probabilities, metrics=d.metrics)
    d._opened.append(pipe)
    try:
        await pipe.open()
    except DataError as exc:
        # a live stream that is not there, or there but not what the model needs (1 channel: an
        # amplifier not set up yet): a service says so (stream_lost fault) and keeps looking; exit 2
        # would leave the bed unmonitored for good (systemd does not restart a config error).
        # A recording that does not fit, and run --check, still refuse.
        live = stream.source.kind == "lsl" and not d.opts.check_only
        if not d.opts.keep_trying or not (isinstance(exc, SourceUnavailable) or live):
            raise
        if not isinstance(exc, SourceUnavailable):
            with contextlib.suppress(Exception):
                await pipe.source.close()
        pipe.waiting = str(exc)  # run() publishes a stream_lost fault and keeps looking
        d.notes.append(f"{stream.patient}: {exc}; waiting for it (stream_lost fault)")
        log.error("no stream at start; monitoring starts when it appears",
                  extra={"patient": stream.patient, "error": str(exc)})
    return pipe


def _link(d: Daemon, pipe: StreamPipeline, meta: ModelMeta) -> None:
    """The patient's broker link: its journal, its ack subscription, its retained state and risk."""
    cfg, patient = d.cfg, pipe.patient
    assert d.outbox is not None
    link = PatientLink(cfg.mqtt, d.outbox, patient, url=d.opts.mqtt_url)
    link.on_change.append(d._broker_gauge(patient))
    link.on_refused.append(d._refusal_to(pipe))
    link.subscriptions.append(ack_topic(cfg.mqtt.topic_prefix, patient))
    link.on_message = functools.partial(d._on_message, pipe)
    d.links[patient] = link
    pipe.on_state.append(lambda _state, info: link.set_state(info))  # PatientState built it whole
    pipe.status.on_risk.append(link.set_risk)
    link.horizons = tuple(o.horizon_s for o in meta.risk_outputs)


async def _check_brokers(d: Daemon) -> None:
    """Each link's broker answers (run --check: under its own client id, never taking over a running
    daemon's session); a service journals and retries a broker that is down."""
    for patient, link in d.links.items():
        try:
            if d.opts.check_only:
                await link.policy.check_publish(f"seizurewatch-check-{patient}-{os.getpid()}", link.topics["status"])
            else:
                await link.check()
        except BrokerError as exc:
            if not (d.opts.keep_trying and exc.transient):
                raise
            d.broker_down_at_start.add(patient)
            d.notes.append(f"{patient}: {exc}; alarms are journaled and delivered once it answers")
            log.error("broker unreachable at start; journaling and retrying",
                      extra={"patient": patient, "error": str(exc)})
