"""The outbox's delivery bookkeeping: which journaled events still wait for the broker (paged, oldest first),
marking them delivered after their PUBACK, pruning what was delivered long ago, and the EEG kept beside alarms.

A row is marked delivered only after the broker acknowledged it; a journal that refuses the mark (a full disk)
leaves it pending, and it is sent again: delivery is at-least-once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

from seizurewatch.alarms.journal import Journal, JournalRow
from seizurewatch.alarms.outbox_write import Spill

log = logging.getLogger("seizurewatch.alarms.outbox")

PRUNE_EVERY_S = 600.0
PRUNE_BATCH = 5000


class Deliveries:
    """Delivery state of one journal's events (and of the events held in memory, ``spill``)."""

    def __init__(self, path: str, spill: Spill, keep_delivered_s: float) -> None:
        self.path = path
        self.spill = spill
        self.keep_delivered_s = keep_delivered_s
        self.last_prune = 0.0

    def pending(self, db: sqlite3.Connection, patient: str, after_id: int, limit: int) -> list[JournalRow]:
        out = Journal(db).rows(patient, undelivered=True, after_id=after_id, limit=limit)
        if len(out) < limit and self.spill:  # newer than anything on disk
            out += self.spill.pending(patient, after_id, limit - len(out))
        return out

    def mark(self, db: sqlite3.Connection, ids: list[int]) -> None:
        now = time.time()
        ids = self.spill.mark(ids, now)
        if not ids:
            return
        try:
            with db:
                db.execute("BEGIN")
                db.executemany("UPDATE events SET delivered = ? WHERE id = ?", [(now, i) for i in ids])
            if now - self.last_prune > PRUNE_EVERY_S:
                self.prune(db, now)
        except sqlite3.OperationalError as exc:  # disk full: they stay pending and are sent again (at-least-once)
            log.error("cannot mark events delivered in the outbox journal",
                      extra={"path": self.path, "error": str(exc), "events": len(ids)})

    def prune(self, db: sqlite3.Connection, now: float | None = None) -> int:
        """Delete delivered events older than ``keep_delivered_s``, in batches; never undelivered ones."""
        now = time.time() if now is None else now
        self.last_prune = now
        cutoff = now - self.keep_delivered_s
        total = 0
        while True:
            cur = db.execute("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE delivered IS NOT NULL "
                             "AND delivered <= ? LIMIT ?)", (cutoff, PRUNE_BATCH))
            total += cur.rowcount
            if cur.rowcount < PRUNE_BATCH:
                break
        db.execute("DELETE FROM eeg WHERE created <= ?", (cutoff,))  # kept as long as the events
        if total:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            log.info("outbox pruned", extra={"path": self.path, "deleted": total})
        return total

    def undelivered(self, db: sqlite3.Connection, patient: str | None) -> int:
        return self.spill.undelivered(patient) + Journal(db).undelivered(patient)

    @staticmethod
    def save_eeg(db: sqlite3.Connection, patient: str, alarm_id: str, payload: dict[str, Any]) -> None:
        with db:
            db.execute("INSERT OR REPLACE INTO eeg (alarm_id, patient, created, payload) VALUES (?, ?, ?, ?)",
                       (alarm_id, patient, time.time(), json.dumps(payload, separators=(",", ":"))))
