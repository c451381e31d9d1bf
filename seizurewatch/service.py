"""``seizurewatch run``: the daemon as a service — signals, config reload, systemd notify.

SIGTERM/SIGINT drain: every pipeline finishes the block (and so the window) it is on,
open alarms and faults end, the outbox is flushed to the broker, ``offline`` is published,
and the process exits 0 — within ``mqtt.drain_timeout_s`` (the one drain bound: the links try that
long) plus ``DRAIN_MARGIN_S`` even when the broker hangs (what is not delivered by then stays journaled
and goes out on the next start). A second signal stops at once.

SIGHUP (``systemctl reload``) re-reads the config file: threshold, decision parameters and
log level change without dropping the stream; an invalid new file is rejected with one
error line and the running config is kept.

With ``NOTIFY_SOCKET`` set (systemd ``Type=notify``) it sends ``READY=1`` once the model is
loaded, the broker connected and every stream delivered its first samples; ``STATUS=``
lines on every state change; and — with ``WATCHDOG_USEC`` — ``WATCHDOG=1`` only while every
pipeline is making progress of its own (handling samples, or reporting its device as lost).
A source that hangs, an inference call that never returns or a blocked event loop stop
the pings, and systemd restarts the unit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

from seizurewatch.config import Config, load_config
from seizurewatch.daemon import Daemon, DaemonOptions
from seizurewatch.errors import SeizurewatchError
from seizurewatch.pipeline import StreamPipeline
from seizurewatch.signals import capture_signals

log = logging.getLogger(__name__)

DRAIN_MARGIN_S = 5.0  # SIGTERM -> exit: mqtt.drain_timeout_s, then this for the links to give up and log it
STATUS_EVERY_S = 5.0


class Notifier:
    """sd_notify through the ``sdnotify`` package; silent when not under systemd."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._n = None
        self.last_status = ""
        if self.enabled:
            import sdnotify

            self._n = sdnotify.SystemdNotifier()

    def send(self, msg: str) -> None:
        if self._n is not None:
            self._n.notify(msg)

    def status(self, text: str) -> None:
        """One ``STATUS=`` line (ASCII, one line), sent only when it changed."""
        text = text.replace("\n", " ").encode("ascii", "replace").decode()[:400]
        if text != self.last_status:
            self.last_status = text
            self.send(f"STATUS={text}")


def watchdog_usec(env: Mapping[str, str] | None = None) -> int | None:
    """WATCHDOG_USEC if the watchdog is meant for this process (sd_watchdog_enabled semantics)."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec


def is_stalled(pipe: StreamPipeline, now: float, stale_after: float) -> bool:
    """No item handled for ``stale_after`` seconds, and not knowingly waiting for a lost device.

    A device reported lost (``stream_lost`` fault, already published) is the pipeline doing
    its job; restarting would only turn "cannot tell" into "offline". Anything else that
    stops the flow — a hung read, a stuck model call — is what the watchdog is for.
    """
    snap = pipe.snapshot()
    if "stream_lost" in snap.faults and snap.waiting is None:
        return False
    # Waiting for a stream that was not there at start: every finished attempt to find it is progress;
    # an attempt that hangs is not.
    return now - snap.last_progress > stale_after


def describe(daemon: Daemon) -> str:
    """What the daemon is doing, for ``STATUS=`` (patient ids only, no other PHI)."""
    parts = []
    for snap in (p.snapshot() for p in daemon.pipelines):
        prob = snap.probability
        link = daemon.links.get(snap.patient)
        broker = "" if link is None else ("" if link.connected.is_set() else ", broker down (journaling)")
        faults = f" {'+'.join(snap.faults)}" if snap.faults else ""
        if snap.waiting is not None:
            faults += " (cannot see the stream; looking for it)"
        parts.append(f"{snap.patient}: {snap.state}{faults} p={0.0 if prob is None else prob:.2f} "
                     f"{snap.windows} windows{broker}")
    return "running; " + "; ".join(parts)


class Service:
    """Owns the signal handlers, the reload path and the systemd conversation around one Daemon."""

    def __init__(self, cfg: Config, args: argparse.Namespace | None = None,
                 notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.level_from_cli = args is not None and getattr(args, "log_level", None) is not None
        self.format_from_cli = args is not None and getattr(args, "log_format", None) is not None
        self.notifier = notifier or Notifier()
        # the links keep trying for mqtt.drain_timeout_s (PatientLink.close); the process ends a margin later
        self.drain_timeout_s = cfg.mqtt.drain_timeout_s + DRAIN_MARGIN_S
        self.daemon = Daemon(cfg, DaemonOptions(publish=True, keep_trying=True, require_pin=True))
        self.stopping = False
        self.forced = False
        self.prepared = False
        self.reload_pending = False
        self._reload_lock = asyncio.Lock()
        self._main: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ----- signals ---------------------------------------------------------------------
    def signal_handlers(self) -> dict[signal.Signals, Callable[[signal.Signals], None]]:
        """What each signal does (installed by ``signals.capture_signals`` around run())."""
        return {signal.SIGTERM: lambda sig: self.request_stop(sig.name),
                signal.SIGINT: lambda sig: self.request_stop(sig.name),
                signal.SIGHUP: lambda sig: self.request_reload()}

    def request_stop(self, why: str = "stop") -> None:
        if self.stopping:
            log.warning("second stop request; stopping now", extra={"signal": why})
            self._force()
            return
        self.stopping = True
        log.info("draining", extra={"signal": why, "timeout_s": self.drain_timeout_s})
        self.notifier.send("STOPPING=1")
        self.notifier.status("draining: finishing the current window, ending open alarms, flushing the outbox")
        if self.prepared:
            self.daemon.stop()
            asyncio.get_running_loop().call_later(self.drain_timeout_s, self._force)
        elif self._main is not None:
            self._main.cancel()  # still starting: nothing to drain

    def _force(self) -> None:
        if self._main is not None and not self._main.done():
            if self.prepared:
                log.error("drain did not finish in time; exiting with undelivered events kept in the outbox",
                          extra={"timeout_s": self.drain_timeout_s})
            self.forced = True
            self._main.cancel()

    def request_reload(self) -> None:
        if self.stopping:
            log.info("reload ignored while draining")
            return
        if not self.prepared:
            self.reload_pending = True
            log.info("reload requested during start-up; applied once started")
            return
        self._spawn(self.reload())

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----- reload ----------------------------------------------------------------------
    async def reload(self) -> bool:
        async with self._reload_lock:
            self.notifier.send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
            ok = False
            try:
                new = await asyncio.to_thread(load_config, self.cfg.source_file)
                self.apply(new)
                ok = True
            except SeizurewatchError as exc:
                log.error("reload rejected; keeping the running config", extra={"error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - a reload must never take the daemon down
                log.exception("reload failed; keeping the running config", extra={"error": str(exc)})
            self.daemon.metrics.reloads_total.labels("ok" if ok else "rejected").inc()
            self.notifier.send("READY=1")
            self.notifier.status(("config reloaded; " if ok else "reload REJECTED (see log); ")
                                 + describe(self.daemon))
            return ok

    def apply(self, new: Config) -> None:
        """Apply what can change without dropping streams; say what needs a restart."""
        old = self.cfg
        live = ("decision", "logging", "source_file")
        restart = [f.name for f in dataclasses.fields(Config)
                   if f.name not in live and getattr(new, f.name) != getattr(old, f.name)]
        if new.logging.format != old.logging.format and not self.format_from_cli:
            restart.append("logging.format")
        if restart:
            log.warning("reload: these settings take effect only after a restart",
                        extra={"sections": restart})
        for pipe in self.daemon.pipelines:
            pipe.reconfigure(new.decision)
        self.daemon.escalator.after_s = new.decision.escalate_after_s
        if not self.level_from_cli:
            logging.getLogger().setLevel(new.logging.level)
        self.cfg = dataclasses.replace(old, decision=new.decision, logging=new.logging)
        self.daemon.cfg = self.cfg
        self._publish_thresholds()
        first = self.daemon.pipelines[0].decision if self.daemon.pipelines else None
        threshold, (k, n) = (first.threshold, (first.k, first.n)) if first else (None, new.decision.rule)
        log.info("config reloaded", extra={"threshold": threshold, "k": k, "n": n,
                                           "hysteresis": new.decision.hysteresis, "level": new.logging.level})

    def _publish_thresholds(self) -> None:
        m = self.daemon.metrics
        for pipe in self.daemon.pipelines:
            m.threshold.labels(pipe.patient).set(pipe.decision.threshold)
        if self.daemon.pipelines:
            meta, pipe = self.daemon.pipelines[0].meta, self.daemon.pipelines[0]
            m.set_model(meta.name, meta.weights_sha256, pipe.decision.threshold, pipe.context.threshold_policy,
                        self.daemon.model_path)

    # ----- background: status and watchdog --------------------------------------------
    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            if not self.stopping:
                self.notifier.status(describe(self.daemon))

    async def _watchdog_loop(self, usec: int) -> None:
        """Ping at half the period, and only when every pipeline moved on its own since."""
        interval = max(usec / 2e6, 0.05)
        stale_after = max(interval, 1.0)
        await self.daemon.ready.wait()
        withheld = False
        while True:
            await asyncio.sleep(interval)
            if self.stopping:  # pipelines end on purpose; systemd does not watch a stopping unit
                return
            now = time.monotonic()
            stalled = [p.patient for p in self.daemon.pipelines if is_stalled(p, now, stale_after)]
            if not stalled:
                self.notifier.send("WATCHDOG=1")
                self.daemon.metrics.watchdog_total.labels("sent").inc()
                if withheld:
                    log.warning("pipelines moving again; watchdog pings resumed")
                    withheld = False
                continue
            self.daemon.metrics.watchdog_total.labels("withheld").inc()
            if not withheld:
                log.error("pipeline stalled; withholding watchdog pings so systemd restarts us",
                          extra={"patients": stalled, "stale_after_s": stale_after})
                withheld = True
            ages = ", ".join(f"{p.patient} {now - p.stats.last_progress:.0f} s" for p in self.daemon.pipelines
                             if p.patient in stalled)
            self.notifier.status(f"STALLED: no progress ({ages}); watchdog withheld")

    def _on_ready(self) -> None:
        startup = time.monotonic() - self.daemon.started_at
        self.daemon.metrics.startup_seconds.set(startup)
        self.notifier.send("READY=1")
        self.notifier.status(describe(self.daemon))

    def _on_state(self, patient: str, state: str, info: dict[str, Any]) -> None:
        log.info("state %s", state, extra={"patient": patient, "state": state})
        if self.daemon.ready.is_set() and not self.stopping:
            self.notifier.status(describe(self.daemon))

    # ----- main ------------------------------------------------------------------------
    async def _prepare_and_run(self) -> None:
        d = self.daemon
        self.notifier.status(f"starting: loading model {os.path.basename(self.cfg.model.path)}, "
                             f"opening {len(self.cfg.streams)} stream(s), checking the broker")
        await d.prepare()
        self.prepared = True
        import torch

        meta = d.pipelines[0].meta if d.pipelines else None
        log.info("started", extra={"streams": [p.patient for p in d.pipelines],
                                   "model": meta.name if meta else None,
                                   "weights_sha256": meta.weights_sha256[:12] if meta else None,
                                   "file_sha256": d.model_sha256[:12] or None,
                                   "torch_threads": torch.get_num_threads(),
                                   "torch_interop_threads": torch.get_num_interop_threads()})
        for pipe in d.pipelines:
            d.metrics.add_patient(pipe.patient)
            pipe.on_state.append(functools.partial(self._on_state, pipe.patient))
        self._publish_thresholds()
        d.on_ready.append(self._on_ready)
        self.notifier.status("started: waiting for the broker connection and the first samples")
        if self.reload_pending:
            self._spawn(self.reload())
        if self.notifier.enabled:
            self._spawn(self._status_loop())
            usec = watchdog_usec()
            if usec:
                self._spawn(self._watchdog_loop(usec))
        await d.run()

    async def run(self) -> int:
        with capture_signals(self.signal_handlers()):
            return await self._run()

    async def _run(self) -> int:
        self._main = asyncio.create_task(self._prepare_and_run(), name="service")
        try:
            await self._main
        except SeizurewatchError as exc:
            self.notifier.status(f"failed: {exc}")
            raise
        except asyncio.CancelledError:
            if not (self.stopping or self.forced):
                raise
            if not self.prepared:
                log.info("stopped during start-up")
        finally:
            for t in list(self._tasks):
                t.cancel()
            for t in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            self.daemon.metrics.shutdown()
        if self.forced and self.daemon.outbox is not None:
            with contextlib.suppress(Exception):
                left = self.daemon.outbox.depth_sync()
                log.warning("undelivered events left in the outbox; they go out on the next start",
                            extra={"events": left})
        log.info("stopped", extra={"events": self.daemon.events_emitted})
        return 0


async def run_service(cfg: Config, args: argparse.Namespace | None = None) -> int:
    """The ``run`` command: the config's log level/format unless the command line set them."""
    from seizurewatch.logsetup import setup_logging

    level = args.log_level if args is not None and getattr(args, "log_level", None) else cfg.logging.level
    fmt = args.log_format if args is not None and getattr(args, "log_format", None) else cfg.logging.format
    setup_logging(level, fmt)
    return await Service(cfg, args).run()

