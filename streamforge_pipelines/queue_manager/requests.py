"""What the queue-manager is asked to load, and what it reports back.

:class:`LoadRequest` (candles of one interval and market) and :class:`TradesRequest` (aggregate
trades or trades) name symbols and a range of UTC days; :class:`LoadReport` and
:class:`TradesReport` carry the tasks' outcomes, the exchange figures and the completeness ledger
of the range. :func:`expected_counts` and :func:`figures` turn a request or a ledger into the per
(symbol, day) figures the runner and the assets print.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date

from .. import datasets
from ..datasets import DatasetSpec
from ..intervals import (
    Market,
    check_market_interval,
    count_open_times,
    day_range_ms,
    days_between,
    floor_open_time,
)
from ..settings import Settings
from ..store import LedgerRecord
from ..workers import BinanceRestClient, WeightGovernor
from .tracking import COMPLETE, FAILED, STALLED, ExchangeTotals
from .trades_ledger import KIND_TASK_TYPES, SpanFinder, TradesDayLedger, exchange_day_span


@dataclass(frozen=True)
class LoadRequest:
    symbols: tuple[str, ...]
    interval: str
    first: date
    last: date
    run_id: str | None = None
    partition_key: str | None = None
    #: Where the loaders read days from: auto (archive for closed days, REST for the tail), rest,
    #: archive. `streamforge run` and the candles assets default to auto; a bare request to rest.
    source: str = "rest"
    #: Which market: spot, or usdm (USD-M futures: their own topic and collection, no 1s candles).
    market: Market = "spot"

    def __post_init__(self) -> None:
        check_market_interval(self.market, self.interval)

    @property
    def task_type(self) -> str:
        return f"api_candles_{self.interval}"

    def series(self, symbol: str) -> tuple[str, ...]:
        return (symbol, self.interval)

    @property
    def spec(self) -> DatasetSpec:
        """The dataset of the request's market (:data:`~streamforge_pipelines.datasets.CANDLES`, ...)."""
        return datasets.candles(self.market)

    @property
    def collection(self) -> str:
        """The store collection of the request's market (``candles``, ``candles_usdm``)."""
        return self.spec.collection


@dataclass
class DayFigure:
    symbol: str
    day: str
    expected: int
    stored: int
    #: Candles absent because the exchange confirmed it has none (completeness ledger).
    downtime: int = 0

    @property
    def missing(self) -> int:
        return max(0, self.expected - self.stored - self.downtime)


@dataclass
class DayTotals:
    """Expected vs stored per (symbol, day) of one load, and their sums."""

    request: LoadRequest
    days: list[DayFigure] = field(default_factory=list)
    duplicate_keys: int = 0
    seconds: float = 0.0

    @property
    def expected(self) -> int:
        return sum(d.expected for d in self.days)

    @property
    def stored(self) -> int:
        return sum(d.stored for d in self.days)

    @property
    def missing(self) -> int:
        return sum(d.missing for d in self.days)

    @property
    def downtime(self) -> int:
        return sum(d.downtime for d in self.days)


@dataclass
class LoadReport(DayTotals):
    tasks: dict[str, str] = field(default_factory=dict)  # queue_id -> final status
    errors: dict[str, str] = field(default_factory=dict)
    loaded: int = 0
    exchange: ExchangeTotals = field(default_factory=ExchangeTotals)
    #: The completeness ledger of the load's (symbol, day)s, after its repair round.
    ledger: list[LedgerRecord] = field(default_factory=list)
    #: Repair tasks (queue_id -> final status); their failure leaves candles missing, not the load failed.
    repair_tasks: dict[str, str] = field(default_factory=dict)

    @property
    def repaired(self) -> int:
        """Candles the repair round stored that the load's tasks had not."""
        return sum(e.repaired for e in self.ledger)

    @property
    def failed(self) -> list[str]:
        return [q for q, s in self.tasks.items() if s in (FAILED, STALLED)]

    @property
    def ok(self) -> bool:
        return not self.failed and self.missing == 0


def expected_counts(request: LoadRequest, clock_ms: int) -> dict[tuple[str, str], int]:
    """Candles per (symbol, day) the loader asks for: every closed candle of each day."""
    horizon = floor_open_time(clock_ms, request.interval)
    out = {}
    for d in days_between(request.first, request.last):
        start, end = day_range_ms(d, d)
        n = count_open_times(start, min(end, horizon), request.interval) if start < horizon else 0
        for s in request.symbols:
            out[(s, d.isoformat())] = n
    return out


def figures(entries: Sequence[LedgerRecord]) -> list[DayFigure]:
    """The ledger entries as the per (symbol, day) figures of a report."""
    return [
        DayFigure(symbol=e.symbol, day=e.day, expected=e.expected, stored=e.stored, downtime=e.downtime)
        for e in sorted(entries, key=lambda e: (e.symbol, e.day))
    ]


@dataclass(frozen=True)
class TradesRequest:
    """A trades load: ``kind`` ``agg`` (``api_agg_trades``) or ``trade`` (``api_trades``) of
    ``symbols`` over the days ``first`` .. ``last``."""

    symbols: tuple[str, ...]
    kind: str
    first: date
    last: date
    run_id: str | None = None
    partition_key: str | None = None
    source: str = "rest"

    @property
    def task_type(self) -> str:
        return KIND_TASK_TYPES[self.kind]

    @property
    def spec(self) -> DatasetSpec:
        return datasets.TRADES

    def series(self, symbol: str) -> tuple[str, ...]:
        return (symbol, self.kind)

    @asynccontextmanager
    async def day_spans(self, settings: Settings) -> AsyncIterator[SpanFinder]:
        """Each (symbol, day)'s id span from the exchange (:func:`.trades_ledger.exchange_day_span`:
        two weight-4 requests, through a governor of the deployment's share of the limit)."""
        if settings.exchange_url is None:
            raise ValueError("EXCHANGE_URL is not set: no exchange to take the id spans from")
        governor = WeightGovernor(settings.exchange_weight_limit, settings.exchange_weight_share)
        async with BinanceRestClient(
            settings.exchange_url, governor=governor, waf_pause_s=settings.exchange_waf_pause_s
        ) as client:

            async def span_of(symbol: str, day: date) -> tuple[int, int] | None:
                return await exchange_day_span(client, symbol, self.kind, day)

            yield span_of


@dataclass
class TradesReport:
    """What :func:`.loads.load` did for a trades request: task outcomes, exchange figures, the trades
    ledger."""

    request: TradesRequest
    tasks: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    loaded: int = 0
    exchange: ExchangeTotals = field(default_factory=ExchangeTotals)
    ledger: list[TradesDayLedger] = field(default_factory=list)
    repaired: int = 0
    seconds: float = 0.0

    @property
    def expected(self) -> int:
        return sum(e.expected for e in self.ledger)

    @property
    def stored(self) -> int:
        return sum(e.stored for e in self.ledger)

    @property
    def missing(self) -> int:
        return sum(e.missing for e in self.ledger)

    @property
    def failed(self) -> list[str]:
        return [q for q, status in self.tasks.items() if status != COMPLETE]

    @property
    def ok(self) -> bool:
        return not self.failed and self.missing == 0
