"""Options several commands share, each declared once as an argparse parent (``add_parser(..., parents=[...])``),
beside the one function that reads it.

- ``BROKER_URL`` (``--mqtt-url``): ``replay``, ``demo``; ``BROKER`` adds ``--config``/``-c`` (a config whose
  ``mqtt:`` section gives TLS and credentials): ``subscribe``, ``ack``, ``station``. Read by ``mqtt_config``.
- ``DECISION`` (``--config`` whose ``decision:`` is the base, ``--k``, ``--n``, ``--refractory``): ``evaluate``,
  ``threshold``, ``predict``, ``compare``. Read by ``decision_config``.
- ``SCHEDULER`` (``--scheduler``): the commands that run one task per recording or fold.

``--config`` of ``run``, ``replay`` and ``labels`` is the daemon's whole config (their own option).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from seizurewatch.cli.argtypes import scheduler_arg

if TYPE_CHECKING:
    from seizurewatch.config import DecisionConfig, MqttConfig

__all__ = ["BROKER", "BROKER_URL", "DECISION", "SCHEDULER", "decision_config", "mqtt_config"]


def _parent(*parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False, parents=list(parents))


BROKER_URL = _parent()
BROKER_URL.add_argument("--mqtt-url", help="MQTT broker, e.g. mqtts://broker.ward:8883 (default: the config's; "
                                           "replay: publish nothing, demo: an in-process broker)")

BROKER = _parent(BROKER_URL)
BROKER.add_argument("--config", "-c", help="take MQTT settings (TLS, username, password file) from this config "
                                           "(a daemon's or a station's)")

DECISION = _parent()
_g = DECISION.add_argument_group("alarm decision (as the daemon's 'decision:' config; defaults are the daemon's)")
_g.add_argument("--config", help="daemon config YAML whose decision settings to use")
_g.add_argument("--k", type=int, help="alarm when k of the last n probabilities reach the threshold (with --n; "
                                      "default: the rule stored in the model beside its threshold, else 3 of 4; "
                                      "threshold choice then also chooses the rule)")
_g.add_argument("--n", type=int, help="see --k")
_g.add_argument("--refractory", type=float, dest="refractory_s",
                help="seconds without a new alarm on the same evidence after one ends (k of n above the "
                     "ended alarm's peak still alarms)")

SCHEDULER = _parent()
scheduler_arg(SCHEDULER)


def mqtt_config(args: argparse.Namespace) -> MqttConfig:
    """The broker settings of a ``BROKER`` command: the config's ``mqtt:`` section, else the defaults."""
    from seizurewatch.config import MqttConfig, load_mqtt_section

    return load_mqtt_section(args.config) if args.config else MqttConfig()


def decision_config(args: argparse.Namespace, threshold: float | None = None) -> DecisionConfig:
    """The decision of a ``DECISION`` command: the config's (or the daemon's defaults) with the options given."""
    import dataclasses

    from seizurewatch.config import DecisionConfig, load_config
    from seizurewatch.errors import ConfigError

    base = load_config(args.config).decision if getattr(args, "config", None) else DecisionConfig()
    changes: dict[str, Any] = {k: getattr(args, k) for k in ("k", "n", "refractory_s")
                               if getattr(args, k, None) is not None}
    if threshold is not None:
        changes["threshold"] = threshold
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as exc:
        raise ConfigError(f"decision options: {exc}") from None
