"""What a dataset is: one declarative :class:`DatasetSpec` per dataset, and the :class:`PageCodec`
its records travel in.

A spec says everything the layers above need to carry a dataset without knowing it by name:

* **where it travels** — the Kafka topic (from the settings, so deployments rename topics without
  code) and the page codec of its records;
* **where it rests** — the store collection, the document fields with their types (the store builds
  its table or collection from them), the key function, the fields that name one *series* (a symbol's
  candles of one interval, a symbol's trades of one kind), the time field and the field that orders a
  series and is unique in it;
* **how completeness is judged** — the ledger kind: ``time_grid`` (a fixed grid of times per day:
  candles), ``id_ranges`` (consecutive ids per day: trades) or ``none`` (live only: book snapshots);
* **who produces it** — the task types whose loaders write it.

The store's generic queries (upsert, count, read, per-day counts, duplicates, the ordering values of
a range), the connector's topic -> collection routing, the command builder, the asset factory and the
ledgers are all driven by a spec; adding a dataset is adding a spec, a codec and a loader
(``docs/architecture.md``). This module imports nothing of StreamForge but the settings type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from ..settings import Settings

#: A document field's type: ``str`` (identifiers and the exchange's decimal strings, never floats),
#: ``int`` (milliseconds since the epoch, ids, counts), ``bool``; ``?`` allows ``None``.
FieldType = Literal["str", "int", "bool", "str?", "int?"]
FIELD_TYPES: tuple[str, ...] = ("str", "int", "bool", "str?", "int?")

#: How a dataset's completeness is judged per (series, UTC day); ``none``: a live-only dataset
#: (book snapshots) that nothing loads over a time range.
LedgerKind = Literal["time_grid", "id_ranges", "none"]


class PageCodec(Protocol):
    """How a dataset's records look on its Kafka topic.

    A loader publishes *pages*: JSON objects ``{"record": <kind>, <header fields>, "rows": [...]}``.
    The connector reads ``record`` and asks the topic's spec's codec to :meth:`check` the page (one
    line naming the bad field, as :class:`~streamforge_pipelines.protocol.ProtocolError`, for a
    record that must be dead-lettered); a checked page is counted and turned into store documents by
    :meth:`docs`.

    Optional: ``rows(page) -> PageRows | None``, the page as columns (:class:`PageRows`), lets the
    SQLite adapter bind a page's rows as they are, without building documents (the connector's hot
    path for candles); a codec without it, or a page it returns None for, goes through :meth:`docs`.
    """

    #: The ``record`` values this codec reads (a page kind, and optionally a single-record kind).
    kinds: tuple[str, ...]

    def check(self, value: dict[str, Any]) -> Any:
        """The checked page (any shape the codec's other methods accept); raises ProtocolError."""
        ...

    def count(self, page: Any) -> int:
        """The number of documents in a checked page."""
        ...

    def queue_id(self, page: Any) -> str:
        """The ``queue_id`` of the task that wrote a checked page."""
        ...

    def docs(self, page: Any) -> list[dict[str, Any]]:
        """The store documents (with ``key``) of a checked page."""
        ...


@dataclass(frozen=True, slots=True)
class PageRows:
    """A checked page as columns (a codec's optional ``rows``): the values every row shares, the
    field of each row position, and the rows as they came (already checked against the spec's field
    types by the codec's ``check``).

    Every spec field but ``key`` is either in :attr:`shared` or in :attr:`columns`; the key of a row is
    :attr:`key_prefix` followed by the decimal digits of its order value (``BTCUSDT:1m:`` +
    ``1722470400000``): the codec guarantees that equals the spec's ``key`` of the row.
    """

    shared: Mapping[str, Any]
    columns: tuple[str, ...]
    rows: Sequence[Sequence[Any]]
    key_prefix: str


class TuplePageCodec:
    """A base for codecs whose checked page is a tuple: the ``queue_id`` at :attr:`queue_id_at`, the
    page's rows (or documents) at :attr:`rows_at`; it supplies :meth:`PageCodec.count` and
    :meth:`PageCodec.queue_id`."""

    queue_id_at: int
    rows_at: int

    def count(self, page: tuple[Any, ...]) -> int:
        return len(page[self.rows_at])

    def queue_id(self, page: tuple[Any, ...]) -> str:
        queue_id: str = page[self.queue_id_at]
        return queue_id


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """One dataset, declared once (see the module docstring)."""

    #: Unique name (``candles``, ``candles_usdm``, ``trades``); also the asset's name stem.
    name: str
    #: One line for humans (asset descriptions, ``docs/architecture.md``).
    description: str
    #: Its Kafka topic in a deployment: a :class:`~streamforge_pipelines.settings.Settings` attribute
    #: for the built-in datasets (``operator.attrgetter("topic_candles")``), so deployments rename
    #: topics without code.
    topic_of: Callable[[Settings], str]
    #: The store collection (SQLite table / ArangoDB collection) its documents go to.
    collection: str
    #: Document fields in storage order, with their types; the first is ``key``.
    fields: Mapping[str, FieldType]
    #: The fields that name one series (``("symbol", "interval")``); queries filter on all of them.
    series: tuple[str, ...]
    #: The field a time range selects on (milliseconds since the epoch).
    time_field: str
    #: The field that orders a series and is unique in it (``open_time``, ``id``).
    order_field: str
    #: ``key(series values..., order value)`` -> the document key; the same function the codec uses.
    key: Callable[..., str]
    #: How its records travel (:class:`PageCodec`).
    codec: PageCodec
    #: How completeness is judged: a grid of times per day, or consecutive ids per day.
    ledger: LedgerKind
    #: The command ``type`` values whose loaders write this dataset.
    task_types: frozenset[str]
    #: The market its data comes from (``spot``, ``usdm``).
    market: str = "spot"
    #: Fields whose values are restricted to a fixed set (``{"kind": {"agg", "trade"}}``): the store
    #: refuses a document with any other value there.
    choices: Mapping[str, frozenset[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = tuple(self.fields)
        if not names or names[0] != "key":
            raise ValueError(f"dataset {self.name!r}: the first field must be 'key', got {names[:1]}")
        bad = {n: t for n, t in self.fields.items() if t not in FIELD_TYPES}
        if bad:
            raise ValueError(f"dataset {self.name!r}: unknown field types {bad} (known: {FIELD_TYPES})")
        for what in (*self.series, self.time_field, self.order_field, *self.choices):
            if what not in self.fields:
                raise ValueError(f"dataset {self.name!r}: {what!r} is not one of its fields")
        if self.ledger not in ("time_grid", "id_ranges", "none"):
            raise ValueError(f"dataset {self.name!r}: unknown ledger kind {self.ledger!r}")

    @property
    def field_names(self) -> tuple[str, ...]:
        """The document fields in storage order."""
        return tuple(self.fields)

    def topic(self, settings: Settings) -> str:
        """The Kafka topic of its records in this deployment."""
        return self.topic_of(settings)

    def check_series(self, series: Sequence[Any]) -> tuple[Any, ...]:
        """``series`` as a tuple of as many values as the spec has series fields, else ValueError."""
        values = tuple(series)
        if len(values) != len(self.series):
            raise ValueError(f"dataset {self.name!r}: a series is {self.series}, got {values!r}")
        return values
