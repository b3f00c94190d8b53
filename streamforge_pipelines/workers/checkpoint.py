"""Task checkpoints on a Kafka topic, so a loader killed mid-task resumes instead of starting over.

Kafka Connect's source-offset model: a loader periodically writes how far its task has got to a
topic (``KAFKA_TOPIC_CHECKPOINTS``, ``sf.checkpoints.v1``; ``cleanup.policy=compact`` where topic
configs are set, so only the latest checkpoint per key is kept), keyed by the task's ``queue_id``.
A checkpoint is written only after the data it covers has been acknowledged by Kafka, so resuming
from it never skips a record. A standalone loader reads the topic once, at start, catches up before
each task (a task taken over from a dead replica), and continues it from its latest checkpoint.

The store is generic (key -> JSON object) so every loader can use it; what goes into the value is
the loader's business (the candle loader's fields: :mod:`.loader_candles`). API::

    store = await CheckpointStore.load(bootstrap_servers, topic)   # bounded read of the topic
    await store.refresh()                   # read only what was written since (other replicas)
    store.get("wf-btcusdt-...")             # latest value for a key, or None
    fut = await store.put(producer, key, {"done_until_ms": ...})  # send; await fut for the ack
    await store.delete(producer, key)        # tombstone (compaction drops the key)

:meth:`CheckpointStore.load` reads from the beginning until a fetch comes back empty (or
``timeout_s`` has passed), :meth:`CheckpointStore.refresh` from where the last read ended; neither
relies on end offsets (Tansu answers ListOffsets with the start of the last batch). A partial read
is safe: checkpoints of a key only move forward, so an older one resumes earlier and refetches a
little more, never less. A topic that does not exist reads as empty (no metadata request here
creates topics). ``put`` adds ``written_at`` (epoch seconds) when the value has none, and updates
the store's own view (which a later refresh does not overwrite), so a task carried out twice in
one process resumes from its latest checkpoint too.

This module must not import Dagster.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

__all__ = ["CheckpointStore"]

log = logging.getLogger(__name__)


class CheckpointStore:
    """The latest checkpoint per key of one topic (a dict), and the writer of new ones."""

    def __init__(
        self, bootstrap_servers: str, topic: str, entries: dict[str, dict[str, Any]] | None = None
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._entries: dict[str, dict[str, Any]] = dict(entries or {})
        #: Partition -> next offset to read (absent: from the beginning).
        self._offsets: dict[int, int] = {}
        #: Keys this process wrote: its own view of them is newer than what a refresh reads back.
        self._own: set[str] = set()
        self._lock = asyncio.Lock()

    @classmethod
    async def load(
        cls, bootstrap_servers: str, topic: str, *, timeout_s: float = 30.0, poll_ms: int = 500
    ) -> CheckpointStore:
        """A store with ``topic`` read from the beginning (latest value per key); bounded by ``timeout_s``."""
        store = cls(bootstrap_servers, topic)
        await store.refresh(timeout_s=timeout_s, poll_ms=poll_ms)
        return store

    async def refresh(self, *, timeout_s: float = 30.0, poll_ms: int = 500) -> int:
        """Read what was written since the last read (another replica's checkpoints); returns the count.

        Cheap once loaded: it starts where the last read ended. Reads until a fetch comes back empty
        or ``timeout_s`` has passed (then logs a warning: what was read is still usable).
        """
        async with self._lock:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                enable_auto_commit=False,
                group_id=None,
                fetch_max_wait_ms=min(poll_ms, 100),
            )
            await consumer.start()
            read = 0
            try:
                await consumer.topics()  # fresh cluster metadata (all topics: creates none)
                parts = consumer.partitions_for_topic(self.topic)
                if not parts:
                    log.info("checkpoint topic %s does not exist yet: no checkpoints", self.topic)
                    return 0
                tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
                consumer.assign(tps)
                for tp in tps:
                    if tp.partition in self._offsets:
                        consumer.seek(tp, self._offsets[tp.partition])
                    else:
                        await consumer.seek_to_beginning(tp)
                deadline = time.monotonic() + timeout_s
                while True:
                    if time.monotonic() >= deadline:
                        log.warning(
                            "checkpoint topic %s not read to its end within %.0fs (%d records read): "
                            "tasks may resume from older checkpoints",
                            self.topic,
                            timeout_s,
                            read,
                        )
                        break
                    batch = await consumer.getmany(timeout_ms=poll_ms, max_records=10_000)
                    if not any(batch.values()):
                        break
                    for tp, records in batch.items():
                        for rec in records:
                            read += 1
                            self._apply(rec.key, rec.value, rec.offset)
                        if records:
                            self._offsets[tp.partition] = records[-1].offset + 1
            finally:
                await consumer.stop()
            log.info("read %d checkpoint records from %s: %d keys", read, self.topic, len(self))
            return read

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        if not key:
            log.warning("skipping checkpoint without key at %s@%s", self.topic, offset)
            return
        name = key.decode(errors="replace")
        if name in self._own:
            return
        if value is None:  # tombstone
            self._entries.pop(name, None)
            return
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            log.warning("skipping malformed checkpoint at %s@%s: %s", self.topic, offset, exc)
            return
        if not isinstance(parsed, dict):
            log.warning("skipping checkpoint at %s@%s: not a JSON object", self.topic, offset)
            return
        self._entries[name] = parsed

    def get(self, key: str) -> dict[str, Any] | None:
        """The latest checkpoint of ``key`` (a copy), or None."""
        value = self._entries.get(key)
        return None if value is None else dict(value)

    async def put(self, producer: AIOKafkaProducer, key: str, value: dict[str, Any]) -> asyncio.Future[Any]:
        """Send a checkpoint for ``key``; returns the send's future (await it for the broker's ack)."""
        value = {**value, "written_at": value.get("written_at", round(time.time(), 3))}
        future = await producer.send(self.topic, orjson.dumps(value), key=key.encode())
        self._entries[key] = value
        self._own.add(key)
        return future

    async def delete(self, producer: AIOKafkaProducer, key: str) -> None:
        """Write a tombstone for ``key`` and wait for its ack."""
        await producer.send_and_wait(self.topic, None, key=key.encode())
        self._entries.pop(key, None)
        self._own.add(key)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
