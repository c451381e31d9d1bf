"""Bad input gets one clear line and a non-zero exit, never a traceback."""

import json

import pytest
from conftest import DOG1, MODEL, ROOT, SCALP8, free_port, rewrite_metadata, run_cli

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them


def assert_one_line_error(r, code, *fragments):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("seizurewatch: error:")]
    assert len(lines) == 1, r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_version_and_help():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("seizurewatch ")
    r = run_cli("--help")
    assert r.returncode == 0
    for word in ("run", "replay", "demo", "EXIT STATUS", "DAEMON", "RESEARCH"):
        assert word in r.stdout


def test_missing_edf():
    assert_one_line_error(run_cli("replay", "nope.edf"), 2, "nope.edf", "recording not found")


def test_channels_not_matching_model():
    r = run_cli("replay", str(SCALP8 / "scalp8_rec01.edf"))
    assert_one_line_error(r, 2, "scalp8_rec01.edf", "c001", "missing", "the source has: C3")


def test_model_with_wrong_checksum(tmp_path):
    bad = tmp_path / "bad.pt"
    rewrite_metadata(MODEL, bad, lambda data: json.dumps({**json.loads(data), "weights_sha256": "f" * 64}).encode())
    r = run_cli("replay", str(DOG1 / "dog1_rec04.edf"), "--model", str(bad))
    assert_one_line_error(r, 2, "bad.pt", "checksum mismatch")


def test_unreachable_broker_at_start():
    r = run_cli("replay", str(DOG1 / "dog1_rec04.edf"), "--mqtt-url", f"mqtt://127.0.0.1:{free_port()}")
    assert_one_line_error(r, 3, "MQTT broker mqtt://127.0.0.1:", "unreachable")


def test_bad_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"streams: []\nmodel: {{path: {MODEL}}}\n")
    assert_one_line_error(run_cli("run", "--config", str(cfg)), 2, str(cfg), "at least one stream")


def test_plaintext_to_remote_broker_refused(tmp_path):
    r = run_cli("replay", str(DOG1 / "dog1_rec04.edf"), "--mqtt-url", "mqtt://10.1.2.3:1883")
    assert_one_line_error(r, 2, "refusing plaintext MQTT", "10.1.2.3")


def test_run_check_validates_shipped_demo_config():
    r = run_cli("run", "--config", str(ROOT / "config" / "demo.yaml"), "--check")
    assert r.returncode == 0 and "OK" in r.stdout


@pytest.mark.slow
def test_replay_jsonl_offline():
    r = run_cli("replay", str(DOG1 / "dog1_rec04.edf"), "--jsonl")
    assert r.returncode == 0, r.stderr
    events = [json.loads(x) for x in r.stdout.splitlines()]
    starts = [e for e in events if e["event"] == "start" and e["kind"] == "alarm"]
    assert starts and 60 <= starts[0]["t"] <= 101
    assert "x real time" in r.stderr


@pytest.mark.slow
def test_demo_with_embedded_broker():
    r = run_cli("demo", "--speed", "max")
    assert r.returncode == 0, r.stderr
    assert "in-process MQTT broker" in r.stdout
    assert "ALARM start" in r.stdout
    summary = r.stdout.strip().splitlines()[-1]
    assert summary.startswith("summary: seizure annotated at 60 s") and "alarm raised at" in summary
    latency = int(summary.split("(+")[1].split(" s)")[0])
    assert latency <= 10 and summary.endswith("false alarms 0"), summary  # within seconds of onset, no false alarm


@pytest.mark.slow
def test_demo_with_real_mosquitto(mosquitto):
    r = run_cli("demo", "--speed", "max", "--mqtt-url", mosquitto.url)
    assert r.returncode == 0, r.stderr
    assert "in-process" not in r.stdout and "ALARM start" in r.stdout
