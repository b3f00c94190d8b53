"""What each stream type makes of its events: rows per symbol, the page they travel in, how far
each symbol is complete (:class:`Feed`), and a task's running totals (:class:`Counts`).

:class:`TradeFeed` (``ws_agg_trades`` / ``ws_trades``) and :class:`CandleFeed` (``ws_candles_<i>``)
are here; the order books' :class:`~.book_feed.BookFeed` has a module of its own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Protocol

from ...protocol import candle_page, trade_page
from .streams import ClosedCandles, TradeTape

__all__ = ["CandleFeed", "Counts", "Feed", "Rows", "TradeFeed"]


class Feed(Protocol):
    """What a stream type makes of its events (rows per symbol) and what it produces them as."""

    topic: str

    def on_message(self, stream: str, data: dict[str, Any]) -> None: ...

    def take(self) -> dict[str, tuple[list[list[Any]], list[int]]]:
        """The rows waiting per symbol and their exchange event times (ms), emptied."""
        ...

    def page(self, symbol: str, rows: list[list[Any]], source: str) -> dict[str, Any]: ...

    def checkpoint(self) -> dict[str, Any]: ...

    async def close(self) -> None:
        """Release what the feed holds (snapshot fetches under way)."""
        ...


class Rows:
    """Rows waiting to be produced, per symbol, with the exchange's event time of each."""

    def __init__(self) -> None:
        self.rows: dict[str, list[list[Any]]] = defaultdict(list)
        self.times: dict[str, list[int]] = defaultdict(list)

    def add(self, symbol: str, row: list[Any], event_ms: int) -> None:
        self.rows[symbol].append(row)
        self.times[symbol].append(event_ms)

    def take(self) -> dict[str, tuple[list[list[Any]], list[int]]]:
        out = {s: (rows, self.times[s]) for s, rows in self.rows.items() if rows}
        self.rows.clear()
        self.times.clear()
        return out


class TradeFeed:
    """``@aggTrade`` / ``@trade`` events as ``trades`` rows; skipped ids wait in :attr:`gaps`."""

    def __init__(self, kind: str, topic: str, queue_id: str, resume: dict[str, int] | None = None) -> None:
        self.kind, self.topic, self.queue_id = kind, topic, queue_id
        self.tapes: dict[str, TradeTape] = {}
        for symbol, last in (resume or {}).items():
            self.tapes[symbol] = TradeTape(kind, last_id=int(last))
        self.pending = Rows()
        #: Gaps handed to REST and not yet repaired, per symbol.
        self.unrepaired: dict[str, list[tuple[int, int]]] = defaultdict(list)

    def on_message(self, stream: str, data: dict[str, Any]) -> None:
        symbol = data.get("s")
        if symbol is None:
            return
        tape = self.tapes.get(symbol)
        if tape is None:
            tape = self.tapes[symbol] = TradeTape(self.kind)
        row = tape.accept(data)
        if row is not None:
            self.pending.add(symbol, row, data.get("E", 0))

    def take(self) -> dict[str, tuple[list[list[Any]], list[int]]]:
        return self.pending.take()

    def gaps(self) -> list[tuple[str, int, int]]:
        """The id ranges ``(symbol, first, end)`` skipped since the last call."""
        out = []
        for symbol, tape in self.tapes.items():
            out.extend((symbol, lo, hi) for lo, hi in tape.gaps)
            tape.gaps.clear()
        return out

    def page(self, symbol: str, rows: list[list[Any]], source: str) -> dict[str, Any]:
        return trade_page(rows, symbol, self.kind, source, self.queue_id)

    def checkpoint(self) -> dict[str, Any]:
        """How far each symbol is complete: its last id, or just before its first gap not yet repaired
        (a task restarted from here fetches that gap again instead of losing it)."""
        out: dict[str, int] = {}
        for symbol, tape in self.tapes.items():
            if tape.last_id is None:
                continue
            holes = [lo for lo, _ in self.unrepaired.get(symbol, ())]
            out[symbol] = min([tape.last_id, *(lo - 1 for lo in holes)])
        return {"last_ids": out}

    async def close(self) -> None:
        return None


class CandleFeed:
    """``@kline_<i>`` events as candle rows, the closed candles only."""

    def __init__(
        self, interval: str, topic: str, queue_id: str, resume: dict[str, int] | None = None
    ) -> None:
        self.interval, self.topic, self.queue_id = interval, topic, queue_id
        self.candles: dict[str, ClosedCandles] = {s: ClosedCandles(int(t)) for s, t in (resume or {}).items()}
        self.pending = Rows()

    def on_message(self, stream: str, data: dict[str, Any]) -> None:
        symbol = data.get("s")
        if symbol is None:
            return
        closed = self.candles.get(symbol)
        if closed is None:
            closed = self.candles[symbol] = ClosedCandles()
        row = closed.accept(data)
        if row is not None:
            self.pending.add(symbol, row, data.get("E", 0))

    def take(self) -> dict[str, tuple[list[list[Any]], list[int]]]:
        return self.pending.take()

    def page(self, symbol: str, rows: list[list[Any]], source: str) -> dict[str, Any]:
        return candle_page(rows, symbol, self.interval, source, self.queue_id)

    def checkpoint(self) -> dict[str, Any]:
        return {"last_open": {s: c.last_open for s, c in self.candles.items() if c.last_open is not None}}

    async def close(self) -> None:
        return None


@dataclass(slots=True)
class Counts:
    """A task's running totals (what its heartbeats carry as :class:`StreamStats`)."""

    messages: int = 0
    records: int = 0
    gaps: int = 0
    resyncs: int = 0
    reconnects: int = 0
    repaired: int = 0
