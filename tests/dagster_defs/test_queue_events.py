"""queue_events_sensor: it reads task records and ``queue-events`` and never writes a task record;
it reports tasks that went silent (once each) and requests the coverage run of a complete load."""

from __future__ import annotations

import asyncio
from datetime import date

from aiokafka import AIOKafkaProducer

from streamforge_pipelines.names import COVERAGE_JOB, PARTITION_RANGE_END, PARTITION_RANGE_START
from streamforge_pipelines.protocol import Event, format_time_range, make_queue_id
from streamforge_pipelines.sensors.queue_events import process_tick
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.store import TaskRecord, store_from_settings

DAY = date(2024, 8, 1)
T0 = 1_900_000_000.0  # the records' last update (epoch seconds); the ticks below are judged against it
STALL_S = 30.0
LOADER = "loader-api-candles__a1b2c3"


def _record(symbol: str, status: str, run_id: str) -> TaskRecord:
    return TaskRecord(
        queue_id=make_queue_id(symbol, "api_candles_5m", DAY),
        symbol=symbol,
        type="api_candles_5m",
        time_range=format_time_range(DAY, DAY),
        status=status,
        run_id=run_id,
        partition_key=DAY.isoformat(),
        records_written=100,
        created_at=T0 - 60,
        updated_at=T0,
    )


async def _publish(settings: Settings, events: list[Event]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(settings.topic_events, e.encode(), key=e.queue_id.encode())
    finally:
        await producer.stop()


def test_the_sensor_reads_records_and_events_and_writes_none(make_settings) -> None:
    settings: Settings = make_settings(partitions=1, task_stall_s=STALL_S)
    done = [_record(s, "complete", "run-done") for s in ("BTCUSDT", "ETHUSDT")]
    quiet = _record("SOLUSDT", "loading", "run-busy")  # its worker vanished
    alive = _record("XRPUSDT", "loading", "run-busy")  # its loader keeps reporting
    over = _record("ADAUSDT", "failed", "run-busy")  # final: never silent
    records = [*done, quiet, alive, over]
    with store_from_settings(settings) as db:
        for r in records:
            db.put_task(r)
        before = {r.queue_id: r.to_dict() for r in db.list_tasks()}
    # The loader of `alive` reported 20 s after the records' last update (its status did not change,
    # so the step wrote nothing); an event of a task this store does not know is read and ignored.
    progress = Event(
        queue_id=alive.queue_id, producer=LOADER, status="loading", records_written=150, timestamp=T0 + 20
    )
    stranger = Event(
        queue_id=make_queue_id("DOTUSDT", "api_candles_5m", DAY),
        producer=LOADER,
        status="error",
        timestamp=T0 + 20,
    )
    asyncio.run(_publish(settings, [progress, stranger]))

    with store_from_settings(settings) as db:
        # Before the stall time nothing is silent; the complete run's coverage is requested.
        # (the instance's symbol partitions: the run's two symbols are neighbours, one coverage run)
        order = ["ADAUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT"]
        first = process_tick(settings, db, None, symbol_order=order, now=T0 + STALL_S - 1)
        assert first.events == 2 and first.silent == {} and first.newly_silent == []
        (req,) = first.requests
        assert req.job_name == COVERAGE_JOB and req.run_key == "coverage:run-done:5m"
        assert req.tags[PARTITION_RANGE_START] == f"{DAY}|BTCUSDT"
        assert req.tags[PARTITION_RANGE_END] == f"{DAY}|ETHUSDT"
        assert req.run_config["ops"]["candle_coverage"]["config"] == {"interval": "5m"}

        # Past the stall time: `quiet` is silent; `alive` is not (its event is newer than its record,
        # and the cursor remembers it although no new event came); the final task never is.
        second = process_tick(settings, db, first.cursor, symbol_order=order, now=T0 + STALL_S + 5)
        assert second.events == 0 and second.requests == []  # each coverage run requested once
        assert list(second.silent) == second.newly_silent == [quiet.queue_id]
        assert "SOLUSDT api_candles_5m loading: no telemetry for 35s" in second.silent[quiet.queue_id]

        # Still silent on the next tick, but reported once; `alive` goes silent 30 s after its event.
        third = process_tick(settings, db, second.cursor, symbol_order=order, now=T0 + 20 + STALL_S + 1)
        assert sorted(third.silent) == sorted([quiet.queue_id, alive.queue_id])
        assert third.newly_silent == [alive.queue_id]

        # No tick wrote a task record: the step is their one writer.
        assert {r.queue_id: r.to_dict() for r in db.list_tasks()} == before
