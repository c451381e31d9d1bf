"""Issue 31: risk per horizon in the daemon (seizurewatch/risk.py, docs/risk.schema.json).

The level follows the median of the last span's windows (a one-window blip never moves it), with
hysteresis on the way down; every payload is valid by construction (a property test drives the
tracker through arbitrary sequences); a replay with a two-horizon model (plus a detection output)
into a real Mosquitto publishes retained risk messages and level-change events that validate, and
raises alarms from the detection output only."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import jsonschema
import numpy as np
import pytest
import torch
from conftest import ROOT
from edf_writer import write_edf
from hypothesis import given, settings
from hypothesis import strategies as st

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import ModelError
from seizurewatch.events import Context, to_payload
from seizurewatch.modelfile import load_model, save_model
from seizurewatch.modelmeta import RiskOutput, parse_meta
from seizurewatch.replay import ReplayOptions, replay_async
from seizurewatch.risk import RISK_MIN_WINDOWS, PatientRisk, RiskTracker

RISK_SCHEMA = json.loads((ROOT / "docs" / "risk.schema.json").read_text())
PACKAGED = json.loads((ROOT / "seizurewatch" / "data" / "risk.schema.json").read_text())
CTX = Context("bed3", "two-horizon", "b" * 64, "test")
EPOCH = "0123456789abcdef.1"


def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": RISK_SCHEMA["$defs"]})


RISK, CHANGE = _validator("risk"), _validator("change")


def _valid(v: jsonschema.Draft202012Validator, payload: dict) -> None:
    errors = [e.message for e in v.iter_errors(payload)]
    assert not errors, f"{errors}: {payload}"


def _tracker(span_s: float = 5.0, hysteresis: float = 0.05) -> RiskTracker:
    return RiskTracker(RiskOutput(0, "preictal_600s", 600.0, 0.4, 0.7), span_s, hysteresis, hop_s=1.0)


def _levels(tr: RiskTracker, ps: list[float]) -> list[str]:
    out = []
    for i, p in enumerate(ps):
        tr.update(float(i), p)
        out.append(tr.level)
    return out


def test_schema_is_valid_and_packaged_copy_is_the_same():
    jsonschema.Draft202012Validator.check_schema(RISK_SCHEMA)
    assert PACKAGED == RISK_SCHEMA


def test_a_one_window_blip_is_not_a_level_change():
    tr = _tracker()
    levels = _levels(tr, [0.1] * 8 + [0.95] + [0.1] * 8)
    assert levels[:RISK_MIN_WINDOWS - 1] == ["unknown"] * (RISK_MIN_WINDOWS - 1)
    assert set(levels[RISK_MIN_WINDOWS - 1:]) == {"low"}
    # two windows in a row are not a majority of five either; three are
    tr = _tracker()
    assert set(_levels(tr, [0.1] * 8 + [0.95] * 2 + [0.1] * 8)[2:]) == {"low"}
    tr = _tracker()
    assert "high" in _levels(tr, [0.1] * 8 + [0.95] * 3 + [0.1] * 8)


def test_levels_rise_at_the_threshold_and_fall_only_past_the_hysteresis():
    tr = _tracker(span_s=3.0, hysteresis=0.05)
    assert _levels(tr, [0.45] * 4)[-1] == "elevated"
    assert _levels(tr, [0.37] * 4)[-1] == "elevated"  # 0.37 >= 0.40 - 0.05: still elevated
    assert _levels(tr, [0.34] * 4)[-1] == "low"
    assert _levels(tr, [0.72] * 4)[-1] == "high"
    assert _levels(tr, [0.66] * 4)[-1] == "high"
    assert _levels(tr, [0.5] * 4)[-1] == "elevated"
    assert _levels(tr, [0.1] * 4)[-1] == "low"


def test_a_gap_clears_the_span_but_keeps_the_level():
    tr = _tracker()
    _levels(tr, [0.8] * 6)
    assert tr.level == "high"
    tr.reset()
    tr.update(10.0, 0.0)
    tr.update(11.0, 0.0)
    assert tr.level == "high" and tr.since_t == 2.0  # fewer than RISK_MIN_WINDOWS since the gap
    tr.update(12.0, 0.0)
    assert tr.level == "low" and tr.since_t == 12.0


@settings(max_examples=60, deadline=None)
@given(ps=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=80),
       span=st.floats(0.5, 30.0), hysteresis=st.floats(0.0, 0.3),
       gaps=st.sets(st.integers(0, 79), max_size=4))
def test_every_risk_message_and_event_validates(ps, span, hysteresis, gaps):
    meta = parse_meta(_meta({"preictal_600s": {"horizon_s": 600, "elevated": 0.3, "high": 0.6},
                             "preictal_3600s": {"horizon_s": 3600, "elevated": 0.2, "high": 0.5}},
                            ("seizure", "preictal_600s", "preictal_3600s")), "m.pt")
    risk = PatientRisk(meta, DecisionConfig(risk_span_s=span, risk_hysteresis=hysteresis))
    seq = 0
    for i, p in enumerate(ps):
        if i in gaps:
            risk.reset()
        for ev in risk.update(float(i), [0.0, p, 1.0 - p]):
            seq += 1
            payload = {**to_payload(ev, CTX, seq, wall_time=1.7e9), "epoch": EPOCH}
            _valid(CHANGE, payload)
            assert payload["level"] != payload["previous"]
        _valid(RISK, risk.message(CTX, wall_time=1.7e9))


def _meta(risk: dict | None, outputs: tuple[str, ...] = ("seizure", "preictal_600s")) -> dict:
    return {"format": "seizurewatch-model/1", "name": "m", "outputs": list(outputs),
            "preprocess": {"channels": ["a"], "rate": 100.0, "bandpass": None, "notch": None},
            "window_s": 2.0, "hop_s": 1.0, "threshold": {"value": 0.5}, "weights_sha256": "0" * 64, "risk": risk}


def test_outputs_are_typed_by_the_metadata_and_bad_levels_are_refused():
    meta = parse_meta(_meta({"preictal_600s": {"horizon_s": 600, "elevated": 0.3, "high": 0.6}}), "m.pt")
    assert meta.detection_output == 0
    assert meta.risk_outputs == (RiskOutput(1, "preictal_600s", 600.0, 0.3, 0.6),)
    assert parse_meta(_meta(None), "m.pt").risk_outputs == ()  # an older model: alarms on output 0
    with pytest.raises(ModelError, match=r"m.pt: metadata.json: risk.preictal_600s.high: must be"):
        parse_meta(_meta({"preictal_600s": {"horizon_s": 600, "elevated": 0.6, "high": 0.3}}), "m.pt")
    with pytest.raises(ModelError, match=r"risk.preictal_60s: not one of the model's outputs"):
        parse_meta(_meta({"preictal_60s": {"horizon_s": 60, "elevated": 0.3, "high": 0.6}}), "m.pt")
    with pytest.raises(ModelError, match=r"risk.preictal_600s.horizon_s: required key is missing \(expected a num"):
        parse_meta(_meta({"preictal_600s": {"elevated": 0.3, "high": 0.6}}), "m.pt")


# ----- a replay into a real Mosquitto -------------------------------------------------------------------
RATE = 100
CHANNELS = ["a", "b", "c"]
ONSET, END = 100.0, 115.0


class _Levels(torch.nn.Module):
    """Each output = the mean of its channel over the window's last second / 1000 uV: (seizure, 10 min, 1 h)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, :, -100:].mean(dim=2) / 1000.0).clamp(0.0, 1.0)


def _recording(tmp_path):
    """Channel a: seizure output (0.9 inside the seizure); b: 10-min risk, 0.1 with one 1-s blip at 20 s,
    0.5 from 40 s, 0.8 from 70 s; c: 1-h risk, 0.3 from 30 s."""
    t = np.arange(130 * RATE) / RATE
    lv = np.zeros((3, len(t)))
    lv[0] = np.where((t >= ONSET) & (t < END), 0.9, 0.05)
    lv[1] = np.select([t >= 70, t >= 40, (t >= 20) & (t < 21)], [0.8, 0.5, 0.95], 0.1)
    lv[2] = np.where(t >= 30, 0.3, 0.05)
    data = np.random.default_rng(0).normal(0, 2, lv.shape) + 1000.0 * lv
    edf = write_edf(tmp_path / "risk.edf", data, RATE, CHANNELS, annotations=[(ONSET, END - ONSET, "seizure")])
    meta = {"name": "two-horizon", "outputs": ["seizure", "preictal_600s", "preictal_3600s"], "window_s": 2.0,
            "hop_s": 1.0, "preprocess": {"channels": CHANNELS, "rate": float(RATE), "bandpass": None, "notch": None},
            "threshold": {"value": 0.5, "policy": "test"},
            "risk": {"preictal_600s": {"horizon_s": 600.0, "elevated": 0.4, "high": 0.7},
                     "preictal_3600s": {"horizon_s": 3600.0, "elevated": 0.25, "high": 0.6}}}
    model = tmp_path / "two-horizon.pt"
    save_model(_Levels(), meta, model, torch.zeros(2, 3, 2 * RATE))
    return edf, model


def test_replay_publishes_retained_risk_and_level_changes_that_validate(tmp_path, mosquitto):
    edf, model = _recording(tmp_path)
    assert load_model(model).meta.detection_output == 0

    async def main():
        got: dict[str, list[tuple[bytes, bool]]] = {}
        ready = asyncio.Event()

        async def collect():
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="risk-sub") as c:
                await c.subscribe("seizurewatch/bed3/#", qos=1)
                ready.set()
                async for m in c.messages:
                    got.setdefault(str(m.topic), []).append((m.payload, m.retain))
                    if str(m.topic).endswith("/status") and m.payload == b"offline":
                        return

        sub = asyncio.create_task(collect())
        await asyncio.wait_for(ready.wait(), 30)
        res = await replay_async(edf, ReplayOptions(model=model, publish=True, mqtt_url=mosquitto.url, patient="bed3",
                                                    decision=DecisionConfig(risk_span_s=5.0)))
        await asyncio.wait_for(sub, 60)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="risk-late") as c:  # a late subscriber
            await c.subscribe("seizurewatch/bed3/risk", qos=1)
            async with asyncio.timeout(30):
                async for m in c.messages:
                    return res, got, (json.loads(m.payload), m.retain)

    res, got, (late, retained) = asyncio.run(main())
    changes = [json.loads(p) for p, _ in got["seizurewatch/bed3/risk_change"]]
    for ch in changes:
        _valid(CHANGE, ch)
    short = [(c["horizon_s"], c["previous"], c["level"]) for c in changes]
    assert short == [(600.0, "unknown", "low"), (3600.0, "unknown", "low"), (3600.0, "low", "elevated"),
                     (600.0, "low", "elevated"), (600.0, "elevated", "high")], short
    t_of = {(c["horizon_s"], c["level"]): c["t"] for c in changes}
    assert 30 < t_of[(3600.0, "elevated")] < 36 and 40 < t_of[(600.0, "elevated")] < 46  # median of 5: ~3 s late
    assert 70 < t_of[(600.0, "high")] < 76
    # retained messages: each validates; the last one (also what a late subscriber gets) holds every horizon
    risks = [json.loads(p) for p, _ in got["seizurewatch/bed3/risk"]]
    for r in risks:
        _valid(RISK, r)
    _valid(RISK, late)
    assert retained
    assert [(h["horizon_s"], h["level"]) for h in late["horizons"]] == [(600.0, "high"), (3600.0, "elevated")]
    assert late["horizons"][0]["since_t"] == t_of[(600.0, "high")]
    # alarms come from the detection output only: one alarm, inside the seizure (the 10-min risk at 0.8 is not one)
    alarms = [json.loads(p) for p, _ in got.get("seizurewatch/bed3/alarm", [])]
    starts = [a for a in alarms if a["event"] == "start"]
    assert len(starts) == 1 and ONSET <= starts[0]["t"] <= END
    # one sequence per patient: alarm, fault and risk events together have no gap
    seqs = sorted(json.loads(p)["seq"] for leaf in ("alarm", "fault", "risk_change")
                  for p, _ in got.get(f"seizurewatch/bed3/{leaf}", []))
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert res is not None


def test_home_assistant_discovery_adds_one_sensor_per_horizon_rendering_the_risk_message():
    import jinja2
    from test_discovery import PLATFORM_KEYS, TOPIC

    from seizurewatch.alarms.discovery import discovery_configs
    from seizurewatch.config import MqttConfig

    meta = parse_meta(_meta({"preictal_600s": {"horizon_s": 600, "elevated": 0.3, "high": 0.6},
                             "preictal_3600s": {"horizon_s": 3600, "elevated": 0.2, "high": 0.5}},
                            ("preictal_600s", "preictal_3600s")), "m.pt")
    assert meta.detection_output is None  # prediction only: no alarms, risk only
    risk = PatientRisk(meta, DecisionConfig(risk_span_s=3.0))
    for i in range(5):
        risk.update(float(i), [0.7, 0.25])
    message = json.loads(json.dumps(risk.message(CTX)))
    configs = discovery_configs(MqttConfig(discovery=True), "bed3", [o.horizon_s for o in meta.risk_outputs])
    sensors = {t: c for t, c in configs.items() if "/risk_" in t}
    assert len(configs) == 6 and len(sensors) == 2
    env = jinja2.Environment()
    shown = {}
    for topic, c in sensors.items():
        assert TOPIC.match(topic) and set(c) <= PLATFORM_KEYS["sensor"], topic
        assert c["state_topic"] == c["json_attributes_topic"] == "seizurewatch/bed3/risk"
        state = env.from_string(c["value_template"]).render(value_json=message)
        assert state in c["options"]
        attrs = json.loads(env.from_string(c["json_attributes_template"]).render(value_json=message))
        shown[c["name"]] = (state, attrs["probability"])
    assert shown == {"Seizure risk 10 min": ("high", 0.7), "Seizure risk 1 h": ("elevated", 0.25)}


@pytest.mark.slow
def test_station_page_shows_each_horizons_risk_in_words_symbol_and_colour(tmp_path, mosquitto):
    import os
    import subprocess
    import sys

    from conftest import free_port, wait_port
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from test_station import _browser

    from seizurewatch.replay import ReplayOptions, replay

    edf, model = _recording(tmp_path)
    replay(edf, ReplayOptions(model=model, publish=True, mqtt_url=mosquitto.url, patient="bed3",
                              decision=DecisionConfig(risk_span_s=5.0)))  # the retained risk message stays there
    (tmp_path / "station.yaml").write_text(f"mqtt:\n  url: {mosquitto.url}\n")
    port = free_port()
    station = subprocess.Popen([sys.executable, "-m", "seizurewatch", "station", "--config",
                                str(tmp_path / "station.yaml"), "--listen", f"127.0.0.1:{port}"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=(tmp_path / "station.log").open("wb"))
    driver = _browser()
    try:
        wait_port(port, timeout=30)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 60, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#bed-bed3 .rchip")) == 2)
        chips = {c.get_attribute("data-horizon"): (c.get_attribute("data-level"), c.text)
                 for c in driver.find_elements(By.CSS_SELECTOR, "#bed-bed3 .rchip")}
        if os.environ.get("SEIZUREWATCH_STATION_SCREENSHOT"):
            driver.save_screenshot(os.environ["SEIZUREWATCH_STATION_SCREENSHOT"])
    finally:
        driver.quit()
        station.terminate()
        station.wait(30)
    # the word and the symbol say the level without the colour
    assert chips == {"600": ("high", "█ 10 min: HIGH"), "3600": ("elevated", "▄ 1 h: elevated")}, chips


def test_subscriber_checks_risk_messages_and_prints_level_changes():
    from seizurewatch.alarms.subscriber import Handlers, MessageChecker, format_event

    meta = parse_meta(_meta({"preictal_600s": {"horizon_s": 600, "elevated": 0.3, "high": 0.6}}, ("preictal_600s",)),
                      "m.pt")
    risk = PatientRisk(meta, DecisionConfig(risk_span_s=3.0))
    events = [e for i in range(8) for e in risk.update(float(i), [0.1 if i < 4 else 0.9])]
    payloads = [{**to_payload(e, CTX, i + 1, 1.7e9), "epoch": EPOCH} for i, e in enumerate(events)]
    got, other, missed = [], [], []
    station = MessageChecker("seizurewatch", Handlers(on_event=got.append, on_other=lambda t, r: other.append(t),
                                               on_missed=lambda *a: missed.append(a)))

    async def feed():
        for p in payloads:
            await station.handle("seizurewatch/bed3/risk_change", json.dumps(p).encode())
        await station.handle("seizurewatch/bed3/risk", json.dumps(risk.message(CTX)).encode())
        await station.handle("seizurewatch/bed3/risk_change", json.dumps({**payloads[0], "level": "purple"}).encode())

    asyncio.run(feed())
    assert [g["level"] for g in got] == ["low", "high"] and missed == []
    assert other == ["seizurewatch/bed3/risk"] and station.ignored == 1  # the malformed one is dropped
    assert format_event(got[-1]) == ("[bed3] t=     5.0s RISK  600 s horizon: LOW -> HIGH "
                                     "(median p=0.9, preictal_600s)")
