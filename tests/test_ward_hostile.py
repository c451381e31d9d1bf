"""The ward broker attacked (issue #24): an account that may not publish for its bed, a bed's session
taken over by another account, a flood of forged alarms; against the shipped config/mosquitto/ files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from conftest import DOG1, MODEL, WardMosquitto, run_cli, run_daemon_until

from seizurewatch.config import load_config
from seizurewatch.daemon import Daemon, DaemonOptions

pytestmark = pytest.mark.slow


def ward_daemon_config(path: Path, b: WardMosquitto, patient: str, account: str, speed: str = "max") -> Path:
    path.write_text(
        f"streams:\n  - patient: {patient}\n"
        f"    source: {{kind: edf, path: {DOG1 / 'dog1_rec04.edf'}, speed: {speed}}}\n"
        f"model: {{path: {MODEL}}}\n"
        f"mqtt:\n  url: mqtt://127.0.0.1:{b.port}\n  drain_timeout_s: 2\n  username: {account}\n"
        f"  password_file: {b.password_file(account)}\n"
        f"outbox: {{path: {path.parent / (patient + '.sqlite3')}}}\n")
    return path


def journal(path: Path) -> list[tuple[str, float | None]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT payload, delivered FROM events ORDER BY id").fetchall()
    finally:
        db.close()


def test_a_daemon_whose_acl_is_for_another_bed_keeps_its_events_undelivered_and_faults(ward_broker, tmp_path,
                                                                                       caplog):
    """bedside1's ACL block is for bed1; a daemon monitoring bed2 under it (a copied block not edited) gets
    PUBACK 0x87 for everything: nothing is marked delivered, the fault and metric say so, --check fails."""
    cfg_path = ward_daemon_config(tmp_path / "bed2.yaml", ward_broker, "bed2", "bedside1")
    r = run_cli("run", "--config", str(cfg_path), "--check", timeout=120)
    assert r.returncode == 3, (r.stdout, r.stderr[-2000:])
    last = r.stderr.strip().splitlines()[-1]
    assert "refused a test publish on seizurewatch/bed2/status" in last and "'bedside1'" in last, last
    assert "OK" not in r.stdout

    daemon = Daemon(load_config(cfg_path), DaemonOptions())

    def refused_alarm_journaled() -> bool:
        pipe = daemon.pipelines[0] if daemon.pipelines else None
        return pipe is not None and "publish_refused" in pipe.faults.active and any(
            '"event":"start"' in p and '"kind":"alarm"' in p for p, _ in journal(tmp_path / "bed2.sqlite3"))

    asyncio.run(run_daemon_until(daemon, refused_alarm_journaled, timeout=120))
    rows = journal(tmp_path / "bed2.sqlite3")
    assert any('"kind":"alarm"' in p and '"event":"start"' in p for p, _ in rows)
    assert rows and all(delivered is None for _, delivered in rows), "a refused publish was marked delivered"
    assert any('"fault_type":"publish_refused"' in p for p, _ in rows)
    refused = daemon.metrics.registry.get_sample_value("seizurewatch_publish_refused_total", {"patient": "bed2"})
    assert refused and refused >= 1
    assert any("refused a publish" in rec.getMessage() and "bedside1" in rec.getMessage() for rec in caplog.records)


def test_run_check_passes_with_the_right_account(ward_broker, tmp_path):
    cfg_path = ward_daemon_config(tmp_path / "bed1.yaml", ward_broker, "bed1", "bedside1")
    r = run_cli("run", "--config", str(cfg_path), "--check", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1].startswith(f"{cfg_path}: OK")
