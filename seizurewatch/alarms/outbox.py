"""Durable outbox: every event is journaled to SQLite (WAL, fsync on commit) *before* it is
published, and marked delivered only when the broker acknowledged it (QoS 1 PUBACK).

Sequence numbers are per patient, strictly increasing, and survive restarts, so
subscribers can de-duplicate on ``(patient, seq)``: delivery is at-least-once.
All SQLite work runs on one dedicated thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seizurewatch.errors import ConfigError

log = logging.getLogger(__name__)

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
"""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    patient: str
    seq: int
    topic: str
    payload: str


class Outbox:
    """Open with ``Outbox.open(path)``; ``":memory:"`` keeps it in RAM (throwaway runs only)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._db: sqlite3.Connection | None = None
        self._seq: dict[str, int] = {}
        self.quarantined: str | None = None

    # ----- lifecycle -------------------------------------------------------------------
    @classmethod
    def open_sync(cls, path: str) -> Outbox:
        box = cls(path)
        box._executor.submit(box._open).result()
        return box

    def _open(self) -> None:
        if self.path != ":memory:":
            folder = Path(self.path).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"outbox.path: cannot create {folder} ({exc.strerror})") from None
            if not os.access(folder, os.W_OK):
                raise ConfigError(f"outbox.path: folder {folder} is not writable")
        try:
            self._db = self._connect()
            self._check_integrity()
        except sqlite3.DatabaseError as exc:
            self._quarantine(exc)
            self._db = self._connect()
        assert self._db is not None
        self._db.executescript(SCHEMA)
        for patient, seq in self._db.execute("SELECT patient, MAX(seq) FROM events GROUP BY patient"):
            self._seq[patient] = int(seq)

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # Probe a write now: a full disk or read-only folder must fail at start, not at the first alarm.
            db.execute("CREATE TABLE IF NOT EXISTS probe (x INTEGER)")
            db.execute("DROP TABLE probe")
        except sqlite3.OperationalError as exc:
            raise ConfigError(f"outbox.path: cannot write journal {self.path} ({exc})") from None
        return db

    def _check_integrity(self) -> None:
        assert self._db is not None
        row = self._db.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row}")

    def _quarantine(self, exc: Exception) -> None:
        """A corrupt journal is moved aside (kept for forensics) and a fresh one started."""
        if self._db is not None:
            self._db.close()
            self._db = None
        dest = f"{self.path}.corrupt-{int(time.time())}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, dest + suffix)
        self.quarantined = dest
        log.error("outbox journal corrupt; quarantined", extra={"path": self.path, "moved_to": dest, "error": str(exc)})

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # ----- writing ---------------------------------------------------------------------
    def _append(self, patient: str, topic: str, payload: dict[str, Any]) -> tuple[int, str]:
        assert self._db is not None
        seq = self._seq.get(patient, 0) + 1
        body = json.dumps({**payload, "seq": seq}, separators=(",", ":"))
        self._db.execute(
            "INSERT INTO events (patient, seq, topic, payload, created) VALUES (?, ?, ?, ?, ?)",
            (patient, seq, topic, body, time.time()),
        )
        self._seq[patient] = seq
        return seq, body

    async def append(self, patient: str, topic: str, payload: dict[str, Any]) -> int:
        """Journal one event (fsync'd); returns its sequence number."""
        loop = asyncio.get_running_loop()
        seq, _ = await loop.run_in_executor(self._executor, self._append, patient, topic, payload)
        return seq

    def append_sync(self, patient: str, topic: str, payload: dict[str, Any]) -> int:
        return self._executor.submit(self._append, patient, topic, payload).result()[0]

    # ----- delivery --------------------------------------------------------------------
    def _pending(self, patient: str, after_id: int, limit: int) -> list[OutboxRow]:
        assert self._db is not None
        rows = self._db.execute(
            "SELECT id, patient, seq, topic, payload FROM events "
            "WHERE delivered IS NULL AND patient = ? AND id > ? ORDER BY id LIMIT ?",
            (patient, after_id, limit),
        ).fetchall()
        return [OutboxRow(*r) for r in rows]

    async def pending(self, patient: str, after_id: int = 0, limit: int = 100) -> list[OutboxRow]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._pending, patient, after_id, limit)

    def _mark(self, ids: list[int]) -> None:
        assert self._db is not None
        now = time.time()
        self._db.executemany("UPDATE events SET delivered = ? WHERE id = ?", [(now, i) for i in ids])

    async def mark_delivered(self, ids: list[int]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._mark, ids)

    def _count(self, patient: str | None) -> int:
        assert self._db is not None
        if patient is None:
            return int(self._db.execute("SELECT COUNT(*) FROM events WHERE delivered IS NULL").fetchone()[0])
        return int(
            self._db.execute(
                "SELECT COUNT(*) FROM events WHERE delivered IS NULL AND patient = ?", (patient,)
            ).fetchone()[0]
        )

    async def depth(self, patient: str | None = None) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._count, patient)

    def depth_sync(self, patient: str | None = None) -> int:
        return self._executor.submit(self._count, patient).result()

    def all_rows_sync(self, patient: str) -> list[tuple[int, str, float | None]]:
        """(seq, payload, delivered) for every journaled event of a patient, in order (tests, audits)."""
        def q() -> list[tuple[int, str, float | None]]:
            assert self._db is not None
            return self._db.execute(
                "SELECT seq, payload, delivered FROM events WHERE patient = ? ORDER BY seq", (patient,)
            ).fetchall()

        return self._executor.submit(q).result()
