"""``<s>@kline_<interval>[@+08:00]``: the open candle at every push, the closed one once at its boundary.

A push every 2000 ms of simulated time (1000 ms for ``1s``) on a grid aligned to the epoch, showing
the open candle as it stood just before the push (trades with time ``< E``); when ``E`` is a candle
boundary the push is instead the final update of the candle that just closed, with ``x: true`` and
the values of the REST kline (``E = T + 1``). So ``x`` is true exactly once per candle and every
``1s`` push is final. ``f``/``L`` are the candle's first/last trade ids so far (``-1``/``-1`` while
it has no trades — inferred).

``<s>@kline_<interval>@+08:00``: the same, bucketed in UTC+8 (``Market.klines(...,
tz_offset_min=480)``): a ``1d`` candle opens at 16:00 UTC and aggregates the 1m candles of its
window; where 8 h is a multiple of the interval (``1m`` … ``4h``, ``8h``) nothing changes.
"""

from __future__ import annotations

from typing import Any

from streamforge_pipelines.intervals import floor_open_time, next_open_time

from .stream import Stream

__all__ = ["KlineStream"]


class KlineStream(Stream):
    """``<s>@kline_<i>[@+08:00]``: the open candle every push, the closed one once at its boundary."""

    def row(self, e: int) -> tuple[list, bool] | None:
        """The REST row of the candle the push at ``e`` shows, and whether it is closed."""
        spec, market = self.spec, self.shared.market
        interval, off = spec.interval, spec.tz_offset_min * 60_000
        candle = floor_open_time(e - 1 + off, interval) - off
        closed = next_open_time(candle + off, interval) - off <= e
        now = e if closed else e - 1
        if off:
            rows = market.klines(
                spec.symbol, interval, candle, candle, 1, now, tz_offset_min=spec.tz_offset_min
            )
        else:
            rows = market.klines(spec.symbol, interval, candle, candle, 1, now)
        if not rows or rows[0][0] != candle:
            return None
        return rows[0], closed

    def render(self, row: list) -> list:
        """The row's values as the stream shows them (spot: unchanged)."""
        return row

    def at(self, e: int) -> dict[str, Any] | None:
        spec, market = self.spec, self.shared.market
        interval = spec.interval
        got = self.row(e)
        if got is None:
            return None
        row, closed = got
        t, o, h, lo, c, v, close_ms, q, n, tv, tq, _ = self.render(row)
        if n:
            last = market.trades(spec.symbol, min(e - 1, close_ms), 1)
            last_id = last[0]["id"] if last else -1
            first_id = last_id - n + 1
        else:
            first_id = last_id = -1
        mult = self.mult
        return {
            "e": "kline",
            "E": e * mult,
            "s": spec.symbol,
            "k": {
                "t": t * mult,
                "T": close_ms * mult + (mult - 1),
                "s": spec.symbol,
                "i": interval,
                "f": first_id,
                "L": last_id,
                "o": o,
                "c": c,
                "h": h,
                "l": lo,
                "v": v,
                "n": n,
                "x": closed,
                "q": q,
                "V": tv,
                "Q": tq,
                "B": "0",
            },
        }
