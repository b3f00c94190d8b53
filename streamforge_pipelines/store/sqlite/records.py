"""The SQLite adapter's records: task records, the completeness ledger, graph snapshots, the model
registry.

* ``tasks`` holds task records (``partitions`` as JSON);
* ``ledger`` holds the completeness ledger (one JSON document per symbol, interval and day);
* ``graph_nodes`` / ``graph_edges`` hold graph snapshots (attributes as JSON);
* ``models`` holds the model registry (one JSON document per model version).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ..base import Store
from ..errors import TaskNotFound
from ..names import LEDGER_COLLECTION, MODELS_COLLECTION, TASKS_COLLECTION, validate_key
from ..records import (
    LEDGER_DEFAULT_COLLECTION,
    TASK_FIELDS,
    LedgerRecord,
    ModelRecord,
    TaskRecord,
    prepare_task_update,
    split_edge,
    split_node,
    task_document,
)
from .connection import SqliteConnection, chunks

_TASK_COLUMNS = ", ".join(f'"{f}"' for f in TASK_FIELDS)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS "{TASKS_COLLECTION}" (
    "queue_id" TEXT PRIMARY KEY NOT NULL,
    "symbol" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "time_range" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "run_id" TEXT,
    "partition_key" TEXT,
    "records_expected" INTEGER,
    "records_written" INTEGER NOT NULL,
    "partitions" TEXT NOT NULL,
    "message" TEXT,
    "error" TEXT,
    "created_at" REAL NOT NULL,
    "updated_at" REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "tasks_status" ON "{TASKS_COLLECTION}" ("status");
CREATE INDEX IF NOT EXISTS "tasks_run_id" ON "{TASKS_COLLECTION}" ("run_id");
CREATE INDEX IF NOT EXISTS "tasks_partition_key" ON "{TASKS_COLLECTION}" ("partition_key");
CREATE TABLE IF NOT EXISTS "graph_nodes" (
    "snapshot_id" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "attrs" TEXT NOT NULL,
    PRIMARY KEY ("snapshot_id", "key")
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS "graph_edges" (
    "snapshot_id" TEXT NOT NULL,
    "source" TEXT NOT NULL,
    "target" TEXT NOT NULL,
    "weight" REAL NOT NULL,
    "attrs" TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS "graph_edges_snapshot" ON "graph_edges" ("snapshot_id", "source", "target");
"""


_LEDGER_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS "{LEDGER_COLLECTION}" (
    "key" TEXT PRIMARY KEY NOT NULL,
    "symbol" TEXT NOT NULL,
    "interval" TEXT NOT NULL,
    "day" TEXT NOT NULL,
    "collection" TEXT NOT NULL,
    "doc" TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "ledger_interval_day" ON "{LEDGER_COLLECTION}" ("interval", "day");
"""


_MODELS_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS "{MODELS_COLLECTION}" (
    "key" TEXT PRIMARY KEY NOT NULL,
    "name" TEXT NOT NULL,
    "version" TEXT NOT NULL,
    "doc" TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "models_name_version" ON "{MODELS_COLLECTION}" ("name", "version");
"""


#: The record tables, created when the store opens.
RECORD_SCHEMA: tuple[str, ...] = (_SCHEMA, _LEDGER_SCHEMA, _MODELS_SCHEMA)


def _task_row(record: TaskRecord) -> tuple[Any, ...]:
    doc = task_document(record)
    doc["partitions"] = orjson.dumps(doc["partitions"]).decode()
    return tuple(doc[f] for f in TASK_FIELDS)


def _task_from_row(row: Sequence[Any]) -> TaskRecord:
    data = dict(zip(TASK_FIELDS, row, strict=True))
    data["partitions"] = orjson.loads(data["partitions"])
    return TaskRecord.from_dict(data)


class SqliteRecords(SqliteConnection, Store):
    """The record half of :class:`~streamforge_pipelines.store.sqlite.SqliteStore` (its dataset
    methods stay abstract here)."""

    schema = RECORD_SCHEMA

    # -- completeness ledger -------------------------------------------------------------------

    def put_ledger(self, records: Sequence[LedgerRecord]) -> None:
        rows = []
        for r in records:
            validate_key(r.key, "ledger key")
            doc = orjson.dumps(r.to_dict()).decode()
            rows.append((r.key, r.symbol, r.interval, r.day, r.collection, doc))
        if not rows:
            return
        with self._write() as conn:
            conn.executemany(
                f'INSERT OR REPLACE INTO "{LEDGER_COLLECTION}" '
                '("key", "symbol", "interval", "day", "collection", "doc") VALUES (?, ?, ?, ?, ?, ?)',
                rows,
            )

    def read_ledger(
        self,
        symbols: Sequence[str],
        interval: str,
        first_day: str,
        last_day: str,
        collection: str = LEDGER_DEFAULT_COLLECTION,
    ) -> list[LedgerRecord]:
        out: list[LedgerRecord] = []
        with self._read() as conn:
            for chunk in chunks(sorted(set(symbols))):
                marks = ", ".join("?" for _ in chunk)
                rows = conn.execute(
                    f'SELECT "doc" FROM "{LEDGER_COLLECTION}" WHERE "symbol" IN ({marks}) '
                    'AND "interval" = ? AND "day" >= ? AND "day" <= ? AND "collection" = ? '
                    'ORDER BY "symbol", "day"',
                    (*chunk, interval, first_day, last_day, collection),
                ).fetchall()
                out.extend(LedgerRecord.from_dict(orjson.loads(doc)) for (doc,) in rows)
        return out

    # -- task records --------------------------------------------------------------------------

    def put_task(self, record: TaskRecord) -> None:
        validate_key(record.queue_id, "queue_id")
        marks = ", ".join("?" for _ in TASK_FIELDS)
        with self._write() as conn:
            conn.execute(
                f'INSERT OR REPLACE INTO "{TASKS_COLLECTION}" ({_TASK_COLUMNS}) VALUES ({marks})',
                _task_row(record),
            )

    def _select_task(self, conn: sqlite3.Connection, queue_id: str) -> TaskRecord | None:
        row = conn.execute(
            f'SELECT {_TASK_COLUMNS} FROM "{TASKS_COLLECTION}" WHERE "queue_id" = ?', (queue_id,)
        ).fetchone()
        return None if row is None else _task_from_row(row)

    def get_task(self, queue_id: str) -> TaskRecord | None:
        with self._read() as conn:
            return self._select_task(conn, queue_id)

    def update_task(self, queue_id: str, **changes: Any) -> TaskRecord:
        prepared = prepare_task_update(queue_id, changes)
        with self._write() as conn:
            record = self._select_task(conn, queue_id)
            if record is None:
                raise TaskNotFound(f"no task record with queue_id {queue_id!r}")
            for name, value in prepared.items():
                setattr(record, name, value)
            marks = ", ".join("?" for _ in TASK_FIELDS)
            conn.execute(
                f'INSERT OR REPLACE INTO "{TASKS_COLLECTION}" ({_TASK_COLUMNS}) VALUES ({marks})',
                _task_row(record),
            )
        return record

    def list_tasks(
        self,
        *,
        status: str | None = None,
        run_id: str | None = None,
        partition_key: str | None = None,
    ) -> list[TaskRecord]:
        clauses: list[str] = []
        params: list[str] = []
        for column, value in (("status", status), ("run_id", run_id), ("partition_key", partition_key)):
            if value is not None:
                clauses.append(f'"{column}" = ?')
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        with self._read() as conn:
            rows = conn.execute(
                f'SELECT {_TASK_COLUMNS} FROM "{TASKS_COLLECTION}" {where}ORDER BY "created_at", "queue_id"',
                params,
            ).fetchall()
        return [_task_from_row(row) for row in rows]

    # -- graph snapshots -----------------------------------------------------------------------

    def write_graph_snapshot(
        self, snapshot_id: str, nodes: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, Any]]
    ) -> None:
        validate_key(snapshot_id, "snapshot_id")
        node_rows = []
        for node in nodes:
            key, attrs = split_node(node)
            node_rows.append((snapshot_id, key, orjson.dumps(attrs).decode()))
        edge_rows = []
        for edge in edges:
            source, target, weight, attrs = split_edge(edge)
            edge_rows.append((snapshot_id, source, target, weight, orjson.dumps(attrs).decode()))
        with self._write() as conn:
            conn.execute('DELETE FROM "graph_nodes" WHERE "snapshot_id" = ?', (snapshot_id,))
            conn.execute('DELETE FROM "graph_edges" WHERE "snapshot_id" = ?', (snapshot_id,))
            conn.executemany(
                'INSERT OR REPLACE INTO "graph_nodes" ("snapshot_id", "key", "attrs") VALUES (?, ?, ?)',
                node_rows,
            )
            conn.executemany(
                'INSERT INTO "graph_edges" ("snapshot_id", "source", "target", "weight", "attrs") '
                "VALUES (?, ?, ?, ?, ?)",
                edge_rows,
            )

    def read_graph_snapshot(self, snapshot_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with self._read() as conn:
            node_rows = conn.execute(
                'SELECT "key", "attrs" FROM "graph_nodes" WHERE "snapshot_id" = ? ORDER BY "key"',
                (snapshot_id,),
            ).fetchall()
            edge_rows = conn.execute(
                'SELECT "source", "target", "weight", "attrs" FROM "graph_edges" '
                'WHERE "snapshot_id" = ? ORDER BY "source", "target", rowid',
                (snapshot_id,),
            ).fetchall()
        nodes = [{"key": key, **orjson.loads(attrs)} for key, attrs in node_rows]
        edges = [
            {"source": s, "target": t, "weight": w, **orjson.loads(attrs), "snapshot_id": snapshot_id}
            for s, t, w, attrs in edge_rows
        ]
        return nodes, edges

    def list_graph_snapshots(
        self, prefix: str = "", start: str | None = None, end: str | None = None
    ) -> list[str]:
        # A prefix is the range [prefix, prefix + U+10FFFF): the primary key's index serves it.
        clauses, params = ['"snapshot_id" >= ?', '"snapshot_id" < ?'], [prefix, prefix + "\U0010ffff"]
        if start is not None:
            clauses.append('"snapshot_id" >= ?')
            params.append(start)
        if end is not None:
            clauses.append('"snapshot_id" < ?')
            params.append(end)
        where = " AND ".join(clauses)
        with self._read() as conn:
            rows = conn.execute(
                f'SELECT DISTINCT "snapshot_id" FROM "graph_nodes" WHERE {where} '
                f'UNION SELECT DISTINCT "snapshot_id" FROM "graph_edges" WHERE {where} ORDER BY 1',
                params * 2,
            ).fetchall()
        return [sid for (sid,) in rows]

    # -- model registry ------------------------------------------------------------------------

    def put_model_record(self, record: ModelRecord) -> None:
        validate_key(record.key, "model record key")
        doc = orjson.dumps(record.to_dict()).decode()
        with self._write() as conn:
            conn.execute(
                f'INSERT OR REPLACE INTO "{MODELS_COLLECTION}" ("key", "name", "version", "doc") '
                "VALUES (?, ?, ?, ?)",
                (record.key, record.name, record.version, doc),
            )

    def list_model_records(self, name: str | None = None) -> list[ModelRecord]:
        where, params = ('WHERE "name" = ? ', (name,)) if name is not None else ("", ())
        with self._read() as conn:
            rows = conn.execute(
                f'SELECT "doc" FROM "{MODELS_COLLECTION}" {where}ORDER BY "name", "version"', params
            ).fetchall()
        return [ModelRecord.from_dict(orjson.loads(doc)) for (doc,) in rows]
