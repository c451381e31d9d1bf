import numpy as np
import pytest

from seizurewatch import filters
from seizurewatch.errors import DataError
from seizurewatch.preprocess import Preprocessor, PreprocessSpec, StreamingResampler, channel_indices


def run_in_chunks(pre_factory, x, sizes):
    pre = pre_factory()
    out, pos, i = [], 0, 0
    while pos < x.shape[1]:
        n = sizes[i % len(sizes)]
        out.append(pre.process(x[:, pos : pos + n]))
        pos += n
        i += 1
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize("rate_in, rate_out", [(512, 256), (400, 256), (256, 400), (100, 100)])
def test_streaming_preprocess_is_independent_of_chunking(rate_in, rate_out):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, rate_in * 4)).astype(np.float32)
    spec = PreprocessSpec(("a", "b", "c"), rate_out, bandpass=(1.0, 40.0), notch=50.0)

    def factory():
        return Preprocessor(spec, ["c", "a", "b"], rate_in, "test")

    whole = factory().process(x)
    chunked = run_in_chunks(factory, x, [7, 100, 33, 1])
    assert abs(whole.shape[1] - 4 * rate_out) <= 1
    np.testing.assert_allclose(chunked, whole, atol=1e-4)


def test_resampler_keeps_a_tone_at_its_frequency():
    fs_in, fs_out, f = 400, 256, 10.0
    t = np.arange(fs_in * 4) / fs_in
    y = StreamingResampler(1, fs_in, fs_out).process(np.sin(2 * np.pi * f * t)[None].astype(np.float32))[0]
    spec = np.abs(np.fft.rfft(y[fs_out:]))
    peak = np.fft.rfftfreq(len(y) - fs_out, 1 / fs_out)[spec.argmax()]
    assert abs(peak - f) < 0.5


def test_channels_matched_by_label_not_position():
    idx = channel_indices(["EEG Fp1-F7", "C3", "cz"], ["CZ", "FP1-F7"], "x")
    assert idx == [2, 0]
    pre = Preprocessor(PreprocessSpec(("b", "a"), 10.0), ["a", "b"], 10.0, "x")
    out = pre.process(np.array([[1, 2], [3, 4]], np.float32))
    np.testing.assert_array_equal(out, [[3, 4], [1, 2]])


def test_missing_channel_lists_both_sides():
    with pytest.raises(DataError) as e:
        channel_indices(["C3", "C4"], ["C3", "CZ"], "rec.edf")
    msg = str(e.value)
    assert "rec.edf" in msg and "CZ missing" in msg and "the source has: C3, C4" in msg


@pytest.mark.parametrize("rate_in, rate_out", [(399.61, 400), (400, 399), (1000, 256)])
def test_awkward_ratios_stay_cheap_and_chunk_independent(rate_in, rate_out):
    x = np.random.default_rng(2).standard_normal((2, int(rate_in * 3))).astype(np.float32)

    def factory():
        return StreamingResampler(2, rate_in, rate_out)

    whole = factory().process(x)
    chunked = run_in_chunks(factory, x, [13, 400, 1])
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    assert abs(whole.shape[1] - x.shape[1] * rate_out / rate_in) <= 2
    if abs(rate_out / rate_in - 1) <= 1e-3:
        assert factory().identity  # a device clock a hair off nominal is passed through


# ----- the filters without scipy.signal (seizurewatch/filters.py) -------------------------------------------------
@pytest.mark.parametrize("rate, bandpass, notch", [*filters.KEPT, (250.0, (0.5, 40.0), 50.0), (100.0, None, 60.0)])
def test_filter_designs_are_scipys_bit_for_bit(rate, bandpass, notch):
    """The kept designs (and the ones made at first use) are exactly what scipy's butter/iirnotch give."""
    assert np.array_equal(filters.design(rate, bandpass, notch), filters.scipy_design(rate, bandpass, notch))


def test_every_kept_design_is_in_the_table():
    for rate, bandpass, notch in filters.KEPT:
        assert filters._key(rate, bandpass, notch) in filters._table(), (rate, bandpass, notch)


def test_the_streaming_filter_gives_scipy_sosfilt_bits_block_by_block():
    """Fed in blocks of any size, the daemon's filter equals scipy.signal.sosfilt with its state carried, bit for
    bit (float32 in, the same float64 kernel, float32 out)."""
    from scipy import signal

    from seizurewatch.preprocess import StreamingFilter

    x = np.random.default_rng(3).normal(0, 50, (16, 4000)).astype(np.float32)
    for bandpass, notch in (((1.0, 150.0), None), ((1.0, 40.0), 50.0)):
        ours = StreamingFilter(16, 400.0, bandpass, notch)
        sos = ours.sos
        zi = np.zeros((sos.shape[0], 16, 2))
        pos = 0
        for n in (1, 7, 100, 400, 333, 3159):
            block = x[:, pos:pos + n]
            want, zi = signal.sosfilt(sos, block, axis=1, zi=zi)
            assert np.array_equal(ours.process(block), want.astype(np.float32)), (bandpass, notch, n)
            pos += n
        assert np.array_equal(ours.zi, zi)


def test_the_daemon_path_imports_neither_scipy_signal_nor_scipy_stats():
    """Importing the daemon and filtering a block for the shipped model leaves scipy.signal (and the scipy.stats
    its peak finding pulls in) unimported; importing scipy.signal afterwards still works and shares the kernel."""
    import subprocess
    import sys

    from conftest import MODEL, ROOT

    code = (
        "import sys, numpy as np\n"
        "import seizurewatch.cli, seizurewatch.daemon\n"
        "from seizurewatch.modelfile import read_metadata\n"
        "from seizurewatch.preprocess import Preprocessor, PreprocessSpec\n"
        f"spec = PreprocessSpec.from_json(read_metadata({str(MODEL)!r})['preprocess'])\n"
        "x = np.ones((len(spec.channels), 400), np.float32)\n"
        "y = Preprocessor(spec, spec.channels, spec.rate, 'x').process(x)\n"
        "assert y.shape == (len(spec.channels), 400) and np.isfinite(y).all()\n"
        "print(sorted(m for m in sys.modules if m in ('scipy.signal', 'scipy.stats', 'scipy.interpolate')))\n"
        "import scipy.signal\n"
        "print(scipy.signal._signaltools._sosfilt is sys.modules['scipy.signal._sosfilt']._sosfilt)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[:2] == ["[]", "True"], r.stdout
