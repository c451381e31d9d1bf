"""Live LSL path: sample-in -> decision-out latency, and how many real-time LSL streams one box keeps up with.

Both run the daemon's own StreamPipeline over real pylsl inlets (``LslSource``) fed by real
outlets in a separate sender process, on the loopback-only liblsl config. Signal: real EEG
(Dog_1 + scalp8 tiled to 23 ch x 256 Hz, ``bench.common.synth_recording``); model: the
UNTRAINED seed ConvNet (23 ch, 30 s window) built for timing only.

1. Latency beyond the hop: one real-time stream; the sender stamps each chunk with the
   ``local_clock()`` time its last sample was due and pushes it then (an amplifier driver).
   For each window, latency = the moment the decision is taken (``AlarmDecision.update``)
   minus the LSL timestamp of the window's last sample (liblsl's ``local_clock`` and
   ``time.monotonic`` are the same CLOCK_MONOTONIC; the offset is measured and reported). It
   covers LSL transport, the reader thread and queue, preprocessing, the ring buffer, quality
   checks, inference and the decision. To get >= 1,000 decisions in bounded time this model
   copy hops every 1/32 s (8 samples, one chunk); the work per decision (one 30 s window
   through the model) is the same as with the production 1 s hop.
2. Capacity: N streams (23 ch x 256 Hz, 30 s window, 1 s hop) in one process, one shared model
   and inference thread. Each outlet sends 30 s of backlog when its inlet connects, then 0.25 s
   chunks in real time. A stream falls behind when the lag of its decisions (decision time
   minus its window's last-sample time) grows over the measurement or exceeds 2 s, or when it
   misses decisions. N = 150, then 100, then 50 until one keeps up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # python bench/bench_lsl.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    ROOT,
    SYNTH_RATE,
    TIMING_WINDOW_S,
    figure,
    log,
    machine_info,
    percentiles,
    synth_recording,
    timing_convnet,
    workdir,
)

LATENCY_HOP_SAMPLES = 8  # 1/32 s at 256 Hz
CAPACITY_CHUNK_S = 0.25
BEHIND_GROWTH_S = 0.5
BEHIND_LAG_S = 2.0
TARGET_P99_MS = 20.0
TARGET_STREAMS = 100


# ----- inputs ------------------------------------------------------------------------------
def timing_model(hop_s: float) -> Path:
    """The untrained seed ConvNet (23 ch x 256 Hz x 30 s) with the given hop. Timing only."""
    return timing_convnet(hop_s=hop_s)


def signal_block(seconds: float) -> tuple[tuple[str, ...], np.ndarray]:
    from seizurewatch.edfio import EdfRecording

    with EdfRecording(synth_recording(max(120.0, seconds))) as rec:
        return rec.header.channels, rec.read(0, int(seconds * SYNTH_RATE))


# ----- the sender process -----------------------------------------------------------------
def serve(n: int, prefix: str, chunk: int, backlog_s: float, seconds: float, stagger_s: float = 0.0) -> None:
    """N outlets; each waits for its inlet, sends ``backlog_s`` of history at once, then real time.

    ``stagger_s``: outlet i's windows complete ``i / n * stagger_s`` later than outlet 0's (its
    backlog is that much shorter and its chunk boundaries shifted to match), as unsynchronised
    patients' amplifiers would; 0: all in lockstep."""
    import heapq

    from seizurewatch.lslconfig import import_pylsl
    from seizurewatch.player import eeg_info

    pylsl = import_pylsl()
    labels, x = signal_block(60.0)
    data = np.ascontiguousarray(x.T, dtype=np.float32)  # (samples, channels), looped
    rate = SYNTH_RATE
    outlets = [pylsl.StreamOutlet(eeg_info(pylsl, f"{prefix}{i}", "EEG", f"{prefix}{i}", labels,
                                           ("uV",) * len(labels), rate), chunk_size=0, max_buffered=360)
               for i in range(n)]
    print("ready", flush=True)
    deadline = time.monotonic() + 120
    while not all(o.have_consumers() for o in outlets) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # every inlet has opened its feed
    start = pylsl.local_clock()
    back = int(backlog_s * rate)
    shift = [int(round(i / n * stagger_s * rate)) for i in range(n)]
    pos = [0] * n
    for i, o in enumerate(outlets):  # history: its last sample is "now"
        b = max(back - shift[i], 0)
        if b:
            o.push_chunk(data[:b], start)
            pos[i] = b
    total = int(seconds * rate)
    sent = [0] * n  # real-time samples after the backlog; sample j is due at start + j / rate
    ends = [(shift[i] % chunk) or chunk for i in range(n)]  # end of each outlet's next chunk
    heap = [(start + ends[i] / rate, i) for i in range(n)]
    heapq.heapify(heap)
    while heap:
        due, i = heapq.heappop(heap)  # outlet i's chunk's last sample exists now: stamp and send it
        delay = due - pylsl.local_clock()
        if delay > 0:
            time.sleep(delay)
        m = ends[i] - sent[i]
        a = pos[i] % (data.shape[0] - chunk)
        outlets[i].push_chunk(data[a : a + m], due)
        pos[i], sent[i] = a + m, ends[i]
        ends[i] += chunk
        if sent[i] < total:
            heapq.heappush(heap, (start + ends[i] / rate, i))
    time.sleep(0.5)


# ----- the receiving side (one trial per process) -----------------------------------------
async def _mqtt_path(delivered: list[tuple[float, float]]) -> tuple[Any, Any, Any]:
    """A sink that journals and publishes like the daemon, a real Mosquitto, and a subscriber that records
    when each event arrives. The decision emits an event every hop (threshold ~0, update every hop), so
    every window's decision travels the whole way to a subscriber."""
    import tempfile

    import aiomqtt

    from bench.common import Mosquitto
    from seizurewatch.alarms.mqtt import PatientLink, topics
    from seizurewatch.alarms.outbox import Outbox
    from seizurewatch.config import DecisionConfig, MqttConfig
    from seizurewatch.events import to_payload

    folder = Path(tempfile.mkdtemp(prefix="bench-lsl-mqtt-"))
    broker = Mosquitto(folder).start()
    url = f"mqtt://127.0.0.1:{broker.port}"
    outbox = await asyncio.to_thread(Outbox.open_sync, str(folder / "outbox.sqlite3"))
    link = PatientLink(MqttConfig(url=url), outbox, "p0")
    link_task = asyncio.create_task(link.run())
    ready = asyncio.Event()

    async def subscribe() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="bench-lsl-sub") as c:
            await c.subscribe("seizurewatch/p0/alarm", qos=1)
            ready.set()
            async for m in c.messages:
                delivered.append((time.monotonic(), float(json.loads(m.payload)["t"])))  # type: ignore[arg-type]

    sub_task = asyncio.create_task(subscribe())
    await asyncio.wait_for(ready.wait(), 10)
    await asyncio.wait_for(link.connected.wait(), 10)
    topic = topics("seizurewatch", "p0")["alarm"]

    async def sink(events: list[Any], ctx: Any) -> None:
        alarms = [(topic, to_payload(ev, ctx, seq=0, wall_time=time.time())) for ev in events if ev.kind == "alarm"]
        if alarms:
            await outbox.append_all("p0", alarms)
            link.wake()

    async def cleanup() -> None:
        link.close()
        await asyncio.wait_for(link_task, 30)
        await asyncio.sleep(0.5)
        sub_task.cancel()
        await asyncio.gather(sub_task, return_exceptions=True)
        await outbox.close()
        broker.stop()

    return sink, DecisionConfig(threshold=1e-6, k=1, n=1, update_every_s=1e-3), cleanup


async def _trial(n: int, hop_s: float, chunk: int, seconds: float, warm_s: float,
                 mqtt: bool = False) -> dict[str, Any]:
    from seizurewatch.config import DecisionConfig, SourceConfig, StreamConfig
    from seizurewatch.inference import Predictor, configure_compute
    from seizurewatch.lslconfig import import_pylsl
    from seizurewatch.modelfile import load_model
    from seizurewatch.pipeline import StreamPipeline
    from seizurewatch.sources.lsl import LslSource

    pylsl = import_pylsl()
    clock_offset = float(np.median([pylsl.local_clock() - time.monotonic() for _ in range(50)]))
    configure_compute(1)
    model = load_model(timing_model(hop_s))
    predictor = Predictor(model)
    prefix = f"bench-lsl-{os.getpid()}-"
    backlog = TIMING_WINDOW_S if hop_s >= 1.0 else TIMING_WINDOW_S - hop_s
    sender = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_lsl", "--serve", str(n), "--prefix", prefix, "--chunk", str(chunk),
         "--backlog", str(backlog), "--seconds", str(seconds + warm_s + 2), "--stagger", str(hop_s if n > 1 else 0)],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True)
    try:
        assert sender.stdout is not None
        await asyncio.to_thread(sender.stdout.readline)  # outlets exist

        async def sink(events: list[Any], ctx: Any) -> None:
            return None

        delivered: list[tuple[float, float]] = []  # (received at the subscriber, stream time t)
        decision_cfg = DecisionConfig()
        if mqtt:  # the daemon's real delivery path: journal (fsync) -> aiomqtt link -> Mosquitto -> subscriber
            sink, decision_cfg, mqtt_cleanup = await _mqtt_path(delivered)

        pipes: list[StreamPipeline] = []
        lat: list[list[tuple[float, float, float, float]]] = [[] for _ in range(n)]  # (decided, t_end, lag, in-process)
        for i in range(n):
            src = LslSource(SourceConfig(kind="lsl", source_id=f"{prefix}{i}", resolve_timeout_s=30,
                                         lost_after_s=5.0, max_gap_s=0.5))
            pipe = StreamPipeline(StreamConfig(patient=f"p{i}", source=SourceConfig(kind="lsl", source_id="x")),
                                  None, src, predictor, decision_cfg, sink, line_freq=60.0)
            pipes.append(pipe)
        loop = asyncio.get_running_loop()
        from concurrent.futures import ThreadPoolExecutor

        loop.set_default_executor(ThreadPoolExecutor(max_workers=min(64, n + 4)))
        await asyncio.gather(*(p.open() for p in pipes))

        def hook(i: int, pipe: StreamPipeline) -> None:
            orig = pipe.decision.update
            src = pipe.source
            rate = src.rate
            arrived: dict[float, float] = {}  # window end -> when its last block reached the inlet's thread
            assert pipe.front is not None
            ring = pipe.front.ring
            push = ring.push

            def ring_push(x: np.ndarray, wall_received: float = 0.0) -> list:
                windows = push(x, wall_received)
                for w in windows:
                    arrived[w.t_end] = w.wall_received
                return windows

            ring.push = ring_push  # type: ignore[method-assign,assignment]

            def update(t: float, p: float, early: float | None = None):  # the decision for the window ending at t
                now = time.monotonic()
                assert src.tracker is not None and src.tracker.origin is not None  # type: ignore[attr-defined]
                last_sample = src.tracker.origin + t - 1.0 / rate - clock_offset  # type: ignore[attr-defined]
                lat[i].append((now, t, now - last_sample, now - arrived.pop(t, now)))
                return orig(t, p, early)

            pipe.decision.update = update  # type: ignore[method-assign]

        for i, p in enumerate(pipes):
            hook(i, p)
        tasks = [asyncio.create_task(p.run()) for p in pipes]
        t_open = time.monotonic()
        await asyncio.sleep(warm_s)
        cpu0, wall0 = time.process_time(), time.monotonic()  # this process: reader threads, loop, inference
        await asyncio.sleep(seconds)
        cpu_s, wall_s = time.process_time() - cpu0, time.monotonic() - wall0
        for p in pipes:
            p.stop()
        failed = [r for r in await asyncio.gather(*tasks, return_exceptions=True)
                  if isinstance(r, Exception) and not isinstance(r, asyncio.CancelledError)]
        if failed:  # a pipeline that died says why (it was a silent "KeyError: 'p50'" of no decisions)
            raise failed[0]
        if mqtt:
            await mqtt_cleanup()
        predictor.close()
    finally:
        sender.kill()
        sender.wait()
    t_measure = t_open + warm_s
    per_stream = []
    lags: list[float] = []
    inproc: list[float] = []
    for rows in lat:
        rows_m = [r for r in rows if r[0] >= t_measure]
        lags.extend(r[2] for r in rows_m)
        inproc.extend(r[3] for r in rows_m)
        if len(rows_m) >= 4:
            half = len(rows_m) // 2
            growth = float(np.median([r[2] for r in rows_m[half:]]) - np.median([r[2] for r in rows_m[:half]]))
        else:
            growth = float("inf")
        per_stream.append({"decisions": len(rows_m), "growth_s": growth,
                           "max_lag_s": max((r[2] for r in rows_m), default=float("inf"))})
    expected = seconds / hop_s
    mqtt_lat: list[float] = []
    if mqtt and pipes:
        src0 = pipes[0].source
        origin = src0.tracker.origin  # type: ignore[attr-defined]
        mqtt_lat = [recv - (origin + t - 1.0 / src0.rate - clock_offset) for recv, t in delivered
                    if recv >= t_measure]
    return {
        "mqtt_delivered_s": percentiles(mqtt_lat, (50, 90, 99, 100)) if mqtt_lat else {},
        "mqtt_messages": len(mqtt_lat),
        "streams": n,
        "hop_s": hop_s,
        "measure_s": seconds,
        "clock_offset_s": clock_offset,
        "decisions": len(lags),
        "lag_s": percentiles(lags, (50, 90, 99, 100)) if lags else {},
        "arrival_to_decision_s": percentiles(inproc, (50, 90, 99, 100)) if inproc else {},
        "load_average": list(os.getloadavg()),
        "cpu_ms_per_stream_second": 1e3 * cpu_s / wall_s / n,
        "min_decisions_per_stream": min(s["decisions"] for s in per_stream),
        "expected_decisions_per_stream": expected,
        "lag_growth_max_s": max(s["growth_s"] for s in per_stream),
        "lag_max_s": max(s["max_lag_s"] for s in per_stream),
        "ok": all(s["decisions"] >= 0.9 * expected - 1 and s["growth_s"] <= BEHIND_GROWTH_S
                  and s["max_lag_s"] <= BEHIND_LAG_S for s in per_stream),
    }


def run_trial(n: int, hop_s: float, chunk: int, seconds: float, warm_s: float, mqtt: bool = False) -> dict[str, Any]:
    env = dict(os.environ, BENCH_WORKDIR=str(workdir()), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "bench.bench_lsl", "--trial", str(n), "--hop", str(hop_s), "--chunk", str(chunk),
           "--seconds", str(seconds), "--warm", str(warm_s)] + (["--mqtt"] if mqtt else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=400)
    if proc.returncode != 0:
        raise RuntimeError(f"LSL trial ({n} streams) failed: {proc.stderr.strip()[-600:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool) -> dict[str, Any]:
    t0 = time.monotonic()
    hop = LATENCY_HOP_SAMPLES / SYNTH_RATE
    hops = 64 if quick else 1040
    log(f"lsl: latency, 1 real-time stream, {hops} decisions")
    timing_model(1.0), timing_model(hop), signal_block(60.0)  # build inputs before timing anything
    latency = run_trial(1, hop, LATENCY_HOP_SAMPLES, hops * hop, warm_s=1.0)
    log(f"lsl: latency to MQTT delivery, 1 real-time stream, {hops} events")
    delivery = run_trial(1, hop, LATENCY_HOP_SAMPLES, hops * hop, warm_s=1.0, mqtt=True)
    capacity: list[dict[str, Any]] = []
    best = 0

    def trial(n: int) -> bool:
        log(f"lsl: capacity, {n} real-time streams")
        capacity.append(run_trial(n, 1.0, int(CAPACITY_CHUNK_S * SYNTH_RATE), 4.0 if quick else 8.0,
                                  warm_s=2.5 if quick else 5.0))
        return bool(capacity[-1]["ok"])

    if quick:
        best = 30 if trial(30) else 0
    else:  # highest first: on a quiet box one trial settles it; else step down to the target
        for n in (150, 100, 50):
            if trial(n):
                best = n
                break
    steps = sorted(c["streams"] for c in capacity)
    lag = latency["lag_s"]
    busy = f"; load average at the end of the trial {latency['load_average'][0]:.1f} on {os.cpu_count()} cores"
    in_proc = latency["arrival_to_decision_s"]
    figures = {
        "lsl.latency_p50_ms": figure(lag["p50"] * 1e3, "ms", (
            f"one real-time LSL stream 23 ch x 256 Hz, {latency['decisions']} decisions; LSL timestamp of a "
            "window's last sample (stamped when due, by the sender process) -> decision taken; untrained seed "
            "ConvNet (timing only), 30 s window, hop 1/32 s so that >= 1,000 decisions fit; loopback" + busy),
                                     target_ms=TARGET_P99_MS),
        "lsl.latency_p99_ms": figure(lag["p99"] * 1e3, "ms", "as lsl.latency_p50_ms, 99th percentile",
                                     target_ms=TARGET_P99_MS, meets_target=bool(lag["p99"] * 1e3 <= TARGET_P99_MS)),
        "lsl.mqtt_delivered_p50_ms": figure(delivery["mqtt_delivered_s"].get("p50", float("nan")) * 1e3, "ms", (
            f"as lsl.latency_p50_ms, but to the moment a separate MQTT subscriber received the event "
            f"({delivery['mqtt_messages']} events, one per hop): journal append with fsync -> aiomqtt QoS 1 -> "
            "Mosquitto on loopback -> subscriber")),
        "lsl.mqtt_delivered_p99_ms": figure(delivery["mqtt_delivered_s"].get("p99", float("nan")) * 1e3, "ms",
                                            "as lsl.mqtt_delivered_p50_ms, 99th percentile"),
        "lsl.arrival_to_decision_p99_ms": figure(in_proc["p99"] * 1e3, "ms", (
            "as lsl.latency_p99_ms, from the moment the reader thread pulled the window's last chunk (LSL "
            "transport and the sender's scheduling excluded)")),
        "lsl.cpu_ms_per_stream_second": figure(capacity[0]["cpu_ms_per_stream_second"] if capacity else 0.0,
                                               "ms CPU per stream per s", (
            "CPU time of the receiving process (reader threads, event loop, inference thread) per real-time "
            f"stream per second of signal, in the {capacity[0]['streams'] if capacity else 0}-stream trial; "
            "2 cores / this = streams a dedicated 2-core box could carry (a projection, not a measurement)")),
        "lsl.realtime_streams": figure(best, "streams", (
            "N LSL streams (23 ch x 256 Hz, 0.25 s chunks after 30 s backlog, window phases spread over the hop "
            "as for unsynchronised patients) from a sender process on the same "
            "box into one process running N StreamPipelines with LslSource, untrained seed ConvNet (timing only; "
            "30 s window, 1 s hop), one shared model and inference thread, torch threads 1; ok when every stream "
            f"gets >= 90% of its decisions, its lag grows < {BEHIND_GROWTH_S} s and stays < {BEHIND_LAG_S} s; "
            f"largest passing N of {steps}" + (" (quick: one step only)" if quick else "")
            + (f"; load average {capacity[-1]['load_average'][0]:.1f} on {os.cpu_count()} cores" if capacity else "")),
                                       target=TARGET_STREAMS, meets_target=bool(best >= TARGET_STREAMS),
                                       at_least=True),
    }
    return {"figures": figures, "latency": latency, "delivery": delivery, "capacity": capacity,
            "machine": machine_info(),
            "seconds": round(time.monotonic() - t0, 1), "quick": quick}


def main() -> None:
    ap = argparse.ArgumentParser(description="LSL benchmark (JSON on stdout)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default="bench-lsl-", help=argparse.SUPPRESS)
    ap.add_argument("--trial", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--hop", type=float, default=1.0, help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=64, help=argparse.SUPPRESS)
    ap.add_argument("--backlog", type=float, default=TIMING_WINDOW_S, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    ap.add_argument("--warm", type=float, default=2.0, help=argparse.SUPPRESS)
    ap.add_argument("--stagger", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--mqtt", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.prefix, args.chunk, args.backlog, args.seconds, args.stagger)
        return
    import logging

    logging.basicConfig(level=logging.ERROR)
    if args.trial:
        print(json.dumps(asyncio.run(_trial(args.trial, args.hop, args.chunk, args.seconds, args.warm, args.mqtt))))
        return
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
