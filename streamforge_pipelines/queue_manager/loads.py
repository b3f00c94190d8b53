"""queue-manager: plan a load, write the task records, command the loaders, wait until stored.

This is the logic behind the Dagster dataset assets, kept free of Dagster so it can be called and
tested on its own. :func:`load` runs any dataset's request: the one command builder, the tasks to
the end (stored, failed or stalled) — which is what lets the asset step own the partition's
materialization, recorded once by the step with the report's figures — and then the completeness
check of the dataset's ledger kind with one round of targeted repair: a time grid
(:func:`complete_time_grid`: candles, :class:`~.requests.LoadReport`) or id ranges
(:func:`complete_id_ranges`: trades, :class:`~.requests.TradesReport`).

A time-grid load fetches only what the store does not hold yet (:func:`unfinished_plans`): a run
that was cancelled (its loaders stopped, ``interrupted``) or failed leaves the days it stored, and
running the same partitions again loads each symbol from its first unfinished day on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ..intervals import count_open_times, day_range_ms, days_between, now_ms
from ..protocol import Command
from ..settings import Settings
from ..store import LedgerRecord, Store
from .commands import DatasetRequest, TaskPlan, build_commands, range_repairs
from .ledger import LedgerTotals, build_ledger, day_window, repair_ranges, save_ledger
from .requests import DayFigure, LoadReport, LoadRequest, TradesReport, figures
from .tasks import Launch, TasksOutcome, run_tasks
from .tracking import COMPLETE, ExchangeTotals, TaskTracker
from .trades_ledger import SpanFinder, TradesDayLedger, check_id_day, repair_plan

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


def unfinished_plans(request: LoadRequest, store: Store, clock_ms: int) -> list[TaskPlan]:
    """One task per symbol over its days from the first to the last that the store does not hold
    whole (stored plus confirmed downtime below the closed candles expected), from the request's
    source; none for a symbol whose days are all complete. A first load (nothing stored) is
    :func:`~.commands.whole_range`. A cancelled load stored its candles in time order, so what is
    left is one run of days per symbol; a partly stored day is loaded whole (records are idempotent)."""
    first, last, interval = request.first, request.last, request.interval
    start, end = day_range_ms(first, last)
    symbols = list(request.symbols)
    counts = store.counts_by_day(request.spec, symbols, (interval,), start, end)
    collection = request.spec.collection
    ledger = store.read_ledger(symbols, interval, first.isoformat(), last.isoformat(), collection)
    downtime = {(r.symbol, r.day): r.downtime for r in ledger}
    plans = []
    for symbol in request.symbols:
        todo = []
        for day in days_between(first, last):
            key = (symbol, day.isoformat())
            lo, hi = day_window(day, interval, clock_ms)
            expected = count_open_times(lo, hi, interval) if hi > lo else 0
            if counts.get(key, 0) + downtime.get(key, 0) < expected:
                todo.append(day)
        if todo:
            plans.append(TaskPlan(symbol, todo[0], todo[-1], request.source))
    return plans


@dataclass(frozen=True)
class LoadRun:
    """How a load's tasks run (the options of :func:`load`), for its repair round too."""

    settings: Settings
    store: Store
    launch: Launch = "inprocess"
    max_parallel_tasks: int = 4
    on_progress: Callable[[TaskTracker], None] | None = None
    clock_ms: Callable[[], int] = now_ms

    async def tasks(self, commands: list[Command], request: DatasetRequest, **kw: Any) -> TasksOutcome:
        return await run_tasks(
            commands,
            request,
            self.settings,
            self.store,
            self.launch,
            self.max_parallel_tasks,
            self.on_progress,
            clock_ms=self.clock_ms,
            **kw,
        )


async def load(
    request: DatasetRequest,
    settings: Settings,
    store: Store,
    *,
    launch: Launch = "inprocess",
    max_parallel_tasks: int = 4,
    on_progress: Callable[[TaskTracker], None] | None = None,
    repair: bool = True,
    clock_ms: Callable[[], int] = now_ms,
) -> Any:
    """Run one load to the end: task records, commands, loaders, completion; then the completeness
    check of the request's dataset (its ledger kind) with one round of targeted repair when every
    task completed (and ``repair``). Returns the request's report (``LoadReport``, ``TradesReport``).

    ``clock_ms`` (epoch ms; default the wall clock) is what "now" is for the in-process loaders
    (which days ``auto`` reads from the archive, where the still-open candle starts) and for the
    ledger: tests pass a fixed one so that a load of a fixed historical range plans the same way on
    any day. External loaders (``launch="external"``) read their own clock."""
    t0 = time.perf_counter()
    run = LoadRun(settings, store, launch, max_parallel_tasks, on_progress, clock_ms)
    plans = None  # the whole range
    if isinstance(request, LoadRequest) and request.spec.ledger == "time_grid":
        plans = unfinished_plans(request, store, clock_ms())
    commands = build_commands(request, settings, plans=plans, parallel=max_parallel_tasks)
    if commands:
        outcome = await run.tasks(commands, request)
    else:  # everything stored already: only the completeness check
        outcome = TasksOutcome(tasks={}, errors={}, loaded=0, exchange=ExchangeTotals())
    complete = COMPLETIONS[request.spec.ledger]
    report = await complete(request, outcome, run, repair)  # type: ignore[operator]
    report.seconds = time.perf_counter() - t0
    return report


async def complete_time_grid(
    request: LoadRequest, outcome: TasksOutcome, run: LoadRun, repair: bool
) -> LoadReport:
    """A time-grid dataset's report: the ledger after one round of range repair (when every task
    completed), the per-day figures and the duplicate keys."""
    report = LoadReport(request=request)
    report.tasks, report.errors, report.loaded = outcome.tasks, outcome.errors, outcome.loaded
    report.exchange = outcome.exchange
    if repair and not report.failed:
        fixed = await repair_candles(request, run)
        report.ledger, report.repair_tasks = fixed.entries, fixed.tasks
        report.errors.update(fixed.errors)
        report.duplicate_keys = duplicate_keys(request, run.store)
    else:
        report.ledger, report.duplicate_keys = ledger_of(request, run.store, run.clock_ms(), save=True)
    report.days = figures(report.ledger)
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


async def repair_candles(request: LoadRequest, run: LoadRun) -> RepairOutcome:
    """Build the ledger of ``request``; if candles are missing, re-fetch only their ranges from REST
    (one task per symbol, the run's launch mode), wait until stored, and rebuild the ledger with the
    ranges the exchange returned nothing for as confirmed downtime. The ledger is persisted."""
    store = run.store
    clock = run.clock_ms()  # one clock for before and after: the same closed candles are expected

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
    commands = build_commands(
        request, run.settings, plans=range_repairs(ranges), parallel=run.max_parallel_tasks
    )
    missing, n_ranges = LedgerTotals.of(before).missing, sum(map(len, ranges.values()))
    log.info("repair: %d candles missing, re-fetching %d ranges", missing, n_ranges)
    empty: dict[str, list[tuple[int, int]]] = {}
    outcome = await run.tasks(commands, request, empty_ranges=empty)
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


@asynccontextmanager
async def _spans_from_the_store() -> AsyncIterator[SpanFinder]:
    async def none(symbol: str, day: date) -> None:
        return None

    yield none


async def id_range_ledger(request: DatasetRequest, settings: Settings, store: Store) -> list[TradesDayLedger]:
    """The id-range ledger of every (series, day) of the request (:func:`.trades_ledger.check_id_day`):
    each day's id span from the request's own source when it has one (``day_spans``: a trades
    request asks the exchange), else from what the store holds for the day."""
    day_spans = getattr(request, "day_spans", None)
    out = []
    async with day_spans(settings) if day_spans is not None else _spans_from_the_store() as span_of:
        for symbol in request.symbols:
            for day in days_between(request.first, request.last):
                span = await span_of(symbol, day)
                out.append(check_id_day(store, request.spec, request.series(symbol), day, span))
    return out


async def complete_id_ranges(
    request: DatasetRequest, outcome: TasksOutcome, run: LoadRun, repair: bool
) -> TradesReport:
    """An id-range dataset's report: its ledger (:func:`id_range_ledger`) after one round of
    ``id_ranges`` repair when anything is missing and every task completed."""
    report = TradesReport(request=request)
    report.tasks, report.errors, report.loaded = outcome.tasks, outcome.errors, outcome.loaded
    report.exchange = outcome.exchange
    report.ledger = await id_range_ledger(request, run.settings, run.store)
    plans = [p for p in map(repair_plan, report.ledger) if p is not None]
    if repair and plans and not report.failed:
        fixes = build_commands(request, run.settings, plans=plans, parallel=run.max_parallel_tasks)
        fixed = await run.tasks(fixes, request)
        report.errors.update(fixed.errors)
        report.repaired = fixed.loaded
        report.ledger = await id_range_ledger(request, run.settings, run.store)
    return report


#: The completeness check of each ledger kind (:attr:`~streamforge_pipelines.datasets.DatasetSpec.ledger`).
COMPLETIONS: dict[str, Callable[..., Awaitable[Any]]] = {
    "time_grid": complete_time_grid,
    "id_ranges": complete_id_ranges,
}
