"""The completeness ledger of trades: per (symbol, kind, UTC day), which ids the store lacks.

Binance's aggregate-trade ids and trade ids are consecutive per symbol, so a day is complete when the
store holds every id of the day's span: ``stored == last_id - first_id + 1``. The span comes from the
exchange (:func:`exchange_day_span`: the first id at or after the day's start, the last one before
its end: two weight-4 ``aggTrades`` requests) or, without one, from what the store holds for the
day (then only holes inside the stored span can be seen, not missing trades at the day's edges).
The missing ids come as half-open ranges ``[first_id, end_id)``; :func:`repair_plan` turns them into a
task plan with ``id_ranges`` (:func:`.commands.build_commands` makes it an ``api_agg_trades`` /
``api_trades`` command) that the trades loader fetches
with ``fromId`` pages (:mod:`streamforge_pipelines.workers.loader_trades`).

This module does not import Dagster (the asset layer calls it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ..datasets import DatasetSpec
from ..intervals import DAY_MS, day_start_ms
from ..protocol import TRADE_TASK_TYPES
from ..store import Store
from ..workers import BinanceRestClient, first_id
from .commands import TaskPlan

#: How a request finds a (symbol, day)'s id span: ``(first_id, last_id)``, or None (none known).
SpanFinder = Callable[[str, date], Awaitable[tuple[int, int] | None]]

#: Task type of each trade kind (``agg`` -> ``api_agg_trades``).
KIND_TASK_TYPES: dict[str, str] = {kind: task for task, kind in TRADE_TASK_TYPES.items()}


@dataclass(slots=True)
class TradesDayLedger:
    """Completeness of one (symbol, kind, day) of trades.

    ``first_id`` .. ``last_id`` (inclusive) is the day's id span (None: no trades that day, or none
    known); ``expected`` ids, of which ``stored`` are in the store; ``missing_ranges`` are the absent
    ids as ``[first_id, end_id)`` ranges. ``status``: ``complete`` | ``missing`` | ``empty``.
    """

    symbol: str
    kind: str
    day: str
    first_id: int | None
    last_id: int | None
    expected: int
    stored: int
    missing_ranges: list[tuple[int, int]] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return sum(b - a for a, b in self.missing_ranges)

    @property
    def status(self) -> str:
        if self.first_id is None:
            return "empty"
        return "missing" if self.missing_ranges else "complete"


def missing_id_ranges(stored_ids: Sequence[int], first: int, end: int) -> list[tuple[int, int]]:
    """The ids of ``[first, end)`` absent from ``stored_ids`` (ascending, each once), as half-open ranges."""
    out: list[tuple[int, int]] = []
    expect = first
    for i in stored_ids:
        if i < expect:
            continue
        if i >= end:
            break
        if i > expect:
            out.append((expect, i))
        expect = i + 1
    if expect < end:
        out.append((expect, end))
    return out


def check_id_day(
    store: Store,
    spec: DatasetSpec,
    series: Sequence[Any],
    day: date,
    span: tuple[int, int] | None = None,
) -> TradesDayLedger:
    """The id-range ledger of one series (``("BTCUSDT", "agg")``) and day of any ``id_ranges``
    dataset: which order values (ids) of the day's span the store lacks. ``span``: the day's
    ``(first_id, last_id)`` from the exchange (:func:`exchange_day_span`); None = the span of what
    the store holds for the day. The entry's ``kind`` is the series after the symbol (joined by
    ``:``; empty for a dataset whose series is the symbol alone)."""
    values = spec.check_series(series)
    symbol, kind = str(values[0]), ":".join(map(str, values[1:]))
    start = day_start_ms(day)
    if span is None:
        held = store.order_span(spec, values, start, start + DAY_MS)
        span = None if held is None else (held[0], held[1])
    if span is None:
        return TradesDayLedger(symbol, kind, day.isoformat(), None, None, 0, 0)
    lo, hi = span
    ids = store.order_values(spec, values, lo, hi + 1, by="order")
    return TradesDayLedger(
        symbol,
        kind,
        day.isoformat(),
        lo,
        hi,
        expected=hi - lo + 1,
        stored=len(ids),
        missing_ranges=missing_id_ranges(ids, lo, hi + 1),
    )


async def exchange_day_span(
    client: BinanceRestClient, symbol: str, kind: str, day: date
) -> tuple[int, int] | None:
    """The day's ``(first_id, last_id)`` of aggregate trades (``kind="agg"``) or trades on the
    exchange; None when the day has none. First: the loader's hour-window search; last: the newest
    aggregate trade at or before the day's last millisecond (``endTime`` only), or for trades its
    ``lastTradeId``."""
    start = day_start_ms(day)
    lo = await first_id(client, symbol, kind, start, start + DAY_MS)
    if lo is None:
        return None
    rows = await client.agg_trades(symbol, end_ms=start + DAY_MS - 1, limit=1)
    if not rows:
        return None
    hi = int(rows[-1]["a"] if kind == "agg" else rows[-1]["l"])
    return (lo, hi) if hi >= lo else None


def repair_plan(ledger: TradesDayLedger) -> TaskPlan | None:
    """The task that re-fetches the day's missing ids (REST, ``id_ranges``, ``fromId`` pages) for
    :func:`.commands.build_commands`; None when nothing is missing."""
    if not ledger.missing_ranges:
        return None
    day = date.fromisoformat(ledger.day)
    return TaskPlan(ledger.symbol, day, day, "rest", id_ranges=tuple(ledger.missing_ranges))
