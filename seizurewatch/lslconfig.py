"""Loopback-only liblsl configuration, applied before pylsl is imported.

liblsl's default configuration multicasts stream discovery out of every network card.
A bedside box (and every test, benchmark and demo) must not: ``apply_loopback()`` points
``LSLAPICFG`` at the packaged ``lsl_loopback.cfg`` (machine-local discovery, IPv4 only,
known peer 127.0.0.1) unless the user already chose a config, and only then imports pylsl.
Every module that needs pylsl gets it through ``import_pylsl()``.
"""

from __future__ import annotations

import logging
import os
import sys
from types import ModuleType

from seizurewatch.resources import lsl_loopback_config_path

log = logging.getLogger(__name__)

ENV = "LSLAPICFG"


def apply_loopback() -> str:
    """Set ``LSLAPICFG`` to the loopback config unless the user set it; return the config in force.

    Must run before liblsl is loaded (liblsl reads its config once, at load time). If pylsl
    was already imported by someone else with no config set, that is a programming error.
    """
    chosen = os.environ.get(ENV)
    if chosen:
        if not os.path.isfile(chosen):
            from seizurewatch.errors import ConfigError

            raise ConfigError(f"{ENV}={chosen}: liblsl config file not found")
        return chosen
    if "pylsl" in sys.modules:
        raise RuntimeError("pylsl was imported before seizurewatch.lslconfig.apply_loopback(); "
                           "liblsl may already run with its default (multicast) config")
    path = str(lsl_loopback_config_path())
    os.environ[ENV] = path
    return path


def import_pylsl() -> ModuleType:
    """``import pylsl`` with the loopback config (or the user's ``LSLAPICFG``) in force."""
    if "pylsl" not in sys.modules:
        cfg = apply_loopback()
        log.debug("liblsl config", extra={"lslapicfg": cfg})
    import pylsl

    return pylsl
