"""Prometheus metrics (prometheus-client), on a registry of the daemon's own."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from seizurewatch.events import Event

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.samples_total = Counter("seizurewatch_samples_received_total", "Samples received per channel",
                                     ["patient"], registry=r)
        self.windows_total = Counter("seizurewatch_windows_classified_total", "Windows classified", ["patient"],
                                     registry=r)
        self.inference_seconds = Histogram("seizurewatch_inference_seconds", "Model call duration (one batch)",
                                           ["patient"], buckets=LATENCY_BUCKETS, registry=r)
        self.e2e_seconds = Histogram("seizurewatch_end_to_end_seconds",
                                     "Last sample of a window received -> decision made", ["patient"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.probability = Gauge("seizurewatch_probability", "Latest seizure probability", ["patient"], registry=r)
        self.alarms_total = Counter("seizurewatch_alarms_total", "Alarm events", ["patient", "event"], registry=r)
        self.faults_total = Counter("seizurewatch_faults_total", "Fault starts by type", ["patient", "type"],
                                    registry=r)
        self.outbox_depth = Gauge("seizurewatch_outbox_depth", "Events journaled but not yet acknowledged",
                                  ["patient"], registry=r)
        self.broker_connected = Gauge("seizurewatch_broker_connected", "1 while connected to MQTT", ["patient"],
                                      registry=r)
        self.stream_connected = Gauge("seizurewatch_stream_connected", "1 while samples arrive", ["patient"],
                                      registry=r)
        self.buffer_fill_ratio = Gauge("seizurewatch_buffer_fill_ratio", "Ring buffer fill (0..1)", ["patient"],
                                       registry=r)
        self.model_info = Info("seizurewatch_model", "Loaded model", registry=r)

    def serve(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)

    def samples(self, patient: str, n: int) -> None:
        self.samples_total.labels(patient).inc(n)
        self.stream_connected.labels(patient).set(1)

    def buffer_fill(self, patient: str, ratio: float) -> None:
        self.buffer_fill_ratio.labels(patient).set(ratio)

    def inference(self, patient: str, seconds: float, n: int) -> None:
        self.inference_seconds.labels(patient).observe(seconds)

    def window(self, patient: str, p: float, wall_received: float) -> None:
        self.windows_total.labels(patient).inc()
        self.probability.labels(patient).set(p)
        if wall_received:
            self.e2e_seconds.labels(patient).observe(max(time.monotonic() - wall_received, 0.0))

    def event(self, patient: str, ev: Event) -> None:
        if ev.kind == "alarm":
            self.alarms_total.labels(patient, ev.event).inc()
        elif ev.event == "start":
            self.faults_total.labels(patient, ev.fault_type or "unknown").inc()
            if ev.fault_type == "stream_lost":
                self.stream_connected.labels(patient).set(0)
