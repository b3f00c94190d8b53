"""Kline intervals as Binance spells them, the arithmetic on them, and the kernel's time helpers.

Every module that turns an interval into milliseconds, aligns a timestamp to a candle boundary or
counts the candles in a range uses this module, so the loader, the simulator and the store agree.
The same goes for "now" in epoch milliseconds (:func:`now_ms`), UTC days (:func:`day_range_ms`,
:func:`days_between`, :func:`ms_to_day`) and half-open ``[start, end)`` ranges
(:func:`merge_ranges`): one definition each, here at the bottom, for every layer above.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Literal

#: Binance spot opened on 2017-07-14: the first day there is market data of (the first daily
#: partition, and the earliest day a command's ``time_range`` may start). Kept here, free of Dagster,
#: so the protocol can check commands with it; ``partitions.py`` imports it.
FIRST_DAY = "2017-07-14"
FIRST_DATE = date.fromisoformat(FIRST_DAY)

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

#: Fixed-length intervals in milliseconds. ``1M`` (calendar month) is handled separately.
FIXED_INTERVAL_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": DAY_MS,
    "3d": 3 * DAY_MS,
    "1w": 7 * DAY_MS,
}

#: Every interval Binance spot accepts, in its own order.
INTERVALS: tuple[str, ...] = (*FIXED_INTERVAL_MS, "1M")
#: Intervals with daily kline files in the bulk archive (the official download script's
#: DAILY_INTERVALS): not 3d, 1w, 1M.
DAILY_INTERVALS = frozenset(("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d"))

#: A half-open ``[start, end)`` range of milliseconds (or of ids).
Range = tuple[int, int]

# Binance weeks open on Monday; the Unix epoch was a Thursday.
_WEEK_OFFSET_MS = 4 * DAY_MS


class IntervalError(ValueError):
    """An interval string that Binance does not know."""


def check_interval(interval: str) -> str:
    """Return ``interval`` unchanged, or raise :class:`IntervalError` naming the valid ones."""
    if interval not in INTERVALS:
        raise IntervalError(f"unknown interval {interval!r}; valid: {', '.join(INTERVALS)}")
    return interval


#: The exchange's markets StreamForge loads: spot, and USD-M futures (``/fapi``).
Market = Literal["spot", "usdm"]
MARKETS: tuple[str, ...] = ("spot", "usdm")


def check_market(market: str) -> str:
    """``market`` unchanged, or ValueError naming the markets."""
    if market not in MARKETS:
        raise ValueError(f"unknown market {market!r}; choose one of {', '.join(MARKETS)}")
    return market


def check_market_interval(market: str, interval: str) -> None:
    """ValueError (one line) for an interval the market has no klines of: 1s exists only on spot."""
    if check_market(market) == "usdm" and interval == "1s":
        raise ValueError("USD-M futures have no 1s klines (1s candles exist only on spot)")


def interval_ms(interval: str) -> int:
    """Length of a fixed interval in milliseconds (``1M`` has no fixed length)."""
    check_interval(interval)
    if interval == "1M":
        raise IntervalError("interval '1M' is a calendar month and has no fixed length")
    return FIXED_INTERVAL_MS[interval]


def _month_start(ms: int) -> datetime:
    d = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return datetime(d.year, d.month, 1, tzinfo=UTC)


def _add_month(d: datetime) -> datetime:
    return datetime(d.year + (d.month // 12), d.month % 12 + 1, 1, tzinfo=UTC)


def floor_open_time(ms: int, interval: str) -> int:
    """The open time of the candle of ``interval`` that contains ``ms`` (UTC boundaries)."""
    check_interval(interval)
    if interval == "1M":
        return int(_month_start(ms).timestamp() * 1000)
    step = FIXED_INTERVAL_MS[interval]
    offset = _WEEK_OFFSET_MS if interval == "1w" else 0
    return ((ms - offset) // step) * step + offset


def next_open_time(open_ms: int, interval: str) -> int:
    """The open time of the candle after the one that opens at ``open_ms``."""
    if interval == "1M":
        return int(_add_month(_month_start(open_ms)).timestamp() * 1000)
    return open_ms + interval_ms(interval)


def close_time(open_ms: int, interval: str) -> int:
    """Binance's close time: the next open time minus one millisecond."""
    return next_open_time(open_ms, interval) - 1


def open_times(start_ms: int, end_ms: int, interval: str) -> list[int]:
    """Open times of every candle of ``interval`` that opens in ``[start_ms, end_ms)``."""
    out: list[int] = []
    t = floor_open_time(start_ms, interval)
    if t < start_ms:
        t = next_open_time(t, interval)
    while t < end_ms:
        out.append(t)
        t = next_open_time(t, interval)
    return out


def count_open_times(start_ms: int, end_ms: int, interval: str) -> int:
    """Number of candles of ``interval`` that open in ``[start_ms, end_ms)``."""
    if interval == "1M":
        return len(open_times(start_ms, end_ms, interval))
    step = interval_ms(interval)
    first = floor_open_time(start_ms, interval)
    if first < start_ms:
        first += step
    if first >= end_ms:
        return 0
    return (end_ms - 1 - first) // step + 1


def day_start_ms(d: date) -> int:
    """Milliseconds since the epoch at 00:00 UTC of ``d``."""
    return calendar.timegm(d.timetuple()) * 1000


def day_range_ms(first: date, last: date) -> tuple[int, int]:
    """``[start, end)`` in milliseconds covering the whole days ``first`` .. ``last`` inclusive."""
    return day_start_ms(first), day_start_ms(last + timedelta(days=1))


def ms_to_day(ms: int) -> date:
    """The UTC date that contains the millisecond timestamp ``ms``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


def days_between(first: date, last: date) -> list[date]:
    """Every UTC day from ``first`` to ``last``, both included (empty when ``last < first``)."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# ---- the clock and ranges -----------------------------------------------------------------------


def now_ms() -> int:
    """The wall clock in epoch milliseconds: "now" wherever a caller does not pass its own clock."""
    return int(time.time() * 1000)


def merge_ranges(ranges: Iterable[Sequence[int]]) -> list[Range]:
    """Sorted, with overlapping and touching ``[start, end)`` ranges merged; empty ones dropped."""
    out: list[list[int]] = []
    for a, b in sorted((int(r[0]), int(r[1])) for r in ranges):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def clip_ranges(ranges: Iterable[Sequence[int]], start: int, end: int) -> list[Range]:
    """The parts of ``ranges`` inside ``[start, end)``, merged."""
    return merge_ranges((max(int(a), start), min(int(b), end)) for a, b in ranges)
