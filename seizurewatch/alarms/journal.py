"""The outbox journal's schema, and its one reader.

The journal is a SQLite file (WAL): ``events`` (one row per journaled event: its patient, seq, topic, JSON payload,
when it was journaled and when the broker acknowledged it), ``sequences`` (the last seq issued per patient),
``meta`` (the journal's id, incarnation, client key, seq floor) and ``eeg`` (the EEG behind each alarm).
``Outbox`` writes it (``outbox.py``, ``outbox_write.py``, ``outbox_recovery.py``); everything that reads it, the
outbox itself, the acks after a restart (``AckBook.load``), the label export (``research/marks.py``) and the
tests, reads it through ``Journal``: a schema change is made here, once, for every reader.

``Journal(db)`` reads over a connection the caller holds (the outbox's own); ``Journal.read(path)`` opens the
file read-only beside a running daemon (WAL lets a reader in while the daemon writes) and closes it again.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seizurewatch.errors import DataError

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    patient TEXT NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    delivered REAL,
    UNIQUE (patient, seq)
);
CREATE INDEX IF NOT EXISTS events_pending ON events (patient, id) WHERE delivered IS NULL;
CREATE INDEX IF NOT EXISTS events_delivered ON events (delivered) WHERE delivered IS NOT NULL;
CREATE TABLE IF NOT EXISTS sequences (patient TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS eeg (alarm_id TEXT PRIMARY KEY, patient TEXT NOT NULL, created REAL NOT NULL,
                                payload TEXT NOT NULL);
"""

_COLUMNS = "id, patient, seq, topic, payload, created, delivered"


class JournalError(DataError):
    """A journal that cannot be read (missing, not SQLite, not a seizurewatch journal); ``reason`` is SQLite's."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


@dataclass(frozen=True)
class JournalRow:
    """One journaled event. ``payload`` is the JSON text exactly as published."""

    id: int
    patient: str
    seq: int
    topic: str
    payload: str
    created: float = 0.0
    delivered: float | None = None

    def body(self) -> dict[str, Any] | None:
        """The payload as a JSON object; None if it is not one (a foreign or damaged row)."""
        try:
            body = json.loads(self.payload)
        except (json.JSONDecodeError, TypeError):
            return None
        return body if isinstance(body, dict) else None


class Journal:
    """Queries on a journal's tables; every read of a journal goes through one of these."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @classmethod
    @contextlib.contextmanager
    def read(cls, path: str | Path) -> Iterator[Journal]:
        """The journal at ``path``, read-only (beside a daemon that may be writing it), closed afterwards.
        JournalError when it is not there or not a readable journal (also for errors while reading)."""
        path = Path(path)
        if not path.is_file():
            raise JournalError(f"{path}: journal not found (the daemon's outbox.path)", "not found")
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise JournalError(f"{path}: not a readable seizurewatch journal ({exc})", str(exc)) from None
        try:
            yield cls(db)
        except sqlite3.Error as exc:
            raise JournalError(f"{path}: not a readable seizurewatch journal ({exc})", str(exc)) from None
        finally:
            db.close()

    # ----- events ------------------------------------------------------------------------
    def rows(self, patient: str | None = None, *, undelivered: bool = False, created_since: float | None = None,
             after_id: int = 0, limit: int | None = None, by_seq: bool = False) -> list[JournalRow]:
        """Journaled events, oldest first (in journal order, or by patient and seq with ``by_seq``)."""
        return list(self.iter_rows(patient, undelivered=undelivered, created_since=created_since,
                                   after_id=after_id, limit=limit, by_seq=by_seq))

    def iter_rows(self, patient: str | None = None, *, undelivered: bool = False,
                  created_since: float | None = None, after_id: int = 0, limit: int | None = None,
                  by_seq: bool = False) -> Iterator[JournalRow]:
        """``rows``, one at a time (what was read before a damaged page is kept)."""
        where: list[str] = ["id > ?"]
        args: list[Any] = [after_id]
        if patient is not None:
            where.append("patient = ?")
            args.append(patient)
        if undelivered:
            where.append("delivered IS NULL")
        if created_since is not None:
            where.append("created >= ?")
            args.append(created_since)
        sql = (f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)} "
               f"ORDER BY {'patient, seq' if by_seq else 'id'}")
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        for r in self.db.execute(sql, args):
            yield JournalRow(*r)

    def payloads(self, patient: str | None = None, **where: Any) -> list[dict[str, Any]]:
        """The payloads of ``rows(patient, **where)`` that are JSON objects."""
        return [b for b in (r.body() for r in self.rows(patient, **where)) if b is not None]

    def undelivered(self, patient: str | None = None) -> int:
        """How many events wait for the broker (of ``patient``, or of everyone)."""
        if patient is None:
            return int(self.db.execute("SELECT COUNT(*) FROM events WHERE delivered IS NULL").fetchone()[0])
        return int(self.db.execute("SELECT COUNT(*) FROM events WHERE delivered IS NULL AND patient = ?",
                                   (patient,)).fetchone()[0])

    def highest_seq(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def last_lifecycle(self) -> list[JournalRow]:
        """The last lifecycle event (start, update, end) of every alarm and fault id, in journal order. An ack
        or escalation is not part of an alarm's lifecycle: an alarm whose last event is one is as open."""
        rows = self.db.execute(
            f"SELECT {', '.join('e.' + c.strip() for c in _COLUMNS.split(','))} FROM events e JOIN ("
            " SELECT MAX(id) AS id FROM events WHERE json_valid(payload)"
            " AND json_extract(payload, '$.kind') IN ('alarm', 'fault')"
            " AND json_type(payload, '$.alarm_id') = 'text'"
            " AND json_extract(payload, '$.event') IN ('start', 'update', 'end')"
            " GROUP BY patient, json_extract(payload, '$.kind'), json_extract(payload, '$.alarm_id')"
            ") last ON e.id = last.id ORDER BY e.id").fetchall()
        return [JournalRow(*r) for r in rows]

    # ----- sequences and identity --------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def last_seqs(self) -> dict[str, int]:
        """The last seq issued per patient: the ``sequences`` table, or the events themselves for a journal
        written before that table existed (whichever is higher)."""
        out: dict[str, int] = {}
        for patient, seq in self.db.execute("SELECT patient, last_seq FROM sequences"):
            out[patient] = int(seq)
        for patient, seq in self.db.execute("SELECT patient, MAX(seq) FROM events GROUP BY patient"):
            out[patient] = max(out.get(patient, 0), int(seq))
        return out

    # ----- the EEG behind alarms ---------------------------------------------------------
    def eeg(self, patient: str) -> dict[str, Any]:
        """The EEG kept behind each of ``patient``'s alarms (alarm id -> docs/alarm.schema.json ``eeg``); a
        journal written before the daemon kept EEG has none."""
        try:
            rows = self.db.execute("SELECT alarm_id, payload FROM eeg WHERE patient = ? ORDER BY created",
                                   (patient,)).fetchall()
        except sqlite3.OperationalError:  # no eeg table: an older journal
            return {}
        return {alarm_id: json.loads(body) for alarm_id, body in rows}
