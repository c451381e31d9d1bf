"""The demo: replay a recording the model never saw through the daemon into a broker,
subscribe like a nurse station would, print the alarms as they arrive, then a summary."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from seizurewatch.alarms.embedded import embedded_broker
from seizurewatch.alarms.subscriber import format_event, subscribe
from seizurewatch.replay import ReplayStart, replay_async, replay_config
from seizurewatch.research.labels import is_seizure
from seizurewatch.resources import demo_recording_path


@dataclass
class DemoResult:
    seizures: list[tuple[float, float]]
    alarms: list[dict[str, Any]] = field(default_factory=list)  # alarm start payloads
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def detected(self) -> list[tuple[float, float, float]]:
        """(onset, end, first alarm t) for each seizure an alarm start fell into."""
        out = []
        for onset, end in self.seizures:
            hits = [a["t"] for a in self.alarms if onset <= a["t"] <= end + 10.0]
            if hits:
                out.append((onset, end, min(hits)))
        return out

    @property
    def false_alarms(self) -> int:
        return sum(1 for a in self.alarms if not any(on <= a["t"] <= end + 10.0 for on, end in self.seizures))

    def summary(self) -> str:
        parts = []
        for onset, end in self.seizures:
            hit = [d for d in self.detected if d[0] == onset]
            if hit:
                parts.append(f"seizure annotated at {onset:.0f} s (until {end:.0f} s), alarm raised at "
                             f"{hit[0][2]:.0f} s (+{hit[0][2] - onset:.0f} s)")
            else:
                parts.append(f"seizure annotated at {onset:.0f} s (until {end:.0f} s): MISSED")
        if not self.seizures:
            parts.append("no seizure annotated")
        parts.append(f"false alarms {self.false_alarms}")
        return "summary: " + "; ".join(parts)


async def run_demo(
    edf: str | None = None,
    speed: float | str = 20.0,
    mqtt_url: str | None = None,
    model: str | None = None,
    out: TextIO = sys.stdout,
) -> DemoResult:
    path = edf or str(demo_recording_path())
    async with contextlib.AsyncExitStack() as stack:
        embedded = mqtt_url is None
        if mqtt_url is None:
            mqtt_url = await stack.enter_async_context(embedded_broker())
            print(f"demo: started an in-process MQTT broker (amqtt) at {mqtt_url}", file=out)
        cfg = replay_config(path, model=model, speed=speed, mqtt_url=mqtt_url, patient="demo")
        if embedded:  # amqtt speaks MQTT 3.1.1 only
            cfg = dataclasses.replace(cfg, mqtt=dataclasses.replace(cfg.mqtt, protocol="v311"))
        result = DemoResult(seizures=[])
        sub: asyncio.Task[None] | None = None

        def on_event(p: dict[str, Any]) -> None:
            result.events.append(p)
            if p.get("kind") == "alarm" and p.get("event") == "start":
                result.alarms.append(p)
            print("  " + format_event(p), file=out, flush=True)

        async def on_start(start: ReplayStart) -> None:
            nonlocal sub
            result.seizures[:] = [(a.onset, a.end) for a in start.annotations if is_seizure(a.description)]
            meta = start.meta
            print(f"demo: replaying {path} at {speed}x through model {meta.name} "
                  f"(window {meta.window_s:g} s, hop {meta.hop_s:g} s, threshold {start.threshold:.3f} "
                  f"by {meta.threshold_policy}, alarm on {start.rule[0]} of {start.rule[1]} hops: "
                  f"{start.rule[0] * meta.hop_s:g} s over it in the last {start.rule[1] * meta.hop_s:g} s)", file=out)
            print("demo: subscribed to seizurewatch/demo/alarm and /fault; events as they arrive:", file=out)
            ready = asyncio.Event()
            sub = asyncio.create_task(subscribe(cfg.mqtt, on_event, patient="demo", url=mqtt_url, ready=ready))
            await asyncio.wait_for(ready.wait(), timeout=10)

        res = await replay_async(path, model=model, speed=speed, mqtt_url=mqtt_url, patient="demo", base=cfg,
                                 publish=True, on_start=on_start)
        # The daemon returns once the broker acknowledged everything; give the subscriber a moment.
        expected = len(res.events)
        for _ in range(50):
            if len(result.events) >= expected:
                break
            await asyncio.sleep(0.1)
        if sub is not None:
            sub.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sub
    print(result.summary(), file=out)
    return result
