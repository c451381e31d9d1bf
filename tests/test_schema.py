"""docs/alarm.schema.json describes every payload the daemon publishes, and rejects malformed ones."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys

import aiomqtt
import numpy as np
import pyedflib
import pytest
from alarm_support import SCHEMA, VALIDATOR, validate
from conftest import DOG1, ROOT
from edf_writer import write_edf

from seizurewatch.decision import FaultTracker
from seizurewatch.events import Context, to_payload

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

CTX = Context("bed1", "dog1-convnet", "a" * 64, "youden")


EPOCH = "0123456789abcdef.1"


def test_schema_is_valid_draft_2020_12():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    type(VALIDATOR).check_schema(SCHEMA)


def test_fault_lifecycle_payloads_validate():
    faults = FaultTracker()
    evs = faults.set("flatline", True, 10.0, ("c001",), "flatline on c001")
    evs += faults.set("flatline", True, 12.0, ("c001", "c002"), "flatline on c001, c002")
    evs += faults.set("flatline", False, 20.0)
    evs += faults.instant("stream_gap", 30.0, "1.5 s without samples", 1.5)
    payloads = [{**to_payload(e, CTX, seq=i + 1, wall_time=1.7e9), "epoch": EPOCH} for i, e in enumerate(evs)]
    assert [p["event"] for p in payloads] == ["start", "update", "end", "start", "end"]
    for p in payloads:
        validate(p)


def test_a_start_during_the_refractory_period_says_so_in_its_payload():
    from seizurewatch.config import DecisionConfig
    from seizurewatch.decision import AlarmDecision

    dec = AlarmDecision(DecisionConfig(k=1, n=1, off_hops=1, refractory_s=30, update_every_s=100), 0.5)
    evs = [e for t, p in enumerate([0.6, 0.1, 0.9, 0.1]) for e in dec.update(float(t), p)]
    payloads = [{**to_payload(e, CTX, seq=i + 1, wall_time=1.7e9), "epoch": EPOCH} for i, e in enumerate(evs)]
    assert [p["event"] for p in payloads] == ["start", "end", "start", "end"]
    assert "detail" not in payloads[0]  # nothing to say about an ordinary start
    assert "refractory" in payloads[2]["detail"] and "0.600" in payloads[2]["detail"]
    for p in payloads:
        validate(p)
    empty = {**payloads[2], "detail": ""}
    assert not VALIDATOR.is_valid(empty)


@pytest.mark.parametrize("mutate, why", [
    (lambda p: p.pop("seq"), "seq missing"),
    (lambda p: p.pop("epoch"), "epoch missing"),
    (lambda p: p.update(epoch="0123456789abcdef"), "epoch without its incarnation"),
    (lambda p: p.update(seq=0), "seq must be >= 1"),
    (lambda p: p.update(probability=1.5), "probability above 1"),
    (lambda p: p.update(event="begin"), "unknown phase"),
    (lambda p: p["model"].update(sha256="xyz"), "sha256 not hex"),
    (lambda p: p.update(surprise=1), "unknown key"),
    (lambda p: p.update(kind="fault"), "fault without fault_type"),
])
def test_schema_rejects_malformed_alarm(mutate, why):
    from seizurewatch.events import Event

    good = to_payload(Event("alarm", "start", "0123456789abcdef", 66.0, 0.59, 0.443, started_t=66.0,
                            peak_probability=0.59), CTX, seq=17, wall_time=1.7e9)
    good["epoch"] = EPOCH
    validate(good)
    bad = copy.deepcopy(good)
    mutate(bad)
    assert not VALIDATOR.is_valid(bad), why


def test_state_payload_validates_and_rejects_unknown_state():
    state = {"state": "fault", "patient": "bed1", "t": 12.0, "wall_time": 1.7e9, "probability": None,
             "faults": ["flatline"], "alarm_id": None}
    validate(state)
    assert not VALIDATOR.is_valid({**state, "state": "maybe"})


@pytest.mark.slow
def test_every_published_message_matches_the_schema(mosquitto, tmp_path):
    """Replay rec04 with one channel dead for 25 s (a real flatline fault) and the seizure (a real
    alarm) into Mosquitto; every alarm, fault and state message must validate."""
    with pyedflib.EdfReader(str(DOG1 / "dog1_rec04.edf")) as r:
        rate = int(r.getSampleFrequency(0))
        labels = r.getSignalLabels()
        data = np.stack([r.readSignal(i) for i in range(r.signals_in_file)])
    data[2, 20 * rate: 45 * rate] = 0.0
    edf = write_edf(tmp_path / "flat.edf", data, rate, labels, [(60.0, 41.0, "seizure")])

    async def main() -> dict[str, list[bytes]]:
        got: dict[str, list[bytes]] = {}
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="schema-check") as c:
            await c.subscribe("seizurewatch/#", qos=1)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "seizurewatch", "replay", str(edf), "--mqtt-url", mosquitto.url,
                "--patient", "bed1", cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                async with asyncio.timeout(120):
                    async for m in c.messages:
                        got.setdefault(str(m.topic), []).append(bytes(m.payload))
                        if str(m.topic).endswith("/status") and m.payload == b"offline":
                            break
            finally:
                _, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()[-2000:]
        return got

    got = asyncio.run(main())
    alarms = [json.loads(x) for x in got["seizurewatch/bed1/alarm"]]
    faults = [json.loads(x) for x in got["seizurewatch/bed1/fault"]]
    states = [json.loads(x) for x in got["seizurewatch/bed1/state"]]
    assert {a["event"] for a in alarms} >= {"start", "update", "end"}
    assert any(f["fault_type"] == "flatline" and f["event"] == "start" for f in faults)
    assert any(f["event"] == "end" for f in faults)
    assert {"fault", "alarm"} <= {s["state"] for s in states}  # every change is published
    for p in alarms + faults + states:
        validate(p)
    assert set(got["seizurewatch/bed1/status"]) <= {b"online", b"offline"}
