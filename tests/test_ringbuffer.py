import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from seizurewatch.ringbuffer import RingBuffer


def feed(signal: np.ndarray, sizes: list[int], window: int, hop: int, rate: float = 100.0):
    rb = RingBuffer(signal.shape[0], window, hop, rate)
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
    rb = RingBuffer(1, 10, 5, 10.0)
    assert len(rb.push(np.ones((1, 12), np.float32))) == 1
    rb.reset(100.0)
    assert rb.push(np.ones((1, 9), np.float32)) == []  # history dropped: needs a full window again
    (w,) = rb.push(np.ones((1, 1), np.float32))
    assert w.t_end == 101.0 and w.t_start == 100.0


def test_memory_is_one_window():
    rb = RingBuffer(23, 7680, 256, 256.0)
    rb.push(np.zeros((23, 100_000), np.float32))
    assert rb.buf.nbytes == 23 * 7680 * 4
