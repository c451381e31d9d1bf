"""The 2014 Kaggle winner's features in torch (research/hills.py) against a numpy/scipy
reference on a real Dog_1 second, and the forest model through the one training run, the
model file and the daemon's replay."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyedflib
import pytest
import scipy.linalg
import scipy.stats
import torch

from seizurewatch.modelfile import load_model
from seizurewatch.research.dataset import DatasetSpec, SplitSpec, build_dataset
from seizurewatch.research.hills import HillsFeatures
from seizurewatch.research.predict import stream_probabilities
from seizurewatch.research.timescore import SecondScores, score_seconds
from seizurewatch.research.train import TrainConfig
from seizurewatch.research.training_run import ModelSpec, train_from_dataset

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

DOG1 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dog1"
RATE = 400


def _second(edf: Path, t: int) -> np.ndarray:
    with pyedflib.EdfReader(str(edf)) as r:
        return np.stack([r.readSignal(i, t * RATE, RATE) for i in range(r.signals_in_file)]).astype(np.float32)


def _reference(x: np.ndarray) -> np.ndarray:
    """Written from the recipe's description with numpy/scipy, in float64."""
    x = x.astype(np.float64)
    mag = np.log10(np.abs(np.fft.rfft(x, axis=1))[:, 1:48] + 1e-6)  # 1 Hz bins of a 1-s clip: 1..47 Hz
    iu = np.triu_indices(x.shape[0], 1)

    def block(z: np.ndarray) -> np.ndarray:
        c = np.corrcoef(scipy.stats.zscore(z, axis=1))
        return np.concatenate([c[iu], np.sort(np.abs(scipy.linalg.eigvalsh(c)))])

    return np.concatenate([mag.ravel(), block(mag), block(x)])


@pytest.mark.parametrize("t", [10, 80])  # interictal, ictal (rec01: seizure 76-107 s)
def test_features_in_torch_equal_the_numpy_reference_on_a_real_dog1_second(t):
    x = _second(DOG1 / "dog1_rec01.edf", t)
    feat = HillsFeatures(16, 3 * RATE, RATE)  # a longer window: the newest second is scored
    window = np.concatenate([np.zeros((16, 2 * RATE), np.float32), x], axis=1)
    got = feat(torch.from_numpy(window)[None]).numpy()[0]
    ref = _reference(x)
    assert got.shape == ref.shape == (16 * 47 + 2 * (120 + 16),)
    np.testing.assert_allclose(got[: 16 * 47], ref[: 16 * 47], atol=2e-4)  # log10 magnitudes
    np.testing.assert_allclose(got[16 * 47:], ref[16 * 47:], atol=2e-3)  # correlations, eigenvalues
    assert np.isclose(ref[-16:].sum(), 16.0) and np.isclose(got[-16:].sum(), 16.0, atol=1e-3)  # trace of a corr


def test_a_flat_channel_gives_finite_features():
    x = torch.randn(2, 16, RATE) * 40
    x[:, 3] = 0.0
    assert torch.isfinite(HillsFeatures(16, RATE, RATE)(x)).all()


@pytest.fixture(scope="module")
def dog1_1s(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "dog1-1s"
    spec = DatasetSpec(recordings=tuple(str(DOG1 / f"dog1_rec0{i}.edf") for i in (1, 2, 3)),
                       device=str(Path(__file__).resolve().parents[1] / "devices" / "dog1-ecog16.yaml"),
                       window_s=1.0, early_s=15.0, bandpass=(1.0, 150.0),
                       split=SplitSpec(assign={"dog1_rec01": "train", "dog1_rec02": "train", "dog1_rec03": "val"}))
    build_dataset(spec, out)
    return out


def test_early_labels_mark_the_first_15_seconds_of_each_seizure(dog1_1s):
    from seizurewatch.research.dataset import open_dataset

    ds = open_dataset(dog1_1s)
    assert ds.outputs == ["seizure", "early"]
    t = np.asarray([r.t_start for r in ds.index])
    rec = [r.recording for r in ds.index]
    ictal = ds.y[:, 0] == 1
    early = ds.y[:, 1] == 1
    assert not (early & ~ictal).any()
    first = np.asarray([r.endswith("rec01.edf") for r in rec])
    assert sorted(t[first & early].tolist()) == [float(s) for s in range(76, 91)]  # onset 76 s


@pytest.mark.parametrize("combine", ["none", "mean"])
def test_forest_trains_once_exports_and_streams_probabilities_through_the_daemon(dog1_1s, tmp_path, combine):
    spec = ModelSpec(name=f"hills-{combine}", hop_s=1.0,
                     train=TrainConfig(arch="hills_forest", arch_kwargs={"trees": 30, "combine": combine}, threads=1))
    path = tmp_path / "hills.pt"
    meta = train_from_dataset(dog1_1s, spec, path, progress=False)
    assert meta["training"]["config"]["arch"] == "hills_forest"
    assert meta["training"]["epochs_run"] == 1 and meta["window_s"] == 1.0
    loaded = load_model(path)
    assert loaded.kind == "torchscript"
    trace = stream_probabilities(DOG1 / "dog1_rec04.edf", path)  # never trained on
    assert len(trace.t) == int(trace.duration) and ((trace.p >= 0) & (trace.p <= 1)).all()
    s = score_seconds([SecondScores.from_trace("rec04", trace.t, trace.p, trace.duration, trace.seizures)])
    assert s["pooled"]["seconds_unscored"] == 0  # 1-s windows: every second has a probability
    assert s["pooled"]["seizure_auc"] > 0.8  # a held-out seizure, second by second
    if combine == "mean":  # output 0 is the mean of P(seizure) and P(early)
        x = torch.randn(3, 16, RATE) * 50
        out = loaded.module(x)
        assert out.shape == (3, 2) and torch.all(out[:, 0] <= (1 + out[:, 1]) / 2 + 1e-5)


def test_a_forest_without_the_early_output_refuses_to_combine(dog1_1s, tmp_path):
    from seizurewatch.errors import ConfigError
    from seizurewatch.research.dataset import open_dataset

    ds = open_dataset(dog1_1s)
    one = dataclasses.replace(ds, y=ds.y[:, :1], manifest={**ds.manifest, "outputs": ["seizure"]})
    spec = ModelSpec(name="h", train=TrainConfig(arch="hills_forest", arch_kwargs={"trees": 5, "combine": "mean"}))
    with pytest.raises(ConfigError, match="combine: mean needs two outputs"):
        train_from_dataset(one, spec, tmp_path / "h.pt", progress=False)
