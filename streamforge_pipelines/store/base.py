"""The store interface shared by the embedded (SQLite) and production (ArangoDB) adapters.

A store holds:

* **datasets** — one collection per :class:`~streamforge_pipelines.datasets.DatasetSpec` (candles
  of each market, trades, and any registered dataset), documents with exactly the spec's fields,
  upserted by their deterministic ``key``. Every dataset call takes the spec: it names the
  collection, the fields and their types (:mod:`.documents`), the series fields, the time field a
  range selects on and the order field that orders a series. So one set of calls serves every
  dataset: :meth:`Store.upsert`, :meth:`Store.upsert_pages`, :meth:`Store.read`, :meth:`Store.count`,
  :meth:`Store.counts_by_day`, :meth:`Store.duplicates`, :meth:`Store.order_values`,
  :meth:`Store.order_span`. A spec with another ``collection`` (``dataclasses.replace(spec,
  collection=...)``) is the same dataset kept apart.
* **task records**, **the completeness ledger**, **graph snapshots** and **the model registry**
  (:mod:`.records`).

Every collection and field name is validated (:mod:`.names`) before it reaches SQL or AQL, and every
value travels as a bound parameter. Both adapters are synchronous and safe to call from worker
threads (the asyncio connector uses :func:`asyncio.to_thread`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from ..datasets import DatasetSpec
from .documents import OrderBy
from .records import LEDGER_DEFAULT_COLLECTION, LedgerRecord, ModelRecord, TaskRecord


class Store(ABC):
    """Datasets, task records, the ledger, graph snapshots and the model registry behind one small
    synchronous interface.

    Implementations: :class:`~streamforge_pipelines.store.sqlite.SqliteStore` (embedded default)
    and :class:`~streamforge_pipelines.store.arango.ArangoStore` (production). Use as a context
    manager or call :meth:`close`.
    """

    # -- datasets ------------------------------------------------------------------------------

    @abstractmethod
    def upsert(self, spec: DatasetSpec, docs: Sequence[Mapping[str, Any]]) -> int:
        """Insert or update documents of ``spec`` by ``key``; durable on return. Returns the number
        written. The batch is checked first (:class:`~.documents.DocumentLayout`): extra fields are
        dropped; a missing field, a value of another type, a value outside the spec's ``choices`` or
        an invalid key refuses the whole batch with :class:`~.errors.StoreError`."""

    def upsert_pages(self, spec: DatasetSpec, pages: Sequence[Any]) -> int:
        """Insert or update the documents of checked pages (what ``spec.codec.check`` returned);
        durable on return. The same as :meth:`upsert` of ``spec.codec.docs`` of each page, which is
        what this default does; an adapter may write a page's rows without building documents
        when the codec gives them as columns (``codec.rows``: the connector's hot path)."""
        docs = [doc for page in pages for doc in spec.codec.docs(page)]
        return self.upsert(spec, docs) if docs else 0

    @abstractmethod
    def read(
        self, spec: DatasetSpec, series: Sequence[Any], start_ms: int, end_ms: int
    ) -> list[dict[str, Any]]:
        """The documents of one series (``("BTCUSDT", "1m")``) with ``start_ms <= time field < end_ms``,
        ordered by the order field, then key, exactly as written."""

    @abstractmethod
    def count(self, spec: DatasetSpec, series: Sequence[Any], start_ms: int, end_ms: int) -> int:
        """Number of stored documents of one series with ``start_ms <= time field < end_ms``."""

    @abstractmethod
    def counts_by_day(
        self, spec: DatasetSpec, symbols: Sequence[str], rest: Sequence[Any], start_ms: int, end_ms: int
    ) -> dict[tuple[str, str], int]:
        """``(symbol, "YYYY-MM-DD")`` (the UTC day of the time field) -> count, non-zero entries only,
        for the series ``(symbol, *rest)`` of every one of ``symbols`` (the first series field's
        values) with ``start_ms <= time field < end_ms``."""

    @abstractmethod
    def duplicates(
        self, spec: DatasetSpec, symbols: Sequence[str], rest: Sequence[Any], start_ms: int, end_ms: int
    ) -> int:
        """Number of (series, order value) pairs stored more than once among the series
        ``(symbol, *rest)`` of ``symbols`` with ``start_ms <= time field < end_ms`` (0 if sound: a
        writer with a broken key function would make it non-zero)."""

    @abstractmethod
    def order_values(
        self, spec: DatasetSpec, series: Sequence[Any], lo: int, hi: int, *, by: OrderBy = "time"
    ) -> list[int]:
        """The order values of one series, ascending, each once, with ``lo <= time field < hi``
        (``by="time"``: the candle open times the time-grid ledger compares with the grid) or
        ``lo <= order field < hi`` (``by="order"``: the trade ids the id-range ledger compares with
        the consecutive ids the exchange has)."""

    @abstractmethod
    def order_span(
        self, spec: DatasetSpec, series: Sequence[Any], start_ms: int, end_ms: int
    ) -> tuple[int, int, int] | None:
        """``(smallest order value, largest, count)`` of one series with ``start_ms <= time field <
        end_ms``; None when there is none."""

    # -- completeness ledger -------------------------------------------------------------------

    @abstractmethod
    def put_ledger(self, records: Sequence[LedgerRecord]) -> None:
        """Insert or replace ledger records by key (``SYMBOL:interval:YYYY-MM-DD``)."""

    @abstractmethod
    def read_ledger(
        self,
        symbols: Sequence[str],
        interval: str,
        first_day: str,
        last_day: str,
        collection: str = LEDGER_DEFAULT_COLLECTION,
    ) -> list[LedgerRecord]:
        """Ledger records of ``symbols`` and ``interval`` of the candle ``collection`` for the days
        ``first_day`` .. ``last_day`` (``YYYY-MM-DD``, inclusive), ordered by symbol then day."""

    # -- task records --------------------------------------------------------------------------

    @abstractmethod
    def put_task(self, record: TaskRecord) -> None:
        """Insert or replace the task record with ``record.queue_id``."""

    @abstractmethod
    def get_task(self, queue_id: str) -> TaskRecord | None:
        """The task record, or ``None``."""

    @abstractmethod
    def update_task(self, queue_id: str, **changes: Any) -> TaskRecord:
        """Change fields of a task record, refresh ``updated_at`` and return the new record.

        Raises :class:`TaskNotFound` when there is no such record and :class:`TypeError` for
        unknown fields.
        """

    @abstractmethod
    def list_tasks(
        self,
        *,
        status: str | None = None,
        run_id: str | None = None,
        partition_key: str | None = None,
    ) -> list[TaskRecord]:
        """Task records matching every given filter, ordered by ``created_at`` then ``queue_id``."""

    # -- graph snapshots -----------------------------------------------------------------------

    @abstractmethod
    def write_graph_snapshot(
        self, snapshot_id: str, nodes: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, Any]]
    ) -> None:
        """Store (or replace) a snapshot: nodes ``{key, **attrs}``, edges ``{source, target, weight,
        **attrs}``."""

    @abstractmethod
    def read_graph_snapshot(self, snapshot_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(nodes, edges)`` of a snapshot: nodes as written, ordered by key; edges as written plus
        ``snapshot_id``, ordered by (source, target). Empty lists for an unknown snapshot."""

    @abstractmethod
    def list_graph_snapshots(
        self, prefix: str = "", start: str | None = None, end: str | None = None
    ) -> list[str]:
        """Ids of the stored snapshots that start with ``prefix`` and, when given, lie in
        ``start <= id < end`` (plain string order), ascending. Snapshot ids that embed a sortable
        timestamp after a fixed prefix (the graph-builder's do) make this a time-range listing."""

    # -- model registry ------------------------------------------------------------------------

    @abstractmethod
    def put_model_record(self, record: ModelRecord) -> None:
        """Insert or replace the registry record ``<name>:<version>``."""

    @abstractmethod
    def list_model_records(self, name: str | None = None) -> list[ModelRecord]:
        """Registry records of model ``name`` (every model when None), ordered by name then version
        (versions sort in save order)."""

    # -- lifecycle -----------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release connections. Further calls are errors."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
