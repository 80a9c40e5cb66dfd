"""The cache's file: one SQLite database in WAL mode, shared safely by threads and processes.

Each thread of each process has its own connection (SQLite connections must not cross threads or a
``fork``); WAL lets readers go on while one writer writes, and a busy timeout queues writers. A file that
is not a database, or is damaged, is reported (a `RuntimeWarning` and a log record on ``azvision``),
moved aside to ``PATH.corrupt`` and started afresh; a locked or unwritable file makes the cache miss or
skip a write, with a warning: the cache never fails a classification.

Example:
    >>> import tempfile, os
    >>> store = CacheStore(os.path.join(tempfile.mkdtemp(), "c.sqlite"))
    >>> store.put("k", "v"); store.get("k"), len(store)
    ('v', 1)
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["CacheStore"]

T = TypeVar("T")
_log = logging.getLogger("azvision")
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    created REAL NOT NULL,
    used REAL NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_used ON answers (used);
"""


class CacheStore:
    """Keys to JSON texts in one SQLite file, with an optional size (entries) and age (seconds) limit.

    ``max_entries``: past it, the least recently used entries go. ``max_age``: older entries are misses
    (and deleted). ``clock`` gives wall-clock seconds (injectable for tests).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_entries: int | None = None,
        max_age: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path).expanduser()
        self.max_entries = max_entries
        self.max_age = max_age
        self._clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()
        self._generation = 0
        self._connections: list[sqlite3.Connection] = []
        self._checked = -1  # the generation whose file was checked (schema, WAL)
        #: How many times a damaged file was moved aside and started afresh.
        self.rebuilds = 0
        self._run(lambda db: None)  # create (or check) the file now, not on the first image

    # -- connections ------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        cached = getattr(self._local, "conn", None)
        if cached is not None and cached[0] == os.getpid() and cached[1] == self._generation:
            return cached[2]  # type: ignore[no-any-return]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            with self._lock:
                if self._checked != self._generation:  # once per file: WAL mode is kept in the file
                    self._check(db)
                    self._checked = self._generation
        except sqlite3.Error:
            db.close()
            raise
        with self._lock:
            self._connections.append(db)
        self._local.conn = (os.getpid(), self._generation, db)
        return db

    @staticmethod
    def _check(db: sqlite3.Connection) -> None:
        """WAL mode, the schema, its version: a file of another kind raises `sqlite3.DatabaseError`."""
        db.execute("PRAGMA journal_mode=WAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"cache schema version {version}, expected {_SCHEMA_VERSION}")
        db.executescript(_SCHEMA)
        if version == 0:
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    def _run(self, operation: Callable[[sqlite3.Connection], T], default: T | None = None) -> T | None:
        """``operation`` on this thread's connection; a damaged file is rebuilt once, a busy one skipped."""
        for attempt in (1, 2):
            generation = self._generation
            try:
                return operation(self._connection())
            except sqlite3.OperationalError as exc:
                if not _damaged(exc) or attempt == 2:
                    _warn(f"the cache {self.path} is not usable right now ({exc}); going on without it")
                    return default
                self._rebuild(exc, generation)
            except sqlite3.DatabaseError as exc:
                if attempt == 2:
                    _warn(f"the cache {self.path} is still unusable after a rebuild ({exc})")
                    return default
                self._rebuild(exc, generation)
        return default  # pragma: no cover

    def _rebuild(self, error: BaseException, generation: int) -> None:
        with self._lock:
            if self._generation != generation:
                return  # another thread rebuilt it meanwhile
            for db in self._connections:
                db.close()
            self._connections.clear()
            aside = self.path.with_name(self.path.name + ".corrupt")
            _warn(f"the cache file {self.path} is damaged ({error}); moved it to {aside} and started afresh")
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.remove(f"{self.path}{suffix}")
            self._generation += 1
            self.rebuilds += 1

    # -- entries ----------------------------------------------------------------------------------
    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or ``None`` (missing, or older than ``max_age``)."""
        now = self._clock()

        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT created, value FROM answers WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            if self.max_age is not None and now - row[0] > self.max_age:
                db.execute("DELETE FROM answers WHERE key = ?", (key,))
                return None
            if self.max_entries is not None:
                db.execute("UPDATE answers SET used = ? WHERE key = ?", (now, key))
            return str(row[1])

        return self._run(read)

    def put(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``; past ``max_entries``, the least recently used entries go."""
        now = self._clock()

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)", (key, now, now, value))
            if self.max_entries is not None:
                db.execute(
                    "DELETE FROM answers WHERE key IN "
                    "(SELECT key FROM answers ORDER BY used DESC LIMIT -1 OFFSET ?)",
                    (self.max_entries,),
                )

        self._run(write)

    def __len__(self) -> int:
        count = self._run(lambda db: int(db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]))
        return count or 0

    def clear(self) -> None:
        """Delete every entry."""
        self._run(lambda db: db.execute("DELETE FROM answers"))

    def close(self) -> None:
        """Close this process's connections (the file stays)."""
        with self._lock:
            for db in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            self._connections.clear()
            self._generation += 1


def _damaged(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "malformed" in text or "not a database" in text or "disk image" in text


def _warn(message: str) -> None:
    _log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=4)
