"""The SQLite adapter's plumbing: one connection to one file, its lock and its transactions.

Durability: ``journal_mode=WAL`` with ``synchronous=NORMAL`` — a committed transaction survives a
crash of the process (the connector's failure model); after a power loss the last transactions
before the crash may roll back (SQLite's documented WAL/NORMAL trade-off).

Thread safety: one connection opened with ``check_same_thread=False`` and serialised by a lock,
so the asyncio connector can call it from :func:`asyncio.to_thread` workers. Other processes may
use the same file (WAL plus a busy timeout); write transactions start with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import StoreError

#: Symbols per ``IN (...)`` list; keeps far below SQLite's bound-parameter limit.
SYMBOL_CHUNK = 500


def chunks(items: Sequence[str], size: int = SYMBOL_CHUNK) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def run_ddl(conn: sqlite3.Connection, statements: Sequence[str], what: str) -> None:
    """Run DDL statements one by one (``executescript`` would COMMIT an open transaction)."""
    try:
        for statement in statements:
            conn.execute(statement)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot create {what}: {exc}") from exc


class SqliteConnection:
    """One SQLite file in WAL mode (created with its parent directory if missing); the base of the
    adapter's dataset and record parts."""

    #: Scripts run when the file opens (the record tables; dataset tables are made on first use).
    schema: tuple[str, ...] = ()

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        #: Dataset tables known to exist in the file (created on first use on this connection).
        self._tables: set[str] = set()
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store at {path}: {exc}") from exc
        try:
            # Larger pages make bulk upserts ~15% faster; only takes effect on a new, empty file
            # and must precede the switch to WAL.
            conn.execute("PRAGMA page_size=16384")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for script in self.schema:
                conn.executescript(script)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open SQLite store at {path}: {exc}") from exc
        self._conn = conn

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is closed")
        return self._conn

    @contextmanager
    def _write(self, before: Callable[[], object] | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) under the lock.

        ``before`` runs first, under the lock but outside the transaction (a dataset's table is
        created there, so a rolled-back batch cannot roll back the table the cache believes exists).
        """
        with self._lock:
            conn = self._connection()
            if before is not None:
                before()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    # SQLite rolls back by itself on some errors (database or disk full, I/O):
                    # a ROLLBACK then would fail and hide the error that says what happened.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite write failed: {exc}") from exc

    @contextmanager
    def _read(self, before: Callable[[], object] | None = None) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            if before is not None:
                before()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite read failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None
