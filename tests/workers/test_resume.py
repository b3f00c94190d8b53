"""Resume after a crash: checkpoints on Kafka, a loader killed with SIGKILL continues where it was.

* :class:`CheckpointStore` round trip on the real broker (latest wins, tombstones, incremental
  refresh, a missing topic reads as empty);
* in-process: a task resumed from each of the checkpoints a first run wrote produces exactly the
  candles after the checkpoint and reports the whole task's totals (archive and REST sources);
* end to end: the standalone loader (``streamforge worker loader``, a subprocess) serving
  ``queue-control``, killed with SIGKILL mid-task and restarted, fetches only the windows after its
  checkpoint; every candle of the range is on the topic, ``finished`` reports the whole range and
  the connector's marker acks make the task complete.

The days are fixed (2024); the windows a loader must fetch are computed here by hand: a REST task
asks for its range in consecutive windows of 1000 one-minute candles from its first open time (the
spot klines page limit), so the windows after a checkpoint start at ``done_until_ms`` and every
1000 minutes from there.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from polling import wait_for as _wait_for
from recording_simulator import RecordingSimulator

from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.intervals import count_open_times, day_range_ms
from streamforge_pipelines.kafka import ensure_topics_sync
from streamforge_pipelines.protocol import (
    LOADER_CANDLES,
    LOADER_PRODUCER,
    Event,
    decode_command,
    decode_record,
    format_time_range,
    make_queue_id,
)
from streamforge_pipelines.queue_manager.telemetry import read_events
from streamforge_pipelines.queue_manager.tracking import TaskTracker
from streamforge_pipelines.simulator import SimulatorServer
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.workers import loader_candles, run_task
from streamforge_pipelines.workers.checkpoint import CheckpointStore

SEED = 42
MINUTE_MS = 60_000
#: Candles per REST window (Binance's spot klines limit).
PAGE = 1000
WINDOW_MS = PAGE * MINUTE_MS


def _window_starts(start: int, end: int) -> list[int]:
    """Open time of the first candle of each 1m REST window covering ``[start, end)``."""
    return list(range(start, end, WINDOW_MS))


def _checkpoint_topic(bootstrap: str) -> str:
    topic = f"sf.checkpoints.v1.{uuid.uuid4().hex[:10]}"
    ensure_topics_sync(bootstrap, {topic: 1}, configs={topic: {"cleanup.policy": "compact"}})
    return topic


async def _read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` (all partitions), read until a fetch comes back empty."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, f"topic {topic} does not exist"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            if not any(batch.values()):
                return out
            for records in batch.values():
                out.extend(records)
        raise AssertionError(f"{topic} not read to its end within 60s")
    finally:
        await consumer.stop()


def _candle_open_times(records: list[Any], queue_id: str) -> list[int]:
    """Open times of the candles of ``queue_id``'s pages, in topic order (duplicates kept)."""
    out: list[int] = []
    for rec in records:
        value = decode_record(rec.value)
        if value["record"] == "candles" and value["queue_id"] == queue_id:
            out.extend(doc["open_time"] for doc in value["docs"])
    return out


# ---- CheckpointStore -----------------------------------------------------------------------------


def test_checkpoint_store_round_trip_latest_wins(kafka_bootstrap: str) -> None:
    topic = _checkpoint_topic(kafka_bootstrap)

    async def scenario() -> None:
        missing = await CheckpointStore.load(kafka_bootstrap, f"sf.checkpoints.absent.{uuid.uuid4().hex}")
        assert len(missing) == 0
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            writer = await CheckpointStore.load(kafka_bootstrap, topic)
            assert len(writer) == 0
            futures = [await writer.put(producer, "task-a", {"done_until_ms": n}) for n in (10, 20, 30)]
            futures.append(await writer.put(producer, "task-b", {"done_until_ms": 5, "nested": {"x": [1]}}))
            futures.append(await writer.put(producer, "task-c", {"done_until_ms": 7}))
            await asyncio.gather(*futures)
            await writer.delete(producer, "task-c")

            reader = await CheckpointStore.load(kafka_bootstrap, topic)
            assert sorted(reader) == ["task-a", "task-b"]
            a = reader.get("task-a")
            assert a is not None and a["done_until_ms"] == 30 and isinstance(a["written_at"], float)
            assert reader.get("task-b") == {**(writer.get("task-b") or {}), "nested": {"x": [1]}}
            assert reader.get("task-c") is None and "task-c" not in reader

            # refresh reads only what came since; another process's newer checkpoint is seen...
            await (await writer.put(producer, "task-a", {"done_until_ms": 40}))
            await producer.send_and_wait(topic, b"not json", key=b"task-x")  # ...a bad one skipped
            assert await reader.refresh() == 2
            assert (reader.get("task-a") or {})["done_until_ms"] == 40 and "task-x" not in reader
            assert await reader.refresh() == 0
            # ...but a key this store wrote itself keeps its own (newer) value.
            await (await reader.put(producer, "task-b", {"done_until_ms": 50}))
            await (await writer.put(producer, "task-b", {"done_until_ms": 6}))
            await reader.refresh()
            assert (reader.get("task-b") or {})["done_until_ms"] == 50
        finally:
            await producer.stop()

    asyncio.run(scenario())


# ---- in-process: resume from every checkpoint of a first run --------------------------------------


@pytest.mark.parametrize(("source", "days"), [("archive", 4), ("rest", 3)])
def test_resumed_task_produces_only_what_follows_its_checkpoint(
    make_settings, monkeypatch: pytest.MonkeyPatch, source: str, days: int
) -> None:
    monkeypatch.setattr(loader_candles, "CHECKPOINT_EVERY_S", 0.0)  # a checkpoint after every job
    settings = make_settings(partitions=2)
    bootstrap = settings.kafka_bootstrap_servers or ""
    topic = _checkpoint_topic(bootstrap)
    first = date(2024, 8, 1)
    last = first + timedelta(days=days - 1)
    start, end = day_range_ms(first, last)
    total = count_open_times(start, end, "1m")

    def command(queue_id: str):
        return decode_command(
            {
                "command": "start",
                "queue_id": queue_id,
                "target": LOADER_PRODUCER,
                "symbol": "ETHUSDT",
                "type": "api_candles_1m",
                "time_range": format_time_range(first, last),
                "source": source,
            }
        )

    async def scenario() -> None:
        async with SimulatorServer(seed=SEED) as sim:
            live = settings.model_copy(update={"exchange_url": sim.base_url, "loader_concurrency": 2})
            store = await CheckpointStore.load(bootstrap, topic)
            qid = make_queue_id("ETHUSDT", "api_candles_1m", first)
            full = await run_task(command(qid), live, checkpoints=store)
            assert full.records == total
            history = [orjson.loads(r.value) for r in await _read_topic(bootstrap, topic)]
            assert [h["done_until_ms"] for h in history] == sorted(h["done_until_ms"] for h in history)
            assert history[-1]["complete"] and history[-1]["done_until_ms"] == end
            middle = [h for h in history if start < h["done_until_ms"] < end]
            assert len(middle) >= days - 1, history
            if source == "archive":  # and one inside a day: that day's file again, from there on
                cut = start + (24 + 10) * 60 * MINUTE_MS
                (p,) = full.partitions
                n = count_open_times(start, cut, "1m")
                middle.append(
                    {
                        **middle[0],
                        "done_until_ms": cut,
                        "records": n,
                        "pages": 3,
                        "partitions": {str(p): n},
                        "days_by_source": {"archive": 1, "rest": 0},
                    }
                )
            for cp in middle:
                # the same task (its queue_id) resumed by a fresh process holding only this checkpoint
                qid2 = make_queue_id("ETHUSDT", "api_candles_1m", first)
                cp2 = {**cp, "queue_id": qid2}
                resumed_store = CheckpointStore(bootstrap, topic, {qid2: cp2})
                got = await run_task(command(qid2), live, checkpoints=resumed_store)
                assert got.records == total and got.partitions == full.partitions
                assert got.days_by_source == full.days_by_source
                produced = _candle_open_times(await _read_topic(bootstrap, live.topic_candles), qid2)
                assert produced and min(produced) == cp["done_until_ms"], (cp, produced[:3])
                assert len(produced) == len(set(produced)) == total - cp["records"]
                # REST: one request per window after the checkpoint; the archive needs none
                remaining = len(_window_starts(cp["done_until_ms"], end))
                assert got.requests == (remaining if source == "rest" else 0)

    asyncio.run(scenario())


# ---- end to end: SIGKILL and restart of the standalone loader ------------------------------------


def _events(live) -> list[Event]:
    events, _ = asyncio.run(read_events(live.kafka_bootstrap_servers or "", live.topic_events, {}))
    return events


@pytest.fixture
def recording_simulator() -> Iterator[RecordingSimulator]:
    """150 ms per klines request (every open time has a candle: checked on entry)."""
    with RecordingSimulator(latency_ms=150) as sim:
        yield sim


def test_loader_killed_with_sigkill_resumes_from_its_checkpoint(
    make_settings, recording_simulator: RecordingSimulator
) -> None:
    sim = recording_simulator
    settings = make_settings(partitions=2)
    bootstrap = settings.kafka_bootstrap_servers or ""
    cp_topic = _checkpoint_topic(bootstrap)
    settings = settings.model_copy(
        update={"exchange_url": sim.server.base_url, "topic_checkpoints": cp_topic}
    )
    first, last = date(2024, 7, 1), date(2024, 8, 9)  # 40 days of 1m: 57,600 candles
    start, end = day_range_ms(first, last)
    total = count_open_times(start, end, "1m")
    assert total == 40 * 1440
    windows = _window_starts(start, end)
    assert len(windows) == 58  # ceil(57,600 / 1000)
    queue_id = make_queue_id("BTCUSDT", "api_candles_1m", first)
    command = {
        "command": "start",
        "queue_id": queue_id,
        "target": LOADER_PRODUCER,
        "symbol": "BTCUSDT",
        "type": "api_candles_1m",
        "time_range": format_time_range(first, last),
        "source": "rest",
    }

    with Stack(settings) as stack:  # the broker and simulator given: starts the connector only
        live = stack.settings

        def spawn(name: str) -> subprocess.Popen[bytes]:
            return stack._spawn(name, ["worker", "loader"], {"LOADER_CONCURRENCY": "1"})

        async def publish() -> None:
            p = AIOKafkaProducer(bootstrap_servers=bootstrap)
            await p.start()
            try:
                await p.send_and_wait(live.topic_control, orjson.dumps(command))
            finally:
                await p.stop()

        loader = spawn("loader-1")
        asyncio.run(publish())

        def checkpoint_in_the_middle() -> dict[str, Any] | None:
            store = asyncio.run(CheckpointStore.load(bootstrap, cp_topic, poll_ms=200))
            cp = store.get(queue_id)
            return cp if cp is not None and cp["done_until_ms"] >= windows[8] else None

        seen = _wait_for(checkpoint_in_the_middle, 90, "a checkpoint 8 windows into the task")
        loader.send_signal(signal.SIGKILL)
        assert loader.wait(20) == -signal.SIGKILL
        # The dead loader's last requests may still be in the simulator: let them end, then mark.
        _wait_for(lambda: sim.active == 0, 10, "the killed loader's requests to end", interval_s=0.05)
        run1 = sim.klines_starts()
        cp = asyncio.run(CheckpointStore.load(bootstrap, cp_topic)).get(queue_id)
        assert cp is not None and cp["done_until_ms"] >= seen["done_until_ms"]
        done_until = cp["done_until_ms"]
        assert done_until < end, f"the first run finished before it was killed ({len(run1)} requests)"
        assert not cp["complete"] and cp["records"] == count_open_times(start, done_until, "1m")
        assert not any(e.status in ("finished", "interrupted", "error") for e in _events(live))

        sim.latency_ms = 0  # caught mid-task: the rest runs at the simulator's own speed
        loader = spawn("loader-2")  # same consumer group: gets the uncommitted command again
        try:

            def finished() -> Event | None:
                ends = [e for e in _events(live) if e.component == LOADER_CANDLES and e.status == "finished"]
                return ends[0] if ends else None

            done = _wait_for(finished, 180, "the restarted loader's finished event", interval_s=0.5)

            def checkpoint_deleted() -> bool:  # the command's offset is committed: it is never re-run
                store = asyncio.run(CheckpointStore.load(bootstrap, cp_topic, poll_ms=200))
                return store.get(queue_id) is None

            _wait_for(checkpoint_deleted, 30, "the finished task's checkpoint to be deleted")
        finally:
            loader.terminate()
            assert loader.wait(20) == 0

        # Run 2 fetched exactly the windows after the checkpoint, none before it.
        run2 = sim.klines_starts()[len(run1) :]
        after = _window_starts(done_until, end)
        assert sorted(run2) == after, (done_until, run2)
        assert len(run1) + len(run2) < len(windows) + 8  # not everything twice
        started = [e for e in _events(live) if e.component == LOADER_CANDLES and e.status == "started"]
        assert len(started) == 2 and "resumed from" in (started[1].message or ""), started

        # Every candle of the range is on the topic; the totals are the whole range's.
        assert done.records_written == total
        assert done.days_by_source == {"archive": 0, "rest": 40}
        assert done.partitions is not None and sum(p.records for p in done.partitions) == total
        produced = _candle_open_times(asyncio.run(_read_topic(bootstrap, live.topic_candles)), queue_id)
        assert set(produced) == set(range(start, end, MINUTE_MS))
        assert len(produced) - total < 8 * PAGE  # duplicates: only what followed the checkpoint

        # The connector acknowledged the markers: the task is complete, and every candle is stored.
        def complete() -> bool:
            tracker = TaskTracker()
            for event in _events(live):
                tracker.apply(event)
            return tracker.tasks[queue_id].complete

        _wait_for(complete, 60, "the connector to acknowledge the end markers", interval_s=0.5)
        from streamforge_pipelines.store import store_from_settings

        with store_from_settings(live) as db:
            assert db.count(CANDLES, ("BTCUSDT", "1m"), start, end) == total
