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

from .intervals import count_open_times, day_range_ms, floor_open_time
from .protocol import (
    LOADER_PRODUCER,
    Command,
    format_time_range,
    make_producer_id,
    make_queue_id,
    new_suffix,
    now_s,
)
from .settings import Settings
from .store import Store, TaskRecord
from .telemetry import EventFollower
from .tracking import FAILED, STALLED, ExchangeTotals, TaskTracker
from .workers.governor import WeightGovernor
from .workers.kafka_io import make_producer
from .workers.loader_candles import now_ms, run_candle_task

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

    @property
    def task_type(self) -> str:
        return f"api_candles_{self.interval}"


@dataclass
class DayFigure:
    symbol: str
    day: str
    expected: int
    stored: int

    @property
    def missing(self) -> int:
        return max(0, self.expected - self.stored)


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


@dataclass
class LoadReport(DayTotals):
    tasks: dict[str, str] = field(default_factory=dict)  # queue_id -> final status
    errors: dict[str, str] = field(default_factory=dict)
    loaded: int = 0
    exchange: ExchangeTotals = field(default_factory=ExchangeTotals)

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
                kafka_topic=settings.topic_candles,
                collection_name="candles",
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


def measure(request: LoadRequest, store: Store, clock_ms: int) -> tuple[list[DayFigure], int]:
    """Expected vs stored per (symbol, day), and duplicate keys, read from the store."""
    start, end = day_range_ms(request.first, request.last)
    stored = store.candle_counts_by_day(list(request.symbols), request.interval, start, end)
    days = [
        DayFigure(symbol=s, day=d, expected=n, stored=stored.get((s, d), 0))
        for (s, d), n in sorted(expected_counts(request, clock_ms).items())
    ]
    dups = store.duplicate_candle_keys(list(request.symbols), request.interval, start, end)
    return days, dups


async def load_candles(
    request: LoadRequest,
    settings: Settings,
    store: Store,
    *,
    launch: Launch = "inprocess",
    max_parallel_tasks: int = 4,
    on_progress: Callable[[TaskTracker], None] | None = None,
) -> LoadReport:
    """Run one load to the end: task records, commands, loaders, completion, figures."""
    t0 = time.perf_counter()
    bootstrap = settings.kafka_bootstrap_servers or ""
    commands = build_commands(request, settings, parallel=max_parallel_tasks)
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
    report = LoadReport(request=request)
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        async with EventFollower(bootstrap, settings.topic_events) as follower:
            await _publish(producer, settings.topic_control, commands)
            loaders = _launch(commands, settings, producer, launch, max_parallel_tasks)
            try:
                await _follow(follower, tracker, queue_ids, store, settings, on_progress)
            finally:
                for t in loaders:
                    t.cancel()
                await asyncio.gather(*loaders, return_exceptions=True)
    finally:
        await producer.stop()
    for q in queue_ids:
        state = tracker.tasks[q]
        report.tasks[q] = state.status if state.done else STALLED
        report.loaded += state.loaded
        if state.error:
            report.errors[q] = state.error
        fields = state.record_fields()
        fields["status"] = report.tasks[q]
        store.update_task(q, **fields)
    report.exchange = ExchangeTotals.of(tracker.tasks[q] for q in queue_ids)
    report.days, report.duplicate_keys = measure(request, store, now_ms())
    report.seconds = time.perf_counter() - t0
    return report


async def _publish(producer: AIOKafkaProducer, topic: str, commands: Sequence[Command]) -> None:
    futures = [await producer.send(topic, c.encode(), key=c.queue_id.encode()) for c in commands]
    await asyncio.gather(*futures)


def _launch(
    commands: Sequence[Command], settings: Settings, producer: AIOKafkaProducer, launch: Launch, parallel: int
) -> list[asyncio.Task[None]]:
    if launch == "external":
        return []  # standalone loaders listening on queue-control carry the commands out
    gate = asyncio.Semaphore(parallel)
    # The step's loaders pool their shares: one governor for the step's whole share of the limit.
    governor = WeightGovernor(settings.exchange_weight_limit, settings.exchange_weight_share)

    async def one(command: Command) -> None:
        async with gate:
            try:
                await run_candle_task(command, settings, producer=producer, governor=governor)
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
) -> None:
    watched = set(queue_ids)
    started = last_event = time.monotonic()
    while tracker.pending(queue_ids):
        events = [e for e in await follower.poll(timeout_ms=300) if e.queue_id in watched]
        now = time.monotonic()
        for event in events:
            before = tracker.tasks[event.queue_id].status
            state = tracker.apply(event)
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
