"""The ArangoDB adapter's records: task records, the completeness ledger, graph snapshots, the model
registry.

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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from arango.collection import StandardCollection
from arango.exceptions import DocumentUpdateError, GraphCreateError

from ..base import Store
from ..errors import StoreError, TaskNotFound
from ..names import LEDGER_COLLECTION, MODELS_COLLECTION, TASKS_COLLECTION, is_valid_key, validate_key
from ..records import (
    LEDGER_DEFAULT_COLLECTION,
    LedgerRecord,
    ModelRecord,
    TaskRecord,
    prepare_task_update,
    split_edge,
    split_node,
    task_document,
)
from .connection import ArangoConnection, arango_errors, persistent_index

GRAPH_NAME = "correlations"
ASSETS_COLLECTION = "assets"
RELATIONS_COLLECTION = "relations"
ASSET_SNAPSHOTS_COLLECTION = "asset_snapshots"

# ArangoDB error numbers (arango.errno): document not found, graph exists.
_ERR_DOCUMENT_NOT_FOUND = 1202
_ERR_GRAPH_DUPLICATE = 1925
#: Created when the store opens (the task records are its first use).
TASK_INDEXES: tuple[dict[str, Any], ...] = tuple(
    persistent_index([f]) for f in ("status", "run_id", "partition_key")
)
_SNAPSHOT_INDEX = persistent_index(["snapshot_id"])

_READ_LEDGER_AQL = """
FOR l IN @@col
  FILTER l.symbol IN @symbols AND l.interval == @interval AND l.day >= @first AND l.day <= @last
  FILTER NOT_NULL(l.collection, "candles") == @collection
  SORT l.symbol, l.day
  RETURN l
"""
_LEDGER_INDEX = persistent_index(["interval", "day"])
_MODELS_INDEX = persistent_index(["name", "version"])
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


def _task_from_doc(doc: Mapping[str, Any]) -> TaskRecord:
    return TaskRecord.from_dict(doc)


class ArangoRecords(ArangoConnection, Store):
    """The record half of :class:`~streamforge_pipelines.store.arango.ArangoStore` (its dataset
    methods stay abstract here)."""

    opened_with = ((TASKS_COLLECTION, TASK_INDEXES),)

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
        with arango_errors("put_ledger"):
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
        collection: str = LEDGER_DEFAULT_COLLECTION,
    ) -> list[LedgerRecord]:
        unique = sorted(set(symbols))
        if not unique:
            return []
        with arango_errors("read_ledger"):
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
        return self._ensure_collection(TASKS_COLLECTION, indexes=TASK_INDEXES)

    def put_task(self, record: TaskRecord) -> None:
        validate_key(record.queue_id, "queue_id")
        with arango_errors(f"put_task({record.queue_id!r})"):
            self._tasks().insert(
                {"_key": record.queue_id, **task_document(record)}, overwrite_mode="replace", sync=self._sync
            )

    def get_task(self, queue_id: str) -> TaskRecord | None:
        if not is_valid_key(queue_id):  # could never have been stored
            return None
        with arango_errors(f"get_task({queue_id!r})"):
            doc = self._tasks().get(queue_id)
        return None if doc is None else _task_from_doc(doc)

    def update_task(self, queue_id: str, **changes: Any) -> TaskRecord:
        prepared = prepare_task_update(queue_id, changes)
        if not is_valid_key(queue_id):
            raise TaskNotFound(f"no task record with queue_id {queue_id!r}")
        patch = {"_key": queue_id, **prepared}
        with arango_errors(f"update_task({queue_id!r})"):
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
        with arango_errors("list_tasks"):
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
        with arango_errors(f"write_graph_snapshot({snapshot_id!r})"):
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
        with arango_errors(f"read_graph_snapshot({snapshot_id!r})"):
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
        with arango_errors("list_graph_snapshots"):
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
        with arango_errors(f"put_model_record({record.key!r})"):
            self._models().insert(
                {"_key": record.key, **record.to_dict()}, overwrite_mode="replace", sync=self._sync
            )

    def list_model_records(self, name: str | None = None) -> list[ModelRecord]:
        with arango_errors("list_model_records"):
            self._models()
            docs = self._query(_LIST_MODELS_AQL, {"@col": MODELS_COLLECTION, "name": name})
        return [ModelRecord.from_dict(doc) for doc in docs]
