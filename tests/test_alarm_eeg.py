"""The EEG behind every alarm: with an alarm start the daemon keeps the seconds of signal the model saw up to the
decision, retained per alarm on the broker (a station that connects later still gets it), journaled beside the
alarm, and written out by ``labels export``. A real daemon replaying dog1_rec04 into a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiomqtt
import numpy as np
import pytest
from alarm_support import validate
from conftest import MODEL, ROOT

from seizurewatch.config import load_config
from seizurewatch.daemon import Daemon
from seizurewatch.snippet import POINTS, SignalTail, thin

REC04 = ROOT / "seizurewatch" / "data" / "dog1_rec04.edf"


def test_the_tail_cuts_the_seconds_before_the_decision_and_forgets_across_a_gap():
    tail = SignalTail(("a", "b"), 100.0, keep_s=20.0)
    for i in range(30):  # 30 s in 1-s blocks; channel a carries its own time
        t = np.arange(i * 100, (i + 1) * 100) / 100.0
        tail.push(float(i), np.vstack([t, -t]).astype(np.float32))
    t0, x = tail.cut(25.0, seconds=10.0)
    assert t0 == pytest.approx(15.0) and x.shape == (2, 1000)
    assert x[0, 0] == pytest.approx(15.0) and x[0, -1] == pytest.approx(24.99)
    tail.clear()
    assert tail.cut(25.0) is None
    spike = np.zeros((1, 4000), dtype=np.float32)
    spike[0, 1234] = 500.0  # one sample: thinning for display keeps it
    assert thin(spike).shape == (1, POINTS) and thin(spike).max() == 500.0


@pytest.mark.slow
def test_an_alarm_comes_with_its_eeg_on_the_broker_in_the_journal_and_in_the_labels_export(mosquitto, tmp_path):
    journal = tmp_path / "outbox.sqlite3"
    cfg_path = tmp_path / "bed.yaml"
    cfg_path.write_text(f"streams:\n  - patient: bed1\n    source: {{kind: edf, path: {REC04}, speed: 10}}\n"
                        f"model: {{path: {MODEL}}}\nmqtt: {{url: {mosquitto.url}}}\noutbox: {{path: {journal}}}\n")
    cfg = load_config(cfg_path)

    async def night() -> tuple[dict, dict, dict]:
        start: dict = {}
        eeg: dict = {}
        runner = asyncio.create_task(Daemon(cfg).run())
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="ward") as c:
            await c.subscribe("seizurewatch/bed1/alarm", qos=1)
            await c.subscribe("seizurewatch/bed1/eeg/+", qos=1)
            async with asyncio.timeout(120):
                async for m in c.messages:
                    body = json.loads(m.payload)
                    if str(m.topic).endswith("/alarm") and body["event"] == "start" and not start:
                        start = body
                    elif "/eeg/" in str(m.topic):
                        eeg[str(m.topic)] = body
                    if start and f"seizurewatch/bed1/eeg/{start['alarm_id']}" in eeg:
                        break
        await runner
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="late-station") as c:  # retained
            await c.subscribe(f"seizurewatch/bed1/eeg/{start['alarm_id']}", qos=1)
            async with asyncio.timeout(30):
                late = json.loads((await anext(aiter(c.messages))).payload)
        return start, eeg[f"seizurewatch/bed1/eeg/{start['alarm_id']}"], late

    start, eeg, late = asyncio.run(night())
    validate(eeg)
    assert late == eeg
    assert eeg["alarm_id"] == start["alarm_id"] and eeg["probability"] == start["probability"]
    assert eeg["t_end"] == pytest.approx(start["t"], abs=0.01) and eeg["t_end"] - eeg["t_start"] == pytest.approx(10.0)
    data = np.array(eeg["data"])
    assert data.shape == (16, POINTS) and len(eeg["channels"]) == 16
    assert (data.std(axis=1) > 1.0).all(), "a flat trace is not the EEG the model saw"

    out = tmp_path / "labels"
    r = subprocess.run([sys.executable, "-m", "seizurewatch", "labels", "export", "--journal", str(journal),
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["eeg"] == {"bed1": 1}
    assert json.loads((out / "bed1.eeg.json").read_text()) == {start["alarm_id"]: eeg}
