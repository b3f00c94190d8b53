"""``stop`` and ``ping`` on ``queue-control``, carried out by the standalone loader (``serve_loader``).

Against the real broker and the exchange simulator (150 ms per klines request, so a 40-day 1m task
takes seconds): with one task slot, task A runs and task B waits for the slot.

* a ``ping`` of A is answered with a ``loading`` pong and its records so far, of B with a ``pending``
  pong and 0 records; a ping of a task nobody runs gets no answer (the next pong, of A, comes first);
* a ``stop`` of B ends it before it starts (``interrupted``, 0 records, never ``started``);
* a ``stop`` of A ends it at a page boundary: ``interrupted`` with the records it produced, which are
  exactly the task's candles on the data topic (flushed, nothing produced after); its checkpoint is
  kept and its start command committed (a loader that joins later does not run it again);
* the same start command sent again resumes from the checkpoint and finishes the whole range.

And the queue-manager's side: a load with standalone loaders cancelled mid-load sends ``stop`` for
its running tasks and writes their records ``interrupted``, with the records they produced.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from recording_simulator import RecordingSimulator

from streamforge_pipelines.intervals import count_open_times, day_range_ms
from streamforge_pipelines.protocol import (
    LOADER_CANDLES,
    LOADER_PRODUCER,
    Event,
    decode_record,
    format_time_range,
    make_queue_id,
)
from streamforge_pipelines.queue_manager import LoadRequest, load
from streamforge_pipelines.queue_manager.tasks import CANCELLED_MESSAGE
from streamforge_pipelines.queue_manager.telemetry import read_events
from streamforge_pipelines.store import store_from_settings
from streamforge_pipelines.workers import serve_loader
from streamforge_pipelines.workers.checkpoint import CheckpointStore
from streamforge_pipelines.workers.loader_producer import PONG

FIRST, LAST = date(2024, 7, 1), date(2024, 8, 9)  # 40 days of 1m: 57,600 candles, 58 windows


def _start(queue_id: str, symbol: str) -> dict[str, object]:
    return {
        "command": "start",
        "queue_id": queue_id,
        "target": LOADER_PRODUCER,
        "symbol": symbol,
        "type": "api_candles_1m",
        "time_range": format_time_range(FIRST, LAST),
        "source": "rest",
    }


def _control(command: str, queue_id: str) -> dict[str, object]:
    return {"command": command, "queue_id": queue_id, "target": LOADER_PRODUCER}


async def _until(what: str, probe: Callable[[], Awaitable[object]], timeout_s: float = 45.0) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


async def _candles_on_topic(bootstrap: str, topic: str, queue_id: str) -> int:
    """Candles of ``queue_id``'s pages on the data topic, read to its end (two empty fetches)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        n, empty = 0, 0
        while empty < 2:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            empty = 0 if any(batch.values()) else empty + 1
            for records in batch.values():
                for rec in records:
                    value = decode_record(rec.value or b"")
                    if value["record"] == "candles" and value["queue_id"] == queue_id:
                        n += len(value["docs"])
        return n
    finally:
        await consumer.stop()


@pytest.fixture
def simulator():
    with RecordingSimulator() as sim:
        yield sim


def test_stop_and_ping_reach_the_standalone_loader(make_settings, simulator: RecordingSimulator) -> None:
    settings = make_settings(partitions=2).model_copy(
        update={"exchange_url": simulator.server.base_url, "loader_concurrency": 1}
    )
    bootstrap = settings.kafka_bootstrap_servers or ""
    a = make_queue_id("BTCUSDT", "api_candles_1m", FIRST, uuid.uuid4().hex[:6])
    b = make_queue_id("ETHUSDT", "api_candles_1m", FIRST, uuid.uuid4().hex[:6])
    nobody = make_queue_id("SOLUSDT", "api_candles_1m", FIRST, uuid.uuid4().hex[:6])
    start, end = day_range_ms(FIRST, LAST)
    total = count_open_times(start, end, "1m")

    async def scenario() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        offset: dict[str, int] = {}

        async def send(command: dict[str, object]) -> None:
            meta = await producer.send_and_wait(settings.topic_control, orjson.dumps(command))
            offset[f"{command['command']}:{command['queue_id']}"] = meta.offset

        async def events(queue_id: str) -> list[Event]:
            got, _ = await read_events(bootstrap, settings.topic_events, {})
            return [e for e in got if e.queue_id == queue_id]

        async def one(queue_id: str, pick: Callable[[Event], bool]) -> Event | None:
            found = [e for e in await events(queue_id) if pick(e)]
            return found[-1] if found else None

        stop_worker = asyncio.Event()
        worker = asyncio.create_task(serve_loader(settings, parallel=1, stop=stop_worker))
        try:
            await send(_start(a, "BTCUSDT"))
            await send(_start(b, "ETHUSDT"))
            # A loads (two windows at least: its progress said so); B waits for the one slot.
            progress = lambda e: e.status == "loading" and e.records_written >= 2000  # noqa: E731
            await _until("A's progress", lambda: one(a, progress))
            await send(_control("ping", nobody))
            await send(_control("ping", b))
            await send(_control("ping", a))
            pong_a = await _until("A's pong", lambda: one(a, lambda e: e.message == PONG))
            assert pong_a.status == "loading" and pong_a.records_written >= 2000, pong_a
            pong_b = await one(b, lambda e: e.message == PONG)
            assert pong_b is not None and pong_b.status == "pending" and pong_b.records_written == 0
            assert await events(nobody) == []  # no replica holds it: no answer (A's pong came after)

            await send(_control("stop", b))
            ended_b = await _until("B interrupted", lambda: one(b, lambda e: e.status == "interrupted"))
            assert ended_b.records_written == 0
            assert [e.status for e in await events(b)] == ["pending", "interrupted"]  # never started

            await send(_control("stop", a))
            ended_a = await _until("A interrupted", lambda: one(a, lambda e: e.status == "interrupted"))
            stopped_at = ended_a.records_written
            assert 2000 <= stopped_at < total, (stopped_at, total)
            assert ended_a.component == LOADER_CANDLES and "stop" in (ended_a.message or "")
            # flushed before the report, nothing produced after it
            assert await _candles_on_topic(bootstrap, settings.topic_candles, a) == stopped_at
            assert not [e for e in await events(a) if e.status == "finished"]

            # The start of A is committed (a loader joining later does not run it), its checkpoint kept.
            async def committed() -> int:
                consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=settings.loader_group)
                await consumer.start()
                try:
                    return await consumer.committed(TopicPartition(settings.topic_control, 0)) or 0
                finally:
                    await consumer.stop()

            await _until("the stopped starts committed", lambda: _gt(committed, offset[f"stop:{a}"]))
            checkpoint = (await CheckpointStore.load(bootstrap, settings.topic_checkpoints)).get(a)
            assert checkpoint is not None and not checkpoint["complete"]
            assert 0 < checkpoint["records"] <= stopped_at

            # The same start again: resumed from the checkpoint, the whole range finished (at the
            # simulator's own speed: the stop was caught, nothing left to catch).
            simulator.latency_ms = 0
            await send(_start(a, "BTCUSDT"))
            done = await _until("A finished", lambda: one(a, lambda e: e.status == "finished"), 90)
            assert done.records_written == total
            started = [e for e in await events(a) if e.status == "started"]
            assert len(started) == 2 and "resumed from" in (started[1].message or ""), started
        finally:
            stop_worker.set()
            await asyncio.wait_for(worker, 30)
            await producer.stop()

    asyncio.run(scenario())


async def _gt(probe: Callable[[], Awaitable[int]], than: int) -> bool:
    return await probe() > than


def test_a_cancelled_external_load_stops_the_standalone_loader(
    make_settings, simulator: RecordingSimulator
) -> None:
    """The queue-manager's load with standalone loaders (``launch="external"``), cancelled mid-load
    (what a cancelled Dagster run does to its step's load): it sends ``stop`` for each running task,
    the loader reports ``interrupted``, and the task records say so with the records produced."""
    settings = make_settings(partitions=2).model_copy(
        update={"exchange_url": simulator.server.base_url, "loader_concurrency": 1}
    )
    bootstrap = settings.kafka_bootstrap_servers or ""
    request = LoadRequest(
        symbols=("BTCUSDT", "ETHUSDT"), interval="1m", first=FIRST, last=LAST, source="rest"
    )

    async def scenario() -> None:
        stop_worker = asyncio.Event()
        worker = asyncio.create_task(serve_loader(settings, parallel=4, stop=stop_worker))
        try:
            with store_from_settings(settings) as store:
                loading = asyncio.create_task(load(request, settings, store, launch="external"))

                async def both_loading() -> bool:
                    tasks = store.list_tasks()
                    return len(tasks) == 2 and all(t.status == "loading" for t in tasks)

                await _until("both tasks loading", both_loading)
                loading.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await loading
                tasks = store.list_tasks()
                assert {(t.status, t.message) for t in tasks} == {("interrupted", CANCELLED_MESSAGE)}, tasks
                stops = [
                    c for c in await _commands(bootstrap, settings.topic_control) if c["command"] == "stop"
                ]
                assert sorted(c["queue_id"] for c in stops) == sorted(t.queue_id for t in tasks)
                for t in tasks:  # the record has what the loader produced: flushed, nothing after
                    on_topic = await _candles_on_topic(bootstrap, settings.topic_candles, t.queue_id)
                    assert (
                        0 < t.records_written == on_topic < count_open_times(*day_range_ms(FIRST, LAST), "1m")
                    )
        finally:
            stop_worker.set()
            await asyncio.wait_for(worker, 30)

    asyncio.run(scenario())


async def _commands(bootstrap: str, topic: str) -> list[dict[str, object]]:
    """Every command on ``topic``, read to its end (two empty fetches)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        out, empty = [], 0
        while empty < 2:
            batch = await consumer.getmany(timeout_ms=500)
            empty = 0 if any(batch.values()) else empty + 1
            out.extend(orjson.loads(r.value or b"") for records in batch.values() for r in records)
        return out
    finally:
        await consumer.stop()
