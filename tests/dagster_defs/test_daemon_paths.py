"""User paths through the Dagster daemon, against ``dagster dev`` (webserver and daemon) started here.

One ``dagster dev`` over the real code location, on the stack ``streamforge dev`` starts (the
simulator and the connector as child processes, on the session broker), with the universe kept to
three symbols and ``STREAMFORGE_DAILY_CRON="* * * * *"`` so that the daily schedule ticks within a
minute. Everything is driven the way a user or a script drives it, through the webserver's GraphQL
API (``/graphql``, what the UI itself calls); this process only reads what came of it (runs,
materializations, the store) and compares it with the simulator's own model.

* A backfill of a date range × a symbol subset of ``candles_5m`` (``launchPartitionBackfill`` with
  the multi-partition keys, as the UI's launch dialog sends them) is run by the daemon to completion:
  few runs (``BackfillPolicy.single_run``: Dagster makes one run per symbol or per day), every one
  succeeded, exactly the chosen symbol-days materialized, the simulator's candles stored for them and
  nothing for the symbol left out, 0 × 429 and 0 × 418.
* The daily schedule, started with ``startSchedule``, ticks under the daemon: its run (yesterday ×
  the universe) succeeds; the ``graph_trigger_sensor`` (on by default) then requests
  ``correlation_graph_job`` for that day, which succeeds too. The schedule is stopped again at the
  end.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_dev import LOCATION, started_dagster_dev, tail
from polling import T, wait_for

from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.intervals import DAY_MS, day_range_ms
from streamforge_pipelines.names import (
    CORRELATION_GRAPH,
    DAILY_CANDLES_SCHEDULE,
    GRAPH_JOB,
    TRIGGER_TAG,
    candles_asset,
    candles_job,
)
from streamforge_pipelines.partitions import day_symbol_key, ensure_symbols, split_key
from streamforge_pipelines.protocol import page_docs
from streamforge_pipelines.runner import prepare_dagster_home
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.store import Store, store_from_settings

REPOSITORY = "__repository__"
INTERVAL = "5m"
ASSET = candles_asset(INTERVAL)
#: The universe of ``dagster dev`` (the schedule's symbols), added to the symbol partitions sorted.
UNIVERSE = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
#: The backfill: three days × two symbols that are not neighbours in the symbol order.
BACKFILL_DAYS = (date(2024, 8, 1), date(2024, 8, 2), date(2024, 8, 3))
BACKFILL_SYMBOLS = ("BTCUSDT", "SOLUSDT")

#: Bounds, not expectations: the webserver's start, a backfill (the backfill daemon iterates every
#: 30 s, the runs queue for the exchange pool), the schedule's first tick (the next minute boundary)
#: and its run, the graph sensor's tick (every 30 s) and its run.
BACKFILL_WITHIN_S = 240.0
TICK_WITHIN_S = 120.0
RUN_WITHIN_S = 180.0
GRAPH_WITHIN_S = 180.0
POLL_S = 1.0

FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
#: What ``partitionBackfillOrError.status`` ends as (asset backfills end ``COMPLETED_SUCCESS``).
BACKFILL_ENDED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""
BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions error { message } }
    ... on Error { message }
  }
}"""
START_SCHEDULE = """
mutation Start($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on Error { message }
  }
}"""
STOP_SCHEDULE = """
mutation Stop($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on Error { message }
  }
}"""

#: The tick's time on a run a schedule requested (Dagster's scheduler writes it, ISO 8601 in UTC).
SCHEDULED_AT_TAG = ".dagster/scheduled_execution_time"


def _wait_for(predicate: Callable[[], T], timeout_s: float, what: Callable[[], str]) -> T:
    """:func:`polling.wait_for` every ``POLL_S`` (GraphQL and the instance: no need to ask more often)."""
    return wait_for(predicate, timeout_s, what, interval_s=POLL_S)


@dataclass
class DagsterDev:
    """A running ``dagster dev``: its URL, the settings its code sees, the instance it uses, its log."""

    base: str
    settings: Settings
    instance: dg.DagsterInstance
    log: Path

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The ``data`` of a GraphQL request to the webserver (a GraphQL error fails the test)."""
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.base}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        assert not answer.get("errors"), answer["errors"]
        return dict(answer["data"])

    def runs(self, **filters: Any) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(dg.RunsFilter(**filters)))


def _module_settings(kafka_bootstrap: str, data_dir: Path) -> Settings:
    """Settings on the session broker with topics of this module's own (the stack creates them)."""
    suffix = uuid.uuid4().hex[:10]
    return Settings.from_env(
        {},
        data_dir=data_dir,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_control=f"queue-control.{suffix}",
        topic_events=f"queue-events.{suffix}",
        topic_candles=f"sf.candles.v1.{suffix}",
        topic_candles_usdm=f"sf.candles-usdm.v1.{suffix}",
        topic_trades=f"sf.trades.v1.{suffix}",
        topic_checkpoints=f"sf.checkpoints.v1.{suffix}",
        topic_book=f"sf.book.v1.{suffix}",
        topic_book_diffs=f"sf.book-diffs.v1.{suffix}",
        data_partitions=2,
        consumer_group=f"connector-{suffix}",
        universe=UNIVERSE,
        daily_cron="* * * * *",
        task_timeout_s=120.0,
        task_stall_s=60.0,
    )


@pytest.fixture(scope="module")
def dagster_dev(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterDev]:
    """``dagster dev`` (webserver and daemon) over the stack of ``streamforge dev``; everything it
    started is ended and the environment restored."""
    tmp = tmp_path_factory.mktemp("daemon-paths")
    saved_environ = dict(os.environ)
    os.environ["DAGSTER_HOME"] = str(tmp / "dagster")
    os.environ.pop("ARANGO_URL", None)  # the embedded store under tmp
    settings = _module_settings(kafka_bootstrap, tmp / "data")
    home = prepare_dagster_home(settings)
    instance = dg.DagsterInstance.get()
    try:
        # the symbol partitions, as the symbol_partitions_sensor would add them within its first minute
        assert ensure_symbols(instance, UNIVERSE) == [(UNIVERSE[0], UNIVERSE[-1])]
        with Stack(settings, log_dir=tmp / "logs") as stack:
            env = {**os.environ, **stack.settings.to_env(), "DAGSTER_HOME": str(home)}
            log = tmp / "dagster-dev.log"
            with started_dagster_dev(env, log) as base:
                yield DagsterDev(base, stack.settings, instance, log)
    finally:
        instance.dispose()
        os.environ.clear()
        os.environ.update(saved_environ)


# ---- truth and what came of a run --------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def _truth_docs(market: Market, symbol: str, day: date) -> list[dict[str, Any]]:
    """The simulator's 5m candles of a closed day, as store documents (without who wrote them)."""
    start, end = day_range_ms(day, day)
    rows = market.klines(symbol, INTERVAL, start, end - 1, 1000, now_ms=max(_now_ms(), end + DAY_MS))
    return [_what_was_traded(doc) for doc in page_docs(symbol, INTERVAL, "sim", "truth", rows)]


def _what_was_traded(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("source", "queue_id")}


def _stored_docs(store: Store, symbol: str, day: date) -> list[dict[str, Any]]:
    return [_what_was_traded(doc) for doc in store.read(CANDLES, (symbol, INTERVAL), *day_range_ms(day, day))]


def _write_candles(store: Store, market: Market, symbols: tuple[str, ...], day: date) -> None:
    """The simulator's candles of ``day`` into the store, as if loaded earlier."""
    start, end = day_range_ms(day, day)
    for symbol in symbols:
        rows = market.klines(symbol, INTERVAL, start, end - 1, 1000, now_ms=max(_now_ms(), end + DAY_MS))
        store.upsert(CANDLES, page_docs(symbol, INTERVAL, "sim", "daemon-paths-test", rows))


def _materializations(dev: DagsterDev, asset: str, run_ids: set[str]) -> list[dg.EventLogRecord]:
    """The materializations of ``asset`` recorded by the runs ``run_ids``."""
    records = dev.instance.fetch_materializations(dg.AssetKey(asset), limit=10_000).records
    return [r for r in records if r.run_id in run_ids]


def _wait_for_run_end(dev: DagsterDev, run_id: str, timeout_s: float) -> dg.DagsterRun:
    def ended() -> dg.DagsterRun | None:
        run = dev.instance.get_run_by_id(run_id)
        return run if run is not None and run.status in FINISHED else None

    def status() -> str:
        run = dev.instance.get_run_by_id(run_id)
        return f"run {run_id} to end (now {run.status if run else 'unknown'})\n{tail(dev.log)}"

    return _wait_for(ended, timeout_s, status)


def _run_failure(dev: DagsterDev, run: dg.DagsterRun) -> str:
    """The last lines of a run's event log, for a failure message."""
    lines = [e.user_message for e in dev.instance.all_logs(run.run_id)]
    return f"run {run.run_id} ({run.job_name}) ended {run.status}:\n" + "\n".join(lines[-25:])


def _schedule_state(dev: DagsterDev) -> Any:
    """The instance's state of the daily schedule (the one instigator of that name here)."""
    (state,) = [s for s in dev.instance.all_instigator_state() if s.name == DAILY_CANDLES_SCHEDULE]
    return state


def _schedule_status(dev: DagsterDev) -> str:
    """``RUNNING`` or ``STOPPED`` (as the UI and GraphQL say it), as stored in the instance."""
    return str(_schedule_state(dev).status.value)


def _schedule_checkpointed(dev: DagsterDev) -> bool:
    """Whether the scheduler has written its iteration checkpoint of the schedule since it started.

    The daemon writes that checkpoint (once an hour) with the status it read at the start of its
    iteration; on a schedule's first iteration that is right after the tick's runs are launched, so a
    stop that lands in between is undone and the schedule goes on ticking (Dagster 1.13). A user
    stopping it from the UI a second later never notices; a test stopping it at once would.
    """
    data = _schedule_state(dev).instigator_data
    return data is not None and data.last_iteration_timestamp is not None


def _http_errors(records: list[dg.EventLogRecord]) -> set[tuple[int, int]]:
    out = set()
    for record in records:
        meta = record.asset_materialization.metadata if record.asset_materialization else {}
        out.add((meta["http_429"].value, meta["http_418"].value))
    return out


# ---- the tests ----------------------------------------------------------------------------------------


def test_a_backfill_of_a_range_and_a_symbol_subset_runs_under_the_daemon(dagster_dev: DagsterDev) -> None:
    dev = dagster_dev
    chosen = {day_symbol_key(d, s) for d in BACKFILL_DAYS for s in BACKFILL_SYMBOLS}
    params = {
        "assetSelection": [{"path": [ASSET]}],
        "partitionNames": sorted(chosen),
        "title": "daemon-paths test backfill",
    }
    launched = dev.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    last: dict[str, Any] = {}

    def ended() -> bool:
        nonlocal last
        last = dev.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert last["__typename"] == "PartitionBackfill", last
        return last["status"] in BACKFILL_ENDED

    def standing() -> str:
        runs = [(r.run_id[:8], r.status.value) for r in dev.runs(tags={"dagster/backfill": backfill_id})]
        return f"backfill {backfill_id} to complete (now {last}; runs {runs})\n{tail(dev.log)}"

    _wait_for(ended, BACKFILL_WITHIN_S, standing)
    runs = dev.runs(tags={"dagster/backfill": backfill_id})
    failed = [_run_failure(dev, r) for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
    assert not failed, "\n\n".join(failed)
    assert last["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), last
    assert last["numPartitions"] == len(chosen), last
    # single_run: the symbols are fewer than the days and not neighbours, so one run per symbol
    assert len(runs) == len(BACKFILL_SYMBOLS), [(r.run_id, r.tags) for r in runs]

    # exactly the chosen symbol-days materialized, each once, and nothing else of those days
    records = _materializations(dev, ASSET, {r.run_id for r in runs})
    assert sorted(r.partition_key for r in records) == sorted(chosen)
    in_range = {k for k in dev.instance.get_materialized_partitions(dg.AssetKey(ASSET))
                if split_key(k)[0] in BACKFILL_DAYS}  # fmt: skip
    assert in_range == chosen
    assert _http_errors(records) == {(0, 0)}  # 0 × 429, 0 × 418

    # the store holds the simulator's candles of the chosen symbol-days, each once, and nothing else
    market = Market(dev.settings.simulator_seed)
    with store_from_settings(dev.settings) as store:
        for symbol in UNIVERSE:
            for day in BACKFILL_DAYS:
                stored = _stored_docs(store, symbol, day)
                if symbol in BACKFILL_SYMBOLS:
                    truth = _truth_docs(market, symbol, day)
                    assert len(truth) == 288, (symbol, day, len(truth))  # a full day, no downtime
                    assert stored == truth, f"{symbol} {day}: {len(stored)} stored, {len(truth)} expected"
                else:
                    assert stored == [], f"{symbol} {day} was not chosen but {len(stored)} candles are stored"
        first, last_ms = day_range_ms(BACKFILL_DAYS[0], BACKFILL_DAYS[-1])
        assert store.duplicates(CANDLES, list(UNIVERSE), (INTERVAL,), first, last_ms) == 0


def test_the_daily_schedule_and_the_graph_sensor_tick_under_the_daemon(dagster_dev: DagsterDev) -> None:
    dev = dagster_dev
    market = Market(dev.settings.simulator_seed)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    # The graph's trailing window reaches into the day before: its candles are in the store already.
    with store_from_settings(dev.settings) as store:
        _write_candles(store, market, UNIVERSE, yesterday - timedelta(days=1))
    graph_runs_before = {r.run_id for r in dev.runs(job_name=GRAPH_JOB)}

    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                "scheduleName": DAILY_CANDLES_SCHEDULE}  # fmt: skip
    started = dev.graphql(START_SCHEDULE, {"selector": selector})["startSchedule"]
    assert started["__typename"] == "ScheduleStateResult", started
    assert started["scheduleState"]["status"] == "RUNNING", started

    def scheduled_runs() -> list[dg.DagsterRun]:
        return dev.runs(
            job_name=candles_job(INTERVAL), tags={"dagster/schedule_name": DAILY_CANDLES_SCHEDULE}
        )

    try:
        scheduled = _wait_for(
            scheduled_runs,
            TICK_WITHIN_S,
            lambda: f"a run of {DAILY_CANDLES_SCHEDULE} (the schedule's first tick)\n{tail(dev.log)}",
        )
        _wait_for(
            lambda: _schedule_checkpointed(dev),
            TICK_WITHIN_S,
            lambda: f"the scheduler's checkpoint of {DAILY_CANDLES_SCHEDULE} after its tick",
        )
    finally:
        stopped = dev.graphql(STOP_SCHEDULE, {"id": started["scheduleState"]["id"]})["stopRunningSchedule"]
    assert stopped["__typename"] == "ScheduleStateResult", stopped
    assert stopped["scheduleState"]["status"] == "STOPPED", stopped
    assert len(scheduled) == 1, [(r.run_id, r.tags) for r in scheduled]  # the universe is one stretch
    run = _wait_for_run_end(dev, scheduled[0].run_id, RUN_WITHIN_S)
    assert run.status == dg.DagsterRunStatus.SUCCESS, _run_failure(dev, run)

    # yesterday (of the tick) × the universe, materialized and stored as the simulator has them
    tick = datetime.fromisoformat(run.tags[SCHEDULED_AT_TAG])
    day = tick.date() - timedelta(days=1)
    records = _materializations(dev, ASSET, {run.run_id})
    assert sorted(r.partition_key for r in records) == sorted(day_symbol_key(day, s) for s in UNIVERSE)
    assert _http_errors(records) == {(0, 0)}
    with store_from_settings(dev.settings) as store:
        for symbol in UNIVERSE:
            assert _stored_docs(store, symbol, day) == _truth_docs(market, symbol, day), symbol

    # the graph sensor requests the day's graph once every symbol of it is complete
    def graph_runs() -> list[dg.DagsterRun]:
        return [r for r in dev.runs(job_name=GRAPH_JOB) if r.run_id not in graph_runs_before]

    requested = _wait_for(
        graph_runs, GRAPH_WITHIN_S, lambda: f"a {GRAPH_JOB} run requested by the sensor\n{tail(dev.log)}"
    )
    assert len(requested) == 1, [(r.run_id, r.tags) for r in requested]
    graph = _wait_for_run_end(dev, requested[0].run_id, RUN_WITHIN_S)
    assert graph.status == dg.DagsterRunStatus.SUCCESS, _run_failure(dev, graph)
    assert graph.tags.get(TRIGGER_TAG) == "candles_complete", graph.tags
    built = _materializations(dev, CORRELATION_GRAPH, {graph.run_id})
    assert [r.partition_key for r in built] == [day.isoformat()]

    # the schedule stayed stopped: no later minute added a run
    assert _schedule_status(dev) == "STOPPED"
    assert [r.run_id for r in scheduled_runs()] == [run.run_id]
