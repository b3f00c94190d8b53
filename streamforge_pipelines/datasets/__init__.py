"""Datasets: one :class:`DatasetSpec` per dataset, and the registry the layers above look them up in.

Built in: :data:`CANDLES` (spot klines), :data:`CANDLES_USDM` (USD-M futures klines),
:data:`TRADES` (aggregate trades and trades), :data:`BOOK` and :data:`BOOK_DIFFS` (live order-book
snapshots and applied diffs). A new
dataset is a spec, a codec and a loader: :func:`register` makes its spec known to the connector's
routing, the command validator (its task types) and the store; see ``docs/architecture.md``.

Above the kernel (settings, intervals, protocol), below the store, the workers and the queue-manager;
never imports Dagster.
"""

from __future__ import annotations

from ..protocol import register_task_types, unregister_task_types
from ..settings import Settings
from .book import BOOK, BOOK_CODEC, BOOK_DIFFS, BOOK_DIFFS_CODEC, BookCodec
from .candles import CANDLE_CODEC, CANDLES, CANDLES_USDM, CandleCodec
from .spec import FIELD_TYPES, DatasetSpec, FieldType, LedgerKind, PageCodec, PageRows
from .trades import TRADES, TRADES_CODEC, TradesCodec

__all__ = [
    "BOOK",
    "BOOK_CODEC",
    "BOOK_DIFFS",
    "BOOK_DIFFS_CODEC",
    "CANDLES",
    "CANDLES_USDM",
    "CANDLE_CODEC",
    "FIELD_TYPES",
    "TRADES",
    "TRADES_CODEC",
    "BookCodec",
    "CandleCodec",
    "DatasetSpec",
    "FieldType",
    "LedgerKind",
    "PageCodec",
    "PageRows",
    "TradesCodec",
    "all_specs",
    "candles",
    "for_kind",
    "for_topic",
    "register",
    "unregister",
]

_BUILT_IN: tuple[DatasetSpec, ...] = (CANDLES, CANDLES_USDM, TRADES, BOOK, BOOK_DIFFS)
_SPECS: dict[str, DatasetSpec] = {spec.name: spec for spec in _BUILT_IN}


def all_specs() -> tuple[DatasetSpec, ...]:
    """Every known dataset, built-in ones first, then registered ones in registration order."""
    return tuple(_SPECS.values())


def candles(market: str = "spot") -> DatasetSpec:
    """The candle dataset of a market (``spot``, ``usdm``)."""
    for spec in _SPECS.values():
        if spec.ledger == "time_grid" and spec.market == market and spec.codec is CANDLE_CODEC:
            return spec
    raise KeyError(f"no candle dataset for market {market!r}")


def for_topic(settings: Settings, topic: str) -> DatasetSpec | None:
    """The dataset whose records travel on ``topic`` in this deployment, or None."""
    for spec in _SPECS.values():
        if spec.topic(settings) == topic:
            return spec
    return None


def for_kind(kind: object) -> DatasetSpec | None:
    """The (first) dataset whose codec reads records of ``kind`` (the ``record`` field), or None."""
    for spec in _SPECS.values():
        if kind in spec.codec.kinds:
            return spec
    return None


def register(spec: DatasetSpec) -> DatasetSpec:
    """Make a new dataset known (its name, collection and task types must be new)."""
    clashes = [
        what
        for what, taken in (
            ("name", spec.name in _SPECS),
            ("collection", any(s.collection == spec.collection for s in _SPECS.values())),
            ("task types", any(s.task_types & spec.task_types for s in _SPECS.values())),
        )
        if taken
    ]
    if clashes:
        raise ValueError(f"dataset {spec.name!r}: {', '.join(clashes)} already taken")
    _SPECS[spec.name] = spec
    register_task_types(spec.task_types, repairs="ranges" if spec.ledger == "time_grid" else "id_ranges")
    return spec


def unregister(name: str) -> None:
    """Forget a registered dataset (built-in ones stay)."""
    if any(spec.name == name for spec in _BUILT_IN):
        raise ValueError(f"dataset {name!r} is built in")
    spec = _SPECS.pop(name, None)
    if spec is not None:
        unregister_task_types(spec.task_types)
