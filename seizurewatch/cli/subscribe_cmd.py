"""``seizurewatch subscribe``: the caregiver side — print alarms and faults as they arrive."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import sys
from typing import Any

log = logging.getLogger("seizurewatch.cli")

EXEC_TIMEOUT_S = 60.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "subscribe", help="the caregiver side: print alarms and faults as they arrive",
        description="Subscribe to a patient's (or every patient's) alarms and faults and print them as they "
                    "arrive. Delivery is at-least-once; duplicates are dropped by (patient, seq). Exits 3 with "
                    "one line if the broker stays unreachable after --retries attempts or refuses the login.",
        epilog="--exec runs CMD (split like a shell would, but never through a shell unless --exec-shell) on "
               "each alarm start, with the payload JSON on stdin and in SEIZUREWATCH_PAYLOAD, plus "
               "SEIZUREWATCH_PATIENT, SEIZUREWATCH_SEQ, SEIZUREWATCH_ALARM_ID, SEIZUREWATCH_T, "
               "SEIZUREWATCH_PROBABILITY in the environment.")
    p.add_argument("--patient", default="+", help="patient id (default: every patient)")
    p.add_argument("--mqtt-url", help="broker, e.g. mqtts://broker.ward:8883 (default: the config's)")
    p.add_argument("--config", "-c", help="take MQTT settings (TLS, username, password file) from this daemon config")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per line instead of text")
    p.add_argument("--exec", dest="exec_cmd", metavar="CMD", help="run CMD on each alarm start (e.g. a pager)")
    p.add_argument("--exec-shell", action="store_true", help="run --exec CMD through /bin/sh -c")
    p.add_argument("--client-id", help="persistent session: the broker keeps events for us while we are away")
    p.add_argument("--retries", type=int, default=5, help="connection attempts before giving up (default 5)")
    p.add_argument("--count", type=int, default=0, help="exit 0 after this many events (default: run forever)")
    p.set_defaults(func=cmd_subscribe)


def exec_env(payload: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "SEIZUREWATCH_PAYLOAD": json.dumps(payload, separators=(",", ":")),
        "SEIZUREWATCH_PATIENT": str(payload.get("patient", "")),
        "SEIZUREWATCH_SEQ": str(payload.get("seq", "")),
        "SEIZUREWATCH_ALARM_ID": str(payload.get("alarm_id", "")),
        "SEIZUREWATCH_T": str(payload.get("t", "")),
        "SEIZUREWATCH_PROBABILITY": str(payload.get("probability", "")),
    })
    return env


async def run_exec(cmd: str, payload: dict[str, Any], shell: bool = False) -> int:
    """Run the hook with the payload on stdin; its failure is logged, never fatal."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    try:
        if shell:
            proc = await asyncio.create_subprocess_shell(cmd, stdin=asyncio.subprocess.PIPE, env=exec_env(payload))
        else:
            proc = await asyncio.create_subprocess_exec(*shlex.split(cmd), stdin=asyncio.subprocess.PIPE,
                                                        env=exec_env(payload))
        await asyncio.wait_for(proc.communicate(body), EXEC_TIMEOUT_S)
    except (OSError, ValueError) as exc:
        log.error("--exec command could not run", extra={"cmd": cmd, "error": str(exc)})
        return -1
    except TimeoutError:
        proc.kill()
        log.error("--exec command timed out", extra={"cmd": cmd, "timeout_s": EXEC_TIMEOUT_S})
        return -1
    if proc.returncode:
        log.error("--exec command failed", extra={"cmd": cmd, "returncode": proc.returncode})
    return int(proc.returncode or 0)


def cmd_subscribe(args: argparse.Namespace) -> int:
    from seizurewatch.alarms.subscriber import format_event, subscribe
    from seizurewatch.config import MqttConfig, load_config

    cfg = load_config(args.config).mqtt if args.config else MqttConfig()
    if args.exec_cmd and not args.exec_shell:
        try:
            if not shlex.split(args.exec_cmd):
                raise ValueError("empty command")
        except ValueError as exc:
            from seizurewatch.errors import ConfigError

            raise ConfigError(f"--exec: cannot parse {args.exec_cmd!r} ({exc})") from None

    async def main() -> None:
        hooks: set[asyncio.Task[int]] = set()
        seen = 0
        done = asyncio.Event()

        def out(line: str) -> None:
            print(line, flush=True)

        def on_event(p: dict[str, Any]) -> None:
            nonlocal seen
            out(json.dumps(p, separators=(",", ":")) if args.jsonl else format_event(p))
            if args.exec_cmd and p.get("kind") == "alarm" and p.get("event") == "start":
                task = asyncio.create_task(run_exec(args.exec_cmd, p, args.exec_shell))
                hooks.add(task)
                task.add_done_callback(hooks.discard)
            seen += 1
            if args.count and seen >= args.count:
                done.set()

        def on_other(topic: str, raw: bytes) -> None:
            patient, leaf = topic.split("/")[-2:]
            text = raw.decode("utf-8", "replace")
            if leaf == "status":
                out(json.dumps({"kind": "status", "patient": patient, "status": text}) if args.jsonl
                    else f"[{patient}] daemon {text}")
            elif leaf == "state":
                try:
                    state = json.loads(text)
                except json.JSONDecodeError:
                    return
                if args.jsonl:
                    out(json.dumps({"kind": "state", **state, "patient": patient}, separators=(",", ":")))
                else:
                    out(f"[{patient}] state {state.get('state')}")

        sub = asyncio.create_task(subscribe(cfg, on_event, patient=args.patient, url=args.mqtt_url,
                                            on_other=on_other, retries=args.retries, client_id=args.client_id))
        stopper = asyncio.create_task(done.wait())
        try:
            await asyncio.wait({sub, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not sub.done():
                sub.cancel()
            if hooks:
                await asyncio.gather(*hooks, return_exceptions=True)
        if sub.done() and not sub.cancelled() and sub.exception() is not None:
            raise sub.exception()  # type: ignore[misc]

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        return 0
    finally:
        sys.stdout.flush()
    return 0
