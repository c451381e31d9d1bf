"""Durable outbox: journal write cost per event (SQLite WAL, fsync per event) and the rate at
which a backlog queued during a broker outage drains to a real Mosquitto on loopback.

``python -m bench.bench_outbox [--quick]`` prints the JSON; the suite runner imports ``run``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Mosquitto, figure, log, percentiles, rss_mb, workdir  # noqa: E402
from seizurewatch.alarms.mqtt import PatientLink, topics  # noqa: E402
from seizurewatch.alarms.outbox import Outbox  # noqa: E402
from seizurewatch.config import MqttConfig  # noqa: E402

PAYLOAD = {"schema": "seizurewatch/event/1", "kind": "alarm", "event": "update", "alarm_id": "0123456789abcdef",
           "patient": "bench", "t": 0.0, "wall_time": 0.0, "probability": 0.91234, "threshold": 0.44312,
           "threshold_policy": "youden", "model": {"name": "dog1-convnet", "weights_sha256": "0" * 64},
           "started_t": 0.0,
           "duration_s": 5.0, "peak_probability": 0.97}


async def _write_cost(path: Path, n: int) -> list[float]:
    """Seconds per ``Outbox.append`` (the daemon's call: executor hop + INSERT + fsync'd commit)."""
    box = Outbox.open_sync(str(path))
    topic = topics("seizurewatch", "bench")["alarm"]
    out = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            await box.append("bench", topic, dict(PAYLOAD, t=float(i)))
            out.append(time.perf_counter() - t0)
    finally:
        await box.close()
    return out


async def _drain(folder: Path, broker: Mosquitto, n: int, inflight: int) -> dict[str, float]:
    """Queue ``n`` events while the broker is down, bring it back, time the drain to an empty outbox."""
    path = folder / f"drain-{inflight}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    box = Outbox.open_sync(str(path))
    cfg = MqttConfig(url=f"mqtt://127.0.0.1:{broker.port}", max_inflight=inflight, drain_timeout_s=60)
    link = PatientLink(cfg, box, "bench")
    topic = topics(cfg.topic_prefix, "bench")["alarm"]
    for i in range(0, n, 1000):
        box.append_many_sync("bench", topic, [dict(PAYLOAD, t=float(j)) for j in range(i, min(i + 1000, n))])
    rss0 = rss_mb()
    runner = asyncio.create_task(link.run())
    await asyncio.sleep(0.2)  # the link fails to connect: the outage
    broker.start()
    link.wake()
    await asyncio.wait_for(link.connected.wait(), 60)
    t0 = time.perf_counter()
    while await box.depth("bench"):
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - t0
    rss1 = rss_mb()
    link.close()
    await asyncio.wait_for(runner, 30)
    await box.close()
    broker.stop()
    return {"seconds": seconds, "rate": n / seconds, "rss_growth_mb": rss1 - rss0}


def run(quick: bool) -> dict[str, Any]:
    folder = workdir() / "outbox"
    folder.mkdir(parents=True, exist_ok=True)
    n_write = 200 if quick else 2000
    n_drain = 2000 if quick else 6000
    log(f"outbox: journal write cost over {n_write} appends")
    costs = asyncio.run(_write_cost(folder / "write.sqlite3", n_write))
    pct = percentiles([c * 1e6 for c in costs])
    figures: dict[str, Any] = {
        "journal_append_us": figure(
            sum(costs) / len(costs) * 1e6, "us/event",
            f"mean of {n_write} Outbox.append calls (executor thread, INSERT + sequence row, WAL, synchronous=FULL: "
            f"one fsync per event) into a fresh journal in {folder}", p50=round(pct["p50"], 1),
            p99=round(pct["p99"], 1)),
    }
    broker = Mosquitto(folder)
    try:
        for inflight in (1, 20, 100):
            log(f"outbox: draining a {n_drain}-event backlog, max_inflight={inflight}")
            d = asyncio.run(_drain(folder, broker, n_drain, inflight))
            figures[f"backlog_drain_inflight{inflight}"] = figure(
                d["rate"], "events/s",
                f"{n_drain} events (~{len(json.dumps(PAYLOAD))} B JSON) journaled while Mosquitto 127.0.0.1 "
                "(set_tcp_nodelay true) was "
                f"down, then drained by one PatientLink (QoS 1, marked delivered per window after PUBACK, "
                f"max_inflight={inflight}) from connect to an empty outbox", seconds=round(d["seconds"], 3),
                rss_growth_mb=round(d["rss_growth_mb"], 1))
    finally:
        broker.stop()
    return {"figures": figures}


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv[1:]), indent=2))
