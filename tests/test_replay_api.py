"""seizurewatch.replay.replay: one recording through a real Daemon (the code path of ``run``), returned as
a typed result; the research Trace is built from it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DOG1, MODEL

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import SeizurewatchError
from seizurewatch.replay import ReplayHooks, ReplayOptions, ReplayResult, ReplayStart, replay
from seizurewatch.research.labels import is_seizure
from seizurewatch.research.predict import trace_of

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them

REC04 = str(DOG1 / "dog1_rec04.edf")


def test_replay_returns_what_the_daemon_did():
    seen: list[dict] = []
    started: list[ReplayStart] = []

    async def on_start(s: ReplayStart) -> None:
        started.append(s)

    res = replay(REC04, ReplayOptions(model=MODEL, decision=DecisionConfig(threshold=0.3)),
                 ReplayHooks(sinks=[seen.append], on_start=on_start))
    assert isinstance(res, ReplayResult)
    assert res.threshold == 0.3 and started[0].threshold == 0.3  # the decision given is the one in force
    assert res.meta.name == started[0].meta.name
    assert res.windows == len(res.t) == len(res.p) > 0
    assert np.all(np.diff(res.t) > 0) and np.all((res.p >= 0) & (res.p <= 1))
    assert res.duration == pytest.approx(118, abs=2)
    assert res.annotation_source.endswith("dog1_rec04.csv")  # the sidecar wins over the file's own
    assert any(is_seizure(a.description) for a in res.annotations)
    assert list(res.events) == seen  # the sinks saw every payload, in order
    starts = [e for e in res.events if e["kind"] == "alarm" and e["event"] == "start"]
    assert len(res.alarms) == len(starts) >= 1
    assert all(a <= b <= res.duration for a, b in res.alarms)
    tr = trace_of(res, DecisionConfig(threshold=0.3))
    assert tr.alarms == res.alarms and tr.seizures and tr.threshold == 0.3


def test_a_missing_recording_names_the_file(tmp_path):
    with pytest.raises(SeizurewatchError, match="gone.edf"):
        replay(tmp_path / "gone.edf", ReplayOptions(model=MODEL))
