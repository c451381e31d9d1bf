"""Durable outbox: every event is journaled to SQLite (WAL, fsync on commit) *before* it is
published, and marked delivered only when the broker acknowledged it (QoS 1 PUBACK).

Sequence numbers are per patient, strictly increasing, and survive restarts (they live in
their own table, so pruning delivered rows never rewinds them). Every payload also carries the
journal's ``epoch``, ``<journal id>.<incarnation>``: a random id given to the journal when it is
created and a counter raised (fsync'd) each time it is opened. Subscribers de-duplicate on
``(patient, epoch, seq)``, which never repeats: not when the journal is deleted (new id), nor
when events held in memory on a full disk never reached the ``sequences`` table and their
numbers are issued again by the next run (next incarnation). Delivery is at-least-once.

One journal, one daemon: the journal is locked (``<path>.lock``, flock) while open; a second
instance refuses to start and names the first one's PID. The journal and its lock are created
0600 (0640 in a setgid folder, whose group is then the journal's readers).

Alarms and faults the journal shows as open (a start without an end: the daemon was killed
or crashed during them) are ended at the next open, with the reason in ``extra.end_reason``.

A corrupt journal is moved aside (``<path>.corrupt-<time>``), its undelivered events are
salvaged when they can still be read, and a fresh journal continues with sequence numbers
above anything the old one can have issued (see ``_quarantine``).
All SQLite work runs on one dedicated thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from seizurewatch.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")

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
"""

MIN_FREE_BYTES = 1 << 20  # refuse to start with less than 1 MiB free next to the journal
PRUNE_EVERY_S = 600.0
PRUNE_BATCH = 5000
SPILL_ID_BASE = 1 << 62  # ids of events held in memory while the journal cannot be written
INTERRUPTED = ("the daemon stopped without ending it (killed, crashed or power lost); ended when it started "
               "again, so the true end time is unknown")


@dataclass(frozen=True)
class OutboxRow:
    id: int
    patient: str
    seq: int
    topic: str
    payload: str


class Outbox:
    """Open with ``Outbox.open_sync(path)``; ``":memory:"`` keeps it in RAM (throwaway runs only)."""

    def __init__(self, path: str, keep_delivered_s: float = 7 * 86400.0) -> None:
        self.path = path
        self.keep_delivered_s = keep_delivered_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._db: sqlite3.Connection | None = None
        self._seq: dict[str, int] = {}
        self._seq_floor = 0
        self._last_prune = 0.0
        self.quarantined: str | None = None
        self.salvaged = 0
        # Events that could not be journaled (disk filled up while running): kept in memory, delivered
        # all the same, and written to the journal as soon as it accepts writes again.
        self._spill: dict[int, tuple[str, int, str, str, float, float | None]] = {}  # ..., created, delivered
        self._spill_next = SPILL_ID_BASE
        self._seq_dirty = False  # sequences advanced in memory only (spilled events)
        self.journal_id = uuid.uuid4().hex[:16]  # replaced by the journal's own when it has one
        self.incarnation = 1
        # the broker client id's secret part: never published (the journal id is, in every epoch), so no
        # other account can connect under this daemon's id and push it off the broker; kept in the journal
        # so a restart takes over its own stale session
        self.client_key = secrets.token_hex(8)
        self._lock_fd: int | None = None
        self.closed_at_open = 0  # alarms/faults left open by an unclean exit, ended at open

    @property
    def epoch(self) -> str:
        """``<journal id>.<incarnation>``, stamped on every payload journaled by this instance."""
        return f"{self.journal_id}.{self.incarnation}"

    # ----- lifecycle -------------------------------------------------------------------
    @classmethod
    def open_sync(cls, path: str, keep_delivered_s: float = 7 * 86400.0) -> Outbox:
        box = cls(path, keep_delivered_s)
        try:
            box._executor.submit(box._open).result()
        except BaseException:
            box._executor.submit(box._unlock).result()
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
        box = cls(path)
        try:
            box._check_folder()
            return box._holder()
        finally:
            box._executor.shutdown(wait=False)

    def _holder(self) -> int | None:
        try:
            fd = os.open(f"{self.path}.lock", os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.read(fd, 64).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else -1
        else:
            return None
        finally:
            os.close(fd)

    def _open(self) -> None:
        if self.path != ":memory:":
            self._check_folder()
            self._lock()
            self._create_private(self.path)
        try:
            self._db = self._connect()
            self._check_integrity()
            self._db.executescript(SCHEMA)
            self._load_identity()
            self._load_sequences()
        except sqlite3.OperationalError as exc:
            raise ConfigError(f"outbox.path: cannot write journal {self.path} ({exc})") from None
        except sqlite3.DatabaseError as exc:
            self._quarantine(exc)
        self._close_interrupted()

    def _file_mode(self) -> int:
        folder = Path(self.path).parent
        return 0o640 if folder.stat().st_mode & stat.S_ISGID else 0o600

    def _create_private(self, path: str) -> None:
        """Create ``path`` (empty: SQLite takes an empty file for an empty database) readable by the
        daemon only, or tighten an existing one that others can read."""
        mode = self._file_mode()
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))
        except FileExistsError:
            current = stat.S_IMODE(os.stat(path).st_mode)
            if current & 0o007:
                os.chmod(path, mode)
                log.warning("outbox journal was readable by other users; made it private",
                            extra={"path": path, "was": oct(current), "now": oct(mode)})
        except OSError as exc:
            raise ConfigError(f"outbox.path: cannot create {path} ({exc.strerror})") from None

    def _lock(self) -> None:
        """One journal, one daemon: hold an exclusive flock on ``<path>.lock`` (released by the kernel
        if we die); a second instance gets a ConfigError naming the first one's PID."""
        lock_path = f"{self.path}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, self._file_mode())
        except OSError as exc:
            raise ConfigError(f"outbox.path: cannot create the lock {lock_path} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"outbox.path: journal {self.path} is in use by another seizurewatch (PID {other}); "
                              "stop that one, or give this one its own outbox.path") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock; the file stays (removing it would race a newcomer)
            self._lock_fd = None

    def _load_identity(self) -> None:
        """The journal's id (created once) and this opening's incarnation (raised, fsync'd, every time)."""
        assert self._db is not None
        row = self._db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
        with self._db:
            self._db.execute("BEGIN")
            if row is None:
                self._db.execute("INSERT INTO meta (key, value) VALUES ('journal_id', ?)", (self.journal_id,))
            else:
                self.journal_id = str(row[0])
            key = self._db.execute("SELECT value FROM meta WHERE key = 'client_key'").fetchone()
            if key is None:
                self._db.execute("INSERT INTO meta (key, value) VALUES ('client_key', ?)", (self.client_key,))
            else:
                self.client_key = str(key[0])
            inc = self._db.execute("SELECT value FROM meta WHERE key = 'incarnation'").fetchone()
            self.incarnation = (int(inc[0]) if inc else 0) + 1
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('incarnation', ?)",
                             (str(self.incarnation),))
            # Undelivered rows journaled before payloads had an epoch: give them this one (their seq is
            # unique in this journal, so the pair cannot collide), or stations would drop them as malformed.
            self._db.execute("UPDATE events SET payload = json_insert(payload, '$.epoch', ?) WHERE delivered IS NULL "
                             "AND json_valid(payload) AND json_type(payload, '$.epoch') IS NULL", (self.epoch,))

    def _close_interrupted(self) -> None:
        """End what the journal shows as open: the last lifecycle event (start, update, end) of each alarm/fault
        id is not an ``end``. Acks and escalations are not part of that question: an alarm whose last event
        is an ``ack`` or ``escalate`` is just as open (it used to stay open for ever on every station)."""
        assert self._db is not None
        try:
            rows = self._db.execute(
                "SELECT e.patient, e.topic, e.payload FROM events e JOIN ("
                " SELECT MAX(id) AS id FROM events WHERE json_valid(payload)"
                " AND json_extract(payload, '$.kind') IN ('alarm', 'fault')"
                " AND json_type(payload, '$.alarm_id') = 'text'"
                " AND json_extract(payload, '$.event') IN ('start', 'update', 'end')"
                " GROUP BY patient, json_extract(payload, '$.kind'), json_extract(payload, '$.alarm_id')"
                ") last ON e.id = last.id ORDER BY e.id").fetchall()
        except sqlite3.Error as exc:
            log.error("cannot look for alarms left open in the journal", extra={"path": self.path, "error": str(exc)})
            return
        now = round(time.time(), 4)
        by_patient: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for patient, topic, body in rows:
            last = json.loads(body)
            if not isinstance(last, dict) or last.get("event") not in ("start", "update"):
                continue
            end = {k: v for k, v in last.items() if k not in ("seq", "epoch")}
            end.update(event="end", wall_time=now,
                       extra={**(last.get("extra") or {}), "end_reason": INTERRUPTED})
            by_patient.setdefault(str(patient), []).append((str(topic), end))
            log.warning("ending an open %s left by an unclean exit", last.get("kind"),
                        extra={"patient": patient, "alarm_id": last.get("alarm_id"), "t": last.get("t")})
        for patient, items in by_patient.items():
            self._append(patient, items)
            self.closed_at_open += len(items)

    def _check_folder(self) -> None:
        folder = Path(self.path).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"outbox.path: cannot create {folder} ({exc.strerror})") from None
        # os.access() says yes to root even on a read-only mount: try a real file.
        probe = folder / f".{Path(self.path).name}.probe-{os.getpid()}"
        try:
            with open(probe, "wb") as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise ConfigError(f"outbox.path: cannot write in {folder} ({exc.strerror})") from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
        free = shutil.disk_usage(folder).free
        if free < MIN_FREE_BYTES:
            raise ConfigError(f"outbox.path: only {free // 1024} KiB free in {folder}; the journal needs at least "
                              f"{MIN_FREE_BYTES // 1024} KiB")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # Probe a write now: a full disk or read-only file must fail at start, not at the first alarm.
            db.execute("CREATE TABLE IF NOT EXISTS probe (x INTEGER)")
            db.execute("DROP TABLE probe")
        except BaseException:
            db.close()
            raise
        return db

    def _check_integrity(self) -> None:
        assert self._db is not None
        row = self._db.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")

    def _load_sequences(self) -> None:
        assert self._db is not None
        self._seq.clear()
        floor = self._db.execute("SELECT value FROM meta WHERE key = 'seq_floor'").fetchone()
        self._seq_floor = int(floor[0]) if floor else 0
        for patient, seq in self._db.execute("SELECT patient, last_seq FROM sequences"):
            self._seq[patient] = int(seq)
        # Journals written before the sequences table existed.
        for patient, seq in self._db.execute("SELECT patient, MAX(seq) FROM events GROUP BY patient"):
            self._seq[patient] = max(self._seq.get(patient, 0), int(seq))

    def _quarantine(self, exc: Exception) -> None:
        """Move a corrupt journal aside (kept for forensics), salvage what is readable, start afresh.

        Sequence numbers continue from ``seq_floor`` = the current Unix time in milliseconds:
        above anything the old journal can have issued (it would need > 1000 events per
        second over its whole life to get there), so subscribers never mistake a new event
        for a duplicate of an old one.
        """
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        dest = f"{self.path}.corrupt-{int(time.time())}"
        if self.path != ":memory:":
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, dest + suffix)
        self.quarantined = dest
        rows, highest = self._salvage(dest)
        try:
            if self.path != ":memory:":
                self._create_private(self.path)
            self._db = self._connect()
            self._db.executescript(SCHEMA)
        except sqlite3.Error as err:
            raise ConfigError(f"outbox.path: cannot write journal {self.path} ({err})") from None
        floor = max(int(time.time() * 1000), highest)
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('seq_floor', ?)", (str(floor),))
        self.journal_id = uuid.uuid4().hex[:16]  # a new journal: a new identity (its incarnation 1)
        self._db.execute("DELETE FROM meta WHERE key IN ('journal_id', 'incarnation')")
        self._load_identity()
        if rows:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR IGNORE INTO events (patient, seq, topic, payload, created) "
                                     "VALUES (?, ?, ?, ?, ?)", rows)
        self._load_sequences()
        self.salvaged = len(rows)
        log.error("outbox journal corrupt; quarantined and started a fresh one",
                  extra={"path": self.path, "moved_to": dest, "error": str(exc), "salvaged_undelivered": len(rows),
                         "seq_floor": floor})

    @staticmethod
    def _salvage(path: str) -> tuple[list[tuple[str, int, str, str, float]], int]:
        """Undelivered rows (and the highest seq) still readable in a corrupt journal; best effort."""
        rows: list[tuple[str, int, str, str, float]] = []
        highest = 0
        if not os.path.exists(path):
            return rows, highest
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                cur = db.execute("SELECT patient, seq, topic, payload, created FROM events "
                                 "WHERE delivered IS NULL ORDER BY id")
                for r in cur:
                    rows.append((str(r[0]), int(r[1]), str(r[2]), str(r[3]), float(r[4])))
                highest = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])
            finally:
                db.close()
        except (sqlite3.Error, ValueError, TypeError):
            pass  # keep whatever was read before the damage
        return rows, highest

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def close_sync(self) -> None:
        self._executor.submit(self._close).result()
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None and self._seq_dirty:
            try:
                self._flush_spill()
            except sqlite3.Error as exc:
                log.error("closing with events that could not be journaled",
                          extra={"path": self.path, "error": str(exc), "events": len(self._spill)})
        if self._db is not None:
            self._db.close()
            self._db = None
        self._unlock()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    # ----- writing ---------------------------------------------------------------------
    def _append(self, patient: str, items: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, str]]:
        """Journal (topic, payload) events of one patient in one transaction; (seq, body) of each."""
        try:
            if self._seq_dirty:
                self._flush_spill()
            return self._insert(patient, items)
        except sqlite3.OperationalError as exc:  # disk full, I/O error: detection must go on
            return [self._spill_one(patient, topic, payload, exc) for topic, payload in items]
        except sqlite3.IntegrityError as exc:
            # A seq already in the journal: someone else wrote to it (the lock keeps daemons out, not
            # every tool). Not corruption: never quarantine a healthy journal; number above what is there.
            log.error("outbox journal already holds these sequence numbers; continuing above them",
                      extra={"path": self.path, "patient": patient, "error": str(exc)})
            self._load_sequences()
            return self._insert(patient, items)
        except sqlite3.DatabaseError as exc:  # corruption found while running: quarantine, continue
            self._quarantine(exc)
            return self._insert(patient, items)

    def _spill_one(self, patient: str, topic: str, payload: dict[str, Any], exc: Exception) -> tuple[int, str]:
        seq = max(self._seq.get(patient, 0), self._seq_floor) + 1
        body = json.dumps({**payload, "epoch": self.epoch, "seq": seq}, separators=(",", ":"))
        self._spill[self._spill_next] = (patient, seq, topic, body, time.time(), None)
        self._spill_next += 1
        self._seq[patient] = seq
        self._seq_dirty = True
        log.error("cannot write the outbox journal; keeping the event in memory and delivering it anyway",
                  extra={"path": self.path, "error": str(exc), "in_memory": len(self._spill)})
        return seq, body

    def _flush_spill(self) -> None:
        """Journal the events held in memory (delivered or not, with their delivery time) and the
        sequence numbers they used, so a seq is never issued twice; OperationalError if the disk still refuses."""
        assert self._db is not None
        rows = sorted(self._spill.items())
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO events (patient, seq, topic, payload, created, delivered) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", [r for _, r in rows])
            self._db.executemany("INSERT INTO sequences (patient, last_seq) VALUES (?, ?) ON CONFLICT (patient) "
                                 "DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)", list(self._seq.items()))
        self._spill.clear()
        self._seq_dirty = False
        log.warning("outbox journal writable again; events held in memory journaled",
                    extra={"path": self.path, "events": len(rows)})

    def _insert(self, patient: str, items: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, str]]:
        assert self._db is not None
        seq = max(self._seq.get(patient, 0), self._seq_floor)
        now = time.time()
        rows = []
        for topic, payload in items:
            seq += 1
            rows.append((patient, seq, topic,
                         json.dumps({**payload, "epoch": self.epoch, "seq": seq}, separators=(",", ":")), now))
        with self._db:  # one transaction: the events and the sequence they used, fsync'd together
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO events (patient, seq, topic, payload, created) VALUES (?, ?, ?, ?, ?)",
                                 rows)
            self._db.execute("INSERT INTO sequences (patient, last_seq) VALUES (?, ?) "
                             "ON CONFLICT (patient) DO UPDATE SET last_seq = excluded.last_seq", (patient, seq))
        self._seq[patient] = seq
        return [(r[1], r[3]) for r in rows]

    async def append(self, patient: str, topic: str, payload: dict[str, Any]) -> int:
        """Journal one event (fsync'd); returns its sequence number."""
        return (await self.append_all(patient, [(topic, payload)]))[0]

    async def append_all(self, patient: str, items: list[tuple[str, dict[str, Any]]]) -> list[int]:
        """Journal several (topic, payload) events at once, in order, in one fsync'd transaction;
        returns their sequence numbers."""
        return [seq for seq, _ in await self._run(self._append, patient, items)]

    def append_sync(self, patient: str, topic: str, payload: dict[str, Any]) -> int:
        return self._executor.submit(self._append, patient, [(topic, payload)]).result()[0][0]

    def append_many_sync(self, patient: str, topic: str, payloads: list[dict[str, Any]]) -> list[int]:
        """Many events on one topic in one transaction (tests and benchmarks build big backlogs with it)."""
        items = [(topic, p) for p in payloads]
        return [seq for seq, _ in self._executor.submit(self._append, patient, items).result()]

    # ----- delivery --------------------------------------------------------------------
    def _pending(self, patient: str, after_id: int, limit: int) -> list[OutboxRow]:
        assert self._db is not None
        rows = self._db.execute(
            "SELECT id, patient, seq, topic, payload FROM events "
            "WHERE delivered IS NULL AND patient = ? AND id > ? ORDER BY id LIMIT ?",
            (patient, after_id, limit),
        ).fetchall()
        out = [OutboxRow(*r) for r in rows]
        if len(out) < limit and self._spill:  # newer than anything on disk
            out += [OutboxRow(i, p, seq, t, body) for i, (p, seq, t, body, _, done) in sorted(self._spill.items())
                    if p == patient and i > after_id and done is None][: limit - len(out)]
        return out

    async def pending(self, patient: str, after_id: int = 0, limit: int = 100) -> list[OutboxRow]:
        """One page of undelivered events, oldest first (never the whole backlog at once)."""
        return await self._run(self._pending, patient, after_id, limit)

    def _mark(self, ids: list[int]) -> None:
        assert self._db is not None
        now = time.time()
        for i in [i for i in ids if i in self._spill]:
            self._spill[i] = (*self._spill[i][:5], now)  # journaled with its delivery time once possible
        ids = [i for i in ids if i < SPILL_ID_BASE]
        if not ids:
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("UPDATE events SET delivered = ? WHERE id = ?", [(now, i) for i in ids])
            if now - self._last_prune > PRUNE_EVERY_S:
                self._prune(now)
        except sqlite3.OperationalError as exc:  # disk full: they stay pending and are sent again (at-least-once)
            log.error("cannot mark events delivered in the outbox journal",
                      extra={"path": self.path, "error": str(exc), "events": len(ids)})

    async def mark_delivered(self, ids: list[int]) -> None:
        if ids:
            await self._run(self._mark, ids)

    def _prune(self, now: float | None = None) -> int:
        """Delete delivered events older than ``keep_delivered_s``, in batches; never undelivered ones."""
        assert self._db is not None
        now = time.time() if now is None else now
        self._last_prune = now
        cutoff = now - self.keep_delivered_s
        total = 0
        while True:
            cur = self._db.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE delivered IS NOT NULL "
                "AND delivered <= ? LIMIT ?)", (cutoff, PRUNE_BATCH))
            total += cur.rowcount
            if cur.rowcount < PRUNE_BATCH:
                break
        if total:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            log.info("outbox pruned", extra={"path": self.path, "deleted": total})
        return total

    def prune_sync(self) -> int:
        return self._executor.submit(self._prune).result()

    def _count(self, patient: str | None) -> int:
        assert self._db is not None
        spilled = sum(1 for r in self._spill.values() if (patient is None or r[0] == patient) and r[5] is None)
        return spilled + self._count_journal(patient)

    def _count_journal(self, patient: str | None) -> int:
        assert self._db is not None
        if patient is None:
            return int(self._db.execute("SELECT COUNT(*) FROM events WHERE delivered IS NULL").fetchone()[0])
        return int(
            self._db.execute(
                "SELECT COUNT(*) FROM events WHERE delivered IS NULL AND patient = ?", (patient,)
            ).fetchone()[0]
        )

    async def depth(self, patient: str | None = None) -> int:
        return await self._run(self._count, patient)

    def depth_sync(self, patient: str | None = None) -> int:
        return self._executor.submit(self._count, patient).result()

    def last_seq(self, patient: str) -> int:
        return self._seq.get(patient, 0)

    def all_rows_sync(self, patient: str) -> list[tuple[int, str, float | None]]:
        """(seq, payload, delivered) for every journaled event of a patient, in order (tests, audits)."""
        def q() -> list[tuple[int, str, float | None]]:
            assert self._db is not None
            return self._db.execute(
                "SELECT seq, payload, delivered FROM events WHERE patient = ? ORDER BY seq", (patient,)
            ).fetchall()

        return self._executor.submit(q).result()
