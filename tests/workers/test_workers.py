"""Workers on the real broker and simulator: standalone loader on queue-control, SIGTERM, metrics, logs.

The days loaded are fixed (2023-2024), closed on any date, so the data under test never changes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from datetime import date

import orjson
import pytest
from polling import wait_for as _wait_for

from streamforge_pipelines.protocol import decode_event
from streamforge_pipelines.queue_manager import LoadRequest, load
from streamforge_pipelines.queue_manager.telemetry import read_events
from streamforge_pipelines.stack import Stack, free_port
from streamforge_pipelines.store import store_from_settings


def test_external_loader_worker_carries_out_commands(make_settings) -> None:
    """Steps that only send commands (launch="external"), a standalone `streamforge worker loader`."""
    settings = make_settings(partitions=2)
    with Stack(settings) as stack:
        live = stack.settings
        loader = stack._spawn("loader", ["worker", "loader"])
        try:
            request = LoadRequest(
                symbols=("DOTUSDT", "LINKUSDT"), interval="15m", first=date(2024, 8, 5), last=date(2024, 8, 6)
            )
            with store_from_settings(live) as db:
                report = asyncio.run(load(request, live, db, launch="external"))
            assert report.ok, report
            assert report.stored == 2 * 2 * 96
            assert all(s == "complete" for s in report.tasks.values())
        finally:
            loader.terminate()
            assert loader.wait(20) == 0


def test_malformed_command_is_rejected_with_one_line_log_and_worker_goes_on(make_settings) -> None:
    settings = make_settings(partitions=1)
    with Stack(settings) as stack:
        live = stack.settings
        loader = stack._spawn("loader", ["worker", "loader"])
        logfile = stack.procs["loader"][1]

        async def send_bad() -> None:
            from aiokafka import AIOKafkaProducer

            p = AIOKafkaProducer(bootstrap_servers=live.kafka_bootstrap_servers)
            await p.start()
            try:
                await p.send_and_wait(live.topic_control, b'{"command": "start", "queue_id": "q1"}')
            finally:
                await p.stop()

        asyncio.run(send_bad())
        line = _wait_for(
            lambda: next((ln for ln in logfile.read_text().splitlines() if "rejected command" in ln), None),
            30,
            "the loader to reject the command",
        )
        record = orjson.loads(line)
        assert record["level"] == "error"
        assert "command.target: required field is missing" in record["msg"]
        # ...and it still works afterwards.
        day = date(2024, 8, 6)
        request = LoadRequest(symbols=("LTCUSDT",), interval="1h", first=day, last=day)
        with store_from_settings(live) as db:
            report = asyncio.run(load(request, live, db, launch="external"))
        assert report.ok and report.stored == 24

        # A well-formed command no loader can carry out ends as an `error` event, not silence.
        async def send_unknown_type() -> None:
            from aiokafka import AIOKafkaProducer

            cmd = {
                "command": "start",
                "queue_id": "wf-ltcusdt-api_weird-20240801-abcdef",
                "target": "loader-producer",
                "symbol": "LTCUSDT",
                "type": "api_weird",
            }
            p = AIOKafkaProducer(bootstrap_servers=live.kafka_bootstrap_servers)
            await p.start()
            try:
                await p.send_and_wait(live.topic_control, orjson.dumps(cmd))
            finally:
                await p.stop()

        asyncio.run(send_unknown_type())

        def error_event():
            events, _ = asyncio.run(read_events(live.kafka_bootstrap_servers or "", live.topic_events, {}))
            return next((e for e in events if e.queue_id.endswith("abcdef") and e.status == "error"), None)

        # the validator refuses it (one line naming the field) and the loader reports that refusal
        event = _wait_for(error_event, 30, "an error event for the unknown task type", interval_s=0.3)
        assert event.error is not None and event.error.type == "CommandInvalid"
        assert event.error.detail.startswith("command.type: no loader for this type")
        assert event.error.detail.endswith("got 'api_weird'")
        loader.terminate()
        assert loader.wait(20) == 0


def test_sigterm_interrupts_a_running_task_and_reports_it(make_settings, tmp_path) -> None:
    settings = make_settings(partitions=1)
    with Stack(settings, connector=False) as stack:
        live = stack.settings
        env = {**os.environ, **live.to_env(), "LOADER_CONCURRENCY": "1"}
        # A 1m load of 400 days (2023-07-01 .. 2024-08-03: 576k candles) is long enough to be caught
        # mid-way.
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamforge_pipelines.cli",
                "worker",
                "loader",
                "--symbol",
                "BTCUSDT",
                "--interval",
                "1m",
                "--start",
                "2023-07-01",
                "--end",
                "2024-08-03",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

        def loading_seen() -> bool:
            events, _ = asyncio.run(read_events(live.kafka_bootstrap_servers or "", live.topic_events, {}))
            return any(e.status == "loading" for e in events)

        _wait_for(loading_seen, 60, "the loader to report loading", interval_s=0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        events, _ = asyncio.run(read_events(live.kafka_bootstrap_servers or "", live.topic_events, {}))
        statuses = [e.status for e in events]
        assert statuses[0] == "started" and statuses[-1] == "interrupted", statuses
        assert events[-1].records_written > 0
        assert proc.returncode == 143
        assert b"interrupted: task" in err
        assert b"Traceback" not in err


def test_connector_serves_metrics_and_json_logs(make_settings) -> None:
    settings = make_settings(partitions=1)
    with Stack(settings) as stack:
        live = stack.settings
        day = date(2024, 8, 6)
        request = LoadRequest(symbols=("TRXUSDT",), interval="1h", first=day, last=day)
        with store_from_settings(live) as db:
            report = asyncio.run(load(request, live, db))
        assert report.ok
        assert stack.connector_metrics_url is not None
        body = urllib.request.urlopen(stack.connector_metrics_url, timeout=5).read().decode()
        assert 'streamforge_records_total{outcome="stored",worker="arango-connector"} 24.0' in body
        assert 'streamforge_batches_total{worker="arango-connector"}' in body
        assert "streamforge_batch_seconds_bucket" in body
        assert "streamforge_errors_total" in body
        lines = stack.procs["connector"][1].read_text().splitlines()
    records = [orjson.loads(ln) for ln in lines if ln.startswith("{")]
    assert records and all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--start", "2024-13-01"], "expected a date YYYY-MM-DD, got '2024-13-01'"),
        (["run", "--interval", "7m"], "'7m' is not one of"),
        (["run", "--symbols", "BTC/USDT"], "expected comma-separated symbols"),
        (["run", "--start", "2024-08-05", "--end", "2024-08-01"], "is before --start"),
        (["validate-command", "-"], "command.target: required field is missing"),
        (
            [
                "worker",
                "loader",
                "--command",
                '{"command":"start","queue_id":"q","target":"t","time_range":"x"}',
            ],
            "command.time_range: expected YYYY-MM-DD:YYYY-MM-DD, got 'x'",
        ),
    ],
)
def test_cli_user_errors_are_one_line_no_traceback(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streamforge_pipelines.cli", *args],
        input=b'{"command": "start", "queue_id": "q"}',
        capture_output=True,
        timeout=60,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert message in err
    error_lines = [ln for ln in err.splitlines() if ln.lower().startswith("error")]
    assert len(error_lines) == 1, err


def test_event_decoding_of_loader_output_roundtrip() -> None:
    raw = orjson.dumps({"queue_id": "q", "producer": "loader-api-candles__abcdef", "status": "started"})
    assert decode_event(raw).component == "loader-api-candles"


def test_dummy_cli_kafka_ping_and_impersonate(make_settings) -> None:
    settings = make_settings(partitions=1)
    env = {**os.environ, **settings.to_env()}
    ping = subprocess.run(
        [sys.executable, "-m", "streamforge_pipelines.cli", "dummy", "kafka-ping", "--count", "3"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert ping.returncode == 0, ping.stderr.decode()[-2000:]
    report = orjson.loads(ping.stdout.decode().strip().splitlines()[-1])
    assert report["received"] == 3 and report["failures"] == 0
    fake = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamforge_pipelines.cli",
            "dummy",
            "impersonate",
            "error",
            "--queue-id",
            "wf-btcusdt-api_candles_5m-20240801-c0ffee",
            "--step-s",
            "0",
        ],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert fake.returncode == 0, fake.stderr.decode()[-2000:]
    events, _ = asyncio.run(read_events(settings.kafka_bootstrap_servers or "", settings.topic_events, {}))
    assert [e.status for e in events if e.queue_id.endswith("c0ffee")][-1] == "error"
