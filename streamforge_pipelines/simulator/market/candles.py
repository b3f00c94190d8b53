"""The market's candles: exact sums of its trades, rendered as Binance's kline rows.

**Candles** are sums of the trades: ``1m`` candles are computed from the cells (no trade needs to be
drawn), larger intervals aggregate minutes exactly, ``1s`` candles aggregate the drawn trades of
each second — except that a second *opens at the previous second's close* (its high/low include
it), so 1s candles are continuous like the minutes; a second without trades has O=H=L=C=previous
close and zero volume. Sixty seconds still aggregate exactly to their minute. The still-open
candle at ``now_ms`` aggregates the closed minutes and the seconds of the current minute so far.

Rendered rows are cached per day (sub-day intervals), per hour (``1s``) and per candle (``1d`` and
longer, summed from day aggregates), so paging through years of candles renders each row once.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from streamforge_pipelines.intervals import (
    DAY_MS,
    FIXED_INTERVAL_MS,
    HOUR_MS,
    MINUTE_MS,
    floor_open_time,
    next_open_time,
)

from ..symbols import SymbolSpec
from .base import MINUTES_PER_DAY, SECOND_MS
from .frames import (
    CLOSE,
    HIGH,
    LOW,
    OPEN,
    QUOTE,
    TAKER,
    TAKER_QUOTE,
    TRADES,
    VOL,
    Agg,
    agg_one,
    aggregate,
    aggregate_masked,
    combine,
    render,
    render_one,
)
from .trades import TradesModel

__all__ = ["CandleModel"]

# Cache sizes (entries): a second frame is ~260 kB, a day of rendered 1m rows ~1 MB.
_SECOND_FRAMES = 64
_DAY_ROWS = 128
_HOUR_ROWS = 16
_DAY_AGGS = 1 << 16
_LONG_ROWS = 1 << 14


class CandleModel(TradesModel):
    """Candles of every interval from the day frames (minutes) and the drawn trades (seconds)."""

    def _install_caches(self) -> None:
        super()._install_caches()
        self._second_frame = lru_cache(maxsize=_SECOND_FRAMES)(self._compute_second_frame)
        self._day_rows = lru_cache(maxsize=_DAY_ROWS)(self._compute_day_rows)
        self._hour_rows = lru_cache(maxsize=_HOUR_ROWS)(self._compute_hour_rows)
        self._day_agg = lru_cache(maxsize=_DAY_AGGS)(self._compute_day_agg)
        self._long_row = lru_cache(maxsize=_LONG_ROWS)(self._compute_long_row)

    # ------------------------------------------------------------------ rows

    def _rows(self, spec: SymbolSpec, interval: str, opens: list[int]) -> list[list]:
        if interval == "1s":
            return self._chunked_rows(spec, opens, HOUR_MS, self._hour_rows)
        step = FIXED_INTERVAL_MS.get(interval)
        if step is not None and step < DAY_MS:
            return self._chunked_rows(spec, opens, DAY_MS, self._day_rows, interval)
        return [list(self._long_row(spec.name, interval, t)) for t in opens]

    @staticmethod
    def _chunked_rows(
        spec: SymbolSpec,
        opens: list[int],
        chunk_ms: int,
        rows_of: Callable[..., tuple[Sequence[int], list[tuple]]],
        *extra: str,
    ) -> list[list]:
        out: list[list] = []
        first, last = opens[0], opens[-1]
        chunk = first - first % chunk_ms
        while chunk <= last:
            chunk_opens, rows = rows_of(spec.name, *extra, chunk // chunk_ms)
            i = bisect_left(chunk_opens, first)
            j = bisect_right(chunk_opens, last)
            out.extend(list(r) for r in rows[i:j])
            chunk += chunk_ms
        return out

    def _compute_day_rows(self, name: str, interval: str, day: int) -> tuple[Sequence[int], list[tuple]]:
        """Rendered candles of ``interval`` (< 1d) that open on ``day``: (open times, rows)."""
        step = FIXED_INTERVAL_MS[interval]
        k = step // MINUTE_MS
        frame = self._minute_frame(name, day)
        mask = self._day(name, day)[1].mask
        day_ms = day * DAY_MS
        if mask is None:
            agg = aggregate(frame, k) if k > 1 else frame
            opens: Sequence[int] = range(day_ms, day_ms + DAY_MS, step)
        else:
            has, agg = aggregate_masked(frame, mask, k)
            opens = (day_ms + np.flatnonzero(has) * step).tolist()
        return opens, render(opens, step, agg)

    def _compute_hour_rows(self, name: str, hour: int) -> tuple[Sequence[int], list[tuple]]:
        """Rendered 1s candles of ``hour`` (hours since the epoch): (open times, rows)."""
        hour_ms = hour * HOUR_MS
        frame = self._second_frame(name, hour)
        day, h_in_day = divmod(hour, 24)
        mask = self._day(name, day)[1].mask
        if mask is None or mask[h_in_day * 60 : h_in_day * 60 + 60].all():
            opens: Sequence[int] = range(hour_ms, hour_ms + HOUR_MS, SECOND_MS)
        else:
            active = np.repeat(mask[h_in_day * 60 : h_in_day * 60 + 60], 60)
            frame = frame[:, active]
            opens = (hour_ms + np.flatnonzero(active) * SECOND_MS).tolist()
        return opens, render(opens, SECOND_MS, frame)

    def _compute_long_row(self, name: str, interval: str, open_ms: int) -> tuple:
        """A closed candle of 1d or longer, summed from day aggregates."""
        spec = self._by_name[name]
        end = next_open_time(open_ms, interval)
        agg = self._agg_range(spec, open_ms, end)
        assert agg is not None, "a selected candle has at least one active minute"
        return render_one(open_ms, end - 1, agg)

    def _open_row(self, spec: SymbolSpec, interval: str, open_ms: int, now_ms: int) -> tuple | None:
        """The candle still open at ``now_ms``, as it stands then (None: no active minute yet)."""
        close_ms = next_open_time(open_ms, interval) - 1
        if interval == "1s":
            return render_one(open_ms, close_ms, self._agg_seconds(spec, open_ms, open_ms + SECOND_MS))
        return self._open_row_until(spec, open_ms, close_ms, now_ms)

    def _open_row_until(self, spec: SymbolSpec, open_ms: int, close_ms: int, now_ms: int) -> tuple | None:
        """The minute-aligned candle ``[open_ms, close_ms]`` still open at ``now_ms`` (None: empty)."""
        minute = floor_open_time(now_ms, "1m")
        parts = [a for a in (self._agg_range(spec, open_ms, minute),) if a is not None]
        if self._minute_active(spec, minute):
            parts.append(self._agg_seconds(spec, minute, floor_open_time(now_ms, "1s") + SECOND_MS))
        return render_one(open_ms, close_ms, combine(parts)) if parts else None

    # ------------------------------------------------------------------ aggregation

    def _agg_range(self, spec: SymbolSpec, start_ms: int, end_ms: int) -> Agg | None:
        """Aggregate of the active minutes in ``[start_ms, end_ms)`` (minute-aligned)."""
        start_ms = max(start_ms, spec.first_minute_ms)
        parts: list[Agg] = []
        t = start_ms
        while t < end_ms:
            day = t // DAY_MS
            day_end = (day + 1) * DAY_MS
            stop = min(end_ms, day_end)
            if t == day * DAY_MS and stop == day_end:
                agg = self._day_agg(spec.name, day)
            else:
                i, j = (t - day * DAY_MS) // MINUTE_MS, (stop - day * DAY_MS) // MINUTE_MS
                agg = self._agg_minutes(spec.name, day, i, j)
            if agg is not None:
                parts.append(agg)
            t = stop
        return combine(parts) if parts else None

    def _agg_minutes(self, name: str, day: int, i: int, j: int) -> Agg | None:
        frame, cells = self._day(name, day)
        sub = frame[:, i:j] if cells.mask is None else frame[:, i:j][:, cells.mask[i:j]]
        return agg_one(sub) if sub.shape[1] else None

    def _compute_day_agg(self, name: str, day: int) -> Agg | None:
        spec = self._by_name[name]
        if day * DAY_MS + DAY_MS <= spec.first_minute_ms:
            return None
        return self._agg_minutes(name, day, 0, MINUTES_PER_DAY)

    def _agg_seconds(self, spec: SymbolSpec, start_ms: int, end_ms: int) -> Agg:
        """Aggregate of the 1s candles in ``[start_ms, end_ms)``, inside one hour."""
        hour = start_ms // HOUR_MS
        frame = self._second_frame(spec.name, hour)
        i = (start_ms - hour * HOUR_MS) // SECOND_MS
        j = (end_ms - hour * HOUR_MS) // SECOND_MS
        return agg_one(frame[:, i:j])

    # ------------------------------------------------------------------ seconds

    def _compute_second_frame(self, name: str, hour: int) -> np.ndarray:
        """The 3600 one-second candles of ``hour``, aggregated from its trades ((9, 3600) int64)."""
        minutes = [self._minute_trades(name, hour * 60 + m) for m in range(60)]
        price = np.concatenate([m.price for m in minutes])
        qty = np.concatenate([m.qty for m in minutes])
        buy = np.concatenate([m.buy for m in minutes])
        quote = np.concatenate([m.quote for m in minutes])
        sec = (np.concatenate([m.time for m in minutes]) - hour * HOUR_MS) // SECOND_MS
        day, h_in_day = divmod(hour, 24)
        init = int(self._minute_frame(name, day)[OPEN, h_in_day * 60])
        frame = np.zeros((9, 3600), dtype=np.int64)
        if len(price):
            secs, starts = np.unique(sec, return_index=True)
            ends = np.append(starts[1:], len(price))
            frame[OPEN, secs] = price[starts]
            frame[CLOSE, secs] = price[ends - 1]
            frame[HIGH, secs] = np.maximum.reduceat(price, starts)
            frame[LOW, secs] = np.minimum.reduceat(price, starts)
            frame[VOL, secs] = np.add.reduceat(qty, starts)
            frame[QUOTE, secs] = np.add.reduceat(quote, starts)
            frame[TRADES, secs] = ends - starts
            frame[TAKER, secs] = np.add.reduceat(qty * buy, starts)
            frame[TAKER_QUOTE, secs] = np.add.reduceat(quote * buy, starts)
            has = np.zeros(3600, dtype=bool)
            has[secs] = True
        else:
            has = np.zeros(3600, dtype=bool)
        last = np.maximum.accumulate(np.where(has, np.arange(3600), -1))
        close = np.where(last >= 0, frame[CLOSE, np.maximum(last, 0)], init)
        frame[CLOSE] = close
        frame[OPEN] = np.concatenate(([init], close[:-1]))  # a second opens at the previous close
        frame[HIGH] = np.where(has, np.maximum(frame[HIGH], frame[OPEN]), close)
        frame[LOW] = np.where(has, np.minimum(frame[LOW], frame[OPEN]), close)
        return frame
