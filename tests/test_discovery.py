"""Home Assistant MQTT discovery: payloads checked against Home Assistant's documented discovery schema
(topic layout, keys of the MQTT binary_sensor / sensor platforms, device classes), their templates rendered
with Jinja2 as Home Assistant would, and the retained configs re-published on HA's birth message."""

from __future__ import annotations

import asyncio
import json
import re

import aiomqtt
import jinja2
import pytest

from seizurewatch.alarms.discovery import discovery_configs
from seizurewatch.config import MqttConfig

# Keys documented for MQTT discovery of these platforms (home-assistant.io/integrations/binary_sensor.mqtt,
# /sensor.mqtt, /mqtt#discovery-messages); anything else is rejected by Home Assistant's schema. Not
# object_id: deprecated for default_entity_id (home-assistant/core#151775), refused from HA 2026.4.
COMMON_KEYS = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
               "enabled_by_default", "encoding", "entity_category", "expire_after", "force_update", "icon",
               "json_attributes_template", "json_attributes_topic", "name", "default_entity_id",
               "payload_available", "payload_not_available", "qos", "state_topic", "unique_id", "value_template",
               "entity_picture", "platform"}
PLATFORM_KEYS = {"binary_sensor": COMMON_KEYS | {"device_class", "off_delay", "payload_off", "payload_on"},
                 "sensor": COMMON_KEYS | {"device_class", "last_reset_value_template", "options",
                                          "suggested_display_precision", "state_class", "unit_of_measurement"}}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
               "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device"}
BINARY_CLASSES = {"safety", "problem", "connectivity", "running"}  # the subset that could apply here
TOPIC = re.compile(r"^homeassistant/(binary_sensor|sensor)/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config$")


def render(template: str, state: dict) -> str:
    return jinja2.Environment().from_string(template).render(value_json=state)


def test_discovery_payloads_follow_home_assistants_schema():
    cfg = MqttConfig(discovery=True)
    configs = discovery_configs(cfg, "bed4")
    assert len(configs) == 4
    ids = set()
    for topic, c in configs.items():
        m = TOPIC.match(topic)
        assert m, f"{topic}: not <discovery_prefix>/<component>/<node_id>/<object_id>/config"
        platform = m.group(1)
        assert set(c) <= PLATFORM_KEYS[platform], f"{topic}: keys HA does not know: {set(c) - PLATFORM_KEYS[platform]}"
        assert c["state_topic"] == "seizurewatch/bed4/state" and c["availability_topic"] == "seizurewatch/bed4/status"
        assert (c["payload_available"], c["payload_not_available"]) == ("online", "offline")
        assert set(c["device"]) <= DEVICE_KEYS and c["device"]["identifiers"] == ["seizurewatch_bed4"]
        assert c["unique_id"] not in ids
        ids.add(c["unique_id"])
        if platform == "binary_sensor":
            assert c["device_class"] in BINARY_CLASSES
        assert c["qos"] in (0, 1, 2)
        # object_id was deprecated in HA 2025.10 and stops working in 2026.4: default_entity_id is <platform>.<id>
        assert c["default_entity_id"] == f"{platform}.{c['unique_id']}"
        json.dumps(c)  # serialisable as is


@pytest.mark.parametrize("state, alarm, fault, probability, shown", [
    ({"state": "alarm", "probability": 0.873}, "ON", "OFF", "87.3", "alarm"),
    ({"state": "ok", "probability": 0.02}, "OFF", "OFF", "2.0", "ok"),
    ({"state": "fault", "probability": 0.5}, "OFF", "ON", "50.0", "fault"),
    ({"state": "unknown", "probability": None}, "OFF", "OFF", "None", "unknown"),
])
def test_templates_render_as_home_assistant_reads_them(state, alarm, fault, probability, shown):
    c = {t.split("/")[-2]: v for t, v in discovery_configs(MqttConfig(discovery=True), "bed4").items()}
    assert render(c["alarm"]["value_template"], state) == c["alarm"]["payload_on" if alarm == "ON" else "payload_off"]
    assert render(c["fault"]["value_template"], state) == fault
    assert render(c["probability"]["value_template"], state) == probability  # "None" -> HA's 'unknown'
    assert render(c["state"]["value_template"], state) == shown


@pytest.mark.slow
def test_configs_are_retained_and_republished_on_home_assistants_birth(mosquitto):
    from seizurewatch.alarms.mqtt import PatientLink
    from seizurewatch.alarms.outbox import Outbox

    async def retained(c: aiomqtt.Client, n: int) -> dict[str, dict]:
        got: dict[str, dict] = {}
        async with asyncio.timeout(60):
            async for m in c.messages:
                if m.payload:
                    got[str(m.topic)] = json.loads(m.payload)
                if len(got) == n:
                    return got
        return got

    async def main() -> tuple[dict, dict]:
        cfg = MqttConfig(url=mosquitto.url, discovery=True)
        link = PatientLink(cfg, Outbox.open_sync(":memory:"), "bed4")
        runner = asyncio.create_task(link.run())
        await asyncio.wait_for(link.connected.wait(), 30)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="ha") as c:
            await c.subscribe("homeassistant/+/+/+/config", qos=1)
            first = await retained(c, 4)
            # Home Assistant restarted against a broker that lost its retained store: clear, then birth
            for topic in first:
                await c.publish(topic, b"", qos=1, retain=True)
            await c.publish("homeassistant/status", b"offline", qos=1)
            await c.publish("homeassistant/status", b"online", qos=1)
            again = await retained(c, 4)
        link.close()
        await asyncio.wait_for(runner, 30)
        return first, again

    first, again = asyncio.run(main())
    assert set(first) == set(again) == set(discovery_configs(MqttConfig(), "bed4"))
    assert again == first
