"""The composition root loads, and its schedule, partitions and sensor behave as documented."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from streamforge_pipelines import names
from streamforge_pipelines.definitions import defs
from streamforge_pipelines.names import (
    AGG_TRADES,
    AGG_TRADES_JOB,
    CANDLE_COVERAGE,
    COMPLETE_CHECK,
    CORRELATION_GRAPH,
    COVERAGE_JOB,
    DAILY_CANDLES_SCHEDULE,
    GNN_JOB,
    GNN_MODEL,
    GRAPH_JOB,
    PARTITION_RANGE_END,
    PARTITION_RANGE_START,
    SYMBOLS_SENSOR,
    WEEKLY_GNN_SCHEDULE,
    candles_asset,
    candles_job,
)
from streamforge_pipelines.partitions import CANDLE_INTERVALS, DAILY
from streamforge_pipelines.sensors.queue_events import queue_events_sensor


def test_names_are_the_published_ones() -> None:
    """Asset keys, job, group, check and schedule names are what the UI, saved run configs, launched
    runs and users' scripts know: names.py defines them once, and here they are pinned."""
    assert [candles_asset(i) for i in ("1m", "5m")] == ["candles_1m", "candles_5m"]
    assert candles_job("5m") == "candles_5m_job"
    assert (AGG_TRADES, CANDLE_COVERAGE, CORRELATION_GRAPH, GNN_MODEL) == (
        "agg_trades",
        "candle_coverage",
        "correlation_graph",
        "gnn_model",
    )
    assert (AGG_TRADES_JOB, COVERAGE_JOB, GRAPH_JOB, GNN_JOB) == (
        "agg_trades_job",
        "candle_coverage_job",
        "correlation_graph_job",
        "gnn_model_job",
    )
    assert (names.MARKET_DATA_GROUP, names.ANALYTICS_GROUP, COMPLETE_CHECK) == (
        "market_data",
        "analytics",
        "complete",
    )
    assert (DAILY_CANDLES_SCHEDULE, WEEKLY_GNN_SCHEDULE) == ("daily_candles_5m", "weekly_gnn")
    assert (names.QUEUE_EVENTS_SENSOR, names.GRAPH_TRIGGER_SENSOR, names.STREAMS_SENSOR) == (
        "queue_events_sensor",
        "graph_trigger_sensor",
        "streams_sensor",
    )
    assert names.LIVE_ASSETS == ("live_agg_trades", "live_trades", "live_candles", "live_book")
    assert (names.LIVE_STREAMS_JOB, names.LIVE_STREAMS_OP, names.FRESH_CHECK, names.LIVE_GROUP) == (
        "live_streams",
        "stream_command",
        "fresh",
        "live",
    )
    assert [names.live_asset(t) for t in ("ws_agg_trades", "ws_trades", "ws_candles_5m", "ws_orderbook")] == [
        "live_agg_trades",
        "live_trades",
        "live_candles",
        "live_book",
    ]
    assert names.live_asset("api_candles_5m") is None
    assert (PARTITION_RANGE_START, PARTITION_RANGE_END) == (
        "dagster/asset_partition_range_start",
        "dagster/asset_partition_range_end",
    )
    groups = {
        **{candles_asset(i): "market_data" for i in CANDLE_INTERVALS},
        CANDLE_COVERAGE: "market_data",
        AGG_TRADES: "market_data",
        CORRELATION_GRAPH: "analytics",
        GNN_MODEL: "analytics",
    }
    for key in names.LIVE_ASSETS:
        spec = next(s for s in defs.assets or [] if isinstance(s, dg.AssetSpec) and s.key == dg.AssetKey(key))
        assert spec.group_name == "live", key
    for key, group in groups.items():
        assert defs.resolve_assets_def(key).group_names_by_key[dg.AssetKey(key)] == group, key


def test_everything_loads() -> None:
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {candles_asset(i) for i in CANDLE_INTERVALS} | {
        CANDLE_COVERAGE,
        AGG_TRADES,
        CORRELATION_GRAPH,
        GNN_MODEL,
        *names.LIVE_ASSETS,
    }
    for key in names.LIVE_ASSETS:  # external: recorded by the streams sensor, checked for freshness
        assert not repo.asset_graph.get(dg.AssetKey(key)).is_materializable
        assert dg.AssetCheckKey(dg.AssetKey(key), names.FRESH_CHECK) in repo.asset_graph.asset_check_keys
    assert defs.resolve_job_def(names.LIVE_STREAMS_JOB) is not None
    for i in CANDLE_INTERVALS:
        assert defs.resolve_job_def(candles_job(i)) is not None
        checks = defs.resolve_assets_def(candles_asset(i)).check_keys
        assert {c.name for c in checks} == {COMPLETE_CHECK}
    assert {c.name for c in defs.resolve_assets_def(AGG_TRADES).check_keys} == {COMPLETE_CHECK}
    assert defs.resolve_job_def(COVERAGE_JOB) is not None
    assert defs.resolve_job_def(AGG_TRADES_JOB) is not None
    assert defs.resolve_job_def(GRAPH_JOB) is not None
    assert defs.resolve_job_def(GNN_JOB) is not None
    assert defs.resolve_assets_def(GNN_MODEL).backfill_policy == dg.BackfillPolicy.single_run()


def test_partitions_stay_few_and_backfills_are_single_runs() -> None:
    # Dagster advises <= ~100k partitions per asset; days since Binance opened stay in the thousands.
    assert 3_000 < DAILY.get_num_partitions() < 10_000
    for key in [candles_asset("5m"), AGG_TRADES]:
        assert defs.resolve_assets_def(key).backfill_policy == dg.BackfillPolicy.single_run()


def test_daily_schedule_requests_yesterday_for_the_universe(restore_environ, monkeypatch, tmp_path) -> None:
    """One run: yesterday × the universe's symbols, added to the symbol partitions as one stretch
    (a symbol the instance knew before the rest makes a second stretch, a second run)."""
    monkeypatch.delenv("ARANGO_URL", raising=False)
    monkeypatch.setenv("STREAMFORGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STREAMFORGE_UNIVERSE", "SOLUSDT,BTCUSDT,ETHUSDT")
    schedule = defs.resolve_schedule_def(DAILY_CANDLES_SCHEDULE)
    assert schedule.cron_schedule == "30 0 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    at = datetime(2024, 8, 2, 0, 30, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(
            instance=instance, scheduled_execution_time=at, resources=defs.resources
        ) as ctx:
            (req,) = schedule.evaluate_tick(ctx).run_requests or []
        assert instance.get_dynamic_partitions("symbols") == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
        assert req.tags[PARTITION_RANGE_START] == "2024-08-01|BTCUSDT"
        assert req.tags[PARTITION_RANGE_END] == "2024-08-01|SOLUSDT"
        instance.add_dynamic_partitions("symbols", ["XRPUSDT"])
        monkeypatch.setenv("STREAMFORGE_UNIVERSE", "SOLUSDT,BTCUSDT,ADAUSDT")
        with dg.build_schedule_context(
            instance=instance, scheduled_execution_time=at, resources=defs.resources
        ) as ctx:
            reqs = schedule.evaluate_tick(ctx).run_requests or []
        assert [(r.tags[PARTITION_RANGE_START], r.tags[PARTITION_RANGE_END]) for r in reqs] == [
            ("2024-08-01|BTCUSDT", "2024-08-01|BTCUSDT"),
            ("2024-08-01|SOLUSDT", "2024-08-01|SOLUSDT"),
            ("2024-08-01|ADAUSDT", "2024-08-01|ADAUSDT"),
        ]


def test_sensor_skips_without_kafka(restore_environ, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("STREAMFORGE_DATA_DIR", str(tmp_path))
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as ctx:
            result = queue_events_sensor(ctx)
    assert isinstance(result, dg.SkipReason)
    assert "KAFKA_BOOTSTRAP_SERVERS" in (result.skip_message or "")


def test_weekly_gnn_schedule_requests_two_weeks_ending_yesterday(
    restore_environ, monkeypatch, tmp_path
) -> None:
    monkeypatch.delenv("ARANGO_URL", raising=False)
    monkeypatch.setenv("STREAMFORGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STREAMFORGE_INTERVAL", "1m")
    schedule = defs.resolve_schedule_def(WEEKLY_GNN_SCHEDULE)
    assert (
        schedule.cron_schedule == "0 2 * * 1" and schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    )
    at = datetime(2024, 8, 5, 2, 0, tzinfo=UTC)  # a Monday
    with dg.instance_for_test() as instance:
        # (as a context manager: the context's resources are closed after the tick)
        with dg.build_schedule_context(
            instance=instance, scheduled_execution_time=at, resources=defs.resources
        ) as ctx:
            (req,) = schedule.evaluate_tick(ctx).run_requests or []
        assert req.tags[PARTITION_RANGE_START] == "2024-07-22"
        assert req.tags[PARTITION_RANGE_END] == "2024-08-04"
        assert req.run_config == {"ops": {GNN_MODEL: {"config": {"interval": "1m"}}}}
        # The request runs as it is: on a store without graphs it fails with the one-line reason.
        result = defs.resolve_job_def(GNN_JOB).execute_in_process(
            instance=instance, run_config=req.run_config, tags=req.tags, raise_on_error=False
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "gnn_model 2024-07-22..2024-08-04: 0 corr:1m:pearson:* snapshots" in str(
        failure.event_specific_data
    )


def test_symbol_sensor_adds_the_universe_once(restore_environ, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("ARANGO_URL", raising=False)
    monkeypatch.setenv("STREAMFORGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STREAMFORGE_UNIVERSE", "SOLUSDT,BTCUSDT")
    sensor = defs.resolve_sensor_def(SYMBOLS_SENSOR)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", ["BTCUSDT"])
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as ctx:
            first = sensor.evaluate_tick(ctx)
        (added,) = first.dynamic_partitions_requests or []
        assert added.partitions_def_name == "symbols" and list(added.partition_keys) == ["SOLUSDT"]
        instance.add_dynamic_partitions("symbols", ["SOLUSDT"])
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as ctx:
            second = sensor.evaluate_tick(ctx)
        assert not second.dynamic_partitions_requests and "2 symbols" in (second.skip_message or "")
