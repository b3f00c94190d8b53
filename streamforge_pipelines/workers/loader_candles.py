"""loader-api-candles: one historical klines task from the exchange's REST API into Kafka.

For a task (symbol, interval, days) the loader splits the range into windows of at most 1000
candles, fetches up to ``LOADER_CONCURRENCY`` windows at once, and produces the candles **in
order** to the candle topic keyed by symbol (so one symbol's candles stay on one partition, in
time order). Each page of at most 1000 candles is one message (``protocol.candle_page``); the
sends' futures are awaited together. After the
last candle it writes an end marker for the task to every partition it wrote to and reports
``finished`` with the count per partition. Telemetry: ``started`` → ``loading`` (about once a
second) → ``finished`` | ``error`` | ``interrupted`` (cancelled, e.g. on SIGTERM).

Only candles that have closed are loaded: the range ends at the open time of the current candle.

**Sources** (``command.source``, :func:`plan_sources`): ``auto`` (what the queue-manager sends by
default; a command without ``source`` means ``rest``) reads every day that
ended at least a day ago from the bulk archive (a whole published calendar month from its monthly
zip, :func:`whole_months`; other days from daily zips; the ``data.binance.vision`` layout,
:mod:`.archive_client`, at ``EXCHANGE_ARCHIVE_URL``, else ``EXCHANGE_URL``) and the recent tail
(yesterday, today) from REST; a day the archive does not have (404) or whose checksum does not
match is read from REST instead. ``rest`` reads every day from REST, ``archive`` every day from the
archive (a missing file is an error for the task). The records are identical either way except
``source`` (``binance-archive`` / ``binance-rest``): same fields, same order, one Kafka message (a
candle page) per at most 1000 candles. The ``finished`` event carries ``days_by_source``.

**Targeted repair** (``command.ranges``, from the completeness ledger,
``streamforge_pipelines.queue_manager.ledger``): only those open-time ranges are fetched, from REST, in
windows of at most a page, in order, with the same end markers; the ``finished`` event then carries
``empty_ranges``, the fetched sub-ranges for which the exchange returned no candles (the evidence
of exchange downtime).

**Markets** (``command.market``, unset = ``spot``): ``usdm`` loads USD-M futures: ``/fapi/v1/klines``
in windows of 499 candles (the most candles per weight there), ``data/futures/um`` archive files,
the governor of the futures limit, records with ``source`` ``binance-usdm-rest`` /
``binance-usdm-archive`` to ``KAFKA_TOPIC_CANDLES_USDM`` (no ``1s``: a TaskInvalid).

**Resume** (``checkpoints``, the standalone loader's :class:`~.checkpoint.CheckpointStore`): jobs
are produced in time order, so whenever the sends so far are all acknowledged (every 64 pages, and
at least once a second) the task writes a checkpoint: ``done_until_ms`` (the end of the last job
produced), its counts so far and ``days_by_source`` (:func:`resume_point` lists the fields). A task
whose ``queue_id`` has a checkpoint plans only what comes after ``done_until_ms`` (an archive day
or month it falls in is downloaded again, but only its candles from there on are produced), starts
its counts from the checkpoint's, so its end markers and ``finished`` carry the whole task's
totals, and says ``resumed from <time>`` in its ``started`` message.

REST requests are paced by a :class:`~.governor.WeightGovernor` (docs/rate-limits.md): the one passed in
(the step's, shared by its in-process loaders), else one for the command's ``weight_share``, else
the process-wide default for ``EXCHANGE_WEIGHT_LIMIT`` x ``EXCHANGE_WEIGHT_SHARE``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from .. import datasets
from ..datasets import DatasetSpec
from ..datasets.candles import CANDLE_TASK_TYPES
from ..intervals import (
    DAY_MS,
    check_interval,
    check_market_interval,
    day_range_ms,
    day_start_ms,
    floor_open_time,
    merge_ranges,
    ms_to_day,
    next_open_time,
    open_times,
)
from ..protocol import (
    LOADER_CANDLES,
    Command,
    candle_page,
    encode_record,
)
from ..settings import Settings
from .archive_client import DAILY_INTERVALS, ArchiveClient
from .binance_clients import BinanceLoader, rest_url_of
from .checkpoint import CheckpointStore
from .errors import ExchangeError, TaskInvalid
from .exchange_client import KLINES_MAX_LIMIT, BinanceRestClient
from .loader_task import (
    ARCHIVE,
    REST,
    Every,
    LoadResult,
    ResumeCounts,
    TaskRun,
    resume_counts,
    resume_from,
    send_end_markers,
    task_fingerprint,
)
from .observability import LATENCY, Timer

log = logging.getLogger(__name__)

WORKER = LOADER_CANDLES
PROGRESS_EVERY_S = 1.0
#: A checkpoint (resume after a crash) is written at most about this often, and every 64 pages.
CHECKPOINT_EVERY_S = 1.0

Source = Literal["auto", "rest", "archive"]
SOURCES: tuple[str, ...] = ("auto", "rest", "archive")
#: ``days_by_source`` key of the days a repair task (``command.ranges``) re-fetched from REST: kept
#: apart, since the load that left the gaps already counted those days under their source.
REPAIR = "repair"
#: The ``source`` field of the records read from each source.
RECORD_SOURCE = {ARCHIVE: "binance-archive", REST: "binance-rest"}
#: ... per market (``command.market``): USD-M futures records say so.
RECORD_SOURCES = {
    "spot": RECORD_SOURCE,
    "usdm": {ARCHIVE: "binance-usdm-archive", REST: "binance-usdm-rest"},
}
#: In ``auto``, a day is read from the archive once it ended at least this long ago: real Binance
#: publishes daily files the next day after several hours (docs: BINANCE_API.md section 6).
ARCHIVE_MIN_AGE_MS = DAY_MS


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


@dataclass(kw_only=True)
class Resume(ResumeCounts):
    """Where a task resumes: its checkpoint's counts, all before ``done_until_ms``."""

    done_until_ms: int


def resume_point(command: Command, topic: str, checkpoints: CheckpointStore | None) -> Resume | None:
    """The checkpoint of the command's task in ``checkpoints`` as a :class:`Resume`, else None
    (:func:`~.loader_task.resume_from`).

    Checkpoint value (key = queue_id): ``queue_id``, ``task`` (:func:`~.loader_task.task_fingerprint`),
    ``done_until_ms`` (every candle with an open time before it is acknowledged by Kafka),
    ``records``, ``pages``, ``partitions`` (partition -> records), ``days_by_source`` (days that
    ended by ``done_until_ms``, by source), ``complete`` (end markers written), ``written_at``.
    """
    return resume_from(
        command,
        topic,
        checkpoints,
        lambda value: Resume(done_until_ms=int(value["done_until_ms"]), **resume_counts(value)),
    )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Chunk:
    """The rows one fetch job got, and where they came from."""

    rows: list[list[Any]]
    source: str
    #: Where the days this job accounts for in ``days_by_source`` came from (archive jobs and their
    #: REST fallbacks), and how many days that is (a monthly file: the month's).
    day_source: str | None = None
    days: int = 1
    #: A monthly file that fell back to its daily files: their chunks, in order (``rows`` unused).
    parts: list[_Chunk] | None = None
    #: End (exclusive) of the open times this job covered, candles or not: once its rows are
    #: acknowledged, the task is done up to here (checkpoints). 0 = not known (repair jobs).
    until: int = 0


def month_published_ms(year: int, month: int) -> int:
    """When a monthly archive file can be relied on: Binance publishes it on the first Monday of
    the following month (BINANCE_API.md section 6); a day later, to be safe."""
    nxt = date(year + month // 12, month % 12 + 1, 1)
    first_monday = nxt + timedelta(days=(7 - nxt.weekday()) % 7)
    return day_start_ms(first_monday) + DAY_MS


def whole_months(plan: list[tuple[date, str]], now_ms: int) -> dict[int, int]:
    """Archive runs of ``plan`` that cover a whole published calendar month: plan index of the
    month's first day -> number of days. Those months are read from one monthly file each."""
    out: dict[int, int] = {}
    i = 0
    while i < len(plan):
        day, where = plan[i]
        if where == ARCHIVE and day.day == 1 and month_published_ms(day.year, day.month) <= now_ms:
            nxt = date(day.year + day.month // 12, day.month % 12 + 1, 1)
            n = (nxt - day).days
            run = plan[i : i + n]
            if len(run) == n and all(w == ARCHIVE for _, w in run) and run[-1][0] == nxt - timedelta(days=1):
                out[i] = n
                i += n
                continue
        i += 1
    return out


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
    months: dict[int, int] | None = None,
) -> list[Callable[[], Any]]:
    """One job per REST page (consecutive REST days share windows), per archive day, and per whole
    month of ``months`` (:func:`whole_months`): its monthly file, else its daily files."""
    page_latency = LATENCY.labels(WORKER, "http_page")
    archive_latency = LATENCY.labels(WORKER, "archive_day")

    def rest_job(window: tuple[int, int]) -> Callable[[], Any]:
        async def job() -> _Chunk:
            with Timer(page_latency):
                rows = await client.klines(symbol, interval, window[0], window[1])
            return _Chunk(rows, REST, until=next_open_time(window[1], interval))

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
                for w in plan_windows(lo, hi, interval, client.page_limit):
                    with Timer(page_latency):
                        rows.extend(await client.klines(symbol, interval, w[0], w[1]))
                return _Chunk(rows, REST, day_source=REST, until=hi)
            return _Chunk([r for r in rows if lo <= r[0] < hi], ARCHIVE, day_source=ARCHIVE, until=hi)

        return job

    def month_job(first_day: date, n: int) -> Callable[[], Any]:
        lo, hi = max(start, day_start_ms(first_day)), min(end, day_start_ms(first_day) + n * DAY_MS)

        async def job() -> _Chunk:
            try:
                with Timer(archive_latency):
                    rows = await archive.monthly_klines(symbol, interval, first_day.year, first_day.month)
            except ExchangeError as exc:
                log.warning(
                    "archive month %s of %s %s: %s; reading its daily files",
                    f"{first_day:%Y-%m}",
                    symbol,
                    interval,
                    exc,
                    extra={"symbol": symbol, "month": f"{first_day:%Y-%m}"},
                )
                days = [first_day + timedelta(days=k) for k in range(n)]
                parts = list(await asyncio.gather(*(archive_job(d)() for d in days)))
                return _Chunk([], ARCHIVE, parts=parts, until=hi)
            rows = [r for r in rows if lo <= r[0] < hi]
            return _Chunk(rows, ARCHIVE, day_source=ARCHIVE, days=n, until=hi)

        return job

    months = months or {}
    jobs: list[Callable[[], Any]] = []
    i = 0
    while i < len(plan):
        day, where = plan[i]
        if i in months:
            jobs.append(month_job(day, months[i]))
            i += months[i]
            continue
        if where == ARCHIVE:
            jobs.append(archive_job(day))
            i += 1
            continue
        j = i
        while j + 1 < len(plan) and plan[j + 1][1] == REST:
            j += 1
        lo, hi = max(start, day_start_ms(plan[i][0])), min(end, day_start_ms(plan[j][0]) + DAY_MS)
        jobs.extend(rest_job(w) for w in plan_windows(lo, hi, interval, client.page_limit))
        i = j + 1
    return jobs


def _range_jobs(
    client: BinanceRestClient,
    symbol: str,
    interval: str,
    ranges: list[tuple[int, int]],
    start: int,
    end: int,
    result: LoadResult,
) -> list[Callable[[], Any]]:
    """One REST job per max-limit window inside each of ``ranges`` (clipped to ``[start, end)``), in
    time order. Each job records in ``result.empty_ranges`` the open times of its window that the
    exchange returned no candle for."""
    for a, b in ranges:
        if a >= b:
            raise TaskInvalid(f"command.ranges: a range must end after it starts, got [{a}, {b})")
    result.empty_ranges = []
    page_latency = LATENCY.labels(WORKER, "http_page")

    def rest_job(window: tuple[int, int]) -> Callable[[], Any]:
        async def job() -> _Chunk:
            with Timer(page_latency):
                rows = await client.klines(symbol, interval, window[0], window[1])
            got = {r[0] for r in rows}
            absent = [t for t in open_times(window[0], window[1] + 1, interval) if t not in got]
            assert result.empty_ranges is not None
            result.empty_ranges.extend((t, next_open_time(t, interval)) for t in absent)
            return _Chunk(rows, REST)

        return job

    windows = [
        w
        for a, b in merge_ranges(ranges)
        for w in plan_windows(max(a, start), min(b, end), interval, client.page_limit)
    ]
    return [rest_job(w) for w in windows]


class CandleLoader(BinanceLoader):
    """loader-api-candles as a :class:`~.loader_task.Loader`: validation, clients, the load and its
    ``finished`` message; :func:`~.loader_task.run_loader_task` does the rest."""

    worker = WORKER
    task_types = CANDLE_TASK_TYPES

    def dataset(self, command: Command) -> DatasetSpec:
        return datasets.candles(command.market or "spot")

    def prepare(
        self, command: Command, settings: Settings, topic: str, checkpoints: CheckpointStore | None
    ) -> tuple[str, Resume | None]:
        if command.symbol is None:
            raise TaskInvalid("command.symbol: required for a candle task")
        interval = check_interval(command.interval())
        try:
            check_market_interval(command.market or "spot", interval)
        except ValueError as exc:
            raise TaskInvalid(f"command.market: {exc}") from None
        rest_url_of(settings, command.market or "spot")
        resume = resume_point(command, topic, checkpoints)
        resumed = "" if resume is None else f", resumed from {_iso(resume.done_until_ms)}"
        return f"{command.symbol} {interval} {command.time_range}{resumed}", resume

    async def load(self, run: TaskRun) -> None:
        await _load(run, run.command.interval())

    def finished(self, run: TaskRun) -> tuple[str, dict[str, Any]]:
        result = run.result
        empty = None if result.empty_ranges is None else merge_ranges(result.empty_ranges)
        return f"{result.records} candles in {result.pages} pages", {"empty_ranges": empty}


CANDLE_LOADER = CandleLoader()


async def _load(run: TaskRun, interval: str) -> None:
    command, result, checkpoints, resume = run.command, run.result, run.checkpoints, run.resume
    producer, topic = run.producer, run.topic
    symbol, key = run.symbol, run.key
    now = run.clock_ms()
    start, end = task_range_ms(command, now)
    first, last = command.days()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    days = [d for d in days if day_start_ms(d) < end]  # not the days that have not begun
    if command.ranges is not None:
        checkpoints = resume = None  # repairs are short: no checkpoints
    if resume is not None:  # only what the checkpoint does not cover; its counts carry over
        start = max(start, resume.done_until_ms)
        days = [d for d in days if day_start_ms(d) + DAY_MS > start]
        result.records, result.pages = resume.records, resume.pages
        result.partitions = dict(resume.partitions)
    mode = command.source or REST
    repaired_days = 0
    if command.ranges is not None:  # targeted repair (ledger): only these ranges, from REST
        jobs = _range_jobs(run.clients.rest, symbol, interval, command.ranges, start, end, result)
        planned_rest = 0
        repaired_days = len({ms_to_day(a) for a, _ in command.ranges if a < end})
    else:
        plan = plan_sources(days, interval, now, mode)
        planned_rest = sum(1 for _, where in plan if where == REST)
        months = whole_months(plan, now)
        jobs = _fetch_jobs(
            run.clients.rest,
            run.clients.archive,
            symbol,
            interval,
            plan,
            start,
            end,
            fallback=mode == "auto",
            months=months,
        )
    # All of a task's records share one key, so one partition (TaskRun.partition). One message per page
    # of candles (protocol.candle_page) instead of one per candle: measured in bench/, see the module
    # docstring.
    partition = await run.partition()
    in_flight: list[asyncio.Future[Any]] = []
    progress = Every(PROGRESS_EVERY_S)

    days_by_source = {ARCHIVE: 0, REST: planned_rest}
    if command.ranges is not None:
        days_by_source[REPAIR] = repaired_days
    days_before = dict(resume.days_by_source) if resume is not None else {ARCHIVE: 0, REST: 0}
    task = task_fingerprint(command, topic)
    checkpoint_every = Every(CHECKPOINT_EVERY_S)

    async def checkpoint(done_until: int, complete: bool = False) -> asyncio.Future[Any]:
        """Send a checkpoint; call only once everything before ``done_until`` is acknowledged."""
        assert checkpoints is not None
        done = dict(days_before)  # days that ended by done_until, by source
        done[ARCHIVE] = done.get(ARCHIVE, 0) + days_by_source[ARCHIVE]
        done[REST] = done.get(REST, 0) + days_by_source[REST] - planned_rest
        done[REST] += sum(1 for d, w in plan if w == REST and day_start_ms(d) + DAY_MS <= done_until)
        value = {
            "queue_id": command.queue_id,
            "task": task,
            "done_until_ms": done_until,
            "records": result.records,
            "pages": result.pages,
            "partitions": {str(p): n for p, n in sorted(result.partitions.items())},
            "days_by_source": done,
            "complete": complete,
        }
        return await checkpoints.put(producer, command.queue_id, value)

    async for whole in _in_order(jobs, run.settings.loader_concurrency):
        for chunk in whole.parts if whole.parts is not None else [whole]:
            if chunk.day_source is not None:
                days_by_source[chunk.day_source] += chunk.days
            source = RECORD_SOURCES[run.clients.rest.market][chunk.source]
            for lo in range(0, len(chunk.rows), KLINES_MAX_LIMIT):  # one message per <= 1000 candles
                rows = chunk.rows[lo : lo + KLINES_MAX_LIMIT]
                value = encode_record(candle_page(rows, symbol, interval, source, command.queue_id))
                in_flight.append(await producer.send(topic, value, key=key, partition=partition))
                run.sent_page(partition, len(rows), WORKER)
        due = checkpoints is not None and checkpoint_every.due()
        if len(in_flight) >= 64 or due:
            await asyncio.gather(*in_flight)
            in_flight.clear()
            if checkpoints is not None:  # every page up to whole.until is acknowledged
                in_flight.append(await checkpoint(whole.until))
                checkpoint_every.reset()
        await run.report_progress(progress)
    await asyncio.gather(*in_flight)
    result.days_by_source = {w: n + days_before.get(w, 0) for w, n in days_by_source.items()}
    await send_end_markers(run, WORKER, key)
    if checkpoints is not None:  # a crash before the command's offset is committed: markers only
        await (await checkpoint(end, complete=True))
