"""Durable outbox: every event is journaled to SQLite (WAL, fsync on commit) *before* it is
published, and marked delivered only when the broker acknowledged it (QoS 1 PUBACK).

Sequence numbers are per patient, strictly increasing, and survive restarts (they live in
their own table, so pruning delivered rows never rewinds them). Every payload also carries the
journal's ``epoch``, ``<journal id>.<incarnation>``: a random id given to the journal when it is
created and a counter raised (fsync'd) each time it is opened. Subscribers de-duplicate on
``(patient, epoch, seq)``, which never repeats: not when the journal is deleted (new id), nor
when events held in memory on a full disk never reached the ``sequences`` table and their
numbers are issued again by the next run (next incarnation). Delivery is at-least-once.

The outbox is split along its seams; this module is its face (lifecycle, identity, the one thread):
    journal.py           the schema, and the one reader of a journal (``Journal``)
    journalfile.py       the file: its folder, permissions, lock (one journal, one daemon) and connection
    outbox_write.py      the write path: sequence numbers, the fsync'd insert, events held in memory
    outbox_delivery.py   delivery bookkeeping: pending pages, marks after PUBACK, pruning, the EEG
    outbox_recovery.py   alarms a crash left open, and a corrupt journal (quarantine, salvage)
All SQLite work runs on one dedicated thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from seizurewatch.alarms import outbox_recovery as recovery
from seizurewatch.alarms.journal import SCHEMA, Journal, JournalRow
from seizurewatch.alarms.journalfile import MIN_FREE_BYTES, JournalFile
from seizurewatch.alarms.outbox_delivery import PRUNE_BATCH, PRUNE_EVERY_S, Deliveries
from seizurewatch.alarms.outbox_write import SPILL_ID_BASE, Items, Sequencer
from seizurewatch.alarms.record import INTERRUPTED
from seizurewatch.errors import ConfigError

__all__ = ["INTERRUPTED", "MIN_FREE_BYTES", "PRUNE_BATCH", "PRUNE_EVERY_S", "SCHEMA", "SPILL_ID_BASE", "Outbox",
           "OutboxRow"]

log = logging.getLogger(__name__)

T = TypeVar("T")
OutboxRow = JournalRow  # a page of ``pending`` (the journal's row: id, patient, seq, topic, payload)


class Outbox:
    """Open with ``Outbox.open_sync(path)``; ``":memory:"`` keeps it in RAM (throwaway runs only)."""

    def __init__(self, path: str, keep_delivered_s: float = 7 * 86400.0) -> None:
        self.path = path
        self.keep_delivered_s = keep_delivered_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._file = JournalFile(path)
        self._db: sqlite3.Connection | None = None
        # Events that could not be journaled (disk filled up while running) are kept in memory, delivered
        # all the same, and written to the journal as soon as it accepts writes again (``Sequencer.spill``).
        self._writer = Sequencer(path, lambda: self.epoch)
        self._deliveries = Deliveries(path, self._writer.spill, keep_delivered_s)
        self.quarantined: str | None = None
        self.salvaged = 0
        self.journal_id = uuid.uuid4().hex[:16]  # replaced by the journal's own when it has one
        self.incarnation = 1
        # the broker client id's secret part: never published (the journal id is, in every epoch), so no
        # other account can connect under this daemon's id and push it off the broker; kept in the journal
        # so a restart takes over its own stale session
        self.client_key = secrets.token_hex(8)
        self.closed_at_open = 0  # alarms/faults left open by an unclean exit, ended at open

    @property
    def epoch(self) -> str:
        """``<journal id>.<incarnation>``, stamped on every payload journaled by this instance."""
        return f"{self.journal_id}.{self.incarnation}"

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "the outbox is not open"
        return self._db

    # ----- lifecycle -------------------------------------------------------------------
    @classmethod
    def open_sync(cls, path: str, keep_delivered_s: float = 7 * 86400.0) -> Outbox:
        box = cls(path, keep_delivered_s)
        try:
            box._executor.submit(box._open).result()
        except BaseException:
            box._executor.submit(box._file.unlock).result()
            box._executor.shutdown(wait=False)
            raise
        return box

    @classmethod
    def check_path(cls, path: str) -> int | None:
        """For ``run --check``: what can be verified without taking the journal from a running daemon
        (its folder exists or can be made, is writable and has room: ConfigError otherwise). Returns
        the PID of the seizurewatch holding the journal's lock, or None if it is free."""
        if path == ":memory:":
            return None
        file = JournalFile(path)
        file.check_folder()
        return file.holder()

    def _open(self) -> None:
        if not self._file.in_memory:
            self._file.check_folder()
            self._file.lock()
            self._file.create_private()
        try:
            self._db = self._file.connect()
            self._file.check_integrity(self._db)
            self._db.executescript(SCHEMA)
            self._load_identity()
            self._writer.load(Journal(self._db))
        except sqlite3.OperationalError as exc:
            raise ConfigError(f"outbox.path: cannot write journal {self.path} ({exc})") from None
        except sqlite3.DatabaseError as exc:
            self._quarantine(exc)
        self._close_interrupted()

    def _load_identity(self) -> None:
        """The journal's id (created once) and this opening's incarnation (raised, fsync'd, every time)."""
        db, journal = self.db, Journal(self.db)
        journal_id = journal.meta("journal_id")
        with db:
            db.execute("BEGIN")
            if journal_id is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('journal_id', ?)", (self.journal_id,))
            else:
                self.journal_id = journal_id
            key = journal.meta("client_key")
            if key is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('client_key', ?)", (self.client_key,))
            else:
                self.client_key = key
            inc = journal.meta("incarnation")
            self.incarnation = (int(inc) if inc else 0) + 1
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('incarnation', ?)", (str(self.incarnation),))
            # Undelivered rows journaled before payloads had an epoch: give them this one (their seq is
            # unique in this journal, so the pair cannot collide), or stations would drop them as malformed.
            db.execute("UPDATE events SET payload = json_insert(payload, '$.epoch', ?) WHERE delivered IS NULL "
                       "AND json_valid(payload) AND json_type(payload, '$.epoch') IS NULL", (self.epoch,))

    def _close_interrupted(self) -> None:
        """End what the journal shows as open (``outbox_recovery.interrupted_ends``)."""
        try:
            ends = recovery.interrupted_ends(Journal(self.db))
        except sqlite3.Error as exc:
            log.error("cannot look for alarms left open in the journal", extra={"path": self.path, "error": str(exc)})
            return
        for patient, items in ends.items():
            self._append(patient, items)
            self.closed_at_open += len(items)

    def _quarantine(self, exc: Exception) -> None:
        """Move a corrupt journal aside (kept for forensics), salvage what is readable, start afresh with
        sequence numbers above the old journal's (``outbox_recovery``)."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        dest = f"{self.path}.corrupt-{int(time.time())}"
        self._file.move_aside(dest)
        self.quarantined = dest
        rows, highest = recovery.salvage(dest)
        try:
            if not self._file.in_memory:
                self._file.create_private()
            self._db = self._file.connect()
            self._db.executescript(SCHEMA)
        except sqlite3.Error as err:
            raise ConfigError(f"outbox.path: cannot write journal {self.path} ({err})") from None
        floor = recovery.seq_floor(highest)
        recovery.fresh_meta(self._db, floor)
        self.journal_id = uuid.uuid4().hex[:16]  # a new journal: a new identity (its incarnation 1)
        self._load_identity()
        recovery.restore(self._db, rows)
        self._writer.load(Journal(self._db))
        self.salvaged = len(rows)
        log.error("outbox journal corrupt; quarantined and started a fresh one",
                  extra={"path": self.path, "moved_to": dest, "error": str(exc), "salvaged_undelivered": len(rows),
                         "seq_floor": floor})

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def close_sync(self) -> None:
        self._executor.submit(self._close).result()
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None and self._writer.dirty:
            try:
                self._writer.flush(self._db)
            except sqlite3.Error as exc:
                log.error("closing with events that could not be journaled",
                          extra={"path": self.path, "error": str(exc), "events": len(self._writer.spill)})
        if self._db is not None:
            self._db.close()
            self._db = None
        self._file.unlock()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self._executor.submit(fn, *args).result()

    # ----- writing ---------------------------------------------------------------------
    def _append(self, patient: str, items: Items) -> list[tuple[int, str]]:
        """Journal (topic, payload) events of one patient in one transaction; (seq, body) of each."""
        writer = self._writer
        try:
            if writer.dirty:
                writer.flush(self.db)
            return writer.insert(self.db, patient, items)
        except sqlite3.OperationalError as exc:  # disk full, I/O error: detection must go on
            return [writer.spill_one(patient, topic, payload, exc) for topic, payload in items]
        except sqlite3.IntegrityError as exc:
            # A seq already in the journal: someone else wrote to it (the lock keeps daemons out, not
            # every tool). Not corruption: never quarantine a healthy journal; number above what is there.
            log.error("outbox journal already holds these sequence numbers; continuing above them",
                      extra={"path": self.path, "patient": patient, "error": str(exc)})
            writer.load(Journal(self.db))
            return writer.insert(self.db, patient, items)
        except sqlite3.DatabaseError as exc:  # corruption found while running: quarantine, continue
            self._quarantine(exc)
            return writer.insert(self.db, patient, items)

    async def append(self, patient: str, topic: str, payload: dict[str, Any]) -> int:
        """Journal one event (fsync'd); returns its sequence number."""
        return (await self.append_all(patient, [(topic, payload)]))[0]

    async def append_all(self, patient: str, items: Items) -> list[int]:
        """Journal several (topic, payload) events at once, in order, in one fsync'd transaction;
        returns their sequence numbers."""
        return [seq for seq, _ in await self._run(self._append, patient, items)]

    def append_sync(self, patient: str, topic: str, payload: dict[str, Any]) -> int:
        return self._sync(self._append, patient, [(topic, payload)])[0][0]

    def append_many_sync(self, patient: str, topic: str, payloads: list[dict[str, Any]]) -> list[int]:
        """Many events on one topic in one transaction (tests and benchmarks build big backlogs with it)."""
        return [seq for seq, _ in self._sync(self._append, patient, [(topic, p) for p in payloads])]

    def last_seq(self, patient: str) -> int:
        return self._writer.last.get(patient, 0)

    # ----- delivery --------------------------------------------------------------------
    async def pending(self, patient: str, after_id: int = 0, limit: int = 100) -> list[OutboxRow]:
        """One page of undelivered events, oldest first (never the whole backlog at once)."""
        return await self._run(lambda: self._deliveries.pending(self.db, patient, after_id, limit))

    async def mark_delivered(self, ids: list[int]) -> None:
        if ids:
            await self._run(lambda: self._deliveries.mark(self.db, ids))

    async def save_eeg(self, patient: str, alarm_id: str, payload: dict[str, Any]) -> None:
        """Keep the EEG behind an alarm (snippet.py) beside its events; best effort: a journal that refuses it
        is logged, never in the way of the alarm itself."""
        try:
            await self._run(lambda: self._deliveries.save_eeg(self.db, patient, alarm_id, payload))
        except sqlite3.Error as exc:
            log.error("cannot journal the EEG behind an alarm", extra={"patient": patient, "alarm_id": alarm_id,
                                                                      "error": str(exc)})

    def prune_sync(self) -> int:
        return self._sync(lambda: self._deliveries.prune(self.db))

    async def depth(self, patient: str | None = None) -> int:
        return await self._run(lambda: self._deliveries.undelivered(self.db, patient))

    def depth_sync(self, patient: str | None = None) -> int:
        return self._sync(lambda: self._deliveries.undelivered(self.db, patient))

    def all_rows_sync(self, patient: str) -> list[tuple[int, str, float | None]]:
        """(seq, payload, delivered) for every journaled event of a patient, in order (tests, audits)."""
        rows = self._sync(lambda: Journal(self.db).rows(patient, by_seq=True))
        return [(r.seq, r.payload, r.delivered) for r in rows]
