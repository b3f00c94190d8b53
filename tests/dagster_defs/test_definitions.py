"""The composition root loads, and its schedule, partitions and sensor behave as documented."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from streamforge_pipelines.definitions import defs
from streamforge_pipelines.partitions import CANDLE_INTERVALS, DAILY
from streamforge_pipelines.sensors.queue_events import queue_events_sensor


def test_everything_loads() -> None:
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {f"candles_{i}" for i in CANDLE_INTERVALS} | {
        "candle_coverage",
        "agg_trades",
        "correlation_graph",
        "gnn_model",
    }
    for i in CANDLE_INTERVALS:
        assert defs.resolve_job_def(f"candles_{i}_job") is not None
        checks = defs.resolve_assets_def(f"candles_{i}").check_keys
        assert {c.name for c in checks} == {"complete"}
    assert defs.resolve_job_def("candle_coverage_job") is not None
    assert defs.resolve_job_def("agg_trades_job") is not None
    assert defs.resolve_job_def("correlation_graph_job") is not None
    assert defs.resolve_job_def("gnn_model_job") is not None
    assert defs.resolve_assets_def("gnn_model").backfill_policy == dg.BackfillPolicy.single_run()


def test_partitions_stay_few_and_backfills_are_single_runs() -> None:
    # Dagster advises <= ~100k partitions per asset; days since Binance opened stay in the thousands.
    assert 3_000 < DAILY.get_num_partitions() < 10_000
    asset = defs.resolve_assets_def("candles_5m")
    assert asset.backfill_policy == dg.BackfillPolicy.single_run()


def test_daily_schedule_requests_yesterday() -> None:
    schedule = defs.resolve_schedule_def("daily_candles_5m")
    at = datetime(2024, 8, 2, 0, 30, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=at)
        data = schedule.evaluate_tick(ctx)
    assert [r.partition_key for r in data.run_requests or []] == ["2024-08-01"]
    assert schedule.cron_schedule == "30 0 * * *"


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
    schedule = defs.resolve_schedule_def("weekly_gnn")
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
        assert req.tags["dagster/asset_partition_range_start"] == "2024-07-22"
        assert req.tags["dagster/asset_partition_range_end"] == "2024-08-04"
        assert req.run_config == {"ops": {"gnn_model": {"config": {"interval": "1m"}}}}
        # The request runs as it is: on a store without graphs it fails with the one-line reason.
        result = defs.resolve_job_def("gnn_model_job").execute_in_process(
            instance=instance, run_config=req.run_config, tags=req.tags, raise_on_error=False
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "gnn_model 2024-07-22..2024-08-04: 0 corr:1m:pearson:* snapshots" in str(
        failure.event_specific_data
    )
