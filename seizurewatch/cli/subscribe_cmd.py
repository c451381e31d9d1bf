"""``seizurewatch subscribe``: the caregiver side — print alarms and faults as they arrive."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shlex
import signal
import sys
from typing import TYPE_CHECKING, Any

from seizurewatch.alarms import wire
from seizurewatch.cli.options import BROKER, mqtt_config
from seizurewatch.signals import capture_signals

if TYPE_CHECKING:
    from seizurewatch.alarms.hooks import HookRunner
    from seizurewatch.config import MqttConfig

log = logging.getLogger("seizurewatch.cli")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "subscribe", parents=[BROKER], help="the caregiver side: print alarms and faults as they arrive",
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
               "and 32 wait (a flood on one bed never drops another's page); each is killed after 60 s. SIGTERM or "
               "SIGINT stops subscribing and waits for the hooks already started or queued.")
    p.add_argument("--patient", default="+", help="patient id (default: every patient)")
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
    cfg = mqtt_config(args)  # a station's file or a daemon's
    if args.exec_cmd and not args.exec_shell:
        try:
            if not shlex.split(args.exec_cmd):
                raise ValueError("empty command")
        except ValueError as exc:
            from seizurewatch.errors import ConfigError

            raise ConfigError(f"--exec: cannot parse {args.exec_cmd!r} ({exc})") from None
    try:
        asyncio.run(_subscribe(args, cfg))
    except KeyboardInterrupt:
        return 0
    finally:
        sys.stdout.flush()
    return 0


async def _subscribe(args: argparse.Namespace, cfg: MqttConfig) -> None:
    """Subscribe until --count events, a broker error, or SIGTERM/SIGINT; then wait for the --exec hooks
    started or queued (a page already on its way is not cut off)."""
    from seizurewatch.alarms.hooks import HookRunner
    from seizurewatch.alarms.subscriber import subscribe

    hooks = HookRunner(args.exec_cmd, args.exec_shell, tuple(args.exec_env)) if args.exec_cmd else None
    out = Printer(args.jsonl, args.count, hooks)
    sub = asyncio.create_task(subscribe(cfg, out.on_event, patient=args.patient, url=args.mqtt_url,
                                        on_other=out.on_other, retries=args.retries, client_id=args.client_id,
                                        on_alarm=out.on_alarm, on_missed=out.on_missed, on_invalid=out.on_invalid))
    stopper = asyncio.create_task(out.done.wait())
    with capture_signals({signal.SIGTERM: out.stop, signal.SIGINT: out.stop}):
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


class Printer:
    """What ``subscribe`` prints for each message (a line of text, or a JSON object with --jsonl), and the
    alarms it hands to the --exec hooks; ``done`` is set after ``count`` events (0: never)."""

    def __init__(self, jsonl: bool, count: int, hooks: HookRunner | None) -> None:
        self.jsonl, self.count, self.hooks = jsonl, count, hooks
        self.seen = 0
        self.done = asyncio.Event()
        self.shown: dict[str, Any] = {}  # what was last printed per patient (state, risk levels)

    def stop(self, sig: signal.Signals) -> None:
        if self.hooks is not None and self.hooks.pending:
            log.warning("stopping (%s); waiting for %d --exec hook(s) to finish", sig.name, self.hooks.pending)
        self.done.set()

    def out(self, line: str) -> None:
        print(line if self.jsonl else wire.printable(line), flush=True)  # names are data, never escapes

    def notice(self, body: dict[str, Any]) -> None:
        self.out(json.dumps({"kind": "notice", **body}, separators=(",", ":")))

    def on_event(self, p: dict[str, Any]) -> None:
        from seizurewatch.alarms.subscriber import format_event  # jsonschema, aiomqtt: not at --help

        self.out(json.dumps(p, separators=(",", ":")) if self.jsonl else format_event(p))
        self.seen += 1
        if self.count and self.seen >= self.count:
            self.done.set()

    def on_alarm(self, p: dict[str, Any], source: str) -> None:
        if source != "start":  # its start was lost: say so, the nurse must still see an alarm begin
            if self.jsonl:
                self.notice({"notice": "alarm_in_progress", "patient": p["patient"], "alarm_id": p["alarm_id"],
                             "source": source})
            else:
                how = "the retained state" if source == "state" else "an update"
                self.out(f"[{p['patient']}] ALARM in progress (id {p['alarm_id']}; known from {how}, "
                         "its start event was not received)")
        if self.hooks is not None:
            self.hooks.submit(p, source)

    def on_missed(self, patient: str, first: int, last: int) -> None:
        span = f"{first}-{last}" if last > first else str(first)
        if self.jsonl:
            self.notice({"notice": "missed", "patient": patient, "first": first, "last": last})
        else:
            self.out(f"[{patient}] missed event{'s' if last > first else ''} {span} from {patient} "
                     "(the broker did not deliver them)")

    def on_invalid(self, patient: str, p: dict[str, Any], why: str) -> None:
        if self.jsonl:
            self.notice({"notice": "invalid", "patient": patient, "seq": p["seq"], "reason": why})
        else:
            self.out(f"[{patient}] invalid message from the daemon (event {p['seq']}: {why}): a bug to report; "
                     "check the bedside")

    def on_other(self, topic: str, raw: bytes) -> None:
        patient, leaf = topic.split("/")[-2:]
        text = raw.decode("utf-8", "replace")
        if leaf == "status":
            self.out(json.dumps({"kind": "status", "patient": patient, "status": text}) if self.jsonl
                     else f"[{patient}] daemon {text}")
        elif leaf == "refusal":
            r = json.loads(text)  # validated by the subscriber
            self.out(json.dumps({"kind": "refusal", **r}, separators=(",", ":")) if self.jsonl
                     else f"[{patient}] ack REFUSED by the daemon: {r['reason']}")
        elif leaf == "state":
            state = wire.loads(raw)  # validated by the subscriber
            if self.jsonl:
                self.out(json.dumps({"kind": "state", **state, "patient": patient}, separators=(",", ":")))
            elif self.shown.get(patient) != state.get("state"):  # the state is republished every few seconds
                self.shown[patient] = state.get("state")
                self.out(f"[{patient}] state {state.get('state')}")
        elif leaf == "risk":  # retained: what a late subscriber learns before the next level change
            risk = wire.loads(raw)  # validated by the subscriber
            levels = ", ".join(f"{h['horizon_s']:g} s {h['level'].upper()}" for h in risk["horizons"])
            if self.jsonl:
                self.out(json.dumps({"kind": "risk_state", **risk}, separators=(",", ":")))
            elif self.shown.get(f"{patient}/risk") != levels:
                self.shown[f"{patient}/risk"] = levels
                self.out(f"[{patient}] risk {levels}")
