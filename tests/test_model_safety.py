"""A model file is code: the pin covers the whole file and is checked before any loader runs; the
metadata is validated like a config; what the model outputs is checked before it is decided on."""

import asyncio
import hashlib
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from conftest import MODEL
from edf_writer import noise, write_edf

from seizurewatch.daemon import Daemon, DaemonOptions
from seizurewatch.errors import ModelError
from seizurewatch.modelfile import check_forward, load_model, save_model
from seizurewatch.replay import ReplayOptions, replay_config

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

CHANNELS = ["a", "b"]


class Probe(torch.nn.Module):
    """A tiny model whose output is chosen by ``mode`` (TorchScript-able)."""

    def __init__(self, mode: str, outputs: int = 1) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.mode = mode
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2)).unsqueeze(1) * self.w
        if self.mode == "offset":  # a probability for EEG around 0 (passes the dry run); NaN or -40 for a DC offset
            nan = torch.full_like(m, float("nan"))
            return torch.where(m > 30.0, nan, torch.where(m < -30.0, m, torch.sigmoid(m))).repeat(1, self.outputs)
        if self.mode == "nan":
            return m * float("nan")
        if self.mode == "big":
            return m + 5.0
        return torch.sigmoid(m).repeat(1, self.outputs)


class Flat(torch.nn.Module):
    """Takes exactly 2 channels x 200 samples."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(400, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.lin(x.reshape(x.shape[0], 400)))


def meta(**over):
    m = {"name": "probe", "outputs": ["seizure"], "window_s": 2.0, "hop_s": 1.0,
         "preprocess": {"channels": CHANNELS, "rate": 100.0, "bandpass": None, "notch": None},
         "threshold": {"value": 0.5, "policy": "test"}}
    m.update(over)
    return m


def save(tmp_path, fname, module=None, suffix=".pt", **over):
    path = tmp_path / f"{fname}{suffix}"
    save_model(module or Probe("sigmoid"), meta(**over), path, torch.zeros(2, 2, 200))
    return path


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----- the pin: whole file, full digest, before the loader -------------------------------------------

def _craft_pt2(genuine, crafted, marker):
    """``genuine`` with its first weight replaced by a pickle that creates ``marker`` when unpickled."""

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    with zipfile.ZipFile(genuine) as zin, zipfile.ZipFile(crafted, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data/weights/model_weights_config.json"):
                cfg = json.loads(data)
                first = next(iter(cfg["config"].values()))
                first["use_pickle"] = True
                data = json.dumps(cfg).encode()
                weight_file = first["path_name"]
            zout.writestr(item, data)
    with zipfile.ZipFile(crafted) as z:
        names = z.namelist()
    target = next(n for n in names if n.endswith(f"data/weights/{weight_file}"))
    with zipfile.ZipFile(crafted) as zin:
        items = [(i, zin.read(i.filename)) for i in zin.infolist()]
    with zipfile.ZipFile(crafted, "w") as zout:
        for item, data in items:
            zout.writestr(item, pickle.dumps(Payload()) if item.filename == target else data)


def test_crafted_pt2_with_pinned_but_wrong_digest_runs_no_code(tmp_path):
    genuine = save(tmp_path, "genuine", suffix=".pt2")
    crafted, marker = tmp_path / "crafted.pt2", tmp_path / "code-ran"
    _craft_pt2(genuine, crafted, marker)
    with pytest.raises(ModelError, match="refused before loading"):
        load_model(crafted, expect_sha256=sha(genuine))
    assert not marker.exists(), "the crafted pickle ran before the pin was checked"
    # The crafted file is hostile indeed: a loader given it unpinned runs its code.
    with pytest.raises(ModelError):
        load_model(crafted)
    assert marker.exists()


def test_pin_covers_the_whole_file_not_only_the_weights(tmp_path):
    genuine = save(tmp_path, "genuine")
    # Same weights, so the same weights_sha256, in another file whose forward answers NaN whatever the
    # input: the old weights-only pin let it through.
    other = save(tmp_path, "other", Probe("nan"))
    assert load_model(other).meta.weights_sha256 == load_model(genuine).meta.weights_sha256
    assert load_model(genuine, expect_sha256=sha(genuine)).file_sha256 == sha(genuine)
    with pytest.raises(ModelError, match="is not the pinned"):
        load_model(other, expect_sha256=sha(genuine))
    with pytest.raises(ModelError, match="is not the pinned"):  # the weights hash is not the file's
        load_model(genuine, expect_sha256=load_model(genuine).meta.weights_sha256)


@pytest.mark.parametrize("pin", ["9", sha(MODEL)[:12], sha(MODEL) + "0", "z" * 64, ""])
def test_pin_must_be_the_full_digest(pin):
    with pytest.raises(ModelError, match="64 hex digits"):
        load_model(MODEL, expect_sha256=pin)


def test_full_pin_in_upper_case_is_accepted():
    assert load_model(MODEL, expect_sha256=sha(MODEL).upper()).file_sha256 == sha(MODEL)


# ----- metadata checked like config -------------------------------------------------------------------

@pytest.mark.parametrize("over, fragment", [
    ({"hop_s": 0}, "hop_s: must be > 0"),
    ({"hop_s": 3.0}, "hop_s: must be > 0 and <= 2"),
    ({"window_s": float("nan")}, "window_s: expected a finite number"),
    ({"threshold": {"value": 5.0}}, "threshold.value: must be > 0 and < 1"),
    ({"threshold": {"value": 0}}, "threshold.value"),
    ({"preprocess": {"channels": CHANNELS, "rate": 0}}, "preprocess.rate: must be > 0"),
    ({"preprocess": {"channels": CHANNELS, "rate": 100.0, "bandpass": [1, 80]}}, "preprocess.bandpass[1]"),
    ({"preprocess": {"channels": CHANNELS, "rate": 100.0, "notch": 60}}, "preprocess.notch"),
    ({"preprocess": {"channels": [], "rate": 100.0}}, "preprocess.channels"),
    ({"preprocess": {"channels": "ab", "rate": 100.0}}, "preprocess.channels: expected a list"),
    ({"preprocess": {"channels": ["a", "a"], "rate": 100.0}}, "labels must be unique"),
    ({"outputs": []}, "outputs"),
    ({"window_s": 0.001, "hop_s": 0.001}, "give no whole sample"),
])
def test_bad_metadata_is_one_clear_error(tmp_path, over, fragment):
    path = save(tmp_path, "bad", **over)
    with pytest.raises(ModelError) as e:
        load_model(path)
    msg = str(e.value)
    assert str(path) in msg and fragment in msg and "\n" not in msg


@pytest.mark.parametrize("module, outputs, fragment", [
    (Probe("sigmoid", outputs=2), ["seizure"], "returns shape (2, 2), expected (2, 1)"),
    (Probe("sigmoid"), ["seizure", "other"], "expected (2, 2)"),
    (Probe("nan"), ["seizure"], "non-finite"),
    (Probe("big"), ["seizure"], "outside [0, 1]"),
])
def test_dry_forward_pass_refuses_what_is_not_a_probability(tmp_path, module, outputs, fragment):
    model = load_model(save(tmp_path, "probe", module, outputs=outputs))
    with pytest.raises(ModelError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        check_forward(model)


def test_dry_forward_pass_refuses_a_window_the_model_cannot_take(tmp_path):
    path = save(tmp_path, "flat", Flat(), preprocess={"channels": ["a", "b", "c"], "rate": 100.0})
    with pytest.raises(ModelError, match=r"fails on a window of the shape its metadata gives \(2, 3, 200\)"):
        check_forward(load_model(path))
    check_forward(load_model(MODEL))  # the shipped model passes


# ----- at run time: output that is not a probability is a fault, never decided on ----------------------

def test_nan_or_out_of_range_output_is_a_model_fault_not_ok(tmp_path):
    model = save(tmp_path, "offset", Probe("offset"))
    check_forward(load_model(model))  # it passes the start-up check
    rng = np.random.default_rng(3)
    data = noise(2, 30, 100, seed=3) + np.sign(rng.normal(size=(1, 1))) * 40.0  # a clear DC offset
    edf = write_edf(tmp_path / "rec.edf", data, 100, CHANNELS)
    events: list[dict] = []
    daemon = Daemon(replay_config(str(edf), ReplayOptions(model=str(model))), DaemonOptions(publish=False))
    daemon.payload_sinks.append(events.append)
    asyncio.run(daemon.run())
    pipe = daemon.pipelines[0]
    faults = [e for e in events if e["kind"] == "fault" and e.get("fault_type") == "model_error"]
    assert faults and faults[0]["event"] == "start"
    assert "NaN" in faults[0]["detail"] or "outside [0, 1]" in faults[0]["detail"]
    assert not [e for e in events if e["kind"] == "alarm"], "garbage was decided on as a probability"
    assert pipe.stats.windows == 0 and pipe.stats.last_probability is None


def test_a_broken_model_is_one_line_and_exit_2_from_the_command_line(tmp_path):
    """Not a traceback (exit 1: a crash loop every 5 s under systemd)."""
    from conftest import DOG1, run_cli

    for path, fragment in ((save(tmp_path, "hop0", hop_s=0), "hop_s: must be > 0"),
                           (save(tmp_path, "rate0", preprocess={"channels": CHANNELS, "rate": 0}),
                            "preprocess.rate: must be > 0"),
                           (save(tmp_path, "wide", Probe("sigmoid", outputs=3)), "returns shape (2, 3)")):
        r = run_cli("replay", str(DOG1 / "dog1_rec04.edf"), "--model", str(path))
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert fragment in r.stderr and str(path) in r.stderr
