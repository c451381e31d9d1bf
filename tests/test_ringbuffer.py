import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from seizurewatch.ringbuffer import RingBuffer, as_batch
from seizurewatch.schedule import WindowSchedule


def feed(signal: np.ndarray, sizes: list[int], window: int, hop: int, rate: float = 100.0):
    rb = RingBuffer(signal.shape[0], WindowSchedule(window / rate, hop / rate), rate)
    out, pos, i = [], 0, 0
    while pos < signal.shape[1]:
        n = sizes[i % len(sizes)]
        out += rb.push(signal[:, pos : pos + n])
        pos += n
        i += 1
    return out


@settings(max_examples=150, deadline=None)
@given(
    window=st.integers(1, 50),
    hop=st.integers(1, 60),
    total=st.integers(0, 400),
    sizes=st.lists(st.integers(1, 200), min_size=1, max_size=8),
)
def test_windows_are_exact_slices_whatever_the_block_sizes(window, hop, total, sizes):
    sig = np.arange(2 * total, dtype=np.float32).reshape(2, total)
    wins = feed(sig, sizes, window, hop)
    expected_ends = list(range(window, total + 1, hop))
    assert [round(w.t_end * 100) for w in wins] == expected_ends
    for w, end in zip(wins, expected_ends):
        np.testing.assert_array_equal(w.data, sig[:, end - window : end])
        assert w.data.shape == (2, window)
    assert [w.index for w in wins] == list(range(len(wins)))


def test_block_larger_than_buffer_emits_every_window():
    sig = np.random.default_rng(0).standard_normal((3, 1000)).astype(np.float32)
    wins = feed(sig, [1000], window=100, hop=10)
    assert len(wins) == (1000 - 100) // 10 + 1
    np.testing.assert_array_equal(wins[-1].data, sig[:, 900:1000])


def test_reset_starts_over_at_new_time():
    rb = RingBuffer(1, WindowSchedule(1.0, 0.5), 10.0)
    assert len(rb.push(np.ones((1, 12), np.float32))) == 1
    rb.reset(100.0)
    assert rb.push(np.ones((1, 9), np.float32)) == []  # history dropped: needs a full window again
    (w,) = rb.push(np.ones((1, 1), np.float32))
    assert w.t_end == 101.0 and w.t_start == 100.0


def test_memory_is_a_window_plus_room_for_the_largest_block_at_most_two_windows_more():
    live = RingBuffer(23, WindowSchedule(30.0, 1.0), 256.0)
    for _ in range(200):  # a live stream's small blocks: one window and 8 hops
        live.push(np.zeros((23, 64), np.float32))
    assert live.buf.nbytes == 23 * (7680 + 8 * 256) * 4
    replay = RingBuffer(23, WindowSchedule(30.0, 1.0), 256.0)
    replay.push(np.zeros((23, 7680), np.float32))
    wins = replay.push(np.arange(23 * 7680, dtype=np.float32).reshape(23, 7680))  # 30 s blocks at speed max
    assert replay.buf.shape[1] == 2 * 7680  # grown to fit the block: its 30 windows lie in one buffer
    assert len(wins) == 30 and np.shares_memory(as_batch(wins), wins[0].data)
    wins = replay.push(np.zeros((23, 100_000), np.float32))
    assert len(wins) == 100_000 // 256
    assert replay.buf.shape[1] == 3 * 7680  # never more than two windows of room, whatever the block


def test_windows_are_read_only_views_that_later_pushes_never_overwrite():
    sig = np.random.default_rng(1).standard_normal((2, 500)).astype(np.float32)
    rb = RingBuffer(2, WindowSchedule(0.5, 0.1), 100.0)
    first = rb.push(sig[:, :60])
    assert all(not w.data.flags.writeable and w.data.base is not None for w in first)
    for i in range(60, 500, 7):  # many renewals of the buffer later
        rb.push(sig[:, i : i + 7])
    np.testing.assert_array_equal(first[0].data, sig[:, 0:50])
    np.testing.assert_array_equal(first[1].data, sig[:, 10:60])


@settings(max_examples=100, deadline=None)
@given(window=st.integers(1, 40), hop=st.integers(1, 50), sizes=st.lists(st.integers(1, 300), min_size=1, max_size=5))
def test_as_batch_equals_stacking_the_windows(window, hop, sizes):
    sig = np.arange(3 * 600, dtype=np.float32).reshape(3, 600)
    rb = RingBuffer(3, WindowSchedule(window / 100.0, hop / 100.0), 100.0)
    pos, i = 0, 0
    while pos < 600:
        wins = rb.push(sig[:, pos : pos + sizes[i % len(sizes)]])
        pos, i = pos + sizes[i % len(sizes)], i + 1
        if wins:
            batch = as_batch(wins)
            np.testing.assert_array_equal(batch, np.stack([w.data for w in wins]))
            assert batch.shape == (len(wins), 3, window)


def test_as_batch_is_a_view_of_the_windows_span():
    sig = np.random.default_rng(2).standard_normal((4, 2000)).astype(np.float32)
    rb = RingBuffer(4, WindowSchedule(10.0, 1.0), 100.0)
    rb.push(sig[:, :1000])
    wins = rb.push(sig[:, 1000:1800])  # 8 windows at once
    batch = as_batch(wins)
    assert len(wins) == 8 and np.shares_memory(batch, wins[0].data) and not batch.flags.writeable
    lo, hi = np.lib.array_utils.byte_bounds(batch)
    assert hi - lo == ((4 - 1) * rb.capacity + 1700) * 4  # the 17 s span in the buffer, not 8 copies
    rb.push(sig[:, 1800:])  # later samples go elsewhere: the batch still holds what it held
    np.testing.assert_array_equal(batch[7], sig[:, 800:1800])
