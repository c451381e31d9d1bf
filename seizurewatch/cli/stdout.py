"""A reader of our stdout that went away (``seizurewatch dataset show | head``)."""

from __future__ import annotations

import os
import sys


def drop_stdout() -> None:
    """Send the rest of stdout nowhere (Python's own recipe: the interpreter's flush at exit would raise
    BrokenPipeError again and print it)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
