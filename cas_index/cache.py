"""The per-platform-folder cache that makes indexing incremental.

`<platform>/.cache/cas-index.sqlite` remembers, for every package file name, the size and
mtime (ns) it had when it was read and what reading it gave: the repodata record and the
channeldata facts, or the reason it was refused. A file whose size and mtime are unchanged
is never reopened. A `meta` table keeps the channeldata entries the last run published; what
the "nothing changed" check needs is in a small state file beside it (state.py), so such
a run never opens the database.

The cache is disposable: a damaged or outdated database is set aside and rebuilt by
re-reading the packages. A full disk is not damage: the database is kept and the error
goes up (`is_full`).
"""

from __future__ import annotations

import os

from .atomic import remove_if_present

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (warm start-up)
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable
    from pathlib import Path
    from typing import Any

CACHE_DIR = ".cache"
CACHE_FILE = "cas-index.sqlite"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    fn TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    record TEXT,   -- JSON repodata record, NULL when the file was refused
    facts TEXT,    -- JSON channeldata facts
    error TEXT     -- why the file was refused
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class CachedFile:
    """One row of `files` (a plain class: dataclasses costs a warm run ~8 ms to import)."""

    __slots__ = ("error", "facts", "mtime_ns", "record", "size")

    def __init__(self, size: int, mtime_ns: int, record: str | None, facts: str | None,
                 error: str | None):
        self.size, self.mtime_ns, self.record = size, mtime_ns, record
        self.facts, self.error = facts, error  # record: JSON text; error: why refused


class SubdirCache:
    """The cache of one platform folder. Use as a context manager; writes are committed on
    a clean exit only, so an interrupted run leaves the previous state."""

    def __init__(self, folder: str | Path):
        self.path = os.path.join(os.fspath(folder), CACHE_DIR, CACHE_FILE)
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> SubdirCache:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(commit=exc_type is None)

    def open(self) -> None:
        """Open the database (once: a second call does nothing)."""
        if self._db is not None:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            self._db = self._connect()
        except _sqlite3().DatabaseError as exc:
            if is_full(exc):
                raise
            # Not a database we can use (damaged, or from a future version): start afresh.
            remove_if_present(self.path)
            self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        sqlite3 = _sqlite3()
        # One thread at a time uses a connection, but not always the one that opened it (folders
        # are published from a thread pool).
        db = sqlite3.connect(self.path, isolation_level="DEFERRED", check_same_thread=False)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            db.execute("SELECT count(*) FROM files").fetchone()  # damage shows up here
            if row is None:
                db.execute("DELETE FROM files")
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                db.commit()
            elif row[0] != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"cache schema {row[0]}")
        except BaseException:
            db.close()
            raise
        return db

    def close(self, commit: bool = True) -> None:
        if self._db is not None:
            if commit:
                self._db.commit()
            else:
                self._db.rollback()
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("cache is not open")
        return self._db

    # ---------------------------------------------------------------- files
    def files(self) -> dict[str, CachedFile]:
        """Every cached file name with what was read from it."""
        rows = self.db.execute("SELECT fn, size, mtime_ns, record, facts, error FROM files")
        return {fn: CachedFile(*rest) for fn, *rest in rows}

    def store(self, rows: Iterable[tuple[str, int, int, str | None, str | None, str | None]]
              ) -> None:
        """Insert or replace (fn, size, mtime_ns, record, facts, error) rows."""
        self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)

    def forget(self, names: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM files WHERE fn = ?", ((fn,) for fn in names))

    # ---------------------------------------------------------------- meta
    def get_meta(self, key: str) -> Any:
        import json

        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        import json

        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        (key, json.dumps(value, sort_keys=True)))


def _sqlite3():
    """The sqlite3 module, imported on first use: a run where nothing changed never opens
    a cache (state.py), and sqlite3 (with datetime) is a tenth of such a run's imports."""
    import sqlite3

    return sqlite3


def sqlite_error() -> type[Exception]:
    """sqlite3.Error, for an `except` clause (evaluated only when something is raised)."""
    return _sqlite3().Error


def is_full(exc: sqlite3.Error) -> bool:
    """Whether sqlite failed because the disk (or quota) is full: SQLITE_FULL."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == _sqlite3().SQLITE_FULL
    return "database or disk is full" in str(exc)
