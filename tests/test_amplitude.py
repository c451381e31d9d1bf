"""Units and amplitude sanity (issue #24): a recording 1000x too small (mV sent as µV) through a device
profile that states its plausible amplitude is an ``amplitude`` fault, never silently 'no seizure'."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DOG1, ROOT
from edf_writer import write_edf

from seizurewatch.devices import load_device
from seizurewatch.edfio import EdfRecording
from seizurewatch.errors import ConfigError
from seizurewatch.replay import ReplayOptions, replay

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

DEVICE = ROOT / "devices" / "dog1-ecog16.yaml"
pytestmark = pytest.mark.needs_data


def _scaled(tmp_path, factor: float):
    r = EdfRecording(DOG1 / "dog1_rec04.edf")
    try:
        x = r.read(0, r.header.n_samples)
        return write_edf(tmp_path / f"rec04x{factor:g}.edf", x * factor, r.header.rate, list(r.header.channels))
    finally:
        r.close()


def test_a_recording_1000x_too_small_is_an_amplitude_fault_and_never_classified(tmp_path):
    res = replay(_scaled(tmp_path, 1e-3), ReplayOptions(device=str(DEVICE)))
    faults = [e for e in res.events if e["kind"] == "fault" and e["fault_type"] == "amplitude"]
    assert faults and faults[0]["event"] == "start" and len(faults[0]["channels"]) == 16
    assert not [e for e in res.events if e["kind"] == "alarm"]
    assert len(res.p) == 0, "windows of an implausible amplitude were classified"


@pytest.mark.filterwarnings("ignore:Physical:UserWarning")
def test_a_recording_1000x_too_large_faults_where_it_leaves_the_plausible_range(tmp_path):
    """x1000 puts the quiet windows of rec04 (2.9 uV RMS -> 2.9 mV) inside the range: only the louder ones
    fault. The natural spread (2.9-454 uV, 160x) leaves no interval that catches every x1000 window."""
    res = replay(_scaled(tmp_path, 1e3), ReplayOptions(device=str(DEVICE)))
    assert any(e["kind"] == "fault" and e["fault_type"] == "amplitude" for e in res.events)


def test_the_recorded_gain_is_plausible(tmp_path):
    res = replay(DOG1 / "dog1_rec04.edf", ReplayOptions(device=str(DEVICE)))
    assert not [e for e in res.events if e["kind"] == "fault" and e["fault_type"] == "amplitude"]
    assert any(e["kind"] == "alarm" and e["event"] == "start" for e in res.events)
    assert np.isfinite(res.p).all() and len(res.p) > 100


def test_a_device_amplitude_range_must_be_ordered_and_positive(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEVICE.read_text().replace("amplitude_uv: [0.5, 5000]", "amplitude_uv: [5000, 0.5]"))
    with pytest.raises(ConfigError, match="amplitude_uv"):
        load_device(bad)
    assert load_device(DEVICE).amplitude_uv == (0.5, 5000.0)
