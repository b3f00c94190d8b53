"""``<s>@trade`` and ``<s>@aggTrade``: every trade (taker order) in real time (``E == T``).

From the model's trades, with the same ids and values as ``GET /api/v3/trades`` / ``aggTrades``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamforge_pipelines.intervals import floor_open_time

from ..symbols import format_units_array
from .stream import Stream

__all__ = ["TradeStream"]


class TradeStream(Stream):
    """``@trade`` and ``@aggTrade``: every trade (taker order) with ``cursor < T <= now``."""

    def next_due(self) -> int:
        market, minute = self.shared.market, floor_open_time(self.cursor, "1m")
        for m in (minute, minute + 60_000):
            mt = market.minute_trades(self.spec.symbol, m)
            times = mt.time if self.spec.kind == "trade" else mt.time[mt.agg_start]
            i = int(np.searchsorted(times, self.cursor, side="right"))
            if i < len(times):
                return int(times[i])
        return minute + 120_000

    def collect(self, now_ms: int) -> list[tuple[int, dict[str, Any]]]:
        out: list[tuple[int, dict[str, Any]]] = []
        market, sym, mult = self.shared.market, self.spec.symbol, self.mult
        minute = floor_open_time(self.cursor + 1, "1m")
        while minute <= now_ms:
            mt = market.minute_trades(sym, minute)
            if len(mt):
                if self.spec.kind == "trade":
                    lo = int(np.searchsorted(mt.time, self.cursor, side="right"))
                    hi = int(np.searchsorted(mt.time, now_ms, side="right"))
                    if hi > lo:
                        sl = slice(lo, hi)
                        ids = (mt.first_id + np.arange(lo, hi)).tolist()
                        times = mt.time[sl].tolist()
                        for tid, p, q, t, b in zip(
                            ids,
                            format_units_array(mt.price[sl]),
                            format_units_array(mt.qty[sl]),
                            times,
                            mt.buy[sl].tolist(),
                            strict=True,
                        ):
                            out.append(
                                (t, {"e": "trade", "E": t * mult, "s": sym, "t": tid, "p": p, "q": q,
                                     "T": t * mult, "m": not b, "M": True})
                            )  # fmt: skip
                else:
                    starts = mt.agg_start
                    times = mt.time[starts]
                    lo = int(np.searchsorted(times, self.cursor, side="right"))
                    hi = int(np.searchsorted(times, now_ms, side="right"))
                    if hi > lo:
                        ends = np.append(starts[1:], len(mt))
                        qty = np.add.reduceat(mt.qty, starts)[lo:hi]
                        st = starts[lo:hi]
                        for a, p, q, f, la, t, b in zip(
                            (mt.first_agg_id + np.arange(lo, hi)).tolist(),
                            format_units_array(mt.price[st]),
                            format_units_array(qty),
                            (mt.first_id + st).tolist(),
                            (mt.first_id + ends[lo:hi] - 1).tolist(),
                            times[lo:hi].tolist(),
                            mt.buy[st].tolist(),
                            strict=True,
                        ):
                            out.append(
                                (t, {"e": "aggTrade", "E": t * mult, "s": sym, "a": a, "p": p, "q": q,
                                     "f": f, "l": la, "T": t * mult, "m": not b, "M": True})
                            )  # fmt: skip
            minute += 60_000
        self.cursor = max(self.cursor, now_ms)
        return out
