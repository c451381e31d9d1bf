from pathlib import Path

import pytest

from seizurewatch.config import load_config
from seizurewatch.devices import load_device
from seizurewatch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

GOOD = f"""
streams:
  - patient: bed1
    device: {ROOT}/devices/dog1-ecog16.yaml
    source: {{kind: edf, path: {ROOT}/seizurewatch/data/dog1_rec04.edf, speed: max}}
model: {{path: {ROOT}/models/dog1-convnet.pt}}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_good_config_loads_with_defaults(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.streams[0].patient == "bed1"
    assert cfg.streams[0].source.speed == "max"
    assert cfg.decision.k is None and cfg.decision.rule == (3, 4) and cfg.decision.threshold is None
    with pytest.raises(AttributeError):
        cfg.decision.k = 5  # frozen


def test_shipped_configs_are_valid():
    cfg = load_config(ROOT / "config" / "demo.yaml")
    assert cfg.streams[0].source.kind == "edf"
    for dev in (ROOT / "devices").glob("*.yaml"):
        assert load_device(dev).channels


@pytest.mark.parametrize(
    "patch, fragment",
    [
        ("decision: {k: 5, n: 4}", "decision: k: must satisfy 1 <= k <= n"),
        ("decision: {k: three}", "decision.k: expected an integer, got 'three'"),
        ("decision: {treshold: 0.5}", "decision.treshold: unknown key"),
        ("mqtt: {url: 'http://x'}", "mqtt: url: expected mqtt://"),
        ("logging: {level: LOUD}", "logging.level: expected one of"),
    ],
)
def test_bad_values_name_file_key_and_expectation(tmp_path, patch, fragment):
    p = write(tmp_path, GOOD + patch + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value)
    assert fragment in str(e.value)


def test_missing_required_key(tmp_path):
    p = write(tmp_path, GOOD.replace("model:", "modelx:"))
    with pytest.raises(ConfigError, match="unknown key|required key is missing"):
        load_config(p)


def test_yaml_syntax_error_gives_line(tmp_path):
    p = write(tmp_path, GOOD + "decision: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+"):
        load_config(p)


def test_missing_files_are_named(tmp_path):
    p = write(tmp_path, GOOD.replace("dog1_rec04.edf", "nope.edf"))
    with pytest.raises(ConfigError, match=r"streams\[0\]\.source\.path: recording not found: .*nope.edf"):
        load_config(p)


def test_duplicate_patients_rejected(tmp_path):
    stream = GOOD.split("streams:\n")[1].split("model:")[0]
    p = write(tmp_path, "streams:\n" + stream + stream + GOOD.split(stream)[1])
    with pytest.raises(ConfigError, match="patient ids must be unique"):
        load_config(p)
