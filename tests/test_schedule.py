"""One ``WindowSchedule``: the ring buffer and the streaming quality checks given the same schedule emit
the same windows, whatever the block sizes (nothing at run time keeps them paired); the planner's window
starts and the replays' window spans come from it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seizurewatch.quality import QualityChecker
from seizurewatch.research.labels import Seizure, window_starts
from seizurewatch.ringbuffer import RingBuffer
from seizurewatch.schedule import WindowSchedule
from seizurewatch.streamquality import StreamingQuality

CH = ("a", "b", "c")


@settings(max_examples=60, deadline=None)
@given(window=st.integers(1, 80), hop=st.integers(1, 80), rate=st.sampled_from([100.0, 128.0, 400.0]),
       sizes=st.lists(st.integers(1, 150), min_size=1, max_size=6), total=st.integers(0, 600),
       resets=st.lists(st.integers(0, 600), max_size=2))
def test_ring_and_quality_on_one_schedule_pair_one_to_one(window, hop, rate, sizes, total, resets):
    schedule = WindowSchedule(window / rate, hop / rate)
    x = np.random.default_rng(window * 1000 + hop).normal(0, 20, (len(CH), total)).astype(np.float32)
    checker = QualityChecker(CH, rate, 50.0)
    ring, quality = RingBuffer(len(CH), schedule, rate), StreamingQuality(checker, schedule)
    assert (ring.window, ring.hop) == (quality.window, quality.hop) == (window, hop)
    pos, i = 0, 0
    while pos < total:
        if pos in resets:  # a gap: both start over
            ring.reset(pos / rate)
            quality.reset()
        block = x[:, pos : pos + sizes[i % len(sizes)]]
        windows, verdicts = ring.push(block), quality.push(block)
        assert len(windows) == len(verdicts)
        assert verdicts == [checker.check(w.data) for w in windows]  # each verdict is of its window
        pos, i = pos + block.shape[1], i + 1


def test_samples_and_refusals():
    s = WindowSchedule(1.0, 0.25)
    assert s.samples(400.0) == (400, 100) and s.window_samples(256.0) == 256 and s.hop_samples(10.0) == 2
    with pytest.raises(ValueError, match=">= 1 sample"):
        s.samples(2.0)  # a 0.25-s hop at 2 Hz is no whole sample
    for bad in ((0.0, 1.0), (1.0, -1.0), (float("nan"), 1.0)):
        with pytest.raises(ValueError, match="> 0 s"):
            WindowSchedule(*bad)
    assert s.span(10.0) == (9.0, 10.0) and s.every(0.5) == WindowSchedule(1.0, 0.5)
    assert s.fits(2.0, 1200, 400.0) and not s.fits(2.0, 1199, 400.0)


def test_window_starts_on_the_schedule_with_the_ictal_stride_inside_seizures():
    s = WindowSchedule(2.0, 1.0)
    assert list(s.starts(5.0)) == [0.0, 1.0, 2.0, 3.0]  # windows that end by 5 s
    assert list(s.every(0.4).starts(4.0, start=1.0)) == pytest.approx([1.0, 1.4, 1.8])
    assert window_starts(6.0, s, 0.5, [Seizure(1.2, 4.0)]) == [0.0, 1.0, 1.2, 1.7, 2.0, 3.0, 4.0]
    assert window_starts(1.5, s, 0.5, []) == []  # the recording is shorter than a window


def test_a_window_without_its_verdict_stops_the_stream_instead_of_being_skipped():
    """The ring buffer and the quality checks share one schedule, so each window has its verdict; were they ever
    out of step, the pipeline's pairing would drop windows without a word: the windower refuses instead."""
    from seizurewatch.preprocess import Preprocessor, PreprocessSpec
    from seizurewatch.windower import StageTimes, Windower

    spec = PreprocessSpec(("a", "b"), 100.0)
    w = Windower(Preprocessor(spec, ["a", "b"], 100.0, "test"), WindowSchedule(1.0, 0.5), 50.0, None, StageTimes())
    block = np.random.default_rng(0).normal(0, 20, (2, 250)).astype(np.float32)
    windows, verdicts = w.push(block, 0.0, 0.0)
    assert len(windows) == len(verdicts) == 4  # 2.5 s: windows ending at 1, 1.5, 2, 2.5 s
    w.quality.reset()  # the checks start over while the ring buffer does not: out of step
    with pytest.raises(RuntimeError, match="out of step"):
        w.push(block, 2.5, 0.0)
