"""load: produce messages of a given schema at a given rate, and report the rate achieved.

Schemas (every message built through :mod:`streamforge_pipelines.protocol`):

* ``candle`` — valid candle records (:func:`~streamforge_pipelines.protocol.candle_from_kline`)
  with synthetic values, round-robin over the symbol universe, consecutive ``open_time`` per symbol,
  keyed by symbol, to the candle topic by default (the connector stores them like real ones);
* ``event`` — ``queue-events`` :class:`~streamforge_pipelines.protocol.Event` s (``loading``,
  growing ``records_written``) of one made-up task per symbol, keyed by ``queue_id``;
* ``raw`` — ``size`` opaque bytes, 64 keys, to ``sf.dummy.load.v1`` by default.

Pacing is a token bucket: tokens accrue at ``rate`` per second, up to ``burst_s`` seconds' worth;
every ``tick_s`` the tokens in hand are spent in one go. A paced run sends ``rate x duration``
messages (or ``count``, if fewer) and stops at the end of its duration (plus two ticks) even if it
fell behind, so a run that cannot keep up reports an achieved rate below the target. A tick's
messages are appended to one :class:`~aiokafka.producer.message_accumulator.BatchBuilder` per
partition (chosen from the key as the producer's default partitioner does) and handed over with
``send_batch``: one await per batch, not per message. Deliveries are counted as the broker
acknowledges them; the achieved rate is acknowledged messages over the time from the first send to
the last acknowledgement.
``rate=0`` means unthrottled: as fast as the producer can go (the accumulator applies back
pressure).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from ...intervals import FIXED_INTERVAL_MS
from ...kafka import ensure_topics, make_producer
from ...protocol import (
    Event,
    candle_from_kline,
    encode_record,
    make_producer_id,
    make_queue_id,
    new_suffix,
    now_s,
)
from ...settings import Settings
from ..observability import BATCHES, ERRORS, RECORDS
from .health import DUMMY, ModeStatus, bootstrap_of, run_mode

log = logging.getLogger(__name__)

MODE = "load"
Schema = Literal["candle", "event", "raw"]
SCHEMAS: tuple[str, ...] = ("candle", "event", "raw")
#: Topic of ``raw`` load when none is given.
DEFAULT_RAW_TOPIC = "sf.dummy.load.v1"
#: Messages handed over per step when unthrottled (fewer for big raw messages: about 8 MiB a step).
_UNTHROTTLED_STEP = 5_000
#: Largest ``raw`` message: it must fit in one of the producer's 1 MiB batches.
MAX_RAW_SIZE = 1_000_000

#: ``i`` -> (key, value) of the ``i``-th message.
MessageFn = Callable[[int], tuple[bytes, bytes]]


@dataclass
class LoadReport:
    """Target vs achieved rate, and what happened to the messages."""

    schema: str
    topic: str
    target_rate: float
    sent: int = 0
    acked: int = 0
    errors: int = 0
    bytes_sent: int = 0
    batches: int = 0
    seconds: float = 0.0

    @property
    def achieved_rate(self) -> float:
        return self.acked / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.acked == self.sent

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "topic": self.topic,
            "target_rate": self.target_rate or "unthrottled",
            "achieved_rate": round(self.achieved_rate, 1),
            "sent": self.sent,
            "acked": self.acked,
            "errors": self.errors,
            "bytes": self.bytes_sent,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
        }


def message_factory(schema: Schema, settings: Settings, *, size: int = 200) -> MessageFn:
    """The ``i``-th message of ``schema``: valid, distinct, deterministic apart from run ids."""
    suffix = new_suffix()
    symbols = list(settings.universe) or ["BTCUSDT"]
    if schema == "candle":
        interval = settings.interval if settings.interval in FIXED_INTERVAL_MS else "1m"
        step = FIXED_INTERVAL_MS[interval]
        task_type = f"api_candles_{interval}"
        base = (int(time.time() * 1000) // 86_400_000 - 1) * 86_400_000  # yesterday, 00:00 UTC
        first_day = datetime.fromtimestamp(base / 1000, UTC).date()
        queue_ids = [make_queue_id(s, task_type, first_day, suffix) for s in symbols]
        keys = [s.encode() for s in symbols]

        def candle(i: int) -> tuple[bytes, bytes]:
            n, k = divmod(i, len(symbols))
            open_time = base + n * step
            price = 100.0 + (i % 997) * 0.01
            row = [
                open_time,
                f"{price:.8f}",
                f"{price + 0.5:.8f}",
                f"{price - 0.5:.8f}",
                f"{price + 0.1:.8f}",
                "12.50000000",
                open_time + step - 1,
                f"{price * 12.5:.8f}",
                42,
                "6.25000000",
                f"{price * 6.25:.8f}",
                "0",
            ]
            record = candle_from_kline(row, symbols[k], interval, DUMMY, queue_ids[k])
            return keys[k], encode_record(record)

        return candle
    if schema == "event":
        producer = make_producer_id(DUMMY, suffix)
        today = datetime.now(UTC).date()
        templates = [
            Event(
                queue_id=make_queue_id(s, "api_candles_1m", today, suffix),
                producer=producer,
                status="loading",
                symbol=s,
                type="api_candles_1m",
                message="dummy-service load",
            ).model_dump(mode="json", exclude_none=True)
            for s in symbols
        ]
        event_base = uuid.uuid4().hex[:16]

        def event(i: int) -> tuple[bytes, bytes]:
            n, k = divmod(i, len(symbols))
            body = {
                **templates[k],
                "records_written": n,
                "timestamp": now_s(),
                "event_id": f"{event_base}{i:016x}",
            }
            return templates[k]["queue_id"].encode(), encode_record(body)

        return event
    if schema == "raw":
        if not 0 <= size <= MAX_RAW_SIZE:
            raise ValueError(f"raw message size must be 0..{MAX_RAW_SIZE} bytes, got {size}")
        payload = (b"streamforge-dummy-load:" * (size // 23 + 1))[:size]
        raw_keys = [f"k{j:02d}".encode() for j in range(64)]

        def raw(i: int) -> tuple[bytes, bytes]:
            return raw_keys[i % 64], payload

        return raw
    raise ValueError(f"unknown schema {schema!r} (expected one of {', '.join(SCHEMAS)})")


class _Sender:
    """Appends messages to per-partition batches and hands them to the producer."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: list[int], report: LoadReport):
        self._producer = producer
        self._topic = topic
        self._partitions = partitions
        self._partitioner = DefaultPartitioner()
        self._partition_of: dict[bytes, int] = {}
        self._report = report
        self._pending: set[asyncio.Future[Any]] = set()
        self.last_ack = time.perf_counter()

    def _partition(self, key: bytes) -> int:
        p = self._partition_of.get(key)
        if p is None:
            p = self._partitioner(key, self._partitions, self._partitions)
            self._partition_of[key] = p
        return p

    async def send(self, messages: list[tuple[bytes, bytes]]) -> None:
        builders: dict[int, Any] = {}
        counts: dict[int, int] = {}
        for key, value in messages:
            p = self._partition(key)
            builder = builders.get(p)
            if builder is None:
                builder = builders[p] = self._producer.create_batch()
                counts[p] = 0
            if builder.append(timestamp=None, key=key, value=value) is None:
                await self._submit(builder, p, counts[p])
                builder = builders[p] = self._producer.create_batch()
                counts[p] = 0
                if builder.append(timestamp=None, key=key, value=value) is None:
                    raise ValueError(f"a message of {len(value)} bytes does not fit in a batch")
            counts[p] += 1
            self._report.bytes_sent += len(value)
        for p, builder in builders.items():
            if counts[p]:
                await self._submit(builder, p, counts[p])

    async def _submit(self, builder: Any, partition: int, n: int) -> None:
        builder.close()
        future = await self._producer.send_batch(builder, self._topic, partition=partition)
        self._report.sent += n
        self._report.batches += 1
        BATCHES.labels(DUMMY).inc()
        self._pending.add(future)
        future.add_done_callback(lambda f: self._done(f, n))

    def _done(self, future: asyncio.Future[Any], n: int) -> None:
        self._pending.discard(future)
        self.last_ack = time.perf_counter()
        if future.cancelled() or future.exception() is not None:
            self._report.errors += n
            ERRORS.labels(DUMMY, "load_send").inc()
            log.warning(
                "load: a batch of %s messages failed: %r",
                n,
                None if future.cancelled() else future.exception(),
            )
            RECORDS.labels(DUMMY, "load_failed").inc(n)
        else:
            self._report.acked += n
            RECORDS.labels(DUMMY, "load").inc(n)

    async def drain(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


async def produce_load(
    settings: Settings,
    *,
    rate: float = 1_000.0,
    duration_s: float = 10.0,
    schema: Schema = "candle",
    size: int = 200,
    count: int | None = None,
    topic: str | None = None,
    tick_s: float = 0.01,
    burst_s: float = 0.1,
    stop: asyncio.Event | None = None,
    status: ModeStatus | None = None,
) -> LoadReport:
    """Produce ``rate`` messages/s (0 = unthrottled) for ``duration_s`` or until ``count`` are sent.

    Returns when the last message is acknowledged (or failed). ``stop`` ends the sending early;
    what was handed over is still flushed and counted.
    """
    if rate < 0 or duration_s <= 0 or tick_s <= 0 or burst_s <= 0:
        raise ValueError("rate must be >= 0, duration_s, tick_s and burst_s > 0")
    if count is not None and count < 0:
        raise ValueError("count must be >= 0")
    bootstrap = bootstrap_of(settings)
    if topic is None:
        topic = {"candle": settings.topic_candles, "event": settings.topic_events}.get(
            schema, DEFAULT_RAW_TOPIC
        )
    make = message_factory(schema, settings, size=size)
    stop = stop or asyncio.Event()
    status = status or ModeStatus(MODE)
    report = LoadReport(schema=schema, topic=topic, target_rate=rate)
    partitions = 1 if topic == settings.topic_events else settings.data_partitions
    await ensure_topics(bootstrap, {topic: partitions})

    producer = make_producer(bootstrap)
    await producer.start()
    try:
        sender = _Sender(producer, topic, sorted(await producer.partitions_for(topic)), report)
        burst = max(1.0, rate * burst_s)
        step = (
            _UNTHROTTLED_STEP
            if schema != "raw"
            else max(1, min(_UNTHROTTLED_STEP, (8 << 20) // max(1, size)))
        )
        tokens = 0.0
        limit = count if count is not None else -1
        if rate > 0:  # a paced run sends rate x duration messages, unless it falls behind
            planned = round(rate * duration_s)
            limit = planned if limit < 0 else min(limit, planned)
        started = time.perf_counter()
        last = started
        end = started + duration_s + (2 * tick_s if rate > 0 else 0.0)
        log.info("load: %s messages/s of %s to %s for %ss", rate or "unthrottled", schema, topic, duration_s)
        while not stop.is_set():
            now = time.perf_counter()
            if now >= end or (limit >= 0 and report.sent >= limit):
                break
            if rate > 0:
                tokens = min(burst, tokens + (now - last) * rate)
                n = int(tokens)
                tokens -= n
            else:
                n = step
            last = now
            if limit >= 0:
                n = min(n, limit - report.sent)
            if n > 0:
                first = report.sent
                await sender.send([make(i) for i in range(first, first + n)])
                status.counters.update(sent=report.sent, acked=report.acked, errors=report.errors)
            if rate > 0:
                pause = tick_s - (time.perf_counter() - now)
                if pause > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), pause)
                    except TimeoutError:
                        pass
            else:
                await asyncio.sleep(0)
        await producer.flush()
        await sender.drain()
        report.seconds = (sender.last_ack if report.sent else time.perf_counter()) - started
    finally:
        await producer.stop()
    status.counters.update(sent=report.sent, acked=report.acked, errors=report.errors)
    log.info("load done: %s", report.as_dict())
    return report


def main(
    settings: Settings,
    *,
    rate: float = 1_000.0,
    duration_s: float = 10.0,
    schema: Schema = "candle",
    size: int = 200,
    count: int | None = None,
    topic: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> int:
    """``streamforge dummy load``: prints the report; exit 1 if any message was not delivered."""
    bootstrap_of(settings)

    async def run(stop: asyncio.Event, status: ModeStatus) -> LoadReport:
        return await produce_load(
            settings,
            rate=rate,
            duration_s=duration_s,
            schema=schema,
            size=size,
            count=count,
            topic=topic,
            stop=stop,
            status=status,
        )

    return run_mode(MODE, run, host=host, port=port, log_level=settings.log_level)
