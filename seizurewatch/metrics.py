"""Prometheus metrics (prometheus-client), on a registry of the daemon's own.

Served only when ``metrics.listen`` is set, on 127.0.0.1 unless an address is given.
Names follow the Prometheus conventions: ``_total`` counters, ``_seconds`` durations,
one ``patient`` label per stream (the configured id; nothing else about the patient).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    start_http_server,
)

from seizurewatch.addresses import parse_listen as parse_listen_address
from seizurewatch.errors import ConfigError
from seizurewatch.events import Event

log = logging.getLogger(__name__)

INFERENCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
E2E_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def parse_listen(listen: str) -> tuple[str, int]:
    """``metrics.listen`` as (host, port) (``addresses.parse_listen``: the one listen-address rule)."""
    try:
        return parse_listen_address(listen, "metrics.listen", 9108)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class PortInUse(ConfigError):
    """``metrics.listen`` is taken by another process (a service tries again)."""


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = ["patient"]
        self.samples_total = Counter("seizurewatch_samples_received_total",
                                     "Samples received (one per time point, all channels)", p, registry=r)
        self.windows_total = Counter("seizurewatch_windows_classified_total", "Windows classified by the model", p,
                                     registry=r)
        self.inference_seconds = Histogram("seizurewatch_inference_seconds", "Model call duration (one batch)", p,
                                           buckets=INFERENCE_BUCKETS, registry=r)
        self.inference_batch = Histogram("seizurewatch_inference_batch_windows", "Windows per model call", p,
                                         buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.e2e_seconds = Histogram("seizurewatch_end_to_end_seconds",
                                     "Last sample of a window received -> decision made", p,
                                     buckets=E2E_BUCKETS, registry=r)
        self.probability = Gauge("seizurewatch_probability", "Latest seizure probability", p, registry=r)
        self.threshold = Gauge("seizurewatch_threshold", "Alarm threshold in effect", p, registry=r)
        self.alarm_active = Gauge("seizurewatch_alarm_active", "1 while an alarm is open", p, registry=r)
        self.alarms_total = Counter("seizurewatch_alarms_total", "Alarm events by phase (start, update, end)",
                                    ["patient", "event"], registry=r)
        self.faults_total = Counter("seizurewatch_faults_total", "Fault starts by type", ["patient", "type"],
                                    registry=r)
        self.acks_total = Counter("seizurewatch_acks_total", "Acks journaled by action (ack, false_alarm, confirmed)",
                                  ["patient", "action"], registry=r)
        self.publish_refused_total = Counter("seizurewatch_publish_refused_total",
                                             "Publishes the broker refused (MQTT v5 PUBACK reason >= 0x80)", p,
                                             registry=r)
        self.acks_ignored_total = Counter("seizurewatch_acks_ignored_total",
                                          "Messages on the ack topic refused (unknown id, malformed, duplicate...)",
                                          p, registry=r)
        self.escalations_total = Counter("seizurewatch_escalations_total", "Escalate events by kind (alarm, fault)",
                                         ["patient", "kind"], registry=r)
        self.outbox_depth = Gauge("seizurewatch_outbox_depth", "Events journaled, not yet acknowledged by the broker",
                                  p, registry=r)
        self.broker_connected = Gauge("seizurewatch_broker_connected", "1 while connected to the MQTT broker", p,
                                      registry=r)
        self.stream_connected = Gauge("seizurewatch_stream_connected", "1 while samples arrive", p, registry=r)
        self.buffer_fill_ratio = Gauge("seizurewatch_buffer_fill_ratio", "Ring buffer fill (0..1)", p, registry=r)
        self.model_info = Info("seizurewatch_model", "Loaded model: name, weights SHA-256, threshold", registry=r)
        self.reloads_total = Counter("seizurewatch_config_reloads_total", "SIGHUP reloads by result", ["result"],
                                     registry=r)
        self.watchdog_total = Counter("seizurewatch_watchdog_pings_total",
                                      "systemd watchdog pings sent, or withheld because a pipeline stalled",
                                      ["result"], registry=r)
        self.startup_seconds = Gauge("seizurewatch_startup_seconds",
                                     "Process start -> ready (model loaded, broker connected, first samples)",
                                     registry=r)
        self.start_time = Gauge("seizurewatch_start_time_seconds", "Unix time the daemon started", registry=r)
        self.start_time.set(time.time())
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, ...
        self._server: Any = None

    def serve(self, listen: str) -> None:
        host, port = parse_listen(listen)
        if host not in ("localhost",) and not ipaddress.ip_address(host).is_loopback:
            log.warning("metrics endpoint reachable from the network", extra={"listen": listen})
        try:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"metrics.listen: {listen} is in use by another process") from None
            raise ConfigError(f"metrics.listen: cannot listen on {listen} ({exc.strerror})") from None
        log.info("metrics served", extra={"url": f"http://{listen}/metrics"})

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def add_patient(self, patient: str) -> None:
        """Make every per-patient series exist from the start (0), so dashboards and alerts see it."""
        for g in (self.broker_connected, self.stream_connected, self.alarm_active, self.outbox_depth,
                  self.buffer_fill_ratio):
            g.labels(patient).set(0)
        for c in (self.samples_total, self.windows_total):
            c.labels(patient)
        for ev in ("start", "update", "end"):
            self.alarms_total.labels(patient, ev)

    def set_model(self, name: str, weights_sha256: str, threshold: float, policy: str, path: str) -> None:
        """The one writer of ``seizurewatch_model_info`` (at start and after every reload: the same fields)."""
        self.model_info.info({"name": name, "weights_sha256": weights_sha256, "threshold": f"{threshold:.5g}",
                              "policy": policy, "path": path})

    def samples(self, patient: str, n: int) -> None:
        self.samples_total.labels(patient).inc(n)
        self.stream_connected.labels(patient).set(1)

    def buffer_fill(self, patient: str, ratio: float) -> None:
        self.buffer_fill_ratio.labels(patient).set(ratio)

    def inference(self, patient: str, seconds: float, n: int) -> None:
        self.inference_seconds.labels(patient).observe(seconds)
        self.inference_batch.labels(patient).observe(n)

    def window(self, patient: str, p: float, wall_received: float) -> None:
        self.windows_total.labels(patient).inc()
        self.probability.labels(patient).set(p)
        if wall_received:
            self.e2e_seconds.labels(patient).observe(max(time.monotonic() - wall_received, 0.0))

    def event(self, patient: str, ev: Event) -> None:
        if ev.kind == "alarm":
            self.alarms_total.labels(patient, ev.event).inc()
            self.alarm_active.labels(patient).set(0 if ev.event == "end" else 1)
        elif ev.event == "start":
            self.faults_total.labels(patient, ev.fault_type or "unknown").inc()
            if ev.fault_type == "stream_lost":
                self.stream_connected.labels(patient).set(0)
