"""Does the nurse-station page keep up with a ward? 100 beds publish their retained state (as the daemon
does, QoS 1, every ``mqtt.state_every_s`` = 2 s; 10 of them in alarm with start/update events) into a real
Mosquitto on loopback; ``seizurewatch station`` (its own process) subscribes and pushes the ward to one
browser-like Server-Sent-Events reader in this process.

Figures per publishing rate (the real-time 0.5 Hz per bed, then 5x and 20x that for headroom), each run
for a fixed time (bounded loops): the lag from a state's publish to the first ward snapshot that carries
it (p50 / p95 / max), the station's CPU share of one core, snapshots received per second, snapshot size.

``python -m bench.bench_station [--quick]`` prints the JSON; the suite runner imports ``run``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiomqtt  # noqa: E402

from bench.common import ROOT, Mosquitto, figure, log, percentiles, workdir  # noqa: E402

BEDS = 100
IN_ALARM = 10
REALTIME_HZ = 0.5  # the daemon republishes each bed's state every 2 s (mqtt.state_every_s)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _state(bed: int, now: float) -> bytes:
    alarm = bed < IN_ALARM
    return json.dumps({"state": "alarm" if alarm else "ok", "patient": f"bed{bed:03d}", "t": now % 86400,
                       "wall_time": now, "probability": 0.9 if alarm else 0.1 + (bed % 7) / 100, "faults": [],
                       "alarm_id": f"{bed:016x}" if alarm else None, "acks": []}).encode()


def _alarm_start(bed: int) -> bytes:
    """A schema-valid alarm start (the station checks every message as ``subscribe`` does)."""
    from seizurewatch.alarms.subscriber import schema_error
    from seizurewatch.events import Context, Event, to_payload

    ev = Event("alarm", "start", f"{bed:016x}", 0.0, 0.9, 0.44, started_t=0.0, peak_probability=0.9)
    payload = {**to_payload(ev, Context(f"bed{bed:03d}", "bench", "0" * 64, "youden"), seq=1, wall_time=time.time()),
               "epoch": "0123456789abcdef.1"}
    why = schema_error("alarm", payload)
    if why is not None:
        raise RuntimeError(f"bench alarm payload is not valid: {why}")
    return json.dumps(payload).encode()


async def _sse(port: int, stop: asyncio.Event, seen: dict[tuple[str, float], float], sizes: list[int]) -> int:
    """Read /events (chunked) until ``stop``; note when each (bed, state wall_time) first appears."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass  # response headers
    snapshots = 0
    try:
        while not stop.is_set():
            size_line = await asyncio.wait_for(reader.readline(), 5)
            n = int(size_line.strip() or b"0", 16)
            chunk = await reader.readexactly(n + 2)
            now = time.time()
            for part in chunk.decode().split("\n\n"):
                if not part.startswith(("data: ", "retry")):
                    continue
                data = part.split("data: ", 1)[1]
                sizes.append(len(data))
                snapshots += 1
                for bed in json.loads(data)["beds"]:
                    key = (bed["patient"], bed["last_seen"])
                    seen.setdefault(key, now)
    finally:
        writer.close()
    return snapshots


async def _ward(broker: Mosquitto, port: int, hz: float, seconds: float, pid: int) -> dict[str, Any]:
    url = ("127.0.0.1", broker.port)
    clients = [aiomqtt.Client(*url, identifier=f"bench-bed{b:03d}") for b in range(BEDS)]
    for c in clients:
        await c.__aenter__()
    published: list[tuple[str, float]] = []
    seen: dict[tuple[str, float], float] = {}
    sizes: list[int] = []
    stop = asyncio.Event()
    reader = asyncio.create_task(_sse(port, stop, seen, sizes))
    try:
        for b in range(IN_ALARM):  # the beds in alarm announce it once, as a daemon would
            await clients[b].publish(f"seizurewatch/bed{b:03d}/alarm", _alarm_start(b), qos=1)
        period = 1.0 / hz
        cpu0, t0 = _cpu_s(pid), time.monotonic()
        offsets = [period * b / BEDS for b in range(BEDS)]  # beds spread over the period, as real ones drift
        end = t0 + seconds
        k = 0
        while True:  # bounded: ``seconds`` of publishing
            for b in range(BEDS):
                due = t0 + k * period + offsets[b]
                if due >= end:
                    break
                await asyncio.sleep(max(due - time.monotonic(), 0.0))
                now = time.time()
                await clients[b].publish(f"seizurewatch/bed{b:03d}/state", _state(b, now), qos=1, retain=True)
                published.append((f"bed{b:03d}", now))
            else:
                k += 1
                continue
            break
        await asyncio.sleep(1.5)  # the last states reach the page
        wall = time.monotonic() - t0
        cpu = _cpu_s(pid) - cpu0
        stop.set()
        snapshots = await reader
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)
    lags = []
    missed = 0
    for bed, when in published:
        got = seen.get((bed, when))
        if got is None:
            missed += 1  # overwritten by the next state before a push: the page shows the newer one
        else:
            lags.append(1000.0 * (got - when))
    return {"published": len(published), "lags_ms": lags, "missed": missed, "cpu_share": cpu / wall,
            "snapshots_per_s": snapshots / wall, "wall_s": wall}


def _full_ward_bytes() -> tuple[int, int]:
    """Snapshot sizes (without, with traces) of 100 beds after 10 minutes of real-time state."""
    from seizurewatch.station.ward import Ward

    w, now = Ward(), 10_000.0
    for k in range(int(600 * REALTIME_HZ)):
        for b in range(BEDS):
            t = now - 600 + k / REALTIME_HZ
            w.on_state(f"bed{b:03d}", json.loads(_state(b, t)), t)
    return len(json.dumps(w.snapshot(now, history=False))), len(json.dumps(w.snapshot(now)))


def run(quick: bool) -> dict[str, Any]:
    seconds = 3.0 if quick else 12.0
    plain, traced = _full_ward_bytes()
    sizes = (f"{BEDS} beds after 10 minutes of real-time state ({int(600 * REALTIME_HZ)} states each); "
             "JSON of one push")
    figures: dict[str, Any] = {
        "ward_push_bytes": figure(plain, "bytes", sizes + ", without the traces (every push, <= 4/s)"),
        "ward_push_with_traces_bytes": figure(traced, "bytes", sizes + ", with the 60-point traces "
                                              "(every 5 s, and to a browser that connects)"),
    }
    folder = workdir() / "station"
    folder.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(folder).start()
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "seizurewatch", "--log-level", "ERROR", "station", "--listen",
                             f"127.0.0.1:{port}", "--mqtt-url", f"mqtt://127.0.0.1:{broker.port}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        for factor in (1, 5, 20):
            hz = REALTIME_HZ * factor
            log(f"station: {BEDS} beds at {hz:g} Hz each for {seconds:g} s")
            r = asyncio.run(_ward(broker, port, hz, seconds, proc.pid))
            setup = (f"{BEDS} beds ({IN_ALARM} in alarm) publish retained state QoS 1 at {hz:g} Hz each "
                     f"({BEDS * hz:g} msg/s, {'real time' if factor == 1 else f'{factor}x real time'}) into Mosquitto "
                     f"on loopback for {seconds:g} s; seizurewatch station in its own process pushes the ward by SSE "
                     f"every 0.25 s at most to one reader")
            pc = percentiles(r["lags_ms"], (50, 95, 100)) if r["lags_ms"] else {"p50": -1, "p95": -1, "p100": -1}
            key = f"x{factor}"
            figures[f"{key}.lag_p50"] = figure(pc["p50"], "ms", setup + "; publish -> first snapshot carrying it")
            figures[f"{key}.lag_p95"] = figure(pc["p95"], "ms", setup)
            figures[f"{key}.lag_max"] = figure(pc["p100"], "ms", setup)
            figures[f"{key}.station_cpu"] = figure(100 * r["cpu_share"], "% of one core", setup)
            figures[f"{key}.snapshots_per_s"] = figure(r["snapshots_per_s"], "1/s", setup)
            figures[f"{key}.superseded"] = figure(r["missed"] / max(r["published"], 1), "fraction", setup +
                                                  "; states replaced by a newer one before a push (conflation)")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        broker.stop()
    return {"figures": figures}


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=1))
