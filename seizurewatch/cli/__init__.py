"""``seizurewatch`` command line: a thin layer over functions the tests call directly.

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

    DAEMON
      run        run the daemon from a YAML config (systemd unit: seizurewatch@.service)
      replay     replay an EDF recording through the same pipeline
      demo       replay a bundled recording into a broker and print the alarms
      play       stream an EDF recording as an LSL outlet (a stand-in amplifier)
      subscribe  the caregiver side: print alarms and faults as they arrive

    RESEARCH
      inspect    header, traces, statistics and value distribution of an EDF (PNG + HTML)
      dataset    build a windowed dataset from annotated recordings
      train      train a model (from a recipe YAML or a built dataset)
      import     a published pretrained model as a model file (day one, no patient data)
      evaluate   ROC/PR, confusion matrix, event sensitivity, false alarms/24 h, latency
      threshold  pick the operating point from the ROC trade-off
      export     write TorchScript (.pt) or torch.export (.pt2) with metadata
      predict    per-window probabilities over a recording (CSV + timeline PNG)
      compare    leave-one-recording-out comparison of model configs
      bench      benchmarks (JSON)
    """
)

EPILOG = textwrap.dedent(
    """\
    FILES
      config/*.yaml      daemon configs (demo.yaml, bedside.yaml) and training recipes
      devices/*.yaml     device profiles: channel labels, rate, units, montage
      models/*.pt|.pt2   exported models; metadata.json inside each

    EXIT STATUS
      0 success; 1 internal error; 2 bad input (config, recording, model); 3 broker unreachable.

    Run 'seizurewatch COMMAND --help' for a command's options.
    """
)

COMMAND_MODULES = ("daemon_cmds", "data_cmds", "research_cmds", "lsl_cmds", "subscribe_cmd", "station_cmds",
                   "labels_cmd", "bench_cmd", "pretrained_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seizurewatch", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"seizurewatch {__version__}")
    parser.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level (default: from config, else WARNING for tools, INFO for run)")
    parser.add_argument("--log-format", default=None, choices=["text", "json"],
                        help="log line format; json suits journald (default: text)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib

    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"seizurewatch.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"seizurewatch.cli.{name}":
                continue
            raise
        mod.register(sub)
    return parser


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
