"""Signal-quality checks: the right fault type and channel names, on real Dog_1 signal."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DOG1, SCALP8

from seizurewatch.edfio import EdfRecording
from seizurewatch.preprocess import Preprocessor, PreprocessSpec
from seizurewatch.quality import QualityChecker

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

CH = tuple(f"c{i:03d}" for i in range(1, 17))
RATE = 400.0


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    """Ten seconds of real interictal Dog_1 iEEG (16 x 4000, µV)."""
    with EdfRecording(DOG1 / "dog1_rec01.edf") as rec:
        return rec.read(4000, 4000)


def faults(x: np.ndarray, line_freq: float = 60.0):
    v = QualityChecker(CH, RATE, line_freq).check(x)
    return {k: c for k, c in v.faults.items() if c}, v.usable


def test_clean_signal_has_no_faults(clean):
    assert faults(clean) == ({}, True)


def test_flatline_channel(clean):
    x = clean.copy()
    x[3] = 12.5  # a dead channel sitting at an offset
    assert faults(x) == ({"flatline": ["c004"]}, True)


def test_nonfinite_channels_make_the_window_unusable(clean):
    x = clean.copy()
    x[0, 100] = np.nan
    x[15, 2000:2010] = np.inf
    assert faults(x) == ({"nonfinite": ["c001", "c016"]}, False)


def test_clipped_channel_at_the_rails(clean):
    x = clean.copy()
    lim = np.percentile(np.abs(x[6]), 90)
    x[6] = np.clip(x[6], -lim, lim)
    assert faults(x) == ({"clipping": ["c007"]}, True)


def test_stuck_channel_below_the_window_peak_is_clipping(clean):
    """A saturated channel holds its rail even when the window's peak lies elsewhere."""
    x = clean.copy()
    x[9, 1000:1040] = x[9, 1000]  # 100 ms held at one value
    x[9, 3000] = 10 * np.abs(x[9]).max()  # the window's maximum is a single other sample
    assert faults(x) == ({"clipping": ["c010"]}, True)


def test_mains_hum_dominates(clean):
    x = clean.copy()
    t = np.arange(x.shape[1]) / RATE
    x[11] += (20 * x[11].std() * np.sin(2 * np.pi * 60.0 * t)).astype(np.float32)
    assert faults(x) == ({"line_noise": ["c012"]}, True)
    assert faults(x, line_freq=50.0) == ({}, True)  # hum at another site's mains frequency is not mains


def test_most_channels_bad_means_not_classified(clean):
    x = clean.copy()
    x[:9] = 0.0
    found, usable = faults(x)
    assert found == {"flatline": list(CH[:9])} and usable is False


def test_real_saturation_in_dog1_rec04_is_found():
    """c014 of dog1_rec04 sticks at 1032.8 µV from 105.35 s to 105.89 s (the amplifier's rail)."""
    with EdfRecording(DOG1 / "dog1_rec04.edf") as rec:
        before = rec.read(int(90 * RATE), int(10 * RATE))
        during = rec.read(int(97 * RATE), int(10 * RATE))
    assert "c014" not in faults(before)[0].get("clipping", [])
    assert "c014" in faults(during)[0]["clipping"]


@pytest.mark.parametrize("name", ["dog1_rec01.edf", "dog1_rec02.edf", "dog1_rec03.edf"])
def test_no_false_faults_on_real_recordings(name):
    with EdfRecording(DOG1 / name) as rec:
        x = rec.read(0, rec.header.n_samples)
    w = int(10 * RATE)
    wins = np.stack([x[:, i - w : i] for i in range(w, x.shape[1] + 1, int(RATE))])
    verdicts = QualityChecker(CH, RATE, 60.0).check_batch(wins)
    assert all(not any(v.faults.values()) and v.usable for v in verdicts)


def test_no_false_clipping_on_quantised_scalp_eeg():
    """scalp8 is integer-quantised at 100 Hz: values repeat up to 6 samples in a row, legitimately."""
    with EdfRecording(SCALP8 / "scalp8_rec01.edf") as rec:
        x = rec.read(0, 32670)  # the signal, without the EDF record padding at the end
        ch = rec.header.channels
    wins = np.stack([x[:, i - 1000 : i] for i in range(1000, x.shape[1] + 1, 100)])
    verdicts = QualityChecker(ch, 100.0, 60.0).check_batch(wins)
    assert sum(bool(v.faults["clipping"]) for v in verdicts) == 0


def test_nan_block_does_not_poison_the_filters(clean):
    """NaNs are reported on the unfiltered copy, and the filtered signal recovers right after."""
    spec = PreprocessSpec(channels=CH, rate=RATE, bandpass=(1.0, 150.0))
    pre = Preprocessor(spec, CH, RATE, "test")
    x = clean.copy()
    x[5, 1000:1100] = np.nan
    raw, y = pre.process_with_raw(x[:, :2000])
    assert np.isnan(raw[5]).all() and np.isfinite(raw[np.arange(16) != 5]).all()
    assert np.isfinite(y).all()
    raw2, y2 = pre.process_with_raw(x[:, 2000:])
    assert np.isfinite(raw2).all() and np.isfinite(y2).all()
    # the filtered path is the same as process() on clean input
    ref = Preprocessor(spec, CH, RATE, "test")
    assert np.allclose(ref.process(clean), Preprocessor(spec, CH, RATE, "test").process_with_raw(clean)[1])
