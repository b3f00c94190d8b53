"""arango-connector: data topics -> store, idempotent, offsets committed only after the write.

One consumer-group member. Each poll takes a batch (``getmany``), decodes it (single candles and
candle pages alike; trades pages go to ``upsert_trades``), upserts the valid candles with their
deterministic keys in one store call (off the event loop), copies every record that is not valid
JSON or not a valid candle (a page with one bad row goes whole) to the topic's dead-letter topic
with its reason, and only then commits the offsets. End markers in the batch are acknowledged on
``queue-events`` after the commit: by then every record before the marker on that partition is
stored. A crash between write and commit replays the batch; the upsert makes that harmless.
Batches are pipelined one deep: batch N+1 is fetched and decoded while batch N is written in a
worker thread; N+1 is written only after N is committed, so offsets are committed in order.

Progress per task goes to ``queue-events`` as ``loading`` events (at most about once a second per
task) with the number of the task's records this connector has stored.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from ..protocol import (
    CONNECTOR,
    RECORD_CANDLES,
    RECORD_END,
    RECORD_TRADES,
    Event,
    PartitionCount,
    ProtocolError,
    decode_record,
    make_producer_id,
    new_suffix,
    now_s,
)
from ..settings import TRADES_COLLECTION, Settings, candle_collection
from ..store import Store, store_from_settings
from ..store.base import CandlePageRows
from .kafka_io import make_producer
from .observability import BATCHES, ERRORS, LATENCY, RECORDS, Timer, configure_logging, serve_metrics

log = logging.getLogger(__name__)

WORKER = CONNECTOR
PROGRESS_EVERY_S = 1.0


@dataclass
class ConnectorStats:
    stored: int = 0
    dead_lettered: int = 0
    markers: int = 0
    batches: int = 0


@dataclass
class _Prepared:
    """One decoded batch, ready to be written."""

    offsets: dict[TopicPartition, int]
    docs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pages: dict[str, list[CandlePageRows]] = field(default_factory=dict)
    trade_docs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dead: list[tuple[ConsumerRecord, str]] = field(default_factory=list)
    markers: list[tuple[ConsumerRecord, dict[str, Any]]] = field(default_factory=list)
    per_task: Counter[str] = field(default_factory=Counter)


class Connector:
    """Consumes ``collections`` (topic -> store collection) into ``store`` until stopped."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        collections: Mapping[str, str] | None = None,
        max_batch: int = 10_000,
        producer_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        # Spot and USD-M futures candles of a symbol share keys: each market has its own topic and collection.
        self.collections = dict(
            collections
            or {
                settings.candle_topic("spot"): candle_collection("spot"),
                settings.candle_topic("usdm"): candle_collection("usdm"),
                settings.topic_trades: TRADES_COLLECTION,
            }
        )
        self.max_batch = max_batch
        self.producer_id = producer_id or make_producer_id(WORKER, new_suffix())
        self.stats = ConnectorStats()
        self._stored_per_task: Counter[str] = Counter()
        self._progress_sent: dict[str, float] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> ConnectorStats:
        """Consume until ``stop`` is set; the batch in hand is finished and committed first."""
        bootstrap = self.settings.kafka_bootstrap_servers or ""
        self._consumer = AIOKafkaConsumer(
            *self.collections,
            bootstrap_servers=bootstrap,
            group_id=self.settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=32 << 20,
            session_timeout_ms=6000,  # a JoinGroup waits about half of it; 6 s is Kafka's minimum
            fetch_max_wait_ms=50,  # the 500 ms default stalls the pipeline on an idle partition
        )
        self._producer = make_producer(bootstrap)
        await self._producer.start()
        await self._consumer.start()
        log.info("connector %s consuming %s", self.producer_id, sorted(self.collections))
        self.ready.set()
        pending: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                batch = await self._consumer.getmany(timeout_ms=200, max_records=self.max_batch)
                if not batch:
                    if pending is not None and pending.done():  # surfaces a failed write now
                        await pending
                        pending = None
                    continue
                # Decode this batch while the previous one is still being written (the store
                # releases the GIL while it writes); then write it once the previous is committed.
                prepared = self._prepare(batch)
                if pending is not None:
                    await pending
                pending = asyncio.create_task(self._apply(prepared))
        finally:
            try:
                if pending is not None:
                    await pending
            finally:
                await self._consumer.stop()
                await self._producer.stop()
                log.info("connector %s stopped: %s", self.producer_id, self.stats)
        return self.stats

    def _prepare(self, batch: Mapping[TopicPartition, list[ConsumerRecord]]) -> _Prepared:
        """Decode and sort one batch: what to write where, what to dead-letter, which markers."""
        out = _Prepared(offsets={tp: records[-1].offset + 1 for tp, records in batch.items() if records})
        with Timer(LATENCY.labels(WORKER, "decode")):
            for tp, records in batch.items():
                collection = self.collections[tp.topic]
                for rec in records:
                    try:
                        value = decode_record(rec.value or b"", page_as_docs=False)
                    except ProtocolError as exc:
                        out.dead.append((rec, str(exc)))
                        continue
                    kind = value.get("record")
                    if kind == RECORD_END:
                        out.markers.append((rec, value))
                    elif kind == RECORD_CANDLES:
                        out.pages.setdefault(collection, []).append(value["page"])
                        out.per_task[value["queue_id"]] += value["count"]
                    elif kind == RECORD_TRADES:
                        out.trade_docs.setdefault(collection, []).extend(value["docs"])
                        out.per_task[value["queue_id"]] += len(value["docs"])
                    else:
                        out.docs.setdefault(collection, []).append(value)
                        out.per_task[value["queue_id"]] += 1
        return out

    async def _apply(self, batch: _Prepared) -> None:
        """Write a decoded batch, dead-letter its bad records, commit its offsets, then ack its markers."""
        assert self._consumer is not None and self._producer is not None
        with Timer(LATENCY.labels(WORKER, "batch")):
            if batch.docs or batch.pages or batch.trade_docs:
                await asyncio.to_thread(self._write, batch.docs, batch.pages, batch.trade_docs)
            if batch.dead:
                await self._dead_letter(batch.dead)
            await self._consumer.commit(batch.offsets)
        per_task = batch.per_task
        stored = sum(per_task.values())
        self.stats.stored += stored
        self.stats.batches += 1
        self.stats.markers += len(batch.markers)
        BATCHES.labels(WORKER).inc()
        RECORDS.labels(WORKER, "stored").inc(stored)
        self._stored_per_task.update(per_task)
        for rec, marker in batch.markers:
            await self._emit_marker(rec, marker)
        await self._emit_progress(per_task)

    def _write(
        self,
        docs: Mapping[str, list[dict[str, Any]]],
        pages: Mapping[str, list[CandlePageRows]],
        trade_docs: Mapping[str, list[dict[str, Any]]],
    ) -> None:
        """One batch's writes, in a worker thread (the event loop keeps fetching meanwhile)."""
        for collection, items in docs.items():
            self.store.upsert_candles(items, collection)
        for collection, page_list in pages.items():
            self.store.upsert_candle_pages(page_list, collection)
        for collection, items in trade_docs.items():
            self.store.upsert_trades(items, collection)

    async def _dead_letter(self, dead: list[tuple[ConsumerRecord, str]]) -> None:
        assert self._producer is not None
        futures = []
        for rec, reason in dead:
            log.warning(
                "dead-lettering %s[%s]@%s: %s",
                rec.topic,
                rec.partition,
                rec.offset,
                reason,
                extra={
                    "topic": rec.topic,
                    "partition": rec.partition,
                    "offset": rec.offset,
                    "reason": reason,
                },
            )
            body = {
                "reason": reason,
                "topic": rec.topic,
                "partition": rec.partition,
                "offset": rec.offset,
                "key": (rec.key or b"").decode("utf-8", "replace"),
                "value": (rec.value or b"").decode("utf-8", "replace"),
                "connector": self.producer_id,
                "timestamp": now_s(),
            }
            topic = self.settings.dlq_topic(rec.topic)
            futures.append(await self._producer.send(topic, orjson.dumps(body), key=rec.key))
        await asyncio.gather(*futures)
        self.stats.dead_lettered += len(dead)
        RECORDS.labels(WORKER, "dead_lettered").inc(len(dead))
        ERRORS.labels(WORKER, "invalid_record").inc(len(dead))

    async def _send_event(self, event: Event) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(
            self.settings.topic_events, event.encode(), key=event.queue_id.encode()
        )

    async def _emit_marker(self, rec: ConsumerRecord, marker: dict[str, Any]) -> None:
        queue_id = str(marker["queue_id"])
        part = PartitionCount(partition=rec.partition, records=int(marker["records"]), offset=rec.offset)
        await self._send_event(
            Event(
                queue_id=queue_id,
                producer=self.producer_id,
                status="finished",
                finished=True,
                records_written=self._stored_per_task.get(queue_id, 0),
                partitions=[part],
                message=f"end marker stored on {rec.topic}[{rec.partition}]",
                timestamp=now_s(),
            )
        )

    async def _emit_progress(self, per_task: Counter[str]) -> None:
        now = time.monotonic()
        for queue_id in per_task:
            if now - self._progress_sent.get(queue_id, 0.0) < PROGRESS_EVERY_S:
                continue
            self._progress_sent[queue_id] = now
            await self._send_event(
                Event(
                    queue_id=queue_id,
                    producer=self.producer_id,
                    status="loading",
                    records_written=self._stored_per_task[queue_id],
                    timestamp=now_s(),
                )
            )


async def serve_connector(settings: Settings) -> ConnectorStats:
    """The standalone worker: consume until SIGTERM/SIGINT, then finish the batch and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store = store_from_settings(settings)
    try:
        return await Connector(settings, store).run(stop)
    finally:
        store.close()


def main(settings: Settings) -> None:
    configure_logging(settings.log_level)
    serve_metrics(settings.metrics_port)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        import uvloop

        uvloop.run(serve_connector(settings))
    except ImportError:  # pragma: no cover - uvloop is a dependency; this keeps Windows usable
        asyncio.run(serve_connector(settings))
