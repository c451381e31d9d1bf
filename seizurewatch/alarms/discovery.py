"""Home Assistant MQTT discovery: each monitored patient appears as one device with four entities.

Topics follow Home Assistant's ``<discovery_prefix>/<component>/<node_id>/<object_id>/config``
and are published retained, so Home Assistant finds them whenever it (re)connects; they are
published again when Home Assistant's birth message (``<discovery_prefix>/status`` = ``online``)
arrives, as its documentation asks of integrations (a Home Assistant restarted with a broker that
lost its retained store still finds them). ``default_entity_id`` (not the older ``object_id``, deprecated
in Home Assistant 2025.10 and refused from 2026.4) suggests each entity's id.

Entities (all driven by the retained ``<prefix>/<patient>/state`` topic, unavailable while
``<prefix>/<patient>/status`` is ``offline``):
    binary_sensor ``Seizure alarm``   device_class ``safety``: on = alarm active (unsafe)
    sensor        ``Seizure probability``  % of the latest window, ``state_class: measurement``
    sensor        ``Monitoring state``  ok / alarm / fault / unknown
    binary_sensor ``Monitoring fault``  device_class ``problem``: on = the daemon cannot tell
and, for a prediction model, one sensor per horizon, driven by the retained ``<prefix>/<patient>/risk``:
    sensor        ``Seizure risk 10 min`` (...) device_class ``enum``: low / elevated / high / unknown,
                  the median probability and since-when as attributes
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seizurewatch import __version__
from seizurewatch.config import MqttConfig


def birth_topic(cfg: MqttConfig) -> str:
    return f"{cfg.homeassistant_prefix}/status"


def enabled(cfg: MqttConfig) -> bool:
    return cfg.discovery or cfg.homeassistant_discovery


def horizon_words(seconds: float) -> str:
    """600 -> '10 min', 3600 -> '1 h', 45 -> '45 s'."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _hid(seconds: float) -> str:
    """A horizon as an id part: 600 -> '600s', 0.5 -> '0_5s' (ids take letters, digits, _ and - only)."""
    return f"{seconds:g}s".replace(".", "_")


def discovery_configs(cfg: MqttConfig, patient: str, horizons: Sequence[float] = ()) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config payload for one patient; ``horizons``: the model's prediction horizons (s),
    in the order of the risk message's ``horizons``."""
    base = f"{cfg.topic_prefix}/{patient}"
    node = f"seizurewatch_{patient}"
    device = {"identifiers": [node], "name": f"seizurewatch {patient}", "manufacturer": "seizurewatch",
              "model": "seizure warning daemon", "sw_version": __version__}
    common: dict[str, Any] = {
        "state_topic": f"{base}/state", "availability_topic": f"{base}/status",
        "payload_available": "online", "payload_not_available": "offline",
        "json_attributes_topic": f"{base}/state", "device": device, "qos": 1,
    }
    hp = cfg.homeassistant_prefix
    risk = {
        f"{hp}/sensor/{node}/risk_{_hid(h)}/config": {
            **common, "state_topic": f"{base}/risk", "json_attributes_topic": f"{base}/risk",
            "name": f"Seizure risk {horizon_words(h)}", "unique_id": f"{node}_risk_{_hid(h)}",
            "default_entity_id": f"sensor.{node}_risk_{_hid(h)}", "device_class": "enum",
            "options": ["low", "elevated", "high", "unknown"], "icon": "mdi:chart-bell-curve-cumulative",
            "value_template": f"{{{{ value_json.horizons[{i}].level }}}}",
            "json_attributes_template": f"{{{{ value_json.horizons[{i}] | tojson }}}}"}
        for i, h in enumerate(horizons)}
    return risk | {
        f"{hp}/binary_sensor/{node}/alarm/config": {
            **common, "name": "Seizure alarm", "unique_id": f"{node}_alarm",
            "default_entity_id": f"binary_sensor.{node}_alarm",
            "device_class": "safety", "payload_on": "ON", "payload_off": "OFF",
            "value_template": "{{ 'ON' if value_json.state == 'alarm' else 'OFF' }}"},
        f"{hp}/sensor/{node}/probability/config": {
            **common, "name": "Seizure probability", "unique_id": f"{node}_probability",
            "default_entity_id": f"sensor.{node}_probability", "unit_of_measurement": "%", "state_class": "measurement",
            "suggested_display_precision": 0, "icon": "mdi:brain",
            # None renders "None", which Home Assistant's MQTT sensor reads as 'unknown' (before the first window)
            "value_template": "{{ (value_json.probability * 100) | round(1) "
                              "if value_json.probability is not none else None }}"},
        f"{hp}/sensor/{node}/state/config": {
            **common, "name": "Monitoring state", "unique_id": f"{node}_state",
            "default_entity_id": f"sensor.{node}_state",
            "icon": "mdi:heart-pulse", "value_template": "{{ value_json.state }}"},
        f"{hp}/binary_sensor/{node}/fault/config": {
            **common, "name": "Monitoring fault", "unique_id": f"{node}_fault",
            "default_entity_id": f"binary_sensor.{node}_fault",
            "device_class": "problem", "payload_on": "ON", "payload_off": "OFF", "entity_category": "diagnostic",
            "value_template": "{{ 'ON' if value_json.state == 'fault' else 'OFF' }}"},
    }
