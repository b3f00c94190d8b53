"""The ``live_streams`` job and the ``streams_sensor`` with a real stream worker, broker and simulator.

The job records the desired state, sends the command and returns once the worker answered; the sensor
shows the stream on its asset (a runless materialization when records landed) and evaluates the
asset's ``fresh`` check; a stop ends the task and the worker exits cleanly. A user's mistake fails the
run with one line, and a start no worker answers fails after the bounded wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dagster as dg
import pytest
from live_env import SYMBOLS, stream_worker_thread, threaded_simulator

from streamforge_pipelines.definitions import build_definitions
from streamforge_pipelines.names import FRESH_CHECK, LIVE_AGG_TRADES, LIVE_STREAMS_JOB, LIVE_STREAMS_OP
from streamforge_pipelines.queue_manager.stream_watch import STREAMING
from streamforge_pipelines.queue_manager.streams import RUNNING, STOPPED, WantedStream
from streamforge_pipelines.resources import resources_for
from streamforge_pipelines.sensors.streams import StreamsTick, streams_tick
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.store import store_from_settings

QUEUE_ID = "live-ws_agg_trades-spot"
#: Bound on the sensor seeing what the worker reported.
SEEN_WITHIN_S = 30.0


def _run_config(**config: Any) -> dict[str, Any]:
    return {"ops": {LIVE_STREAMS_OP: {"config": config}}}


def _launch(settings: Settings, instance: dg.DagsterInstance, **config: Any) -> dg.ExecuteInProcessResult:
    job = build_definitions(resources_for(settings)).resolve_job_def(LIVE_STREAMS_JOB)
    return job.execute_in_process(run_config=_run_config(**config), instance=instance, raise_on_error=False)


def _failure(result: dg.ExecuteInProcessResult) -> str:
    """The description the run's failure shows in the UI (the ``dg.Failure``'s)."""
    event = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return str(event.event_specific_data.user_failure_data.description)  # type: ignore[union-attr]


def _tick_until(
    settings: Settings,
    instance: dg.DagsterInstance,
    cursor: str | None,
    done: Callable[[StreamsTick], bool],
) -> tuple[StreamsTick, str]:
    """Sensor ticks (the real sensor's body) until ``done``; the last tick and its cursor."""
    deadline = time.monotonic() + SEEN_WITHIN_S
    while True:
        with store_from_settings(settings) as db:
            tick = streams_tick(instance, settings, db, cursor)
        cursor = tick.cursor
        if done(tick):
            return tick, cursor
        assert time.monotonic() < deadline, f"the sensor did not get there: {tick.info} {tick.warnings}"
        time.sleep(0.5)


def test_the_job_starts_and_stops_a_stream_the_sensor_shows(make_settings: Callable[..., Settings]) -> None:
    with threaded_simulator() as (sim, _clock), dg.instance_for_test() as instance:
        settings = make_settings(
            partitions=1, exchange_url=sim.base_url, live_heartbeat_s=1.0, live_flush_ms=20
        )
        with stream_worker_thread(settings):
            started = _launch(settings, instance, type="ws_agg_trades", symbols=[s.lower() for s in SYMBOLS])
            assert started.success, _failure(started)
            with store_from_settings(settings) as db:
                record = db.get_task(QUEUE_ID)
                assert record is not None and record.status == RUNNING and record.run_id == started.run_id
                wanted = WantedStream.of(record)
                assert wanted is not None and wanted.symbols == tuple(SYMBOLS) and wanted.start is not None
                assert wanted.start.type == "ws_agg_trades" and wanted.market == "spot"

            def landed(tick: StreamsTick) -> bool:
                return any(isinstance(e, dg.AssetMaterialization) for e in tick.events)

            tick, cursor = _tick_until(settings, instance, None, landed)
            (view,) = tick.views
            assert view.state == STREAMING and view.new_records > 0
            (mat,) = [e for e in tick.events if isinstance(e, dg.AssetMaterialization)]
            assert mat.asset_key == dg.AssetKey(LIVE_AGG_TRADES)
            assert mat.metadata["new_records"].value == view.new_records
            (check,) = [e for e in tick.events if isinstance(e, dg.AssetCheckEvaluation)]
            assert check.check_name == FRESH_CHECK and check.passed, check.description
            assert any(
                line.startswith(f"{QUEUE_ID} (ws_agg_trades spot, 2 symbols): streaming")
                for line in tick.info
            )

            stopped = _launch(settings, instance, action="stop", queue_id=QUEUE_ID)  # its type is on record
            assert stopped.success, _failure(stopped)
            logs = [e.user_message for e in instance.all_logs(stopped.run_id)]
            assert any(m.startswith(f"{QUEUE_ID} finished on loader-ws-trades__") for m in logs), logs
            with store_from_settings(settings) as db:
                record = db.get_task(QUEUE_ID)
                assert record is not None and record.status == STOPPED and record.symbol == ",".join(SYMBOLS)
                assert WantedStream.of(record).start == wanted.start  # type: ignore[union-attr]
            # the sensor reports the asset's check once more (nothing wanted), then leaves it alone
            after, cursor = _tick_until(settings, instance, cursor, lambda t: True)
            (final,) = [e for e in after.events if isinstance(e, dg.AssetCheckEvaluation)]
            assert final.passed and final.description == "no stream of this dataset is wanted"
            again, _ = _tick_until(settings, instance, cursor, lambda t: True)
            assert again.events == [] and again.sent == []
        # the worker thread ended without an exception (stream_worker_thread re-raises one)


def test_mistakes_fail_the_run_with_one_line(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(partitions=1, exchange_url="http://127.0.0.1:9", live_heartbeat_s=1.0)
    with dg.instance_for_test() as instance:
        bad_type = _launch(settings, instance, type="ws_candles_7m")
        assert not bad_type.success
        assert _failure(bad_type).startswith("live_streams: ")
        assert "ws_candles_7m" in _failure(bad_type) and "\n" not in _failure(bad_type).strip()

        bad_symbol = _launch(settings, instance, type="ws_agg_trades", symbols=["BTC-USDT"])
        assert not bad_symbol.success and "symbols[0]" in _failure(bad_symbol)

        usdm_trades = _launch(settings, instance, type="ws_agg_trades", market="usdm")
        assert not usdm_trades.success and "spot trades only" in _failure(usdm_trades)
        with store_from_settings(settings) as db:
            assert db.list_tasks() == []  # nothing recorded for a refused request

        # no stream worker: the run fails after its wait, the stream stays wanted
        lonely = _launch(settings, instance, type="ws_orderbook", symbols=["BTCUSDT"], wait_s=1.5)
        assert not lonely.success
        line = _failure(lonely)
        assert line.startswith("no stream worker answered the start of live-ws_orderbook-spot within 2s")
        with store_from_settings(settings) as db:
            assert db.get_task("live-ws_orderbook-spot").status == RUNNING  # type: ignore[union-attr]


@pytest.mark.parametrize("action", ["start", "stop"])
def test_no_broker_is_one_line(action: str, tmp_path, restore_environ) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path)
    with dg.instance_for_test() as instance:
        result = _launch(settings, instance, action=action, type="ws_trades")
    assert not result.success
    assert _failure(result) == "live_streams: KAFKA_BOOTSTRAP_SERVERS is not set: no queue-control"
