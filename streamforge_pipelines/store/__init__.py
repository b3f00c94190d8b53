"""The StreamForge store: every dataset, task records, the ledger, graph snapshots and the model
registry behind one interface.

:func:`open_store` picks the adapter from configuration: ArangoDB when a URL is given, else the
embedded SQLite file. Code that uses the store depends only on :class:`Store`; dataset calls take the
dataset's :class:`~streamforge_pipelines.datasets.DatasetSpec` (see :mod:`.base`).
``ArangoStore`` is imported lazily so that the embedded path does not load the ArangoDB driver.

Rooms: :mod:`.base` (the interface), :mod:`.documents` (a spec's documents: checks, layout),
:mod:`.records` (task, ledger and model records), :mod:`.names` and :mod:`.errors`; the adapters
:mod:`.sqlite` and :mod:`.arango`, each split into a connection, a datasets and a records part.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Store
from .errors import InvalidNameError, StoreError, TaskNotFound
from .names import LEDGER_COLLECTION, validate_collection_name
from .records import TASK_FIELDS, TASK_STATUSES, LedgerRecord, ModelRecord, TaskRecord
from .sqlite import SqliteStore

if TYPE_CHECKING:
    from ..settings import Settings
    from .arango import ArangoStore

__all__ = [
    "LEDGER_COLLECTION",
    "TASK_FIELDS",
    "TASK_STATUSES",
    "ArangoStore",
    "InvalidNameError",
    "LedgerRecord",
    "ModelRecord",
    "SqliteStore",
    "Store",
    "StoreError",
    "TaskNotFound",
    "TaskRecord",
    "open_store",
    "store_from_settings",
    "validate_collection_name",
]


def open_store(
    *,
    arango_url: str | None,
    sqlite_path: str | Path,
    arango_db: str = "streamforge",
    arango_username: str | None = None,
    arango_password: str | None = None,
) -> Store:
    """Open the configured store: :class:`ArangoStore` when ``arango_url`` is set, else SQLite."""
    if arango_url:
        from .arango import ArangoStore

        return ArangoStore(arango_url, db_name=arango_db, username=arango_username, password=arango_password)
    return SqliteStore(sqlite_path)


def store_from_settings(settings: Settings) -> Store:
    """The store the settings describe (``ARANGO_*``, else SQLite under ``STREAMFORGE_DATA_DIR``)."""
    if not settings.arango_url:
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    return open_store(
        arango_url=settings.arango_url,
        sqlite_path=settings.sqlite_path,
        arango_db=settings.arango_db,
        arango_username=settings.arango_username,
        arango_password=settings.arango_password,
    )


def __getattr__(name: str) -> Any:
    if name == "ArangoStore":
        from .arango import ArangoStore

        return ArangoStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
