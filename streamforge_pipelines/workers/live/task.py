"""One stream task: its connections, what its events become, batching, repairs, checkpoints, heartbeats.

A :class:`StreamTask` carries out one ``start`` command of a stream type (``ws_agg_trades``,
``ws_trades``, ``ws_candles_<interval>``, ``ws_orderbook``) until it is stopped:

* it opens one :class:`~.connection.StreamConnection` per route and per at most ``max_streams``
  streams (sharding), and changes their subscriptions live when a later ``start`` with the same
  ``queue_id`` names other symbols (:meth:`StreamTask.update`);
* a :class:`Feed` per type turns events into rows (:mod:`.streams`, :mod:`.book`); rows are produced
  as pages of the historical codecs, keyed by symbol, at most ``LIVE_FLUSH_MS`` after they arrived;
* trades the connections missed (an id jump: a disconnect, a worker restarted from its checkpoint)
  are fetched from REST (``fromId`` pages) and produced too, so the trades collection has every id;
  closed candles missed during a disconnect are left to the ledger's repair round, which fetches
  exactly the missing minutes;
* every ``LIVE_HEARTBEAT_S`` it waits for Kafka to acknowledge what it produced, checkpoints how far
  each symbol has got (``KAFKA_TOPIC_CHECKPOINTS``, key = ``queue_id``: a restarted task repairs from
  there) and sends a ``streaming`` heartbeat with its counts
  (:class:`~streamforge_pipelines.protocol.StreamStats`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaProducer

from ...kafka import EventEmitter
from ...protocol import (
    WS_ORDERBOOK,
    WS_TRADE_TASK_TYPES,
    Command,
    StreamStats,
    encode_record,
    make_producer_id,
    queue_id_suffix,
    stream_target,
    ws_candle_interval,
)
from ...settings import Settings
from ..checkpoint import CheckpointStore
from ..exchange_client import BinanceRestClient
from . import metrics
from .book_feed import BookFeed
from .connection import SPOT_LIMITS, USDM_LIMITS, Lifecycle, StreamConnection, shard
from .feeds import CandleFeed, Counts, Feed, TradeFeed
from .streams import StreamName, agg_row_of, route_url, stream_names

__all__ = ["StreamTask", "lifecycle_of"]

log = logging.getLogger(__name__)

#: Ids one REST repair request asks for (``aggTrades`` / ``historicalTrades`` limit).
REPAIR_PAGE = 1000
#: Tries of one repair before it is left to the ledger, and the cap of the wait between them.
REPAIR_ATTEMPTS = 5
REPAIR_BACKOFF_CAP_S = 10.0
#: How long a stopping task waits for its repairs under way.
REPAIR_ON_STOP_S = 30.0


def lifecycle_of(settings: Settings) -> Lifecycle:
    """The connection lifecycle the settings configure."""
    return Lifecycle(
        silence_s=settings.live_silence_s,
        stream_silence_s=settings.live_stream_silence_s,
        rotate_after_s=settings.live_rotate_after_s,
    )


class StreamTask:
    """One running stream task (see the module docstring)."""

    def __init__(
        self,
        command: Command,
        settings: Settings,
        producer: AIOKafkaProducer,
        *,
        checkpoints: CheckpointStore | None = None,
        rng: random.Random | None = None,
    ) -> None:
        assert command.type is not None
        self.command = command
        self.queue_id = command.queue_id
        self.type = command.type
        self.market = command.market or "spot"
        self.settings = settings
        self.producer = producer
        self.checkpoints = checkpoints
        self.rng = rng or random.Random()
        self.symbols: list[str] = command.stream_symbols()
        self.target = stream_target(self.type)
        self.producer_id = make_producer_id(self.target, queue_id_suffix(self.queue_id))
        self.events = EventEmitter(
            producer,
            settings.topic_events,
            queue_id=self.queue_id,
            producer_id=self.producer_id,
            task_type=self.type,
        )
        self.counts = Counts()
        self.silent_symbols: list[str] = []
        self.lifecycle = lifecycle_of(settings)
        self.connections: dict[str, list[StreamConnection]] = {}
        self._stop = asyncio.Event()
        self._sent: list[asyncio.Future[Any]] = []
        self._repairs: set[asyncio.Task[None]] = set()
        self._runners: list[asyncio.Task[None]] = []
        self._counters: dict[str, Any] = {}
        self._arrived = asyncio.Event()
        self._rest: BinanceRestClient | None = None
        resume = (checkpoints.get(self.queue_id) if checkpoints is not None else None) or {}
        self.feed: Feed = self._feed(resume)

    # -- what the task is

    def _feed(self, resume: dict[str, Any]) -> Feed:
        if self.type in WS_TRADE_TASK_TYPES:
            return TradeFeed(
                WS_TRADE_TASK_TYPES[self.type],
                self.settings.topic_trades,
                self.queue_id,
                resume.get("last_ids"),
            )
        interval = ws_candle_interval(self.type)
        if interval is not None:
            return CandleFeed(
                interval, self.settings.candle_topic(self.market), self.queue_id, resume.get("last_open")
            )
        if self.type == WS_ORDERBOOK:
            return BookFeed(
                self.settings, self.market, self.symbols, self.type, self.queue_id, self.counts, self.rest
            )
        raise ValueError(f"no live feed for {self.type}")

    def ws_base(self) -> str:
        url = self.settings.ws_url(self.market)
        if url is None:
            raise ValueError("EXCHANGE_URL / EXCHANGE_WS_URL is not set: no exchange to stream from")
        return url

    async def rest(self) -> BinanceRestClient:
        """The task's REST client (repairs, book snapshots), opened on first use."""
        if self._rest is None:
            url = self.settings.rest_url(self.market)
            if url is None:
                raise ValueError("EXCHANGE_URL is not set: no exchange to repair from")
            rest = BinanceRestClient(url, market=self.market, waf_pause_s=self.settings.exchange_waf_pause_s)
            await rest.start()
            self._rest = rest
        return self._rest

    # -- lifecycle

    async def run(self) -> None:
        """Stream until :meth:`stop`; then produce what is waiting, checkpoint, report ``finished``."""
        await self.events.emit("started", message=f"streaming {len(self.symbols)} symbols", stream=self.stats)
        self._open(stream_names(self.type, self.symbols))
        self._runners = [asyncio.create_task(c.run()) for conns in self.connections.values() for c in conns]
        flusher = asyncio.create_task(self._flush_loop())
        beat = asyncio.create_task(self._heartbeat_loop())
        stopping = asyncio.create_task(self._stop.wait())
        failure: BaseException | None = None
        try:
            # until stopped, or until producing or heartbeats fail (the broker refused): then the
            # task ends with ``error`` and whoever reconciles restarts it from its checkpoint
            await asyncio.wait({stopping, flusher, beat}, return_when=asyncio.FIRST_COMPLETED)
            failure = next((t.exception() for t in (flusher, beat) if t.done() and not t.cancelled()), None)
        finally:
            stopping.cancel()
            for conns in self.connections.values():
                for c in conns:
                    await c.close()
            await asyncio.gather(*self._runners, return_exceptions=True)
            flusher.cancel()
            beat.cancel()
            await asyncio.gather(flusher, beat, return_exceptions=True)
            await self._flush()
            if isinstance(self.feed, TradeFeed):  # the gaps seen last, and the repairs under way
                for gap in self.feed.gaps():
                    self._repair(*gap)
            if self._repairs:
                await asyncio.wait(list(self._repairs), timeout=REPAIR_ON_STOP_S)
            for t in list(self._repairs):
                t.cancel()
            await asyncio.gather(*self._repairs, return_exceptions=True)
            await self.feed.close()
            await self._flush()
            await self._checkpoint()
            await self._settle()
            if self._rest is not None:
                await self._rest.close()
        if failure is not None:
            raise failure
        await self.events.emit(
            "finished",
            message="stopped",
            finished=True,
            records_written=self.counts.records,
            stream=self.stats,
        )

    def stop(self) -> None:
        self._stop.set()

    @property
    def stats(self) -> StreamStats:
        """The task's figures now, as its heartbeats carry them."""
        c = self.counts
        return StreamStats(
            messages=c.messages,
            records=c.records,
            gaps=c.gaps,
            resyncs=c.resyncs,
            reconnects=c.reconnects,
            repaired=c.repaired,
            silent_symbols=self.silent_symbols,
            symbols=self.symbols,
        )

    async def update(self, command: Command) -> None:
        """Subscribe the symbols a new ``start`` of the same task adds, unsubscribe those it drops."""
        wanted = command.stream_symbols()
        added = [s for s in wanted if s not in self.symbols]
        dropped = [s for s in self.symbols if s not in wanted]
        self.symbols = wanted
        if isinstance(self.feed, BookFeed):
            self.feed.add(added)
            self.feed.remove(dropped)
        for s in stream_names(self.type, dropped):
            for conn in self.connections.get(route_url(self.ws_base(), self.market, s.kind), []):
                if s.name in conn.names:
                    await conn.unsubscribe([s.name])
        for s in stream_names(self.type, added):
            url = route_url(self.ws_base(), self.market, s.kind)
            conns = self.connections.setdefault(url, [])
            room = next((c for c in conns if len(c.names) < c.limits.max_streams), None)
            if room is None:
                room = self._connection(url, [])
                conns.append(room)
                self._runners.append(asyncio.create_task(room.run()))
            await room.subscribe([s.name])
        log.info("stream %s now %d symbols (+%d, -%d)", self.queue_id, len(wanted), len(added), len(dropped))

    def _open(self, names: list[StreamName]) -> None:
        by_url: dict[str, list[str]] = defaultdict(list)
        for s in names:
            by_url[route_url(self.ws_base(), self.market, s.kind)].append(s.name)
        limits = USDM_LIMITS if self.market == "usdm" else SPOT_LIMITS
        for url, group in by_url.items():
            self.connections[url] = [self._connection(url, part) for part in shard(group, limits.max_streams)]

    def _connection(self, url: str, names: list[str]) -> StreamConnection:
        limits = USDM_LIMITS if self.market == "usdm" else SPOT_LIMITS
        label = f"{self.queue_id} {url.split('//', 1)[-1].split('/', 1)[-1]}"

        def on_state(state: str, detail: str) -> None:
            if state == "lost":
                self.counts.reconnects += 1
                metrics.RECONNECTS.labels(self.type).inc()
            elif state == "refused":
                log.error("stream %s: the exchange refused a subscription: %s", self.queue_id, detail)

        return StreamConnection(
            url,
            names,
            self._on_message,
            limits=limits,
            lifecycle=self.lifecycle,
            on_state=on_state,
            rng=random.Random(self.rng.random()),
            label=label,
        )

    def _on_message(self, stream: str, data: dict[str, Any]) -> None:
        self.counts.messages += 1
        counter = self._counters.get(stream)
        if counter is None:
            symbol = stream.split("@", 1)[0].upper()
            counter = self._counters[stream] = metrics.MESSAGES.labels(self.type, symbol)
        counter.inc()
        self.feed.on_message(stream, data)
        self._arrived.set()

    # -- producing

    async def _flush_loop(self) -> None:
        """Produce what arrived as soon as the loop is free (what arrives meanwhile goes in the same
        pages), or at most ``LIVE_FLUSH_MS`` after the first of it; then hand skipped trade ids to REST."""
        every = self.settings.live_flush_ms / 1000
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            await asyncio.sleep(every)
            await self._flush()
            if isinstance(self.feed, TradeFeed):
                for gap in self.feed.gaps():
                    self._repair(*gap)

    async def _flush(self) -> None:
        for symbol, (rows, times) in self.feed.take().items():
            await self._produce(symbol, rows, "ws", times)
        if isinstance(self.feed, BookFeed):
            for symbol, (rows, _) in self.feed.take_diffs().items():
                await self._send(self.feed.diff_topic, symbol, self.feed.diff_page(symbol, rows))

    async def _send(self, topic: str, symbol: str, page: dict[str, Any]) -> None:
        """Hand one page to Kafka, keyed by symbol; its acknowledgement is awaited by :meth:`_settle`."""
        self._sent.append(await self.producer.send(topic, encode_record(page), key=symbol.encode()))

    async def _produce(
        self, symbol: str, rows: list[list[Any]], source: str, times: list[int] | None
    ) -> None:
        await self._send(self.feed.topic, symbol, self.feed.page(symbol, rows, source))
        self.counts.records += len(rows)
        if times:
            now_ms = time.time() * 1000
            hist = metrics.LATENCY.labels(self.type)
            for t in times:
                hist.observe(max(now_ms - t, 0) / 1000)
        metrics.RECORDS.labels(self.type, symbol).inc(len(rows))

    def _repair(self, symbol: str, first: int, end: int) -> None:
        """Fetch trade ids ``[first, end)`` from REST and produce them (a task of its own)."""
        assert isinstance(self.feed, TradeFeed)
        self.counts.gaps += 1
        metrics.GAPS.labels(self.type, symbol).inc()
        self.feed.unrepaired[symbol].append((first, end))
        task = asyncio.create_task(self._repair_ids(symbol, first, end))
        self._repairs.add(task)
        task.add_done_callback(self._repairs.discard)

    async def _repair_ids(self, symbol: str, first: int, end: int) -> None:
        assert isinstance(self.feed, TradeFeed)
        kind, at = self.feed.kind, first
        for attempt in range(1, REPAIR_ATTEMPTS + 1):
            try:
                at = await self._fetch_ids(symbol, kind, at, end)
                break
            except Exception as exc:  # noqa: BLE001 - the exchange failed: try again, then say so
                if attempt == REPAIR_ATTEMPTS:
                    log.error(
                        "stream %s: ids %d..%d of %s not repaired (%s): left to the ledger's repair round",
                        self.queue_id,
                        at,
                        end - 1,
                        symbol,
                        exc,
                    )
                    return  # left in unrepaired: the checkpoint stays before it
                await asyncio.sleep(min(REPAIR_BACKOFF_CAP_S, 0.5 * 2**attempt) * self.rng.random())
        self.feed.unrepaired[symbol].remove((first, end))
        log.info("stream %s: repaired %s ids %d..%d from REST", self.queue_id, symbol, first, end - 1)

    async def _fetch_ids(self, symbol: str, kind: str, at: int, end: int) -> int:
        """Produce ids ``[at, end)`` from REST; returns where it got to (``end`` when complete)."""
        rest = await self.rest()
        while at < end:
            limit = min(REPAIR_PAGE, end - at)
            if kind == "agg":
                got = await rest.agg_trades(symbol, from_id=at, limit=limit)
                rows = [agg_row_of(e) for e in got if e["a"] < end]
            else:
                got = await rest.historical_trades(symbol, from_id=at, limit=limit)
                rows = [
                    [e["id"], e["price"], e["qty"], e["quoteQty"], e["time"], e["isBuyerMaker"]]
                    for e in got
                    if e["id"] < end
                ]
            if not rows:
                raise LookupError(f"REST has no {kind} trades of {symbol} from id {at}")
            await self._produce(symbol, rows, "rest", None)
            self.counts.repaired += len(rows)
            at = rows[-1][0] + 1
        return at

    async def _settle(self) -> None:
        """Wait until Kafka has acknowledged everything produced so far."""
        sent, self._sent = self._sent, []
        if sent:
            await asyncio.gather(*sent)

    # -- heartbeats

    async def _heartbeat_loop(self) -> None:
        every = self.settings.live_heartbeat_s
        while True:
            await asyncio.sleep(every)
            await self.beat()

    async def _checkpoint(self) -> None:
        """Once Kafka has acknowledged what was produced, write how far each symbol is complete."""
        checkpoint = self.feed.checkpoint()
        await self._settle()
        if self.checkpoints is not None:
            try:
                await self.checkpoints.put(self.producer, self.queue_id, checkpoint)
            except Exception as exc:  # noqa: BLE001 - a restart then repairs a little more
                log.warning("stream %s: checkpoint not written: %s", self.queue_id, exc)

    async def beat(self) -> None:
        """Checkpoint what Kafka has acknowledged, then one ``streaming`` heartbeat."""
        await self._flush()
        await self._checkpoint()
        silent = sorted({name for conns in self.connections.values() for c in conns for name in c.silent()})
        self.silent_symbols = sorted({n.split("@", 1)[0].upper() for n in silent})
        for symbol in self.symbols:
            metrics.SILENT.labels(self.type, symbol).set(1 if symbol in self.silent_symbols else 0)
        await self.events.emit("streaming", records_written=self.counts.records, stream=self.stats)
