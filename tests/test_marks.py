"""False alarms back into training: daemon replay -> marks over MQTT (the `seizurewatch ack` command and the
client function the station uses) -> `labels export` -> `dataset build` labels the marked spans."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
from conftest import DOG1, MODEL, ROOT

from seizurewatch.errors import ConfigError, DataError
from seizurewatch.research.marks import parse_since, read_marks

pytestmark = pytest.mark.needs_data  # the shared recordings (conftest.DATA): skipped without them


def test_since_accepts_unix_seconds_and_iso_and_names_the_problem():
    assert parse_since("1700000000") == 1700000000.0
    assert parse_since("2026-12-01T20:00:00+00:00") == 1796155200.0
    with pytest.raises(ConfigError, match="--since: expected Unix seconds or an ISO date"):
        parse_since("last night")


def test_missing_or_foreign_journal_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="journal not found"):
        read_marks(tmp_path / "nope.sqlite3")
    (tmp_path / "x.sqlite3").write_bytes(b"not a database at all" * 100)
    with pytest.raises(DataError, match="not a readable seizurewatch journal"):
        read_marks(tmp_path / "x.sqlite3")


@pytest.mark.slow
def test_daemon_marks_export_and_dataset_build(mosquitto, tmp_path):
    from seizurewatch.alarms.ack import Ack, publish_ack
    from seizurewatch.config import load_config
    from seizurewatch.daemon import Daemon
    from seizurewatch.research.dataset import DatasetSpec, SplitSpec, build_dataset

    journal = tmp_path / "outbox.sqlite3"
    cfg_path = tmp_path / "bedside.yaml"
    cfg_path.write_text(
        "streams:\n"
        f"  - patient: bed1\n    source: {{kind: edf, path: {DOG1 / 'dog1_rec04.edf'}, speed: 10}}\n"
        f"  - patient: bed2\n    source: {{kind: edf, path: {DOG1 / 'dog1_rec01.edf'}, speed: 10}}\n"
        f"model: {{path: {MODEL}}}\n"
        f"mqtt: {{url: {mosquitto.url}}}\n"
        f"outbox: {{path: {journal}}}\n")
    cfg = load_config(cfg_path)

    async def night() -> dict[str, str]:
        marked: dict[str, str] = {}
        runner = asyncio.create_task(Daemon(cfg).run())
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="ward") as c:
            await c.subscribe("seizurewatch/+/alarm", qos=1)
            async with asyncio.timeout(120):
                async for m in c.messages:
                    ev = json.loads(m.payload)
                    if ev["event"] == "start" and ev["patient"] not in marked:
                        marked[ev["patient"]] = ev["alarm_id"]
                        if ev["patient"] == "bed1":  # from a terminal, as a clinician would
                            proc = await asyncio.create_subprocess_exec(
                                sys.executable, "-m", "seizurewatch", "ack", "--mqtt-url", mosquitto.url,
                                "--patient", "bed1", "--alarm-id", ev["alarm_id"], "--action", "confirmed",
                                "--by", "Dr B", cwd=ROOT, stderr=subprocess.PIPE)
                            _, err = await proc.communicate()
                            assert proc.returncode == 0, err.decode()
                        else:
                            await publish_ack(cfg.mqtt, "bed2", Ack(ev["alarm_id"], "false_alarm", "nurse A"))
                    if ev["event"] == "ack":
                        marked[f"ack-{ev['patient']}"] = ev["action"]
                        if "ack-bed1" in marked and "ack-bed2" in marked:
                            break
        await runner
        return marked

    marked = asyncio.run(night())
    assert (marked["ack-bed1"], marked["ack-bed2"]) == ("confirmed", "false_alarm")

    async def restarted() -> tuple[bool, bool]:
        daemon = Daemon(cfg)  # the next night's daemon on the same journal knows last night's marks
        await daemon.prepare()
        try:
            return daemon.acks.acknowledged("bed1", marked["bed1"]), daemon.acks.acknowledged("bed2", marked["bed2"])
        finally:
            for pipe in daemon.pipelines:
                await pipe.source.close()
            assert daemon.outbox is not None
            await daemon.outbox.close()

    assert asyncio.run(restarted()) == (True, True)

    out = tmp_path / "labels"
    r = subprocess.run([sys.executable, "-m", "seizurewatch", "labels", "export", "--journal", str(journal),
                        "--out", str(out), "--config", str(cfg_path), "--since", "2020-01-01"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["confirmed"] == 1 and summary["false_alarm"] == 1
    rows = {name: [x for x in csv.reader((out / f"{name}.csv").open()) if x and not x[0].startswith("#")][1:]
            for name in ("dog1_rec04", "dog1_rec01")}
    (on4, dur4, desc4), = rows["dog1_rec04"]
    (on1, dur1, desc1), = rows["dog1_rec01"]
    assert desc4 == "seizure (confirmed by Dr B)" and desc1 == "interictal: false alarm (marked by nurse A)"
    sz = (float(on4), float(on4) + float(dur4))
    fa = (float(on1), float(on1) + float(dur1))

    spec = DatasetSpec(recordings=(str(DOG1 / "dog1_rec04.edf"), str(DOG1 / "dog1_rec01.edf")),
                       device=str(ROOT / "devices" / "dog1-ecog16.yaml"), window_s=10, stride_s=2, stride_ictal_s=2,
                       exclusion_s=20, annotations={"dog1_rec04.edf": str(out / "dog1_rec04.csv"),
                                                    "dog1_rec01.edf": str(out / "dog1_rec01.csv")},
                       split=SplitSpec(assign={"*": "train"}))
    manifest = build_dataset(spec, tmp_path / "ds")
    per = {Path(x["path"]).name: x for x in manifest["recordings"]}
    assert per["dog1_rec04.edf"]["annotations"].endswith("dog1_rec04.csv")
    assert per["dog1_rec04.edf"]["positive"] > 0, "the confirmed alarm gave no seizure windows"
    assert per["dog1_rec01.edf"]["positive"] == 0, "a false alarm was labelled a seizure"
    index = list(csv.DictReader((tmp_path / "ds" / "index.csv").open()))
    y = np.load(tmp_path / "ds" / "y.npy")[:, 0]
    for row, label in zip(index, y):
        t = float(row["t_start"])
        if row["recording"] == "dog1_rec04.edf" and label:
            assert sz[0] <= t and t + 10 <= sz[1] + 1e-6, f"seizure window at {t} s outside the confirmed span {sz}"
    in_fa = [label for row, label in zip(index, y)
             if row["recording"] == "dog1_rec01.edf" and fa[0] <= float(row["t_start"]) <= fa[1] - 10]
    assert in_fa and not any(in_fa), "the false alarm span gave no interictal (label 0) windows"


def _journal_with_ack(path: Path, by: str, action: str) -> None:
    from seizurewatch.alarms.outbox import Outbox
    from seizurewatch.events import Context, Event, to_payload

    ctx = Context(patient="bed1", model_name="m", model_sha256="0" * 64, threshold_policy="youden")
    evs = [Event("alarm", "start", "a" * 16, 100.0, 0.9, 0.5, started_t=100.0, peak_probability=0.9),
           Event("alarm", "ack", "a" * 16, 101.0, 0.9, 0.5, started_t=100.0, peak_probability=0.9, action=action,
                 by=by),
           Event("alarm", "end", "a" * 16, 110.0, 0.1, 0.5, started_t=100.0, peak_probability=0.9)]
    box = Outbox.open_sync(str(path))

    async def main() -> None:
        await box.append_all("bed1", [("seizurewatch/bed1/alarm", to_payload(e, ctx, seq=0, wall_time=1.7e9))
                                      for e in evs])
        await box.close()

    asyncio.run(main())


@pytest.mark.parametrize("action", ["ack", "confirmed"])
def test_a_name_with_line_breaks_never_forges_a_label(tmp_path, action):
    """A name journaled before acks refused control characters (or by a daemon of an older version):
    `labels export` writes it escaped, on its own line, and dataset build reads no extra annotation."""
    from seizurewatch.research.annotations import read_csv_annotations
    from seizurewatch.research.marks import export_marks

    forged = "Nurse X\n0,7200,seizure\n#"
    _journal_with_ack(tmp_path / "j.sqlite3", forged, action)
    summary = export_marks(tmp_path / "j.sqlite3", tmp_path / "out")
    text = Path(summary["files"]["bed1"]).read_text()
    assert "\n0,7200,seizure" not in text and "Nurse X\\n0" in text
    anns = read_csv_annotations(Path(summary["files"]["bed1"]))
    assert [a.duration for a in anns if "seizure" in a.description and a.duration > 3600] == []
    assert len(anns) == (1 if action == "confirmed" else 0)


def test_labels_export_over_an_existing_file_is_one_line(tmp_path):
    (tmp_path / "j.sqlite3").touch()
    (tmp_path / "labels.csv").write_text("x\n")
    r = subprocess.run([sys.executable, "-m", "seizurewatch", "labels", "export", "--journal",
                        str(tmp_path / "j.sqlite3"), "--out", str(tmp_path / "labels.csv")], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (f"seizurewatch: error: --out: {tmp_path / 'labels.csv'} is a file; "
                                                 "give a folder for the CSV files (one per patient)")
