"""graph_trigger_sensor: a day's correlation graph is requested once its candles are materialized
and complete for the whole universe, at most once per load, and not when it was built since."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from streamforge_pipelines.analytics.graph_store import list_snapshot_ids
from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.definitions import defs
from streamforge_pipelines.intervals import day_start_ms
from streamforge_pipelines.names import (
    CORRELATION_GRAPH,
    GRAPH_JOB,
    PARTITION_RANGE_END,
    PARTITION_RANGE_START,
    candles_asset,
)
from streamforge_pipelines.partitions import day_symbol_key, range_tags
from streamforge_pipelines.protocol import page_docs
from streamforge_pipelines.queue_manager.ledger import window_gaps
from streamforge_pipelines.sensors.graph_trigger import graph_requests, graph_trigger_sensor
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.store import store_from_settings

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
DAY = date(2024, 8, 1)
NEXT = DAY + timedelta(days=1)
DAY_MS = 86_400_000


def _candles(market: Market, symbol: str, first: date, days: int) -> list[dict]:
    start = day_start_ms(first)
    end = start + days * DAY_MS
    docs: list[dict] = []
    t = start
    while t < end:
        rows = market.klines(symbol, "5m", t, end - 1, 1000, now_ms=end + DAY_MS)
        docs += page_docs(symbol, "5m", "sim", "test", rows)
        t = rows[-1][0] + 300_000
    return docs


def _loaded(instance: dg.DagsterInstance, day: date) -> None:
    """What the candles asset records when a load of ``day`` finishes: one materialization per
    symbol-day (its partitions are day × symbol; the graph's are days)."""
    for symbol in SYMBOLS:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(candles_asset("5m"), partition=day_symbol_key(day, symbol))
        )


@pytest.fixture
def universe_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The embedded store under ``tmp_path`` with SYMBOLS as the universe and 5m as the interval,
    set in the environment as the sensor (and the daemon) read them; the settings they make."""
    monkeypatch.delenv("ARANGO_URL", raising=False)
    monkeypatch.setenv("STREAMFORGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STREAMFORGE_UNIVERSE", ",".join(SYMBOLS))
    monkeypatch.setenv("STREAMFORGE_INTERVAL", "5m")
    return Settings.from_env()


def test_graph_follows_complete_candles(universe_store: Settings) -> None:
    settings = universe_store
    market = Market(42)
    with store_from_settings(settings) as db:
        # DAY and the day before it (the first windows reach back) for everyone; NEXT without SOL.
        for s in SYMBOLS:
            db.upsert(CANDLES, _candles(market, s, DAY - timedelta(days=1), 2 if s == "SOLUSDT" else 3))

    with dg.instance_for_test() as instance, store_from_settings(settings) as db:
        assert graph_requests(instance, settings, db, None).requests == []  # nothing loaded yet
        _loaded(instance, DAY)
        _loaded(instance, NEXT)
        tick = graph_requests(instance, settings, db, None)
        (req,) = tick.requests
        assert req.partition_key == DAY.isoformat() and req.job_name == GRAPH_JOB
        config = req.run_config["ops"][CORRELATION_GRAPH]["config"]
        assert config == {"interval": "5m", "symbols": SYMBOLS, "max_lag": 12}
        assert tick.waiting == {NEXT.isoformat(): [f"SOLUSDT (288 missing on {NEXT})"]}
        assert tick.cursor > 0 and graph_requests(instance, settings, db, tick.cursor).requests == []

        # The requested run builds the day's graph; read again from the start, the day is built.
        job = defs.resolve_job_def(GRAPH_JOB)
        result = job.execute_in_process(
            instance=instance, partition_key=req.partition_key, run_config=req.run_config
        )
        assert result.success
        again = graph_requests(instance, settings, db, None)
        assert again.requests == [] and again.already_built == [DAY.isoformat()]

        # SOL's NEXT arrives (a second load of that day): NEXT is requested, DAY is not.
        db.upsert(CANDLES, _candles(market, "SOLUSDT", NEXT, 1))
        _loaded(instance, NEXT)
        (late,) = graph_requests(instance, settings, db, tick.cursor).requests
        assert late.partition_key == NEXT.isoformat() and late.run_key != req.run_key

        # The sensor as the daemon evaluates it: resources from the definitions, settings from the
        # environment; it reports the same request and moves its cursor past what it read.
        # (as a context manager: the context's resources and instance are closed after the tick)
        with dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs) as ctx:
            data = graph_trigger_sensor.evaluate_tick(ctx)
        assert [r.partition_key for r in data.run_requests or []] == [NEXT.isoformat()]
        assert data.run_requests[0].run_key == late.run_key
        # the cursor: the newest candles_5m materialization in the event log (NEXT's second load)
        newest = instance.fetch_materializations(dg.AssetKey(candles_asset("5m")), limit=1, ascending=False)
        assert int(data.cursor or 0) == newest.records[0].storage_id > tick.cursor


def test_window_gaps_before_the_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trailing window reaches into the day before: holes there block the graph, a day before
    that was never loaded does not (its first snapshots are skipped instead)."""
    monkeypatch.delenv("ARANGO_URL", raising=False)
    settings = Settings.from_env(data_dir=tmp_path / "data")
    market = Market(42)
    d0 = day_start_ms(DAY)
    hole_in_window = {d0 - 2 * 3_600_000 + k * 300_000 for k in range(3)}  # 22:00-22:15 the day before
    hole_outside = {d0 - 14 * 3_600_000}  # 10:00 the day before: outside a 4-hour window
    with store_from_settings(settings) as db:
        for s in SYMBOLS:
            db.upsert(CANDLES, _candles(market, s, DAY, 1))
        btc = _candles(market, "BTCUSDT", DAY - timedelta(days=1), 1)
        db.upsert(CANDLES, [c for c in btc if c["open_time"] not in hole_in_window])
        eth = _candles(market, "ETHUSDT", DAY - timedelta(days=1), 1)
        db.upsert(CANDLES, [c for c in eth if c["open_time"] not in hole_outside])
        # SOLUSDT: the day before was never loaded.
        gaps = window_gaps(db, SYMBOLS, "5m", DAY, 240 * 60_000, d0 + 3 * DAY_MS)
        assert gaps == {"BTCUSDT": f"3 missing in the 240-minute window before {DAY}"}
        assert window_gaps(db, SYMBOLS, "5m", DAY, 0, d0 + 3 * DAY_MS) == {}


def test_consecutive_ready_days_are_one_range_run(universe_store: Settings) -> None:
    """A load of several days (a backfill) asks for one graph run over the stretch, and that run
    builds every day of it; a range with an incomplete day fails before it writes anything."""
    settings = universe_store
    market = Market(42)
    with store_from_settings(settings) as db:
        for s in SYMBOLS:
            db.upsert(CANDLES, _candles(market, s, DAY - timedelta(days=1), 3))  # DAY-1, DAY, NEXT
    job = defs.resolve_job_def(GRAPH_JOB)

    with dg.instance_for_test() as instance, store_from_settings(settings) as db:
        for day in (DAY, NEXT):
            _loaded(instance, day)
        (req,) = graph_requests(instance, settings, db, None).requests
        assert req.partition_key is None and req.run_key.startswith(f"graph:5m:{DAY}..{NEXT}:")
        assert req.tags[PARTITION_RANGE_START] == DAY.isoformat()
        assert req.tags[PARTITION_RANGE_END] == NEXT.isoformat()
        result = job.execute_in_process(instance=instance, run_config=req.run_config, tags=req.tags)
        assert result.success
        mats = result.asset_materializations_for_node(CORRELATION_GRAPH)
        assert sorted(m.partition for m in mats) == [DAY.isoformat(), NEXT.isoformat()]
        assert mats[0].metadata["days"].value == 2 and mats[0].metadata["snapshots"].value == 48
        assert len(list_snapshot_ids(db, interval="5m")) == 48

        # One day more, without SOL: the range fails naming it, and writes none of its days.
        far = NEXT + timedelta(days=1)
        for s in SYMBOLS[:2]:
            db.upsert(CANDLES, _candles(market, s, far, 1))
        tags = range_tags(NEXT, far)
        failed = job.execute_in_process(
            instance=instance, run_config=req.run_config, tags=tags, raise_on_error=False
        )
        assert not failed.success
        failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
        assert f"candles_5m of {NEXT}..{far} are not complete: SOLUSDT (288 missing on {far})" in str(
            failure.event_specific_data
        )
        assert len(list_snapshot_ids(db, interval="5m")) == 48  # nothing of far written
