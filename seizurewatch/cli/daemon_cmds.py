"""run, replay, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

from seizurewatch.cli.argtypes import out_file, units_arg
from seizurewatch.cli.options import BROKER_URL
from seizurewatch.cli.stdout import drop_stdout
from seizurewatch.errors import SeizurewatchError

log = logging.getLogger("seizurewatch.cli")


def speed_arg(value: str) -> float | str:
    if value == "max":
        return "max"
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'max', got {value!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("speed must be > 0")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the daemon from a YAML config",
                       description="Run the daemon: every stream in the config, until SIGTERM. "
                                   "SIGHUP reloads threshold, decision parameters and log level.")
    p.add_argument("--config", "-c", required=True, help="daemon config YAML (see config/bedside.yaml)")
    p.add_argument("--check", action="store_true",
                   help="check everything 'run' would refuse (config, model pin and a dry forward pass, device "
                        "profiles, recordings, journal folder, metrics address, broker login), then exit")
    p.set_defaults(func=cmd_run, default_log_level="INFO")

    p = sub.add_parser("replay", parents=[BROKER_URL], help="replay an EDF recording through the daemon's pipeline",
                       description="Replay a recording through the same pipeline as 'run'. Without --mqtt-url "
                                   "nothing is published; events are printed.")
    p.add_argument("edf", help="recording: EDF/EDF+, BDF/BDF+, or a text signal (.csv/.txt) with --rate or a "
                               "STEM.json sidecar")
    p.add_argument("--rate", type=float, default=None, metavar="HZ",
                   help="sample rate of a text signal without a STEM.json sidecar")
    units_arg(p)
    p.add_argument("--speed", type=speed_arg, default="max", help="1 = real time, 50 = 50x, max (default)")
    p.add_argument("--model", help="model file (.pt / .pt2); default: the shipped dog1 model or the config's")
    p.add_argument("--config", "-c", help="take decision, MQTT and model settings from this daemon config")
    p.add_argument("--device", help="device profile YAML (default: as the EDF header describes)")
    p.add_argument("--patient", default="replay", help="patient id used in topics (default: replay)")
    p.add_argument("--jsonl", action="store_true", help="print each event as one JSON line on stdout")
    p.add_argument("--probabilities", metavar="CSV", type=out_file,
                   help="also write t,probability per hop to this CSV")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("demo", parents=[BROKER_URL],
                       help="replay a bundled recording into a broker and print the alarms",
                       description="Replays dog1_rec04.edf (never seen in training) at --speed through the "
                                   "daemon into an MQTT broker, subscribes to the alarm topic and prints what "
                                   "arrives, then a summary. Without --mqtt-url an in-process broker is used.")
    p.add_argument("--speed", type=speed_arg, default=20.0, help="replay speed (default 20x; 'max' for fastest)")
    p.add_argument("--edf", help="replay this recording instead of the bundled one")
    p.add_argument("--model", help="model file (default: the shipped dog1 model)")
    p.set_defaults(func=cmd_demo, default_log_level="ERROR")


def cmd_run(args: argparse.Namespace) -> int:
    from seizurewatch.config import load_config
    from seizurewatch.service import run_service

    cfg = load_config(args.config)
    if args.check:
        return asyncio.run(check_run(cfg, str(args.config)))
    refuse_embedded(cfg, str(args.config))
    return asyncio.run(run_service(cfg, args))


def refuse_embedded(cfg: Any, name: str) -> None:
    """``run`` publishes for the ward: an in-process broker (demo, replay) would carry its alarms to nobody."""
    if cfg.mqtt.url == "embedded":
        from seizurewatch.errors import ConfigError

        raise ConfigError(f"{name}: mqtt.url: 'embedded' is an in-process broker for demo and replay that no "
                          "station can reach, so run would publish its alarms to nobody; give the ward broker's "
                          "URL, e.g. mqtt://127.0.0.1:1883")


async def check_run(cfg: Any, name: str) -> int:
    """``run --check``: the start-up of ``run`` (the same code) without running; what it would wait for is
    listed, what it would refuse raises the same one-line error."""
    from seizurewatch.daemon import Daemon, DaemonOptions

    daemon = Daemon(cfg, DaemonOptions(publish=cfg.mqtt.url != "embedded", keep_trying=True, require_pin=True,
                                       check_only=True))
    try:
        await daemon.prepare()
    finally:
        await daemon.close_unstarted()
    refuse_embedded(cfg, name)  # after the other checks: their errors are the ones to fix first
    meta = daemon.pipelines[0].meta
    for pipe in daemon.pipelines:
        d = pipe.decision
        stored = pipe.meta.rule is not None
        rule = "from the config" if cfg.decision.k is not None else "stored in the model" if stored else "default"
        hop = pipe.meta.hop_s
        print(f"{name}: {pipe.patient}: alarm when {d.k} of the last {d.n} hops ({d.k * hop:g} of {d.n * hop:g} s) "
              f"reach {d.threshold:.4g} "
              f"(threshold: {pipe.context.threshold_policy}; rule: {rule})")
    for note in daemon.notes:
        print(f"{name}: run would wait: {note}")
    print(f"{name}: OK ({len(cfg.streams)} stream(s), model {meta.name}, file_sha256 "
          f"{daemon.model_sha256[:12]}…, weights_sha256 {meta.weights_sha256[:12]}…"
          f"{', waiting for ' + str(len(daemon.notes)) if daemon.notes else ''})")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from seizurewatch.config import load_config
    from seizurewatch.replay import ReplayHooks, ReplayOptions, replay

    base = load_config(args.config) if args.config else None
    publish = bool(args.mqtt_url) or (base is not None and base.mqtt.url != "embedded")
    out = StdoutLines()

    def sink(p: dict[str, Any]) -> None:
        if args.jsonl:
            out.write(json.dumps(p, separators=(",", ":")))
        else:
            from seizurewatch.alarms.subscriber import format_event

            out.write(format_event(p))

    t0 = time.perf_counter()
    options = ReplayOptions(model=args.model, speed=args.speed, mqtt_url=args.mqtt_url, patient=args.patient,
                            device=args.device, base=base, publish=publish, rate=args.rate, units=args.units)
    res = replay(args.edf, options, ReplayHooks(sinks=[sink], handle_signals=True))
    wall = time.perf_counter() - t0
    if args.probabilities:
        with open(args.probabilities, "w", encoding="utf-8") as f:
            f.write("t,probability\n")
            for t, p in zip(res.t.tolist(), res.p.tolist()):
                f.write(f"{t:.3f},{p:.6f}\n")
    line = (f"{res.verdicts().summary()}; {res.windows} windows, {res.duration:.1f} s of signal in {wall:.2f} s "
            f"({res.duration / wall:.0f}x real time)")
    if args.jsonl:
        print(line, file=sys.stderr)
    else:
        out.write(line)
    return 0


class StdoutLines:
    """Lines to stdout that survive a reader going away (``replay --jsonl | head``): the rest is dropped
    quietly, the replay finishes, and Python's exit flush does not raise either."""

    def __init__(self) -> None:
        self.closed = False

    def write(self, line: str) -> None:
        if self.closed:
            return
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            self.closed = True
            drop_stdout()


def cmd_demo(args: argparse.Namespace) -> int:
    from seizurewatch.demo import run_demo

    try:
        asyncio.run(run_demo(edf=args.edf, speed=args.speed, mqtt_url=args.mqtt_url, model=args.model))
    except SeizurewatchError:
        raise
    return 0
