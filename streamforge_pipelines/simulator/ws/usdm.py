"""USD-M futures streams (§4.4): the spot streams at the contract's precision, with futures fields.

Contracts are those of ``/fapi/v1`` (:func:`..usdm.contract`): the spot model shifted by a constant
basis, rendered at the contract's price / quantity precision.

* ``<s>@aggTrade``: the spot aggregate trades (same ids and times), no ``M``;
* ``<s>@kline_<interval>`` (no ``1s``): pushed every 250 ms, values as ``/fapi/v1/klines``;
* ``<s>@depth`` (250 ms) / ``@depth@500ms`` / ``@depth@100ms``: the 100 ms windows published in
  each period merged, ``{"e", "E", "T", "s", "U", "u", "pu", "b", "a"}``: ``E`` the period's end,
  ``T`` the publish time of its last window, ``u`` that window's update id (the sequence of
  ``/fapi/v1/depth``'s ``lastUpdateId``), ``pu`` the previous period's ``u``; ``U`` lies in
  ``(pu, u of the first window]``, picked by a hash — generally not ``pu + 1`` (§5.2);
* ``<s>@depth<5|10|20>[@500ms|@100ms]`` (250 ms by default): the top levels after the period, in
  the diff event's shape (same ``E``, ``T``, ``U``, ``u``, ``pu``);
* ``<s>@bookTicker``: ``{"e", "u", "E", "T", "s", "b", "B", "a", "A"}`` after each 100 ms window.

``depth_gap_rate`` drops futures diff events too, which a client sees as ``pu`` differing from the
last ``u`` it received.
"""

from __future__ import annotations

from typing import Any

from .. import book
from ..market import Market
from ..usdm import Contract, contract, futures_row
from .depth import BookTickerStream, merge_events
from .klines import KlineStream
from .stream import MAX_CATCH_UP_MS, Stream
from .trades import TradeStream

__all__ = [
    "FuturesAggTradeStream",
    "FuturesBookTickerStream",
    "FuturesDepthStream",
    "FuturesKlineStream",
    "FuturesPartialDepthStream",
]


def _contract(market: Market, symbol: str) -> Contract:
    """The futures contract (precisions, basis) of ``symbol`` (:func:`..usdm.contract`)."""
    return contract(market.symbol(symbol))


def _spot_units(text: str) -> int:
    """1e-8 units of a spot string (always 8 decimals)."""
    return int(text.replace(".", ""))


def _to_futures(c: Contract, side: list[list[str]]) -> list[list[str]]:
    """Spot ``[price, qty]`` levels at contract precision, prices shifted by the basis."""
    return [[c.price(_spot_units(p)), c.qty(_spot_units(q))] for p, q in side]


def _first_update_id(pu: int, u1: int) -> int:
    """``U`` of a futures event whose first window ends at ``u1`` (after ``pu``): in ``[pu + 1, u1]``.

    Futures update ids are shared with other books, so ``U`` is generally not ``pu + 1``
    (§5.2); a deterministic hash of ``u1`` picks it.
    """
    return pu + 1 + (u1 * 0x9E3779B1 >> 7) % (u1 - pu)


class FuturesKlineStream(KlineStream):
    """``<s>@kline_<i>``: the spot candle as ``/fapi/v1/klines`` renders it, pushed every 250 ms."""

    def render(self, row: list) -> list:
        return futures_row(_contract(self.shared.market, self.spec.symbol), row)


class FuturesAggTradeStream(TradeStream):
    """``<s>@aggTrade``: the spot aggregate trades at contract precision, without ``M``."""

    def collect(self, now_ms: int) -> list[tuple[int, dict[str, Any]]]:
        out = super().collect(now_ms)
        if out:
            c = _contract(self.shared.market, self.spec.symbol)
            for _, payload in out:
                del payload["M"]
                payload["p"] = c.price(_spot_units(payload["p"]))
                payload["q"] = c.qty(_spot_units(payload["q"]))
        return out


class FuturesDepthStream(Stream):
    """``<s>@depth[@500ms|@100ms]``: the windows published in each period merged, with ``T``, ``pu``.

    ``E`` is the period's end (a multiple of 250 / 500 / 100 ms), ``T`` the publish time of its
    last 100 ms window, ``u`` that window's update id, ``pu`` the ``u`` of the previous period (sent
    or not: an injected gap shows as ``pu`` differing from the last ``u`` received).
    """

    def collect(self, now_ms: int) -> list[tuple[int, dict[str, Any]]]:
        shared, spec, p = self.shared, self.spec, self.spec.period_ms
        now_ms = min(now_ms, self.cursor + MAX_CATCH_UP_MS)
        base, end = self.cursor // p * p, now_ms // p * p
        if end <= base:
            return []
        groups: dict[int, list[book.DepthUpdate]] = {}
        for ev in shared.depth.events(spec.symbol, base, end):
            groups.setdefault(-(-ev.event_ms // p) * p, []).append(ev)
        self.cursor = end
        rate = shared.config.depth_gap_rate
        c = _contract(shared.market, spec.symbol)
        out = []
        for e, group in sorted(groups.items()):
            merged = merge_events(group)
            if not (merged.bids or merged.asks) or (rate and shared.rng.random() < rate):
                continue
            pu = group[0].first_update_id - 1
            payload = {
                "e": "depthUpdate",
                "E": e * self.mult,
                "T": merged.event_ms * self.mult,
                "s": spec.symbol,
                "U": _first_update_id(pu, group[0].last_update_id),
                "u": merged.last_update_id,
                "pu": pu,
                "b": _to_futures(c, merged.bids),
                "a": _to_futures(c, merged.asks),
            }
            out.append((e, payload))
        return out


class FuturesPartialDepthStream(Stream):
    """``<s>@depth<N>[@500ms|@100ms]``: the top ``N`` levels in the diff event's shape (§4.4)."""

    def at(self, e: int) -> dict[str, Any] | None:
        market, spec, p = self.shared.market, self.spec, self.spec.period_ms
        w_last = e // book.WINDOW_MS - 1
        w_first = (e - p) // book.WINDOW_MS
        c = _contract(market, spec.symbol)
        levels = market.book_levels(spec.symbol, w_last, spec.levels)
        snap = book.DepthSnapshot.from_levels(levels, c.price_decimals, c.qty_decimals, c.basis_units)
        pu = market.book_levels(spec.symbol, w_first - 1, 0).last_update_id
        u1 = (
            market.book_levels(spec.symbol, w_first, 0).last_update_id
            if w_first < w_last
            else snap.last_update_id
        )
        return {
            "e": "depthUpdate",
            "E": e * self.mult,
            "T": (w_last + 1) * book.WINDOW_MS * self.mult,
            "s": spec.symbol,
            "U": _first_update_id(pu, u1),
            "u": snap.last_update_id,
            "pu": pu,
            "b": snap.bids,
            "a": snap.asks,
        }


class FuturesBookTickerStream(BookTickerStream):
    """``<s>@bookTicker``: best levels after each 100 ms window that changed them, with ``e``/``E``/``T``."""

    def at(self, e: int) -> dict[str, Any] | None:
        market, spec = self.shared.market, self.spec
        c = _contract(market, spec.symbol)
        levels = market.book_levels(spec.symbol, e // book.WINDOW_MS - 1, 1)
        snap = book.DepthSnapshot.from_levels(levels, c.price_decimals, c.qty_decimals, c.basis_units)
        if not snap.bids or not snap.asks:
            return None
        best = (*snap.bids[0], *snap.asks[0])
        if best == self._last:
            return None
        self._last = best
        b, bq, a, aq = best
        t = e * self.mult
        return {"e": "bookTicker", "u": snap.last_update_id, "E": t, "T": t, "s": spec.symbol,
                "b": b, "B": bq, "a": a, "A": aq}  # fmt: skip
