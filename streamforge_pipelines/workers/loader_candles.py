"""loader-api-candles: one historical klines task from the exchange's REST API into Kafka.

For a task (symbol, interval, days) the loader splits the range into windows of at most 1000
candles, fetches up to ``LOADER_CONCURRENCY`` windows at once, and produces the candles **in
order** to the candle topic keyed by symbol (so one symbol's candles stay on one partition, in
time order). Sends are batched: one Kafka batch per page, their futures awaited together. After the
last candle it writes an end marker for the task to every partition it wrote to and reports
``finished`` with the count per partition. Telemetry: ``started`` → ``loading`` (about once a
second) → ``finished`` | ``error`` | ``interrupted`` (cancelled, e.g. on SIGTERM).

Only candles that have closed are loaded: the range ends at the open time of the current candle.

**Sources** (``command.source``, :func:`plan_sources`): ``auto`` (what the queue-manager sends by
default; a command without ``source`` means ``rest``) reads every day that
ended at least a day ago from the bulk archive (daily zips in the ``data.binance.vision`` layout,
:mod:`.archive_client`, at ``EXCHANGE_ARCHIVE_URL``, else ``EXCHANGE_URL``) and the recent tail
(yesterday, today) from REST; a day the archive does not have (404) or whose checksum does not
match is read from REST instead. ``rest`` reads every day from REST, ``archive`` every day from the
archive (a missing file is an error for the task). The records are identical either way except
``source`` (``binance-archive`` / ``binance-rest``): same fields, same order, one Kafka batch per at
most 1000 candles. The ``finished`` event carries ``days_by_source``.

REST requests are paced by a :class:`~.governor.WeightGovernor` (docs/rate-limits.md): the one passed in
(the step's, shared by its in-process loaders), else one for the command's ``weight_share``, else
the process-wide default for ``EXCHANGE_WEIGHT_LIMIT`` x ``EXCHANGE_WEIGHT_SHARE``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from ..intervals import DAY_MS, check_interval, day_range_ms, day_start_ms, floor_open_time, open_times
from ..protocol import (
    LOADER_CANDLES,
    Command,
    ErrorInfo,
    PartitionCount,
    candle_from_kline,
    encode_record,
    end_marker,
    make_producer_id,
    queue_id_suffix,
)
from ..settings import Settings
from .archive_client import DAILY_INTERVALS, ArchiveClient
from .errors import ExchangeError, TaskInvalid, WorkerError
from .exchange_client import KLINES_MAX_LIMIT, BinanceRestClient
from .governor import WeightGovernor, default_governor
from .kafka_io import EventEmitter, make_producer
from .observability import BATCHES, ERRORS, LATENCY, RECORDS, Timer

log = logging.getLogger(__name__)

WORKER = LOADER_CANDLES
PROGRESS_EVERY_S = 1.0

Source = Literal["auto", "rest", "archive"]
SOURCES: tuple[str, ...] = ("auto", "rest", "archive")
ARCHIVE, REST = "archive", "rest"
#: The ``source`` field of the records read from each source.
RECORD_SOURCE = {ARCHIVE: "binance-archive", REST: "binance-rest"}
#: In ``auto``, a day is read from the archive once it ended at least this long ago: real Binance
#: publishes daily files the next day after several hours (docs: BINANCE_API.md section 6).
ARCHIVE_MIN_AGE_MS = DAY_MS


@dataclass
class LoadResult:
    """What one task did."""

    queue_id: str
    records: int = 0
    partitions: dict[int, int] = field(default_factory=dict)
    pages: int = 0
    requests: int = 0
    retries: int = 0
    http_429: int = 0
    http_418: int = 0
    #: Peak share (0-1) of the governor's per-minute budget used.
    weight_budget_used: float = 0.0
    seconds: float = 0.0
    #: Days read from each source: {"archive": n, "rest": m}.
    days_by_source: dict[str, int] = field(default_factory=lambda: {ARCHIVE: 0, REST: 0})
    archive_requests: int = 0

    def exchange_fields(self) -> dict[str, Any]:
        """The exchange figures as :class:`~streamforge_pipelines.protocol.Event` fields."""
        return {
            "http_429": self.http_429,
            "http_418": self.http_418,
            "retries": self.retries,
            "weight_used_peak": round(self.weight_budget_used, 4),
        }


def now_ms() -> int:
    return int(time.time() * 1000)


def plan_windows(
    start_ms: int, end_ms: int, interval: str, limit: int = KLINES_MAX_LIMIT
) -> list[tuple[int, int]]:
    """Split ``[start_ms, end_ms)`` into ``(first_open, last_open)`` windows of at most ``limit`` candles."""
    times = open_times(start_ms, end_ms, interval)
    return [(times[i], times[min(i + limit, len(times)) - 1]) for i in range(0, len(times), limit)]


def plan_sources(
    days: list[date], interval: str, now_ms: int, source: str = "auto"
) -> list[tuple[date, str]]:
    """Each day with where to read it: ``"archive"`` or ``"rest"``.

    ``rest``: every day from REST. ``archive``: every day from the archive (TaskInvalid for an
    interval without daily files: 3d, 1w, 1M). ``auto``: the archive for days that ended at least
    :data:`ARCHIVE_MIN_AGE_MS` before ``now_ms`` (when the interval has daily files), REST for the rest.
    """
    if source not in SOURCES:
        raise TaskInvalid(f"command.source: expected one of {', '.join(SOURCES)}, got {source!r}")
    if source == REST:
        return [(d, REST) for d in days]
    if source == ARCHIVE:
        if interval not in DAILY_INTERVALS:
            raise TaskInvalid(f"command.source: the archive has no daily {interval} files")
        return [(d, ARCHIVE) for d in days]
    archive_ok = interval in DAILY_INTERVALS
    return [
        (d, ARCHIVE if archive_ok and day_start_ms(d) + DAY_MS + ARCHIVE_MIN_AGE_MS <= now_ms else REST)
        for d in days
    ]


def task_range_ms(command: Command, clock_ms: int) -> tuple[int, int]:
    """``[start, end)`` of the task's days, ending at the open time of the still-open candle."""
    first, last = command.days()
    start, end = day_range_ms(first, last)
    return start, min(end, floor_open_time(clock_ms, command.interval()))


def governor_for(command: Command, settings: Settings) -> WeightGovernor:
    """The command's own slice of the limit when it names one, else the process-wide governor."""
    if command.weight_share is not None:
        return WeightGovernor(settings.exchange_weight_limit, command.weight_share)
    return default_governor(settings.exchange_weight_limit, settings.exchange_weight_share)


@dataclass
class _Chunk:
    """The rows one fetch job got, and where they came from."""

    rows: list[list[Any]]
    source: str
    #: Days this job accounts for in ``days_by_source`` (archive jobs and their REST fallbacks).
    day_source: str | None = None


async def _in_order(jobs: list[Callable[[], Any]], concurrency: int) -> AsyncIterator[_Chunk]:
    """Run the jobs with up to ``concurrency`` in flight; yield their results in job order."""
    pending: deque[asyncio.Task[_Chunk]] = deque()
    todo = iter(jobs)
    try:
        for job in todo:
            pending.append(asyncio.create_task(job()))
            if len(pending) >= concurrency:
                break
        while pending:
            chunk = await pending.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(asyncio.create_task(nxt()))
            yield chunk
    finally:
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _fetch_jobs(
    client: BinanceRestClient,
    archive: ArchiveClient,
    symbol: str,
    interval: str,
    plan: list[tuple[date, str]],
    start: int,
    end: int,
    fallback: bool,
) -> list[Callable[[], Any]]:
    """One job per REST page (consecutive REST days share windows) and per archive day."""
    page_latency = LATENCY.labels(WORKER, "http_page")
    archive_latency = LATENCY.labels(WORKER, "archive_day")

    def rest_job(window: tuple[int, int]) -> Callable[[], Any]:
        async def job() -> _Chunk:
            with Timer(page_latency):
                return _Chunk(await client.klines(symbol, interval, window[0], window[1]), REST)

        return job

    def archive_job(day: date) -> Callable[[], Any]:
        lo, hi = max(start, day_start_ms(day)), min(end, day_start_ms(day) + DAY_MS)

        async def job() -> _Chunk:
            try:
                with Timer(archive_latency):
                    rows = await archive.daily_klines(symbol, interval, day)
            except ExchangeError as exc:
                if not fallback:
                    raise
                log.warning(
                    "archive day %s of %s %s: %s; reading it from REST",
                    day,
                    symbol,
                    interval,
                    exc,
                    extra={"symbol": symbol, "day": day.isoformat()},
                )
                rows = []
                for w in plan_windows(lo, hi, interval):
                    with Timer(page_latency):
                        rows.extend(await client.klines(symbol, interval, w[0], w[1]))
                return _Chunk(rows, REST, day_source=REST)
            return _Chunk([r for r in rows if lo <= r[0] < hi], ARCHIVE, day_source=ARCHIVE)

        return job

    jobs: list[Callable[[], Any]] = []
    i = 0
    while i < len(plan):
        day, where = plan[i]
        if where == ARCHIVE:
            jobs.append(archive_job(day))
            i += 1
            continue
        j = i
        while j + 1 < len(plan) and plan[j + 1][1] == REST:
            j += 1
        lo, hi = max(start, day_start_ms(plan[i][0])), min(end, day_start_ms(plan[j][0]) + DAY_MS)
        jobs.extend(rest_job(w) for w in plan_windows(lo, hi, interval))
        i = j + 1
    return jobs


async def run_candle_task(
    command: Command,
    settings: Settings,
    *,
    producer: AIOKafkaProducer | None = None,
    clock_ms: Callable[[], int] = now_ms,
    governor: WeightGovernor | None = None,
) -> LoadResult:
    """Carry out one ``api_candles_<interval>`` start command. Raises the error it reported.

    Every outcome is reported on ``queue-events``, a command that cannot be carried out included
    (``error`` with the reason), so nobody waits for a task that will never run.
    """
    topic = command.kafka_topic or settings.topic_candles
    producer_id = make_producer_id(WORKER, queue_id_suffix(command.queue_id))
    result = LoadResult(queue_id=command.queue_id)
    t0 = time.perf_counter()

    own_producer = producer is None
    if producer is None:
        producer = make_producer(settings.kafka_bootstrap_servers or "")
        await producer.start()
    events = EventEmitter(
        producer,
        settings.topic_events,
        queue_id=command.queue_id,
        producer_id=producer_id,
        symbol=command.symbol,
        task_type=command.type,
    )
    try:
        if command.symbol is None:
            raise TaskInvalid("command.symbol: required for a candle task")
        interval = check_interval(command.interval())
        if settings.exchange_url is None:
            raise TaskInvalid("EXCHANGE_URL is not set: no exchange to load from")
        await events.emit("started", message=f"{command.symbol} {interval} {command.time_range}")
        gov = governor if governor is not None else governor_for(command, settings)
        archive_url = settings.archive_url or settings.exchange_url
        async with (
            BinanceRestClient(settings.exchange_url, governor=gov) as client,
            ArchiveClient(archive_url) as archive,
        ):
            try:
                await _load(
                    command, settings, producer, client, archive, events, topic, interval, result, clock_ms
                )
            finally:
                result.archive_requests = archive.requests
                result.requests, result.retries = client.requests, client.retries
                result.http_429, result.http_418 = client.http_429, client.http_418
                result.weight_budget_used = gov.peak_share
        await events.emit(
            "finished",
            finished=True,
            records_written=result.records,
            partitions=[PartitionCount(partition=p, records=n) for p, n in sorted(result.partitions.items())],
            message=f"{result.records} candles in {result.pages} pages",
            days_by_source=dict(result.days_by_source),
            **result.exchange_fields(),
        )
    except asyncio.CancelledError:
        await asyncio.shield(_report_interrupted(producer, events, result))
        raise
    except (WorkerError, ValueError) as exc:
        ERRORS.labels(WORKER, type(exc).__name__).inc()
        await events.emit(
            "error",
            records_written=result.records,
            message=str(exc),
            error=ErrorInfo(type=type(exc).__name__, detail=str(exc)),
            **(result.exchange_fields() if result.requests else {}),
        )
        raise
    finally:
        if own_producer:
            await producer.stop()
    result.seconds = time.perf_counter() - t0
    return result


async def _report_interrupted(producer: AIOKafkaProducer, events: EventEmitter, result: LoadResult) -> None:
    await producer.flush()
    await events.emit("interrupted", records_written=result.records, message="stopped before the end")


async def _load(
    command: Command,
    settings: Settings,
    producer: AIOKafkaProducer,
    client: BinanceRestClient,
    archive: ArchiveClient,
    events: EventEmitter,
    topic: str,
    interval: str,
    result: LoadResult,
    clock_ms: Callable[[], int],
) -> None:
    assert command.symbol is not None
    symbol = command.symbol
    key = symbol.encode()
    now = clock_ms()
    start, end = task_range_ms(command, now)
    first, last = command.days()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    days = [d for d in days if day_start_ms(d) < end]  # not the days that have not begun
    mode = command.source or REST
    plan = plan_sources(days, interval, now, mode)
    planned_rest = sum(1 for _, where in plan if where == REST)
    jobs = _fetch_jobs(client, archive, symbol, interval, plan, start, end, fallback=mode == "auto")
    records_counter = RECORDS.labels(WORKER, "produced")
    # All of a task's records share one key, so one partition: the one Kafka's default partitioner
    # picks for the key (murmur2), exactly as a keyed send() would. Sending one batch per page
    # instead of one send() per record halves the loader's CPU per candle (measured in bench/).
    partitions = sorted(await producer.partitions_for(topic))
    partition = DefaultPartitioner()(key, partitions, partitions)
    in_flight: list[asyncio.Future[Any]] = []
    last_progress = time.monotonic()

    async def send(batch: Any, n: int) -> None:
        in_flight.append(await producer.send_batch(batch, topic, partition=partition))
        result.partitions[partition] = result.partitions.get(partition, 0) + n

    days_by_source = {ARCHIVE: 0, REST: planned_rest}
    async for chunk in _in_order(jobs, settings.loader_concurrency):
        if chunk.day_source is not None:
            days_by_source[chunk.day_source] += 1
        source = RECORD_SOURCE[chunk.source]
        for lo in range(0, len(chunk.rows), KLINES_MAX_LIMIT):  # one batch per <= 1000 candles
            rows = chunk.rows[lo : lo + KLINES_MAX_LIMIT]
            result.pages += 1
            BATCHES.labels(WORKER).inc()
            batch, n = producer.create_batch(), 0
            for row in rows:
                value = encode_record(candle_from_kline(row, symbol, interval, source, command.queue_id))
                if batch.append(key=key, value=value, timestamp=None) is None:  # batch full
                    await send(batch, n)
                    batch, n = producer.create_batch(), 0
                    batch.append(key=key, value=value, timestamp=None)
                n += 1
            if n:
                await send(batch, n)
            result.records += len(rows)
            records_counter.inc(len(rows))
        if len(in_flight) >= 64:
            await asyncio.gather(*in_flight)
            in_flight.clear()
        if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
            last_progress = time.monotonic()
            await events.emit("loading", records_written=result.records)
    await asyncio.gather(*in_flight)
    result.days_by_source = days_by_source
    producer_id = make_producer_id(WORKER, queue_id_suffix(command.queue_id))
    markers = [
        await producer.send(
            topic, encode_record(end_marker(command.queue_id, producer_id, p, n)), key=key, partition=p
        )
        for p, n in sorted(result.partitions.items())
    ]
    await asyncio.gather(*markers)
