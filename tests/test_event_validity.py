"""Every message the daemon publishes is valid by construction: the daemon's own machinery (the pipeline,
the alarm decision, the fault tracker, acks, escalations) is driven through arbitrary sequences of what a
bedside can do (stream loss and return, gaps, flat or non-finite signal, a wrong rate, acks at any moment,
escalations, refractory periods at any length, SIGTERM at any moment) on the shipped recording and model,
and every event and retained state it makes is checked against docs/alarm.schema.json."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from alarm_support import validate
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seizurewatch.alarmdesk import escalate_event
from seizurewatch.config import Config, DecisionConfig
from seizurewatch.daemon import Daemon, DaemonOptions
from seizurewatch.replay import ReplayOptions, replay_config
from seizurewatch.types import Block, Gap, RateStatus, StreamStatus

REC04 = ROOT / "seizurewatch" / "data" / "dog1_rec04.edf"  # 118 s, a seizure at 60-101 s
OPS = ("none", "none", "none", "gap", "lost", "flat", "nan", "rate_bad", "rate_ok", "ack", "escalate", "skip")


class ScriptedBedside:
    """The recording as a bedside delivers it, with ``ops[i]`` happening after block ``i``: the real source's
    blocks, and the loss/return statuses an LSL inlet yields (a loss stamped a little after the last sample,
    as the inlet stamps it), gaps, flat and NaN blocks, rate faults; acks and escalations from outside."""

    def __init__(self, real: Any, daemon: Daemon, ops: list[str], eps: float, end: str) -> None:
        self.real, self.daemon, self.ops, self.eps, self.end = real, daemon, ops, eps, end
        self.channels, self.rate = real.channels, real.rate
        self.annotations, self.description = real.annotations, "scripted bedside"

    async def open(self) -> None:
        await self.real.open()
        self.channels, self.rate, self.annotations = self.real.channels, self.real.rate, self.real.annotations

    async def close(self) -> None:
        await self.real.close()

    async def items(self) -> AsyncIterator[Any]:
        pipe = self.daemon.pipelines[0]
        i, lost, last_end = 0, False, 0.0
        async for block in self.real.items():
            if i >= len(self.ops):
                break
            op = self.ops[i]
            i += 1
            if lost:  # the outlet comes back with this block
                lost = False
                yield StreamStatus(True, block.t0, "stream back")
            if op == "skip":
                continue  # samples that never arrived (the next block says how long: a short gap)
            if op == "flat":
                block = Block(np.zeros_like(block.data), block.rate, block.t0, block.channels)
            elif op == "nan":
                block = Block(np.full_like(block.data, np.nan), block.rate, block.t0, block.channels)
            yield block
            last_end = block.t0 + block.n_samples / block.rate
            if op == "gap":
                yield Gap(last_end, 1.5)
            elif op == "lost":
                lost = True
                yield StreamStatus(False, last_end + self.eps, "no samples for 2.0 s")
            elif op in ("rate_bad", "rate_ok"):
                yield RateStatus(op == "rate_ok", last_end, self.rate, self.rate * (1.0 if op == "rate_ok" else 2.0))
            elif op == "ack":
                for rid in list(self.daemon.acks.issued[pipe.patient])[-2:]:
                    body = {"alarm_id": rid, "action": "false_alarm", "by": f"nurse {i}"}
                    await self.daemon.on_ack(pipe, f"seizurewatch/{pipe.patient}/ack", json.dumps(body).encode())
            elif op == "escalate":
                for rec in list(self.daemon.acks.issued[pipe.patient].values()):
                    if rec.open and not rec.acks:
                        await self.daemon._sink([escalate_event(pipe, rec, i)], pipe.context)
        if self.end == "sigterm":
            if lost:  # the inlet said so before the daemon was stopped
                for _ in range(3000):
                    if "stream_lost" in pipe.faults.active:
                        break
                    await asyncio.sleep(0.01)
            self.daemon.stop()
            await asyncio.sleep(3600)  # the stop ends this generator: SIGTERM arrives while the bedside streams


def run_script(ops: list[str], eps: float, end: str, decision: DecisionConfig, speed: float | str = 1000,
               chunk_s: float = 1.0) -> tuple[list[dict], list[dict]]:
    base = replay_config(str(REC04), ReplayOptions(speed=speed, patient="bed1"))
    stream = replace(base.streams[0], source=replace(base.streams[0].source, chunk_s=chunk_s))  # a block a second
    cfg = Config(streams=(stream,), model=base.model, decision=decision, outbox=base.outbox)
    daemon = Daemon(cfg, DaemonOptions(publish=False))
    events: list[dict[str, Any]] = []
    states: list[dict[str, Any]] = []
    daemon.payload_sinks.append(events.append)

    async def main() -> None:
        await daemon.prepare()
        pipe = daemon.pipelines[0]
        real = pipe.source
        pipe.source = ScriptedBedside(real, daemon, ops, eps, end)
        pipe.on_state.append(lambda _s, info: states.append({**info, "patient": "bed1"}))
        pipe.on_state.append(lambda _s, _i: states.append(daemon.state_info(pipe) | {"patient": "bed1"}))
        await asyncio.wait_for(daemon.run(), 300)
        states.append(daemon.state_info(pipe) | {"patient": "bed1"})

    asyncio.run(main())
    return events, states


def check_messages(events: list[dict[str, Any]], states: list[dict[str, Any]]) -> None:
    started: dict[str, float] = {}
    for p in events:
        validate(p)
        assert p["t"] >= p["started_t"] and p["duration_s"] >= 0, p
        if p["event"] == "start":
            started[p["alarm_id"]] = p["started_t"]
        else:
            assert started.get(p["alarm_id"], p["started_t"]) == p["started_t"], p
    opened = {p["alarm_id"] for p in events if p["event"] == "start"}
    ended = {p["alarm_id"] for p in events if p["event"] == "end"}
    assert opened == ended, "every alarm and fault started is ended when the stream ends or the daemon stops"
    for s in states:
        validate(s)
        if {"stream_lost", "model_error"} & set(s["faults"]):  # never the last number shown as if live
            assert s["probability"] is None and s["probability_unavailable"], s
        assert (s["probability"] is None) or "probability_unavailable" not in s, s


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=60),
       eps=st.sampled_from([0.0, 5e-5, 1e-3, 0.25]),
       end=st.sampled_from(["sigterm", "stream_end"]),
       threshold=st.floats(0.05, 0.95), k=st.integers(1, 3), off_hops=st.integers(1, 3),
       refractory_s=st.sampled_from([0.0, 2.0, 30.0]))
def test_every_message_of_an_arbitrary_night_is_valid(ops, eps, end, threshold, k, off_hops, refractory_s):
    decision = DecisionConfig(threshold=threshold, k=k, n=k + 1, off_hops=off_hops, refractory_s=refractory_s,
                              update_every_s=1.0, escalate_after_s=0.0)
    events, states = run_script(ops, eps, end, decision)
    check_messages(events, states)


def test_a_loss_stamped_after_the_last_window_ends_no_earlier_than_it_started():
    """The night of the report: playback ends, the inlet stamps the loss 5e-5 s after the last sample, SIGTERM
    ends the fault: the end must not be before the start (it was: duration_s -0.0001, thrown away as malformed)."""
    ops = ["none"] * 20 + ["lost"]
    events, states = run_script(ops, 5e-5, "sigterm", DecisionConfig(escalate_after_s=0.0))
    lost = [p for p in events if p.get("fault_type") == "stream_lost"]
    assert [p["event"] for p in lost] == ["start", "end"]
    assert lost[1]["t"] >= lost[1]["started_t"] == lost[0]["t"] and lost[1]["duration_s"] >= 0
    check_messages(events, states)


@pytest.mark.slow
def test_an_invalid_event_is_the_daemons_bug_not_a_message_the_broker_lost(mosquitto, tmp_path):
    """The report's end event (duration_s -0.0001) delivered between valid ones: the subscriber says "invalid
    message from the daemon" and reports no missed events (its seq arrived)."""
    from test_subscribe import finish, lifecycle, publish, start

    payloads = lifecycle()
    bad = {**payloads[2], "t": 72.0, "started_t": 72.0001, "duration_s": -0.0001}
    sent = [payloads[0], payloads[1], bad, payloads[3]]
    proc = start(mosquitto.port, tmp_path / "out", "--mqtt-url", mosquitto.url, "--patient", "bed3", "--jsonl",
                 "--count", "3")
    asyncio.run(publish(mosquitto.port, sent, resend=False))
    got = [json.loads(x) for x in finish(proc, tmp_path / "out").splitlines() if x.startswith("{")]
    notices = [g for g in got if g.get("kind") == "notice"]
    assert [(n["notice"], n["seq"]) for n in notices] == [("invalid", 3)]
    assert "duration_s" in notices[0]["reason"]
    assert [g["seq"] for g in got if g.get("kind") in ("alarm", "fault")] == [1, 2, 4]


def test_the_station_counts_an_invalid_event_apart_from_missed_ones():
    from test_subscribe import lifecycle

    from seizurewatch.config import MqttConfig
    from seizurewatch.station.server import Station, StationOptions

    station = Station(MqttConfig(), StationOptions())
    payloads = lifecycle()
    bad = {**payloads[1], "duration_s": -1.0}

    async def feed() -> None:
        for p in (payloads[0], bad, payloads[2], payloads[3]):
            await station.handle(f"seizurewatch/bed3/{p['kind']}", json.dumps(p).encode())

    asyncio.run(feed())
    row = station.ward.snapshot(2e9)["beds"][0]
    assert (row["invalid"], row["missed"]) == (1, 0)


def test_events_and_their_times_do_not_depend_on_how_the_signal_is_chunked():
    """``replay --speed max`` decides 30 s at a time: its events are the same, at the same times and in the same
    order, as one block a second (they came out of time order: all quality events of a block before its decisions)."""
    def night(speed: float | str, chunk_s: float) -> list[tuple]:
        events, _ = run_script(["none"] * 200, 0.0, "stream_end", DecisionConfig(escalate_after_s=0.0), speed, chunk_s)
        return [(p["kind"], p["event"], p.get("fault_type"), tuple(p.get("channels", ())), p["t"]) for p in events]

    fast = night("max", 1.0)
    assert fast == night(1000, 1.0)
    assert [e[-1] for e in fast] == sorted(e[-1] for e in fast)
    assert [e[-1] for e in fast if e[:2] == ("alarm", "start")] and all(
        60.0 <= e[-1] <= 101.0 for e in fast if e[:2] == ("alarm", "start"))  # inside rec04's seizure
