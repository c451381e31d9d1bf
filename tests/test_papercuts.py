"""What a new user trips on first, each fixed where it lives: --help lists every command once; the two hashes of a
model have one name each everywhere (file_sha256: what model.sha256 pins; weights_sha256: the metadata's and the
payload's); a recording replayed for two streams is refused with the real reason; a file that is not a model is
one line naming the problem; config/local.yaml runs as shipped."""

from __future__ import annotations

import os
import re

import pytest
from conftest import MODEL, ROOT, run_cli

from seizurewatch.cli import build_parser
from seizurewatch.errors import ConfigError, ModelError


def test_help_lists_every_command_once():
    parser = build_parser()
    commands = list(next(a for a in parser._actions if a.dest == "command").choices)
    assert {"ack", "station", "labels", "run", "play", "train"} <= set(commands)
    text = run_cli("--help").stdout
    for name in commands:
        assert len(re.findall(rf"^  {name} ", text, flags=re.M)) == 1, (name, text)
    assert "COMMAND ..." in text.splitlines()[0]


def test_one_name_per_hash_in_check_train_output_and_payload(tmp_path):
    import hashlib

    from seizurewatch.events import Context, Event, to_payload
    from seizurewatch.modelfile import load_model

    r = run_cli("run", "--config", str(ROOT / "config" / "demo.yaml"), "--check")
    assert r.returncode == 0, r.stderr
    file_hash = hashlib.sha256(MODEL.read_bytes()).hexdigest()
    weights = load_model(MODEL).meta.weights_sha256
    assert f"file_sha256 {file_hash[:12]}" in r.stdout and f"weights_sha256 {weights[:12]}" in r.stdout
    assert not re.search(r"(?<![a-z_])sha256", r.stdout.replace("file_sha256", "").replace("weights_sha256", ""))
    payload = to_payload(Event("alarm", "start", "a" * 16, 1.0, 0.9, 0.6, started_t=1.0, peak_probability=0.9),
                         Context("bed1", "m", weights, "youden"), seq=1, wall_time=1.7e9)
    assert payload["model"] == {"name": "m", "weights_sha256": weights}
    from seizurewatch.cli.research_cmds import _hashes

    assert _hashes({"weights_sha256": weights, "path": str(MODEL)}, None) == {"file_sha256": file_hash,
                                                                              "weights_sha256": weights}


def test_the_same_recording_for_two_streams_is_refused_with_the_real_reason(tmp_path):
    from seizurewatch.config import load_config

    edf = ROOT / "seizurewatch" / "data" / "dog1_rec04.edf"
    (tmp_path / "two.yaml").write_text(
        f"streams:\n  - patient: bed1\n    source: {{kind: edf, path: {edf}}}\n"
        "  - patient: bed2\n    source: {kind: edf, path: ./" + os.path.relpath(edf, tmp_path) + "}\n"
        f"model: {{path: {MODEL}}}\n")
    with pytest.raises(ConfigError, match=r"streams\[1\].source.path: .* is already replayed by streams\[0\] "
                                          r"\(bed1\); .* give the other stream a copy"):
        load_config(tmp_path / "two.yaml")


@pytest.mark.parametrize("content", [b"not a model at all\n", None])
def test_a_file_that_is_not_a_model_is_one_line_of_whole_words(tmp_path, content):
    from seizurewatch.modelfile import load_model

    bad = tmp_path / "bad.pt"
    bad.write_bytes(content if content is not None else MODEL.read_bytes()[:100_000])  # or a truncated copy
    with pytest.raises(ModelError) as err:
        load_model(bad)
    text = str(err.value)
    assert "\n" not in text and "miniz" not in text and "not a ZIP file" in text and str(bad) in text
    r = run_cli("replay", str(ROOT / "seizurewatch" / "data" / "dog1_rec04.edf"), "--model", str(bad))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot load model" in r.stderr


def test_the_local_config_runs_as_shipped():
    """config/local.yaml: no edits for play + run + station on one machine (its live path: test_live_station)."""
    from seizurewatch.config import load_config

    cfg = load_config(ROOT / "config" / "local.yaml")
    s = cfg.streams[0]
    assert s.source.kind == "lsl" and s.source.source_id == "amp-bed1" and cfg.mqtt.url == "mqtt://127.0.0.1:1883"
    assert cfg.outbox.path.startswith("/tmp/") and cfg.metrics.listen in (None, "")
    assert (ROOT / "models" / "dog1-hills-early.pt").samefile(cfg.model.path)


def test_roc_area_needs_no_numpy_2():
    """``np.trapezoid`` exists from NumPy 2 only (the floor is 1.26): the one helper gives the same sum."""
    import numpy as np

    from seizurewatch.research.roc import roc, trapezoid

    assert trapezoid(np.array([0.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0])) == 1.0
    assert trapezoid(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.5
    rng = np.random.default_rng(7)
    for _ in range(50):
        x, y = np.sort(rng.random(40)), rng.random(40)
        if hasattr(np, "trapezoid"):
            assert trapezoid(y, x) == float(np.trapezoid(y, x))
    labels, scores = rng.random(500) > 0.7, rng.random(500)
    assert 0.4 < roc(labels, scores).auc < 0.6  # random scores: chance


def test_the_configured_drain_bound_is_the_one_in_force(tmp_path):
    """``mqtt.drain_timeout_s`` (30 s by default, as the README says) is what the service waits for; no second,
    shorter constant cuts the links' drain short."""
    import dataclasses

    from seizurewatch.config import load_config
    from seizurewatch.service import DRAIN_MARGIN_S, Service

    cfg = load_config(str(ROOT / "config" / "demo.yaml"))
    for seconds in (cfg.mqtt.drain_timeout_s, 90.0):
        mqtt = dataclasses.replace(cfg.mqtt, drain_timeout_s=seconds)
        service = Service(dataclasses.replace(cfg, mqtt=mqtt))
        assert service.drain_timeout_s == seconds + DRAIN_MARGIN_S > seconds


def test_model_info_has_the_same_fields_at_start_and_after_a_reload():
    from seizurewatch.metrics import Metrics

    m = Metrics()
    m.set_model("m", "0" * 64, 0.441234, "youden", "models/m.pt2")
    labels = [s.labels for fam in m.registry.collect() for s in fam.samples if s.name == "seizurewatch_model_info"]
    assert labels == [{"name": "m", "weights_sha256": "0" * 64, "threshold": "0.44123", "policy": "youden",
                       "path": "models/m.pt2"}]
