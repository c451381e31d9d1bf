"""Architectures from the registry, training from a dataset directory (deterministic,
resumable, multi-output, per subject) and the model YAML."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from synthetic_dataset import CHANNELS, RATE, WINDOW_S, make_dataset, tiny_model_yaml, windows

from seizurewatch.errors import ConfigError, DataError
from seizurewatch.modelfile import load_model
from seizurewatch.research.architectures import REGISTRY, BandPowerLR, build
from seizurewatch.research.dataset import open_dataset
from seizurewatch.research.hills import FittedModel
from seizurewatch.research.training_run import load_model_config, train_from_dataset, train_per_subject

T = int(RATE * WINDOW_S)


@pytest.mark.parametrize("arch,kwargs", [
    ("seed_convnet", {}),
    ("spectrogram_resnet", {"n_fft": 64, "hop": 32, "width": 4}),
    ("cnn1d", {"conv": [{"channels": 4, "kernel": 5, "stride": 2, "padding": 2, "pool_kernel": 2, "batchnorm": True,
                         "dropout": 0.1}], "dense": [8, 4]}),
    ("bandpower_lr", {}),
])
def test_every_architecture_maps_windows_to_one_logit_per_output(arch, kwargs):
    net = build(arch, len(CHANNELS), T, 3, rate=RATE, **kwargs).eval()
    out = net(torch.randn(5, len(CHANNELS), T))
    assert out.shape == (5, 3)
    assert torch.isfinite(out).all()


def test_registry_lists_the_four_models():
    assert {"seed_convnet", "spectrogram_resnet", "cnn1d", "bandpower_lr"} <= set(REGISTRY)


def test_spectrogram_resnet_has_resnet18_layout():
    net = build("spectrogram_resnet", 16, 4000, 1)
    blocks = [m for m in net.layers]
    assert len(blocks) == 8  # [2, 2, 2, 2] basic blocks
    widths = [b.conv2.out_channels for b in blocks]
    assert widths == [8, 8, 16, 16, 32, 32, 64, 64]


def test_cnn1d_layers_follow_the_yaml():
    net = build("cnn1d", 3, T, 1, conv=[{"channels": 7, "kernel": 3, "stride": 3, "padding": 1, "pool_kernel": 2,
                                         "pool_stride": 2}], dense=[5])
    conv = net.features[0]
    assert (conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (7, (3,), (3,), (1,))
    assert isinstance(net.features[2], torch.nn.MaxPool1d)
    with pytest.raises(ValueError, match="conv\\[0\\].*unknown: kernal"):
        build("cnn1d", 3, T, 1, conv=[{"channels": 7, "kernal": 3}])
    with pytest.raises(ValueError, match="do not fit"):
        build("cnn1d", 3, 50, 1, conv=[{"channels": 4, "kernel": 9, "pool_kernel": 64}])


def test_band_power_features_see_the_rhythm():
    rng = np.random.default_rng(1)
    neg, _ = windows(4, False, rng)
    pos, _ = windows(4, True, rng)
    lr = BandPowerLR(len(CHANNELS), T, 1, rate=RATE)
    fn, fp = lr.features(torch.from_numpy(neg)), lr.features(torch.from_numpy(pos))
    assert fn.shape == (4, len(CHANNELS) * 6)
    alpha = 2  # 12 Hz lies in the alpha band (8-13 Hz), third feature of each channel
    assert (fp[:, alpha] - fn[:, alpha]).min() > 3.0  # log power, e^3 = 20x
    assert abs(float((fp[:, 0] - fn[:, 0]).mean())) < 1.0  # delta barely moves


def test_train_from_dataset_is_deterministic_and_learns(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    cfg = tiny_model_yaml(tmp_path / "m.yaml", "cnn1d", epochs=3)
    a = train_from_dataset(ds, cfg, tmp_path / "a.pt", progress=False)
    b = train_from_dataset(ds, cfg, tmp_path / "b.pt", progress=False)
    assert a["weights_sha256"] == b["weights_sha256"]
    assert a["metrics"]["validation"]["roc_auc"] >= 0.9
    meta = load_model(tmp_path / "a.pt").meta.raw
    assert meta["architecture"]["arch"] == "cnn1d"
    assert meta["training"]["train_windows"] == 24 and meta["training"]["config"]["epochs"] == 3
    assert 0 < meta["threshold"]["value"] < 1 and meta["threshold"]["policy"] == "youden"
    assert [h["epoch"] for h in meta["history"]] == [0, 1, 2] and "val_loss" in meta["history"][0]


def test_resume_gives_the_same_model_as_an_uninterrupted_run(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    full = train_from_dataset(ds, tiny_model_yaml(tmp_path / "m4.yaml", "seed_convnet", epochs=4),
                              tmp_path / "full.pt", progress=False)
    train_from_dataset(ds, tiny_model_yaml(tmp_path / "m2.yaml", "seed_convnet", epochs=2),
                       tmp_path / "part.pt", progress=False)
    assert (tmp_path / "part.pt.ckpt").is_file()
    resumed = train_from_dataset(ds, tiny_model_yaml(tmp_path / "m4.yaml", "seed_convnet", epochs=4),
                                 tmp_path / "part.pt", progress=False, resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2, 3]
    assert resumed["weights_sha256"] == full["weights_sha256"]


def test_multi_horizon_model_outputs_one_probability_per_horizon(tmp_path):
    ds = make_dataset(tmp_path / "ds", horizons=2, per_split={"train": 40, "val": 10, "test": 10})  # 10 per class
    meta = train_from_dataset(ds, tiny_model_yaml(tmp_path / "m.yaml", "bandpower_lr", epochs=3),
                              tmp_path / "h.pt", progress=False)
    assert meta["outputs"] == ["preictal_600s", "preictal_1200s"]
    assert set(meta["threshold"]["per_output"]) == {"preictal_600s", "preictal_1200s"}
    m = load_model(tmp_path / "h.pt")
    x = open_dataset(ds).x[:6]
    p = m.module(torch.from_numpy(np.array(x)))
    assert p.shape == (6, 2) and ((p >= 0) & (p <= 1)).all()


def test_per_subject_training_writes_one_model_per_subject(tmp_path):
    ds = make_dataset(tmp_path / "ds", subjects=("dogA", "dogB"))
    out = train_per_subject(ds, tiny_model_yaml(tmp_path / "m.yaml", "bandpower_lr", epochs=2),
                            str(tmp_path / "{subject}.pt"), progress=False)
    assert sorted(out) == ["dogA", "dogB"]
    for s in ("dogA", "dogB"):
        meta = load_model(tmp_path / f"{s}.pt").meta.raw
        assert meta["name"] == f"tiny-bandpower_lr-{s}" and meta["training"]["subject"] == s
        assert meta["training"]["train_windows"] == 24  # only that subject's windows
    with pytest.raises(ConfigError, match="subject"):
        train_per_subject(ds, tmp_path / "m.yaml", str(tmp_path / "x.pt"), progress=False)


def test_model_yaml_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\narch: seed_convnet\nepochs: many\n")
    with pytest.raises(ConfigError, match="bad.yaml.*epochs"):
        load_model_config(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("name: x\narch: transformer\n")
    ds = make_dataset(tmp_path / "ds")
    with pytest.raises(ConfigError, match="unknown.yaml.*unknown architecture 'transformer'; known: bandpower_lr"):
        train_from_dataset(ds, unknown, tmp_path / "u.pt", progress=False)
    kw = tmp_path / "kw.yaml"
    kw.write_text("name: x\narch: spectrogram_resnet\narch_kwargs: {n_fft: 100000}\n")
    with pytest.raises(ConfigError, match="kw.yaml.*spectrogram_resnet.*n_fft"):
        train_from_dataset(ds, kw, tmp_path / "k.pt", progress=False)


def test_dataset_directory_errors(tmp_path):
    with pytest.raises(DataError, match="y.npy missing"):
        open_dataset(tmp_path)
    ds = make_dataset(tmp_path / "ds")
    manifest = json.loads((ds / "manifest.json").read_text())
    (ds / "manifest.json").write_text(json.dumps({**manifest, "format": "other/9"}))
    with pytest.raises(DataError, match="format 'other/9'"):
        open_dataset(ds)
    one_class = make_dataset(tmp_path / "ds2")
    y = np.load(one_class / "y.npy")
    np.save(one_class / "y.npy", np.zeros_like(y))
    with pytest.raises(DataError, match="both classes"):
        train_from_dataset(one_class, tiny_model_yaml(tmp_path / "m.yaml"), tmp_path / "o.pt", progress=False)


def test_shipped_model_yamls_build():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "config" / "models").glob("*.yaml")):
        spec = load_model_config(path)
        n_out = 2 if spec.train.arch_kwargs.get("combine", "none") != "none" else 1  # seizure, early
        net = build(spec.train.arch, 16, 4000, n_out, rate=400.0, **spec.train.arch_kwargs)
        if isinstance(net, FittedModel):  # a forest has no output before it is fitted: its features
            assert net.features(torch.randn(2, 16, 4000)).shape[0] == 2, path.name
            continue
        assert net(torch.randn(2, 16, 4000)).shape == (2, n_out), path.name


# test-size settings for registry models whose defaults need a longer window (others: defaults)
SMALL = {"spectrogram_resnet": {"n_fft": 64, "hop": 64, "width": 4, "blocks": [1, 1]},
         "cnn1d": {"conv": [{"channels": 4, "kernel": 5, "stride": 2, "padding": 2, "pool_kernel": 2,
                             "batchnorm": True}], "dense": [8]},
         "hills_forest": {"trees": 10}}


def _model_yaml(path, arch, batch_size, epochs=1):
    kwargs = json.dumps(SMALL.get(arch, {}))
    path.write_text(f"name: one-{arch}\narch: {arch}\narch_kwargs: {kwargs}\nepochs: {epochs}\nlr: 0.01\n"
                    f"batch_size: {batch_size}\nseed: 0\npatience: 0\nthreads: 1\n")
    return path


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_a_last_batch_of_one_window_trains_for_every_registry_model(tmp_path, arch):
    # 34 training windows in batches of 11: 11 + 11 + 11 + 1 (the BatchNorm crash of issue 15)
    ds = open_dataset(make_dataset(tmp_path / "ds", per_split={"train": 34, "val": 10, "test": 10}))
    assert len(ds.rows("train")) % 11 == 1
    meta = train_from_dataset(ds, _model_yaml(tmp_path / "m.yaml", arch, 11, epochs=2), tmp_path / "m.pt",
                              progress=False)
    assert meta["training"]["epochs_run"] >= 1
    model = load_model(tmp_path / "m.pt").module
    p = model(torch.from_numpy(ds.x[ds.rows("test")[:4]].copy()))
    assert torch.isfinite(p).all()


def test_batches_merge_a_single_last_window_and_keep_every_window():
    from seizurewatch.research.train import _batches

    for n, size in ((34, 11), (33, 11), (1, 8), (17, 16), (16, 16)):
        got = _batches(n, size, np.random.default_rng(0))
        assert sorted(np.concatenate(got).tolist()) == list(range(n))
        assert all(len(b) > 1 for b in got) or n == 1


def test_a_failure_inside_an_epoch_says_model_epoch_and_batch_not_cannot_build(tmp_path):
    from seizurewatch.research.train import TrainingError

    ds = open_dataset(make_dataset(tmp_path / "ds", per_split={"train": 34, "val": 10, "test": 10}))
    with pytest.raises(TrainingError) as err:  # batches of one window: BatchNorm cannot train on them
        train_from_dataset(ds, _model_yaml(tmp_path / "m.yaml", "bandpower_lr", 1), tmp_path / "m.pt", progress=False)
    msg = str(err.value)
    assert "'bandpower_lr'" in msg and "epoch 0, batch 0" in msg and "1 of 34 windows" in msg
    assert "cannot build" not in msg and "Expected more than 1 value" in msg
