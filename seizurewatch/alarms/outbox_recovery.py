"""What the outbox recovers when it opens a journal: alarms and faults a crash left open, and a corrupt journal.

Alarms and faults the journal shows as open (a start without an end: the daemon was killed or crashed
during them) are ended at the next open, with the reason in ``extra.end_reason`` (``record.INTERRUPTED``):
the end event is the alarm record's own (``AlarmRecord.interrupted_end``).

A corrupt journal is moved aside (``<path>.corrupt-<time>``), its undelivered events are salvaged when they
can still be read, and a fresh journal continues with sequence numbers above anything the old one can have
issued (``seq_floor``).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from typing import Any

from seizurewatch.alarms.journal import Journal, JournalError
from seizurewatch.alarms.record import AlarmRecord

log = logging.getLogger("seizurewatch.alarms.outbox")

SalvagedRow = tuple[str, int, str, str, float]  # patient, seq, topic, payload, created


def interrupted_ends(journal: Journal) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Per patient, the (topic, end payload) of every alarm and fault whose last lifecycle event is not an end."""
    rows = journal.last_lifecycle()
    now = round(time.time(), 4)
    by_patient: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for row in rows:
        last = row.body()
        if last is None or last.get("event") not in ("start", "update"):
            continue
        rec = AlarmRecord.opened(last)
        rec.observe(last)
        by_patient.setdefault(str(row.patient), []).append((str(row.topic), rec.interrupted_end(now)))
        log.warning("ending an open %s left by an unclean exit", last.get("kind"),
                    extra={"patient": row.patient, "alarm_id": last.get("alarm_id"), "t": last.get("t")})
    return by_patient


def salvage(path: str) -> tuple[list[SalvagedRow], int]:
    """Undelivered rows (and the highest seq) still readable in a corrupt journal; best effort: whatever was
    read before the damage is kept."""
    rows: list[SalvagedRow] = []
    highest = 0
    with contextlib.suppress(JournalError, ValueError, TypeError):
        with Journal.read(path) as old:
            for r in old.iter_rows(undelivered=True):
                rows.append((str(r.patient), int(r.seq), str(r.topic), str(r.payload), float(r.created)))
            highest = old.highest_seq()
    return rows, highest


def seq_floor(highest: int) -> int:
    """Where a fresh journal's sequence numbers continue: the current Unix time in milliseconds, above anything
    the old journal can have issued (it would need > 1000 events per second over its whole life to get there),
    so subscribers never mistake a new event for a duplicate of an old one."""
    return max(int(time.time() * 1000), highest)


def fresh_meta(db: sqlite3.Connection, floor: int) -> None:
    """A fresh journal's meta: the seq floor, and no identity yet (it gets a new one, incarnation 1)."""
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('seq_floor', ?)", (str(floor),))
    db.execute("DELETE FROM meta WHERE key IN ('journal_id', 'incarnation')")


def restore(db: sqlite3.Connection, rows: list[SalvagedRow]) -> None:
    """The salvaged undelivered events, into the fresh journal (delivered at the next chance)."""
    if rows:
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT OR IGNORE INTO events (patient, seq, topic, payload, created) "
                           "VALUES (?, ?, ?, ?, ?)", rows)
