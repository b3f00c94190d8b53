"""The store's own records beside the datasets: task records, the completeness ledger, the model
registry, and the helpers that turn graph snapshots into storable documents.

* **task records** — the ``tasks`` collection, one :class:`TaskRecord` per ``queue_id``;
* **the completeness ledger** — the ``ledger`` collection, one :class:`LedgerRecord` per
  (symbol, interval, day), keyed ``SYMBOL:interval:YYYY-MM-DD``;
* **the model registry** — the ``models`` collection, one :class:`ModelRecord` per saved model
  version (the model itself lives in the model store, :mod:`streamforge_pipelines.models`);
* **graph snapshots** — asset nodes and weighted relation edges (:func:`split_node`,
  :func:`split_edge`), kept apart by ``snapshot_id``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

from ..datasets import CANDLES
from .errors import StoreError
from .names import validate_key

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
#: The candle collection a ledger record describes unless it says otherwise (its key then has no
#: collection prefix, as before there were several).
LEDGER_DEFAULT_COLLECTION = CANDLES.collection


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
    collection: str = LEDGER_DEFAULT_COLLECTION

    @property
    def key(self) -> str:
        """``SYMBOL:interval:day`` for the default collection, else prefixed by the collection."""
        base = f"{self.symbol}:{self.interval}:{self.day}"
        return base if self.collection == LEDGER_DEFAULT_COLLECTION else f"{self.collection}:{base}"

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
