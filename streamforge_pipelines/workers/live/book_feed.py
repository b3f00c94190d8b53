"""The order-book stream type (``ws_orderbook``): books kept per symbol, top-N snapshots produced.

Every symbol of the task has a :class:`~.book.SymbolBook` in one :class:`~.book.BookKeeper`, fed by
its ``@depth@100ms`` and ``@bookTicker`` streams; a book that needs a snapshot (its first event, a
gap, a stale snapshot, a crossed book, a ``bookTicker`` disagreeing at a shared update id) fetches
one from REST on its own, so the other symbols of the connection go on. Every
``LIVE_BOOK_EVERY_MS`` a live book whose update id moved is produced as a ``book`` row: its top
``LIVE_BOOK_LEVELS`` levels per side at that update id. Resyncs are counted per symbol and reason
(``streamforge_stream_resyncs_total``), the age of each book's last event at its snapshot is
``streamforge_stream_book_age_seconds``. With ``LIVE_BOOK_DIFFS`` every diff event a live book
applied also goes, in order, to ``KAFKA_TOPIC_BOOK_DIFFS`` (``book_diffs`` rows): from a snapshot
row at update id ``n``, the diff rows after ``n`` rebuild the book until its next resync (after one,
start again from the next snapshot row).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from ...protocol import book_diff_page, book_page, levels_text
from ...settings import Settings
from ..exchange_client import BinanceRestClient
from . import metrics
from .book import Kind, Outcome, Reason, SymbolBook
from .book_keeper import BookKeeper
from .feeds import Counts, Rows

__all__ = ["BookFeed"]

#: Levels asked of a REST snapshot (spot weight 50, USD-M 20).
SNAPSHOT_LIMIT = 1000


class BookFeed:
    """``@depth@100ms`` + ``@bookTicker`` events kept as books; their top-N snapshots as rows."""

    def __init__(
        self,
        settings: Settings,
        market: str,
        symbols: list[str],
        task_type: str,
        queue_id: str,
        counts: Counts,
        rest: Callable[[], Awaitable[BinanceRestClient]],
    ) -> None:
        self.topic = settings.topic_book
        self.market, self.type, self.queue_id, self.counts, self.rest = (
            market,
            task_type,
            queue_id,
            counts,
            rest,
        )
        self.levels = settings.live_book_levels
        self.diff_topic = settings.topic_book_diffs
        #: The applied diff events waiting to be produced (``LIVE_BOOK_DIFFS``), else None.
        self.diffs = Rows() if settings.live_book_diffs else None
        self.every_ms = settings.live_book_every_ms
        self.keeper = BookKeeper(
            market, symbols, self._fetch, max_buffer=settings.live_book_max_buffer, on_outcome=self._outcome
        )
        #: Per symbol: (monotonic ms of the last snapshot row, its update id).
        self._last: dict[str, tuple[float, int]] = {}
        #: Per symbol: (``u``, ``E``) of the last diff event the live book applied: a row is the book
        #: at an event's update id, with that event's time (a book just loaded from a snapshot stands
        #: at an id no event of ours has a time for: its first row waits for the next event).
        self._reached: dict[str, tuple[int, int]] = {}

    async def _fetch(self, symbol: str) -> dict[str, Any]:
        rest = await self.rest()
        return await rest.depth(symbol, SNAPSHOT_LIMIT)

    def _outcome(self, book: SymbolBook, outcome: Outcome) -> None:
        if outcome.kind is Kind.RESYNC and outcome.reason is not None:
            self.counts.resyncs += 1
            metrics.RESYNCS.labels(book.symbol, outcome.reason.value).inc()
            if outcome.reason is Reason.GAP:
                self.counts.gaps += 1
                metrics.GAPS.labels(self.type, book.symbol).inc()

    def on_message(self, stream: str, data: dict[str, Any]) -> None:
        if stream.endswith("@bookTicker"):
            self.keeper.on_book_ticker(data)
            return
        self.keeper.on_diff(data)
        book = self.keeper.books.get(data.get("s", ""))
        if book is None or not book.synced or book.last_update_id != data["u"]:
            return
        symbol, u = book.symbol, data["u"]
        if u <= self._reached.get(symbol, (-1, 0))[0]:
            return  # the same event again (two connections overlapping)
        self._reached[symbol] = (u, data["E"])
        if self.diffs is not None:
            row = [data["U"], u, data["E"], levels_text(data["b"]), levels_text(data["a"])]
            self.diffs.add(symbol, row, data["E"])

    def add(self, symbols: list[str]) -> None:
        for s in symbols:
            self.keeper.add(s)

    def remove(self, symbols: list[str]) -> None:
        for s in symbols:
            self.keeper.remove(s)
            self._last.pop(s, None)
            self._reached.pop(s, None)

    def take(self) -> dict[str, tuple[list[list[Any]], list[int]]]:
        now = time.monotonic() * 1000
        wall_ms = time.time() * 1000
        out: dict[str, tuple[list[list[Any]], list[int]]] = {}
        for symbol, book in self.keeper.books.items():
            reached = self._reached.get(symbol)
            if not book.synced or reached is None or reached[0] != book.last_update_id:
                continue
            last_at, last_id = self._last.get(symbol, (-1e18, -1))
            if book.last_update_id == last_id or now - last_at < self.every_ms:
                continue
            bids, asks = book.top(self.levels)
            event_ms = reached[1]
            out[symbol] = (
                [[book.last_update_id, event_ms, levels_text(bids), levels_text(asks)]],
                [event_ms],
            )
            self._last[symbol] = (now, book.last_update_id)
            metrics.BOOK_AGE.labels(symbol).set(max(wall_ms - event_ms, 0) / 1000)
        return out

    def page(self, symbol: str, rows: list[list[Any]], source: str) -> dict[str, Any]:
        return book_page(rows, symbol, self.market, source, self.queue_id)

    def take_diffs(self) -> dict[str, tuple[list[list[Any]], list[int]]]:
        """The applied diff rows waiting per symbol (``LIVE_BOOK_DIFFS``), emptied."""
        return {} if self.diffs is None else self.diffs.take()

    def diff_page(self, symbol: str, rows: list[list[Any]]) -> dict[str, Any]:
        return book_diff_page(rows, symbol, self.market, "ws", self.queue_id)

    def checkpoint(self) -> dict[str, Any]:
        return {}  # a book restarts from a snapshot

    async def close(self) -> None:
        await self.keeper.close()
