"""The books of a symbol set and their snapshot fetches: :class:`BookKeeper`.

Each symbol's :class:`~.book.SymbolBook` asks for a REST snapshot when it needs one (its first event,
a resync); the keeper runs one fetch task per symbol that needs one, so a symbol's resync never
blocks the other symbols' events, and fetches again after a stale snapshot or a failed fetch with
capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..backoff import Backoff
from .book import DEFAULT_MAX_BUFFER, IGNORED, MARKETS, Kind, Outcome, SymbolBook

__all__ = ["BookKeeper", "Fetch"]

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[dict[str, Any]]]


class BookKeeper:
    """The books of a symbol set and their snapshot fetches (one task per symbol that needs one).

    ``fetch(symbol)`` returns the REST depth snapshot (decoded JSON). Whenever a book asks for a
    snapshot (:attr:`Outcome.needs_snapshot`) and no fetch of that symbol is running, one starts;
    it fetches until the book is live (a stale snapshot is fetched again after ``backoff``'s delay,
    capped; a failed fetch too), so a symbol's resync never blocks the other symbols' events.
    Call :meth:`on_diff` / :meth:`on_book_ticker` from the event loop; :meth:`close` cancels the
    fetches. ``fetch_errors`` counts failed fetches.
    """

    def __init__(
        self,
        market: str,
        symbols: Iterable[str],
        fetch: Fetch,
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        backoff: Backoff | None = None,
        on_outcome: Callable[[SymbolBook, Outcome], None] | None = None,
    ) -> None:
        if market not in MARKETS:
            raise ValueError(f"market must be one of {', '.join(MARKETS)}, got {market!r}")
        self.market = market
        self.max_buffer = max_buffer
        self._fetch = fetch
        self._backoff = backoff or Backoff(base_s=0.2, cap_s=5.0)
        self._on_outcome = on_outcome
        self.books: dict[str, SymbolBook] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.fetch_errors = 0
        for s in symbols:
            self.add(s)

    def add(self, symbol: str) -> SymbolBook:
        """Follow ``symbol`` (its book starts empty and asks for a snapshot at its first event)."""
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = SymbolBook(symbol, self.market, max_buffer=self.max_buffer)
        return book

    def remove(self, symbol: str) -> None:
        """Stop following ``symbol``: its book is dropped and its fetch cancelled."""
        self.books.pop(symbol, None)
        task = self._tasks.pop(symbol, None)
        if task is not None:
            task.cancel()

    @property
    def fetching(self) -> frozenset[str]:
        """Symbols with a snapshot fetch running."""
        return frozenset(self._tasks)

    def on_diff(self, ev: dict[str, Any]) -> Outcome:
        """A depth event (``ev["s"]`` names the symbol); ``ignored`` for a symbol not followed."""
        book = self.books.get(ev["s"])
        if book is None:
            return IGNORED
        return self._after(book, book.on_diff(ev))

    def on_book_ticker(self, t: dict[str, Any]) -> Outcome:
        """A ``bookTicker`` payload (``t["s"]`` names the symbol)."""
        book = self.books.get(t["s"])
        if book is None:
            return IGNORED
        return self._after(book, book.on_book_ticker(t))

    def _after(self, book: SymbolBook, outcome: Outcome) -> Outcome:
        if self._on_outcome is not None and outcome.kind is not Kind.APPLIED:
            self._on_outcome(book, outcome)
        if outcome.needs_snapshot and book.symbol not in self._tasks:
            self._tasks[book.symbol] = asyncio.get_running_loop().create_task(
                self._resync(book), name=f"snapshot-{book.symbol}"
            )
        return outcome

    async def _resync(self, book: SymbolBook) -> None:
        attempt = 0
        try:
            while book.wants_snapshot and self.books.get(book.symbol) is book:
                try:
                    snap = await self._fetch(book.symbol)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any fetch failure is retried after a delay
                    self.fetch_errors += 1
                    attempt += 1
                    log.warning("%s %s: snapshot fetch failed: %s", self.market, book.symbol, exc)
                    await asyncio.sleep(self._backoff.delay(attempt))
                    continue
                outcome = book.on_snapshot(snap)
                if self._on_outcome is not None:
                    self._on_outcome(book, outcome)
                if outcome.kind is Kind.RESYNC:
                    attempt += 1
                    await asyncio.sleep(self._backoff.delay(attempt))
                else:
                    attempt = 0
        finally:
            if self._tasks.get(book.symbol) is asyncio.current_task():
                del self._tasks[book.symbol]

    async def idle(self) -> None:
        """Wait until no snapshot fetch is running (one that starts meanwhile is waited for too)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks.values()))

    async def close(self) -> None:
        """Cancel every running fetch and wait for them."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
