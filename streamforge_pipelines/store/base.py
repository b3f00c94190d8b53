"""The store interface shared by the embedded (SQLite) and production (ArangoDB) adapters.

A store holds three kinds of data:

* **candles** — one collection per dataset (``candles`` by default), documents with exactly the
  fields of :data:`CANDLE_FIELDS`, upserted by their deterministic ``key``
  (``f"{symbol}:{interval}:{open_time}"``). Prices and volumes stay the decimal strings the
  exchange sent; they are never turned into floats.
* **trades** — the ``trades`` collection: aggregate trades and trades of every symbol, documents with
  exactly the fields of :data:`TRADE_FIELDS`, upserted by ``SYMBOL:agg:<id>`` / ``SYMBOL:trade:<id>``.
* **task records** — the ``tasks`` collection, one :class:`TaskRecord` per ``queue_id``.
* **the completeness ledger** — the ``ledger`` collection, one :class:`LedgerRecord` per
  (symbol, interval, day), keyed ``SYMBOL:interval:YYYY-MM-DD``.
* **graph snapshots** — asset nodes and weighted relation edges, kept apart by ``snapshot_id``.
* **the model registry** — the ``models`` collection, one :class:`ModelRecord` per saved model
  version (the model itself lives in the model store, :mod:`streamforge_pipelines.models`).

Every collection name goes through :func:`validate_collection_name` before it reaches SQL or AQL,
and every value travels as a bound parameter. Both adapters are synchronous and safe to call from
worker threads (the asyncio connector uses :func:`asyncio.to_thread`).
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import chain
from operator import itemgetter
from types import TracebackType
from typing import Any, NoReturn, Self

import orjson

from ..protocol import page_docs

#: The fields of a candle document, in storage order. Documents carry exactly these.
CANDLE_FIELDS: tuple[str, ...] = (
    "key",
    "symbol",
    "interval",
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base",
    "taker_buy_quote",
    "source",
    "queue_id",
)
#: Candle fields holding integers (milliseconds since the epoch, trade count).
CANDLE_INT_FIELDS: tuple[str, ...] = ("open_time", "close_time", "trades")
#: Candle fields holding strings (identifiers and the exchange's decimal strings).
CANDLE_STR_FIELDS: tuple[str, ...] = tuple(f for f in CANDLE_FIELDS if f not in CANDLE_INT_FIELDS)

#: The fields of a trade document (aggregate trades and trades share one collection, ``trades``), in
#: storage order. ``kind`` is ``agg`` or ``trade``; an aggregate trade has ``quote_qty`` None, a trade
#: has ``first_trade_id`` / ``last_trade_id`` None. Keys: ``BTCUSDT:agg:<id>`` / ``BTCUSDT:trade:<id>``.
TRADE_FIELDS: tuple[str, ...] = (
    "key",
    "symbol",
    "kind",
    "id",
    "price",
    "qty",
    "quote_qty",
    "first_trade_id",
    "last_trade_id",
    "time",
    "is_buyer_maker",
    "source",
    "queue_id",
)
DEFAULT_TRADES_COLLECTION = "trades"
_trade_getter = itemgetter(*TRADE_FIELDS)
_TRADE_STR_AT = tuple(
    TRADE_FIELDS.index(f) for f in ("key", "symbol", "kind", "price", "qty", "source", "queue_id")
)
_TRADE_INT_AT = tuple(TRADE_FIELDS.index(f) for f in ("id", "time"))
_TRADE_OPT_INT_AT = tuple(TRADE_FIELDS.index(f) for f in ("first_trade_id", "last_trade_id"))
_TRADE_QUOTE_AT = TRADE_FIELDS.index("quote_qty")
_TRADE_BOOL_AT = TRADE_FIELDS.index("is_buyer_maker")
_TRADE_KIND_AT = TRADE_FIELDS.index("kind")

#: Task statuses seen in the system (stored as plain strings; not enforced).
TASK_STATUSES: tuple[str, ...] = (
    "pending",
    "started",
    "loading",
    "finished",
    "error",
    "interrupted",
    "complete",
    "failed",
    "stalled",
)

DEFAULT_CANDLE_COLLECTION = "candles"
TASKS_COLLECTION = "tasks"
#: The completeness ledger: one :class:`LedgerRecord` per (symbol, interval, day).
LEDGER_COLLECTION = "ledger"
#: The model registry: one :class:`ModelRecord` per saved model version.
MODELS_COLLECTION = "models"
#: Names used by the adapters for their own tables/collections; not usable for candle data.
RESERVED_NAMES: frozenset[str] = frozenset(
    {
        TASKS_COLLECTION,
        LEDGER_COLLECTION,
        MODELS_COLLECTION,
        "graph_nodes",
        "graph_edges",
        "assets",
        "relations",
        "asset_snapshots",
    }
)

#: Collection/table names: a letter, then letters, digits and underscores (valid in both SQLite
#: identifiers and ArangoDB collection names, and never needing escapes).
_COLLECTION_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
#: Document keys (candle keys, queue ids, asset symbols, snapshot ids): ArangoDB's ``_key``
#: alphabet and length limit, so both adapters accept and refuse the same keys.
_KEY_MAX_LEN = 254
_KEY_RE = re.compile(r"[A-Za-z0-9_\-:.@()+,=;$!*'%]{1,254}")
_KEY_CHARS_RE = re.compile(r"[A-Za-z0-9_\-:.@()+,=;$!*'%]*")
#: ArangoDB database names (traditional naming): a letter, then letters, digits, ``_`` and ``-``.
_DATABASE_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")

_candle_getter = itemgetter(*CANDLE_FIELDS)
_first = itemgetter(0)
_candle_str_positions = tuple(CANDLE_FIELDS.index(f) for f in CANDLE_STR_FIELDS)
_candle_int_positions = tuple(CANDLE_FIELDS.index(f) for f in CANDLE_INT_FIELDS)
_candle_str_getter = itemgetter(*_candle_str_positions)
_candle_int_getter = itemgetter(*_candle_int_positions)


#: A checked candle page: symbol, interval, source, queue_id and its kline rows (open_time, open,
#: high, low, close, volume, close_time, quote_volume, trades, taker_buy_base, taker_buy_quote).
CandlePageRows = tuple[str, str, str, str, Sequence[Sequence[Any]]]


def candle_page_rows(pages: Sequence[CandlePageRows]) -> list[tuple[Any, ...]]:
    """The candles of checked pages as tuples in :data:`CANDLE_FIELDS` order."""
    return [
        (f"{s}:{i}:{r[0]}", s, i, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], src, q)
        for s, i, src, q, rows in pages
        for r in rows
    ]


class StoreError(Exception):
    """A store operation failed (bad input, or the backend refused)."""


class InvalidNameError(StoreError, ValueError):
    """A collection/table name or document key that the store will not put into a query."""


class TaskNotFound(StoreError, KeyError):
    """No task record has the requested ``queue_id``."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else "task not found"


def validate_collection_name(name: str, *, allow_reserved: bool = False) -> str:
    """Return ``name`` if it is a safe collection/table name, else raise :class:`InvalidNameError`."""
    if not isinstance(name, str) or _COLLECTION_NAME_RE.fullmatch(name) is None:
        raise InvalidNameError(f"invalid collection name {name!r}: must match {_COLLECTION_NAME_RE.pattern}")
    if not allow_reserved and name in RESERVED_NAMES:
        raise InvalidNameError(f"collection name {name!r} is reserved by the store")
    return name


def validate_key(key: str, what: str = "key") -> str:
    """Return ``key`` if it is a valid document key, else raise :class:`InvalidNameError`."""
    if not is_valid_key(key):
        raise InvalidNameError(f"invalid {what} {key!r}: must match {_KEY_RE.pattern}")
    return key


def is_valid_key(key: object) -> bool:
    """Whether ``key`` is a valid document key (see :func:`validate_key`)."""
    return isinstance(key, str) and _KEY_RE.fullmatch(key) is not None


def validate_database_name(name: str) -> str:
    """Return ``name`` if it is a valid ArangoDB database name, else raise :class:`InvalidNameError`."""
    if not isinstance(name, str) or _DATABASE_NAME_RE.fullmatch(name) is None:
        raise InvalidNameError(f"invalid database name {name!r}: must match {_DATABASE_NAME_RE.pattern}")
    return name


def candle_key(symbol: str, interval: str, open_time: int) -> str:
    """The deterministic document key of a candle, e.g. ``BTCUSDT:5m:1722470400000``."""
    return f"{symbol}:{interval}:{open_time}"


def candle_rows(docs: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Check candle documents and return them as tuples in :data:`CANDLE_FIELDS` order.

    Extra fields are dropped; a missing field, a non-string price/volume (a float would lose the
    exchange's exact decimal), a non-integer time or count, or an invalid key raises
    :class:`StoreError`. The checks run as bulk C-level passes, so they stay cheap at 5000 rows.
    """
    try:
        rows = list(map(_candle_getter, docs))
    except (KeyError, TypeError):
        for i, doc in enumerate(docs):
            missing = [f for f in CANDLE_FIELDS if f not in doc]
            if missing:
                raise StoreError(f"candle #{i} lacks fields {missing}") from None
        raise
    if not rows:
        return rows
    str_types = set(map(type, chain.from_iterable(map(_candle_str_getter, rows))))
    int_types = set(map(type, chain.from_iterable(map(_candle_int_getter, rows))))
    keys_ok = str_types == {str} and _keys_valid(list(map(_first, rows)))
    if str_types != {str} or int_types != {int} or not keys_ok:
        _raise_bad_candle(rows)
    return rows


def _keys_valid(keys: list[str]) -> bool:
    # One regex pass over the joined keys plus a length check: much cheaper than a match per key.
    return (
        _KEY_CHARS_RE.fullmatch("".join(keys)) is not None
        and min(map(len, keys)) >= 1
        and max(map(len, keys)) <= _KEY_MAX_LEN
    )


def _raise_bad_candle(rows: Sequence[tuple[Any, ...]]) -> NoReturn:
    for i, row in enumerate(rows):
        for pos in _candle_str_positions:
            if type(row[pos]) is not str:
                raise StoreError(
                    f"candle #{i} field {CANDLE_FIELDS[pos]!r} must be str, got {type(row[pos]).__name__}"
                )
        for pos in _candle_int_positions:
            if type(row[pos]) is not int:
                raise StoreError(
                    f"candle #{i} field {CANDLE_FIELDS[pos]!r} must be int, got {type(row[pos]).__name__}"
                )
        if _KEY_RE.fullmatch(row[0]) is None:
            raise StoreError(f"candle #{i} has invalid key {row[0]!r}")
    raise StoreError("invalid candle batch")  # pragma: no cover - unreachable


def trade_rows(docs: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Check trade documents and return them as tuples in :data:`TRADE_FIELDS` order.

    Extra fields are dropped; a missing field, a non-string price/qty, a non-integer id or time, a
    non-bool ``is_buyer_maker``, an unknown ``kind`` or an invalid key raises :class:`StoreError`.
    """
    try:
        rows = list(map(_trade_getter, docs))
    except (KeyError, TypeError):
        for i, doc in enumerate(docs):
            missing = [f for f in TRADE_FIELDS if f not in doc]
            if missing:
                raise StoreError(f"trade #{i} lacks fields {missing}") from None
        raise
    if not rows:
        return rows
    # Bulk C-level type passes first; the row walk below only runs to name a culprit.
    strs = set(map(type, chain.from_iterable(map(itemgetter(*_TRADE_STR_AT), rows))))
    ints = set(map(type, chain.from_iterable(map(itemgetter(*_TRADE_INT_AT), rows))))
    opt_ints = set(map(type, chain.from_iterable(map(itemgetter(*_TRADE_OPT_INT_AT), rows))))
    quotes = set(map(type, map(itemgetter(_TRADE_QUOTE_AT), rows)))
    bools = set(map(type, map(itemgetter(_TRADE_BOOL_AT), rows)))
    kinds = set(map(itemgetter(_TRADE_KIND_AT), rows))
    if (
        strs == {str}
        and ints == {int}
        and opt_ints <= {int, type(None)}
        and quotes <= {str, type(None)}
        and bools == {bool}
        and kinds <= {"agg", "trade"}
        and _keys_valid([r[0] for r in rows])
    ):
        return rows
    for i, row in enumerate(rows):
        for pos in _TRADE_STR_AT:
            if type(row[pos]) is not str:
                raise StoreError(f"trade #{i} field {TRADE_FIELDS[pos]!r} must be str, got {row[pos]!r}")
        for pos in _TRADE_INT_AT:
            if type(row[pos]) is not int:
                raise StoreError(f"trade #{i} field {TRADE_FIELDS[pos]!r} must be int, got {row[pos]!r}")
        for pos in _TRADE_OPT_INT_AT:
            if row[pos] is not None and type(row[pos]) is not int:
                raise StoreError(f"trade #{i} field {TRADE_FIELDS[pos]!r} must be int or None")
        if row[_TRADE_QUOTE_AT] is not None and type(row[_TRADE_QUOTE_AT]) is not str:
            raise StoreError(f"trade #{i} field 'quote_qty' must be str or None")
        if type(row[_TRADE_BOOL_AT]) is not bool:
            raise StoreError(f"trade #{i} field 'is_buyer_maker' must be bool, got {row[_TRADE_BOOL_AT]!r}")
        if row[_TRADE_KIND_AT] not in ("agg", "trade"):
            raise StoreError(f"trade #{i} field 'kind' must be 'agg' or 'trade', got {row[_TRADE_KIND_AT]!r}")
        if _KEY_RE.fullmatch(row[0]) is None:
            raise StoreError(f"trade #{i} has invalid key {row[0]!r}")
    raise StoreError("invalid trade batch")  # pragma: no cover - unreachable


@dataclass(slots=True)
class TaskRecord:
    """The state of one load task (the ``tasks`` collection), keyed by ``queue_id``."""

    queue_id: str
    symbol: str
    type: str
    time_range: str
    status: str = "pending"
    run_id: str | None = None
    partition_key: str | None = None
    records_expected: int | None = None
    records_written: int = 0
    partitions: dict[str, int] = field(default_factory=dict)
    message: str | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (``partitions`` copied)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskRecord:
        """Build a record from a mapping, ignoring keys that are not record fields (``_key``...)."""
        values = {name: data[name] for name in TASK_FIELDS if name in data}
        partitions = values.get("partitions")
        values["partitions"] = {str(k): int(v) for k, v in (partitions or {}).items()}
        return cls(**values)


#: The fields of a task record, in storage order.
TASK_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TaskRecord))
#: Fields that :meth:`Store.update_task` may change (``updated_at`` is always refreshed).
TASK_UPDATABLE_FIELDS: frozenset[str] = frozenset(TASK_FIELDS) - {"queue_id", "created_at"}


@dataclass(slots=True)
class LedgerRecord:
    """Completeness of one (symbol, interval, UTC day) of candles (the ``ledger`` collection).

    ``expected`` closed candles, of which ``stored`` are in the store, ``downtime`` are absent and
    confirmed absent by the exchange (``downtime_ranges``: open-time ranges ``[start_ms, end_ms)``
    for which it returned no candles), and ``missing`` are absent without that confirmation
    (``missing_ranges``). ``status``: ``complete`` | ``downtime`` | ``missing``. Built by
    :mod:`streamforge_pipelines.queue_manager.ledger`; the key is ``SYMBOL:interval:YYYY-MM-DD``.
    """

    symbol: str
    interval: str
    day: str
    expected: int
    stored: int
    downtime: int = 0
    missing: int = 0
    status: str = "complete"
    missing_ranges: list[tuple[int, int]] = field(default_factory=list)
    downtime_ranges: list[tuple[int, int]] = field(default_factory=list)
    #: Candles stored by the last repair of this day.
    repaired: int = 0
    checked_at: float = field(default_factory=time.time)
    #: The candle collection the entry describes (``candles``, ``candles_usdm``, ...).
    collection: str = DEFAULT_CANDLE_COLLECTION

    @property
    def key(self) -> str:
        """``SYMBOL:interval:day`` for the default collection, else prefixed by the collection."""
        base = f"{self.symbol}:{self.interval}:{self.day}"
        return base if self.collection == DEFAULT_CANDLE_COLLECTION else f"{self.collection}:{base}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (ranges as ``[start, end]`` lists)."""
        doc = asdict(self)
        doc["missing_ranges"] = [[int(a), int(b)] for a, b in self.missing_ranges]
        doc["downtime_ranges"] = [[int(a), int(b)] for a, b in self.downtime_ranges]
        return doc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerRecord:
        """Build a record from a mapping, ignoring keys that are not record fields (``_key``...)."""
        values = {name: data[name] for name in LEDGER_FIELDS if name in data}
        for name in ("missing_ranges", "downtime_ranges"):
            values[name] = [(int(a), int(b)) for a, b in values.get(name) or ()]
        return cls(**values)


#: The fields of a ledger record, in storage order.
LEDGER_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LedgerRecord))


@dataclass(slots=True)
class ModelRecord:
    """The registry entry of one saved model version (the ``models`` collection).

    ``uri`` is where the model store keeps it (``file://...`` or ``s3://bucket/models/<name>/<version>``);
    ``version`` sorts in save order (UTC timestamp + short payload hash); ``data_range`` says which
    data it was trained on (``{"start": ..., "end": ..., ...}``); ``created_at`` is ISO-8601 UTC.
    The key is ``<name>:<version>``.
    """

    name: str
    version: str
    uri: str
    metrics: dict[str, Any] = field(default_factory=dict)
    data_range: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    created_at: str = ""
    sha256: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (metrics and data range as plain JSON values)."""
        doc = asdict(self)
        doc["metrics"] = json_attrs(self.metrics, "model metrics")
        doc["data_range"] = json_attrs(self.data_range, "model data range")
        return doc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRecord:
        """Build a record from a mapping, ignoring keys that are not record fields (``_key``...)."""
        return cls(**{name: data[name] for name in MODEL_RECORD_FIELDS if name in data})


#: The fields of a model record, in storage order.
MODEL_RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ModelRecord))


def _partitions(value: Mapping[Any, Any] | None) -> dict[str, int]:
    # Kafka partition numbers often arrive as ints; JSON object keys are strings in both stores.
    return {str(k): int(v) for k, v in (value or {}).items()}


def task_document(record: TaskRecord) -> dict[str, Any]:
    """The record as a JSON-ready dict, ``partitions`` normalised to ``{str: int}``."""
    doc = asdict(record)
    doc["partitions"] = _partitions(record.partitions)
    return doc


def prepare_task_update(queue_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Check an update (unknown or immutable fields raise :class:`TypeError`, so a typo cannot pass
    silently) and return it with ``partitions`` normalised and ``updated_at`` refreshed."""
    unknown = set(changes) - TASK_UPDATABLE_FIELDS
    if unknown:
        raise TypeError(f"update_task({queue_id!r}): unknown or immutable fields {sorted(unknown)}")
    prepared = dict(changes)
    if "partitions" in prepared:
        prepared["partitions"] = _partitions(prepared["partitions"])
    prepared.setdefault("updated_at", time.time())
    return prepared


def json_attrs(attrs: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Graph attributes as plain JSON values (numpy scalars/arrays and datetimes converted), so both
    adapters store and return the same thing."""
    try:
        data = orjson.dumps(attrs, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise StoreError(f"{what} attributes are not JSON-serialisable: {exc}") from exc
    result: dict[str, Any] = orjson.loads(data)
    return result


def split_edge(edge: Mapping[str, Any]) -> tuple[str, str, float, dict[str, Any]]:
    """Split an edge mapping into (source, target, weight, other attributes)."""
    try:
        source, target, weight = edge["source"], edge["target"], edge["weight"]
    except KeyError as exc:
        raise StoreError(f"graph edge lacks field {exc.args[0]!r}: {edge!r}") from None
    validate_key(source, "edge source")
    validate_key(target, "edge target")
    attrs = json_attrs({k: v for k, v in edge.items() if k not in _EDGE_RESERVED}, "graph edge")
    try:
        return source, target, float(weight), attrs
    except (TypeError, ValueError):
        raise StoreError(f"graph edge weight is not a number: {edge!r}") from None


def split_node(node: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split a node mapping into (key, other attributes)."""
    try:
        key = node["key"]
    except KeyError:
        raise StoreError(f"graph node lacks field 'key': {node!r}") from None
    validate_key(key, "node key")
    return key, json_attrs({k: v for k, v in node.items() if k != "key"}, "graph node")


_EDGE_RESERVED = frozenset({"source", "target", "weight", "snapshot_id"})


class Store(ABC):
    """Candles, task records and graph snapshots behind one small synchronous interface.

    Implementations: :class:`~streamforge_pipelines.store.sqlite.SqliteStore` (embedded default)
    and :class:`~streamforge_pipelines.store.arango.ArangoStore` (production). Use as a context
    manager or call :meth:`close`.
    """

    # -- candles -------------------------------------------------------------------------------

    @abstractmethod
    def upsert_candles(
        self, docs: Sequence[Mapping[str, Any]], collection: str = DEFAULT_CANDLE_COLLECTION
    ) -> int:
        """Insert or update candles by ``key``; durable on return. Returns the number written."""

    def upsert_candle_pages(
        self, pages: Sequence[CandlePageRows], collection: str = DEFAULT_CANDLE_COLLECTION
    ) -> int:
        """Insert or update the candles of checked candle pages (``(symbol, interval, source,
        queue_id, rows)``, rows in kline order, from ``protocol.check_candle_page``); durable on
        return. The same as :meth:`upsert_candles` of their documents, which is what this default
        does; an adapter may write the rows without building documents (the connector's hot path)."""
        docs = [doc for page in pages for doc in page_docs(*page)]
        return self.upsert_candles(docs, collection) if docs else 0

    @abstractmethod
    def read_candles(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_CANDLE_COLLECTION,
    ) -> list[dict[str, Any]]:
        """Candles with ``start_ms <= open_time < end_ms``, ordered by ``open_time`` (then key)."""

    @abstractmethod
    def count_candles(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_CANDLE_COLLECTION,
    ) -> int:
        """Number of stored candles with ``start_ms <= open_time < end_ms``."""

    @abstractmethod
    def candle_counts_by_day(
        self,
        symbols: Sequence[str],
        interval: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_CANDLE_COLLECTION,
    ) -> dict[tuple[str, str], int]:
        """``(symbol, "YYYY-MM-DD")`` (UTC day of ``open_time``) -> count; non-zero entries only."""

    @abstractmethod
    def duplicate_candle_keys(
        self,
        symbols: Sequence[str],
        interval: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_CANDLE_COLLECTION,
    ) -> int:
        """Number of ``(symbol, interval, open_time)`` triples stored more than once (0 if sound)."""

    @abstractmethod
    def candle_open_times(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_CANDLE_COLLECTION,
    ) -> list[int]:
        """Open times of the stored candles with ``start_ms <= open_time < end_ms``, ascending, each
        once (what the completeness ledger compares with the expected candles to find the gaps)."""

    # -- trades (aggTrades and trades) ---------------------------------------------------------

    @abstractmethod
    def upsert_trades(
        self, docs: Sequence[Mapping[str, Any]], collection: str = DEFAULT_TRADES_COLLECTION
    ) -> int:
        """Insert or update trade documents (:data:`TRADE_FIELDS`) by ``key``; durable on return.
        Returns the number written."""

    @abstractmethod
    def read_trades(
        self,
        symbol: str,
        kind: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_TRADES_COLLECTION,
    ) -> list[dict[str, Any]]:
        """Trades of ``kind`` with ``start_ms <= time < end_ms``, ordered by ``id``, as written."""

    @abstractmethod
    def count_trades(
        self,
        symbol: str,
        kind: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_TRADES_COLLECTION,
    ) -> int:
        """Number of stored trades of ``kind`` with ``start_ms <= time < end_ms``."""

    @abstractmethod
    def trade_id_span(
        self,
        symbol: str,
        kind: str,
        start_ms: int,
        end_ms: int,
        collection: str = DEFAULT_TRADES_COLLECTION,
    ) -> tuple[int, int, int] | None:
        """``(smallest id, largest id, count)`` of the stored trades of ``kind`` with
        ``start_ms <= time < end_ms``; None when there is none."""

    @abstractmethod
    def trade_ids(
        self,
        symbol: str,
        kind: str,
        first_id: int,
        end_id: int,
        collection: str = DEFAULT_TRADES_COLLECTION,
    ) -> list[int]:
        """Ids of the stored trades of ``kind`` with ``first_id <= id < end_id``, ascending (what the
        trades ledger compares with the consecutive ids the exchange has to find the gaps)."""

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
        collection: str = DEFAULT_CANDLE_COLLECTION,
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
