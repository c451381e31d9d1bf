"""Prometheus metrics: names, loopback binding, and counters that follow a real replay."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

import pytest
from conftest import DOG1, MODEL, free_port
from prometheus_client.parser import text_string_to_metric_families

from seizurewatch.daemon import Daemon, DaemonOptions
from seizurewatch.errors import ConfigError
from seizurewatch.metrics import Metrics, PortInUse, parse_listen
from seizurewatch.replay import ReplayOptions, replay_config

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them


def values(registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in registry.collect() for s in fam.samples}


@pytest.mark.parametrize("listen, expected", [
    ("127.0.0.1:9108", ("127.0.0.1", 9108)),
    ("9108", ("127.0.0.1", 9108)),
    (":9108", ("127.0.0.1", 9108)),
    ("[::1]:9108", ("::1", 9108)),
    ("0.0.0.0:9200", ("0.0.0.0", 9200)),
])
def test_parse_listen(listen, expected):
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("bad", ["localhost:http", "127.0.0.1:99999", "nurse-station:9108", ""])
def test_parse_listen_rejects_with_the_key_named(bad):
    with pytest.raises(ConfigError, match="metrics.listen"):
        parse_listen(bad)


def test_served_on_loopback_by_default_and_scrapable():
    port = free_port()
    m = Metrics()
    m.add_patient("bed1")
    m.serve(str(port))  # no host given: loopback
    try:
        assert m._server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            body = r.read().decode()
        names = {f.name for f in text_string_to_metric_families(body)}
        assert {"seizurewatch_broker_connected", "seizurewatch_samples_received", "process_resident_memory_bytes",
                "seizurewatch_outbox_depth"} <= names
        # the series exist (at 0) before anything happened, so alerts on them work from the start
        assert 'seizurewatch_broker_connected{patient="bed1"} 0.0' in body
        assert 'seizurewatch_alarms_total{event="start",patient="bed1"} 0.0' in body
    finally:
        m.shutdown()


def test_port_in_use_is_a_config_error_a_service_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortInUse, match=f"metrics.listen: 127.0.0.1:{port} is in use") as e:
            Metrics().serve(f"127.0.0.1:{port}")
        assert isinstance(e.value, ConfigError)  # exit 2 for a tool; run keeps trying (test_startup)


def test_names_follow_prometheus_conventions():
    m = Metrics()
    for fam in m.registry.collect():
        if not fam.name.startswith("seizurewatch_"):
            assert fam.name.startswith("process_")
            continue
        if fam.type == "counter":
            assert any(s.name == fam.name + "_total" for s in fam.samples) or not fam.samples
        if fam.type == "histogram" and "batch" not in fam.name:
            assert fam.name.endswith("_seconds"), fam.name
        assert fam.documentation


def test_counters_follow_a_real_replay():
    """Replay dog1_rec04 (with its seizure) through the daemon; the metrics tell the same story."""
    cfg = replay_config(str(DOG1 / "dog1_rec04.edf"), ReplayOptions(model=str(MODEL), speed="max", patient="bed3"))
    events: list[dict] = []

    async def main() -> Daemon:
        d = Daemon(cfg, DaemonOptions(publish=False))
        d.payload_sinks.append(events.append)
        await d.run()
        return d

    d = asyncio.run(main())
    pipe = d.pipelines[0]
    v = values(d.metrics.registry)
    who = (("patient", "bed3"),)
    assert pipe.stats.samples > 40000
    assert v[("seizurewatch_samples_received_total", who)] == pipe.stats.samples
    assert v[("seizurewatch_windows_classified_total", who)] == pipe.stats.windows > 50
    assert v[("seizurewatch_end_to_end_seconds_count", who)] == pipe.stats.windows
    assert v[("seizurewatch_inference_batch_windows_sum", who)] == pipe.stats.windows
    assert 0 < v[("seizurewatch_inference_seconds_count", who)] <= pipe.stats.windows
    assert v[("seizurewatch_probability", who)] == pytest.approx(pipe.stats.last_probability)
    starts = [e for e in events if e["kind"] == "alarm" and e["event"] == "start"]
    ends = [e for e in events if e["kind"] == "alarm" and e["event"] == "end"]
    assert starts, "the seizure in rec04 raised no alarm"
    assert v[("seizurewatch_alarms_total", (("event", "start"), ("patient", "bed3")))] == len(starts)
    assert v[("seizurewatch_alarms_total", (("event", "end"), ("patient", "bed3")))] == len(ends)
    assert v[("seizurewatch_alarm_active", who)] == 0  # the replay ended, so did the alarm
    assert 0 < v[("seizurewatch_buffer_fill_ratio", who)] <= 1


def test_grafana_dashboard_queries_only_metrics_that_exist():
    import json
    import re

    from conftest import ROOT

    dash = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"\b((?:seizurewatch|process)_[a-z_]+)\b", e)}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}
    exposed = {fam.name + sfx for fam in Metrics().registry.collect() for sfx in suffixes.get(fam.type, ("",))}
    assert len(used) >= 12
    assert used <= exposed, used - exposed
