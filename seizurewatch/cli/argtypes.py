"""argparse ``type=`` converters over ``seizurewatch.checks``: a bad path is refused when the command
line is read (``error: argument --out: ...``, exit 2), not after an hour of work."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seizurewatch.checks import check_output_dir, check_output_file
from seizurewatch.units import KNOWN, check_unit


def _argtype(check: Callable[[Any, str], Any], what: str) -> Callable[[str], str]:
    def convert(value: str) -> str:
        try:
            check(value, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    convert.__name__ = what  # argparse names the type in its messages
    return convert


out_dir = _argtype(check_output_dir, "output folder")
out_file = _argtype(check_output_file, "output file")


def units_arg(p: argparse.ArgumentParser) -> None:
    """``--units`` for every command that reads a recording: what channels declaring no unit hold."""
    p.add_argument("--units", type=_argtype(check_unit, "units"), default=None, metavar="UNIT",
                   help=f"what channels that declare no unit (or one seizurewatch does not know) hold: {KNOWN}; "
                        "without it such a recording is refused (declared units are always converted to µV)")


def in_file(value: str) -> str:
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"{value}: no such file")
    return value


DASK_SCHEMES = ("tcp", "tls", "inproc", "ucx", "ws", "wss")


def scheduler_address(value: str) -> str:
    """A Dask scheduler address: ``tcp://host:port`` (or tls/inproc/ucx/ws/wss), or ``host:port``."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "tcp", value
    host, colon, port = rest.rpartition(":")
    if scheme not in DASK_SCHEMES or (scheme != "inproc" and (not colon or not host or not port.isdigit())) \
            or any(c.isspace() for c in value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a Dask scheduler address; expected tcp://host:port "
                                         "(as printed by dask scheduler)")
    return value


def scheduler_arg(p: argparse.ArgumentParser) -> None:
    """``--scheduler`` for every command that runs one task per recording or fold (research.parallel)."""
    p.add_argument("--scheduler", metavar="ADDRESS", type=scheduler_address,
                   help="Dask scheduler (tcp://host:port) to run one task per recording/fold on; default "
                        "$SEIZUREWATCH_SCHEDULER, else Dask's config key scheduler-address, else an in-process "
                        "cluster with one worker per core")
