"""The journal's file on disk: its folder (there, writable, with room), its permissions, its lock and its
SQLite connection (WAL, synchronous=FULL: a commit is on disk when it returns).

One journal, one daemon: the journal is locked (``<path>.lock``, flock) while open; a second instance
refuses to start and names the first one's PID. The journal and its lock are created 0600 (0640 in a
setgid folder, whose group is then the journal's readers).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import stat
from pathlib import Path

from seizurewatch.errors import ConfigError

log = logging.getLogger("seizurewatch.alarms.outbox")

MIN_FREE_BYTES = 1 << 20  # refuse to start with less than 1 MiB free next to the journal


class JournalFile:
    """The file at ``path`` (``":memory:"``: none; nothing to check or lock)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock_fd: int | None = None

    @property
    def in_memory(self) -> bool:
        return self.path == ":memory:"

    def check_folder(self) -> None:
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

    def _file_mode(self) -> int:
        folder = Path(self.path).parent
        return 0o640 if folder.stat().st_mode & stat.S_ISGID else 0o600

    def create_private(self) -> None:
        """Create the file (empty: SQLite takes an empty file for an empty database) readable by the
        daemon only, or tighten an existing one that others can read."""
        path, mode = self.path, self._file_mode()
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

    def lock(self) -> None:
        """Hold an exclusive flock on ``<path>.lock`` (released by the kernel if we die); a second
        instance gets a ConfigError naming the first one's PID."""
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

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock; the file stays (removing it would race a newcomer)
            self._lock_fd = None

    def holder(self) -> int | None:
        """The PID of the seizurewatch holding the lock (-1 if it cannot be read), None if it is free."""
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

    def connect(self) -> sqlite3.Connection:
        """A writing connection; a full disk or a read-only file fails here, at start, not at the first alarm."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE IF NOT EXISTS probe (x INTEGER)")
            db.execute("DROP TABLE probe")
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def check_integrity(db: sqlite3.Connection) -> None:
        row = db.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")

    def move_aside(self, dest: str) -> None:
        """Move the journal and its WAL files to ``dest`` (a corrupt journal, kept for forensics)."""
        if self.in_memory:
            return
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, dest + suffix)
