"""What a hostile or careless user types: every value checked at load, every path before the work,
one line naming the problem (exit 2), never a traceback."""

import hashlib
import os
import subprocess
import sys

import pytest
import torch
from conftest import DOG1, MODEL, ROOT, free_port, rewrite_metadata, run_cli
from edf_writer import noise, write_edf

from seizurewatch.config import load_config
from seizurewatch.errors import ConfigError, DataError
from seizurewatch.research.train import load_checkpoint

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

DEVICE = ROOT / "devices" / "dog1-ecog16.yaml"
REC04 = DOG1 / "dog1_rec04.edf"
CONVNET = ROOT / "models" / "dog1-convnet.pt"  # a shipped model with 10-s windows
CHANNELS = [f"c{i:03d}" for i in range(1, 17)]


def good(extra: str = "", stream: str = "", model: str = "") -> str:
    return (f"streams:\n  - patient: bed1\n    device: {DEVICE}\n"
            f"    source: {{kind: edf, path: {REC04}, speed: max{stream}}}\n"
            f"model: {{path: {MODEL}{model}}}\n{extra}")


def assert_one_line_error(r, code, *fragments):
    assert r.returncode == code, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]  # (argparse prints its usage above)
    assert "Traceback" not in r.stderr and len(errors) == 1, r.stderr
    for f in fragments:
        assert f in r.stderr, (f, r.stderr)


# ----- config values: finite, in range; topics valid -------------------------------------------------

@pytest.mark.parametrize("text, fragment", [
    (good(stream=", chunk_s: .nan"), "chunk_s: expected a finite number"),
    (good(stream=", chunk_s: .inf"), "chunk_s: expected a finite number"),
    (good(stream=", chunk_s: 0"), "chunk_s: must be > 0"),
    (good(stream=", speed: -2"), "speed"),
    (good("mqtt: {keepalive_s: -5}\n"), "keepalive_s: must be >= 1 and <= 65535"),
    (good("mqtt: {keepalive_s: 70000}\n"), "keepalive_s"),
    (good("mqtt: {connect_timeout_s: .nan}\n"), "connect_timeout_s: expected a finite number"),
    (good("mqtt: {publish_timeout_s: -1}\n"), "publish_timeout_s"),
    (good(model=", threads: 100000"), "threads: must be >= 1 and <= 256"),
    (good(model=", max_batch: 0"), "max_batch"),
    (good("decision: {threshold: .nan}\n"), "threshold: expected a finite number"),
    (good("decision: {hysteresis: 5}\n"), "hysteresis"),
    (good("decision: {refractory_s: -1}\n"), "refractory_s"),
    (good("decision: {n: 1000000, k: 3}\n"), "n: must be"),
    (good("outbox: {keep_delivered_days: .inf}\n"), "keep_delivered_days"),
    (good("metrics: {listen: 'nonsense'}\n"), "metrics: listen: expected HOST:PORT"),
    # topics: refused at load, not taken for "broker unreachable" forever
    (good().replace("bed1", '"bed\\0one"'), "patient: must be printable"),
    (good().replace("bed1", '"bed\\none"'), "patient: must be printable"),
    (good().replace("bed1", '"bed+1"'), "patient: must be free of"),
    (good().replace("bed1", '"bed#1"'), "patient: must be free of"),
    (good().replace("bed1", "x" * 70_000), "patient: at most 128 characters (got 70,000)"),
    (good("mqtt: {topic_prefix: 'ward/#'}\n"), "topic_prefix: must not contain the MQTT wildcards"),
    (good("mqtt: {topic_prefix: 'ward/+/x'}\n"), "topic_prefix: must not contain"),
    (good("mqtt: {topic_prefix: 'ward//x'}\n"), "topic_prefix: levels must be non-empty"),
    (good("mqtt: {topic_prefix: '$SYS'}\n"), "topic_prefix: levels must be non-empty and not start with '$'"),
    (good("mqtt: {topic_prefix: \"a\\0b\"}\n"), "topic_prefix: must be printable"),
    (good("mqtt: {homeassistant_prefix: 'ha/#'}\n"), "homeassistant_prefix"),
    (good("mqtt: {client_id: \"a\\nb\"}\n"), "client_id: must be printable"),
    (good("mqtt: {url: 'mqtt://[::1'}\n"), "mqtt: url: expected mqtt://host:port"),
    (good("mqtt: {url: 'mqtt://'}\n"), "(no host)"),
    (good("mqtt: {url: 'mqtt://127.0.0.1:99999'}\n"), "mqtt: url: expected mqtt://host:port"),
    (good("mqtt: {url: 'mqtt://127.0.0.1:0'}\n"), "port must be 1-65535"),
    (good("mqtt: {url: 'mqtt://127.0.0.1:1883/ward/#'}\n"), "nothing after the port"),
    (good("outbox: {path: ''}\n"), "outbox: path: the journal's file name is empty"),
    # the pin: the whole file's digest, in full
    (good(model=", sha256: '9'"), "sha256: expected the file's full SHA-256, 64 hex digits"),
])
def test_bad_config_values_are_one_line_at_load(tmp_path, text, fragment):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and fragment in msg, msg
    assert "\n" not in msg and len(msg) < 600


def test_bad_device_profile_numbers(tmp_path):
    from seizurewatch.devices import load_device

    p = tmp_path / "dev.yaml"
    p.write_text("name: d\nchannels: [a]\nsampling_rate: .nan\n")
    with pytest.raises(ConfigError, match="sampling_rate: expected a finite number"):
        load_device(p)


def test_epochs_minus_three_in_a_model_yaml_is_refused(tmp_path):
    from seizurewatch.research.recipe import load_recipe

    text = (ROOT / "config" / "train-dog1-convnet.yaml").read_text()
    assert "epochs:" in text
    lines = [(ln[: ln.index("epochs:")] + "epochs: -3" if ln.strip().startswith("epochs:") else ln)
             for ln in text.splitlines()]
    p = ROOT / "config" / f".tmp-recipe-{os.getpid()}.yaml"  # relative paths in the recipe start here
    p.write_text("\n".join(lines) + "\n")
    try:
        with pytest.raises(ConfigError, match=r"model: epochs: must be >= 1"):
            load_recipe(p)
    finally:
        p.unlink()


# ----- command-line paths and streams -----------------------------------------------------------------

def test_replay_broker_url_that_cannot_parse_is_one_line():
    r = run_cli("replay", str(REC04), "--mqtt-url", "mqtt://[::1")
    assert_one_line_error(r, 2, "--mqtt-url: expected mqtt://host:port")


def test_outbox_path_that_is_a_folder(tmp_path):
    _, r = check(tmp_path, good(f"outbox: {{path: {tmp_path}}}\nmqtt: {{url: 'mqtt://127.0.0.1:1'}}\n"))
    assert_one_line_error(r, 2, f"outbox.path: {tmp_path} is a folder")


def test_replay_patient_with_wildcards_is_one_line():
    r = run_cli("replay", str(REC04), "--patient", "a/#")
    assert_one_line_error(r, 2, "--patient: must be free of")


def test_replay_probabilities_to_an_unwritable_path_is_refused_before_the_replay(tmp_path):
    r = run_cli("replay", str(REC04), "--probabilities", str(tmp_path / "missing" / "p.csv"))
    assert_one_line_error(r, 2, "--probabilities", "does not exist")
    r = run_cli("replay", str(REC04), "--probabilities", str(tmp_path))
    assert_one_line_error(r, 2, "--probabilities", "is a directory")


def test_dataset_build_out_pointing_at_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = run_cli("dataset", "build", "--out", str(f), str(REC04))
    assert_one_line_error(r, 2, str(f), "exists and is not a folder")
    from seizurewatch.research.dataset import build_dataset

    with pytest.raises(DataError, match="exists and is not a folder"):
        build_dataset(None, f)  # refused before the spec is read


def test_replay_jsonl_into_a_closed_pipe_ends_quietly():
    cmd = (f"set -o pipefail; {sys.executable} -m seizurewatch replay {REC04} --jsonl | head -c 10 >/dev/null")
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr[-2000:]
    assert "Exception ignored" not in r.stderr, r.stderr[-2000:]
    assert r.returncode == 0, r.stderr[-2000:]


def test_recording_shorter_than_one_window_is_an_error_not_silence(tmp_path):
    edf = write_edf(tmp_path / "short.edf", noise(16, 5, 400), 400, CHANNELS)
    r = run_cli("replay", str(edf), "--model", str(CONVNET))  # 10-s windows
    assert_one_line_error(r, 2, "5 s long, shorter than one window of the model (10 s)")


def test_a_rate_that_cannot_carry_the_models_band_is_refused(tmp_path):
    """A 37 Hz recording into the 400 Hz, 1-150 Hz model: upsampling would invent the band."""
    edf = write_edf(tmp_path / "slow.edf", noise(16, 30, 37), 37, CHANNELS)
    r = run_cli("replay", str(edf))
    assert_one_line_error(r, 2, "sampled at 37 Hz", "below the model's band edge of 150 Hz")


# ----- train --resume: a checkpoint is data, not code --------------------------------------------------

def test_crafted_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    ckpt = tmp_path / "part.pt"
    torch.save({"model": {}, "optimizer": {}, "epoch": 0, "evil": Payload()}, ckpt)
    with pytest.raises(DataError, match="cannot resume from safely|not a checkpoint this trainer can resume"):
        load_checkpoint(ckpt)
    assert not marker.exists()
    with open(ckpt, "rb"):  # the file is hostile indeed: an unrestricted load runs it
        torch.load(ckpt, weights_only=False)
    assert marker.exists()


# ----- run --check: everything run would refuse --------------------------------------------------------

def check(tmp_path, text):
    p = tmp_path / "bed.yaml"
    p.write_text(text)
    return p, run_cli("run", "--config", str(p), "--check")


def test_run_check_refuses_an_unpinned_model_and_accepts_pinned_or_trusted(tmp_path):
    other = tmp_path / "copy.pt"
    outbox = f"outbox: {{path: {tmp_path / 'o.sqlite3'}}}\nmqtt: {{url: 'mqtt://127.0.0.1:1'}}\n"
    p, r = check(tmp_path, good(outbox))
    assert r.returncode == 0, r.stderr  # the shipped model's bytes need no pin: as trusted as the package
    import json

    # another file, same weights
    rewrite_metadata(MODEL, other, lambda data: json.dumps({**json.loads(data), "name": "someone-elses"}).encode())
    digest = hashlib.sha256(other.read_bytes()).hexdigest()
    assert digest != hashlib.sha256(MODEL.read_bytes()).hexdigest()
    p, r = check(tmp_path, good(outbox).replace(str(MODEL), str(other)))
    assert_one_line_error(r, 2, "model.sha256: required", f"sha256: {digest}", "trusted: true")
    p, r = check(tmp_path, good(outbox, model=f", sha256: {digest}").replace(str(MODEL), str(other)))
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
    p, r = check(tmp_path, good(outbox, model=", trusted: true").replace(str(MODEL), str(other)))
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
    p, r = check(tmp_path, good(outbox, model=f", sha256: '{'0' * 64}'").replace(str(MODEL), str(other)))
    assert_one_line_error(r, 2, "is not the pinned", "refused before loading")


def test_run_check_runs_the_model_and_checks_devices_paths_and_port(tmp_path):
    outbox = f"outbox: {{path: {tmp_path / 'o.sqlite3'}}}\nmqtt: {{url: 'mqtt://127.0.0.1:1'}}\n"
    # a device profile whose rate cannot carry the model's band
    slow = tmp_path / "slow.yaml"
    slow.write_text("name: slow\nchannels: [" + ", ".join(CHANNELS) + "]\nsampling_rate: 200\n")
    _, r = check(tmp_path, good(outbox).replace(str(DEVICE), str(slow)))
    assert_one_line_error(r, 2, "device profile slow", "sampled at 200 Hz")
    # a device profile without a channel the model needs
    few = tmp_path / "few.yaml"
    few.write_text("name: few\nchannels: [" + ", ".join(CHANNELS[:-1]) + "]\nsampling_rate: 400\n")
    _, r = check(tmp_path, good(outbox).replace(str(DEVICE), str(few)))
    assert_one_line_error(r, 2, "device profile few", "c016 missing")
    # a journal folder that cannot exist (under a file)
    _, r = check(tmp_path, good(f"outbox: {{path: {MODEL}/o.sqlite3}}\nmqtt: {{url: 'mqtt://127.0.0.1:1'}}\n"))
    assert_one_line_error(r, 2, "outbox.path: cannot create the journal's folder", "is not a folder")
    # a metrics address that is not on this machine
    _, r = check(tmp_path, good(outbox + "metrics: {listen: '192.0.2.1:9108'}\n"))
    assert_one_line_error(r, 2, "metrics.listen: cannot listen on 192.0.2.1:9108")
    # a recording too short, found by --check as run would
    edf = write_edf(tmp_path / "short.edf", noise(16, 5, 400), 400, CHANNELS)
    _, r = check(tmp_path, good(outbox, model=", trusted: true").replace(str(REC04), str(edf))
                 .replace(str(MODEL), str(CONVNET)))
    assert_one_line_error(r, 2, "shorter than one window")


def test_run_check_says_what_run_would_wait_for(tmp_path):
    import socket

    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        extra = (f"outbox: {{path: {tmp_path / 'o.sqlite3'}}}\nmqtt: {{url: 'mqtt://127.0.0.1:{free_port()}', "
                 f"connect_timeout_s: 1}}\nmetrics: {{listen: '127.0.0.1:{port}'}}\n")
        _, r = check(tmp_path, good(extra))
    assert r.returncode == 0, r.stderr
    assert f"run would wait: metrics.listen: 127.0.0.1:{port} is in use" in r.stdout
    assert "run would wait: bed1: MQTT broker mqtt://127.0.0.1:" in r.stdout and "unreachable" in r.stdout
    assert "bed1: alarm when " in r.stdout and " s) reach " in r.stdout  # the operating point in force


def test_a_bad_broker_url_error_never_repeats_a_password(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text(good("mqtt: {url: 'mqtts://nurse:hunter2@[::1:8883'}\n"))
    with pytest.raises(ConfigError, match="mqtt: url: expected") as e:
        load_config(p)
    assert "hunter2" not in str(e.value) and "nurse" not in str(e.value)


def test_run_check_looks_at_a_running_daemons_journal_without_taking_it(tmp_path):
    journal = tmp_path / "j.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from seizurewatch.alarms.outbox import Outbox; "
         f"Outbox.open_sync({str(journal)!r}); print('open', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        _, r = check(tmp_path, good(f"outbox: {{path: {journal}}}\nmqtt: {{url: 'mqtt://127.0.0.1:1'}}\n"))
        assert r.returncode == 0, r.stderr
        assert f"is in use by seizurewatch PID {holder.pid}; run refuses to start while that one runs" in r.stdout
    finally:
        holder.kill()
        holder.wait()
