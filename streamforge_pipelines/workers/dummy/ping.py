"""kafka-ping: round trips through the broker, with their latency.

Each ping is a ``queue-control`` :class:`~streamforge_pipelines.protocol.Command` with
``command="ping"`` and ``target="dummy-service"``: the protocol already has the ping command, and the
control topic is the path real commands take, so a ping proves that path works (broker up, topic
led, produce acknowledged, fetch answered). Workers ignore commands not addressed to them (the
loader-producer commits them and goes on), so pings are harmless there; ``topic=`` sends them
elsewhere when wanted.

The ping is keyed by the pinger's ``telemetry_id`` (``dummy-service__<6 hex>``), so every ping of a
run lands on one partition, and its ``queue_id`` is ``ping-<6 hex>-<sequence>``. The reader is a
consumer without a group, assigned that partition and positioned with the offset the broker gave
the warm-up ping: no group join, and no ListOffsets (Tansu answers ``latest`` wrongly). A round trip
is the time from handing the ping to the producer until the consumer has it; records that are not
this run's pings (other commands, a ping that timed out earlier) are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ...kafka import ensure_topics, make_producer
from ...protocol import Command, ProtocolError, decode_command, make_producer_id, new_suffix, now_s
from ...settings import Settings
from ..observability import ERRORS, LATENCY, RECORDS
from .health import DUMMY, ModeStatus, bootstrap_of, run_mode

log = logging.getLogger(__name__)

MODE = "kafka-ping"


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linearly interpolated; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class PingReport:
    """Round trips sent, received back, timed out (``failures``), and their latencies in ms."""

    topic: str
    timeout_s: float
    sent: int = 0
    received: int = 0
    failures: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failures == 0

    def stats_ms(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, q in (("min", 0.0), ("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("max", 100.0)):
            value = percentile(self.latencies_ms, q)
            out[name] = None if math.isnan(value) else round(value, 3)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "sent": self.sent,
            "received": self.received,
            "failures": self.failures,
            "timeout_s": self.timeout_s,
            "latency_ms": self.stats_ms(),
        }


async def kafka_ping(
    settings: Settings,
    *,
    count: int | None = 10,
    duration_s: float | None = None,
    interval_s: float = 0.0,
    timeout_s: float = 5.0,
    topic: str | None = None,
    fetch_wait_ms: int = 5,
    stop: asyncio.Event | None = None,
    status: ModeStatus | None = None,
) -> PingReport:
    """Ping ``count`` times (or for ``duration_s``, whichever ends first) until ``stop`` is set.

    A round trip that takes longer than ``timeout_s`` counts as a failure and the next ping goes
    on. ``fetch_wait_ms`` is the consumer's fetch wait: Tansu holds an empty fetch that long, so it
    bounds the latency from below.
    """
    if count is None and duration_s is None:
        raise ValueError("kafka-ping needs a count or a duration")
    if timeout_s <= 0 or interval_s < 0:
        raise ValueError("timeout_s must be > 0 and interval_s >= 0")
    bootstrap = bootstrap_of(settings)
    topic = topic or settings.topic_control
    stop = stop or asyncio.Event()
    status = status or ModeStatus(MODE)
    report = PingReport(topic=topic, timeout_s=timeout_s)
    suffix = new_suffix()
    pinger = make_producer_id(DUMMY, suffix)
    key = pinger.encode()

    await ensure_topics(bootstrap, {topic: 1})
    producer = make_producer(bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=fetch_wait_ms,
    )
    await producer.start()
    await consumer.start()

    def ping(seq: int) -> tuple[str, bytes]:
        queue_id = f"ping-{suffix}-{seq}"
        command = Command(
            command="ping", queue_id=queue_id, target=DUMMY, telemetry_id=pinger, timestamp=now_s()
        )
        return queue_id, command.encode()

    async def receive(tp: TopicPartition, queue_id: str) -> None:
        while True:
            batch = await consumer.getmany(tp, timeout_ms=100)
            for rec in batch.get(tp, []):
                if rec.key != key:
                    continue
                try:
                    if decode_command(rec.value or b"").queue_id == queue_id:
                        return
                except ProtocolError:
                    continue

    try:
        # Warm-up (not counted): connections open, and the offset the reader starts from.
        warm_id, payload = ping(0)
        meta = await producer.send_and_wait(topic, payload, key=key)
        tp = TopicPartition(topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        async with asyncio.timeout(max(timeout_s, 10.0)):
            await receive(tp, warm_id)
        log.info("kafka-ping %s on %s[%s] from offset %s", pinger, topic, tp.partition, meta.offset)

        deadline = None if duration_s is None else time.monotonic() + duration_s
        seq = 0
        while not stop.is_set():
            if count is not None and seq >= count:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            seq += 1
            queue_id, payload = ping(seq)
            started = time.perf_counter()
            try:
                async with asyncio.timeout(timeout_s):
                    delivery = await producer.send(topic, payload, key=key)
                    report.sent += 1
                    await receive(tp, queue_id)
                    await delivery
            except TimeoutError:
                report.failures += 1
                status.count("failures")
                ERRORS.labels(DUMMY, "ping_timeout").inc()
                log.warning("ping %s: no round trip within %ss", queue_id, timeout_s)
            else:
                elapsed = time.perf_counter() - started
                report.received += 1
                report.latencies_ms.append(elapsed * 1000.0)
                status.count("received")
                RECORDS.labels(DUMMY, "ping").inc()
                LATENCY.labels(DUMMY, "ping").observe(elapsed)
            status.count("sent")
            if interval_s > 0:
                try:
                    await asyncio.wait_for(stop.wait(), interval_s)
                except TimeoutError:
                    pass
    finally:
        await consumer.stop()
        await producer.stop()
    log.info("kafka-ping done: %s", report.as_dict())
    return report


def main(
    settings: Settings,
    *,
    count: int | None = 10,
    duration_s: float | None = None,
    interval_s: float = 0.0,
    timeout_s: float = 5.0,
    topic: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> int:
    """``streamforge dummy kafka-ping``: prints the report; exit 1 if any round trip timed out."""
    bootstrap_of(settings)

    async def run(stop: asyncio.Event, status: ModeStatus) -> PingReport:
        return await kafka_ping(
            settings,
            count=count,
            duration_s=duration_s,
            interval_s=interval_s,
            timeout_s=timeout_s,
            topic=topic,
            stop=stop,
            status=status,
        )

    return run_mode(MODE, run, host=host, port=port, log_level=settings.log_level)
