"""A night's marks back into training: ``seizurewatch labels export``.

Reads the daemon's outbox journal (read-only, through ``alarms.journal.Journal``), finds every alarm someone
marked over MQTT (``false_alarm`` or ``confirmed``; the latest mark wins, a plain ``ack`` is no label) and writes one
annotation sidecar per recording, ``onset,duration,description`` in stream seconds, the CSV that
``dataset build`` reads (``find_annotations`` / the spec's ``annotations:`` map):

    confirmed    ->  ``seizure (confirmed by <by>)``                 a labelled seizure
    false_alarm  ->  ``interictal: false alarm (marked by <by>)``    a labelled interictal span

The span runs from ``lead_s`` before the alarm's start (the window that raised it reached back that
far, plus the k-of-n hops before the start; default 10 s, ample for the shipped 1-s and 10-s models)
to its end. Alarms nobody marked are listed as ``#`` comment lines and in the summary, never as
labels: an unreviewed alarm may be a seizure.
The EEG the daemon kept behind each alarm (the seconds before its decision, as the station showed it) goes to
``<name>.eeg.json`` beside the CSV, keyed by alarm id, so a review sees what the nurse saw.
Note that ``dataset build`` labels the unannotated rest of a recording by its usual rules (interictal
beyond ``exclusion_s`` from a seizure): review every alarm of a night before training on it.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seizurewatch.alarms.journal import Journal
from seizurewatch.alarms.wire import printable
from seizurewatch.errors import ConfigError

log = logging.getLogger(__name__)

LABELS = {"confirmed": "seizure (confirmed by {by})", "false_alarm": "interictal: false alarm (marked by {by})"}


@dataclass
class MarkedAlarm:
    patient: str
    alarm_id: str
    start_t: float
    end_t: float
    start_wall: float
    mark: str | None = None  # "confirmed" | "false_alarm" | None (unreviewed or only acknowledged)
    by: str = ""
    note: str = ""
    acks: list[str] = field(default_factory=list)


def parse_since(text: str | None) -> float | None:
    """Unix seconds, or an ISO 8601 date/time (local time when no zone is given)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ConfigError(f"--since: expected Unix seconds or an ISO date/time such as 2026-12-01T20:00, "
                          f"got {text!r}") from None


def read_marks(journal: str | Path, since: float | None = None, patient: str | None = None) -> list[MarkedAlarm]:
    """Every alarm in the journal (started at or after ``since``), with its latest mark."""
    with Journal.read(journal) as j:
        rows = j.rows(patient, by_seq=True)
    alarms: dict[tuple[str, str], MarkedAlarm] = {}
    for row in rows:
        p = row.body()
        if p is None or p.get("kind") != "alarm":
            continue
        key = (str(row.patient), str(p.get("alarm_id")))
        phase = p.get("event")
        a = alarms.get(key)
        if a is None:
            if phase != "start":
                continue  # its start was pruned from the journal: the span is unknown
            a = alarms[key] = MarkedAlarm(key[0], key[1], float(p["t"]), float(p["t"]), float(p["wall_time"]))
        if phase in ("update", "end", "escalate"):
            a.end_t = max(a.end_t, float(p["t"]))
        elif phase == "ack":
            a.acks.append(f"{p.get('action')} by {p.get('by')}")
            if p.get("action") in LABELS:
                a.mark, a.by, a.note = str(p["action"]), str(p.get("by", "")), str(p.get("note", ""))
    return [a for a in alarms.values() if since is None or a.start_wall >= since]


def read_eeg(journal: str | Path, patient: str) -> dict[str, Any]:
    """The EEG kept behind each of ``patient``'s alarms (alarm id -> docs/alarm.schema.json ``eeg``); a journal
    written before the daemon kept EEG has none."""
    with Journal.read(journal) as j:
        return j.eeg(patient)


def export_marks(journal: str | Path, out: str | Path, since: float | None = None, lead_s: float = 10.0,
                 recordings: dict[str, str] | None = None, patient: str | None = None) -> dict[str, Any]:
    """Write ``<out>/<name>.csv`` per patient (``name``: the recording's stem from ``recordings``
    patient -> EDF path, else the patient id); returns a summary (files, counts, unreviewed alarms)."""
    if lead_s < 0:
        raise ConfigError("--lead: must be >= 0 seconds")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out: {out_dir} is a file; give a folder for the CSV files (one per patient)")
    marks = read_marks(journal, since, patient)
    out_dir.mkdir(parents=True, exist_ok=True)
    recordings = recordings or {}
    summary: dict[str, Any] = {"journal": str(journal), "files": {}, "confirmed": 0, "false_alarm": 0,
                               "unreviewed": []}
    for who in sorted({m.patient for m in marks}):
        mine = sorted((m for m in marks if m.patient == who), key=lambda m: m.start_t)
        rec = recordings.get(who)
        name = Path(rec).stem if rec else who
        dest = out_dir / f"{name}.csv"
        with dest.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["onset", "duration", "description"])  # the header first: readers skip line 1 only
            fh.write(f"# seizurewatch labels export: patient {who}"
                     f"{f' recording {rec}' if rec else ''} marks from {journal}\n")
            for m in mine:
                onset = max(m.start_t - lead_s, 0.0)
                if m.mark is None:
                    fh.write(f"# unreviewed alarm {m.alarm_id} at {m.start_t:.1f}-{m.end_t:.1f} s "
                             f"({printable(', '.join(m.acks)) or 'no answer'}): not labelled\n")
                    summary["unreviewed"].append({"patient": who, "alarm_id": m.alarm_id, "t": m.start_t})
                    continue
                desc = LABELS[m.mark].format(by=printable(m.by).replace(",", " "))  # a name is data, one field
                w.writerow([f"{onset:.3f}", f"{m.end_t - onset:.3f}", desc])
                summary[m.mark] += 1
        summary["files"][who] = str(dest)
        eeg = {k: v for k, v in read_eeg(journal, who).items() if k in {m.alarm_id for m in mine}}
        if eeg:
            (out_dir / f"{name}.eeg.json").write_text(json.dumps(eeg, separators=(",", ":")), encoding="utf-8")
            summary.setdefault("eeg", {})[who] = len(eeg)
        log.info("labels written", extra={"patient": who, "file": str(dest), "alarms": len(mine)})
    return summary
