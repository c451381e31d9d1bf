"""Export: the .pt (TorchScript) and .pt2 (torch.export) files compute what the trained module
computes, carry the metadata and the same SHA-256, and the daemon's loader refuses tampering."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import rewrite_metadata
from synthetic_dataset import CHANNELS, RATE, WINDOW_S, make_dataset, tiny_model_yaml

from seizurewatch.errors import ModelError
from seizurewatch.modelfile import load_model
from seizurewatch.research.dataset import open_dataset
from seizurewatch.research.export import export, rebuild_eager, save_checked
from seizurewatch.research.train import predict, train
from seizurewatch.research.training_run import load_model_config

ARCHS = ["seed_convnet", "spectrogram_resnet", "cnn1d", "bandpower_lr"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return open_dataset(make_dataset(tmp_path_factory.mktemp("ds")))


def _meta(arch: str) -> dict:
    return {"name": f"t-{arch}", "outputs": ["seizure"], "window_s": WINDOW_S, "hop_s": 1.0,
            "preprocess": {"channels": list(CHANNELS), "rate": RATE, "bandpass": None, "notch": None},
            "threshold": {"value": 0.5, "policy": "default"},
            "architecture": {"arch": arch, "kwargs": {}, "n_channels": len(CHANNELS), "n_samples": int(RATE * WINDOW_S),
                             "n_outputs": 1, "rate": RATE}}


@pytest.mark.parametrize("arch", ARCHS)
def test_exported_files_give_the_trained_outputs(arch, dataset, tmp_path):
    spec = load_model_config(tiny_model_yaml(tmp_path / "m.yaml", arch, epochs=2))
    tr, va = dataset.rows("train"), dataset.rows("val")
    res = train(dataset.x, dataset.y, dataset.x, dataset.y, spec.train, progress=False, rate=RATE,
                train_rows=tr, val_rows=va)
    trained = res.model.eval()
    x = torch.from_numpy(np.array(dataset.x[dataset.rows("test")]))
    with torch.no_grad():
        expected = trained(x)
    meta = {**_meta(arch), "architecture": {**_meta(arch)["architecture"], "kwargs": spec.train.arch_kwargs}}
    shas = set()
    for suffix in (".pt", ".pt2"):
        path = tmp_path / f"model{suffix}"
        saved = save_checked(trained, meta, path, x)
        loaded = load_model(path)
        assert loaded.kind == ("export" if suffix == ".pt2" else "torchscript")
        got = torch.from_numpy(predict(loaded.module, x.numpy()))
        assert torch.allclose(got, expected, atol=1e-5), f"{arch}{suffix}: {(got - expected).abs().max()}"
        assert loaded.meta.raw["architecture"]["arch"] == arch
        shas.add(saved["weights_sha256"])
    assert len(shas) == 1  # the same weights hash in both formats


def test_reexport_between_formats_keeps_outputs_and_hash(dataset, tmp_path):
    from seizurewatch.research.training_run import train_from_dataset

    meta = train_from_dataset(dataset, tiny_model_yaml(tmp_path / "m.yaml", "spectrogram_resnet", epochs=2),
                              tmp_path / "a.pt", progress=False)
    out = export(tmp_path / "a.pt", tmp_path / "b.pt2")
    back = export(tmp_path / "b.pt2", tmp_path / "c.pt")
    assert meta["weights_sha256"] == out["weights_sha256"] == back["weights_sha256"]
    assert out["max_abs_diff"] <= 1e-5 and back["max_abs_diff"] <= 1e-5
    x = np.array(dataset.x[:8])
    pa = predict(load_model(tmp_path / "a.pt").module, x)
    pb = predict(load_model(tmp_path / "b.pt2").module, x)
    np.testing.assert_allclose(pa, pb, atol=1e-5)
    assert load_model(tmp_path / "b.pt2").meta.raw["training"] == meta["training"]
    eager = rebuild_eager(load_model(tmp_path / "b.pt2"))
    with torch.no_grad():
        np.testing.assert_allclose(eager(torch.from_numpy(x)).numpy(), pa, atol=1e-5)


def test_export_refuses_unknown_format_and_tampered_files(dataset, tmp_path):
    from seizurewatch.research.training_run import train_from_dataset

    train_from_dataset(dataset, tiny_model_yaml(tmp_path / "m.yaml", "bandpower_lr", epochs=1), tmp_path / "a.pt",
                       progress=False)
    with pytest.raises(ModelError, match="a.onnx: export to a .pt"):
        export(tmp_path / "a.pt", tmp_path / "a.onnx")
    # rewrite metadata.json inside the TorchScript zip with a wrong hash: the loader refuses it
    src, bad = tmp_path / "a.pt", tmp_path / "bad.pt"
    rewrite_metadata(src, bad, lambda data: data.replace(b'"weights_sha256": "', b'"weights_sha256": "0'))
    with pytest.raises(ModelError, match="checksum mismatch"):
        export(bad, tmp_path / "b.pt2")


@pytest.mark.parametrize("arch", ARCHS)
def test_the_model_gives_its_architecture_block_and_export_rebuilds_from_it(arch, dataset, tmp_path):
    from seizurewatch.research.architectures import from_config
    from seizurewatch.research.training_run import train_from_dataset

    meta = train_from_dataset(dataset, tiny_model_yaml(tmp_path / "m.yaml", arch, epochs=1), tmp_path / "a.pt",
                              progress=False)
    block = meta["architecture"]
    assert block["arch"] == arch and block["n_channels"] == len(CHANNELS)
    assert block["n_samples"] == int(RATE * WINDOW_S) and block["n_outputs"] == 1 and block["rate"] == RATE
    assert block["kwargs"] == meta["training"]["config"]["arch_kwargs"]  # the training config stays beside it
    assert from_config(block).get_config() == block
    rebuilt = rebuild_eager(load_model(tmp_path / "a.pt"))
    assert rebuilt.get_config() == block  # the rebuilt module describes itself as the file does
    export(tmp_path / "a.pt", tmp_path / "b.pt2")
    assert rebuild_eager(load_model(tmp_path / "b.pt2")).get_config() == block


def test_a_network_constructed_outside_build_has_no_config_to_give():
    from seizurewatch.research.architectures import SeedConvNet

    with pytest.raises(ValueError, match="SeedConvNet was constructed directly"):
        SeedConvNet(2, 2000).get_config()


def test_a_file_without_the_architecture_block_is_refused_with_the_command_that_retrains_it(tmp_path):
    from seizurewatch.modelfile import save_model
    from seizurewatch.research.architectures import Deployable, build

    net = build("bandpower_lr", len(CHANNELS), int(RATE * WINDOW_S), 1, rate=RATE)
    meta = {k: v for k, v in _meta("bandpower_lr").items() if k != "architecture"}
    x = torch.randn(2, len(CHANNELS), int(RATE * WINDOW_S))
    old = tmp_path / "old.pt"
    save_model(Deployable(net, torch.zeros(len(CHANNELS)), torch.ones(len(CHANNELS))),
               {**meta, "training": {"command": "seizurewatch train config/train-old.yaml"}}, old, x)
    with pytest.raises(ModelError, match=r"predates the architecture block .*retrain it: seizurewatch train "
                                         r"config/train-old.yaml"):
        export(old, tmp_path / "new.pt2")
    save_model(Deployable(net, torch.zeros(len(CHANNELS)), torch.ones(len(CHANNELS))), meta, old, x)
    with pytest.raises(ModelError, match=r"predates the architecture block .*seizurewatch train RECIPE"):
        rebuild_eager(load_model(old))
