"""The ArangoDB adapter's plumbing: the client, the database, collections and indexes created on
first use, AQL queries and bulk imports, and driver errors turned into :class:`StoreError`.

Every value reaches AQL as a bind variable (``@name``; collections as ``@@col``); collection and
field names are validated (:mod:`streamforge_pipelines.store.names`) first.

Durability: a write returns after ArangoDB has committed it. ``sync=True`` additionally waits for
the write to be synced to disk (``waitForSync``), like ``synchronous=FULL`` in SQLite.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from arango import ArangoClient
from arango.collection import StandardCollection
from arango.database import StandardDatabase
from arango.exceptions import ArangoError, ArangoServerError, CollectionCreateError, DatabaseCreateError

from ...settings import redact_url
from ..errors import StoreError
from ..names import validate_database_name

# ArangoDB error numbers (arango.errno): name already used.
ERR_DUPLICATE_NAME = 1207
#: Documents per cursor round trip for reads.
_CURSOR_BATCH = 10_000


def persistent_index(fields: Sequence[str], name: str | None = None) -> dict[str, Any]:
    """A non-unique persistent index on ``fields`` (named ``idx_<field>_<field>...`` by default)."""
    return {
        "type": "persistent",
        "fields": list(fields),
        "unique": False,
        "sparse": False,
        "name": name or "idx_" + "_".join(fields),
    }


@contextmanager
def arango_errors(what: str) -> Iterator[None]:
    """Turn driver/server errors into :class:`StoreError` (with the original as the cause)."""
    try:
        yield
    except ArangoError as exc:
        raise StoreError(f"ArangoDB {what} failed: {exc}") from exc


class ArangoConnection:
    """One ArangoDB database (``url`` may list several coordinators, comma-separated); the base of
    the adapter's dataset and record parts."""

    #: (collection, indexes) created when the database opens (the task records').
    opened_with: tuple[tuple[str, tuple[Mapping[str, Any], ...]], ...] = ()

    def __init__(
        self,
        url: str,
        *,
        db_name: str = "streamforge",
        username: str | None = None,
        password: str | None = None,
        create_database: bool = True,
        sync: bool = False,
        request_timeout: float = 60.0,
    ) -> None:
        validate_database_name(db_name)
        self.url = url
        self.db_name = db_name
        self._sync: bool | None = True if sync else None
        self._ddl_lock = threading.Lock()
        self._ready: set[str] = set()
        self._closed = False
        user = username or "root"
        secret = password or ""
        self._client = ArangoClient(hosts=url, request_timeout=request_timeout)
        try:
            if create_database:
                self._create_database(user, secret)
            self._db: StandardDatabase = self._client.db(db_name, username=user, password=secret, verify=True)
            for name, indexes in self.opened_with:
                self._ensure_collection(name, indexes=indexes)
        except ArangoError as exc:
            self._client.close()
            where = redact_url(url)
            raise StoreError(f"cannot open ArangoDB database {db_name!r} at {where}: {exc}") from exc
        except OSError as exc:  # requests' connection errors: nothing answers at the URL
            self._client.close()
            raise StoreError(f"ArangoDB at {redact_url(url)} is not answering ({_os_reason(exc)})") from None

    def __repr__(self) -> str:
        # No password in logs: the URL is redacted.
        return f"{type(self).__name__}({redact_url(self.url)!r}, db_name={self.db_name!r})"

    # -- plumbing ------------------------------------------------------------------------------

    def _create_database(self, username: str, password: str) -> None:
        sys_db = self._client.db("_system", username=username, password=password)
        try:
            exists = sys_db.has_database(self.db_name)
        except ArangoServerError:
            # Not allowed to list databases (no access to _system): the database must exist
            # already; connecting to it below says so clearly if it does not.
            return
        if not exists:
            try:
                sys_db.create_database(self.db_name)
            except DatabaseCreateError as exc:
                if exc.error_code != ERR_DUPLICATE_NAME:  # another process won the race
                    raise

    def _database(self) -> StandardDatabase:
        if self._closed:
            raise StoreError("store is closed")
        return self._db

    def _ensure_collection(
        self, name: str, *, edge: bool = False, indexes: Sequence[Mapping[str, Any]] = ()
    ) -> StandardCollection:
        db = self._database()
        if name not in self._ready:
            with self._ddl_lock:
                if name not in self._ready:
                    if not db.has_collection(name):
                        try:
                            db.create_collection(name, edge=edge)
                        except CollectionCreateError as exc:
                            if exc.error_code != ERR_DUPLICATE_NAME:
                                raise
                    collection = db.collection(name)
                    for spec in indexes:
                        self._add_index(collection, spec)
                    self._ready.add(name)
        return db.collection(name)

    @staticmethod
    def _add_index(collection: StandardCollection, spec: Mapping[str, Any]) -> None:
        """Create a persistent index (idempotent server-side: an identical index is returned)."""
        if hasattr(collection, "add_index"):  # python-arango >= 8
            collection.add_index(dict(spec))
        else:  # pragma: no cover - older drivers
            collection.add_persistent_index(
                fields=list(spec["fields"]), unique=spec["unique"], sparse=spec["sparse"], name=spec["name"]
            )

    def _query(self, aql: str, bind_vars: dict[str, Any]) -> list[Any]:
        cursor = self._database().aql.execute(aql, bind_vars=bind_vars, batch_size=_CURSOR_BATCH)
        return list(cursor)

    def _import(self, collection: StandardCollection, docs: list[dict[str, Any]]) -> None:
        """Bulk import with ``onDuplicate=update``; all-or-nothing (``complete=true``)."""
        if not docs:
            return
        result = collection.import_bulk(
            docs, halt_on_error=True, details=True, on_duplicate="update", sync=self._sync
        )
        if not isinstance(result, dict) or result.get("errors", 0):
            raise StoreError(f"bulk import into {collection.name!r} reported errors: {result!r}")

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()


def _os_reason(exc: OSError) -> str:
    """The gist of a connection error (``[Errno 111] Connection refused``), not urllib3's whole story."""
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
    return found.group(0) if found else f"{type(exc).__name__}: {str(exc)[:120]}"
