"""Streaming quality verdicts (per-segment statistics) equal the per-window checks on the same windows."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DOG1, SCALP8
from hypothesis import given, settings
from hypothesis import strategies as st

from seizurewatch.edfio import EdfRecording
from seizurewatch.quality import QualityChecker
from seizurewatch.schedule import WindowSchedule
from seizurewatch.streamquality import StreamingQuality

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

CH = tuple(f"c{i:03d}" for i in range(1, 17))
RATE = 400.0


def windows_of(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    return np.stack([x[:, e - window : e] for e in range(window, x.shape[1] + 1, hop)])


def streamed(checker: QualityChecker, x: np.ndarray, window: int, hop: int, sizes: list[int]):
    sq = StreamingQuality(checker, WindowSchedule(window / checker.rate, hop / checker.rate))
    out, pos, i = [], 0, 0
    while pos < x.shape[1]:
        n = sizes[i % len(sizes)]
        out += sq.push(x[:, pos : pos + n])
        pos, i = pos + n, i + 1
    return sq, out


@pytest.fixture(scope="module")
def rec04() -> np.ndarray:
    """Dog_1 rec04 in full (118 s, with a real saturation of c014 at 105.35-105.89 s)."""
    with EdfRecording(DOG1 / "dog1_rec04.edf") as rec:
        return rec.read(0, rec.header.n_samples)


def with_faults(x: np.ndarray) -> np.ndarray:
    """Every fault type, at places that straddle segment boundaries."""
    x = x.copy()
    t = np.arange(x.shape[1]) / RATE
    x[2, 4150:8850] = 7.25  # flatline across several 1 s segments
    x[5, 12_390:12_420] = np.nan  # NaN straddling a boundary
    x[8, 20_395:20_440] = x[8, 20_395]  # 112 ms stuck, straddling a boundary
    x[8, 20_000] = 50 * np.abs(x[8]).max()  # the window peak lies elsewhere
    lim = np.percentile(np.abs(x[11, 28_000:32_000]), 85)
    x[11, 28_000:32_000] = np.clip(x[11, 28_000:32_000], -lim, lim)
    x[12, 36_000:44_000] += (40 * x[12].std() * np.sin(2 * np.pi * 60.0 * t[36_000:44_000])).astype(np.float32)
    x[:, 30_000:30_010] = np.inf  # every channel non-finite for a moment
    return x


@pytest.mark.parametrize("sizes", [[3200], [400], [37, 1000, 4096], [1]])
def test_same_verdicts_as_each_window_checked_on_its_own(rec04, sizes):
    x = with_faults(rec04)
    ck = QualityChecker(CH, RATE, 60.0)
    window, hop = 4000, 400
    sq, got = streamed(ck, x, window, hop, sizes if sizes != [1] else [1] * 5 + [20_000])
    want = ck.check_batch(windows_of(x, window, hop))
    assert not sq.per_window and sq.seg == 400
    assert len(got) == len(want) == (x.shape[1] - window) // hop + 1
    assert got == want
    found = {k for v in want for k, chans in v.faults.items() if chans}
    assert found == {"nonfinite", "flatline", "clipping", "line_noise"}  # the test covers every fault type
    assert any("c014" in v.faults["clipping"] for v in want)  # and the real saturation


def test_hop_not_dividing_the_window_and_an_odd_window(rec04):
    x = with_faults(rec04)[:, :24_000]
    ck = QualityChecker(CH, RATE, 60.0)
    for window, hop in [(3000, 1200), (2205, 315)]:  # segments of 600 and 315 samples; 2205 is odd
        sq, got = streamed(ck, x, window, hop, [1111])
        assert not sq.per_window
        assert got == ck.check_batch(windows_of(x, window, hop))


def test_small_segments_fall_back_to_checking_each_window(rec04):
    x = with_faults(rec04)[:, :8000]
    ck = QualityChecker(CH, RATE, 60.0)
    sq, got = streamed(ck, x, 4000, 7, [500])  # gcd 1: a segment cannot hold a 50 ms run
    assert sq.per_window
    assert got == ck.check_batch(windows_of(x, 4000, 7))


def test_reset_needs_a_whole_window_again(rec04):
    ck = QualityChecker(CH, RATE, 60.0)
    sq = StreamingQuality(ck, WindowSchedule(10.0, 1.0))
    assert len(sq.push(rec04[:, :4400])) == 2
    sq.reset()
    assert sq.push(rec04[:, 4400:8399]) == []
    (v,) = sq.push(rec04[:, 8399:8400])
    assert v == ck.check(rec04[:, 4400:8400])


def test_a_run_carried_across_a_reset_does_not_count(rec04):
    """A held value just before a gap and just after it are two runs, each too short."""
    x = rec04[:, :12_000].copy()
    x[4, 3995:4000] = 3.0  # 5 samples before the reset...
    x[4, 4000:4010] = 3.0  # ...and 10 after: 15 in a row only if the reset were ignored
    ck = QualityChecker(CH, RATE, 60.0)
    sq = StreamingQuality(ck, WindowSchedule(10.0, 1.0))
    sq.push(x[:, :4000])
    sq.reset()
    got = sq.push(x[:, 4000:])
    assert got == ck.check_batch(windows_of(x[:, 4000:], 4000, 400))
    assert all(not v.faults["clipping"] for v in got)


def test_quantised_scalp_eeg_without_false_clipping():
    with EdfRecording(SCALP8 / "scalp8_rec01.edf") as rec:
        x = rec.read(0, 32670)
        ch = rec.header.channels
    ck = QualityChecker(ch, 100.0, 60.0)
    _, got = streamed(ck, x, 3000, 100, [800])
    assert got == ck.check_batch(windows_of(x, 3000, 100))
    assert not any(v.faults["clipping"] for v in got)


@settings(max_examples=60, deadline=None)
@given(
    seg=st.integers(20, 60),
    n_win=st.integers(1, 6),
    n_hop=st.integers(1, 4),
    stuck_at=st.integers(0, 900),
    stuck_len=st.integers(5, 40),
    sizes=st.lists(st.integers(1, 400), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_property_runs_extremes_and_spread_match(seg, n_win, n_hop, stuck_at, stuck_len, sizes, seed):
    """Random stuck runs anywhere (across segment and window edges), integer-valued signals with ties at the
    extremes, a drift and a flat channel: the same verdicts whatever the segmentation and the block sizes."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-40, 40, size=(3, 1000)).astype(np.float32)
    x[0, stuck_at : stuck_at + stuck_len] = x[0, stuck_at]
    x[1] = 3.0 + 2e-4 * np.arange(1000)  # a slow drift: flat within a segment, flat over a window below 173 samples
    x[2] = 5.0
    ck = QualityChecker(("a", "b", "c"), 200.0, None)  # a run of 10 samples = 9 repeats is 'stuck'
    window, hop = seg * n_win, seg * n_hop
    _, got = streamed(ck, x, window, hop, sizes)
    want = ck.check_batch(windows_of(x, window, hop)) if window <= x.shape[1] else []
    assert got == want
