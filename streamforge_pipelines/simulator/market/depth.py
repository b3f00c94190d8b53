"""The market's order book: the book after every 100 ms window, its snapshots and diff events.

The book is built around the last trade at or before a window's end (:meth:`BookModel._last_price`);
:mod:`..book` holds the rules (levels, quantities, update ids, diffs). All quantities are integers
in units of 1e-8.
"""

from __future__ import annotations

import numpy as np

from streamforge_pipelines.intervals import MINUTE_MS

from .. import book
from ..symbols import SCALE, SymbolSpec
from .base import MINUTES_PER_DAY
from .frames import OPEN
from .trades import TradesModel

__all__ = ["BookModel"]


def _book_lot(spec: SymbolSpec) -> int:
    """Typical resting quantity per book level, in lot steps (about 0.3% of a minute's quote volume)."""
    return max(1, round(spec.quote_volume_per_minute * 0.003 / spec.base_price * SCALE / spec.step_units))


class BookModel(TradesModel):
    """Depth snapshots and diff-depth events of every symbol, from the book after each 100 ms window."""

    def depth_snapshot(self, symbol: str, limit: int, now_ms: int) -> book.DepthSnapshot:
        """The order book as ``GET /api/v3/depth`` returns it at ``now_ms`` (see :mod:`..book`).

        It is the book after the last diff event published by ``now_ms`` — that of the 100 ms window
        ``now_ms // 100 - 1`` — and ``last_update_id`` is that event's ``u``; so the first diff event
        a client needs (:meth:`depth_updates` from ``now_ms``) has ``U == last_update_id + 1``.
        ``limit`` levels per side (at most :data:`..book.BOOK_LEVELS`), bids descending, asks ascending,
        spot rendering (8 decimals).
        """
        spec = self.symbol(symbol)
        window = now_ms // book.WINDOW_MS - 1
        levels = self.book_levels(spec.name, window, limit)
        return book.DepthSnapshot.from_levels(levels)

    def depth_updates(self, symbol: str, start_ms: int, end_ms: int) -> list[book.DepthUpdate]:
        """The diff-depth events (``@depth@100ms``) with event time ``E`` in ``[start_ms, end_ms)``.

        Window ``w`` (``[100w, 100w + 100)``) publishes one event at ``E = 100w + 100`` holding every
        level whose quantity differs between the books of windows ``w - 1`` and ``w``, with its new
        absolute quantity (``"0"``: removed). The book changes in every window (the best levels'
        quantities change every 100 ms), so events follow each other with ``U == previous u + 1``.
        ``depth_snapshot(t)`` followed by ``depth_updates(t, t2)`` gives ``depth_snapshot(t2)``
        (over the full :data:`..book.BOOK_LEVELS`; a snapshot of ``limit`` levels agrees on the
        levels it holds). Nothing exists before the symbol's listing.
        """
        spec = self.symbol(symbol)
        first_w = max(-(-start_ms // book.WINDOW_MS) - 1, spec.first_minute_ms // book.WINDOW_MS)
        last_w = -(-end_ms // book.WINDOW_MS) - 2  # E = 100(w+1) < end_ms
        out: list[book.DepthUpdate] = []
        if last_w < first_w:
            return out
        prev = self.book_levels(spec.name, first_w - 1, book.BOOK_LEVELS)
        for w in range(first_w, last_w + 1):
            cur = self.book_levels(spec.name, w, book.BOOK_LEVELS)
            out.append(book.diff(prev, cur, (w + 1) * book.WINDOW_MS))
            prev = cur
        return out

    def book_levels(self, name: str, window: int, limit: int) -> book.BookLevels:
        """The book after the 100 ms window ``window`` (integer units): the ground of the depth APIs."""
        spec = self._by_name[name]
        first_w = spec.first_minute_ms // book.WINDOW_MS
        if window < first_w:
            return book.BookLevels.empty(book.update_id(self.seed, self._keys[name], first_w, first_w - 1))
        price, buy = self._last_price(spec, (window + 1) * book.WINDOW_MS - 1)
        return book.levels(
            seed=self.seed,
            key=self._keys[name],
            window=window,
            first_window=first_w,
            last_price=price,
            taker_buy=buy,
            tick=spec.tick_units,
            step=spec.step_units,
            lot=_book_lot(spec),
            limit=min(limit, book.BOOK_LEVELS),
        )

    def _last_price(self, spec: SymbolSpec, t_ms: int) -> tuple[int, bool]:
        """Price (1e-8 units) and taker side of the last trade at or before ``t_ms``.

        In a minute before its first trade (or a minute in downtime) it is the minute's open.
        """
        minute = t_ms // MINUTE_MS
        day, i = divmod(minute, MINUTES_PER_DAY)
        mt = self._minute_trades(spec.name, minute) if self._minute_active(spec, minute * MINUTE_MS) else None
        if mt is not None and len(mt):
            j = int(np.searchsorted(mt.time, t_ms, side="right")) - 1
            if j >= 0:
                return int(mt.price[j]), bool(mt.buy[j])
        return int(self._minute_frame(spec.name, day)[OPEN, i]), True
