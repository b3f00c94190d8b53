"""The StreamForge store: candles, task records and graph snapshots behind one interface.

:func:`open_store` picks the adapter from configuration: ArangoDB when a URL is given, else the
embedded SQLite file. Code that uses the store depends only on :class:`Store`.
``ArangoStore`` is imported lazily so that the embedded path does not load the ArangoDB driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamforge_pipelines.store.base import (
    CANDLE_FIELDS,
    DEFAULT_CANDLE_COLLECTION,
    TASK_FIELDS,
    TASK_STATUSES,
    InvalidNameError,
    Store,
    StoreError,
    TaskNotFound,
    TaskRecord,
    candle_key,
    validate_collection_name,
)
from streamforge_pipelines.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from streamforge_pipelines.settings import Settings
    from streamforge_pipelines.store.arango import ArangoStore

__all__ = [
    "CANDLE_FIELDS",
    "DEFAULT_CANDLE_COLLECTION",
    "TASK_FIELDS",
    "TASK_STATUSES",
    "ArangoStore",
    "InvalidNameError",
    "SqliteStore",
    "Store",
    "StoreError",
    "TaskNotFound",
    "TaskRecord",
    "candle_key",
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
        from streamforge_pipelines.store.arango import ArangoStore

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
        from streamforge_pipelines.store.arango import ArangoStore

        return ArangoStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
