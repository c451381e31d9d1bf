import json

import matplotlib.image as mpimg
import numpy as np
import pyedflib
import pytest
from conftest import run_cli
from edf_writer import write_edf

from seizurewatch.edfio import EdfRecording
from seizurewatch.errors import DataError
from seizurewatch.research.inspect import channel_stats, inspect_recording

RATE = 256


@pytest.fixture
def synthetic(tmp_path):
    """120 s: a flat channel, a 60 Hz hum channel, and noise with mean 10 and std 20."""
    n = 120 * RATE
    t = np.arange(n) / RATE
    rng = np.random.default_rng(1)
    data = np.stack([np.full(n, 5.0), 50 * np.sin(2 * np.pi * 60 * t) + rng.normal(0, 1, n),
                     rng.normal(10, 20, n)])
    return write_edf(tmp_path / "synth.edf", data, RATE, ["FLAT", "HUM", "EEG"],
                     annotations=[(30, 20, "seizure"), (70, 0, "join")])


def test_stats_flatline_and_line_noise(synthetic):
    with EdfRecording(synthetic) as rec:
        stats = {s.channel: s for s in channel_stats(rec)}
        small = {s.channel: s for s in channel_stats(rec, chunk_s=7)}
    r = pyedflib.EdfReader(str(synthetic))
    whole = [r.readSignal(i) for i in range(3)]
    r.close()
    assert stats["FLAT"].flags == ("flatline",) and stats["FLAT"].std < 1e-2 and stats["FLAT"].flat_s == 120
    assert "line_noise_60hz" in stats["HUM"].flags and stats["HUM"].line_60hz > 0.95
    assert stats["HUM"].line_50hz < 0.01 and "line_noise_50hz" not in stats["HUM"].flags
    assert stats["EEG"].flags == () and stats["EEG"].flat_s == 0
    for i, name in enumerate(("FLAT", "HUM", "EEG")):
        s = stats[name]
        assert s.mean == pytest.approx(whole[i].mean(), abs=1e-3)
        assert s.std == pytest.approx(whole[i].std(), rel=1e-4, abs=1e-4)
        assert (s.min, s.max) == pytest.approx((whole[i].min(), whole[i].max()), abs=1e-3)
        assert small[name].mean == pytest.approx(s.mean, abs=1e-4) and small[name].std == pytest.approx(s.std)
    assert stats["EEG"].mean == pytest.approx(10, abs=0.5) and stats["EEG"].std == pytest.approx(20, rel=0.03)


def test_report_and_pngs(synthetic, tmp_path):
    out = tmp_path / "out"
    res = inspect_recording(synthetic, out, start=20, window=60)
    assert res.report == out / "report.html" and len(res.images) == 2
    for png in res.images:
        img = mpimg.imread(png)
        assert img.ndim == 3 and img.shape[0] > 150 and img.shape[1] > 600
        assert img[..., :3].std() > 0.05  # not a blank canvas
    html = res.report.read_text()
    assert html.count("data:image/png;base64,") == 2
    for text in ("Per-channel statistics", "FLAT: flatline", "HUM: line_noise_60hz", "256 Hz", "seizure"):
        assert text in html
    stats = json.loads((out / "stats.json").read_text())
    assert [a["description"] for a in stats["annotations"]] == ["seizure", "join"]
    one = inspect_recording(synthetic, tmp_path / "one", channel="eeg", start=0, window=5)
    assert one.images[0].name == "synth-traces-0s.png"


def test_bad_channel_and_start(synthetic, tmp_path):
    with pytest.raises(DataError, match=r"synth.edf: no channel 'Cz'; the file has: FLAT, HUM, EEG"):
        inspect_recording(synthetic, tmp_path / "x", channel="Cz")
    with pytest.raises(DataError, match=r"start 500 s is outside the recording \(0-120 s\)"):
        inspect_recording(synthetic, tmp_path / "x", start=500)


def test_cli_inspect(synthetic, tmp_path):
    r = run_cli("inspect", str(synthetic), "--channel", "HUM", "--start", "60", "--window", "2",
                "--out", str(tmp_path / "cli"))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["flagged_channels"] == {"FLAT": ["flatline"], "HUM": ["line_noise_60hz"]}
    assert (tmp_path / "cli" / "report.html").is_file()
    bad = run_cli("inspect", str(tmp_path / "nope.edf"))
    assert bad.returncode == 2 and "nope.edf: recording not found" in bad.stderr
