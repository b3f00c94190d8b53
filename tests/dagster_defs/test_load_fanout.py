"""A load run that fans out: its symbols split into steps that run in processes of their own, a
failed step is retried by Dagster's retry policy and resumes where the store stops.

The run is real: ``dagster asset materialize`` in a child process (the multiprocess executor) over 4
symbols × 4 days of 1m from REST, ``max_steps`` 2 and ``LOAD_STEP_SYMBOL_DAYS`` 1, so the plan makes
two steps of two symbols. The exchange simulator answers BTCUSDT's 4th to 9th klines requests with
HTTP 503 (overloaded): its loader gives up after six tries, so BTCUSDT's task fails after three
windows of 1000 candles, its step fails, and Dagster's retry policy runs the step again; the new
attempt loads BTCUSDT from its first unfinished day only and not ETHUSDT (complete in the first
attempt). Expected counts come from the range (every 1m open time of closed days: the simulator has
no downtime), not from the loaders.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import orjson
from recording_simulator import RecordingSimulator

from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.intervals import count_open_times, day_range_ms
from streamforge_pipelines.names import COMPLETE_CHECK, candles_asset
from streamforge_pipelines.partitions import ensure_symbols
from streamforge_pipelines.runner import prepare_dagster_home
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.store import store_from_settings

SYMBOLS = ("ADAUSDT", "BNBUSDT", "BTCUSDT", "ETHUSDT")
FIRST, LAST = date(2024, 7, 1), date(2024, 7, 4)
ASSET = candles_asset("1m")
RUN_CONFIG = {"ops": {ASSET: {"config": {"source": "rest", "max_steps": 2}}}}
RUN_S = 300
#: Tries of one request before a loader gives up (BinanceRestClient's max_attempts).
TRIES = 6


def _events(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> list[dg.EventLogEntry]:
    return [e for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event_type == kind]


def test_a_run_fans_out_into_steps_and_a_failed_step_resumes(make_settings, tmp_path: Path) -> None:
    with RecordingSimulator(latency_ms=0) as sim:
        sim.outage = ("BTCUSDT", 4, TRIES)
        settings = make_settings(partitions=2).model_copy(
            update={"exchange_url": sim.server.base_url, "loader_concurrency": 1, "load_step_symbol_days": 1}
        )
        home = prepare_dagster_home(settings)
        instance = dg.DagsterInstance.get()
        assert ensure_symbols(instance, SYMBOLS) == [(SYMBOLS[0], SYMBOLS[-1])]
        with Stack(settings) as stack:  # broker and simulator given: the connector only
            live = stack.settings
            env = {**os.environ, **live.to_env(), "DAGSTER_HOME": str(home)}
            done = subprocess.run(
                [
                    str(Path(sys.executable).with_name("dagster")),
                    *("asset", "materialize", "-m", "streamforge_pipelines.definitions"),
                    *("--select", ASSET, "--partition-range", f"{FIRST}|{SYMBOLS[0]}...{LAST}|{SYMBOLS[-1]}"),
                    *("--config-json", orjson.dumps(RUN_CONFIG).decode()),
                ],
                env=env,
                capture_output=True,
                timeout=RUN_S,
            )
            output = (done.stdout + done.stderr).decode(errors="replace")
            assert done.returncode == 0, output[-4000:]

            (run,) = instance.get_runs()
            assert run.status == dg.DagsterRunStatus.SUCCESS
            # The plan made two load steps, each in a process of its own; the failed one was retried.
            started = _events(instance, run.run_id, dg.DagsterEventType.STEP_START)
            loads = {
                e.step_key: e.dagster_event.pid
                for e in started
                if e.step_key and f"{ASSET}_load[" in e.step_key
            }
            assert sorted(loads) == [f"{ASSET}.{ASSET}_load[g0]", f"{ASSET}.{ASSET}_load[g1]"], loads
            assert len(set(loads.values())) == 2 and run.run_id
            retried = [
                e.step_key for e in _events(instance, run.run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)
            ]
            assert retried == [f"{ASSET}.{ASSET}_load[g1]"], output[-4000:]

            day = count_open_times(*day_range_ms(FIRST, FIRST), "1m")
            total = count_open_times(*day_range_ms(FIRST, LAST), "1m")
            with store_from_settings(live) as store:
                tasks = store.list_tasks(run_id=run.run_id)
                by_symbol = {
                    s: sorted((t.status, t.time_range) for t in tasks if t.symbol == s) for s in SYMBOLS
                }
                failed = next(t for t in tasks if t.status == "failed")
                assert failed.symbol == "BTCUSDT" and "ExchangeUnavailable" in (failed.error or ""), failed
                # BTCUSDT stored three windows (3000 candles: two whole days and 120 of the third); the
                # retry's task starts at the third day; ETHUSDT, complete before, is not loaded again.
                assert by_symbol["BTCUSDT"] == [
                    ("complete", f"{date(2024, 7, 3)}:{LAST}"),
                    ("failed", f"{FIRST}:{LAST}"),
                ]
                for s in ("ADAUSDT", "BNBUSDT", "ETHUSDT"):
                    assert by_symbol[s] == [("complete", f"{FIRST}:{LAST}")], by_symbol
                for s in SYMBOLS:
                    assert store.count(CANDLES, (s, "1m"), *day_range_ms(FIRST, LAST)) == total
            # 3 answered + 6 refused, then the last two days: 2880 candles in windows of 1000
            assert sim.klines_requests_of("BTCUSDT") == 3 + TRIES + -(-2 * day // 1000)
            assert sim.klines_requests_of("ETHUSDT") == -(-total // 1000)

    # Every symbol-day of the run materialized once, by the finish step, with the merged figures.
    done_keys = instance.get_materialized_partitions(dg.AssetKey(ASSET))
    assert len(done_keys) == 16 and f"{FIRST}|BTCUSDT" in done_keys
    record = instance.fetch_materializations(dg.AssetKey(ASSET), limit=1).records[0]
    meta = record.asset_materialization.metadata  # type: ignore[union-attr]
    assert meta["stored_candles"].value == meta["expected_candles"].value == 4 * total
    # the tasks of the steps that succeeded: ADA, BNB (g0); BTC again in the retry (ETH was complete)
    assert meta["missing_candles"].value == 0 and meta["tasks"].value == 3
    check = dg.AssetCheckKey(dg.AssetKey(ASSET), COMPLETE_CHECK)
    execution = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
    assert execution.evaluation is not None and execution.evaluation.passed
    # Each task's lifecycle was recorded on the asset, from the steps that wrote the task records.
    observed = instance.fetch_observations(dg.AssetKey(ASSET), limit=200).records
    lifecycle = {
        (o.asset_observation.metadata["symbol"].value, o.asset_observation.metadata["task_status"].value)  # type: ignore[union-attr]
        for o in observed
    }
    assert {("BTCUSDT", "failed"), ("BTCUSDT", "complete"), ("ETHUSDT", "complete")} <= lifecycle, lifecycle
