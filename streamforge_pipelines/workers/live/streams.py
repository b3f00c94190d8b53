"""What a stream task subscribes to and what its events become: stream names, routes, records.

A stream task (:mod:`~streamforge_pipelines.protocol.live`) names a type and symbols; this module
turns them into exchange stream names on the right route and turns each event into the row the
historical loaders write for the same thing, under the same key:

* ``<s>@aggTrade`` / ``<s>@trade`` → a row of a ``trades`` page (``agg`` / ``trade``): the ids, prices,
  quantities and times of ``/api/v3/aggTrades`` / ``historicalTrades``; a trade's ``quote_qty``, which
  the stream does not carry, is ``price x qty`` to 8 decimals (what REST reports);
* ``<s>@kline_<i>`` → a candle row, only for the final update of a candle (``x`` true);
* ``<s>@depth@100ms`` and ``<s>@bookTicker`` → the local books (:mod:`.book`).

Routes: spot streams are all on ``<ws>/stream``; USD-M book streams (depth, bookTicker) on
``<ws>/public/stream``, trades and klines on ``<ws>/market/stream`` (Binance retired the unrouted
USD-M URLs in 2026). :class:`TradeTape` and :class:`ClosedCandles` keep the last id / open time
they passed per symbol, so what two connections both deliver (during a rotation) passes once and
what neither delivered shows as a gap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from ...protocol import WS_ORDERBOOK, WS_TRADE_TASK_TYPES, ws_candle_interval

__all__ = [
    "BOOK_KINDS",
    "ClosedCandles",
    "StreamName",
    "TradeTape",
    "agg_row_of",
    "candle_row_of",
    "route_url",
    "stream_names",
    "trade_row_of",
]

#: Stream kinds of the USD-M ``/public`` route (the others go to ``/market``).
BOOK_KINDS = frozenset({"depth", "bookTicker"})
_EIGHT = Decimal("0.00000001")


@dataclass(frozen=True, slots=True)
class StreamName:
    """One exchange stream of a task: its name, symbol and kind (``aggTrade``, ``kline``, ``depth`` ...)."""

    name: str
    symbol: str
    kind: str


def stream_names(task_type: str, symbols: Iterable[str]) -> list[StreamName]:
    """The exchange streams a task of ``task_type`` subscribes for ``symbols`` (upper case)."""
    out: list[StreamName] = []
    for symbol in symbols:
        s = symbol.lower()
        if task_type in WS_TRADE_TASK_TYPES:
            kind = "aggTrade" if WS_TRADE_TASK_TYPES[task_type] == "agg" else "trade"
            out.append(StreamName(f"{s}@{kind}", symbol, kind))
        elif task_type == WS_ORDERBOOK:
            out.append(StreamName(f"{s}@depth@100ms", symbol, "depth"))
            out.append(StreamName(f"{s}@bookTicker", symbol, "bookTicker"))
        elif (interval := ws_candle_interval(task_type)) is not None:
            out.append(StreamName(f"{s}@kline_{interval}", symbol, "kline"))
        else:
            raise ValueError(f"not a stream task type: {task_type}")
    return out


def route_url(ws_base: str, market: str, kind: str) -> str:
    """The combined-stream URL a stream of ``kind`` is served on (see the module docstring)."""
    base = ws_base.rstrip("/")
    if market == "usdm":
        return f"{base}/{'public' if kind in BOOK_KINDS else 'market'}/stream"
    return f"{base}/stream"


def agg_row_of(e: dict[str, Any]) -> list[Any]:
    """An ``agg`` trades row from an ``aggTrade`` event (``/api/v3/aggTrades``' fields)."""
    return [e["a"], e["p"], e["q"], e["f"], e["l"], e["T"], e["m"]]


def trade_row_of(e: dict[str, Any]) -> list[Any]:
    """A ``trade`` trades row from a ``trade`` event; ``quote_qty`` = price x qty to 8 decimals."""
    quote = (Decimal(e["p"]) * Decimal(e["q"])).quantize(_EIGHT, rounding=ROUND_HALF_EVEN)
    return [e["t"], e["p"], e["q"], f"{quote:f}", e["T"], e["m"]]


def candle_row_of(k: dict[str, Any]) -> list[Any]:
    """A candle row (the REST kline array without its last field) from a kline event's ``k``."""
    return [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"], k["V"], k["Q"]]


@dataclass(slots=True)
class TradeTape:
    """The trades of one symbol passed so far: ids only move forward; a jump is a gap to repair."""

    kind: str
    last_id: int | None = None
    #: ``[first, end)`` id ranges the stream skipped, for REST to fill.
    gaps: list[tuple[int, int]] = field(default_factory=list)

    def accept(self, e: dict[str, Any]) -> list[Any] | None:
        """The row of an event not seen before (else None); a skipped id range is noted in :attr:`gaps`."""
        tid = e["a"] if self.kind == "agg" else e["t"]
        last = self.last_id
        if last is not None and tid <= last:
            return None
        if last is not None and tid > last + 1:
            self.gaps.append((last + 1, tid))
        self.last_id = tid
        return agg_row_of(e) if self.kind == "agg" else trade_row_of(e)


@dataclass(slots=True)
class ClosedCandles:
    """The closed candles of one symbol passed so far: open times only move forward."""

    last_open: int | None = None

    def accept(self, e: dict[str, Any]) -> list[Any] | None:
        """The candle row of a kline event that closes a candle not passed before, else None."""
        k = e.get("k")
        if type(k) is not dict or k.get("x") is not True:
            return None
        if self.last_open is not None and k["t"] <= self.last_open:
            return None
        self.last_open = k["t"]
        return candle_row_of(k)
