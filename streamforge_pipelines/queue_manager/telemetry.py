"""Reading ``queue-events``: a live follower for a step and a bounded, cursor-driven read for sensors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..protocol import Event, ProtocolError, decode_event

log = logging.getLogger(__name__)

#: Seconds an :class:`EventFollower` waits for its consumer to close (it has no group to leave:
#: only a broker that is gone makes it wait).
STOP_TIMEOUT_S = 1.0


def _decode_all(records: list) -> list[Event]:
    out: list[Event] = []
    for rec in records:
        try:
            out.append(decode_event(rec.value or b""))
        except ProtocolError as exc:
            log.warning("skipping malformed event at offset %s: %s", rec.offset, exc)
    return out


class EventFollower:
    """Reads ``queue-events`` from the position it had when started (no consumer group)."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=50
        )
        self._topic = topic

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer.topics()  # fresh cluster metadata
        parts = self._consumer.partitions_for_topic(self._topic) or {0}
        tps = [TopicPartition(self._topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the lazy seek now, before anything is published
            await self._consumer.position(tp)

    async def poll(self, timeout_ms: int = 500) -> list[Event]:
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
        return [e for records in batch.values() for e in _decode_all(records)]

    async def stop(self) -> None:
        # Without a group there is nothing to hand back: a broker that is gone is not waited for.
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self._consumer.stop()
        except TimeoutError:
            log.warning("the queue-events reader did not stop within %.0fs", STOP_TIMEOUT_S)

    async def __aenter__(self) -> EventFollower:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def read_events(
    bootstrap_servers: str,
    topic: str,
    offsets: Mapping[int, int],
    *,
    max_records: int = 20_000,
    timeout_s: float = 3.0,
) -> tuple[list[Event], dict[int, int]]:
    """Events after ``offsets`` (partition -> next offset; absent = from the beginning).

    Reads until a fetch comes back empty (caught up), ``max_records`` are read, or ``timeout_s``
    has passed: a sensor tick never blocks for long. Returns the events and the new offsets.
    The end is found by fetching, not by asking for the end offset: Tansu answers that request
    with the start of the last record batch, not the end of the log.
    """
    import time

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # fresh cluster metadata
        parts = consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        new_offsets = dict(offsets)
        for tp in tps:
            if tp.partition in offsets:
                consumer.seek(tp, offsets[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
            new_offsets[tp.partition] = await consumer.position(tp)
        events: list[Event] = []
        deadline = time.monotonic() + timeout_s
        while len(events) < max_records and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300, max_records=max_records - len(events))
            if not any(batch.values()):
                break
            for tp, records in batch.items():
                if records:
                    events.extend(_decode_all(records))
                    new_offsets[tp.partition] = records[-1].offset + 1
        return events, new_offsets
    finally:
        await consumer.stop()
