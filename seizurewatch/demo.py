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
from seizurewatch.replay import ReplayHooks, ReplayOptions, ReplayStart, replay_async, replay_config
from seizurewatch.resources import demo_recording_path
from seizurewatch.scoring import Verdicts, payload_spans, verdicts


@dataclass
class DemoResult:
    """What the demo saw: the annotated seizures and the payloads as they arrived; scored by
    ``scoring.verdicts``, the rule ``replay`` and ``evaluate`` apply."""

    seizures: list[tuple[float, float]]
    alarms: list[dict[str, Any]] = field(default_factory=list)  # alarm start payloads
    events: list[dict[str, Any]] = field(default_factory=list)

    def verdicts(self) -> Verdicts:
        return verdicts(self.seizures, payload_spans(self.events))

    @property
    def detected(self) -> list[tuple[float, float, float]]:
        """(onset, end, first alarm t) for each seizure an alarm started for."""
        return [(s.onset, s.end, s.alarm) for s in self.verdicts().seizures if s.alarm is not None]

    @property
    def false_alarms(self) -> int:
        return self.verdicts().unrelated

    def summary(self) -> str:
        return self.verdicts().summary()


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
        options = ReplayOptions(model=model, speed=speed, mqtt_url=mqtt_url, patient="demo", publish=True)
        cfg = replay_config(path, options)
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
            meta = start.meta
            print(f"demo: replaying {path} at {speed}x through model {meta.name} "
                  f"(window {meta.window_s:g} s, hop {meta.hop_s:g} s, threshold {start.threshold:.3f} "
                  f"by {meta.threshold_policy}, alarm on {start.rule[0]} of {start.rule[1]} hops: "
                  f"{start.rule[0] * meta.hop_s:g} s over it in the last {start.rule[1] * meta.hop_s:g} s)", file=out)
            print("demo: subscribed to seizurewatch/demo/alarm and /fault; events as they arrive:", file=out)
            ready = asyncio.Event()
            sub = asyncio.create_task(subscribe(cfg.mqtt, on_event, patient="demo", url=mqtt_url, ready=ready))
            await asyncio.wait_for(ready.wait(), timeout=10)

        res = await replay_async(path, dataclasses.replace(options, base=cfg), ReplayHooks(on_start=on_start))
        result.seizures[:] = [(s.onset, s.end) for s in res.verdicts().seizures]  # replay's annotations
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
