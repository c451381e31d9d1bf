"""``seizurewatch`` command line: a thin layer over functions the tests call directly. Internal (the public
Python API is ``seizurewatch.api``).

Each command lives in a module of this package exposing ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import textwrap

from seizurewatch import __version__
from seizurewatch.errors import SeizurewatchError

DESCRIPTION = textwrap.dedent(
    """\
    seizurewatch - real-time seizure warning daemon.

    EEG comes in live over Lab Streaming Layer or from an EDF recording replayed as if it
    were a device; a sliding window is classified by a TorchScript/torch.export model once
    per hop; alarms and faults are journaled to disk and published over MQTT.
    """
)

EPILOG = textwrap.dedent(
    """\
    FILES
      config/*.yaml      daemon configs (demo.yaml, bedside.yaml) and training recipes
      devices/*.yaml     device profiles: channel labels, rate, units, montage
      models/*.pt|.pt2   exported models; metadata.json inside each

    EXIT STATUS
      0 success; 1 internal error; 2 bad input (config, recording, model; an ack the daemon refused);
      3 broker unreachable; 4 journal disk missing (run); 5 no daemon answered (ack).

    Run 'seizurewatch COMMAND --help' for a command's options.
    """
)

# How --help groups the commands; each registered command is listed once, from its own help line (a command
# missing here is listed under OTHER, never left out).
GROUPS = (("DAEMON", ("run", "replay", "demo", "play")),
          ("THE WARD", ("subscribe", "station", "ack", "labels")),
          ("RESEARCH", ("inspect", "dataset", "train", "evaluate", "threshold", "export", "predict", "compare",
                        "bench")))

COMMAND_MODULES = ("daemon_cmds", "data_cmds", "research_cmds", "lsl_cmds", "subscribe_cmd", "station_cmds",
                   "labels_cmd", "bench_cmd", "pretrained_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seizurewatch", description=DESCRIPTION, epilog=EPILOG,
        usage="%(prog)s [-h] [--version] [--log-level LEVEL] [--log-format FORMAT] COMMAND ...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"seizurewatch {__version__}")
    parser.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level (default: from config, else WARNING for tools, INFO for run)")
    parser.add_argument("--log-format", default=None, choices=["text", "json"],
                        help="log line format; json suits journald (default: text)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS)
    import importlib

    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"seizurewatch.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"seizurewatch.cli.{name}":
                continue
            raise
        mod.register(sub)
    parser.description = f"{DESCRIPTION}\n{command_list(sub)}"
    return parser


def command_list(sub: argparse._SubParsersAction) -> str:
    """The commands by group, each once, with the help line it registered."""
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    listed: set[str] = set()
    out = []
    for title, names in (*GROUPS, ("OTHER", tuple(helps))):
        rows = [n for n in names if n in helps and n not in listed]
        if rows:
            listed.update(rows)
            out.append(title + "\n" + "\n".join(f"  {n:<10} {helps[n]}" for n in rows))
    return "\n\n".join(out) + "\n"


def _stdout_closed() -> int:
    """The reader of our stdout closed it (``seizurewatch dataset show | head``): stop quietly, as a
    command killed by SIGPIPE would (exit 141), what is still buffered sent nowhere. (``replay`` keeps
    replaying instead: ``daemon_cmds.StdoutLines``.)"""
    from seizurewatch.cli.stdout import drop_stdout

    drop_stdout()
    return 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from seizurewatch.logsetup import setup_logging

    setup_logging(args.log_level or getattr(args, "default_log_level", "WARNING"), args.log_format or "text")
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that went away (``| head``) shows here, in the funnel, not at exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except SeizurewatchError as exc:
        print(f"seizurewatch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - last resort: a traceback in the log, a short line for the user
        logging.getLogger("seizurewatch").exception("internal error")
        print("seizurewatch: internal error (see the log above); please report it", file=sys.stderr)
        return 1
