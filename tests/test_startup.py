"""A bed is never left unmonitored for good: with a valid config, what may come by itself (the amplifier,
the broker, the metrics port) is waited for, faulted and said; an LSL stream whose timestamps give
another rate than it declares is a fault with the figures. Real pylsl outlets on loopback, real ports."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from alarm_support import validate
from conftest import DOG1, MODEL, ROOT, free_port, mount_tmpfs, run_cli, run_daemon_until

from seizurewatch import daemon as daemon_mod
from seizurewatch.config import Config, MetricsConfig, ModelConfig, MqttConfig, OutboxConfig, SourceConfig, StreamConfig
from seizurewatch.daemon import Daemon, DaemonOptions
from seizurewatch.errors import BrokerError, SourceUnavailable
from seizurewatch.lslconfig import import_pylsl
from seizurewatch.metrics import PortInUse
from seizurewatch.player import eeg_info
from seizurewatch.replay import replay_config
from seizurewatch.service import is_stalled
from seizurewatch.sources.lsl import RateMonitor

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

DEVICE = ROOT / "devices" / "dog1-ecog16.yaml"
REC04 = DOG1 / "dog1_rec04.edf"
CHANNELS = tuple(f"c{i:03d}" for i in range(1, 17))
SERVICE = DaemonOptions(publish=False, keep_trying=True, require_pin=True)


def lsl_config(tmp_path: Path, source_id: str, **src) -> Config:
    source = SourceConfig(kind="lsl", source_id=source_id, resolve_timeout_s=src.pop("resolve_timeout_s", 1.0),
                          lost_after_s=2.0, **src)
    return Config(streams=(StreamConfig("bed1", source, str(DEVICE)),), model=ModelConfig(path=str(MODEL)),
                  outbox=OutboxConfig(path=str(tmp_path / "o.sqlite3")))


class Outlet:
    """An in-process amplifier: ``declared`` Hz in its description, ``delivered`` samples/s in fact, pushed
    without timestamps (liblsl stamps each chunk's last sample with its clock, as drivers do)."""

    def __init__(self, source_id: str, declared: float, delivered: float) -> None:
        self.pylsl = import_pylsl()
        info = eeg_info(self.pylsl, source_id, "EEG", source_id, CHANNELS, ("microvolts",) * 16, declared)
        self.outlet = self.pylsl.StreamOutlet(info, chunk_size=0)
        self.delivered = delivered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._push, daemon=True)
        self._thread.start()

    def _push(self) -> None:
        rng = np.random.default_rng(0)
        per = max(1, int(self.delivered / 20))  # 20 chunks a second
        t_next = time.monotonic()
        while not self._stop.is_set():
            self.outlet.push_chunk(rng.normal(0, 20, (per, 16)).astype(np.float32))
            t_next += per / self.delivered
            time.sleep(max(0.0, t_next - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        del self.outlet




def sid(tag: str) -> str:
    return f"test-{tag}-{uuid.uuid4().hex[:8]}"


# ----- no stream at start ----------------------------------------------------------------------------

def test_a_replay_still_refuses_at_once_when_the_stream_is_not_there(tmp_path):
    with pytest.raises(SourceUnavailable, match="no stream matches"):
        asyncio.run(Daemon(lsl_config(tmp_path, sid("absent")), DaemonOptions(publish=False)).prepare())


def test_no_stream_at_start_is_waited_for_faulted_then_monitored(tmp_path):
    source_id = sid("late")
    events: list[dict] = []
    daemon = Daemon(lsl_config(tmp_path, source_id), SERVICE)
    daemon.payload_sinks.append(events.append)
    outlet: list[Outlet] = []

    def faults(event: str) -> list[dict]:
        return [e for e in events if e["kind"] == "fault" and e["fault_type"] == "stream_lost" and e["event"] == event]

    async def main() -> None:
        await daemon.prepare()  # no exception: a service waits for the amplifier
        pipe = daemon.pipelines[0]
        assert pipe.waiting and "no stream matches" in pipe.waiting
        assert any("waiting for it" in n for n in daemon.notes)

        def progress() -> bool:
            if faults("start") and not outlet:
                assert daemon.ready.is_set(), "ready (READY=1) once it is knowingly waiting"
                assert pipe.state == "fault" and "cannot see the stream" in faults("start")[0]["detail"]
                assert not is_stalled(pipe, time.monotonic(), 15.0)  # honestly trying: watchdog fed
                outlet.append(Outlet(source_id, 400.0, 400.0))  # the amplifier is switched on
            return pipe.stats.windows >= 3

        await run_daemon_until(daemon, progress, timeout=90)

    try:
        asyncio.run(main())
    finally:
        for o in outlet:
            o.close()
    pipe = daemon.pipelines[0]
    assert len(faults("start")) == 1 and faults("end") and "stream found" in faults("end")[0]["detail"]
    assert pipe.stats.windows >= 3 and pipe.waiting is None


def test_the_watchdog_is_withheld_when_the_search_itself_hangs(tmp_path):
    daemon = Daemon(lsl_config(tmp_path, sid("hang")), SERVICE)
    asyncio.run(daemon.prepare())
    pipe = daemon.pipelines[0]
    pipe.faults.set("stream_lost", True, 0.0)
    assert not is_stalled(pipe, time.monotonic(), 15.0)
    # no attempt finished for longer than the watchdog allows: not "honestly trying" any more
    assert is_stalled(pipe, pipe.stats.last_progress + 16.0, 15.0)
    pipe.waiting = None  # a stream lost while running: the reader thread looks for it, the fault says so
    assert not is_stalled(pipe, pipe.stats.last_progress + 16.0, 15.0)


# ----- broker and metrics port at start -----------------------------------------------------------------

def _edf_config(tmp_path: Path, **mqtt) -> Config:
    base = replay_config(str(REC04))
    return Config(streams=base.streams, model=base.model,
                  mqtt=MqttConfig(url=f"mqtt://127.0.0.1:{free_port()}", connect_timeout_s=1.0,
                                  drain_timeout_s=0.0, **mqtt),
                  outbox=OutboxConfig(path=str(tmp_path / "o.sqlite3")))


def test_broker_down_at_start_journals_and_keeps_trying(tmp_path):
    cfg = _edf_config(tmp_path)
    with pytest.raises(BrokerError, match="unreachable"):  # a replay refuses (exit 3)
        asyncio.run(Daemon(cfg, DaemonOptions()).prepare())

    daemon = Daemon(cfg, DaemonOptions(keep_trying=True, require_pin=True))

    async def main() -> int:
        await daemon.prepare()
        assert daemon.broker_down_at_start == {"replay"}
        await daemon.run()  # the whole recording, nothing delivered
        return 0

    asyncio.run(main())
    assert daemon.events_emitted > 0
    assert daemon.outbox is not None
    from seizurewatch.alarms.outbox import Outbox

    box = Outbox.open_sync(cfg.outbox.path)
    try:
        assert box.depth_sync() == daemon.events_emitted  # every alarm waits on disk for the broker
    finally:
        box.close_sync()


def test_metrics_port_in_use_is_retried_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setattr(daemon_mod, "RETRY_S", 0.2)
    port = free_port()
    cfg = _edf_config(tmp_path)
    cfg = Config(streams=(StreamConfig("bed1", SourceConfig(kind="edf", path=str(REC04), speed=4.0), str(DEVICE)),),
                 model=cfg.model, outbox=cfg.outbox, metrics=MetricsConfig(listen=f"127.0.0.1:{port}"))
    busy = socket.socket()
    busy.bind(("127.0.0.1", port))
    busy.listen()
    with pytest.raises(PortInUse):
        asyncio.run(Daemon(cfg, DaemonOptions(publish=False)).prepare())
    daemon = Daemon(cfg, DaemonOptions(publish=False, keep_trying=True, require_pin=True))
    scraped: list[str] = []

    async def main() -> None:
        await daemon.prepare()
        assert any("is in use" in n for n in daemon.notes)

        def progress() -> bool:
            if daemon.pipelines[0].stats.windows >= 2 and busy.fileno() != -1:
                busy.close()  # whoever held the port lets go
            if busy.fileno() == -1:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                        scraped.append(r.read().decode())
                except OSError:
                    return False
            return bool(scraped)

        await run_daemon_until(daemon, progress, timeout=60)

    try:
        asyncio.run(main())
    finally:
        busy.close()
        daemon.metrics.shutdown()
    assert "seizurewatch_windows_classified_total{patient=\"bed1\"}" in scraped[0]


# ----- effective rate ----------------------------------------------------------------------------------

def test_rate_monitor_tolerates_a_device_clock_and_catches_a_double_rate():
    m = RateMonitor(400.0)
    ts = np.arange(0, 30, 1 / 399.6)
    verdicts = [m.feed(ts[i:i + 40]) for i in range(0, len(ts), 40)]
    assert not any(v for v in verdicts if v is not None) and abs(m.effective - 399.6) < 0.5
    m = RateMonitor(200.0)
    verdicts = [m.feed(ts[i:i + 40]) for i in range(0, len(ts), 40)]
    assert True in verdicts and abs(m.effective - 399.6) < 0.5


def test_a_stream_declaring_400_hz_and_delivering_800_is_a_fault_with_the_figures(tmp_path):
    source_id = sid("fast")
    outlet = Outlet(source_id, declared=400.0, delivered=800.0)
    events: list[dict] = []
    daemon = Daemon(lsl_config(tmp_path, source_id, resolve_timeout_s=10.0), DaemonOptions(publish=False))
    daemon.payload_sinks.append(events.append)

    def mismatch() -> list[dict]:
        return [e for e in events if e["kind"] == "fault" and e["fault_type"] == "rate_mismatch"]

    async def main() -> None:
        await daemon.prepare()
        await run_daemon_until(daemon, lambda: bool(mismatch()), timeout=60)

    try:
        asyncio.run(main())
    finally:
        outlet.close()
    start = mismatch()[0]
    assert start["event"] == "start" and "declares 400 Hz" in start["detail"]
    validate(start)  # a fault type the schema (and so every subscriber) knows
    effective = float(start["detail"].split("carry ")[1].split(" ")[0])
    assert 700 < effective < 900, start["detail"]


def test_journal_disk_not_mounted_is_exit_4_which_systemd_retries(tmp_path):
    """The journal's folder is missing under a read-only mount (the disk is not there): exit 4, which the
    unit does not list in RestartPreventExitStatus=; a folder that is there but read-only stays exit 2."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount_tmpfs(mnt, "size=64k,ro")
    try:
        cfg = tmp_path / "bed1.yaml"
        cfg.write_text(f"streams:\n  - patient: bed1\n    source: {{kind: edf, path: {REC04}}}\n"
                       f"model: {{path: {MODEL}}}\nmqtt: {{url: embedded}}\n"
                       f"outbox: {{path: {mnt / 'bed1' / 'j.sqlite3'}}}\n")
        r = run_cli("run", "--config", str(cfg), "--check")
        assert r.returncode == 4 and "Traceback" not in r.stderr, r.stderr
        assert "does not exist" in r.stderr and "not mounted yet" in r.stderr
        unit = (ROOT / "systemd" / "seizurewatch@.service").read_text()
        assert "RestartPreventExitStatus=2\n" in unit
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
