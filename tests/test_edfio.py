import numpy as np
import pyedflib
import pytest
from conftest import DOG1

from seizurewatch.edfio import EdfRecording, dedupe_labels
from seizurewatch.errors import DataError

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them


def test_chunked_read_equals_whole_read():
    path = DOG1 / "dog1_rec04.edf"
    with EdfRecording(path) as rec:
        parts = [b for _, b in rec.chunks(1237)]
        whole_chunked = np.concatenate(parts, axis=1)
    r = pyedflib.EdfReader(str(path))
    try:
        whole = np.stack([r.readSignal(i) for i in range(r.signals_in_file)]).astype(np.float32)
    finally:
        r.close()
    assert whole_chunked.shape == whole.shape == (16, 47200)
    np.testing.assert_array_equal(whole_chunked, whole)


def test_header_and_annotations():
    with EdfRecording(DOG1 / "dog1_rec04.edf") as rec:
        h = rec.header
    assert h.rate == 400 and h.channels[0] == "c001" and h.duration == 118.0
    seiz = [a for a in h.annotations if a.description == "seizure"]
    assert len(seiz) == 1 and seiz[0].onset == 60.0 and seiz[0].duration == 41.0
    assert sum(a.description == "join" for a in h.annotations) == 16


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(DataError, match="recording not found"):
        EdfRecording(tmp_path / "nope.edf")
    bad = tmp_path / "bad.edf"
    bad.write_bytes(b"this is not an EDF file" * 20)
    with pytest.raises(DataError, match="not a readable EDF"):
        EdfRecording(bad)


def test_repeated_labels_get_suffixes():
    assert dedupe_labels(["A", "T8-P8", "B", "T8-P8"]) == ["A", "T8-P8-0", "B", "T8-P8-1"]
