"""``seizurewatch run``: the daemon as a service — signals, config reload, systemd notify.

SIGTERM/SIGINT drain (finish the current block, end open alarms, flush the outbox,
publish ``offline``) and exit 0. SIGHUP reloads the config: threshold, decision parameters
and log level change without dropping the stream; an invalid new config is rejected and
the old one keeps running. With ``NOTIFY_SOCKET`` set (systemd ``Type=notify``) it sends
``READY=1`` once the model is loaded, the broker connected and the first samples arrived,
and ``WATCHDOG=1`` only while every pipeline makes progress.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time

from seizurewatch.config import Config, load_config
from seizurewatch.daemon import Daemon, DaemonOptions
from seizurewatch.errors import SeizurewatchError

log = logging.getLogger(__name__)


class Notifier:
    """sd_notify through the ``sdnotify`` package; silent when not under systemd."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._n = None
        if self.enabled:
            import sdnotify

            self._n = sdnotify.SystemdNotifier()

    def send(self, msg: str) -> None:
        if self._n is not None:
            self._n.notify(msg)


def watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    try:
        return max(int(usec) / 1e6 / 2.0, 0.05)
    except ValueError:
        return None


async def _watchdog(daemon: Daemon, notifier: Notifier, interval: float) -> None:
    """Ping only when each pipeline moved since the last ping: a stuck pipeline gets us restarted."""
    await daemon.ready.wait()
    while True:
        await asyncio.sleep(interval)
        now = time.monotonic()
        stale = [p.patient for p in daemon.pipelines if now - p.stats.last_progress > max(2 * interval, 1.0)]
        if not stale:
            notifier.send("WATCHDOG=1")
        else:
            log.error("pipeline stalled; withholding watchdog ping", extra={"patients": stale})


async def _status(daemon: Daemon, notifier: Notifier) -> None:
    while True:
        await asyncio.sleep(5.0)
        parts = [f"{p.patient}:{p.state} p={p.stats.last_probability or 0:.2f}" for p in daemon.pipelines]
        notifier.send("STATUS=" + "; ".join(parts))


def reload_config(daemon: Daemon, path: str) -> bool:
    """Apply what can change without dropping streams; False (and the old config kept) if invalid."""
    try:
        new = load_config(path)
    except SeizurewatchError as exc:
        log.error("reload rejected; keeping the running config", extra={"error": str(exc)})
        return False
    old = daemon.cfg
    if [s.patient for s in new.streams] != [s.patient for s in old.streams] or new.model.path != old.model.path:
        log.warning("reload: streams and model need a restart; applying decision and logging only")
    for pipe in daemon.pipelines:
        pipe.reconfigure(new.decision)
    logging.getLogger().setLevel(new.logging.level)
    daemon.cfg = dataclasses.replace(old, decision=new.decision, logging=new.logging)
    log.info("config reloaded", extra={"threshold": new.decision.threshold, "k": new.decision.k,
                                       "n": new.decision.n, "level": new.logging.level})
    return True


async def run_service(cfg: Config, args: argparse.Namespace | None = None) -> int:
    if args is None or args.log_level is None:
        logging.getLogger().setLevel(cfg.logging.level)
    notifier = Notifier()
    notifier.send("STATUS=loading model and opening streams")
    daemon = Daemon(cfg, DaemonOptions(publish=True))
    await daemon.prepare()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, daemon.stop)
    loop.add_signal_handler(signal.SIGINT, daemon.stop)
    loop.add_signal_handler(signal.SIGHUP, lambda: reload_config(daemon, cfg.source_file))
    daemon.on_ready.append(lambda: notifier.send("READY=1\nSTATUS=running"))
    extra: list[asyncio.Task[None]] = []
    if notifier.enabled:
        extra.append(asyncio.create_task(_status(daemon, notifier)))
        interval = watchdog_interval()
        if interval:
            extra.append(asyncio.create_task(_watchdog(daemon, notifier, interval)))
    try:
        await daemon.run()
    finally:
        notifier.send("STOPPING=1")
        for t in extra:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
    log.info("stopped")
    return 0
