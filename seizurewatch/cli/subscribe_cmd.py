"""``seizurewatch subscribe``: the caregiver side — print alarms and faults as they arrive."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shlex
import sys
from typing import Any

log = logging.getLogger("seizurewatch.cli")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "subscribe", help="the caregiver side: print alarms and faults as they arrive",
        description="Subscribe to a patient's (or every patient's) alarms and faults and print them as they "
                    "arrive. Delivery is at-least-once; duplicates are dropped by (patient, epoch, seq). Messages "
                    "that do not match the payload schema or name another patient than their topic are logged "
                    "and ignored. Missed events (a jump in a patient's seq) are reported, and an alarm known "
                    "only from the retained state (its start was lost) is raised like a start. Exits 3 with "
                    "one line if the broker stays unreachable after --retries attempts or refuses the login.",
        epilog="--exec runs CMD (split like a shell would, but never through a shell unless --exec-shell) once "
               "per alarm (its start event, or the first sign of it), with the payload JSON on stdin and in "
               "SEIZUREWATCH_PAYLOAD, plus SEIZUREWATCH_PATIENT, SEIZUREWATCH_SEQ, SEIZUREWATCH_ALARM_ID, "
               "SEIZUREWATCH_T, SEIZUREWATCH_PROBABILITY and SEIZUREWATCH_SOURCE (start, update or state: how "
               "the alarm was first seen) in its "
               "environment, which holds only PATH, HOME, USER, LOGNAME, LANG, LC_*, TZ, TMPDIR and the "
               "variables named by --exec-env. Per patient at most 4 hooks run at once, 20 start per minute "
               "and 32 wait (a flood on one bed never drops another's page); each is killed after 60 s.")
    p.add_argument("--patient", default="+", help="patient id (default: every patient)")
    p.add_argument("--mqtt-url", help="broker, e.g. mqtts://broker.ward:8883 (default: the config's)")
    p.add_argument("--config", "-c", help="take MQTT settings (TLS, username, password file) from this daemon config")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per line instead of text")
    p.add_argument("--exec", dest="exec_cmd", metavar="CMD", help="run CMD once per alarm (e.g. a pager)")
    p.add_argument("--exec-shell", action="store_true", help="run --exec CMD through /bin/sh -c")
    p.add_argument("--exec-env", action="append", default=[], metavar="NAME",
                   help="also pass this environment variable to the --exec hook (repeatable)")
    p.add_argument("--client-id", help="persistent session: the broker keeps events for us while we are away")
    p.add_argument("--retries", type=int, default=5, help="connection attempts before giving up (default 5)")
    p.add_argument("--count", type=int, default=0, help="exit 0 after this many events (default: run forever)")
    p.set_defaults(func=cmd_subscribe)


def cmd_subscribe(args: argparse.Namespace) -> int:
    from seizurewatch.alarms.subscriber import format_event, subscribe
    from seizurewatch.config import MqttConfig, load_mqtt_section

    cfg = load_mqtt_section(args.config) if args.config else MqttConfig()  # a station's file or a daemon's
    if args.exec_cmd and not args.exec_shell:
        try:
            if not shlex.split(args.exec_cmd):
                raise ValueError("empty command")
        except ValueError as exc:
            from seizurewatch.errors import ConfigError

            raise ConfigError(f"--exec: cannot parse {args.exec_cmd!r} ({exc})") from None

    async def main() -> None:
        from seizurewatch.alarms import wire
        from seizurewatch.alarms.hooks import HookRunner

        hooks = HookRunner(args.exec_cmd, args.exec_shell, tuple(args.exec_env)) if args.exec_cmd else None
        seen = 0
        done = asyncio.Event()

        def out(line: str) -> None:
            print(line if args.jsonl else wire.printable(line), flush=True)  # names are data, never escapes

        def on_event(p: dict[str, Any]) -> None:
            nonlocal seen
            out(json.dumps(p, separators=(",", ":")) if args.jsonl else format_event(p))
            seen += 1
            if args.count and seen >= args.count:
                done.set()

        def on_alarm(p: dict[str, Any], source: str) -> None:
            if source != "start":  # its start was lost: say so, the nurse must still see an alarm begin
                if args.jsonl:
                    out(json.dumps({"kind": "notice", "notice": "alarm_in_progress", "patient": p["patient"],
                                    "alarm_id": p["alarm_id"], "source": source}, separators=(",", ":")))
                else:
                    how = "the retained state" if source == "state" else "an update"
                    out(f"[{p['patient']}] ALARM in progress (id {p['alarm_id']}; known from {how}, "
                        "its start event was not received)")
            if hooks is not None:
                hooks.submit(p, source)

        def on_missed(patient: str, first: int, last: int) -> None:
            span = f"{first}-{last}" if last > first else str(first)
            if args.jsonl:
                out(json.dumps({"kind": "notice", "notice": "missed", "patient": patient, "first": first,
                                "last": last}, separators=(",", ":")))
            else:
                out(f"[{patient}] missed event{'s' if last > first else ''} {span} from {patient} "
                    "(the broker did not deliver them)")

        shown: dict[str, Any] = {}

        def on_other(topic: str, raw: bytes) -> None:
            patient, leaf = topic.split("/")[-2:]
            text = raw.decode("utf-8", "replace")
            if leaf == "status":
                out(json.dumps({"kind": "status", "patient": patient, "status": text}) if args.jsonl
                    else f"[{patient}] daemon {text}")
            elif leaf == "state":
                state = wire.loads(raw)  # validated by the subscriber
                if args.jsonl:
                    out(json.dumps({"kind": "state", **state, "patient": patient}, separators=(",", ":")))
                elif shown.get(patient) != state.get("state"):  # the state is republished every few seconds
                    shown[patient] = state.get("state")
                    out(f"[{patient}] state {state.get('state')}")
            elif leaf == "risk":  # retained: what a late subscriber learns before the next level change
                risk = wire.loads(raw)  # validated by the subscriber
                levels = ", ".join(f"{h['horizon_s']:g} s {h['level'].upper()}" for h in risk["horizons"])
                if args.jsonl:
                    out(json.dumps({"kind": "risk_state", **risk}, separators=(",", ":")))
                elif shown.get(f"{patient}/risk") != levels:
                    shown[f"{patient}/risk"] = levels
                    out(f"[{patient}] risk {levels}")

        sub = asyncio.create_task(subscribe(cfg, on_event, patient=args.patient, url=args.mqtt_url,
                                            on_other=on_other, retries=args.retries, client_id=args.client_id,
                                            on_alarm=on_alarm, on_missed=on_missed))
        stopper = asyncio.create_task(done.wait())
        try:
            await asyncio.wait({sub, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not sub.done():
                sub.cancel()
            if hooks is not None:
                await hooks.drain()
        if sub.done() and not sub.cancelled() and sub.exception() is not None:
            raise sub.exception()  # type: ignore[misc]

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        return 0
    finally:
        sys.stdout.flush()
    return 0
