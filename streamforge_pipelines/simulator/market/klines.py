"""Klines as ``GET /api/v3/klines`` serves them: candle selection by Binance's window rules.

Bounds apply to open times; candles that open after ``now``, close before the listing or lie wholly
in downtime do not exist (:meth:`KlinesModel._select` skips them, :meth:`KlinesModel._count_down`
counts them out); the candle open at ``now`` is returned as it stands then.
"""

from __future__ import annotations

from streamforge_pipelines.intervals import (
    FIXED_INTERVAL_MS,
    MINUTE_MS,
    check_interval,
    count_open_times,
    floor_open_time,
    next_open_time,
)

from ..symbols import SymbolSpec
from .base import SECOND_MS
from .opens import backward, ceil_open_time, check_tz, forward, shifts
from .zones import ZonedModel

__all__ = ["KlinesModel"]


class KlinesModel(ZonedModel):
    """``klines`` / ``count_klines`` over the candles of :class:`~.candles.CandleModel` (UTC or zoned)."""

    def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now_ms: int,
        tz_offset_min: int = 0,
    ) -> list[list]:
        """Kline rows as ``GET /api/v3/klines`` returns them, with Binance's window rules.

        No bounds: the most recent ``limit``; only ``start_ms``: the oldest at/after it; only
        ``end_ms``: the newest at/before it; both: from ``start_ms``, never beyond ``end_ms``.
        Bounds apply to open times. Candles that open after ``now_ms``, close before the listing
        or lie wholly in downtime do not exist; the candle open at ``now_ms`` is returned as it
        stands at ``now_ms``.

        ``tz_offset_min`` is the ``timeZone`` parameter in minutes east of UTC (in
        ``[-720, 840]``): interval boundaries are those of local time (a ``1d`` candle opens at
        local midnight), bounds and open times stay UTC. Candles whose boundaries move are
        aggregated exactly from the minutes of their shifted window; where the offset is a
        multiple of the interval nothing changes.
        """
        spec = self.symbol(symbol)
        check_interval(interval)
        if limit < 1:
            raise ValueError("limit must be positive")
        if tz_offset_min and shifts(interval, check_tz(tz_offset_min)):
            return self._shifted_klines(
                spec, interval, start_ms, end_ms, limit, now_ms, tz_offset_min * MINUTE_MS
            )
        opens = self._select(spec, interval, start_ms, end_ms, limit, now_ms)
        if not opens:
            return []
        last = opens[-1]
        if now_ms >= next_open_time(last, interval):
            return self._rows(spec, interval, opens)
        closed = self._rows(spec, interval, opens[:-1]) if len(opens) > 1 else []
        row = self._open_row(spec, interval, last, now_ms)
        if row is not None:
            closed.append(list(row))
        return closed

    def count_klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        end_ms_exclusive: int,
        now_ms: int,
        tz_offset_min: int = 0,
    ) -> int:
        """How many candles the exchange has with an open time in ``[start_ms, end_ms_exclusive)``.

        ``tz_offset_min``: the ``timeZone`` whose local boundaries the candles follow (see
        :meth:`klines`).
        """
        spec = self.symbol(symbol)
        check_interval(interval)
        if tz_offset_min and shifts(interval, check_tz(tz_offset_min)):
            return self._count_shifted(
                spec, interval, start_ms, end_ms_exclusive, now_ms, tz_offset_min * MINUTE_MS
            )
        bounds = self._bounds(spec, interval, now_ms)
        if bounds is None:
            return 0
        lo, hi = bounds
        a, b = max(start_ms, lo), min(end_ms_exclusive, hi + 1)
        if a >= b:
            return 0
        return count_open_times(a, b, interval) - self._count_down(spec, interval, a, b)

    def first_open_time(self, symbol: str, interval: str) -> int:
        """Open time of the symbol's first candle of ``interval`` (the one containing the listing)."""
        return floor_open_time(self.symbol(symbol).first_minute_ms, check_interval(interval))

    # ------------------------------------------------------------------ window selection

    def _bounds(self, spec: SymbolSpec, interval: str, now_ms: int) -> tuple[int, int] | None:
        """Open times of the first and the last candle that can exist at ``now_ms`` (None: none yet)."""
        check_interval(interval)
        if now_ms < spec.first_minute_ms:
            return None
        return floor_open_time(spec.first_minute_ms, interval), floor_open_time(now_ms, interval)

    def _select(
        self,
        spec: SymbolSpec,
        interval: str,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now_ms: int,
    ) -> list[int]:
        bounds = self._bounds(spec, interval, now_ms)
        if bounds is None:
            return []
        lo, hi = bounds
        upper = hi if end_ms is None else min(hi, floor_open_time(end_ms, interval))
        down = self._down[spec.name]
        if start_ms is not None:
            first = max(lo, ceil_open_time(start_ms, interval))
            if not down:
                return forward(first, upper, limit, interval)
            out: list[int] = []
            while len(out) < limit and first <= upper:
                batch = forward(first, upper, limit - len(out), interval)
                out.extend(t for t in batch if not self._candle_down(spec, interval, t))
                first = next_open_time(batch[-1], interval)
            return out
        if not down:
            return backward(lo, upper, limit, interval)
        rev: list[int] = []
        while len(rev) < limit and upper >= lo:
            batch = backward(lo, upper, limit - len(rev), interval)
            rev.extend(t for t in reversed(batch) if not self._candle_down(spec, interval, t))
            upper = floor_open_time(batch[0] - 1, interval)
        return rev[::-1]

    def _candle_down(self, spec: SymbolSpec, interval: str, open_ms: int) -> bool:
        """Whether the candle opening at ``open_ms`` has no active minute (wholly in downtime)."""
        a = max(open_ms, spec.first_minute_ms)
        b = open_ms + SECOND_MS if interval == "1s" else next_open_time(open_ms, interval)
        return any(s <= a and b <= e for s, e in self._down[spec.name])

    def _count_down(self, spec: SymbolSpec, interval: str, a: int, b: int) -> int:
        """Candles with open times in ``[a, b)`` that lie wholly in downtime."""
        n = 0
        for s, e in self._down[spec.name]:
            if e <= a or s >= b:
                continue
            step = FIXED_INTERVAL_MS.get(interval)
            first = max(ceil_open_time(s, interval), a)
            if step is not None:
                last = min(e - step, b - 1)  # last open time whose candle ends by e
                if last >= first:
                    first = ceil_open_time(first, interval)
                    n += (last - first) // step + 1 if last >= first else 0
                continue
            t = first
            while t < min(e, b):
                n += self._candle_down(spec, interval, t)
                t = next_open_time(t, interval)
        return n
