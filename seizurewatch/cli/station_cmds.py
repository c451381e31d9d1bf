"""``seizurewatch ack`` and ``seizurewatch station``: the people who answer the alarm."""

from __future__ import annotations

import argparse
import asyncio
import sys

from seizurewatch.alarms.ack import ACTIONS
from seizurewatch.cli.options import BROKER, mqtt_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ack", parents=[BROKER], help="acknowledge an alarm, or mark it a false alarm / a confirmed seizure",
        description="Publish an acknowledgement to <prefix>/<patient>/ack (docs/ack.schema.json). The daemon "
                    "journals it with the alarm, publishes an 'ack' event and lists it in the retained state; "
                    "escalation of that alarm stops. Waits (--wait seconds) for the daemon's answer and says it: "
                    "exit 0 only when the daemon journaled the ack; 2 when it refused it (the reason is printed); "
                    "5 when no daemon answered.")
    p.add_argument("--patient", required=True, help="patient id, as in the daemon's config")
    p.add_argument("--alarm-id", required=True, help="the alarm_id of the alarm (or fault) being answered")
    p.add_argument("--action", choices=ACTIONS, default="ack",
                   help="ack: seen, attending; false_alarm: no seizure; confirmed: a seizure (default: ack)")
    p.add_argument("--by", required=True, help="who answers (a name or role)")
    p.add_argument("--note", default="", help="free text, at most 500 characters")
    p.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the daemon's answer (default 10)")
    p.set_defaults(func=cmd_ack)

    s = sub.add_parser(
        "station", parents=[BROKER],
        help="the nurse-station page: every bed on the broker, live, with Acknowledge buttons",
        description="Serve one web page showing every bed the broker carries (state, probability over the last "
                    "minutes, open alarms with Acknowledge / False alarm buttons, faults, last seen), most urgent "
                    "first. The server subscribes with its own broker credentials (--config / --mqtt-url) and "
                    "pushes to the browser; the browser never sees them. Listens on 127.0.0.1 by default; any "
                    "other address requires --password-file (HTTP Basic, any user name).")
    s.add_argument("--listen", default="127.0.0.1:8080",
                   help="HOST:PORT (HOST an IP address or localhost), or a PORT on loopback (default 127.0.0.1:8080)")
    s.add_argument("--password-file", help="file holding the page's password (required off loopback)")
    s.add_argument("--station-name", default="station",
                   help="this station's name (an ack from the page needs the person's own name)")
    s.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    s.add_argument("--ssl-keyfile", help="private key of --ssl-certfile")
    s.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer to this Host name (e.g. station.ward.local); the listen address and loopback "
                        "names always work, any other name is refused (DNS rebinding)")
    s.set_defaults(func=cmd_station, default_log_level="INFO")


def cmd_ack(args: argparse.Namespace) -> int:
    from seizurewatch.alarms.ack import Ack, AckError, parse_ack
    from seizurewatch.alarms.answer import ack_and_wait
    from seizurewatch.errors import ConfigError

    try:
        ack = parse_ack(Ack(args.alarm_id, args.action, args.by, args.note).to_json())
    except AckError as exc:
        raise ConfigError(f"ack: {exc}") from None
    if not args.wait > 0:
        raise ConfigError(f"ack: --wait: expected a number of seconds > 0, got {args.wait:g}")
    answer = asyncio.run(ack_and_wait(mqtt_config(args), args.patient, ack, url=args.mqtt_url, timeout_s=args.wait))
    what = f"[{args.patient}] {ack.action} by {ack.by} for {ack.alarm_id}"
    if answer.accepted:
        print(f"{what}: accepted, {answer.reason}", file=sys.stderr)
        return 0
    print(f"{what}: {'REFUSED by the daemon' if answer.answered else 'NOT CONFIRMED'}: {answer.reason}",
          file=sys.stderr)
    return 2 if answer.answered else 5


def cmd_station(args: argparse.Namespace) -> int:
    from seizurewatch.station.server import StationOptions, serve

    opts = StationOptions.from_listen(args.listen, password_file=args.password_file,
                                      station_name=args.station_name, ssl_certfile=args.ssl_certfile,
                                      ssl_keyfile=args.ssl_keyfile, allow_hosts=tuple(args.allow_host))
    serve(mqtt_config(args), opts, url=args.mqtt_url)
    return 0
