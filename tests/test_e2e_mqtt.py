"""End to end against a real Mosquitto: replay dog1_rec04 at max speed, subscribe separately."""

import asyncio
import json
import subprocess
import sys

import aiomqtt
import pytest
from conftest import DOG1, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]


async def collect(url_port: int, started: asyncio.Event, out: dict, stop_after: float):
    async with aiomqtt.Client("127.0.0.1", url_port, identifier="test-sub") as c:
        await c.subscribe("seizurewatch/#", qos=1)
        started.set()
        try:
            async with asyncio.timeout(stop_after):
                async for m in c.messages:
                    out.setdefault(str(m.topic), []).append(m.payload.decode())
                    if str(m.topic).endswith("/status") and m.payload == b"offline":
                        return
        except TimeoutError:
            pass


def test_replay_into_real_mosquitto_alarms_inside_seizure(mosquitto):
    async def main():
        started = asyncio.Event()
        got: dict[str, list[str]] = {}
        sub = asyncio.create_task(collect(mosquitto.port, started, got, stop_after=90))
        await started.wait()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "seizurewatch", "replay", str(DOG1 / "dog1_rec04.edf"),
            "--speed", "max", "--mqtt-url", mosquitto.url, "--patient", "bed7", "--jsonl",
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        await asyncio.wait_for(sub, 30)
        return got, out.decode()

    got, stdout = asyncio.run(main())
    alarms = [json.loads(x) for x in got.get("seizurewatch/bed7/alarm", [])]
    starts = [a for a in alarms if a["event"] == "start"]
    assert starts, f"no alarm start received; topics: {list(got)}"
    assert all(a["t"] >= 50 for a in starts), "alarm in the first 50 s (seizure-free)"
    assert 60 <= starts[0]["t"] <= 101, f"first alarm at {starts[0]['t']} s, seizure is 60-101 s"
    a = starts[0]
    for key in ("alarm_id", "t", "wall_time", "probability", "threshold", "seq"):
        assert key in a
    assert a["model"]["name"] == "dog1-hills-early" and len(a["model"]["sha256"]) == 64
    assert [x["seq"] for x in alarms] == sorted(x["seq"] for x in alarms)
    assert {x["alarm_id"] for x in alarms} == {a["alarm_id"]}
    assert alarms[-1]["event"] == "end"
    # status: online then offline (clean shutdown); retained state was published
    assert got["seizurewatch/bed7/status"][0] == "online" and got["seizurewatch/bed7/status"][-1] == "offline"
    states = [json.loads(s)["state"] for s in got["seizurewatch/bed7/state"]]
    assert "alarm" in states
    # the stdout JSON lines are the same events the broker carried
    printed = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    faults = [json.loads(x) for x in got.get("seizurewatch/bed7/fault", [])]
    assert [p["seq"] for p in printed if p["kind"] == "alarm"] == [x["seq"] for x in alarms]
    assert [p["seq"] for p in printed if p["kind"] == "fault"] == [x["seq"] for x in faults]


def test_retained_state_and_status_for_late_subscriber(mosquitto):
    r = subprocess.run([sys.executable, "-m", "seizurewatch", "replay", str(DOG1 / "dog1_rec04.edf"),
                        "--mqtt-url", mosquitto.url, "--patient", "bed8"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr

    async def late():
        got = {}
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
            await c.subscribe("seizurewatch/bed8/+", qos=1)
            # the broker sends what it retained on the subscribe, before anything published after it: once this
            # marker is back, every retained message (and no alarm) has arrived. 60 s: a hang guard only.
            await c.publish("seizurewatch/bed8/end-marker", b"", qos=1)
            async with asyncio.timeout(60):
                async for m in c.messages:
                    if str(m.topic) == "seizurewatch/bed8/end-marker":
                        break
                    got[str(m.topic)] = (m.payload.decode(), m.retain)
        return got

    got = asyncio.run(late())
    assert got["seizurewatch/bed8/status"] == ("offline", True)
    state, retained = got["seizurewatch/bed8/state"]
    assert retained and json.loads(state)["state"] in ("ok", "alarm")
    assert "seizurewatch/bed8/alarm" not in got  # alarms are not retained
