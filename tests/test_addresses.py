"""The two network addresses users give, each parsed once (seizurewatch/addresses.py): the config check and the
MQTT client agree on a broker URL; the metrics endpoint and the station agree on a listen address."""

from __future__ import annotations

import pytest

from seizurewatch.addresses import BrokerURL, parse_broker_url, parse_listen
from seizurewatch.alarms.security import client_kwargs
from seizurewatch.config import MqttConfig
from seizurewatch.errors import ConfigError
from seizurewatch.metrics import parse_listen as metrics_listen
from seizurewatch.station.server import StationOptions


@pytest.mark.parametrize("url, parsed", [
    ("mqtt://127.0.0.1:1883", BrokerURL("mqtt", "127.0.0.1", 1883, None)),
    ("mqtts://nurse@broker.ward", BrokerURL("mqtts", "broker.ward", None, "nurse")),
    ("mqtt://[::1]:1884/", BrokerURL("mqtt", "::1", 1884, None)),
])
def test_a_broker_url_parses_to_its_parts(url, parsed):
    assert parse_broker_url(url, "url") == parsed


@pytest.mark.parametrize("bad", ["http://x", "mqtt://", "mqtt://h:0", "mqtt://h:99999", "mqtt://h:1883/x",
                                 "mqtt://h:1883?q=1", "mqtt://[::1", "mqtt://u:secret@h:1883", "mqtt://h\n:1"])
def test_the_config_and_the_client_refuse_the_same_urls(bad):
    with pytest.raises(ValueError, match="^url: ") as exc:
        MqttConfig(url=bad)
    with pytest.raises(ConfigError, match="^mqtt.url: ") as exc2:
        client_kwargs(MqttConfig(), bad)
    for e in (exc, exc2):
        assert "secret" not in str(e.value)


@pytest.mark.parametrize("listen, expected", [
    ("127.0.0.1:9108", ("127.0.0.1", 9108)), ("9108", ("127.0.0.1", 9108)), (":9108", ("127.0.0.1", 9108)),
    ("[::1]:9108", ("::1", 9108)), ("localhost:80", ("localhost", 80)), ("0.0.0.0:9200", ("0.0.0.0", 9200)),
])
def test_metrics_and_station_read_a_listen_address_alike(listen, expected):
    assert parse_listen(listen, "x", 1) == expected
    assert metrics_listen(listen) == expected
    if expected[0] != "0.0.0.0":  # a wildcard needs a password at the station
        opts = StationOptions.from_listen(listen)
        assert (opts.host, opts.port) == expected


@pytest.mark.parametrize("bad", ["nurse-station:9108", "127.0.0.1:http", "127.0.0.1:99999", "127.0.0.1:+80", ""])
def test_metrics_and_station_refuse_the_same_listen_addresses(bad):
    with pytest.raises(ConfigError, match="metrics.listen: expected HOST:PORT"):
        metrics_listen(bad)
    with pytest.raises(ConfigError, match="--listen: expected HOST:PORT"):
        StationOptions.from_listen(bad)
