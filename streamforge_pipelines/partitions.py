"""Partitioning of market-data assets, and the span of days (and symbols) a run covers.

The loaded datasets (``candles_<interval>``, ``agg_trades``, ``candle_coverage``) are partitioned
**day × symbol** (:data:`DAY_SYMBOL`): ``date`` (UTC days from Binance's launch) × ``symbol`` (the
dynamic partitions ``symbols``, seeded from the universe by the ``symbol_partitions_sensor`` and by
whoever launches a symbol the instance does not know yet), so the UI's partition grid shows which
symbol-days are complete and a backfill of a range × a symbol subset materializes exactly those.
``docs/partitioning.md`` has the measurement behind the choice (68,000 partitions: the asset page
query stays under 0.11 s). What is computed over all symbols of a day (``correlation_graph``,
``gnn_model``) stays **daily** (:data:`DAILY`); its dependency on the candles maps a day to all of
the day's symbols.

A run covers a rectangle: the days ``first`` .. ``last`` × a stretch of symbols (a range of the
dynamic partitions, in the order they were added). :func:`partition_span` reads it from the run
once, so no asset computes first/last day, label, symbols or millisecond bounds itself;
:func:`range_tags` is the other direction, the tags that make a run requested by a sensor, a
schedule or the runner cover a span, and :func:`ensure_symbols` adds the symbols a run needs and
says which stretches of the symbol order they form (one run per stretch).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg

from .intervals import FIRST_DAY, day_range_ms, days_between
from .names import (
    CANDLE_INTERVALS,
    DATE_DIM,
    PARTITION_RANGE_END,
    PARTITION_RANGE_START,
    SYMBOL_DIM,
    SYMBOL_PARTITIONS,
)

__all__ = [
    "CANDLE_INTERVALS",
    "DAILY",
    "DAY_SYMBOL",
    "FIRST_DAY",
    "SYMBOLS",
    "PartitionSpan",
    "day_symbol_key",
    "ensure_symbols",
    "partition_span",
    "range_tags",
    "split_key",
    "symbol_stretches",
]

DAILY = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC")
#: The symbols the day × symbol assets know (instance state: added, never removed by the code).
SYMBOLS = dg.DynamicPartitionsDefinition(name=SYMBOL_PARTITIONS)
DAY_SYMBOL = dg.MultiPartitionsDefinition({DATE_DIM: DAILY, SYMBOL_DIM: SYMBOLS})


@dataclass(frozen=True)
class PartitionSpan:
    """The UTC days ``first`` .. ``last`` (inclusive) of one run, and its symbols (those of its
    day × symbol partitions, in the symbol order; empty for a daily asset)."""

    first: date
    last: date
    symbols: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``2024-08-01`` for one day, ``2024-08-01..2024-08-07`` for a range (task records, messages)."""
        return self.first.isoformat() if self.first == self.last else f"{self.first}..{self.last}"

    @property
    def days(self) -> list[date]:
        return days_between(self.first, self.last)

    @property
    def range_ms(self) -> tuple[int, int]:
        """``[start, end)`` in epoch milliseconds covering the whole days."""
        return day_range_ms(self.first, self.last)


def day_symbol_key(day: date | str, symbol: str) -> str:
    """The partition key of one symbol-day: ``2024-08-01|BTCUSDT``."""
    day = day if isinstance(day, str) else day.isoformat()
    return str(dg.MultiPartitionKey({DATE_DIM: day, SYMBOL_DIM: symbol}))


def split_key(key: str) -> tuple[date, str | None]:
    """The day and symbol of a partition key (``None``: a daily key)."""
    day, _, symbol = key.partition("|")
    return date.fromisoformat(day), symbol or None


def partition_span(context: dg.AssetExecutionContext) -> PartitionSpan:
    """The days (and symbols) the run's partitions cover (a single-run backfill covers its whole range)."""
    keys = context.partition_key_range
    first, first_symbol = split_key(keys.start)
    last, _ = split_key(keys.end)
    if first_symbol is None:
        return PartitionSpan(first, last)
    symbols = dict.fromkeys(s for _, s in map(split_key, context.partition_keys))
    return PartitionSpan(first, last, tuple(s for s in symbols if s))


def range_tags(first: date, last: date, symbols: tuple[str, str] | None = None) -> dict[str, str]:
    """The run tags that make a run cover ``first`` .. ``last`` (× the symbols ``symbols[0]`` ..
    ``symbols[1]`` of the symbol order, for a day × symbol asset)."""
    if symbols is None:
        return {PARTITION_RANGE_START: first.isoformat(), PARTITION_RANGE_END: last.isoformat()}
    return {
        PARTITION_RANGE_START: day_symbol_key(first, symbols[0]),
        PARTITION_RANGE_END: day_symbol_key(last, symbols[1]),
    }


def symbol_stretches(order: Sequence[str], wanted: Iterable[str]) -> list[tuple[str, str]]:
    """The ``wanted`` symbols as stretches (first, last) of consecutive symbols in ``order`` (the
    instance's symbol partitions): a run's partitions are a rectangle, so one run per stretch."""
    position = {s: i for i, s in enumerate(order)}
    indices = sorted({position[s] for s in wanted})
    stretches: list[list[int]] = []
    for i in indices:
        if stretches and i == stretches[-1][1] + 1:
            stretches[-1][1] = i
        else:
            stretches.append([i, i])
    return [(order[a], order[b]) for a, b in stretches]


def ensure_symbols(instance: dg.DagsterInstance, symbols: Iterable[str]) -> list[tuple[str, str]]:
    """Add the ``symbols`` the instance's symbol partitions lack (sorted, so a new universe is one
    stretch); return the stretches they form in the symbol order."""
    wanted = sorted({s.upper() for s in symbols})
    known = list(instance.get_dynamic_partitions(SYMBOL_PARTITIONS))
    new = [s for s in wanted if s not in set(known)]
    if new:
        instance.add_dynamic_partitions(SYMBOL_PARTITIONS, new)
        known += new
    return symbol_stretches(known, wanted)
