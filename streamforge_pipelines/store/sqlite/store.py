"""The embedded store: one SQLite file in WAL mode (standard library ``sqlite3``), the default when no
ArangoDB URL is configured, with the same semantics as the ArangoDB adapter.

Its parts: :mod:`.connection` (the file, its lock, transactions, durability and thread safety),
:mod:`.datasets` (one table per dataset spec, DDL and statements from the spec) and :mod:`.records`
(task records, the ledger, graph snapshots, the model registry).
"""

from __future__ import annotations

from .datasets import SqliteDatasets
from .records import SqliteRecords


class SqliteStore(SqliteDatasets, SqliteRecords):
    """The embedded store in one SQLite file (created with its parent directory if missing):
    ``SqliteStore(path, busy_timeout_s=30.0)``."""
