"""queue-manager: plan a candle load, write the task records, command the loaders, wait until stored.

This is the logic behind the Dagster candles asset, kept free of Dagster so it can be called and
tested on its own. :func:`load_candles` returns only when every task is stored (or has failed, or
stalled), which is what lets the asset step own the partition's materialization: it is recorded
once, by the step, with the figures of :class:`LoadReport`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

from aiokafka import AIOKafkaProducer

from .intervals import count_open_times, day_range_ms, floor_open_time, ms_to_day
from .kafka_health import monitor as broker_monitor
from .ledger import LedgerTotals, build_ledger, repair_ranges, save_ledger
from .protocol import (
    LOADER_PRODUCER,
    TRADE_TASK_TYPES,
    Command,
    format_time_range,
    make_producer_id,
    make_queue_id,
    new_suffix,
    now_s,
)
from .settings import TRADES_COLLECTION, Settings, candle_collection
from .store import Store, TaskRecord
from .store.base import LedgerRecord
from .telemetry import EventFollower
from .tracking import COMPLETE, FAILED, STALLED, ExchangeTotals, TaskTracker
from .trades_ledger import (
    KIND_TASK_TYPES,
    TradesDayLedger,
    check_trades_day,
    exchange_day_span,
    repair_command,
)
from .workers.exchange_client import BinanceRestClient, Market, check_market_interval
from .workers.governor import WeightGovernor
from .workers.kafka_io import make_producer, stop_within
from .workers.loader_candles import now_ms, run_candle_task
from .workers.loader_trades import run_trades_task

log = logging.getLogger(__name__)

Launch = Literal["inprocess", "external"]


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

    @property
    def collection(self) -> str:
        """The store collection of the request's market (``candles``, ``candles_usdm``)."""
        return candle_collection(self.market)


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


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def weight_share(settings: Settings, tasks: int, parallel: int) -> float:
    """Each loader task's share of the exchange's per-IP weight limit: the deployment's share
    (``EXCHANGE_WEIGHT_SHARE``) split evenly over the tasks that run at the same time."""
    at_once = max(1, min(tasks, parallel))
    return settings.exchange_weight_share / at_once


def build_commands(request: LoadRequest, settings: Settings, *, parallel: int = 4) -> list[Command]:
    commands = []
    share = weight_share(settings, len(request.symbols), parallel)
    for symbol in request.symbols:
        suffix = new_suffix()
        queue_id = make_queue_id(symbol, request.task_type, request.first, suffix)
        commands.append(
            Command(
                command="start",
                queue_id=queue_id,
                target=LOADER_PRODUCER,
                symbol=symbol,
                type=request.task_type,
                time_range=format_time_range(request.first, request.last),
                kafka_topic=settings.candle_topic(request.market),
                collection_name=request.collection,
                market=request.market,
                telemetry_id=make_producer_id(LOADER_PRODUCER, suffix),
                timestamp=now_s(),
                run_id=request.run_id,
                partition_key=request.partition_key,
                weight_share=share,
                source=request.source,
            )
        )
    return commands


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


def duplicate_keys(request: LoadRequest, store: Store) -> int:
    """(symbol, interval, open_time) triples of the request's range stored more than once (0 if sound)."""
    start, end = day_range_ms(request.first, request.last)
    symbols = list(request.symbols)
    return store.duplicate_candle_keys(symbols, request.interval, start, end, request.collection)


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
        collection=request.collection,
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
    outcome = await _run_tasks(
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


def build_repair_commands(
    request: LoadRequest, ranges: dict[str, list[tuple[int, int]]], settings: Settings, *, parallel: int = 4
) -> list[Command]:
    """One REST command per symbol that fetches only ``ranges[symbol]`` (open-time ranges)."""
    commands = []
    share = weight_share(settings, len(ranges), parallel)
    for symbol, rs in sorted(ranges.items()):
        suffix = new_suffix()
        first, last = ms_to_day(rs[0][0]), ms_to_day(rs[-1][1] - 1)
        commands.append(
            Command(
                command="start",
                queue_id=make_queue_id(symbol, request.task_type, first, suffix),
                target=LOADER_PRODUCER,
                symbol=symbol,
                type=request.task_type,
                time_range=format_time_range(first, last),
                kafka_topic=settings.candle_topic(request.market),
                collection_name=request.collection,
                market=request.market,
                telemetry_id=make_producer_id(LOADER_PRODUCER, suffix),
                timestamp=now_s(),
                run_id=request.run_id,
                partition_key=request.partition_key,
                weight_share=share,
                source="rest",
                ranges=[(a, b) for a, b in rs],
            )
        )
    return commands


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
            collection=request.collection,
        )

    before = ledger()
    ranges = repair_ranges(before)
    if not ranges:
        save_ledger(store, before)
        return RepairOutcome(entries=before)
    commands = build_repair_commands(request, ranges, settings, parallel=max_parallel_tasks)
    missing, n_ranges = LedgerTotals.of(before).missing, sum(map(len, ranges.values()))
    log.info("repair: %d candles missing, re-fetching %d ranges", missing, n_ranges)
    empty: dict[str, list[tuple[int, int]]] = {}
    outcome = await _run_tasks(
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


def figures(entries: Sequence[LedgerRecord]) -> list[DayFigure]:
    """The ledger entries as the per (symbol, day) figures of a report."""
    return [
        DayFigure(symbol=e.symbol, day=e.day, expected=e.expected, stored=e.stored, downtime=e.downtime)
        for e in sorted(entries, key=lambda e: (e.symbol, e.day))
    ]


@dataclass
class _TasksOutcome:
    tasks: dict[str, str]
    errors: dict[str, str]
    loaded: int
    exchange: ExchangeTotals


async def _run_tasks(
    commands: list[Command],
    request: LoadRequest | TradesRequest,
    settings: Settings,
    store: Store,
    launch: Launch,
    max_parallel_tasks: int,
    on_progress: Callable[[TaskTracker], None] | None,
    *,
    empty_ranges: dict[str, list[tuple[int, int]]] | None = None,
    clock_ms: Callable[[], int] = now_ms,
) -> _TasksOutcome:
    """Task records, commands, loaders, completion: until every task is stored, failed or stalled."""
    bootstrap = settings.kafka_bootstrap_servers or ""
    queue_ids = [c.queue_id for c in commands]
    for c in commands:
        store.put_task(
            TaskRecord(
                queue_id=c.queue_id,
                symbol=c.symbol or "",
                type=c.type or "",
                time_range=c.time_range or "",
                status="pending",
                run_id=request.run_id,
                partition_key=request.partition_key,
            )
        )
    tracker = TaskTracker()
    tracker.watch(queue_ids)
    health = broker_monitor(bootstrap, down_after_s=settings.kafka_unavailable_s)
    health.check()
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        async with EventFollower(bootstrap, settings.topic_events) as follower:
            await _publish(producer, settings.topic_control, commands)
            loaders = _launch(commands, settings, producer, launch, max_parallel_tasks, clock_ms)
            try:
                await _follow(follower, tracker, queue_ids, store, settings, on_progress, empty_ranges)
            finally:
                for t in loaders:
                    t.cancel()
                if health.down and loaders:  # they would wait on the broker to report `interrupted`
                    await asyncio.wait(loaders, timeout=0.5)
                else:
                    await asyncio.gather(*loaders, return_exceptions=True)
    finally:
        # A producer flushes what it holds before it stops: with the broker gone, not for long.
        await stop_within(producer.stop(), 0.5 if health.down else None)
    out = _TasksOutcome(tasks={}, errors={}, loaded=0, exchange=ExchangeTotals())
    for q in queue_ids:
        state = tracker.tasks[q]
        out.tasks[q] = state.status if state.done else STALLED
        out.loaded += state.loaded
        if state.error:
            out.errors[q] = state.error
        fields = state.record_fields()
        fields["status"] = out.tasks[q]
        store.update_task(q, **fields)
    out.exchange = ExchangeTotals.of(tracker.tasks[q] for q in queue_ids)
    return out


async def _publish(producer: AIOKafkaProducer, topic: str, commands: Sequence[Command]) -> None:
    futures = [await producer.send(topic, c.encode(), key=c.queue_id.encode()) for c in commands]
    await asyncio.gather(*futures)


def _launch(
    commands: Sequence[Command],
    settings: Settings,
    producer: AIOKafkaProducer,
    launch: Launch,
    parallel: int,
    clock_ms: Callable[[], int] = now_ms,
) -> list[asyncio.Task[None]]:
    if launch == "external":
        return []  # standalone loaders listening on queue-control carry the commands out
    gate = asyncio.Semaphore(parallel)
    # The step's loaders pool their shares: one governor for the step's whole share of the limit,
    # one per market (Binance counts spot and USD-M futures weight apart).
    governors: dict[str, WeightGovernor] = {}
    for c in commands:
        market = c.market or "spot"
        if market not in governors:
            limit = settings.weight_limit(market)
            governors[market] = WeightGovernor(limit, settings.exchange_weight_share, pool=market)

    async def one(command: Command) -> None:
        async with gate:
            try:
                governor = governors[command.market or "spot"]
                if command.type in TRADE_TASK_TYPES:
                    await run_trades_task(
                        command, settings, producer=producer, governor=governor, clock_ms=clock_ms
                    )
                else:
                    await run_candle_task(
                        command, settings, producer=producer, governor=governor, clock_ms=clock_ms
                    )
            except Exception as exc:  # noqa: BLE001 - reported on queue-events by the loader
                log.warning("task %s failed: %s", command.queue_id, exc)

    return [asyncio.create_task(one(c)) for c in commands]


async def _follow(
    follower: EventFollower,
    tracker: TaskTracker,
    queue_ids: list[str],
    store: Store,
    settings: Settings,
    on_progress: Callable[[TaskTracker], None] | None,
    empty_ranges: dict[str, list[tuple[int, int]]] | None = None,
) -> None:
    watched = set(queue_ids)
    started = last_event = time.monotonic()
    health = broker_monitor(settings.kafka_bootstrap_servers or "", down_after_s=settings.kafka_unavailable_s)
    while tracker.pending(queue_ids):
        health.check()  # a dead broker is one line within seconds, not a stall after TASK_STALL_S
        events = [e for e in await follower.poll(timeout_ms=300) if e.queue_id in watched]
        now = time.monotonic()
        for event in events:
            before = tracker.tasks[event.queue_id].status
            state = tracker.apply(event)
            if empty_ranges is not None and event.empty_ranges is not None:
                empty_ranges[event.queue_id] = [(int(a), int(b)) for a, b in event.empty_ranges]
            if state is not None and state.status != before:
                store.update_task(event.queue_id, **state.record_fields())
        if events:
            last_event = now
            if on_progress is not None:
                on_progress(tracker)
        if now - last_event > settings.task_stall_s:
            log.error("no telemetry for %.0fs: giving up on %s", now - last_event, tracker.pending(queue_ids))
            return
        if settings.task_timeout_s and now - started > settings.task_timeout_s:
            log.error("tasks not stored after %.0fs: %s", settings.task_timeout_s, tracker.pending(queue_ids))
            return


# ---- trades (aggTrades / trades) ------------------------------------------------------------------


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


@dataclass
class TradesReport:
    """What :func:`load_trades` did: task outcomes, exchange figures and the trades ledger."""

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


def build_trades_commands(request: TradesRequest, settings: Settings, *, parallel: int = 4) -> list[Command]:
    """One start command per symbol for the whole range (as :func:`build_commands`)."""
    share = weight_share(settings, len(request.symbols), parallel)
    commands = []
    for symbol in request.symbols:
        suffix = new_suffix()
        commands.append(
            Command(
                command="start",
                queue_id=make_queue_id(symbol, request.task_type, request.first, suffix),
                target=LOADER_PRODUCER,
                symbol=symbol,
                type=request.task_type,
                time_range=format_time_range(request.first, request.last),
                kafka_topic=settings.topic_trades,
                collection_name=TRADES_COLLECTION,
                telemetry_id=make_producer_id(LOADER_PRODUCER, suffix),
                timestamp=now_s(),
                run_id=request.run_id,
                partition_key=request.partition_key,
                weight_share=share,
                source=request.source,  # type: ignore[arg-type]
            )
        )
    return commands


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
                out.append(check_trades_day(store, symbol, request.kind, day, span))
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
    commands = build_trades_commands(request, settings, parallel=max_parallel_tasks)
    outcome = await _run_tasks(commands, request, settings, store, launch, max_parallel_tasks, on_progress)
    report.tasks, report.errors, report.loaded = outcome.tasks, outcome.errors, outcome.loaded
    report.exchange = outcome.exchange
    report.ledger = await trades_ledger(request, settings, store)
    fixes = [c for c in (repair_command(e, kafka_topic=settings.topic_trades) for e in report.ledger) if c]
    if repair and fixes and not report.failed:
        fixed = await _run_tasks(fixes, request, settings, store, launch, max_parallel_tasks, on_progress)
        report.errors.update(fixed.errors)
        report.repaired = fixed.loaded
        report.ledger = await trades_ledger(request, settings, store)
    report.seconds = time.perf_counter() - t0
    return report
