"""WEAK cases of issue #24: careless input gets one line naming the file/key and the fix, with the right
exit code (2: fix the config; 3: the broker; 4: storage), or the behaviour a user would expect."""

from __future__ import annotations

from pathlib import Path

import pytest
from alarm_support import daemon_config
from conftest import DOG1, run_cli

from seizurewatch.errors import ConfigError
from seizurewatch.typedyaml import read_yaml

pytestmark = pytest.mark.needs_data  # most cases run the daemon's start-up on dog1_rec04


@pytest.mark.parametrize("text, line", [("decision:\n  k: 3\n  k: 5\n", 3), ("a: {x: 1, x: 2}\n", 1),
                                        ("a: 1\nb: 2\na: 3\n", 3)])
def test_a_key_given_twice_is_refused_with_its_line(tmp_path, text, line):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError) as exc:
        read_yaml(tmp_path / "c.yaml")
    assert f"c.yaml: line {line}," in str(exc.value) and "duplicate key" in str(exc.value)
    (tmp_path / "ok.yaml").write_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert read_yaml(tmp_path / "ok.yaml")["other"] == {"x": 1, "y": 2}


def test_run_check_refuses_a_duplicated_key(tmp_path):
    cfg = daemon_config(tmp_path / "c.yaml", "mqtt://127.0.0.1:1883", tmp_path / "j.sqlite3")
    cfg.write_text(cfg.read_text() + "decision:\n  k: 3\n  k: 5\n")
    r = run_cli("run", "--config", str(cfg), "--check")
    assert r.returncode == 2 and "duplicate key 'k'" in r.stderr.strip().splitlines()[-1]
    assert DOG1.exists()


def _cfg(tmp_path, source: str, extra: str = "") -> str:
    from conftest import MODEL

    p = tmp_path / "c.yaml"
    p.write_text(f"streams:\n  - patient: bed1\n    source: {source}\nmodel: {{path: {MODEL}}}\n"
                 f"outbox: {{path: {tmp_path / 'j.sqlite3'}}}\n{extra}")
    return str(p)


def test_lsl_keys_on_an_edf_source_are_refused(tmp_path):
    r = run_cli("run", "--config", _cfg(tmp_path, f"{{kind: edf, path: {DOG1 / 'dog1_rec04.edf'}, name: Amp1}}"),
                "--check")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].endswith(
        "streams[0].source: name: an LSL setting, but this source is kind: edf (set kind: lsl, or remove name)")


def test_run_refuses_the_embedded_broker(tmp_path):
    cfg = _cfg(tmp_path, f"{{kind: edf, path: {DOG1 / 'dog1_rec04.edf'}}}", "mqtt: {url: embedded}\n")
    for extra in ((), ("--check",)):
        r = run_cli("run", "--config", cfg, *extra)
        assert r.returncode == 2, r.stderr
        assert "mqtt.url: 'embedded' is an in-process broker" in r.stderr.strip().splitlines()[-1]


def test_a_model_of_another_framework_is_refused_by_name(tmp_path):
    from conftest import MODEL

    from seizurewatch.errors import ModelError
    from seizurewatch.modelfile import load_model

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(MODEL.read_bytes())  # even a TorchScript archive under that name: the name says ONNX
    with pytest.raises(ModelError, match=r"model.onnx: ONNX is not a format seizurewatch runs; export"):
        load_model(onnx)


def test_the_readme_broker_install_step_gives_a_config_debians_mosquitto_loads(tmp_path):
    """The README's step on Debian's layout (its mosquitto.conf sets persistence_location and includes
    conf.d): Mosquitto used to refuse to start ('Duplicate persistence_location value')."""
    import re
    import shutil
    import subprocess

    from conftest import ROOT, free_port

    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.skip("mosquitto is not installed")
    readme = (ROOT / "README.md").read_text()
    step = next(line for line in readme.splitlines() if "/etc/mosquitto/conf.d/seizurewatch.conf" in line)
    etc = tmp_path / "etc"
    (etc / "conf.d").mkdir(parents=True)
    (etc / "mosquitto.conf").write_text(  # Debian 13's, its folders moved into the test's
        f"persistence true\npersistence_location {tmp_path}/\nlog_dest stderr\ninclude_dir {etc / 'conf.d'}\n")
    cmd = step.replace("sudo ", "").replace("/etc/mosquitto", str(etc)).replace(" >/dev/null", "")
    subprocess.run(cmd, shell=True, cwd=ROOT, check=True, capture_output=True)
    installed = etc / "conf.d" / "seizurewatch.conf"
    text = installed.read_text()
    text = re.sub(r"(?m)^listener 1883 127.0.0.1$", f"listener {free_port()} 127.0.0.1", text)
    tls = r"(cafile|certfile|keyfile|tls_version)"
    text = re.sub(rf"(?m)^listener 8883\n{tls}.*(\n{tls}.*)*", "", text)  # needs the ward's certificates
    installed.write_text(text.replace("password_file /etc/mosquitto/seizurewatch.passwd", "")
                         .replace("acl_file /etc/mosquitto/seizurewatch.acl", ""))
    proc = subprocess.Popen([exe, "-c", str(etc / "mosquitto.conf")], stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "Error" in line or "Opening ipv4 listen socket" in line or "running" in line:
                break
    finally:
        proc.kill()
        proc.wait()
    log = "".join(seen)
    assert "Duplicate persistence_location" not in log and "Error" not in log, log


def test_a_tls_plain_mismatch_is_reported_as_such_and_fails_run_check(tmp_path, mosquitto):
    from conftest import OPENSSL, Mosquitto, make_ca, make_cert

    if not Path(OPENSSL).exists():
        pytest.skip("openssl CLI not installed")
    make_ca(tmp_path, "ca")
    make_cert(tmp_path, "server", "ca", san="IP:127.0.0.1")
    tls = Mosquitto(tmp_path, extra_conf=f"cafile {tmp_path}/ca.crt\ncertfile {tmp_path}/server.crt\n"
                                         f"keyfile {tmp_path}/server.key\nuser root\n")
    tls.start()
    try:
        cases = [(f"mqtts://127.0.0.1:{mosquitto.port}", f"  ca_file: {tmp_path}/ca.crt\n",
                  "speaks plain MQTT, not TLS, on this port: use mqtt://"),
                 (f"mqtt://127.0.0.1:{tls.port}", "", "speaks TLS on this port: use mqtts://")]
        for url, extra, said in cases:
            cfg = daemon_config(tmp_path / "c.yaml", url, tmp_path / "j.sqlite3",
                                mqtt_extra=f"  connect_timeout_s: 2\n{extra}")
            r = run_cli("run", "--config", str(cfg), "--check")
            assert r.returncode == 3, (url, r.stdout, r.stderr[-1500:])
            assert said in r.stderr.strip().splitlines()[-1], r.stderr[-1500:]
    finally:
        tls.stop()


def test_seven_of_sixteen_flat_channels_are_not_classified_and_escalate():
    """Was: 7 of 16 flat (under half) -> window classified (the seizure missed) and no escalation."""
    import numpy as np

    from seizurewatch.escalation import Escalator
    from seizurewatch.quality import QualityChecker

    ch = tuple(f"c{i:03d}" for i in range(1, 17))
    x = np.random.default_rng(0).normal(0, 30, (16, 400)).astype(np.float32)
    x[:7] = 0.0
    v = QualityChecker(ch, 400.0, 60.0).check(x)
    assert v.faults["flatline"] == list(ch[:7]) and v.usable is False
    esc = Escalator(60.0, {"bed1": 16})
    esc.observe({"kind": "fault", "patient": "bed1", "alarm_id": "f" * 16, "event": "start",
                 "fault_type": "flatline", "channels": list(ch[:7])}, 0.0)
    assert [(d.kind, d.level) for d in esc.due(60.0)] == [("fault", 1)]
    x[:7] = np.random.default_rng(1).normal(0, 30, (7, 400))
    x[:3] = 0.0  # three dead contacts of sixteen: still classified, no page
    assert QualityChecker(ch, 400.0, 60.0).check(x).usable is True


@pytest.mark.parametrize("predicate", ["starts-with(name,'Amp'", "name=='Amp1'", "name='Amp1' and"])
def test_an_invalid_lsl_xpath_is_refused_at_load(tmp_path, predicate):
    """liblsl waits for ever on a malformed predicate ('no stream matches'); now one line, exit 2."""
    r = run_cli("run", "--config", _cfg(tmp_path, f"{{kind: lsl, predicate: \"{predicate}\"}}"), "--check")
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "streams[0].source.predicate: not a valid XPath 1.0 expression" in last or \
        "predicate: not a valid XPath 1.0 expression" in last, last
    from seizurewatch.config import SourceConfig

    assert SourceConfig(kind="lsl", predicate="starts-with(name,'Amp') and hostname='bed1'").predicate


def test_metrics_json_never_holds_nan():
    import json

    import numpy as np

    from seizurewatch.research.evaluate import json_text

    text = json_text({"auc": float("nan"), "per": [np.float32("inf"), np.float64(0.5), np.int64(3)], "n": 2})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metrics.json")) == {
        "auc": None, "per": [None, 0.5, 3], "n": 2}


def test_resume_without_a_checkpoint_and_a_scheduler_that_is_not_an_address_are_one_line(tmp_path):
    r = run_cli("train", "--dataset", str(tmp_path), "--model", str(tmp_path / "m.yaml"), "--output",
                str(tmp_path / "m.pt"), "--resume")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"seizurewatch: error: --resume: no checkpoint {tmp_path / 'm.pt'}.ckpt to continue from (it is written "
        "every epoch of a run); start without --resume")
    r = run_cli("predict", str(DOG1 / "dog1_rec04.edf"), "--scheduler", "not a url", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "'not a url' is not a Dask scheduler address" in r.stderr, r.stderr[-800:]
    assert "Traceback" not in r.stderr


BLOCKER = """
import time
from pathlib import Path


def task(i: int, folder: str) -> int:
    if i == 0:
        (Path(folder) / "0").write_text("done")
        return 0
    deadline = time.monotonic() + 600  # hang guard: the test kills the scheduler long before
    while time.monotonic() < deadline and not (Path(folder) / "release").exists():
        time.sleep(0.05)
    return i
"""


@pytest.mark.slow
def test_a_scheduler_killed_mid_run_is_one_line_naming_what_is_not_done(tmp_path, monkeypatch):
    """Was: a traceback, and no word of which outputs are missing."""
    import functools
    import sys
    import threading
    import time

    from distributed import LocalCluster

    from seizurewatch.research.parallel import SchedulerLost, run_tasks

    (tmp_path / "blocker.py").write_text(BLOCKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{':'.join(sys.path)}")
    import blocker

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           memory_limit=0)

    def kill_when_the_first_is_done() -> None:
        deadline = time.monotonic() + 300  # hang guard
        while not (tmp_path / "0").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        cluster.sync(cluster.scheduler.close)

    killer = threading.Thread(target=kill_when_the_first_is_done, daemon=True)
    killer.start()
    try:
        with pytest.raises(SchedulerLost) as exc:
            run_tasks(functools.partial(blocker.task, folder=str(tmp_path)), list(range(4)),
                      scheduler=cluster.scheduler_address)
    finally:
        (tmp_path / "release").write_text("")
        killer.join(60)
        cluster.close()
    assert exc.value.exit_code == 3 and set(exc.value.lost) >= {1, 2, 3}
    assert "went away" in str(exc.value) and "\n" not in str(exc.value)
