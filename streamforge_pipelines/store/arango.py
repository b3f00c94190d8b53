"""Production store: ArangoDB through python-arango (8.x).

Layout in the configured database (created on first use when the account may):

* one document collection per candle dataset (``candles`` by default), document ``_key`` = the
  deterministic candle key, a persistent index on ``(symbol, interval, open_time)``; batches go
  through the bulk import API with ``onDuplicate=update`` (one HTTP request per batch,
  all-or-nothing with ``complete=true``);
* ``trades``: aggregate trades and trades, ``_key`` = ``SYMBOL:agg:<id>`` / ``SYMBOL:trade:<id>``,
  persistent indexes on ``(symbol, kind, id)`` and ``(symbol, kind, time)``, bulk-imported like candles;
* ``tasks``: task records, ``_key`` = ``queue_id``, persistent indexes on status, run id and
  partition key;
* ``ledger``: the completeness ledger, ``_key`` = ``SYMBOL:interval:YYYY-MM-DD``, a persistent
  index on ``(interval, day)``;
* ``models``: the model registry, ``_key`` = ``<name>:<version>``, a persistent index on
  ``(name, version)``;
* the named graph ``correlations``: vertex collection ``assets`` (``_key`` = asset symbol), edge
  collection ``relations`` (``_from``/``_to`` = ``assets/<symbol>``, stamped with ``snapshot_id``
  and ``weight``, other attributes under ``attrs``); per-snapshot node attributes live in the
  document collection ``asset_snapshots`` so that the asset vertices stay one per symbol.

Every value reaches AQL as a bind variable (``@name``; collections as ``@@col``); collection names
are validated by :func:`~streamforge_pipelines.store.base.validate_collection_name` first.

Durability: a write returns after ArangoDB has committed it. ``sync=True`` additionally waits for
the write to be synced to disk (``waitForSync``), like ``synchronous=FULL`` in SQLite.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from arango import ArangoClient
from arango.collection import StandardCollection
from arango.database import StandardDatabase
from arango.exceptions import (
    ArangoError,
    ArangoServerError,
    CollectionCreateError,
    DatabaseCreateError,
    DocumentUpdateError,
    GraphCreateError,
)

from streamforge_pipelines.settings import redact_url
from streamforge_pipelines.store.base import (
    CANDLE_FIELDS,
    DEFAULT_CANDLE_COLLECTION,
    DEFAULT_TRADES_COLLECTION,
    LEDGER_COLLECTION,
    MODELS_COLLECTION,
    TASKS_COLLECTION,
    TRADE_FIELDS,
    LedgerRecord,
    ModelRecord,
    Store,
    StoreError,
    TaskNotFound,
    TaskRecord,
    candle_rows,
    is_valid_key,
    prepare_task_update,
    split_edge,
    split_node,
    task_document,
    trade_rows,
    validate_collection_name,
    validate_database_name,
    validate_key,
)

GRAPH_NAME = "correlations"
ASSETS_COLLECTION = "assets"
RELATIONS_COLLECTION = "relations"
ASSET_SNAPSHOTS_COLLECTION = "asset_snapshots"

# ArangoDB error numbers (arango.errno): name already used, document not found, graph exists.
_ERR_DUPLICATE_NAME = 1207
_ERR_DOCUMENT_NOT_FOUND = 1202
_ERR_GRAPH_DUPLICATE = 1925

_DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Documents per cursor round trip for reads.
_CURSOR_BATCH = 10_000

_CANDLE_INDEX: dict[str, Any] = {
    "type": "persistent",
    "fields": ["symbol", "interval", "open_time"],
    "unique": False,
    "sparse": False,
    "name": "idx_symbol_interval_open_time",
}
_TASK_INDEXES: tuple[dict[str, Any], ...] = tuple(
    {"type": "persistent", "fields": [f], "unique": False, "sparse": False, "name": f"idx_{f}"}
    for f in ("status", "run_id", "partition_key")
)
_SNAPSHOT_INDEX: dict[str, Any] = {
    "type": "persistent",
    "fields": ["snapshot_id"],
    "unique": False,
    "sparse": False,
    "name": "idx_snapshot_id",
}

# The range filter shared by the candle queries (values are bind variables).
_RANGE_FILTER = "c.interval == @interval AND c.open_time >= @start AND c.open_time < @end"

_READ_AQL = f"""
FOR c IN @@col
  FILTER c.symbol == @symbol AND {_RANGE_FILTER}
  SORT c.open_time, c._key
  RETURN KEEP(c, @fields)
"""
_COUNT_AQL = f"""
FOR c IN @@col
  FILTER c.symbol == @symbol AND {_RANGE_FILTER}
  COLLECT WITH COUNT INTO n
  RETURN n
"""
_COUNTS_BY_DAY_AQL = f"""
FOR c IN @@col
  FILTER c.symbol IN @symbols AND {_RANGE_FILTER}
  COLLECT symbol = c.symbol, day = FLOOR(c.open_time / @day_ms) WITH COUNT INTO n
  RETURN [symbol, day, n]
"""
_DUPLICATES_AQL = f"""
RETURN LENGTH(
  FOR c IN @@col
    FILTER c.symbol IN @symbols AND {_RANGE_FILTER}
    COLLECT symbol = c.symbol, interval = c.interval, open_time = c.open_time WITH COUNT INTO n
    FILTER n > 1
    RETURN 1
)
"""
_OPEN_TIMES_AQL = f"""
FOR c IN @@col
  FILTER c.symbol == @symbol AND {_RANGE_FILTER}
  COLLECT open_time = c.open_time
  SORT open_time
  RETURN open_time
"""
_TRADE_INDEXES: tuple[dict[str, Any], ...] = (
    {
        "type": "persistent",
        "fields": ["symbol", "kind", "id"],
        "unique": False,
        "sparse": False,
        "name": "idx_symbol_kind_id",
    },
    {
        "type": "persistent",
        "fields": ["symbol", "kind", "time"],
        "unique": False,
        "sparse": False,
        "name": "idx_symbol_kind_time",
    },
)
_TRADE_TIME_FILTER = "t.symbol == @symbol AND t.kind == @kind AND t.time >= @start AND t.time < @end"
_READ_TRADES_AQL = f"""
FOR t IN @@col
  FILTER {_TRADE_TIME_FILTER}
  SORT t.id
  RETURN KEEP(t, @fields)
"""
_TRADE_SPAN_AQL = f"""
FOR t IN @@col
  FILTER {_TRADE_TIME_FILTER}
  COLLECT AGGREGATE lo = MIN(t.id), hi = MAX(t.id), n = COUNT(1)
  RETURN [lo, hi, n]
"""
_TRADE_IDS_AQL = """
FOR t IN @@col
  FILTER t.symbol == @symbol AND t.kind == @kind AND t.id >= @first AND t.id < @end
  SORT t.id
  RETURN t.id
"""
_READ_LEDGER_AQL = """
FOR l IN @@col
  FILTER l.symbol IN @symbols AND l.interval == @interval AND l.day >= @first AND l.day <= @last
  FILTER NOT_NULL(l.collection, "candles") == @collection
  SORT l.symbol, l.day
  RETURN l
"""
_LEDGER_INDEX: dict[str, Any] = {
    "type": "persistent",
    "fields": ["interval", "day"],
    "unique": False,
    "sparse": False,
    "name": "idx_interval_day",
}
_MODELS_INDEX: dict[str, Any] = {
    "type": "persistent",
    "fields": ["name", "version"],
    "unique": False,
    "sparse": False,
    "name": "idx_name_version",
}
_LIST_MODELS_AQL = """
FOR m IN @@col
  FILTER @name == null OR m.name == @name
  SORT m.name, m.version
  RETURN m
"""
_REMOVE_SNAPSHOT_AQL = "FOR d IN @@col FILTER d.snapshot_id == @sid REMOVE d IN @@col"
_LIST_SNAPSHOTS_AQL = """
FOR d IN @@col
  FILTER STARTS_WITH(d.snapshot_id, @prefix)
  FILTER @start == null OR d.snapshot_id >= @start
  FILTER @end == null OR d.snapshot_id < @end
  COLLECT sid = d.snapshot_id
  RETURN sid
"""
_READ_NODES_AQL = "FOR n IN @@col FILTER n.snapshot_id == @sid SORT n.key RETURN n"
_READ_EDGES_AQL = "FOR e IN @@col FILTER e.snapshot_id == @sid SORT e.source, e.target, e.seq RETURN e"

#: ``list_tasks`` filters: fixed AQL fragments, the values go in as bind variables.
_TASK_FILTERS = {
    "status": "t.status == @status",
    "run_id": "t.run_id == @run_id",
    "partition_key": "t.partition_key == @partition_key",
}


@contextmanager
def _arango_errors(what: str) -> Iterator[None]:
    """Turn driver/server errors into :class:`StoreError` (with the original as the cause)."""
    try:
        yield
    except ArangoError as exc:
        raise StoreError(f"ArangoDB {what} failed: {exc}") from exc


def _day(day_index: float) -> str:
    return (_EPOCH + timedelta(days=int(day_index))).strftime("%Y-%m-%d")


def _task_from_doc(doc: Mapping[str, Any]) -> TaskRecord:
    return TaskRecord.from_dict(doc)


class ArangoStore(Store):
    """The store in an ArangoDB database (``hosts`` may list several coordinators, comma-separated)."""

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
            self._ensure_collection(TASKS_COLLECTION, indexes=_TASK_INDEXES)
        except ArangoError as exc:
            self._client.close()
            where = redact_url(url)
            raise StoreError(f"cannot open ArangoDB database {db_name!r} at {where}: {exc}") from exc
        except OSError as exc:  # requests' connection errors: nothing answers at the URL
            self._client.close()
            raise StoreError(f"ArangoDB at {redact_url(url)} is not answering ({_os_reason(exc)})") from None

    def __repr__(self) -> str:
        return f"ArangoStore({redact_url(self.url)!r}, db_name={self.db_name!r})"  # no password in logs

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
                if exc.error_code != _ERR_DUPLICATE_NAME:  # another process won the race
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
                            if exc.error_code != _ERR_DUPLICATE_NAME:
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

    def _candles(self, collection: str) -> StandardCollection:
        return self._ensure_collection(validate_collection_name(collection), indexes=(_CANDLE_INDEX,))

    def _ensure_graph(self) -> None:
        """Create the named graph (with ``assets`` and ``relations``) and ``asset_snapshots``."""
        self._ensure_collection(ASSET_SNAPSHOTS_COLLECTION, indexes=(_SNAPSHOT_INDEX,))
        if GRAPH_NAME in self._ready:
            return
        db = self._database()
        with self._ddl_lock:
            if GRAPH_NAME not in self._ready:
                if not db.has_graph(GRAPH_NAME):
                    try:
                        # Creates the vertex and edge collections when they do not exist yet.
                        db.create_graph(
                            GRAPH_NAME,
                            edge_definitions=[
                                {
                                    "edge_collection": RELATIONS_COLLECTION,
                                    "from_vertex_collections": [ASSETS_COLLECTION],
                                    "to_vertex_collections": [ASSETS_COLLECTION],
                                }
                            ],
                        )
                    except GraphCreateError as exc:
                        if exc.error_code != _ERR_GRAPH_DUPLICATE:
                            raise
                self._add_index(db.collection(RELATIONS_COLLECTION), _SNAPSHOT_INDEX)
                self._ready.update({GRAPH_NAME, RELATIONS_COLLECTION, ASSETS_COLLECTION})

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

    # -- candles -------------------------------------------------------------------------------

    def upsert_candles(
        self, docs: Sequence[Mapping[str, Any]], collection: str = DEFAULT_CANDLE_COLLECTION
    ) -> int:
        validate_collection_name(collection)
        rows = candle_rows(docs)
        if not rows:
            return 0
        payload = [{"_key": row[0], **dict(zip(CANDLE_FIELDS, row, strict=True))} for row in rows]
        with _arango_errors(f"upsert into {collection!r}"):
            self._import(self._candles(collection), payload)
        return len(rows)

    def read_candles(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_CANDLE_COLLECTION,
    ) -> list[dict[str, Any]]:
        with _arango_errors(f"read from {collection!r}"):
            self._candles(collection)
            docs = self._query(
                _READ_AQL,
                {
                    "@col": collection,
                    "symbol": symbol,
                    "interval": interval,
                    "start": start_ms,
                    "end": end_ms,
                    "fields": list(CANDLE_FIELDS),
                },
            )
        return [{f: doc[f] for f in CANDLE_FIELDS} for doc in docs]

    def count_candles(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_CANDLE_COLLECTION,
    ) -> int:
        with _arango_errors(f"count in {collection!r}"):
            self._candles(collection)
            result = self._query(
                _COUNT_AQL,
                {
                    "@col": collection,
                    "symbol": symbol,
                    "interval": interval,
                    "start": start_ms,
                    "end": end_ms,
                },
            )
        return int(result[0]) if result else 0

    def candle_counts_by_day(
        self,
        symbols: Sequence[str],
        interval: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_CANDLE_COLLECTION,
    ) -> dict[tuple[str, str], int]:
        unique = sorted(set(symbols))
        if not unique:
            validate_collection_name(collection)
            return {}
        with _arango_errors(f"daily counts in {collection!r}"):
            self._candles(collection)
            rows = self._query(
                _COUNTS_BY_DAY_AQL,
                {
                    "@col": collection,
                    "symbols": unique,
                    "interval": interval,
                    "start": start_ms,
                    "end": end_ms,
                    "day_ms": _DAY_MS,
                },
            )
        return {(symbol, _day(day)): int(n) for symbol, day, n in rows}

    def duplicate_candle_keys(
        self,
        symbols: Sequence[str],
        interval: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_CANDLE_COLLECTION,
    ) -> int:
        unique = sorted(set(symbols))
        if not unique:
            validate_collection_name(collection)
            return 0
        with _arango_errors(f"duplicate check in {collection!r}"):
            self._candles(collection)
            result = self._query(
                _DUPLICATES_AQL,
                {
                    "@col": collection,
                    "symbols": unique,
                    "interval": interval,
                    "start": start_ms,
                    "end": end_ms,
                },
            )
        return int(result[0]) if result else 0

    def candle_open_times(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_CANDLE_COLLECTION,
    ) -> list[int]:
        with _arango_errors(f"open times in {collection!r}"):
            self._candles(collection)
            rows = self._query(
                _OPEN_TIMES_AQL,
                {
                    "@col": collection,
                    "symbol": symbol,
                    "interval": interval,
                    "start": start_ms,
                    "end": end_ms,
                },
            )
        return [int(t) for t in rows]

    # -- trades ----------------------------------------------------------------------------------

    def _trades(self, collection: str) -> StandardCollection:
        return self._ensure_collection(validate_collection_name(collection), indexes=_TRADE_INDEXES)

    def upsert_trades(
        self, docs: Sequence[Mapping[str, Any]], collection: str = DEFAULT_TRADES_COLLECTION
    ) -> int:
        validate_collection_name(collection)
        rows = trade_rows(docs)
        if not rows:
            return 0
        payload = [{"_key": row[0], **dict(zip(TRADE_FIELDS, row, strict=True))} for row in rows]
        with _arango_errors(f"upsert into {collection!r}"):
            self._import(self._trades(collection), payload)
        return len(rows)

    def _trade_query(
        self, aql: str, symbol: str, kind: str, lo: int, hi: int, collection: str, **extra: Any
    ) -> list[Any]:
        with _arango_errors(f"read from {collection!r}"):
            self._trades(collection)
            names = ("first", "end") if "@first" in aql else ("start", "end")
            bind = {"@col": collection, "symbol": symbol, "kind": kind, names[0]: lo, names[1]: hi, **extra}
            return self._query(aql, bind)

    def read_trades(
        self,
        symbol: str,
        kind: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_TRADES_COLLECTION,
    ) -> list[dict[str, Any]]:
        docs = self._trade_query(
            _READ_TRADES_AQL, symbol, kind, start_ms, end_ms, collection, fields=list(TRADE_FIELDS)
        )
        return [{f: doc.get(f) for f in TRADE_FIELDS} for doc in docs]

    def count_trades(
        self,
        symbol: str,
        kind: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_TRADES_COLLECTION,
    ) -> int:
        span = self.trade_id_span(symbol, kind, start_ms, end_ms, collection)
        return 0 if span is None else span[2]

    def trade_id_span(
        self,
        symbol: str,
        kind: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_TRADES_COLLECTION,
    ) -> tuple[int, int, int] | None:
        result = self._trade_query(_TRADE_SPAN_AQL, symbol, kind, start_ms, end_ms, collection)
        if not result or not result[0][2]:
            return None
        lo, hi, n = result[0]
        return int(lo), int(hi), int(n)

    def trade_ids(
        self,
        symbol: str,
        kind: str,
        first_id: int,
        end_id: int,
        collection: str = DEFAULT_TRADES_COLLECTION,
    ) -> list[int]:
        return [int(i) for i in self._trade_query(_TRADE_IDS_AQL, symbol, kind, first_id, end_id, collection)]

    # -- completeness ledger -------------------------------------------------------------------

    def _ledger(self) -> StandardCollection:
        return self._ensure_collection(LEDGER_COLLECTION, indexes=(_LEDGER_INDEX,))

    def put_ledger(self, records: Sequence[LedgerRecord]) -> None:
        docs = []
        for r in records:
            validate_key(r.key, "ledger key")
            docs.append({"_key": r.key, **r.to_dict()})
        if not docs:
            return
        with _arango_errors("put_ledger"):
            collection = self._ledger()
            result = collection.import_bulk(
                docs, halt_on_error=True, details=True, on_duplicate="replace", sync=self._sync
            )
            if not isinstance(result, dict) or result.get("errors", 0):
                raise StoreError(f"bulk import into {LEDGER_COLLECTION!r} reported errors: {result!r}")

    def read_ledger(
        self,
        symbols: Sequence[str],
        interval: str,
        first_day: str,
        last_day: str,
        collection: str = DEFAULT_CANDLE_COLLECTION,
    ) -> list[LedgerRecord]:
        unique = sorted(set(symbols))
        if not unique:
            return []
        with _arango_errors("read_ledger"):
            self._ledger()
            docs = self._query(
                _READ_LEDGER_AQL,
                {
                    "@col": LEDGER_COLLECTION,
                    "symbols": unique,
                    "interval": interval,
                    "first": first_day,
                    "last": last_day,
                    "collection": collection,
                },
            )
        return [LedgerRecord.from_dict(doc) for doc in docs]

    # -- task records --------------------------------------------------------------------------

    def _tasks(self) -> StandardCollection:
        return self._ensure_collection(TASKS_COLLECTION, indexes=_TASK_INDEXES)

    def put_task(self, record: TaskRecord) -> None:
        validate_key(record.queue_id, "queue_id")
        with _arango_errors(f"put_task({record.queue_id!r})"):
            self._tasks().insert(
                {"_key": record.queue_id, **task_document(record)}, overwrite_mode="replace", sync=self._sync
            )

    def get_task(self, queue_id: str) -> TaskRecord | None:
        if not is_valid_key(queue_id):  # could never have been stored
            return None
        with _arango_errors(f"get_task({queue_id!r})"):
            doc = self._tasks().get(queue_id)
        return None if doc is None else _task_from_doc(doc)

    def update_task(self, queue_id: str, **changes: Any) -> TaskRecord:
        prepared = prepare_task_update(queue_id, changes)
        if not is_valid_key(queue_id):
            raise TaskNotFound(f"no task record with queue_id {queue_id!r}")
        patch = {"_key": queue_id, **prepared}
        with _arango_errors(f"update_task({queue_id!r})"):
            try:
                # merge=False: a new ``partitions`` dict replaces the old one, as in SQLite;
                # keep_none=True: setting a field to None stores null instead of dropping it.
                result = self._tasks().update(
                    patch, merge=False, keep_none=True, return_new=True, sync=self._sync
                )
            except DocumentUpdateError as exc:
                if exc.error_code == _ERR_DOCUMENT_NOT_FOUND:
                    raise TaskNotFound(f"no task record with queue_id {queue_id!r}") from exc
                raise
        return _task_from_doc(result["new"])

    def list_tasks(
        self,
        *,
        status: str | None = None,
        run_id: str | None = None,
        partition_key: str | None = None,
    ) -> list[TaskRecord]:
        bind_vars: dict[str, Any] = {"@col": TASKS_COLLECTION}
        filters: list[str] = []
        for name, value in (("status", status), ("run_id", run_id), ("partition_key", partition_key)):
            if value is not None:
                filters.append(_TASK_FILTERS[name])
                bind_vars[name] = value
        where = f"FILTER {' AND '.join(filters)} " if filters else ""
        aql = f"FOR t IN @@col {where}SORT t.created_at, t._key RETURN t"
        with _arango_errors("list_tasks"):
            self._tasks()
            docs = self._query(aql, bind_vars)
        return [_task_from_doc(doc) for doc in docs]

    # -- graph snapshots -----------------------------------------------------------------------

    def write_graph_snapshot(
        self, snapshot_id: str, nodes: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, Any]]
    ) -> None:
        validate_key(snapshot_id, "snapshot_id")
        node_docs: list[dict[str, Any]] = []
        assets: dict[str, dict[str, Any]] = {}
        for node in nodes:
            key, attrs = split_node(node)
            node_docs.append({"snapshot_id": snapshot_id, "key": key, "attrs": attrs})
            assets[key] = {"_key": key, "key": key}
        edge_docs: list[dict[str, Any]] = []
        for seq, edge in enumerate(edges):
            source, target, weight, attrs = split_edge(edge)
            for endpoint in (source, target):
                assets.setdefault(endpoint, {"_key": endpoint, "key": endpoint})
            edge_docs.append(
                {
                    "_from": f"{ASSETS_COLLECTION}/{source}",
                    "_to": f"{ASSETS_COLLECTION}/{target}",
                    "snapshot_id": snapshot_id,
                    "source": source,
                    "target": target,
                    "weight": weight,
                    "seq": seq,
                    "attrs": attrs,
                }
            )
        with _arango_errors(f"write_graph_snapshot({snapshot_id!r})"):
            self._ensure_graph()
            db = self._database()
            # Replace semantics: drop what an earlier write of this snapshot left, then insert.
            for name in (RELATIONS_COLLECTION, ASSET_SNAPSHOTS_COLLECTION):
                self._query(_REMOVE_SNAPSHOT_AQL, {"@col": name, "sid": snapshot_id})
            self._import(db.collection(ASSETS_COLLECTION), list(assets.values()))
            self._import(db.collection(ASSET_SNAPSHOTS_COLLECTION), node_docs)
            self._import(db.collection(RELATIONS_COLLECTION), edge_docs)

    def read_graph_snapshot(self, snapshot_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if not is_valid_key(snapshot_id):
            return [], []
        with _arango_errors(f"read_graph_snapshot({snapshot_id!r})"):
            self._ensure_graph()
            node_docs = self._query(_READ_NODES_AQL, {"@col": ASSET_SNAPSHOTS_COLLECTION, "sid": snapshot_id})
            edge_docs = self._query(_READ_EDGES_AQL, {"@col": RELATIONS_COLLECTION, "sid": snapshot_id})
        nodes = [{"key": doc["key"], **doc.get("attrs", {})} for doc in node_docs]
        edges = [
            {
                "source": doc["source"],
                "target": doc["target"],
                "weight": float(doc["weight"]),
                **doc.get("attrs", {}),
                "snapshot_id": snapshot_id,
            }
            for doc in edge_docs
        ]
        return nodes, edges

    def list_graph_snapshots(
        self, prefix: str = "", start: str | None = None, end: str | None = None
    ) -> list[str]:
        with _arango_errors("list_graph_snapshots"):
            self._ensure_graph()
            ids: set[str] = set()
            for name in (ASSET_SNAPSHOTS_COLLECTION, RELATIONS_COLLECTION):
                ids.update(
                    self._query(
                        _LIST_SNAPSHOTS_AQL, {"@col": name, "prefix": prefix, "start": start, "end": end}
                    )
                )
        return sorted(ids)

    # -- model registry ------------------------------------------------------------------------

    def _models(self) -> StandardCollection:
        return self._ensure_collection(MODELS_COLLECTION, indexes=(_MODELS_INDEX,))

    def put_model_record(self, record: ModelRecord) -> None:
        validate_key(record.key, "model record key")
        with _arango_errors(f"put_model_record({record.key!r})"):
            self._models().insert(
                {"_key": record.key, **record.to_dict()}, overwrite_mode="replace", sync=self._sync
            )

    def list_model_records(self, name: str | None = None) -> list[ModelRecord]:
        with _arango_errors("list_model_records"):
            self._models()
            docs = self._query(_LIST_MODELS_AQL, {"@col": MODELS_COLLECTION, "name": name})
        return [ModelRecord.from_dict(doc) for doc in docs]

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()


def _os_reason(exc: OSError) -> str:
    """The gist of a connection error (``[Errno 111] Connection refused``), not urllib3's whole story."""
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
    return found.group(0) if found else f"{type(exc).__name__}: {str(exc)[:120]}"
