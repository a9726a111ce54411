"""The store's sqlite index: which blobs exist, their names, times and sizes (rkt §3.2).

One connection per ``Index``; WAL so readers never wait for the writer; writes run in
``BEGIN IMMEDIATE`` transactions, and a busy timeout makes concurrent rkt processes queue
instead of failing. Times are UNIX seconds (float).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StoreError
from .lock import makedirs
from .perms import Role, apply_fd, current

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS version (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS aciinfo (blobkey TEXT PRIMARY KEY, name TEXT NOT NULL,"
    " importtime REAL NOT NULL, lastused REAL NOT NULL, latest INTEGER NOT NULL DEFAULT 0,"
    " size INTEGER NOT NULL DEFAULT 0, treestoresize INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS aciinfo_name ON aciinfo (name)",
    "CREATE TABLE IF NOT EXISTS remote (aciurl TEXT PRIMARY KEY, sigurl TEXT, etag TEXT,"
    " blobkey TEXT, cachemaxage INTEGER, downloadtime REAL)",
)
_INHERITED: list[sqlite3.Connection] = []
_ACI_COLS = "blobkey, name, importtime, lastused, latest, size, treestoresize"
_REMOTE_COLS = "aciurl, sigurl, etag, blobkey, cachemaxage, downloadtime"


@dataclass(frozen=True)
class AciRow:
    key: str
    name: str
    import_time: float
    last_used: float
    latest: bool
    size: int
    tree_size: int


@dataclass(frozen=True)
class Remote:
    """Where a blob was downloaded from, for HTTP caching (``rkt fetch`` of URLs)."""

    aci_url: str
    sig_url: str
    etag: str
    key: str
    cache_max_age: int
    download_time: float


def _remote(r: Sequence[Any]) -> Remote:
    url, sig, etag, key, age, dl = r
    return Remote(str(url), str(sig or ""), str(etag or ""), str(key or ""), int(age or 0),
                  float(dl or 0.0))


def _row(r: Sequence[Any]) -> AciRow:
    key, name, it, lu, latest, size, tsize = r
    return AciRow(str(key), str(name), float(it), float(lu), bool(latest), int(size or 0),
                  int(tsize or 0))


LOW_SPACE = 1 << 20  # bytes: below this, a failed write is taken for a full disk


def explain_sqlite_error(name: str, text: str, free: int | None) -> tuple[str, str | None]:
    """(message, hint) naming the real cause of a sqlite error: a full disk reads as a "disk
    I/O error" to sqlite when the write itself failed with ENOSPC."""
    if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and free is not None
                                 and free < LOW_SPACE):
        return "no space left on device", "free some space (`rkt image gc`, `rkt gc`), then retry"
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
        return text, "check the permissions of the store (run as root or a member of group rkt)"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return text, "another rkt process holds the store too long; retry"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return text, "the image index is damaged: move it away and fetch the images again"
    return text, "retry"


class Index:
    def __init__(self, path: Path, ensure_parent: Callable[[], None] | None = None) -> None:
        """``ensure_parent`` makes the database's directory (the store gives its directories
        their roles' modes); by default it is made like any store directory."""
        self.path = path
        self._ensure_parent = ensure_parent
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    # --- connection ---------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid != os.getpid():
            # A forked child must not use (or close: POSIX locks are per process) the
            # parent's connection: keep it alive, unused, and open its own.
            _INHERITED.append(self._conn)
            self._conn = None
        if self._conn is None:
            self._pid = os.getpid()
            if self._ensure_parent is not None:
                self._ensure_parent()
            else:
                makedirs(self.path.parent)
            self._create_file()
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a commit survives a crash of the process; losing the very last
                # transactions to a power cut leaves blobs without rows, never the reverse.
                conn.execute("PRAGMA synchronous=NORMAL")
                self._init_schema(conn)
            except sqlite3.Error as e:
                raise self._error(e) from e
            self._conn = conn
        return self._conn

    def _create_file(self) -> None:
        """Create the database file with the store's shared perms before sqlite opens it:
        sqlite gives its -wal and -shm files the mode (and, as root, the owner) of the database,
        so a database writable by group rkt stays usable by every member and root alike."""
        for p in (self.path, self.path.with_name(self.path.name + "-wal"),
                  self.path.with_name(self.path.name + "-shm")):
            if p.is_symlink():  # the directory is group-writable: do not write through links
                raise StoreError(f"image store database {p} is a symbolic link; refusing to "
                                 "open it", hint="remove the link")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                         | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return
        except OSError as e:
            raise StoreError(f"cannot create the image store database {self.path}: "
                             f"{e.strerror}", hint="run as root or as a member of group rkt") \
                from e
        try:
            apply_fd(fd, current(Role.SHARED_FILE))
        finally:
            os.close(fd)

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA:
                conn.execute(stmt)
            row = conn.execute("SELECT max(version) FROM version").fetchone()
            if row[0] is None:
                conn.execute("INSERT INTO version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise StoreError(f"image store database {self.path} has schema version "
                                 f"{row[0]}, newer than this rkt supports ({SCHEMA_VERSION})",
                                 hint="use a newer rkt")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _error(self, e: sqlite3.Error) -> StoreError:
        try:
            st = os.statvfs(self.path.parent)
            # root may write into the blocks reserved for it
            free: int | None = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
        except OSError:
            free = None
        what, hint = explain_sqlite_error(getattr(e, "sqlite_errorname", ""), str(e), free)
        return StoreError(f"image store database {self.path}: {what}", hint=hint)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # sqlite rolls back by itself on some errors
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise self._error(e) from e

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db().execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise self._error(e) from e

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- aciinfo ------------------------------------------------------------------------
    def add(self, key: str, name: str, *, size: int, latest: bool,
            now: float | None = None) -> bool:
        """Insert a row; an existing row is kept as it is (only ``latest`` may be raised).

        Returns True when a new row was inserted.
        """
        t = time.time() if now is None else now
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO aciinfo (blobkey, name, importtime, lastused, latest,"
                " size, treestoresize) VALUES (?, ?, ?, ?, ?, ?, 0)",
                (key, name, t, t, int(latest), size))
            inserted = cur.rowcount == 1
            if not inserted and latest:
                db.execute("UPDATE aciinfo SET latest = 1 WHERE blobkey = ?", (key,))
        return inserted

    def get(self, key: str) -> AciRow | None:
        rows = self._query(f"SELECT {_ACI_COLS} FROM aciinfo WHERE blobkey = ?", (key,))
        return _row(rows[0]) if rows else None

    def keys_with_prefix(self, prefix: str) -> list[str]:
        # Keys are "sha512-" + hex and callers pass validated prefixes: no LIKE wildcards.
        rows = self._query("SELECT blobkey FROM aciinfo WHERE substr(blobkey, 1, ?) = ?",
                           (len(prefix), prefix))
        return [str(r[0]) for r in rows]

    def with_name(self, name: str) -> list[AciRow]:
        return [_row(r) for r in
                self._query(f"SELECT {_ACI_COLS} FROM aciinfo WHERE name = ?", (name,))]

    def all(self) -> list[AciRow]:
        return [_row(r) for r in
                self._query(f"SELECT {_ACI_COLS} FROM aciinfo ORDER BY importtime")]

    def touch(self, keys: Sequence[str], now: float | None = None) -> None:
        t = time.time() if now is None else now
        with self._tx() as db:
            db.executemany("UPDATE aciinfo SET lastused = ? WHERE blobkey = ?",
                           [(t, k) for k in keys])

    def set_tree_size(self, key: str, size: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE aciinfo SET treestoresize = ? WHERE blobkey = ?", (size, key))

    def remove(self, key: str) -> tuple[AciRow | None, list[Remote]]:
        """Drop an image's row and its remote cache entries in one transaction (rkt image rm);
        what was removed, for :meth:`restore`."""
        with self._tx() as db:
            rows = db.execute(f"SELECT {_ACI_COLS} FROM aciinfo WHERE blobkey = ?",
                              (key,)).fetchall()
            remotes = [_remote(r) for r in db.execute(
                f"SELECT {_REMOTE_COLS} FROM remote WHERE blobkey = ?", (key,)).fetchall()]
            db.execute("DELETE FROM aciinfo WHERE blobkey = ?", (key,))
            db.execute("DELETE FROM remote WHERE blobkey = ?", (key,))
        return (_row(rows[0]) if rows else None), remotes

    def restore(self, row: AciRow, remotes: Sequence[Remote]) -> None:
        """Put back what :meth:`remove` returned (a removal whose files could not go)."""
        with self._tx() as db:
            db.execute(f"INSERT OR REPLACE INTO aciinfo ({_ACI_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (row.key, row.name, row.import_time, row.last_used, int(row.latest),
                        row.size, row.tree_size))
            db.executemany(f"INSERT OR REPLACE INTO remote ({_REMOTE_COLS})"
                           " VALUES (?, ?, ?, ?, ?, ?)",
                           [(r.aci_url, r.sig_url, r.etag, r.key, r.cache_max_age,
                             r.download_time) for r in remotes])

    # --- remote -------------------------------------------------------------------------
    def get_remote(self, aci_url: str) -> Remote | None:
        rows = self._query(f"SELECT {_REMOTE_COLS} FROM remote WHERE aciurl = ?", (aci_url,))
        return _remote(rows[0]) if rows else None

    def put_remote(self, r: Remote) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO remote (aciurl, sigurl, etag, blobkey,"
                       " cachemaxage, downloadtime) VALUES (?, ?, ?, ?, ?, ?)",
                       (r.aci_url, r.sig_url, r.etag, r.key, r.cache_max_age,
                        r.download_time))
