"""Issue 26 item 1: one unit convention. Every reader returns µV from the unit the file declares (one table,
``seizurewatch.units``, shared with the LSL source); a unit it does not know, or none, is refused naming the
file and the channel unless a flag or the device profile says what it is."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pyedflib
import pytest
from conftest import DOG1, MODEL, run_cli

from seizurewatch.devices import DeviceProfile
from seizurewatch.errors import DataError
from seizurewatch.recordings import open_recording, read_header
from seizurewatch.replay import ReplayOptions, replay
from seizurewatch.units import microvolt_factors, microvolts_per

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

REC04 = DOG1 / "dog1_rec04.edf"


def _rewrite(dst, dimension: str, per_uv: float, label_dims: dict[str, str] | None = None):
    """rec04 with the same digital samples, its physical dimension and range stated in ``dimension``
    (``per_uv`` of that unit in one µV), its EDF+ annotations kept: the same signal in other units."""
    src = pyedflib.EdfReader(str(REC04))
    try:
        n = src.signals_in_file
        heads = src.getSignalHeaders()
        digital = [src.readSignal(i, digital=True) for i in range(n)]
        anns = list(zip(*src.readAnnotations()))
        record = src.datarecord_duration
    finally:
        src.close()
    w = pyedflib.EdfWriter(str(dst), n, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        if record != 1:
            w.setDatarecordDuration(record)
        for h in heads:
            h["dimension"] = (label_dims or {}).get(h["label"], dimension)
            # rounded as the header's 8 characters hold them (-1298 µV -> -1.298 mV, not -1.2980000000000002)
            h["physical_min"], h["physical_max"] = (round(h[k] * per_uv, 6) for k in ("physical_min", "physical_max"))
        w.setSignalHeaders(heads)
        w.writeSamples([np.ascontiguousarray(d, dtype=np.int32) for d in digital], digital=True)
        for onset, duration, desc in anns:
            w.writeAnnotation(onset, duration, desc)
    finally:
        w.close()
    return dst


def _in_volts(dst):
    """rec04's µV written again as physical values in V, on a ±2.5 mV range (8 characters in the header)."""
    with open_recording(REC04) as rec:
        x = rec.read(0, rec.header.n_samples).astype(np.float64) * 1e-6
        h = rec.header
    assert np.abs(x).max() < 2.5e-3
    w = pyedflib.EdfWriter(str(dst), len(h.channels), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        w.setSignalHeaders([{"label": c, "dimension": "V", "sample_frequency": h.rate, "physical_min": -0.0025,
                             "physical_max": 0.0025, "digital_min": -32768, "digital_max": 32767,
                             "transducer": "", "prefilter": ""} for c in h.channels])
        w.writeSamples(list(np.ascontiguousarray(x)))
        for a in h.annotations:
            w.writeAnnotation(a.onset, a.duration, a.description)
    finally:
        w.close()
    return dst


def test_the_table_reads_the_spellings_edf_files_use():
    assert {u: microvolts_per(u) for u in ("uV", "µV", "μV", "uV ", "UV", "microvolt", "mV", "V", "nV")} == {
        "uV": 1.0, "µV": 1.0, "μV": 1.0, "uV ": 1.0, "UV": 1.0, "microvolt": 1.0, "mV": 1e3, "V": 1e6, "nV": 1e-3}
    assert microvolts_per("\x83\xcaV") == 1.0  # the Shift-JIS mu, as a Latin-1 header decodes it (mne reads it too)
    assert microvolts_per("mmHg") is None and microvolts_per("") is None
    np.testing.assert_array_equal(microvolt_factors("f", ["a", "b"], ["", "mV"], assume="V"), [1e6, 1e3])


def test_rec04_in_uv_mv_and_v_replays_to_the_same_probabilities_and_alarms(tmp_path):
    ref = replay(REC04, ReplayOptions(model=MODEL))
    mv = replay(_rewrite(tmp_path / "rec04_mv.edf", "mV", 1e-3), ReplayOptions(model=MODEL))
    volts = replay(_in_volts(tmp_path / "rec04_v.edf"), ReplayOptions(model=MODEL))
    assert ref.alarms and ref.alarms[0][0] == pytest.approx(66.75, abs=1)  # the shipped model's rec04 alarm
    # the same digital samples under a range in mV: the same µV to the last bit, so the same numbers out
    np.testing.assert_array_equal(mv.t, ref.t)
    np.testing.assert_array_equal(mv.p, ref.p)
    assert mv.alarms == ref.alarms and [e["event"] for e in mv.events] == [e["event"] for e in ref.events]
    # V: EDF's 8-character range fields cannot hold rec04's ranges in V, so the samples are quantised again
    # (±2.5 mV range, 0.08 µV steps against 0.04): the forest's votes move by up to 0.011, the alarms do not
    np.testing.assert_allclose(volts.p, ref.p, rtol=0, atol=0.02)
    assert volts.alarms == ref.alarms
    with open_recording(tmp_path / "rec04_mv.edf") as a, open_recording(tmp_path / "rec04_v.edf") as v, \
            open_recording(REC04) as b:
        assert set(a.header.units) == {"mV"} and set(v.header.units) == {"V"}
        np.testing.assert_array_equal(a.read(0, 4000), b.read(0, 4000))
        np.testing.assert_allclose(v.read(0, 4000), b.read(0, 4000), rtol=0, atol=0.08)  # one step


def test_an_unknown_or_missing_unit_is_refused_naming_file_and_channel(tmp_path):
    odd = _rewrite(tmp_path / "odd.edf", "uV", 1.0, {"c007": "mmHg"})
    with pytest.raises(DataError, match=r"odd\.edf: channel c007 declares unit 'mmHg'; seizurewatch reads V, mV"):
        open_recording(odd)
    assert read_header(odd).units[6] == "mmHg"  # the header (annotations, labels) is still readable
    blank = _rewrite(tmp_path / "blank.edf", "", 1.0)
    with pytest.raises(DataError, match=r"blank\.edf: channel c001 declares no unit.*--units or the device profile"):
        open_recording(blank)
    with open_recording(blank, units="uV") as rec, open_recording(REC04) as ref:
        np.testing.assert_array_equal(rec.read(0, 400), ref.read(0, 400))
    # the replay refuses before any window, and a device profile saying what the amplifier sends is enough
    r = run_cli("replay", str(blank), "--probabilities", str(tmp_path / "p.csv"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "blank.edf: channel c001 declares no unit" in r.stderr and not (tmp_path / "p.csv").exists()
    device = tmp_path / "amp.yaml"
    device.write_text("name: amp\nchannels: [" + ", ".join(f"c{i:03d}" for i in range(1, 17)) + "]\n"
                      "sampling_rate: 400\nunits: mV\n")
    res = replay(_rewrite(tmp_path / "blank_mv.edf", "", 1e-3), ReplayOptions(model=MODEL, device=str(device)))
    assert res.alarms == replay(REC04, ReplayOptions(model=MODEL)).alarms
    with pytest.raises(ValueError, match=r"units: expected one of V, mV, µV \(uV\), nV, got 'volts\?'"):
        DeviceProfile(name="x", channels=("a",), sampling_rate=100, units="volts?")


def test_text_sidecar_units_per_column(tmp_path):
    csv = tmp_path / "r.csv"
    csv.write_text("a,b\n1.5,2\n-0.25,4\n")
    (tmp_path / "r.json").write_text(json.dumps({"rate": 10, "units": ["mV", "uV"]}))
    with open_recording(csv) as rec:
        np.testing.assert_array_equal(rec.read(0, 2), [[1500, -250], [2, 4]])
    (tmp_path / "r.json").write_text(json.dumps({"rate": 10, "units": ["mV", "counts"]}))
    with pytest.raises(DataError, match=r"r\.csv: channel b declares unit 'counts'"):
        open_recording(csv)


def _outlet(source_id: str, units: tuple[str, ...]):
    import pylsl

    info = pylsl.StreamInfo(source_id, "EEG", len(units), 100.0, pylsl.cf_float32, source_id)
    chans = info.desc().append_child("channels")
    for i, unit in enumerate(units):
        c = chans.append_child("channel")
        c.append_child_value("label", f"ch{i + 1}")
        if unit:
            c.append_child_value("unit", unit)
    return pylsl.StreamOutlet(info)


def _first_block(source_id: str, declared: tuple[str, ...], x: np.ndarray, units: str | None = None) -> np.ndarray:
    """The first blocks (8 samples or more) an LslSource hands the pipeline while an outlet declaring ``declared``
    pushes ``x`` again and again: the inlet may open mid-chunk, so they start at any column of ``x``."""
    import asyncio
    import threading

    from seizurewatch.config import SourceConfig
    from seizurewatch.sources.lsl import LslSource
    from seizurewatch.types import Block

    outlet = _outlet(source_id, declared)
    stop = threading.Event()

    def push() -> None:
        while not stop.is_set():
            outlet.push_chunk(np.ascontiguousarray(x.T, dtype=np.float32))
            stop.wait(0.1)

    async def main() -> np.ndarray:
        src = LslSource(SourceConfig(kind="lsl", source_id=source_id, resolve_timeout_s=10), units=units)
        await src.open()
        got: list[np.ndarray] = []
        try:
            async for item in src.items():
                if isinstance(item, Block):
                    got.append(item.data)
                    if sum(b.shape[1] for b in got) >= 2 * x.shape[1]:
                        return np.concatenate(got, axis=1)
        finally:
            await src.close()
        raise AssertionError("no block")

    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    try:
        return asyncio.run(asyncio.wait_for(main(), 60))  # hang guard
    finally:
        stop.set()
        pusher.join(5)


def _samples_are(block: np.ndarray, expected: list[list[float]]) -> None:
    """Every sample of ``block`` is one of ``expected``'s columns, and each of them arrived."""
    columns = {tuple(c) for c in np.asarray(expected, dtype=np.float32).T.tolist()}
    seen = {tuple(c) for c in block.T.tolist()}
    assert seen == columns, (seen, columns)


def test_live_lsl_uses_the_same_table():
    tag = uuid.uuid4().hex[:8]
    x = np.array([[1.5, -0.25, 0.125, 2.0], [10.0, 20.0, -30.0, 40.0]])
    block = _first_block(f"mv-{tag}", ("mV", "uV"), x)
    _samples_are(block, [[1500, -250, 125, 2000], [10, 20, -30, 40]])
    with pytest.raises(DataError, match=rf"LSL stream 'none-{tag}'.*channel ch1 declares no unit"):
        _first_block(f"none-{tag}", ("", "uV"), x)
    # the device profile (or source.units) says what it is
    block = _first_block(f"none2-{tag}", ("", "uV"), x, units="mV")
    _samples_are(block, [[1500, -250, 125, 2000], [10, 20, -30, 40]])
