"""One typed config path: every YAML loader goes through ``typedyaml.load_typed_file``, whose ``FilePath``
fields are relative to the file's own folder (links kept as written); a model's metadata is parsed once
into a typed ``ModelMeta`` and refused in one line naming the key; the label rules are declared once."""

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import rewrite_metadata

from seizurewatch.config import load_config, load_mqtt_section
from seizurewatch.errors import ConfigError, ModelError
from seizurewatch.modelfile import load_model
from seizurewatch.research.dataset import DatasetSpec, load_spec
from seizurewatch.research.labels import LabelRules
from seizurewatch.research.recipe import Recipe, dataset_spec, load_recipe
from seizurewatch.typedyaml import FilePath, load_typed, load_typed_file

ROOT = Path(__file__).resolve().parents[1]
REC04 = ROOT / "seizurewatch" / "data" / "dog1_rec04.edf"
MODEL = ROOT / "seizurewatch" / "data" / "dog1-hills-early.pt"
DEVICE = ROOT / "devices" / "dog1-ecog16.yaml"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A config folder holding links to a recording, a device profile and a model; the working directory
    is somewhere else, so a path taken from it instead of from the file's folder would not exist."""
    conf = tmp_path / "site" / "conf"
    conf.mkdir(parents=True)
    (conf / "rec.edf").symlink_to(REC04)
    (conf / "dev.yaml").symlink_to(DEVICE)
    (conf / "model.pt").symlink_to(MODEL)
    (conf / "secret").write_text("pw\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return conf


def test_daemon_config_paths_are_relative_to_its_folder_and_links_are_kept(folder):
    (folder / "bed.yaml").write_text(
        "streams:\n  - {patient: bed1, device: dev.yaml, source: {kind: edf, path: rec.edf}}\n"
        "model: {path: ./model.pt}\noutbox: {path: journal/o.sqlite3}\n"
        "mqtt: {url: 'mqtt://127.0.0.1:1883', username: u, password_file: secret, ca_file: ../ca.pem}\n")
    cfg = load_config(Path("..") / "site" / "conf" / "bed.yaml")  # the file named relative to the cwd
    assert cfg.streams[0].source.path == str(folder / "rec.edf")  # the link, not its target
    assert cfg.streams[0].device == str(folder / "dev.yaml")
    assert cfg.model.path == str(folder / "model.pt")
    assert cfg.outbox.path == str(folder / "journal" / "o.sqlite3")
    assert cfg.mqtt.password_file == str(folder / "secret")
    assert cfg.mqtt.ca_file == str(folder.parent / "ca.pem")  # '..' folded, as os.path.abspath does
    assert cfg.source_file == str(Path("..") / "site" / "conf" / "bed.yaml")


@pytest.mark.parametrize("outbox", ["", "outbox: {}\n", "outbox: {keep_delivered_days: 3}\n"])
def test_the_default_journal_sits_beside_the_config_not_in_the_working_directory(folder, outbox):
    """The README's default ``outbox.path`` (outbox.sqlite3) is relative to the config like any path: a unit
    started in / (or a shell elsewhere) must reopen the same journal, its undelivered alarms and open ones."""
    (folder / "bed.yaml").write_text(
        "streams:\n  - {patient: bed1, source: {kind: edf, path: rec.edf}}\nmodel: {path: model.pt}\n" + outbox)
    cfg = load_config(Path("..") / "site" / "conf" / "bed.yaml")
    assert cfg.outbox.path == str(folder / "outbox.sqlite3")


def test_a_throwaway_journal_and_absolute_and_home_paths_are_kept(folder, monkeypatch):
    monkeypatch.setenv("HOME", str(folder))
    (folder / "bed.yaml").write_text(
        f"streams:\n  - {{patient: bed1, source: {{kind: edf, path: '~/rec.edf'}}}}\n"
        f"model: {{path: {MODEL}}}\noutbox: {{path: ':memory:'}}\n")
    cfg = load_config(folder / "bed.yaml")
    assert cfg.outbox.path == ":memory:"
    assert cfg.model.path == str(MODEL)
    assert cfg.streams[0].source.path == str(folder / "rec.edf")


def test_an_empty_device_is_refused_not_taken_for_the_config_folder(folder):
    (folder / "bed.yaml").write_text("streams:\n  - {patient: bed1, device: '', source: {kind: edf, path: rec.edf}}\n"
                                     "model: {path: model.pt}\n")
    with pytest.raises(ConfigError, match=r"bed.yaml: streams\[0\]: device: empty"):
        load_config(folder / "bed.yaml")


def test_mqtt_section_paths_are_relative_to_its_file(folder):
    (folder / "station.yaml").write_text("mqtt: {username: u, password_file: secret, cert_file: c.pem, "
                                         "key_file: k.pem}\nother: {anything: 1}\n")
    m = load_mqtt_section("../site/conf/station.yaml")
    assert (m.password_file, m.cert_file, m.key_file) == tuple(str(folder / n) for n in ("secret", "c.pem", "k.pem"))
    (folder / "bad.yaml").write_text("mqtt: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: expected a mapping with an 'mqtt:' section$"):
        load_mqtt_section(folder / "bad.yaml")


def test_dataset_spec_paths_are_relative_to_its_file(folder):
    (folder / "ds.yaml").write_text("recordings: [rec.edf, 'sub/*.edf']\ndevice: dev.yaml\n"
                                    "annotations: {rec.edf: notes/rec.csv}\n")
    spec = load_spec(Path("../site/conf/ds.yaml"))
    assert spec.recordings == (str(folder / "rec.edf"), str(folder / "sub" / "*.edf"))
    assert spec.device == str(folder / "dev.yaml")
    assert spec.annotations == {"rec.edf": str(folder / "notes" / "rec.csv")}


def test_recipe_paths_are_relative_to_its_file_and_keep_links(folder):
    (folder / "r.yaml").write_text("name: r\ndevice: dev.yaml\ntrain: [rec.edf]\nvalidation: []\n"
                                   "output: ../out/m.pt\ntask: prediction\ninterictal_min_s: 7200\n")
    recipe, base = load_recipe("../site/conf/r.yaml")
    assert base == folder.resolve()
    assert recipe.train == (str(folder / "rec.edf"),)  # the link as written (it used to be resolved to REC04)
    assert recipe.device == str(folder / "dev.yaml")
    assert recipe.output == str(folder.parent / "out" / "m.pt")
    spec = dataset_spec(recipe)  # the label rules travel to the dataset whole, the new key included
    assert spec.rules() == LabelRules(task="prediction", interictal_min_s=7200.0)
    assert spec.recordings == recipe.train


def test_a_path_field_anywhere_in_the_tree_is_resolved_once(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class Inner:
        files: tuple[FilePath, ...] = ()
        names: dict[str, FilePath] = dataclasses.field(default_factory=dict)

    @dataclasses.dataclass(frozen=True)
    class Outer:
        inner: Inner
        one: FilePath | None = None
        blank: FilePath = ""
        text: str = "a/b"  # a plain string is not a path

    base = tmp_path / "b"
    got = load_typed(Outer, {"inner": {"files": ["x", "/abs/y"], "names": {"k": "../z"}}, "one": "o", "blank": " ",
                             "text": "c/d"}, "t.yaml", base=base)
    assert got.inner.files == (str(base / "x"), "/abs/y")
    assert got.inner.names == {"k": str(tmp_path / "z")}
    assert (got.one, got.blank, got.text) == (str(base / "o"), " ", "c/d")
    assert load_typed(Outer, {"inner": {"files": ["x"]}}, "t.yaml").inner.files == ("x",)  # no file: as written
    with pytest.raises(ConfigError, match=r"^t.yaml: inner.files\[0\]: expected a string, got 3$"):
        load_typed(Outer, {"inner": {"files": [3]}}, "t.yaml", base=base)


def test_load_typed_file_reads_a_file_through_a_link_from_the_links_target_folder(tmp_path):
    real = tmp_path / "real"
    real.mkdir()

    @dataclasses.dataclass(frozen=True)
    class One:
        path: FilePath

    (real / "c.yaml").write_text("path: data.edf\n")
    (tmp_path / "link.yaml").symlink_to(real / "c.yaml")
    one, base = load_typed_file(One, tmp_path / "link.yaml")
    assert base == real.resolve() and one.path == str(real.resolve() / "data.edf")


def test_label_rules_are_declared_once():
    rule_fields = [(f.name, f.type, f.default) for f in dataclasses.fields(LabelRules)]
    for cls in (DatasetSpec, Recipe):
        assert issubclass(cls, LabelRules)
        own = [(f.name, f.type, f.default) for f in dataclasses.fields(cls)]
        assert own[:len(rule_fields)] == rule_fields
        assert not {n for n, *_ in rule_fields} & {f for f in cls.__dict__.get("__annotations__", {})}
    spec = DatasetSpec(recordings=("a.edf",), task="prediction", horizons_s=[60.0], early_s=None)
    assert spec.rules() == LabelRules(task="prediction", horizons_s=(60.0,))
    assert hash(spec.rules())  # a plain, hashable LabelRules


# ----- model metadata ------------------------------------------------------------------------------------

def _with_metadata(tmp_path: Path, mutate) -> Path:
    """The shipped model with ``mutate`` applied to its metadata (a dict, changed in place)."""
    out = tmp_path / "m.pt"

    def edit(data: bytes) -> bytes:
        meta = json.loads(data)
        mutate(meta)
        return json.dumps(meta).encode()

    rewrite_metadata(MODEL, out, edit)
    return out


def test_the_shipped_model_parses_into_a_typed_meta():
    meta = load_model(MODEL).meta
    assert meta.name == "dog1-hills-early" and meta.outputs == ("seizure", "early")
    assert (meta.window_s, meta.hop_s, meta.window_samples) == (1.0, 0.25, 400)
    assert meta.schedule.hop_samples(meta.preprocess.rate) == 100
    assert meta.rule == (6, 24)  # threshold.decision: 1.5 of the last 6 s, in hops of 0.25 s
    assert meta.threshold_policy == "oof_events_trigger" and 0 < meta.threshold < 1
    assert meta.preprocess.bandpass == (1.0, 150.0) and meta.preprocess.notch is None
    assert meta.risk_outputs == () and meta.detection_output == 0
    assert meta.training().config is not None and meta.architecture()["arch"] == "hills_forest"
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.hop_s = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.update(window_s="ten"), "metadata.json: window_s: expected a number, got 'ten'"),
    (lambda m: m["preprocess"].update(rate=None), "metadata.json: preprocess.rate: expected a number, got None"),
    (lambda m: m["threshold"].pop("value"), "metadata.json: threshold.value: required key is missing"),
    (lambda m: m["threshold"].update(decision={"k": 9, "n": 4}), "metadata.json: threshold.decision: expected"),
    (lambda m: m.update(outputs=[]), "metadata.json: outputs: expected a non-empty list"),
    (lambda m: m.update(outputs="seizure"), "metadata.json: outputs: expected a list of a string, got 'seizure'"),
    (lambda m: m.update(risk={"early": {"horizon_s": 60, "elevated": "x", "high": 0.5}}),
     "metadata.json: risk.early.elevated: expected a number, got 'x'"),
])
def test_malformed_metadata_is_refused_in_one_line_naming_the_key(tmp_path, mutate, message):
    bad = _with_metadata(tmp_path, mutate)
    with pytest.raises(ModelError) as info:
        load_model(bad)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{bad}: ") and message in text
    assert text.endswith("re-export the model ('seizurewatch export') or fix its training recipe")


def test_research_blocks_never_stop_a_model_from_running_but_are_refused_when_read(tmp_path):
    bad = _with_metadata(tmp_path, lambda m: m["training"].update(best_epoch="last"))
    meta = load_model(bad).meta  # the daemon's facts are fine: it loads
    assert meta.rule == (6, 24)
    with pytest.raises(ModelError, match=r"^model 'dog1-hills-early': metadata.json: training.best_epoch: "
                                         r"expected an integer, got 'last'$"):
        meta.training()
    (tmp_path / "old").mkdir()
    old = load_model(_with_metadata(tmp_path / "old", lambda m: m.pop("architecture"))).meta
    with pytest.raises(ModelError, match=r"predates the architecture block .*; retrain it: seizurewatch "):
        old.architecture()


def test_old_files_keep_unknown_keys_in_raw(tmp_path):
    meta = load_model(_with_metadata(tmp_path, lambda m: m.update(future={"x": 1}))).meta
    assert meta.raw["future"] == {"x": 1} and meta.raw["name"] == meta.name
