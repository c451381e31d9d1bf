"""Live path over real LSL outlets on the loopback config (set by conftest before pylsl loads).

`seizurewatch play` (a subprocess) or an in-process outlet -> LslSource -> the daemon's
pipeline -> events (in process, or through a real Mosquitto to a subscriber).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import aiomqtt
import numpy as np
import pylsl
import pytest
from conftest import DOG1, MODEL, ROOT, run_daemon_until

from seizurewatch.config import Config, ModelConfig, OutboxConfig, SourceConfig, StreamConfig
from seizurewatch.daemon import Daemon, DaemonOptions
from seizurewatch.edfio import EdfRecording
from seizurewatch.errors import DataError
from seizurewatch.player import eeg_info
from seizurewatch.sources.lsl import GapTracker, LslSource, build_predicate
from seizurewatch.types import Block, Gap

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

REC04 = DOG1 / "dog1_rec04.edf"
DEVICE = ROOT / "devices" / "dog1-ecog16.yaml"
CHANNELS = tuple(f"c{i:03d}" for i in range(1, 17))


def sid(tag: str) -> str:
    return f"test-{tag}-{uuid.uuid4().hex[:8]}"


def play(source_id: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "seizurewatch", "play", str(REC04), "--source-id", source_id, "--name", source_id,
         "--wait", "60", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def lsl_stream(patient: str, source_id: str, **kw) -> StreamConfig:
    src = SourceConfig(kind="lsl", source_id=source_id, resolve_timeout_s=kw.pop("resolve_timeout_s", 30.0),
                       lost_after_s=kw.pop("lost_after_s", 2.0), **kw)
    return StreamConfig(patient=patient, source=src, device=str(DEVICE))


def config(tmp_path: Path, *streams: StreamConfig) -> Config:
    return Config(streams=tuple(streams), model=ModelConfig(path=str(MODEL)),
                  outbox=OutboxConfig(path=str(tmp_path / "outbox.sqlite3")))




# ----- pieces ------------------------------------------------------------------------------


def test_every_pylsl_import_goes_through_the_loopback_config():
    """No module imports pylsl itself; and import_pylsl() sets LSLAPICFG when the user did not."""
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "seizurewatch").rglob("*.py")
                 if p.name != "lslconfig.py" and any(line.strip().startswith(("import pylsl", "from pylsl"))
                                                     for line in p.read_text().splitlines())]
    assert offenders == []
    env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"}
    code = ("import os, sys\nimport seizurewatch.sources.lsl, seizurewatch.player\n"
            "assert 'pylsl' not in sys.modules\n"
            "from seizurewatch.lslconfig import import_pylsl\nimport_pylsl()\nprint(os.environ['LSLAPICFG'])\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cfg = Path(out.stdout.strip())
    assert cfg.name == "lsl_loopback.cfg" and "ResolveScope = machine" in cfg.read_text()
    # A bare pylsl import before apply_loopback() is refused, not silently run on the default config.
    code = "import pylsl\nfrom seizurewatch.lslconfig import apply_loopback\napply_loopback()\n"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "before seizurewatch.lslconfig.apply_loopback" in out.stderr


def test_predicate_and_gap_tracker():
    assert build_predicate("amp", "EEG", "x1") == "name='amp' and type='EEG' and source_id='x1'"
    assert build_predicate(type="EEG", predicate="starts-with(name,'A')") == "type='EEG' and (starts-with(name,'A'))"
    tr = GapTracker(100.0, ("a",), max_gap_s=0.5)
    ts = 1000.0 + np.arange(300) / 100.0
    ts[150:] += 10.0  # ten seconds of timestamps skipped in the middle of a chunk
    out = tr.feed(np.zeros((1, 300), np.float32), ts, 0.0)
    assert [type(x) for x in out] == [Block, Gap, Block]
    assert out[0].n_samples == 150 and out[2].n_samples == 150
    assert out[1].t == pytest.approx(11.5) and out[1].seconds == pytest.approx(10.0)
    assert out[2].t0 == pytest.approx(11.5)
    # a small jitter/drop below max_gap_s is no gap, but is counted
    more = tr.feed(np.zeros((1, 10), np.float32), ts[-1] + 0.2 + np.arange(10) / 100.0, 0.0)
    assert [type(x) for x in more] == [Block] and tr.dropped_s == pytest.approx(0.19)


def test_resolve_timeout_lists_what_was_found():
    other = sid("other")
    outlet = pylsl.StreamOutlet(eeg_info(pylsl, other, "EEG", other, ("a", "b"), ("uV", "uV"), 100.0))
    src = LslSource(SourceConfig(kind="lsl", source_id="no-such-amp", resolve_timeout_s=0.5))
    with pytest.raises(DataError) as exc:
        asyncio.run(src.open())
    msg = str(exc.value)
    assert "source_id='no-such-amp'" in msg and other in msg and "2 ch @ 100 Hz" in msg
    del outlet


def test_stream_without_channel_labels_is_refused():
    name = sid("nolabels")
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 16, 400.0, pylsl.cf_float32, name))
    src = LslSource(SourceConfig(kind="lsl", source_id=name, resolve_timeout_s=5))
    with pytest.raises(DataError, match="label"):
        asyncio.run(src.open())
    del outlet


# ----- the live path ------------------------------------------------------------------------


async def subscribe_all(port: int, ready: asyncio.Event, got: list[tuple[str, dict]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"test-{uuid.uuid4().hex[:6]}") as c:
        await c.subscribe("seizurewatch/#", qos=1)
        ready.set()
        async for m in c.messages:
            topic = str(m.topic)
            if topic.endswith(("/alarm", "/fault")):
                got.append((topic, json.loads(m.payload)))


@pytest.mark.slow
def test_play_to_daemon_to_mosquitto_alarms_inside_the_seizure(tmp_path, mosquitto):
    """`seizurewatch play` at 20x -> `seizurewatch run` with an LSL source -> Mosquitto -> subscriber."""
    source_id = sid("e2e")
    cfg = tmp_path / "live.yaml"
    cfg.write_text(
        f"streams:\n  - patient: bed3\n    device: {DEVICE}\n    source:\n      kind: lsl\n"
        f"      source_id: {source_id}\n      resolve_timeout_s: 30\n      lost_after_s: 10\n"
        f"model:\n  path: {MODEL}\nmqtt:\n  url: {mosquitto.url}\noutbox:\n  path: {tmp_path / 'o.sqlite3'}\n")

    async def main() -> list[tuple[str, dict]]:
        got: list[tuple[str, dict]] = []
        ready = asyncio.Event()
        sub = asyncio.create_task(subscribe_all(mosquitto.port, ready, got))
        await ready.wait()
        player = play(source_id, "--speed", "20")
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "seizurewatch", "run", "--config", str(cfg), cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            await asyncio.wait_for(asyncio.to_thread(player.wait), 300)
            # the end of playback is a stream loss (lost_after_s 10: a player starved by a busy machine is not);
            # 120 s: a hang guard only
            async with asyncio.timeout(120):
                while not any(p["kind"] == "fault" and p["fault_type"] == "stream_lost" for _, p in got):
                    await asyncio.sleep(0.1)
        finally:
            daemon.terminate()
            _, err = await daemon.communicate()
            sub.cancel()
        assert daemon.returncode == 0, err.decode()[-2000:]
        assert player.returncode == 0, player.stderr.read() if player.stderr else ""
        return got

    got = asyncio.run(main())
    alarms = [p for topic, p in got if topic == "seizurewatch/bed3/alarm"]
    starts = [a for a in alarms if a["event"] == "start"]
    assert starts, f"no alarm; events: {[(p['kind'], p['event'], p.get('fault_type')) for _, p in got]}"
    # t = seconds since the first sample; played from the file's start, that is recording time
    assert all(a["t"] >= 50 for a in starts), starts
    assert 60 <= starts[0]["t"] <= 101, f"first alarm at t={starts[0]['t']}, seizure is 60-101 s"
    lost = [p for _, p in got if p["kind"] == "fault" and p["fault_type"] == "stream_lost"]
    assert lost[0]["event"] == "start" and lost[0]["t"] == pytest.approx(118.0, abs=0.5)


@pytest.mark.slow
def test_outlet_killed_then_back_resumes_and_alarms(tmp_path):
    """Kill the outlet mid-stream: stream_lost; restart with the same source_id: fault end, alarm later."""
    source_id = sid("kill")
    events: list[dict] = []
    daemon = Daemon(config(tmp_path, lsl_stream("bed4", source_id, lost_after_s=2.0)),
                    DaemonOptions(publish=False))
    daemon.payload_sinks.append(events.append)
    first = play(source_id, "--speed", "10")

    def kinds(ftype: str, event: str) -> list[dict]:
        return [e for e in events if e["kind"] == "fault" and e["fault_type"] == ftype and e["event"] == event]

    state = {"killed_at": None, "second": None}

    def progress() -> bool:
        pipe = daemon.pipelines[0]
        if state["killed_at"] is None and pipe.stats.windows >= 15:  # t ~ 25-35 s: before the seizure
            first.kill()
            state["killed_at"] = pipe.stats.last_t
        if kinds("stream_lost", "start") and state["second"] is None:
            state["second"] = play(source_id, "--speed", "10")
        return any(e["kind"] == "alarm" and e["event"] == "start" for e in events)

    try:
        asyncio.run(run_daemon_until(daemon, progress, timeout=90))
    finally:
        first.kill()
        if state["second"] is not None:
            state["second"].kill()
    lost, back = kinds("stream_lost", "start"), kinds("stream_lost", "end")
    assert lost and back, events
    assert state["killed_at"] is not None and state["killed_at"] < 50
    assert lost[0]["t"] >= state["killed_at"]
    alarm = next(e for e in events if e["kind"] == "alarm" and e["event"] == "start")
    assert back[0]["t"] >= lost[0]["t"]  # stream time never runs backwards
    # the second playback starts at the file's start at the fault end: its seizure is 60-101 s later
    assert back[0]["t"] + 60 <= alarm["t"] <= back[0]["t"] + 101, (back[0]["t"], alarm["t"])


@pytest.mark.slow
def test_shuffled_channels_same_probabilities_missing_channel_refused(tmp_path):
    """Two streams (patients) in one daemon: file order and shuffled order give the same outputs."""
    ordered, shuffled = sid("ordered"), sid("shuffled")
    order = list(CHANNELS)
    np.random.default_rng(7).shuffle(order)
    # looped: however late a loaded machine connects the daemon, the players are still playing (with 25 s of
    # signal at 20x they could end before the daemon had 16 windows of each)
    players = [play(ordered, "--speed", "20", "--loop", "--no-markers"),
               play(shuffled, "--speed", "20", "--loop", "--no-markers", "--channels", ",".join(order))]
    daemon = Daemon(config(tmp_path, lsl_stream("ordered", ordered), lsl_stream("shuffled", shuffled)),
                    DaemonOptions(publish=False, record_probabilities=True))
    try:
        asyncio.run(run_daemon_until(daemon, lambda: all(p.stats.windows >= 16 for p in daemon.pipelines),
                                     timeout=300))  # a hang guard only
    finally:
        for p in players:
            p.kill()
    a, b = (dict(p.stats.probabilities) for p in daemon.pipelines)
    assert daemon.pipelines[1].source.channels == tuple(order) != CHANNELS
    common = sorted(set(a) & set(b))
    assert len(common) >= 15
    assert np.allclose([a[t] for t in common], [b[t] for t in common], atol=1e-5)
    assert len({round(a[t], 3) for t in common}) > 1  # not a constant output

    missing = sid("missing")
    player = play(missing, "--speed", "20", "--duration", "5", "--channels", ",".join(CHANNELS[:6] + CHANNELS[7:]))
    try:
        with pytest.raises(DataError) as exc:
            asyncio.run(Daemon(config(tmp_path, lsl_stream("bed5", missing)), DaemonOptions(publish=False)).prepare())
    finally:
        player.kill()
    msg = str(exc.value)
    assert "c007 missing" in msg and missing in msg and "the model needs: c001" in msg
    assert "the source has: c001, c002, c003, c004, c005, c006, c008" in msg


@pytest.mark.slow
def test_injected_gap_faults_and_no_window_spans_it(tmp_path):
    source_id = sid("gap")
    player = play(source_id, "--speed", "20", "--duration", "40", "--no-markers", "--inject-gap", "15:10")
    events: list[dict] = []
    daemon = Daemon(config(tmp_path, lsl_stream("bed6", source_id, lost_after_s=5.0)),
                    DaemonOptions(publish=False, record_probabilities=True))
    daemon.payload_sinks.append(events.append)
    try:
        asyncio.run(run_daemon_until(daemon, lambda: daemon.pipelines[0].stats.last_t >= 49.0))
    finally:
        player.kill()
    gaps = [e for e in events if e["kind"] == "fault" and e["fault_type"] == "stream_gap"]
    assert [g["event"] for g in gaps] == ["start", "end"]
    assert gaps[0]["t"] == pytest.approx(25.0, abs=0.05)  # recording 15 s + 10 s skipped
    ends = [t for t, _ in daemon.pipelines[0].stats.probabilities]
    window = daemon.pipelines[0].meta.window_s
    assert any(t <= 15.0 for t in ends) and any(t >= 35.0 for t in ends)
    assert all(t <= 15.0 + 1e-6 or t - window >= 25.0 - 1e-6 for t in ends), ends


@pytest.mark.slow
def test_bad_channels_over_lsl_raise_quality_faults(tmp_path):
    """An in-process outlet sends real Dog_1 signal with a dead, a NaN and a saturated channel."""
    source_id = sid("quality")
    with EdfRecording(REC04) as rec:
        x = rec.read(0, 16 * 400)  # 16 s of interictal signal
    x[2, :] = 0.0  # c003: dead
    x[4, 4000:4400] = np.nan  # c005: one second of NaN
    lim = np.percentile(np.abs(x[8]), 80)
    x[8] = np.clip(x[8], -lim, lim)  # c009: saturated amplifier
    outlet = pylsl.StreamOutlet(eeg_info(pylsl, source_id, "EEG", source_id, CHANNELS, ("uV",) * 16, 400.0))
    events: list[dict] = []
    daemon = Daemon(config(tmp_path, lsl_stream("bed7", source_id, lost_after_s=5.0)), DaemonOptions(publish=False))
    daemon.payload_sinks.append(events.append)
    stop = threading.Event()

    def push() -> None:
        outlet.wait_for_consumers(30)
        t0 = pylsl.local_clock()
        for i in range(0, x.shape[1], 200):
            if stop.is_set():
                return
            outlet.push_chunk(np.ascontiguousarray(x[:, i : i + 200].T), t0 + (i + 199) / 400.0)
            stop.wait(0.02)

    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    try:
        asyncio.run(run_daemon_until(daemon, lambda: daemon.pipelines[0].stats.samples >= x.shape[1]))
    finally:
        stop.set()
        pusher.join(5)
    starts = {e["fault_type"]: e["channels"] for e in events if e["kind"] == "fault" and e["event"] == "start"}
    assert starts.get("flatline") == ["c003"], events
    assert starts.get("nonfinite") == ["c005"], events
    assert starts.get("clipping") == ["c009"], events
    # windows with NaN are not classified; the ones without are (a dead and a clipped channel of 16)
    assert daemon.pipelines[0].stats.windows >= 1


def test_player_describes_channels_and_sends_annotations_as_markers():
    """The EEG outlet carries labels/units/type in its XML; the seizure annotation arrives as a marker,
    time-stamped on the EEG stream's sample clock."""
    from seizurewatch.player import Player, PlayOptions
    from seizurewatch.sources.lsl import read_channels

    source_id = sid("markers")
    player = Player(str(REC04), PlayOptions(name=source_id, source_id=source_id, speed=20.0, start_s=55.0,
                                            duration_s=10.0, wait_consumer_s=30.0))
    thread = threading.Thread(target=player.run, daemon=True)
    thread.start()
    try:
        (minfo,) = pylsl.resolve_bypred(f"source_id='{source_id}-markers'", 1, 10)
        assert minfo.type() == "Markers" and minfo.channel_format() == pylsl.cf_string
        markers = pylsl.StreamInlet(minfo, processing_flags=pylsl.proc_clocksync)
        markers.open_stream(10)
        (info,) = pylsl.resolve_bypred(f"source_id='{source_id}'", 1, 10)
        eeg = pylsl.StreamInlet(info, processing_flags=pylsl.proc_clocksync)
        desc = read_channels(eeg.info(10), "test")
        assert desc.labels == CHANNELS and set(desc.units) == {"uV"} and set(desc.types) == {"EEG"}
        assert eeg.info().nominal_srate() == 400.0
        eeg.open_stream(10)  # the player's clock starts now
        got: list[tuple[str, float]] = []
        first_ts = None
        while thread.is_alive():
            _, ts = eeg.pull_chunk(timeout=0.05)
            if ts and first_ts is None:
                first_ts = ts[0]
            sample, t = markers.pull_sample(timeout=0.05)
            if sample:
                got.append((sample[0], t))
        sample, t = markers.pull_sample(timeout=0.5)
        if sample:
            got.append((sample[0], t))
    finally:
        thread.join(30)
        player.close()
    with EdfRecording(REC04) as rec:
        expected = sorted((a.onset, a.description) for a in rec.header.annotations if 55.0 <= a.onset < 65.0)
    assert ("seizure" in [d for _, d in expected]) and [text for text, _ in got] == [d for _, d in expected]
    assert first_ts is not None
    for (onset, _), (_, t) in zip(expected, got):  # got: (text, LSL time)
        assert t - first_ts == pytest.approx(onset - 55.0, abs=0.01)  # on the EEG stream's sample clock
    assert player.stats.marker_log == expected


def test_a_one_channel_stream_at_start_is_a_fault_the_service_keeps_looking_past(tmp_path):
    """#24: `run` exited 2 on a stream with the wrong channels (systemd does not restart exit 2: the bed stayed
    unmonitored, and nothing said so on the broker). Now: a stream_lost fault naming what is wrong, and the
    daemon keeps looking; a recording that does not fit, and `run --check`, still refuse."""
    one = sid("one")
    outlet = pylsl.StreamOutlet(eeg_info(pylsl, one, "EEG", one, ("c001",), ("uV",), 400.0))
    daemon = Daemon(config(tmp_path, lsl_stream("bed6", one, resolve_timeout_s=3.0)),
                    DaemonOptions(publish=False, keep_trying=True))
    seen: list[dict] = []
    daemon.payload_sinks.append(seen.append)
    try:
        asyncio.run(run_daemon_until(daemon, lambda: any(e.get("fault_type") == "stream_lost" for e in seen),
                                     timeout=60))
    finally:
        del outlet
    fault = next(e for e in seen if e.get("fault_type") == "stream_lost")
    assert fault["event"] == "start" and one in fault["detail"] and "1 ch @ 400 Hz" in fault["detail"]
    assert "the model needs: c001, c002" in fault["detail"]
    with pytest.raises(DataError, match=r"channel\(s\) c002, .* missing; the source has: c001;"):
        outlet = pylsl.StreamOutlet(eeg_info(pylsl, one, "EEG", one, ("c001",), ("uV",), 400.0))
        asyncio.run(Daemon(config(tmp_path, lsl_stream("bed6", one, resolve_timeout_s=3.0)),
                           DaemonOptions(publish=False, keep_trying=True, check_only=True)).prepare())
    del outlet
