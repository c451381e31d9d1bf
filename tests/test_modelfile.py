import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import MODEL, rewrite_metadata

from seizurewatch.errors import ModelError
from seizurewatch.modelfile import load_model, save_model
from seizurewatch.research.architectures import Deployable, SeedConvNet
from seizurewatch.resources import default_model_path


def test_shipped_model_has_metadata_and_valid_checksum():
    m = load_model(MODEL)
    meta = m.meta.raw
    assert meta["name"] == "dog1-hills-early"
    assert meta["preprocess"]["channels"][0] == "c001" and meta["preprocess"]["rate"] == 400
    assert meta["window_s"] == 1.0 and meta["outputs"] == ["seizure", "early"]
    assert 0 < m.meta.threshold < 1 and meta["threshold"]["policy"] == "oof_events_trigger"
    assert meta["training"]["train_recordings"] == ["dog1_rec01.edf", "dog1_rec02.edf", "dog1_rec03.edf"]
    # the threshold never saw rec04, the demo's recording: out-of-fold predictions of rec01-03 only
    assert meta["training"]["validation_recordings"] == []
    assert meta["threshold"]["chosen_on"] == [f"out-of-fold: dog1_rec0{i}.edf" for i in (1, 2, 3)]
    assert meta["training"]["config"]["arch"] == "hills_forest"
    # the early output as a second trigger was tried out of fold and not taken: the rule reads as before
    assert meta["threshold"]["early_trigger"]["chosen_gain"] == 0.0
    assert "early_gain" not in meta["threshold"]["decision"]
    # a trained model, not a random one: out of fold it ranks ictal seconds far above the others
    assert meta["metrics"]["validation"]["out_of_fold_seconds"]["seizure_auc"] > 0.8


def test_packaged_copy_is_the_same_model():
    a = hashlib.sha256(MODEL.read_bytes()).hexdigest()
    b = hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    assert a == b, "seizurewatch/data/dog1-hills-early.pt must be a copy of models/dog1-hills-early.pt"


def _tiny(tmp_path, suffix=".pt"):
    torch.manual_seed(0)
    model = Deployable(SeedConvNet(2, 2000), torch.zeros(2), torch.ones(2)).eval()
    meta = {"name": "tiny", "outputs": ["seizure"], "window_s": 5.0, "hop_s": 1.0,
            "preprocess": {"channels": ["a", "b"], "rate": 400.0, "bandpass": None, "notch": None},
            "threshold": {"value": 0.5, "policy": "youden"}}
    x = torch.randn(3, 2, 2000)
    path = tmp_path / f"tiny{suffix}"
    save_model(model, meta, path, x[:2])
    return model, path, x


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_export_roundtrip_gives_same_outputs(tmp_path, suffix):
    model, path, x = _tiny(tmp_path, suffix)
    loaded = load_model(path)
    with torch.no_grad():
        np.testing.assert_allclose(loaded.module(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert loaded.kind == ("export" if suffix == ".pt2" else "torchscript")


def test_pt_and_pt2_share_weights_hash(tmp_path):
    _, a, _ = _tiny(tmp_path, ".pt")
    _, b, _ = _tiny(tmp_path, ".pt2")
    assert load_model(a).meta.weights_sha256 == load_model(b).meta.weights_sha256


def test_tampered_checksum_is_refused(tmp_path):
    _, path, _ = _tiny(tmp_path)
    bad = tmp_path / "bad.pt"

    def mutate(data):
        meta = json.loads(data)
        meta["weights_sha256"] = "0" * 64
        return json.dumps(meta).encode()

    rewrite_metadata(path, bad, mutate)
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(bad)


def test_model_without_metadata_is_refused(tmp_path):
    _, path, _ = _tiny(tmp_path)
    bad = tmp_path / "nometa.pt"
    rewrite_metadata(path, bad, lambda data: None)
    with pytest.raises(ModelError, match="no metadata.json"):
        load_model(bad)


def test_pinned_sha_mismatch_and_garbage(tmp_path):
    with pytest.raises(ModelError, match="not the pinned"):
        load_model(MODEL, expect_sha256="deadbeef" * 8)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="cannot load model"):
        load_model(junk)


def test_no_torchscript_deprecation_warning_leaks(recwarn):
    load_model(MODEL)
    assert not [w for w in recwarn if "torch.jit" in str(w.message)]
