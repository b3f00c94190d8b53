"""Partitioning of market-data assets.

One dimension: **days** (UTC). A partition of ``candles_<interval>`` is one day for the whole
symbol universe; which symbols is run configuration (default: the universe setting). Why not
days × symbols: Dagster advises at most ~100k partitions per asset, and 500 symbols × 5 years is
900k. Days alone stay at ~3,400 from Binance's launch to now, backfills of a date range run as a
single run (``BackfillPolicy.single_run``), and a symbol subset is a config field, not a partition.
"""

from __future__ import annotations

import dagster as dg

from .intervals import FIRST_DAY  # Binance spot opened on 2017-07-14 (Dagster-free, for the protocol)

__all__ = ["CANDLE_INTERVALS", "DAILY", "FIRST_DAY"]

DAILY = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC")

#: Intervals that have a candles asset (daily partitions need intervals of one day or less).
CANDLE_INTERVALS: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h", "1d")
