"""The market's trades: drawn on demand from the cells of a minute, with random-access ids.

**Trades are the ground of the model.** A minute's individual trades are drawn on demand from
``(seed, symbol, minute)`` and the minute's cells (:mod:`.prices`): the cell's trades split over its
taker orders, quantities split exactly over the trades, orders put in time order along the path
(the first order is at the open, the last at the close), one distinct millisecond per order.
Therefore, exactly:

* first trade price = open, last = close, max = high, min = low (every level has trades);
* Σ qty = volume, count = trades, Σ qty of taker buys = taker-buy base volume;
* quote volume = Σ price·qty and taker-buy quote = Σ over taker buys, in integer 1e-8 units
  (:class:`~..symbols.SymbolSpec` requires ``tick · step`` to be a multiple of 1e-8 so every
  product is exact).

**Aggregate trades** are the taker orders: consecutive trades with the same price, the same taker
side and the same millisecond. Orders get distinct milliseconds, so each order is exactly one
maximal run. Trade ids and aggregate ids are consecutive per symbol from 0 at the listing.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from streamforge_pipelines.intervals import DAY_MS, MINUTE_MS

from ..symbols import SCALE, SymbolSpec, format_units_array
from .base import MINUTES_PER_DAY
from .frames import TRADES
from .prices import BLOCK_DAYS, CELLS, LEVEL_TRADES, PriceModel

__all__ = ["NO_TRADES", "MinuteTrades", "TradesModel"]

#: Cached minutes of trades (entries): a minute of trades is up to ~100 kB.
_MINUTE_TRADES = 2048


@dataclass(frozen=True, slots=True)
class MinuteTrades:
    """The trades of one minute in time order (numpy arrays, prices/quantities in 1e-8 units).

    Trade ``i`` has id ``first_id + i`` and belongs to aggregate trade ``first_agg_id + agg[i]``.
    ``buy`` is True when the taker bought (``isBuyerMaker`` is ``not buy``).
    """

    first_id: int
    first_agg_id: int
    price: np.ndarray
    qty: np.ndarray
    time: np.ndarray
    buy: np.ndarray
    agg: np.ndarray
    #: price x qty of each trade, exact (1e-8 units).
    quote: np.ndarray
    #: Index of the first trade of each aggregate trade.
    agg_start: np.ndarray

    def __len__(self) -> int:
        return len(self.price)


NO_TRADES = MinuteTrades(
    0, 0, *(np.zeros(0, dtype=np.int64) for _ in range(3)), np.zeros(0, dtype=bool),
    *(np.zeros(0, dtype=np.int64) for _ in range(3)),
)  # fmt: skip


def _ragged_split(totals: np.ndarray, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split each ``totals[i]`` over ``counts[i]`` consecutive items (weights) into exact integers.

    Items of segment ``i`` are consecutive in ``weights``; every segment with a positive total
    has at least one item. Returns one non-negative integer per item.
    """
    n = int(counts.sum())
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    seg = np.repeat(np.arange(len(counts)), counts)
    ends = np.cumsum(counts)
    starts = ends - counts
    cw = np.cumsum(weights)
    offset = np.where(starts > 0, cw[np.maximum(starts - 1, 0)], 0.0)
    within = cw - offset[seg]
    seg_sum = within[np.maximum(ends - 1, 0)]
    frac = within / np.where(seg_sum > 0, seg_sum, 1.0)[seg]
    cum = np.floor(totals[seg] * frac).astype(np.int64)
    nonempty = counts > 0
    cum[ends[nonempty] - 1] = totals[nonempty]
    cum = np.minimum(cum, totals[seg])
    prev = np.empty_like(cum)
    prev[0] = 0
    prev[1:] = cum[:-1]
    prev[starts[nonempty]] = 0
    return cum - prev


class TradesModel(PriceModel):
    """Trades and aggregate trades of every minute, and the REST ``trades``/``aggTrades`` views of them."""

    def _install_caches(self) -> None:
        super()._install_caches()
        self._minute_trades = lru_cache(maxsize=_MINUTE_TRADES)(self._compute_minute_trades)

    def minute_trades(self, symbol: str, minute_ms: int) -> MinuteTrades:
        """All trades of the minute opening at ``minute_ms`` (empty before listing / in downtime)."""
        spec = self.symbol(symbol)
        if minute_ms < spec.first_minute_ms:
            return NO_TRADES
        return self._minute_trades(spec.name, minute_ms // MINUTE_MS)

    def trades_before(self, symbol: str, t_ms: int) -> tuple[int, int]:
        """How many trades and aggregate trades the symbol has had before ``t_ms`` (random access).

        Equivalently: the ids of the first trade and first aggregate trade at or after ``t_ms``.
        """
        spec = self.symbol(symbol)
        if t_ms <= spec.first_minute_ms:
            return 0, 0
        minute = t_ms // MINUTE_MS
        day, i = divmod(minute, MINUTES_PER_DAY)
        cells = self._day(spec.name, day)[1]
        day_t, day_a = self._day_base(spec.name, day)
        mt = self._minute_trades(spec.name, minute)
        j = int(np.searchsorted(mt.time, t_ms, side="left"))
        k = int(np.searchsorted(mt.time[mt.agg_start], t_ms, side="left"))
        return day_t + int(cells.trade_cum[i]) + j, day_a + int(cells.agg_cum[i]) + k

    def trade_id_range(self, symbol: str, start_ms: int, end_ms: int) -> tuple[int, int] | None:
        """Ids of the first and the last trade with a time in ``[start_ms, end_ms)``; None: no trade.

        A kline stream's ``f``/``L`` for the candle ``[open, close + 1)`` (Binance sends -1 for none).
        """
        first = self.trades_before(symbol, start_ms)[0]
        end = self.trades_before(symbol, end_ms)[0]
        return (first, end - 1) if end > first else None

    def trades(
        self, symbol: str, now_ms: int, limit: int = 500, from_id: int | None = None
    ) -> list[dict[str, Any]]:
        """``GET /api/v3/trades`` (``from_id`` None: the most recent) / ``historicalTrades`` rows.

        Only trades with ``time <= now_ms`` exist. With ``from_id``: up to ``limit`` trades with
        ``id >= from_id`` in id order.
        """
        spec = self.symbol(symbol)
        if from_id is None:
            parts = self._backward_trades(spec, now_ms, limit)
        else:
            start = self._locate(spec, from_id, now_ms, aggregate=False)
            parts = [] if start is None else self._forward_trades(spec, start, from_id, now_ms, limit)
        return _render_trades(parts, limit, newest=from_id is None)

    def agg_trades(
        self,
        symbol: str,
        now_ms: int,
        limit: int = 500,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[dict[str, Any]]:
        """``GET /api/v3/aggTrades``: ``from_id`` (aggregate id, inclusive) or the window rule of 1.0.

        No bounds: the most recent ``limit``; only ``start_ms``: the oldest at/after it; only
        ``end_ms``: the newest at/before it; both: from ``start_ms``, never beyond ``end_ms``. Only
        aggregate trades with ``T <= now_ms`` exist.
        """
        spec = self.symbol(symbol)
        upper = now_ms if end_ms is None else min(now_ms, end_ms)
        rows: list[tuple[MinuteTrades, np.ndarray]] = []
        if from_id is not None:
            minute = self._locate(spec, from_id, upper, aggregate=True)
            if minute is not None:
                rows = self._forward_aggs(spec, minute, upper, limit, from_id=from_id)
        elif start_ms is not None:
            first = max(start_ms, spec.first_minute_ms)
            rows = self._forward_aggs(spec, first // MINUTE_MS, upper, limit, from_ms=first)
        else:
            rows = self._backward_aggs(spec, upper, limit)
        return _render_aggs(rows, limit, newest=from_id is None and start_ms is None)

    # ------------------------------------------------------------------ ids

    def _locate(self, spec: SymbolSpec, ident: int, now_ms: int, *, aggregate: bool) -> int | None:
        """The minute (since the epoch) holding trade (or aggregate trade) ``ident``; None: none yet."""
        if now_ms < spec.first_minute_ms:
            return None
        first = spec.first_minute_ms // DAY_MS // BLOCK_DAYS
        last = now_ms // DAY_MS // BLOCK_DAYS
        idx = 1 if aggregate else 0
        self._block_base(spec.name, last + 1)
        bases = [p[idx] for p in self._block_prefix[spec.name][: last - first + 2]]
        k = bisect_right(bases, ident) - 1
        if k > last - first:
            return None
        block = first + k
        day_totals = self._block_counts(spec.name, block)[idx]
        cum = bases[k] + np.concatenate(([0], np.cumsum(day_totals)))
        i = int(np.searchsorted(cum, ident, side="right")) - 1
        day = block * BLOCK_DAYS + i
        if day > now_ms // DAY_MS:
            return None
        cells = self._day(spec.name, day)[1]
        rel = ident - int(cum[i])
        within = cells.agg_cum if aggregate else cells.trade_cum
        minute = int(np.searchsorted(within, rel, side="right")) - 1
        return day * MINUTES_PER_DAY + min(minute, MINUTES_PER_DAY - 1)

    # ------------------------------------------------------------------ trades

    def _compute_minute_trades(self, name: str, minute: int) -> MinuteTrades:
        """Draw the trades of ``minute`` (minutes since the epoch) from its cells."""
        spec = self._by_name[name]
        day, i = divmod(minute, MINUTES_PER_DAY)
        frame, cells = self._day(name, day)
        n = int(frame[TRADES, i])
        if n == 0:
            return NO_TRADES
        a = cells.aggs[:, i]
        t = cells.trades[:, i]
        q = cells.steps[:, i]
        n_aggs = int(a.sum())
        rng = self._rng(self._keys[name], LEVEL_TRADES, minute)
        group_trades = 1 + _ragged_split(t - a, a, rng.gamma(0.8, size=n_aggs))
        qty_steps = 1 + _ragged_split(q - t, t, rng.gamma(1.5, size=n))
        group_cell = np.repeat(np.arange(CELLS), a)
        group_level = group_cell // 2
        key = cells.level_pos[group_level, i] + rng.normal(0.0, 0.05, n_aggs)
        key[0] = -1.0  # the first order of cell 0 (open level, taker buy) opens the minute
        key[int(a[: 2 * 3 + 2].sum()) - 1] = 2.0  # the last order of cell 7 (close, taker sell) closes it
        order = np.argsort(key, kind="stable")
        group_start = np.cumsum(group_trades) - group_trades
        lens = group_trades[order]
        offsets = np.cumsum(lens) - lens
        trade_idx = np.repeat(group_start[order] - offsets, lens) + np.arange(n)
        times = np.sort(rng.integers(0, MINUTE_MS - n_aggs + 1, n_aggs)) + np.arange(n_aggs)
        prices = cells.level_ticks[group_level[order], i] * spec.tick_units
        day_t, day_a = self._day_base(name, day)
        return MinuteTrades(
            first_id=day_t + int(cells.trade_cum[i]),
            first_agg_id=day_a + int(cells.agg_cum[i]),
            price=np.repeat(prices, lens),
            qty=qty_steps[trade_idx] * spec.step_units,
            time=minute * MINUTE_MS + np.repeat(times, lens),
            buy=np.repeat(group_cell[order] % 2 == 0, lens),
            agg=np.repeat(np.arange(n_aggs), lens),
            quote=np.repeat(cells.level_ticks[group_level[order], i], lens)
            * qty_steps[trade_idx]
            * (spec.tick_units * spec.step_units // SCALE),
            agg_start=offsets,
        )

    def _forward_trades(
        self, spec: SymbolSpec, minute: int, from_id: int, now_ms: int, limit: int
    ) -> list[MinuteTrades | tuple[MinuteTrades, slice]]:
        out: list[Any] = []
        got = 0
        last_minute = now_ms // MINUTE_MS
        while got < limit and minute <= last_minute:
            mt = self._minute_trades(spec.name, minute)
            if len(mt):
                lo = max(0, from_id - mt.first_id)
                hi = min(len(mt), lo + limit - got, int(np.searchsorted(mt.time, now_ms, side="right")))
                if hi > lo:
                    out.append((mt, slice(lo, hi)))
                    got += hi - lo
            minute += 1
        return out

    def _backward_trades(self, spec: SymbolSpec, now_ms: int, limit: int) -> list[Any]:
        out: list[Any] = []
        got = 0
        minute = now_ms // MINUTE_MS
        first = spec.first_minute_ms // MINUTE_MS
        while got < limit and minute >= first:
            mt = self._minute_trades(spec.name, minute)
            if not len(mt):
                minute -= 1
                continue
            hi = int(np.searchsorted(mt.time, now_ms, side="right"))
            lo = max(0, hi - (limit - got))
            if hi > lo:
                out.append((mt, slice(lo, hi)))
                got += hi - lo
            minute -= 1
        return out[::-1]

    def _forward_aggs(
        self,
        spec: SymbolSpec,
        minute: int,
        upper_ms: int,
        limit: int,
        *,
        from_id: int | None = None,
        from_ms: int | None = None,
    ) -> list[tuple[MinuteTrades, np.ndarray]]:
        """Aggregate trades from ``minute`` on: id ``>= from_id`` or ``T >= from_ms``; ``T <= upper_ms``."""
        out: list[tuple[MinuteTrades, np.ndarray]] = []
        got = 0
        last_minute = upper_ms // MINUTE_MS
        while got < limit and minute <= last_minute:
            mt = self._minute_trades(spec.name, minute)
            if len(mt.agg_start):
                times = mt.time[mt.agg_start]
                if from_id is not None:
                    idx = np.arange(max(0, from_id - mt.first_agg_id), len(times))
                else:
                    idx = np.flatnonzero(times >= (from_ms or 0))
                idx = idx[times[idx] <= upper_ms][: limit - got]
                if len(idx):
                    out.append((mt, idx))
                    got += len(idx)
            minute += 1
        return out

    def _backward_aggs(
        self, spec: SymbolSpec, upper_ms: int, limit: int
    ) -> list[tuple[MinuteTrades, np.ndarray]]:
        out: list[tuple[MinuteTrades, np.ndarray]] = []
        got = 0
        minute = upper_ms // MINUTE_MS
        first = spec.first_minute_ms // MINUTE_MS
        while got < limit and minute >= first:
            mt = self._minute_trades(spec.name, minute)
            if not len(mt):
                minute -= 1
                continue
            idx = np.flatnonzero(mt.time[mt.agg_start] <= upper_ms)
            idx = idx[max(0, len(idx) - (limit - got)) :]
            if len(idx):
                out.append((mt, idx))
                got += len(idx)
            minute -= 1
        return out[::-1]


def _render_trades(parts: list[Any], limit: int, *, newest: bool) -> list[dict[str, Any]]:
    """``trades``/``historicalTrades`` elements for (minute trades, slice) parts."""
    if not parts:
        return []
    ids = np.concatenate([mt.first_id + np.arange(len(mt))[s] for mt, s in parts])
    price = np.concatenate([mt.price[s] for mt, s in parts])
    qty = np.concatenate([mt.qty[s] for mt, s in parts])
    time = np.concatenate([mt.time[s] for mt, s in parts])
    buy = np.concatenate([mt.buy[s] for mt, s in parts])
    quote = np.concatenate([mt.quote[s] for mt, s in parts])
    sl = slice(max(0, len(ids) - limit), None) if newest else slice(0, limit)
    ids, price, qty, time, buy, quote = ids[sl], price[sl], qty[sl], time[sl], buy[sl], quote[sl]
    return [
        {"id": i, "price": p, "qty": q, "quoteQty": qq, "time": t, "isBuyerMaker": not b, "isBestMatch": True}
        for i, p, q, qq, t, b in zip(
            ids.tolist(),
            format_units_array(price),
            format_units_array(qty),
            format_units_array(quote),
            time.tolist(),
            buy.tolist(),
            strict=True,
        )
    ]


def _render_aggs(
    parts: list[tuple[MinuteTrades, np.ndarray]], limit: int, *, newest: bool
) -> list[dict[str, Any]]:
    """``aggTrades`` elements for (minute trades, aggregate indices) parts."""
    if not parts:
        return []
    a_ids, price, qty, first, last, time, buy = [], [], [], [], [], [], []
    for mt, idx in parts:
        ends = np.append(mt.agg_start[1:], len(mt))
        start = mt.agg_start[idx]
        a_ids.append(mt.first_agg_id + idx)
        price.append(mt.price[start])
        qty.append(np.add.reduceat(mt.qty, mt.agg_start)[idx])
        first.append(mt.first_id + start)
        last.append(mt.first_id + ends[idx] - 1)
        time.append(mt.time[start])
        buy.append(mt.buy[start])
    cols = [np.concatenate(x) for x in (a_ids, price, qty, first, last, time, buy)]
    n = len(cols[0])
    sl = slice(max(0, n - limit), None) if newest else slice(0, limit)
    a, p, q, f, la, t, b = (col[sl] for col in cols)
    return [
        {"a": ai, "p": pi, "q": qi, "f": fi, "l": li, "T": ti, "m": not bi, "M": True}
        for ai, pi, qi, fi, li, ti, bi in zip(
            a.tolist(),
            format_units_array(p),
            format_units_array(q),
            f.tolist(),
            la.tolist(),
            t.tolist(),
            b.tolist(),
            strict=True,
        )
    ]
