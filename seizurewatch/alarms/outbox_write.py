"""The outbox's write path: sequence numbers and the fsync'd insert of events, and the events held in memory
while the journal cannot be written (a full disk: detection goes on, and they are journaled once it can).

Sequence numbers are per patient, strictly increasing, and survive restarts: they live in their own table,
so pruning delivered rows never rewinds them, and they are committed in the same transaction as the
events that used them. After a quarantine they continue above ``floor`` (see ``outbox_recovery``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from seizurewatch.alarms.journal import Journal, JournalRow

log = logging.getLogger("seizurewatch.alarms.outbox")

SPILL_ID_BASE = 1 << 62  # ids of events held in memory while the journal cannot be written

Items = list[tuple[str, dict[str, Any]]]  # (topic, payload) of one patient's events, in order


class Spill:
    """Events that could not be journaled: kept in memory, delivered all the same, journaled later."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[str, int, str, str, float, float | None]] = {}  # ..., created, delivered
        self._next = SPILL_ID_BASE

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, patient: str, seq: int, topic: str, body: str) -> None:
        self.rows[self._next] = (patient, seq, topic, body, time.time(), None)
        self._next += 1

    def pending(self, patient: str, after_id: int, limit: int) -> list[JournalRow]:
        return [JournalRow(i, p, seq, t, body) for i, (p, seq, t, body, _, done) in sorted(self.rows.items())
                if p == patient and i > after_id and done is None][:limit]

    def mark(self, ids: list[int], now: float) -> list[int]:
        """Note the delivery of the spilled ``ids`` (journaled with it once possible); the journal's ids left."""
        for i in [i for i in ids if i in self.rows]:
            self.rows[i] = (*self.rows[i][:5], now)
        return [i for i in ids if i < SPILL_ID_BASE]

    def undelivered(self, patient: str | None) -> int:
        return sum(1 for r in self.rows.values() if (patient is None or r[0] == patient) and r[5] is None)


class Sequencer:
    """Issues each patient's sequence numbers and journals events under them (one transaction per batch)."""

    def __init__(self, path: str, epoch: Callable[[], str]) -> None:
        self.path = path  # for the log
        self.epoch = epoch  # the outbox's current ``<journal id>.<incarnation>``
        self.last: dict[str, int] = {}
        self.floor = 0
        self.spill = Spill()
        self.dirty = False  # sequences advanced in memory only (spilled events)

    def load(self, journal: Journal) -> None:
        """The last numbers issued, from the journal (after an open, a quarantine or a foreign writer)."""
        floor = journal.meta("seq_floor")
        self.floor = int(floor) if floor else 0
        self.last = journal.last_seqs()

    def _body(self, payload: dict[str, Any], seq: int) -> str:
        return json.dumps({**payload, "epoch": self.epoch(), "seq": seq}, separators=(",", ":"))

    def insert(self, db: sqlite3.Connection, patient: str, items: Items) -> list[tuple[int, str]]:
        """Journal ``items`` and the sequence they used, fsync'd together; (seq, body) of each."""
        seq = max(self.last.get(patient, 0), self.floor)
        now = time.time()
        rows = []
        for topic, payload in items:
            seq += 1
            rows.append((patient, seq, topic, self._body(payload, seq), now))
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT INTO events (patient, seq, topic, payload, created) VALUES (?, ?, ?, ?, ?)", rows)
            db.execute("INSERT INTO sequences (patient, last_seq) VALUES (?, ?) "
                       "ON CONFLICT (patient) DO UPDATE SET last_seq = excluded.last_seq", (patient, seq))
        self.last[patient] = seq
        return [(r[1], r[3]) for r in rows]

    def spill_one(self, patient: str, topic: str, payload: dict[str, Any], exc: Exception) -> tuple[int, str]:
        """Number and keep an event the journal refused; (seq, body)."""
        seq = max(self.last.get(patient, 0), self.floor) + 1
        body = self._body(payload, seq)
        self.spill.add(patient, seq, topic, body)
        self.last[patient] = seq
        self.dirty = True
        log.error("cannot write the outbox journal; keeping the event in memory and delivering it anyway",
                  extra={"path": self.path, "error": str(exc), "in_memory": len(self.spill)})
        return seq, body

    def flush(self, db: sqlite3.Connection) -> None:
        """Journal the events held in memory (delivered or not, with their delivery time) and the sequence
        numbers they used, so a seq is never issued twice; OperationalError if the disk still refuses."""
        rows = sorted(self.spill.rows.items())
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT OR IGNORE INTO events (patient, seq, topic, payload, created, delivered) "
                           "VALUES (?, ?, ?, ?, ?, ?)", [r for _, r in rows])
            db.executemany("INSERT INTO sequences (patient, last_seq) VALUES (?, ?) ON CONFLICT (patient) "
                           "DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)", list(self.last.items()))
        self.spill.rows.clear()
        self.dirty = False
        log.warning("outbox journal writable again; events held in memory journaled",
                    extra={"path": self.path, "events": len(rows)})
