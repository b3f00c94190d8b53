"""loader-api-trades: one historical aggTrades or trades task from the exchange into Kafka.

Task types (``protocol.TRADE_TASK_TYPES``): ``api_agg_trades`` (``GET /api/v3/aggTrades``, weight 4)
and ``api_trades`` (``GET /api/v3/historicalTrades``, weight 25), for a symbol and a range of UTC
days. Records go to the trades topic (``KAFKA_TOPIC_TRADES``, ``sf.trades.v1``) keyed by symbol, one
message per at most 1000 trades (``protocol.trade_page``), in id order; then an end marker per
partition written to and a ``finished`` event with the count per partition, the exchange figures
and ``days_by_source`` — the same telemetry as :mod:`.loader_candles`.

**REST paging.** Binance's aggregate-trade and trade ids are consecutive per symbol, so once the
first id of the range is known every page's ``fromId`` is too: page ``k`` starts at
``first_id + 1000 k``, and up to ``LOADER_CONCURRENCY`` pages are fetched at once (produced in
order). The first id comes from ``aggTrades?startTime=t&endTime=t+1h-1&limit=1``, hour by hour
until an hour has trades (an empty hour: downtime, or before the listing); for ``api_trades`` it is
that aggregate trade's ``firstTradeId`` (one weight-4 request instead of a search over trades).
Paging stops at the first trade at or after the range's end, or at a short page (no more trades
yet).

**Sources** (``command.source``): as the candle loader: ``auto`` reads each day that ended at least
a day ago from the bulk archive's daily ``aggTrades`` / ``trades`` zip (checksum verified,
microseconds converted, ``True``/``False`` booleans) and the rest from REST, falling back to REST for
a day the archive lacks; ``rest`` and ``archive`` read only from one. Records are identical except
``source`` (``binance-archive`` / ``binance-rest``).

**Repair** (``command.id_ranges``, from :mod:`streamforge_pipelines.queue_manager.trades_ledger`): only
the ids in those ``[first_id, end_id)`` ranges are fetched, from REST, with ``fromId`` pages.

**Resume**: with a :class:`~.checkpoint.CheckpointStore` (the standalone loader's), the task writes
``{next_id, after_ms, records, pages, partitions, days_by_source}`` once the pages before ``next_id``
are acknowledged by Kafka, and a rerun of the same ``queue_id`` continues from there.

REST requests go through the same :class:`~.governor.WeightGovernor` and retry path as the candle
loader's (:func:`.loader_candles.governor_for`). This module must not import Dagster.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ..datasets import TRADES, DatasetSpec
from ..intervals import DAY_MS, day_range_ms, day_start_ms, merge_ranges
from ..protocol import (
    LOADER_TRADES,
    Command,
    encode_record,
    trade_page,
)
from ..settings import Settings
from .binance_clients import BinanceLoader, rest_url_of
from .checkpoint import CheckpointStore
from .errors import ExchangeError, TaskInvalid
from .exchange_client import TRADES_MAX_LIMIT, BinanceRestClient
from .loader_candles import ARCHIVE_MIN_AGE_MS, SOURCES
from .loader_task import (
    ARCHIVE,
    REST,
    Every,
    ResumeCounts,
    TaskRun,
    resume_counts,
    resume_from,
    send_end_markers,
    task_fingerprint,
)
from .observability import LATENCY, Timer

log = logging.getLogger(__name__)

WORKER = LOADER_TRADES
PROGRESS_EVERY_S = 1.0
CHECKPOINT_EVERY_S = 5.0
HOUR_MS = 3_600_000
PAGE = TRADES_MAX_LIMIT
#: Archive days downloaded and parsed ahead at most: a busy symbol's daily trades file is millions
#: of rows (hundreds of MB as Python rows), so only this many are held at once. Daily files only,
#: never monthly ones, for the same reason.
ARCHIVE_PREFETCH = 2
RECORD_SOURCE = {ARCHIVE: "binance-archive", REST: "binance-rest"}
#: Position of the time column in a row of each kind (``protocol.AGG_ROW_FIELDS`` / ``TRADE_ROW_FIELDS``).
TIME_AT = {"agg": 5, "trade": 4}

Row = list[Any]


def agg_row(e: dict[str, Any]) -> Row:
    """A page row from an aggTrades element."""
    return [e["a"], e["p"], e["q"], e["f"], e["l"], e["T"], e["m"]]


def trade_row(e: dict[str, Any]) -> Row:
    """A page row from a trades / historicalTrades element."""
    return [e["id"], e["price"], e["qty"], e["quoteQty"], e["time"], e["isBuyerMaker"]]


def plan_trade_sources(days: list[date], now_ms: int, source: str = "auto") -> list[tuple[date, str]]:
    """Each day with where to read it (``archive`` / ``rest``): :func:`.loader_candles.plan_sources`'s
    rules; trades and aggTrades have daily files for every day."""
    if source not in SOURCES:
        raise TaskInvalid(f"command.source: expected one of {', '.join(SOURCES)}, got {source!r}")
    if source in (REST, ARCHIVE):
        return [(d, source) for d in days]
    return [(d, ARCHIVE if day_start_ms(d) + DAY_MS + ARCHIVE_MIN_AGE_MS <= now_ms else REST) for d in days]


async def first_agg_trade(
    client: BinanceRestClient, symbol: str, start_ms: int, end_ms: int
) -> dict[str, Any] | None:
    """The first aggregate trade with ``start_ms <= T < end_ms``, or None: ``aggTrades`` with a
    one-hour window and ``limit=1``, hour by hour until an hour has one."""
    t = start_ms
    while t < end_ms:
        rows = await client.agg_trades(symbol, start_ms=t, end_ms=min(t + HOUR_MS, end_ms) - 1, limit=1)
        if rows:
            return rows[0]
        t += HOUR_MS
    return None


async def first_id(
    client: BinanceRestClient, symbol: str, kind: str, start_ms: int, end_ms: int
) -> int | None:
    """The id of the first aggregate trade (``kind="agg"``) or trade (``"trade"``) in ``[start_ms,
    end_ms)``; None when there is none. A trade's id is its aggregate trade's ``firstTradeId``:
    aggregates are runs of one millisecond, so the first trade at or after ``start_ms`` opens the
    first aggregate at or after it."""
    agg = await first_agg_trade(client, symbol, start_ms, end_ms)
    if agg is None:
        return None
    return int(agg["a"] if kind == "agg" else agg["f"])


async def rest_pages(
    client: BinanceRestClient,
    symbol: str,
    kind: str,
    from_id: int,
    *,
    end_ms: int,
    end_id: int | None = None,
    concurrency: int = 4,
) -> AsyncIterator[list[Row]]:
    """Pages of rows from ``from_id`` on, in id order, ``concurrency`` ``fromId`` pages in flight
    (ids are consecutive: page ``k`` starts at ``from_id + 1000 k``). Ends before the first row with
    time >= ``end_ms`` or id >= ``end_id``, or after a short page (no more trades yet)."""
    fetch: Callable[[int], Awaitable[list[dict[str, Any]]]]
    if kind == "agg":
        fetch, convert = (lambda i: client.agg_trades(symbol, from_id=i, limit=PAGE)), agg_row
    else:
        fetch, convert = (lambda i: client.historical_trades(symbol, i, limit=PAGE)), trade_row
    t_at = TIME_AT[kind]
    latency = LATENCY.labels(WORKER, "http_page")

    async def job(i: int) -> list[Row]:
        with Timer(latency):
            return [convert(e) for e in await fetch(i)]

    pending: deque[asyncio.Task[list[Row]]] = deque()
    nxt = from_id
    try:
        while True:
            while len(pending) < concurrency and (end_id is None or nxt < end_id):
                pending.append(asyncio.create_task(job(nxt)))
                nxt += PAGE
            if not pending:
                return
            rows = await pending.popleft()
            keep = [r for r in rows if r[t_at] < end_ms and (end_id is None or r[0] < end_id)]
            if keep:
                yield keep
            if len(keep) < len(rows) or len(rows) < PAGE:
                return
    finally:
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


@dataclass(kw_only=True)
class TradeResume(ResumeCounts):
    """Where a task resumes: every row with an id below ``next_id`` is acknowledged by Kafka."""

    next_id: int
    after_ms: int


def resume_point(command: Command, topic: str, checkpoints: CheckpointStore | None) -> TradeResume | None:
    """The checkpoint of the command's task as a :class:`TradeResume`, else None
    (:func:`~.loader_task.resume_from`: repairs never resume; a checkpoint of another task under the
    same queue_id, or a malformed one, is ignored)."""
    return resume_from(
        command,
        topic,
        checkpoints,
        lambda value: TradeResume(
            next_id=int(value["next_id"]), after_ms=int(value["after_ms"]), **resume_counts(value)
        ),
    )


class TradesLoader(BinanceLoader):
    """loader-api-trades as a :class:`~.loader_task.Loader`: validation, clients, the load and its
    ``finished`` message; :func:`~.loader_task.run_loader_task` does the rest."""

    worker = WORKER
    task_types = TRADES.task_types

    def dataset(self, command: Command) -> DatasetSpec:
        return TRADES

    def prepare(
        self, command: Command, settings: Settings, topic: str, checkpoints: CheckpointStore | None
    ) -> tuple[str, TradeResume | None]:
        if command.symbol is None:
            raise TaskInvalid("command.symbol: required for a trades task")
        kind = command.trade_kind()
        if (command.market or "spot") != "spot":
            raise TaskInvalid("command.market: the trades loader reads spot trades only")
        rest_url_of(settings, "spot")
        resume = resume_point(command, topic, checkpoints)
        note = "" if resume is None else f", resumed at id {resume.next_id}"
        return f"{command.symbol} {kind} {command.time_range}{note}", resume

    async def load(self, run: TaskRun) -> None:
        await _load(run, run.command.trade_kind())

    def finished(self, run: TaskRun) -> tuple[str, dict[str, Any]]:
        result = run.result
        return f"{result.records} {run.command.trade_kind()} trades in {result.pages} pages", {}


TRADES_LOADER = TradesLoader()


def _segments(plan: list[tuple[date, str]]) -> list[tuple[str, date, date]]:
    """Runs of the plan: each archive day alone, consecutive REST days together: (where, first, last)."""
    out: list[tuple[str, date, date]] = []
    for day, where in plan:
        if where == REST and out and out[-1][0] == REST and out[-1][2] + timedelta(days=1) == day:
            out[-1] = (REST, out[-1][1], day)
        else:
            out.append((where, day, day))
    return out


async def _load(run: TaskRun, kind: str) -> None:
    command, result, checkpoints, resume = run.command, run.result, run.checkpoints, run.resume
    producer, topic = run.producer, run.topic
    symbol, key = run.symbol, run.key
    now = run.clock_ms()
    first, last = command.days()
    start, end = day_range_ms(first, last)
    end = min(end, now)
    t_at = TIME_AT[kind]
    concurrency = run.settings.loader_concurrency
    partition = await run.partition()
    in_flight: list[asyncio.Future[Any]] = []
    progress, checkpoint_every = Every(PROGRESS_EVERY_S), Every(CHECKPOINT_EVERY_S)
    days_by_source = {ARCHIVE: 0, REST: 0}
    skip_below = 0  # ids already produced (resume)
    if resume is not None:
        result.records, result.pages = resume.records, resume.pages
        result.partitions = dict(resume.partitions)
        days_by_source = dict(resume.days_by_source)
        skip_below = resume.next_id
    state = {"next_id": skip_below, "after_ms": start if resume is None else resume.after_ms}

    async def checkpoint(complete: bool = False) -> asyncio.Future[Any]:
        assert checkpoints is not None
        value = {
            "queue_id": command.queue_id,
            "task": task_fingerprint(command, topic),
            "next_id": state["next_id"],
            "after_ms": state["after_ms"],
            "records": result.records,
            "pages": result.pages,
            "partitions": {str(p): n for p, n in result.partitions.items()},
            "days_by_source": dict(days_by_source),
            "complete": complete,
        }
        return await checkpoints.put(producer, command.queue_id, value)

    async def produce(rows: list[Row], where: str) -> None:
        rows = [r for r in rows if r[0] >= skip_below] if skip_below else rows
        source = RECORD_SOURCE[where]
        for lo in range(0, len(rows), PAGE):
            page = rows[lo : lo + PAGE]
            value = encode_record(trade_page(page, symbol, kind, source, command.queue_id))
            in_flight.append(await producer.send(topic, value, key=key, partition=partition))
            run.sent_page(partition, len(page), WORKER)
        if rows:
            state["next_id"], state["after_ms"] = rows[-1][0] + 1, rows[-1][t_at]
        due = checkpoints is not None and checkpoint_every.due()
        if len(in_flight) >= 64 or due:
            await asyncio.gather(*in_flight)
            in_flight.clear()
            if due:  # everything before state["next_id"] is acknowledged
                in_flight.append(await checkpoint())
                checkpoint_every.reset()
        await run.report_progress(progress)

    async def rest_span(lo: int, hi: int) -> None:
        begin = await first_id(run.clients.rest, symbol, kind, lo, hi)
        if begin is None:
            return
        pages = rest_pages(
            run.clients.rest, symbol, kind, max(begin, skip_below), end_ms=hi, concurrency=concurrency
        )
        async with aclosing(pages) as it:
            async for rows in it:
                await produce(rows, REST)

    async def archive_day(day: date, fallback: bool) -> tuple[list[Row], str]:
        lo, hi = max(start, day_start_ms(day)), min(end, day_start_ms(day) + DAY_MS)
        try:
            with Timer(LATENCY.labels(WORKER, "archive_day")):
                rows = await run.clients.archive.daily_trades(symbol, kind, day)
        except ExchangeError as exc:
            if not fallback:
                raise
            log.warning("archive %s %s of %s: %s; reading it from REST", kind, day, symbol, exc)
            return [], REST
        return [r for r in rows if lo <= r[t_at] < hi], ARCHIVE

    if command.id_ranges is not None:  # targeted repair (trades ledger): these ids, from REST
        for a, b in command.id_ranges:
            if a >= b or a < 0:
                raise TaskInvalid(f"command.id_ranges: a range must end after it starts, got [{a}, {b})")
        for a, b in merge_ranges(command.id_ranges):
            pages = rest_pages(
                run.clients.rest, symbol, kind, a, end_ms=end, end_id=b, concurrency=concurrency
            )
            async with aclosing(pages) as it:
                async for rows in it:
                    await produce(rows, REST)
    else:
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        days = [d for d in days if day_start_ms(d) < end]
        if resume is not None:  # days wholly before the checkpoint are done
            days = [d for d in days if day_start_ms(d) + DAY_MS > resume.after_ms]
        mode = command.source or REST
        plan = plan_trade_sources(days, now, mode)
        segments = _segments(plan)
        i = 0
        while i < len(segments):
            where, d0, d1 = segments[i]
            if where == REST:
                await rest_span(max(start, day_start_ms(d0)), min(end, day_start_ms(d1) + DAY_MS))
                days_by_source[REST] += (d1 - d0).days + 1
                i += 1
                continue
            # consecutive archive days: up to ARCHIVE_PREFETCH files in hand at once, in order
            j = i
            while j < len(segments) and segments[j][0] == ARCHIVE:
                j += 1
            span = [s[1] for s in segments[i:j]]
            pending: deque[tuple[date, asyncio.Task[tuple[list[Row], str]]]] = deque()
            todo = iter(span)
            try:
                for d in todo:
                    pending.append((d, asyncio.create_task(archive_day(d, mode == "auto"))))
                    if len(pending) >= min(concurrency, ARCHIVE_PREFETCH):
                        break
                while pending:
                    day, task = pending.popleft()
                    rows, got = await task
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending.append((nxt, asyncio.create_task(archive_day(nxt, mode == "auto"))))
                    if got == REST:
                        await rest_span(max(start, day_start_ms(day)), min(end, day_start_ms(day) + DAY_MS))
                    else:
                        await produce(rows, ARCHIVE)
                    days_by_source[got] += 1
            finally:
                for _, t in pending:
                    t.cancel()
                await asyncio.gather(*(t for _, t in pending), return_exceptions=True)
            i = j
    await asyncio.gather(*in_flight)
    result.days_by_source = days_by_source
    await send_end_markers(run, WORKER, key)
    if checkpoints is not None:
        await (await checkpoint(complete=True))
