"""Logging: JSON lines for journald, rate-limited repeats that never swallow a state change,
no PHI from a recording's header in the daemon's output."""

from __future__ import annotations

import io
import json
import logging
import os

import numpy as np
import pyedflib
import pytest
from conftest import DOG1, MODEL, ROOT, run_cli

from seizurewatch import logsetup
from seizurewatch.logsetup import JsonFormatter, RateLimit, setup_logging

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(logsetup.time, "monotonic", c)
    return c


@pytest.fixture
def captured():
    buf = io.StringIO()
    setup_logging("DEBUG", "json", stream=buf, rate_limit_s=10.0)
    yield buf
    setup_logging("WARNING", "text")


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def test_json_line_carries_level_logger_message_and_extras(captured):
    logging.getLogger("seizurewatch.pipeline").warning("fault start", extra={"patient": "bed1", "fault": "flatline",
                                                                             "channels": ["c001"], "t": 12.5})
    (rec,) = lines(captured)
    assert rec["level"] == "WARNING" and rec["logger"] == "seizurewatch.pipeline" and rec["msg"] == "fault start"
    assert rec["patient"] == "bed1" and rec["fault"] == "flatline" and rec["channels"] == ["c001"]
    assert isinstance(rec["ts"], float)


def test_repeats_are_rate_limited_and_counted(captured, clock):
    log = logging.getLogger("seizurewatch.test")
    for i in range(50):
        clock.now += 0.1  # 5 s of the same complaint
        log.error("pipeline stalled; withholding watchdog pings", extra={"patients": ["bed1"], "age_s": i})
    assert len(lines(captured)) == 1
    clock.now += 10.0
    log.error("pipeline stalled; withholding watchdog pings", extra={"patients": ["bed1"], "age_s": 99})
    out = lines(captured)
    assert len(out) == 2 and out[1]["repeated"] == 49


def test_a_state_change_is_never_taken_for_a_repeat(captured, clock):
    log = logging.getLogger("seizurewatch.pipeline")
    log.warning("alarm %s", "start", extra={"patient": "bed1", "alarm_id": "a1", "t": 66.0})
    log.warning("alarm %s", "end", extra={"patient": "bed1", "alarm_id": "a1", "t": 67.0})
    log.warning("alarm %s", "start", extra={"patient": "bed1", "alarm_id": "a2", "t": 68.0})
    log.warning("fault start", extra={"patient": "bed1", "fault": "flatline", "t": 1.0})
    log.warning("fault start", extra={"patient": "bed1", "fault": "clipping", "t": 1.0})
    log.warning("fault start", extra={"patient": "bed2", "fault": "flatline", "t": 1.0})
    log.warning("fault start", extra={"patient": "bed1", "fault": "flatline", "t": 2.0})  # a repeat
    out = lines(captured)
    assert [(r["msg"], r.get("alarm_id"), r.get("fault"), r["patient"]) for r in out] == [
        ("alarm start", "a1", None, "bed1"), ("alarm end", "a1", None, "bed1"), ("alarm start", "a2", None, "bed1"),
        ("fault start", None, "flatline", "bed1"), ("fault start", None, "clipping", "bed1"),
        ("fault start", None, "flatline", "bed2"),
    ]


def test_rate_limit_memory_is_bounded(clock):
    rl = RateLimit(seconds=1.0)
    for i in range(3 * RateLimit.MAX_KEYS):
        clock.now += 0.01
        rl.filter(logging.LogRecord("x", logging.INFO, "f", 1, "alarm %s", (f"id{i}",), None))
    assert len(rl.last) <= RateLimit.MAX_KEYS + 1


def test_phi_named_extras_are_redacted(captured):
    logging.getLogger("seizurewatch.x").info("header", extra={"patientname": "Jane Roe", "birthdate": "1961-02-03",
                                                              "patient": "bed1"})
    raw = captured.getvalue()
    assert "Jane" not in raw and "1961" not in raw
    assert lines(captured)[0]["patient"] == "bed1"


def test_syslog_priority_prefix_only_under_journald(tmp_path, monkeypatch):
    f = open(tmp_path / "journal", "w")  # noqa: SIM115 - stands in for the journal stream systemd hands us
    st = os.fstat(f.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    try:
        setup_logging("INFO", "json", stream=f)
        logging.getLogger("seizurewatch.x").error("broker down", extra={"patient": "bed1"})
        logging.getLogger("seizurewatch.x").info("ready")
        f.flush()
        got = (tmp_path / "journal").read_text().splitlines()
        assert got[0].startswith("<3>{") and json.loads(got[0][3:])["msg"] == "broker down"
        assert got[1].startswith("<6>{")
        other = io.StringIO()  # not the journal stream: plain JSON
        setup_logging("INFO", "json", stream=other)
        logging.getLogger("seizurewatch.x").error("broker down")
        assert other.getvalue().startswith("{")
    finally:
        setup_logging("WARNING", "text")
        f.close()


def test_json_formatter_keeps_exceptions_on_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, "f", 1, "failed", None, sys_exc_info())
    line = JsonFormatter().format(rec)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exc"]


def sys_exc_info():
    import sys

    return sys.exc_info()


def write_edf_with_phi(path, seconds: int = 30) -> None:
    """dog1_rec04's first seconds, with a patient name, code, birth date and sex in the header."""
    src = pyedflib.EdfReader(str(DOG1 / "dog1_rec04.edf"))
    try:
        n = len(src.getSignalLabels())
        rate = src.getSampleFrequency(0)
        data = [src.readSignal(i, 0, int(seconds * rate)) for i in range(n)]
        headers = src.getSignalHeaders()
    finally:
        src.close()
    w = pyedflib.EdfWriter(str(path), n, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        w.setSignalHeaders(headers)
        w.setPatientName("Jane_Roe")
        w.setPatientCode("MRN4711")
        w.setSex(0)
        w.setBirthdate("03.02.1961")
        w.setPatientAdditional("lives_at_12_Elm_St")
        w.writeSamples([np.asarray(d) for d in data])
    finally:
        w.close()


def test_daemon_logs_no_phi_from_the_recording_header(tmp_path, cli_env):
    edf = tmp_path / "jane.edf"
    write_edf_with_phi(edf)
    assert b"Jane" in edf.read_bytes()[:256]  # the header really carries it
    r = run_cli("--log-level", "DEBUG", "--log-format", "json", "replay", str(edf), "--speed", "max",
                "--model", str(MODEL), "--device", str(ROOT / "devices" / "dog1-ecog16.yaml"), "--patient", "bed9",
                env=cli_env)
    assert r.returncode == 0, r.stderr
    logged = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    assert logged, "no JSON log lines at DEBUG"
    for needle in ("Jane", "Roe", "MRN4711", "1961", "Elm_St"):
        assert needle not in r.stderr and needle not in r.stdout, needle
