"""play: stream an EDF recording as an LSL outlet (a stand-in amplifier)."""

from __future__ import annotations

import argparse
import signal
import threading

from seizurewatch.cli.argtypes import units_arg
from seizurewatch.cli.daemon_cmds import speed_arg
from seizurewatch.errors import ConfigError
from seizurewatch.signals import capture_signals


def _gap_arg(value: str) -> tuple[float, float]:
    try:
        at, seconds = (float(x) for x in value.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected AT:SECONDS, e.g. 30:10, got {value!r}") from None
    if at < 0 or seconds <= 0:
        raise argparse.ArgumentTypeError("AT must be >= 0 and SECONDS > 0")
    return at, seconds


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "play", help="stream an EDF recording as an LSL outlet (a stand-in amplifier)",
        description="Replay an EDF/EDF+ recording as a Lab Streaming Layer outlet: channel labels, units and "
                    "rate in the stream's XML description, chunks pushed at real-time pace (or --speed times "
                    "faster), timestamps from the recording's sample clock anchored at local_clock() when "
                    "playback starts. EDF+ annotations go out on a companion 'Markers' stream. Uses the "
                    "loopback-only liblsl config unless LSLAPICFG is set.")
    p.add_argument("edf", help="recording: EDF/EDF+, BDF/BDF+, or a text signal (.csv/.txt)")
    p.add_argument("--rate", type=float, default=None, metavar="HZ",
                   help="sample rate of a text signal without a STEM.json sidecar")
    units_arg(p)
    p.add_argument("--name", default="seizurewatch-play", help="LSL stream name (default: seizurewatch-play)")
    p.add_argument("--type", default="EEG", help="LSL stream type (default: EEG)")
    p.add_argument("--source-id", default="", help="LSL source_id (default: seizurewatch-play:<file name>)")
    p.add_argument("--speed", type=speed_arg, default=1.0, help="1 = real time (default), 10 = 10x, max")
    p.add_argument("--loop", action="store_true", help="start over at the end, forever")
    p.add_argument("--chunk-s", type=float, default=0.1, help="seconds of signal per pushed chunk (default 0.1)")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="play from this recording time (s)")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="play this many seconds")
    p.add_argument("--channels", help="comma-separated channel labels to publish, in this order "
                                      "(default: all, in file order)")
    p.add_argument("--no-markers", action="store_true", help="no companion Markers stream")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds for an inlet to connect before the clock starts")
    p.add_argument("--inject-gap", type=_gap_arg, metavar="AT:SECONDS",
                   help="test aid: at recording time AT, skip SECONDS of timestamps (a drop-out)")
    p.set_defaults(func=cmd_play, default_log_level="WARNING")


def cmd_play(args: argparse.Namespace) -> int:
    from seizurewatch.player import Player, PlayOptions

    try:
        opts = PlayOptions(
            name=args.name, type=args.type, source_id=args.source_id, speed=args.speed, loop=args.loop,
            chunk_s=args.chunk_s, start_s=args.start, duration_s=args.duration, markers=not args.no_markers,
            wait_consumer_s=args.wait, rate=args.rate, units=args.units,
            channel_order=tuple(c.strip() for c in args.channels.split(",")) if args.channels else None,
            gap_at_s=args.inject_gap[0] if args.inject_gap else None,
            gap_s=args.inject_gap[1] if args.inject_gap else 0.0,
        )
    except ValueError as exc:  # through the error funnel (cli.main): one line, exit 2
        raise ConfigError(f"play: {exc}") from None
    stop = threading.Event()
    player = Player(args.edf, opts)
    speed = "as fast as possible" if opts.speed == "max" else f"at {float(opts.speed):g}x real time"
    print(f"play: {args.edf} -> LSL outlet '{opts.name}' (type {opts.type}, source_id {player.source_id}, "
          f"{len(player.labels)} ch @ {player.rate:g} Hz) {speed}"
          + (", looping" if opts.loop else "")
          + (f"; markers on '{opts.name}-markers'" if player.marker_outlet is not None else ""), flush=True)
    try:
        with capture_signals({signal.SIGTERM: lambda sig: stop.set(), signal.SIGINT: lambda sig: stop.set()}):
            stats = player.run(stop)
    finally:
        player.close()
    print(f"play: pushed {stats.samples / player.rate:.1f} s of signal ({stats.chunks} chunks, "
          f"{stats.markers} markers) in {stats.seconds:.1f} s", flush=True)
    return 0
