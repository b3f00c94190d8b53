"""End to end through the real broker, simulator and connector processes, driven by Dagster.

command → loader → data topic → connector → store → queue-events → step → Dagster materialization
with metadata, then the sensor over the same telemetry.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streamforge_pipelines.definitions import defs
from streamforge_pipelines.intervals import day_range_ms
from streamforge_pipelines.queue_manager import LoadRequest
from streamforge_pipelines.runner import run_main_job
from streamforge_pipelines.sensors.queue_events import COVERAGE_JOB, process_tick
from streamforge_pipelines.store import store_from_settings
from streamforge_pipelines.tracking import COMPLETE
from streamforge_pipelines.workers.simulator.market import Market

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def _days_ago(n: int) -> date:
    return datetime.now(UTC).date() - timedelta(days=n)


def _simulator_truth(seed: int, request: LoadRequest) -> dict[tuple[str, str], int]:
    market = Market(seed)
    now = int(datetime.now(UTC).timestamp() * 1000)
    out = {}
    d = request.first
    while d <= request.last:
        start, end = day_range_ms(d, d)
        for s in request.symbols:
            out[(s, d.isoformat())] = market.count_klines(s, request.interval, start, end, now)
        d += timedelta(days=1)
    return out


def test_main_job_end_to_end(make_settings) -> None:
    settings = make_settings()
    request = LoadRequest(symbols=SYMBOLS, interval="5m", first=_days_ago(3), last=_days_ago(2))
    summary = run_main_job(settings, request)

    truth = _simulator_truth(settings.simulator_seed, request)
    assert {(d.symbol, d.day): d.stored for d in summary.days} == truth
    assert {(d.symbol, d.day): d.expected for d in summary.days} == truth
    assert summary.missing == 0 and summary.duplicate_keys == 0 and summary.ok
    assert summary.stored == 3 * 2 * 288
    # The exchange figures of `streamforge run --json`: the governor kept the loaders clear of limits.
    out = summary.to_json()
    assert (out["http_429"], out["http_418"]) == (0, 0)
    assert out["retries"] >= 0 and 0 < out["weight_budget_used"] <= 1

    # Dagster recorded the materialization of both partitions once, with the figures.
    instance = dg.DagsterInstance.get()
    records = instance.fetch_materializations(dg.AssetKey("candles_5m"), limit=10).records
    assert sorted(r.partition_key for r in records) == [request.first.isoformat(), request.last.isoformat()]
    meta = records[0].asset_materialization.metadata
    assert meta["stored_candles"].value == summary.stored
    assert meta["missing_candles"].value == 0
    assert meta["http_429"].value == 0 and meta["http_418"].value == 0
    assert records[0].run_id == summary.dagster_run_id

    # Task records are complete; the sensor folds the same telemetry and requests coverage once.
    with store_from_settings(settings) as db:
        tasks = db.list_tasks(run_id=summary.dagster_run_id)
        assert len(tasks) == 3 and {t.status for t in tasks} == {COMPLETE}
        assert all(t.records_written == 2 * 288 for t in tasks)
    # The sensor as the daemon runs it: resources from the definitions, settings from the environment.
    sensor = defs.resolve_sensor_def("queue_events_sensor")
    ctx = dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs)
    data = sensor.evaluate_tick(ctx)
    assert [r.job_name for r in data.run_requests or []] == [COVERAGE_JOB]
    (req,) = data.run_requests or []
    assert req.tags["dagster/asset_partition_range_start"] == request.first.isoformat()
    assert req.tags["dagster/asset_partition_range_end"] == request.last.isoformat()
    assert req.run_key == f"coverage:{summary.dagster_run_id}:5m"
    with store_from_settings(settings) as db:
        again, _, counts = process_tick(settings, db, data.cursor)
    assert counts["events"] == 0 and again == []

    # The requested coverage run materializes the downstream asset with the same figures.
    result = defs.resolve_job_def(COVERAGE_JOB).execute_in_process(
        instance=instance, run_config=req.run_config, tags=req.tags
    )
    assert result.success
    (cov,) = instance.fetch_materializations(dg.AssetKey("candle_coverage"), limit=5).records[:1]
    assert cov.asset_materialization.metadata["stored_candles"].value == summary.stored
    assert cov.asset_materialization.metadata["missing_candles"].value == 0


def test_rerun_idempotent_and_overlap_adds_only_new(make_settings) -> None:
    settings = make_settings()
    first = LoadRequest(symbols=("BNBUSDT",), interval="1h", first=_days_ago(4), last=_days_ago(3))
    s1 = run_main_job(settings, first)
    s2 = run_main_job(settings, first)
    assert s1.ok and s2.ok and s1.stored == s2.stored == 48
    wider = LoadRequest(symbols=("BNBUSDT",), interval="1h", first=_days_ago(4), last=_days_ago(2))
    s3 = run_main_job(settings, wider)
    assert s3.ok and s3.stored == 72
    with store_from_settings(settings) as db:
        start, end = day_range_ms(wider.first, wider.last)
        assert db.count_candles("BNBUSDT", "1h", start, end) == 72
        assert db.duplicate_candle_keys(["BNBUSDT"], "1h", start, end) == 0


def test_malformed_record_goes_to_dead_letter_and_load_completes(make_settings) -> None:
    settings = make_settings(partitions=2)
    bad = [b"{not json", orjson.dumps({"record": "candle", "symbol": "BTCUSDT", "interval": "1h"})]

    async def put_bad() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            for value in bad:
                await producer.send_and_wait(settings.topic_candles, value, key=b"BTCUSDT")
        finally:
            await producer.stop()

    asyncio.run(put_bad())
    request = LoadRequest(symbols=("BTCUSDT",), interval="1h", first=_days_ago(2), last=_days_ago(2))
    summary = run_main_job(settings, request)
    assert summary.ok and summary.stored == 24

    async def read_dlq() -> list[dict]:
        consumer = AIOKafkaConsumer(
            settings.dlq_topic(settings.topic_candles),
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            out: list[dict] = []
            for _ in range(50):
                batch = await consumer.getmany(timeout_ms=200)
                out += [orjson.loads(r.value) for rs in batch.values() for r in rs]
                if len(out) >= 2:
                    break
            return out
        finally:
            await consumer.stop()

    dead = asyncio.run(read_dlq())
    assert len(dead) == 2, dead
    reasons = sorted(d["reason"] for d in dead)
    assert reasons[0].startswith("candle.open_time: required field is missing") or "candle." in reasons[0]
    assert any(r.startswith("record: not valid JSON") for r in reasons)
    assert {d["value"] for d in dead} == {v.decode() for v in bad}


def test_unknown_symbol_fails_the_step_with_the_exchange_error(make_settings) -> None:
    settings = make_settings(task_stall_s=30.0)
    request = LoadRequest(symbols=("NOPEUSDT",), interval="1h", first=_days_ago(2), last=_days_ago(2))
    summary = run_main_job(settings, request)
    assert not summary.ok and not summary.dagster_success
    with store_from_settings(settings) as db:
        (task,) = db.list_tasks(run_id=summary.dagster_run_id)
    assert task.status == "failed"
    assert task.error is not None and "-1121" in task.error and "Invalid symbol" in task.error


@pytest.mark.parametrize("interval", ["1d"])
def test_other_intervals(make_settings, interval: str) -> None:
    settings = make_settings(partitions=1)
    request = LoadRequest(
        symbols=("XRPUSDT", "ADAUSDT"), interval=interval, first=_days_ago(5), last=_days_ago(2)
    )
    summary = run_main_job(settings, request)
    assert summary.ok and summary.stored == 2 * 4
