"""queue-manager: plan a load, write the task records, command the loaders, wait until stored.

This is the logic behind the Dagster candles and trades assets, kept free of Dagster so it can be
called and tested on its own. :func:`load_candles` returns only when every task is stored (or has
failed, or stalled), which is what lets the asset step own the partition's materialization: it is
recorded once, by the step, with the figures of :class:`~.requests.LoadReport`.
:func:`load_trades` does the same for trades, with the trades ledger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..intervals import day_range_ms, days_between, now_ms
from ..settings import Settings
from ..store import LedgerRecord, Store
from ..workers import BinanceRestClient, WeightGovernor
from .commands import build_commands, range_repairs
from .ledger import LedgerTotals, build_ledger, repair_ranges, save_ledger
from .requests import DayFigure, LoadReport, LoadRequest, TradesReport, TradesRequest, figures
from .tasks import Launch, run_tasks
from .tracking import COMPLETE, TaskTracker
from .trades_ledger import TradesDayLedger, check_id_day, exchange_day_span, repair_plan

log = logging.getLogger(__name__)


def duplicate_keys(request: LoadRequest, store: Store) -> int:
    """(symbol, interval, open_time) triples of the request's range stored more than once (0 if sound)."""
    start, end = day_range_ms(request.first, request.last)
    symbols = list(request.symbols)
    return store.duplicates(request.spec, symbols, (request.interval,), start, end)


def ledger_of(
    request: LoadRequest, store: Store, clock_ms: int, *, save: bool = False
) -> tuple[list[LedgerRecord], int]:
    """The completeness ledger of the request's range from the store (confirmed downtime from the
    persisted ledger), persisted when ``save``, and its duplicate keys. Asks the exchange nothing."""
    entries = build_ledger(
        store,
        request.symbols,
        request.interval,
        request.first,
        request.last,
        clock_ms,
        spec=request.spec,
    )
    if save:
        save_ledger(store, entries)
    return entries, duplicate_keys(request, store)


def measure(request: LoadRequest, store: Store, clock_ms: int) -> tuple[list[DayFigure], int]:
    """Expected vs stored (and confirmed downtime) per (symbol, day), and duplicate keys, read from
    the store. Asks the exchange nothing and writes nothing."""
    entries, dups = ledger_of(request, store, clock_ms)
    return figures(entries), dups


async def load_candles(
    request: LoadRequest,
    settings: Settings,
    store: Store,
    *,
    launch: Launch = "inprocess",
    max_parallel_tasks: int = 4,
    on_progress: Callable[[TaskTracker], None] | None = None,
    repair: bool = True,
    clock_ms: Callable[[], int] = now_ms,
) -> LoadReport:
    """Run one load to the end: task records, commands, loaders, completion, then the completeness
    ledger with one round of targeted repair (:func:`repair_candles`) when every task completed.

    ``clock_ms`` (epoch ms; default the wall clock) is what "now" is for the in-process loaders
    (which days ``auto`` reads from the archive, where the still-open candle starts) and for the
    ledger: tests pass a fixed one so that a load of a fixed historical range plans the same way on
    any day. External loaders (``launch="external"``) read their own clock."""
    t0 = time.perf_counter()
    commands = build_commands(request, settings, parallel=max_parallel_tasks)
    report = LoadReport(request=request)
    outcome = await run_tasks(
        commands, request, settings, store, launch, max_parallel_tasks, on_progress, clock_ms=clock_ms
    )
    report.tasks, report.errors, report.loaded = outcome.tasks, outcome.errors, outcome.loaded
    report.exchange = outcome.exchange
    if repair and not report.failed:
        fixed = await repair_candles(
            request,
            settings,
            store,
            launch=launch,
            max_parallel_tasks=max_parallel_tasks,
            on_progress=on_progress,
            clock_ms=clock_ms,
        )
        report.ledger, report.repair_tasks = fixed.entries, fixed.tasks
        report.errors.update(fixed.errors)
        report.duplicate_keys = duplicate_keys(request, store)
    else:
        report.ledger, report.duplicate_keys = ledger_of(request, store, clock_ms(), save=True)
    report.days = figures(report.ledger)
    report.seconds = time.perf_counter() - t0
    return report


@dataclass
class RepairOutcome:
    """The ledger after a repair round, and the repair tasks' final statuses."""

    entries: list[LedgerRecord]
    tasks: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    #: Candles the repair stored (that were missing before it).
    repaired: int = 0
    #: Candles the repair found confirmed absent on the exchange (now downtime).
    confirmed: int = 0


async def repair_candles(
    request: LoadRequest,
    settings: Settings,
    store: Store,
    *,
    launch: Launch = "inprocess",
    max_parallel_tasks: int = 4,
    on_progress: Callable[[TaskTracker], None] | None = None,
    clock_ms: Callable[[], int] = now_ms,
) -> RepairOutcome:
    """Build the ledger of ``request``; if candles are missing, re-fetch only their ranges from REST
    (one task per symbol, same launch mode), wait until stored, and rebuild the ledger with the
    ranges the exchange returned nothing for as confirmed downtime. The ledger is persisted.
    ``clock_ms`` as for :func:`load_candles`."""
    clock = clock_ms()  # one clock for before and after: the same closed candles are expected

    def ledger(confirmed: dict[str, list[tuple[int, int]]] | None = None) -> list[LedgerRecord]:
        return build_ledger(
            store,
            request.symbols,
            request.interval,
            request.first,
            request.last,
            clock,
            confirmed=confirmed,
            spec=request.spec,
        )

    before = ledger()
    ranges = repair_ranges(before)
    if not ranges:
        save_ledger(store, before)
        return RepairOutcome(entries=before)
    commands = build_commands(request, settings, plans=range_repairs(ranges), parallel=max_parallel_tasks)
    missing, n_ranges = LedgerTotals.of(before).missing, sum(map(len, ranges.values()))
    log.info("repair: %d candles missing, re-fetching %d ranges", missing, n_ranges)
    empty: dict[str, list[tuple[int, int]]] = {}
    outcome = await run_tasks(
        commands,
        request,
        settings,
        store,
        launch,
        max_parallel_tasks,
        on_progress,
        empty_ranges=empty,
        clock_ms=clock_ms,
    )
    confirmed: dict[str, list[tuple[int, int]]] = {}
    for c in commands:
        if outcome.tasks[c.queue_id] == COMPLETE and c.symbol is not None:
            confirmed.setdefault(c.symbol, []).extend(empty.get(c.queue_id, []))
    after = ledger(confirmed)
    was = {e.key: e for e in before}
    for e in after:
        old = was.get(e.key)
        e.repaired = max(0, e.stored - old.stored) if old is not None and old.missing else 0
    save_ledger(store, after)
    result = RepairOutcome(entries=after, tasks=outcome.tasks, errors=outcome.errors)
    result.repaired = sum(e.repaired for e in after)
    result.confirmed = LedgerTotals.of(after).downtime - LedgerTotals.of(before).downtime
    return result


async def trades_ledger(request: TradesRequest, settings: Settings, store: Store) -> list[TradesDayLedger]:
    """The trades ledger of every (symbol, day) of the request, with the day's id span from the
    exchange (two weight-4 requests per symbol-day, through a governor of the deployment's share)."""
    if settings.exchange_url is None:
        raise ValueError("EXCHANGE_URL is not set: no exchange to take the id spans from")
    governor = WeightGovernor(settings.exchange_weight_limit, settings.exchange_weight_share)
    out = []
    async with BinanceRestClient(
        settings.exchange_url, governor=governor, waf_pause_s=settings.exchange_waf_pause_s
    ) as client:
        for symbol in request.symbols:
            for day in days_between(request.first, request.last):
                span = await exchange_day_span(client, symbol, request.kind, day)
                out.append(check_id_day(store, request.spec, (symbol, request.kind), day, span))
    return out


async def load_trades(
    request: TradesRequest,
    settings: Settings,
    store: Store,
    *,
    launch: Launch = "inprocess",
    max_parallel_tasks: int = 4,
    on_progress: Callable[[TaskTracker], None] | None = None,
    repair: bool = True,
) -> TradesReport:
    """Run one trades load to the end (task records, commands, loaders, completion), then the trades
    ledger (:mod:`.trades_ledger`) with one round of ``id_ranges`` repair when anything is missing."""
    t0 = time.perf_counter()
    report = TradesReport(request=request)
    commands = build_commands(request, settings, parallel=max_parallel_tasks)
    outcome = await run_tasks(commands, request, settings, store, launch, max_parallel_tasks, on_progress)
    report.tasks, report.errors, report.loaded = outcome.tasks, outcome.errors, outcome.loaded
    report.exchange = outcome.exchange
    report.ledger = await trades_ledger(request, settings, store)
    plans = [p for p in map(repair_plan, report.ledger) if p is not None]
    fixes = build_commands(request, settings, plans=plans, parallel=max_parallel_tasks)
    if repair and fixes and not report.failed:
        fixed = await run_tasks(fixes, request, settings, store, launch, max_parallel_tasks, on_progress)
        report.errors.update(fixed.errors)
        report.repaired = fixed.loaded
        report.ledger = await trades_ledger(request, settings, store)
    report.seconds = time.perf_counter() - t0
    return report
