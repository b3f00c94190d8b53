"""dummy-service modes on the real broker: kafka-ping, load, impersonate, /health and /metrics, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamforge_pipelines.protocol import Event, decode_event, decode_record, make_queue_id
from streamforge_pipelines.queue_manager.telemetry import read_events
from streamforge_pipelines.queue_manager.tracking import COMPLETE, FAILED, TaskTracker
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.workers.dummy import (
    HealthServer,
    ModeStatus,
    impersonate_worker,
    kafka_ping,
    produce_load,
    serve_mode,
)
from streamforge_pipelines.workers.dummy.impersonate import split_records
from streamforge_pipelines.workers.dummy.ping import percentile

REPO = Path(__file__).resolve().parents[2]


async def _consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 15.0) -> list[bytes]:
    """Every value on ``topic`` from the beginning: waits (bounded) for ``expected``, then one more
    fetch to catch extras. Fails with how many arrived if they do not all arrive in time."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        parts = consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while len(values) < expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: {len(values)} of {expected} messages after {timeout_s}s")
            batch = await consumer.getmany(timeout_ms=200, max_records=50_000)
            values.extend(rec.value or b"" for recs in batch.values() for rec in recs)
        batch = await consumer.getmany(timeout_ms=300)
        values.extend(rec.value or b"" for recs in batch.values() for rec in recs)
        return values
    finally:
        await consumer.stop()


async def _events(bootstrap: str, topic: str, expected: int, timeout_s: float = 10.0) -> list[Event]:
    """``expected`` events of ``topic`` from the beginning (bounded polling)."""
    events: list[Event] = []
    offsets: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    while len(events) < expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{topic}: {len(events)} of {expected} events after {timeout_s}s")
        got, offsets = await read_events(bootstrap, topic, offsets, timeout_s=2.0)
        events.extend(got)
    return events


async def _poll(check: Callable[[], Awaitable[Any]], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


# ---- kafka-ping ----------------------------------------------------------------------------------


def test_kafka_ping_twenty_round_trips(make_settings) -> None:
    settings: Settings = make_settings(partitions=1)
    report = asyncio.run(kafka_ping(settings, count=20, timeout_s=5.0))
    assert report.failures == 0, report.as_dict()
    assert report.sent == report.received == 20
    assert len(report.latencies_ms) == 20
    stats = report.stats_ms()
    assert 0 < stats["min"] <= stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"] < 5000
    assert report.ok
    assert report.as_dict()["topic"] == settings.topic_control


def test_kafka_ping_counts_round_trips_over_the_timeout_as_failures(make_settings) -> None:
    settings: Settings = make_settings(partitions=1)
    report = asyncio.run(kafka_ping(settings, count=3, timeout_s=1e-6))
    assert report.failures == 3 and report.received == 0
    assert not report.ok
    assert report.stats_ms()["p50"] is None


def test_percentile_interpolates() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 100.0
    assert percentile(values, 50) == 50.5
    assert percentile([7.0], 99) == 7.0


# ---- load ----------------------------------------------------------------------------------------


def test_load_paced_candles_all_delivered_at_about_the_target_rate(make_settings) -> None:
    settings: Settings = make_settings(partitions=4)
    rate, expected = 2_000.0, 2_000  # about a second; the count, not the clock, ends the run
    report = asyncio.run(produce_load(settings, rate=rate, duration_s=10.0, count=expected, schema="candle"))
    assert report.errors == 0, report.as_dict()
    assert report.sent == report.acked == expected, report.as_dict()
    assert 0.7 * rate <= report.achieved_rate <= 1.3 * rate, report.as_dict()
    assert report.batches < expected  # batched, not one send per message

    values = asyncio.run(_consume_all(settings.kafka_bootstrap_servers or "", report.topic, expected))
    assert len(values) == expected, f"{len(values)} messages on {report.topic}, expected {expected}"
    docs = [decode_record(v) for v in values]  # every one a valid candle
    assert len({d["key"] for d in docs}) == expected
    assert {d["symbol"] for d in docs} == set(settings.universe)


def test_load_event_and_raw_schemas_unthrottled(make_settings) -> None:
    settings: Settings = make_settings(partitions=2)
    bootstrap = settings.kafka_bootstrap_servers or ""
    events = asyncio.run(produce_load(settings, rate=0, duration_s=10, count=3_000, schema="event"))
    assert events.ok and events.acked == 3_000 and events.topic == settings.topic_events
    decoded = [decode_event(v) for v in asyncio.run(_consume_all(bootstrap, events.topic, 3_000))]
    assert len(decoded) == 3_000 and len({e.event_id for e in decoded}) == 3_000
    assert {e.status for e in decoded} == {"loading"}

    raw_topic = f"{settings.topic_candles}.raw"
    raw = asyncio.run(
        produce_load(settings, rate=0, duration_s=10, count=2_500, schema="raw", size=64, topic=raw_topic)
    )
    assert raw.ok and raw.acked == 2_500
    values = asyncio.run(_consume_all(bootstrap, raw_topic, 2_500))
    assert len(values) == 2_500 and {len(v) for v in values} == {64}


# ---- impersonate ---------------------------------------------------------------------------------


def test_impersonated_events_fold_like_loader_events(make_settings) -> None:
    settings: Settings = make_settings(partitions=3)
    bootstrap = settings.kafka_bootstrap_servers or ""
    from datetime import date

    def qid(symbol: str) -> str:
        return make_queue_id(symbol, "api_candles_5m", date(2024, 8, 1))

    behaviours = {
        "progress": qid("BTCUSDT"),
        "finish": qid("ETHUSDT"),
        "error": qid("SOLUSDT"),
        "silent": qid("XRPUSDT"),
        "interrupt": qid("ADAUSDT"),
    }
    no_acks = qid("DOTUSDT")

    async def run_all() -> int:
        sent = 0
        for behaviour, queue_id in behaviours.items():
            report = await impersonate_worker(settings, behaviour, queue_id=queue_id, records=900)  # type: ignore[arg-type]
            assert report.queue_id == queue_id and report.producer.endswith(queue_id[-6:])
            sent += len(report.sent)
        report = await impersonate_worker(settings, "progress", queue_id=no_acks, connector_acks=False)
        return sent + len(report.sent)

    total = asyncio.run(run_all())
    events = asyncio.run(_events(bootstrap, settings.topic_events, total))
    assert len(events) == total
    tracker = TaskTracker()
    for event in events:
        tracker.apply(event)
    state = {b: tracker.tasks[q] for b, q in behaviours.items()}

    assert state["progress"].status == COMPLETE and state["progress"].complete
    assert state["progress"].loader_partitions == {0: 300, 1: 300, 2: 300}
    assert state["progress"].loaded == 900 and state["progress"].stored == 900
    assert state["finish"].status == COMPLETE
    assert state["error"].failed and state["error"].status == FAILED
    assert state["error"].error == "ExchangeUnavailable: dummy-service: simulated failure"
    # An interruption is no end: the task waits for a loader to resume it (or to be given up as stalled).
    interrupted = state["interrupt"]
    assert not interrupted.failed and not interrupted.done and interrupted.status == "interrupted"
    silent = state["silent"]
    assert not silent.complete and not silent.failed and silent.status == "loading"
    assert tracker.tasks[no_acks].status == "finished" and not tracker.tasks[no_acks].complete
    assert tracker.pending(behaviours.values()) == [behaviours["silent"], behaviours["interrupt"]]


def test_split_records_sums_to_total() -> None:
    parts = split_records(10, 4)
    assert [p.records for p in parts] == [3, 3, 2, 2]
    assert [p.partition for p in parts] == [0, 1, 2, 3]


# ---- /health, /metrics, SIGTERM -----------------------------------------------------------------


def test_health_and_metrics_answer_while_a_mode_runs(make_settings) -> None:
    settings: Settings = make_settings(partitions=1)

    async def scenario() -> None:
        stop = asyncio.Event()
        servers: list[HealthServer] = []

        async def silent(stop_: asyncio.Event, status: ModeStatus) -> Any:
            return await impersonate_worker(settings, "silent", hold_s=30.0, stop=stop_, status=status)

        before = time.monotonic()  # the server starts after this: its uptime cannot exceed ours
        task = asyncio.create_task(
            serve_mode("impersonate", silent, port=0, signals=False, stop=stop, on_ready=servers.append)
        )
        async with aiohttp.ClientSession() as http:

            async def health() -> dict[str, Any] | None:
                if not servers:
                    return None
                async with http.get(f"{servers[0].url}/health") as resp:
                    assert resp.status == 200
                    body = await resp.json()
                return body if body["status"] == "silent" else None

            body = await _poll(health, 10.0, "/health to report the silent phase")
            # seconds on the monotonic clock since the server started (rounded to ms), not since the epoch
            assert body["mode"] == "impersonate"
            assert 0 <= body["uptime_s"] <= round(time.monotonic() - before, 3) + 0.001, body
            assert body["counters"] == {"events_started": 1, "events_loading": 1}
            async with http.get(f"{servers[0].url}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                text = await resp.text()
            assert 'streamforge_records_total{outcome="impersonated_event",worker="dummy-service"}' in text
            stop.set()
            report = await asyncio.wait_for(task, 10.0)
            assert report.sent == ["started", "loading"]  # silent to the end: a vanished worker

    asyncio.run(scenario())


def test_load_process_serves_health_and_stops_cleanly_on_sigterm(make_settings, tmp_path) -> None:
    settings: Settings = make_settings(partitions=2)
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(REPO)}
    code = (
        "import sys\n"
        "from streamforge_pipelines.settings import Settings\n"
        "from streamforge_pipelines.workers.dummy.load import main\n"
        "sys.exit(main(Settings.from_env(), rate=1000, duration_s=60, schema='candle', port=0))\n"
    )
    log_path = tmp_path / "dummy.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=log_file
        )
    try:

        def health_url() -> str | None:
            for line in log_path.read_text().splitlines():
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if "health_url" in record:
                    return str(record["health_url"])
            return None

        async def scenario() -> None:
            url = await _poll(_as_async(health_url), 20.0, f"the health URL in {log_path}")
            async with aiohttp.ClientSession() as http:

                async def sending() -> dict[str, Any] | None:
                    async with http.get(url) as resp:
                        body = await resp.json()
                    return body if body["counters"].get("acked", 0) > 0 else None

                body = await _poll(sending, 20.0, "the load to send")
                assert body["mode"] == "load" and body["status"] == "running"
                async with http.get(url.replace("/health", "/metrics")) as resp:
                    text = await resp.text()
                assert 'streamforge_records_total{outcome="load",worker="dummy-service"}' in text

        asyncio.run(scenario())
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log_path.read_text()[-2000:]
    report = orjson.loads(out.decode().strip().splitlines()[-1])
    assert report["mode"] == "load" and report["ok"] is True
    assert report["sent"] == report["acked"] > 0 and report["errors"] == 0
    assert report["sent"] < 60_000  # stopped by SIGTERM, not by the end of its minute
    values = asyncio.run(
        _consume_all(settings.kafka_bootstrap_servers or "", report["topic"], report["sent"])
    )
    assert len(values) == report["sent"]


def _as_async(fn: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return fn()

    return call


def test_unknown_schema_and_behaviour_are_refused(make_settings) -> None:
    settings: Settings = make_settings(partitions=1)
    with pytest.raises(ValueError, match="unknown schema"):
        asyncio.run(produce_load(settings, schema="xml"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown behaviour"):
        asyncio.run(impersonate_worker(settings, "explode"))  # type: ignore[arg-type]
