"""Partitioning of market-data assets, and the span of days a run covers.

One dimension: **days** (UTC). A partition of ``candles_<interval>`` is one day for the whole
symbol universe; which symbols is run configuration (default: the universe setting). Why not
days × symbols: Dagster advises at most ~100k partitions per asset, and 500 symbols × 5 years is
900k. Days alone stay at ~3,400 from Binance's launch to now, backfills of a date range run as a
single run (``BackfillPolicy.single_run``), and a symbol subset is a config field, not a partition.

Every daily asset runs over a *span* of days (one day, or a backfill's range as one run):
:func:`partition_span` reads it from the run once, so no asset computes first/last day, label or
millisecond bounds itself; :func:`range_tags` is the other direction, the tags that make a run
requested by a sensor, a schedule or the runner cover a span.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg

from .intervals import FIRST_DAY, day_range_ms, days_between
from .names import PARTITION_RANGE_END, PARTITION_RANGE_START

__all__ = ["CANDLE_INTERVALS", "DAILY", "FIRST_DAY", "PartitionSpan", "partition_span", "range_tags"]

DAILY = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC")

#: Intervals that have a candles asset (daily partitions need intervals of one day or less).
CANDLE_INTERVALS: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h", "1d")


@dataclass(frozen=True)
class PartitionSpan:
    """The UTC days ``first`` .. ``last`` (inclusive) of one run of a daily-partitioned asset."""

    first: date
    last: date

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


def partition_span(context: dg.AssetExecutionContext) -> PartitionSpan:
    """The days the run's partitions cover (a single-run backfill covers its whole range)."""
    keys = context.partition_key_range
    return PartitionSpan(date.fromisoformat(keys.start), date.fromisoformat(keys.end))


def range_tags(first: date, last: date) -> dict[str, str]:
    """The run tags that make a run of a daily-partitioned asset cover ``first`` .. ``last``."""
    return {PARTITION_RANGE_START: first.isoformat(), PARTITION_RANGE_END: last.isoformat()}
