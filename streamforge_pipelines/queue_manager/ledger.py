"""The completeness ledger: per (symbol, interval, UTC day), candles expected vs stored.

For every day of a load the ledger compares the closed candles the exchange should have
(``expected``: every open time of the interval in the day, up to the still-open candle) with the
candles in the store, and sorts the absent ones into two kinds:

* **downtime** — absent, and the exchange confirmed it has none: a targeted REST re-fetch of the
  range returned no candles for them (exchange downtime, or before the symbol's listing). The
  confirmed ranges are persisted with the ledger (``ledger`` collection, key
  ``SYMBOL:interval:YYYY-MM-DD``), so later checks do not ask the exchange again;
* **missing** — absent without that confirmation: data lost or never loaded. ``missing_ranges`` are
  the merged open-time ranges ``[start_ms, end_ms)`` of those candles, what a repair re-fetches.

``expected == stored + downtime + missing`` for every entry; ``status`` is ``missing`` when
anything is missing, else ``downtime`` when some candles are confirmed absent, else ``complete``.

Plain functions over a :class:`~streamforge_pipelines.store.base.Store` (no Dagster, no Kafka):
:func:`build_ledger` reads the store (one aggregate query for the whole range, open times only for
the days that fall short), :func:`repair_ranges` turns the ledger into what a repair should fetch,
:func:`check_summary` into the verdict of the candles assets' ``complete`` check.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ..datasets import CANDLES, DatasetSpec
from ..intervals import (
    Range,
    clip_ranges,
    count_open_times,
    day_range_ms,
    days_between,
    floor_open_time,
    interval_ms,
    merge_ranges,
    next_open_time,
    open_times,
)
from ..store import LedgerRecord, Store

COMPLETE = "complete"
DOWNTIME = "downtime"
MISSING = "missing"
STATUSES: tuple[str, ...] = (COMPLETE, DOWNTIME, MISSING)


# ---- ranges -------------------------------------------------------------------------------------


def runs(times: Sequence[int], interval: str) -> list[Range]:
    """Consecutive open times (ascending) as ranges ``[first, next open after the last)``."""
    out: list[Range] = []
    for t in times:
        nxt = next_open_time(t, interval)
        if out and out[-1][1] == t:
            out[-1] = (out[-1][0], nxt)
        else:
            out.append((t, nxt))
    return out


def _inside(t: int, ranges: Sequence[Range], starts: Sequence[int]) -> bool:
    i = bisect.bisect_right(starts, t) - 1
    return i >= 0 and ranges[i][0] <= t < ranges[i][1]


# ---- entries ------------------------------------------------------------------------------------


def day_window(day: date, interval: str, clock_ms: int) -> tuple[int, int]:
    """``[start, end)`` of the day's closed candles: the whole day, or up to the still-open candle."""
    start, end = day_range_ms(day, day)
    return start, max(start, min(end, floor_open_time(clock_ms, interval)))


def entry(
    symbol: str,
    interval: str,
    day: date,
    clock_ms: int,
    stored_times: Sequence[int] | None,
    stored_count: int,
    confirmed: Iterable[Sequence[int]] = (),
    collection: str = CANDLES.collection,
) -> LedgerRecord:
    """One day's ledger entry.

    ``stored_times``: the stored open times of the day (None when ``stored_count`` already equals
    the expected count, so the open times need not be read); ``confirmed``: ranges the exchange
    confirmed empty (any extent; clipped to the day).
    """
    start, end = day_window(day, interval, clock_ms)
    expected = count_open_times(start, end, interval) if end > start else 0
    day_start, day_end = day_range_ms(day, day)
    down_ranges = clip_ranges(confirmed, day_start, day_end)
    rec = LedgerRecord(
        symbol=symbol,
        interval=interval,
        day=day.isoformat(),
        expected=expected,
        stored=0,
        collection=collection,
    )
    rec.downtime_ranges = down_ranges
    if stored_times is None:
        rec.stored = min(stored_count, expected)
        if rec.stored < expected:
            raise ValueError("stored_times are needed for a day with fewer candles than expected")
        return rec
    have = set(stored_times)
    grid = open_times(start, end, interval) if expected else []
    absent = [t for t in grid if t not in have]
    rec.stored = expected - len(absent)
    starts = [a for a, _ in down_ranges]
    missing = [t for t in absent if not _inside(t, down_ranges, starts)]
    rec.downtime = len(absent) - len(missing)
    rec.missing = len(missing)
    rec.missing_ranges = runs(missing, interval)
    rec.status = MISSING if rec.missing else DOWNTIME if rec.downtime else COMPLETE
    return rec


def build_ledger(
    store: Store,
    symbols: Sequence[str],
    interval: str,
    first: date,
    last: date,
    clock_ms: int,
    *,
    confirmed: Mapping[str, Iterable[Sequence[int]]] | None = None,
    spec: DatasetSpec = CANDLES,
) -> list[LedgerRecord]:
    """The ledger of ``symbols`` x days ``first`` .. ``last``, ordered by symbol then day.

    Downtime evidence: the ranges already persisted in the ledger, plus ``confirmed`` (symbol ->
    ranges the exchange just confirmed empty). ``spec``: the candle dataset (market) to judge. Nothing
    is written; see :func:`save_ledger`.
    """
    start, end = day_range_ms(first, last)
    collection = spec.collection
    counts = store.counts_by_day(spec, list(symbols), (interval,), start, end)
    previous = {
        (r.symbol, r.day): r.downtime_ranges
        for r in store.read_ledger(list(symbols), interval, first.isoformat(), last.isoformat(), collection)
    }
    fresh = confirmed or {}
    out: list[LedgerRecord] = []
    for symbol in sorted(set(symbols)):
        for day in days_between(first, last):
            key = day.isoformat()
            evidence = [*previous.get((symbol, key), ()), *fresh.get(symbol, ())]
            lo, hi = day_window(day, interval, clock_ms)
            expected = count_open_times(lo, hi, interval) if hi > lo else 0
            n = counts.get((symbol, key), 0)
            times = None if n >= expected else store.order_values(spec, (symbol, interval), lo, hi, by="time")
            out.append(entry(symbol, interval, day, clock_ms, times, n, evidence, collection))
    return out


def window_gaps(
    store: Store,
    symbols: Sequence[str],
    interval: str,
    day: date,
    window_ms: int,
    clock_ms: int,
) -> dict[str, str]:
    """Why the candles of ``day`` and of the trailing window before it do not allow a graph of
    ``day`` yet: ``{symbol: reason}``, empty when they do.

    Every symbol must be complete on ``day`` (downtime is not missing). In the ``window_ms`` before
    the day, a symbol whose earlier days were never loaded (nothing stored) is fine - the first
    snapshots then lack a window and are skipped - but one loaded with gaps inside that window is
    not: its first snapshots would be computed over holes.
    """
    out = {
        e.symbol: f"{e.missing} missing on {e.day}"
        for e in build_ledger(store, symbols, interval, day, day, clock_ms)
        if e.status == MISSING
    }
    day_start = day_range_ms(day, day)[0]
    lo = day_start - window_ms
    if window_ms <= 0:
        return out
    first = day - timedelta(days=-(-window_ms // 86_400_000))
    step = interval_ms(interval)
    before: dict[str, list[LedgerRecord]] = {}
    for e in build_ledger(store, symbols, interval, first, day - timedelta(days=1), clock_ms):
        before.setdefault(e.symbol, []).append(e)
    for symbol, entries in before.items():
        if symbol in out or not any(e.stored for e in entries):
            continue
        gap = sum(
            max(0, min(b, day_start) - max(a, lo)) // step for e in entries for a, b in e.missing_ranges
        )
        if gap:
            out[symbol] = f"{gap} missing in the {window_ms // 60_000}-minute window before {day}"
    return out


def save_ledger(store: Store, entries: Sequence[LedgerRecord]) -> None:
    """Persist the entries (insert or replace by key)."""
    store.put_ledger(entries)


def repair_ranges(entries: Iterable[LedgerRecord]) -> dict[str, list[Range]]:
    """Symbol -> the merged ranges of its missing candles (what a targeted repair fetches)."""
    out: dict[str, list[Range]] = {}
    for e in entries:
        if e.missing_ranges:
            out.setdefault(e.symbol, []).extend(e.missing_ranges)
    return {s: merge_ranges(r) for s, r in out.items()}


# ---- totals and the asset check ----------------------------------------------------------------


@dataclass(frozen=True)
class LedgerTotals:
    expected: int = 0
    stored: int = 0
    downtime: int = 0
    missing: int = 0
    repaired: int = 0

    @classmethod
    def of(cls, entries: Iterable[LedgerRecord]) -> LedgerTotals:
        e = list(entries)
        return cls(
            expected=sum(x.expected for x in e),
            stored=sum(x.stored for x in e),
            downtime=sum(x.downtime for x in e),
            missing=sum(x.missing for x in e),
            repaired=sum(x.repaired for x in e),
        )


@dataclass(frozen=True)
class CheckSummary:
    """The verdict of the candles assets' ``complete`` check: passed iff nothing is missing."""

    passed: bool
    description: str
    metadata: dict[str, Any]


def check_summary(entries: Sequence[LedgerRecord]) -> CheckSummary:
    t = LedgerTotals.of(entries)
    worst = [e for e in entries if e.missing][:10]
    if t.missing:
        where = ", ".join(f"{e.symbol} {e.day} ({e.missing})" for e in worst)
        text = f"{t.missing} candles missing: {where}" + (" ..." if len(worst) == 10 else "")
    elif t.downtime:
        text = f"complete; {t.downtime} candles absent in confirmed exchange downtime"
    else:
        text = "complete"
    return CheckSummary(
        passed=t.missing == 0,
        description=text,
        metadata={
            "expected": t.expected,
            "stored": t.stored,
            "downtime": t.downtime,
            "missing": t.missing,
            "repaired": t.repaired,
            "days_missing": sum(1 for e in entries if e.status == MISSING),
            "days_downtime": sum(1 for e in entries if e.status == DOWNTIME),
        },
    )
