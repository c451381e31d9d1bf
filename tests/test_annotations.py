import numpy as np
import pytest
import scipy.io
from conftest import DATA, DOG1
from edf_writer import noise, write_edf

from seizurewatch.edfio import EdfRecording
from seizurewatch.errors import DataError
from seizurewatch.research.annotations import (
    find_annotations,
    find_clips,
    read_chbmit_summary,
    read_clip,
    read_csv_annotations,
    read_edf_annotations,
    read_tuh_csv_bi,
)
from seizurewatch.research.dataset.plan import _clip_groups
from seizurewatch.types import Annotation

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

# As published on PhysioNet (chb01 uses "Seizure Start Time:", later patients "Seizure 1 Start Time:").
CHB_SUMMARY = """Data Sampling Rate: 256 Hz
*************************

Channels in EDF Files:
**********************
Channel 1: FP1-F7
Channel 2: F7-T7
Channel 3: T8-P8
Channel 4: FZ-CZ
Channel 5: T8-P8

File Name: chb99_01.edf
File Start Time: 11:42:54
File End Time: 12:42:54
Number of Seizures in File: 0

File Name: chb99_03.edf
File Start Time: 13:43:04
File End Time: 14:43:04
Number of Seizures in File: 1
Seizure Start Time: 2996 seconds
Seizure End Time: 3036 seconds

File Name: chb99_04.edf
File Start Time: 14:43:12
File End Time: 15:43:12
Number of Seizures in File: 2
Seizure 1 Start Time: 12 seconds
Seizure 1 End Time: 20 seconds
Seizure 2 Start Time: 40 seconds
Seizure 2 End Time: 52 seconds
"""


def test_chbmit_summary_both_variants(tmp_path):
    p = tmp_path / "chb99-summary.txt"
    p.write_text(CHB_SUMMARY)
    table = read_chbmit_summary(p)
    assert table["chb99_01.edf"] == []
    assert table["chb99_03.edf"] == [Annotation(2996.0, 40.0, "seizure")]
    assert table["chb99_04.edf"] == [Annotation(12.0, 8.0, "seizure"), Annotation(40.0, 12.0, "seizure")]


def test_chbmit_layout_with_tiny_edf(tmp_path):
    """A plain EDF as CHB-MIT publishes it (no annotations inside, T8-P8 twice) + the summary."""
    (tmp_path / "chb99-summary.txt").write_text(CHB_SUMMARY)
    labels = ["FP1-F7", "F7-T7", "T8-P8", "FZ-CZ", "T8-P8"]
    edf = write_edf(tmp_path / "chb99_04.edf", noise(5, 60, 256), 256, labels, plus=False)
    with EdfRecording(edf) as rec:
        assert rec.header.channels == ("FP1-F7", "F7-T7", "T8-P8-0", "FZ-CZ", "T8-P8-1")
        assert rec.header.annotations == ()
    found = find_annotations(edf)
    assert found.source.endswith("chb99-summary.txt")
    assert [(a.onset, a.end) for a in found.annotations] == [(12.0, 20.0), (40.0, 52.0)]
    # a file the summary does not list: clear error naming it
    other = write_edf(tmp_path / "chb99_77.edf", noise(5, 10, 256), 256, labels, plus=False)
    with pytest.raises(DataError, match="chb99_77.edf: no annotations found"):
        find_annotations(other)
    assert find_annotations(other, required=False) is None


def test_chbmit_summary_errors(tmp_path):
    p = tmp_path / "bad-summary.txt"
    p.write_text("File Name: a.edf\nSeizure Start Time: 10 seconds\nFile Name: b.edf\n")
    with pytest.raises(DataError, match=r"bad-summary.txt:3: seizure start without an end time in a.edf"):
        read_chbmit_summary(p)
    p.write_text("File Name: a.edf\nSeizure 1 Start Time: 10 seconds\nSeizure 1 End Time: 5 seconds\n")
    with pytest.raises(DataError, match="ends .5 s. before it starts"):
        read_chbmit_summary(p)
    p.write_text("hello\n")
    with pytest.raises(DataError, match="not a CHB-MIT summary"):
        read_chbmit_summary(p)


def test_csv_with_and_without_header(tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("onset,duration,description\n76.000,0.000,join\n76,31,seizure\n")
    b = tmp_path / "b.csv"
    b.write_text("76,0,join\n\n76,31,seizure, clinical\n")
    assert read_csv_annotations(a) == [Annotation(76.0, 0.0, "join"), Annotation(76.0, 31.0, "seizure")]
    assert read_csv_annotations(b)[1] == Annotation(76.0, 31.0, "seizure, clinical")
    bad = tmp_path / "bad.csv"
    bad.write_text("onset,duration,description\n1,2,seizure\nten,2,seizure\n")
    with pytest.raises(DataError, match=r"bad.csv:3: onset and duration must be numbers"):
        read_csv_annotations(bad)
    bad.write_text("1,2\n")
    with pytest.raises(DataError, match=r"bad.csv:1: expected onset,duration,description"):
        read_csv_annotations(bad)
    bad.write_text("1,-2,seizure\n")
    with pytest.raises(DataError, match=r"bad.csv:1: .*duration >= 0"):
        read_csv_annotations(bad)
    with pytest.raises(DataError, match="annotation file not found"):
        read_csv_annotations(tmp_path / "none.csv")


def test_edf_plus_annotations_match_the_sidecar_csv():
    inside = read_edf_annotations(DOG1 / "dog1_rec04.edf")
    sidecar = read_csv_annotations(DOG1 / "dog1_rec04.csv")
    assert sorted(inside, key=lambda a: (a.onset, a.description)) == \
        sorted(sidecar, key=lambda a: (a.onset, a.description))
    assert sum(a.description == "join" for a in inside) == 16


def test_find_annotations_order(tmp_path):
    labels = ["a", "b"]
    edf = write_edf(tmp_path / "r1.edf", noise(2, 30, 100), 100, labels,
                    annotations=[(5, 0, "join"), (10, 4, "seizure")])
    found = find_annotations(edf)
    assert found.source == str(edf) and [a.description for a in found.annotations] == ["join", "seizure"]
    # a sidecar CSV wins over the inside, but the seams inside are kept
    (tmp_path / "r1.csv").write_text("onset,duration,description\n20,5,seizure\n")
    found = find_annotations(edf)
    assert found.source.endswith("r1.csv")
    assert [(a.onset, a.description) for a in found.annotations] == [(5.0, "join"), (20.0, "seizure")]
    # a header-only sidecar marks a seizure-free recording (found, nothing in it)
    plain = write_edf(tmp_path / "r2.edf", noise(2, 30, 100), 100, labels, plus=False)
    (tmp_path / "r2.csv").write_text("onset,duration,description\n")
    assert find_annotations(plain).annotations == []


def test_tuh_csv_bi(tmp_path):
    p = tmp_path / "aaaaaaac_s001_t000.csv_bi"
    p.write_text("# version = csv_v1.0.0\n# bname = aaaaaaac_s001_t000\n# duration = 301.00 secs\n#\n"
                 "channel,start_time,stop_time,label,confidence\n"
                 "TERM,0.0000,36.8868,bckg,1.0000\nTERM,36.8868,183.3055,seiz,1.0000\n"
                 "TERM,183.3055,301.0000,bckg,1.0000\nFP1-F7,180.0,190.0,seiz,1.0\n")
    anns = read_tuh_csv_bi(p)
    assert len(anns) == 1 and anns[0].onset == pytest.approx(36.8868) and anns[0].end == pytest.approx(190.0)
    edf = write_edf(tmp_path / "aaaaaaac_s001_t000.edf", noise(2, 301, 100), 100, ["a", "b"], plus=False)
    assert find_annotations(edf).source == str(p)
    p.write_text("channel,start_time,stop_time,label,confidence\nTERM,0,10,spsw,1\n")
    with pytest.raises(DataError, match=r"csv_bi:2: label 'spsw'"):
        read_tuh_csv_bi(p)


def test_kaggle_detection_clips():
    clip, data = read_clip(DOG1 / "clips" / "ictal" / "Dog_1_ictal_segment_2.mat")
    assert clip.label == "ictal" and clip.subject == "Dog_1" and clip.segment == 2
    assert clip.rate == 400.0 and clip.latency == 1.0 and data.shape == (16, 400) and data.dtype == np.float32
    assert clip.channels[0].endswith("_c001") and len(clip.channels) == 16
    clips = find_clips(DOG1 / "clips")
    assert sum(c.label == "ictal" for c in clips) == 140 and sum(c.label == "interictal" for c in clips) == 381
    groups = _clip_groups(clips, "detection")
    seizures = {groups[c.path][0] for c in clips if c.label == "ictal"}
    assert len(seizures) == 4  # latency resets to 0 at each onset: four seizures of Dog_1 here
    assert all(groups[c.path][0] == "" for c in clips if c.label == "interictal")


def test_kaggle_prediction_clip(tmp_path):
    rate, secs = 20.0, 600
    data = np.arange(3 * int(rate * secs), dtype=np.float64).reshape(3, -1)
    st = {"data": data, "data_length_sec": secs, "sampling_frequency": rate,
          "channels": np.array(["NVC1202_32_002_Ecog_c001", "NVC1202_32_002_Ecog_c002", "NVC1202_32_002_Ecog_c003"],
                               dtype=object), "sequence": 4}
    p = tmp_path / "Dog_2_preictal_segment_0004.mat"
    scipy.io.savemat(p, {"preictal_segment_4": st})
    clip, x = read_clip(p)
    assert (clip.subject, clip.label, clip.segment, clip.sequence) == ("Dog_2", "preictal", 4, 4)
    assert clip.rate == 20.0 and clip.duration_s == 600.0 and clip.channels[2].endswith("c003")
    np.testing.assert_array_equal(x, data.astype(np.float32))
    scipy.io.savemat(tmp_path / "Dog_2_interictal_segment_0001.mat", {"interictal_segment_1": {**st, "sequence": 1}})
    assert [c.label for c in find_clips(tmp_path)] == ["interictal", "preictal"]
    bad = tmp_path / "Dog_2_preictal_segment_0009.mat"
    scipy.io.savemat(bad, {"preictal_segment_9": {"data": data}})
    with pytest.raises(DataError, match="struct needs fields data, sampling_frequency, channels"):
        read_clip(bad)


def test_delhi_segments():
    clip, x = read_clip(DATA / "delhi" / "preictal" / "preictal7.mat")
    assert (clip.label, clip.segment, clip.rate, clip.channels) == ("preictal", 7, 200.0, ("EEG",))
    assert x.shape == (1, 1024) and clip.duration_s == pytest.approx(5.12)
    clips = find_clips(DATA / "delhi")
    assert len(clips) == 150 and {c.label for c in clips} == {"ictal", "interictal", "preictal"}


def test_not_a_clip(tmp_path):
    p = tmp_path / "whatever.mat"
    scipy.io.savemat(p, {"a": 1})
    with pytest.raises(DataError, match="not a clip file"):
        read_clip(p)
    with pytest.raises(DataError, match="no labelled clips"):
        find_clips(tmp_path)
