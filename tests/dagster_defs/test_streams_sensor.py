"""``streams_sensor``: what it makes of heartbeats (streaming, silent, dead, stopped, unstopped), what it
sends again and how often, what it records on the live assets, the ``fresh`` check run by hand, and
the days streams completed that it records as the historical assets' partitions (and the ones it
leaves to runs).

The heartbeats are published on the session broker as a stream worker sends them (the events a
worker really sends are tested with the worker in ``test_live_streams.py``); the ticks are judged at
given times, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streamforge_pipelines.assets.live import LIVE_CHECKS, LIVE_SPECS
from streamforge_pipelines.datasets import CANDLES, TRADES
from streamforge_pipelines.intervals import DAY_MS, MINUTE_MS, day_start_ms
from streamforge_pipelines.names import (
    AGG_TRADES,
    FRESH_CHECK,
    LIVE_AGG_TRADES,
    LIVE_BOOK,
    LIVE_CANDLES,
    LIVE_TRADES,
    candles_asset,
)
from streamforge_pipelines.protocol import (
    Command,
    Event,
    StreamStats,
    decode_command,
    decode_record,
    encode_record,
    format_time_range,
    page_docs,
    stream_target,
    trade_page,
)
from streamforge_pipelines.queue_manager import streams
from streamforge_pipelines.queue_manager.stream_watch import DEAD, SILENT, STOPPED_STATE, STREAMING, UNSTOPPED
from streamforge_pipelines.resources import resources_for
from streamforge_pipelines.sensors.graph_trigger import graph_requests
from streamforge_pipelines.sensors.streams import StreamsTick, streams_tick
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.config import config_from_mapping
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.store import Store, TaskRecord, store_from_settings

SYMBOLS = ("ALPHAUSDT", "BETAUSDT")


def _want(
    db: Store, action: str, task_type: str, queue_id: str, since: float, created: float | None = None
) -> None:
    """What the ``live_streams`` job records, dated ``since`` (its last change) and ``created``."""
    request = streams.stream_request(action, task_type, SYMBOLS, "spot", queue_id, universe=SYMBOLS)
    record = streams.want(db, request, streams.stream_commands(request), run_id="run-1")
    db.put_task(replace(record, updated_at=since, created_at=created if created is not None else since))


def _beat(queue_id: str, task_type: str, at: float, records: int, silent: tuple[str, ...] = ()) -> Event:
    target = stream_target(task_type)
    stats = StreamStats(
        messages=records * 2, records=records, silent_symbols=list(silent), symbols=list(SYMBOLS)
    )
    return Event(
        queue_id=queue_id,
        producer=f"{target}__w1",
        status="streaming",
        type=task_type,
        timestamp=at,
        records_written=records,
        stream=stats,
    )


async def _publish(settings: Settings, events: list[Event]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(settings.topic_events, e.encode(), key=e.queue_id.encode())
    finally:
        await producer.stop()


async def _commands(settings: Settings) -> list[Command]:
    """Everything on queue-control (read until a fetch comes back empty)."""
    consumer = AIOKafkaConsumer(
        settings.topic_control,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        out: list[Command] = []
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            if not any(batch.values()):
                return out
            out += [decode_command(r.value or b"") for recs in batch.values() for r in recs]
    finally:
        await consumer.stop()


def _check(tick: StreamsTick, asset: str) -> dg.AssetCheckEvaluation:
    (check,) = [
        e for e in tick.events if isinstance(e, dg.AssetCheckEvaluation) and e.asset_key.path == [asset]
    ]
    assert check.check_name == FRESH_CHECK
    return check


def _events_of(
    tick: StreamsTick, kind: type, asset: str
) -> list[dg.AssetMaterialization | dg.AssetObservation]:
    return [e for e in tick.events if isinstance(e, kind) and e.asset_key.path == [asset]]


def test_the_sensor_judges_streams_by_their_heartbeats(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        partitions=1, live_heartbeat_s=1.0, live_dead_after_beats=3.0, live_restart_every_s=60.0
    )
    t = float(int(time.time()))
    with store_from_settings(settings) as db:
        _want(db, "start", "ws_agg_trades", "live-a", t - 100)  # heard a second ago
        _want(db, "start", "ws_candles_1m", "live-b", t - 100)  # heard, one symbol silent
        _want(db, "start", "ws_orderbook", "live-c", t - 100)  # last heard 50 s ago: its worker died
        _want(db, "stop", "ws_trades", "live-d", t - 100)  # stopped, and quiet
        _want(db, "start", "ws_agg_trades", "live-e", t - 200)
        _want(db, "stop", "ws_agg_trades", "live-e", t - 100)  # stopped, yet still heartbeating
    asyncio.run(
        _publish(
            settings,
            [
                _beat("live-c", "ws_orderbook", t - 50, 7),
                _beat("live-a", "ws_agg_trades", t - 1, 50),
                _beat("live-b", "ws_candles_1m", t - 1, 4, silent=("BETAUSDT",)),
                _beat("live-e", "ws_agg_trades", t - 1, 9),
                # a load's event and an unknown stream's heartbeat are read and ignored
                Event(
                    queue_id="wf-x", producer="loader-api-candles__1", status="loading", type="api_candles_1m"
                ),
                _beat("live-zzz", "ws_trades", t - 1, 3),
            ],
        )
    )
    with dg.instance_for_test() as instance, store_from_settings(settings) as db:
        first = streams_tick(instance, settings, db, None, now=t)
        states = {v.stream.queue_id: v.state for v in first.views}
        assert states == {
            "live-a": STREAMING,
            "live-b": SILENT,
            "live-c": DEAD,
            "live-d": STOPPED_STATE,
            "live-e": UNSTOPPED,
        }
        assert sorted(first.sent) == ["start live-c", "stop live-e"]
        warnings = "\n".join(first.warnings)
        assert "stream live-b is silent: nothing from the exchange for BETAUSDT" in warnings
        assert "stream live-c is dead: no heartbeat for 50s" in warnings
        assert "stream live-e is unstopped" in warnings
        # the commands went out as the job would send them: the record's start, the same queue_id
        sent = asyncio.run(_commands(settings))
        start_c = next(c for c in sent if c.queue_id == "live-c")
        assert (start_c.command, start_c.type, start_c.symbols, start_c.market) == (
            "start",
            "ws_orderbook",
            list(SYMBOLS),
            "spot",
        )
        assert start_c.target == "loader-ws-orderbook"
        assert [c.command for c in sent if c.queue_id == "live-e"] == ["stop"]

        # the live assets: records landed (a), heard but nothing new is still news (b: 4 records)
        (mat,) = _events_of(first, dg.AssetMaterialization, LIVE_AGG_TRADES)
        assert mat.metadata["new_records"].value == 50  # live-e is not wanted: not counted
        assert "| live-a | ws_agg_trades | spot | 2 | streaming | 50 |" in mat.metadata["streams"].value
        assert _check(first, LIVE_AGG_TRADES).passed
        candles = _check(first, LIVE_CANDLES)
        assert (
            not candles.passed
            and candles.description == "live-b silent: nothing from the exchange for BETAUSDT"
        )
        book = _check(first, LIVE_BOOK)
        assert not book.passed and book.description.startswith("live-c dead: no heartbeat for 50s")
        assert [e for e in first.events if e.asset_key.path == [LIVE_TRADES]] == []  # nothing wanted there
        for event in first.events:  # what the daemon does with a sensor's asset events
            instance.report_runless_asset_event(event)

        # The fresh check run by hand judges the same way from what the sensor recorded, at the time it
        # runs (here with a 30 s dead window, so that live-a, heard at t - 1, is still fresh then).
        by_hand_settings = settings.model_copy(update={"live_heartbeat_s": 10.0})
        selection = [dg.AssetCheckKey(dg.AssetKey(a), FRESH_CHECK) for a in (LIVE_AGG_TRADES, LIVE_BOOK)]
        by_hand = dg.define_asset_job("fresh_by_hand", selection=dg.AssetSelection.checks(*selection))
        checks = dg.Definitions(
            assets=LIVE_SPECS,
            asset_checks=LIVE_CHECKS,
            jobs=[by_hand],
            resources=resources_for(by_hand_settings),
        )
        result = checks.resolve_job_def("fresh_by_hand").execute_in_process(
            instance=instance, raise_on_error=False
        )
        by_asset = {e.asset_key.path[0]: e for e in result.get_asset_check_evaluations()}
        assert by_asset[LIVE_AGG_TRADES].passed
        assert not by_asset[LIVE_BOOK].passed and "live-c dead" in (by_asset[LIVE_BOOK].description or "")

        # A second later, nothing new: no repeated warning, nothing sent again (once a minute at most);
        # live-a was heard 2 s ago (fresh), landed nothing since: an observation, not a materialization.
        second = streams_tick(instance, settings, db, first.cursor, now=t + 1)
        assert second.warnings == [] and second.sent == []
        assert _events_of(second, dg.AssetMaterialization, LIVE_AGG_TRADES) == []
        (obs,) = _events_of(second, dg.AssetObservation, LIVE_AGG_TRADES)
        assert obs.metadata["new_records"].value == 0 and _check(second, LIVE_AGG_TRADES).passed

        # A minute on: live-a and live-b have gone quiet too; the three are sent their start again (live-c
        # a minute after its first), live-e its stop.
        third = streams_tick(instance, settings, db, second.cursor, now=t + 61)
        assert sorted(third.sent) == ["start live-a", "start live-b", "start live-c", "stop live-e"]
        assert "stream live-a is dead" in "\n".join(third.warnings)
        assert not _check(third, LIVE_AGG_TRADES).passed


def _days_before(now: float) -> tuple[date, date, date, date]:
    """Yesterday and the three days before it (UTC) at ``now``."""
    today = datetime.fromtimestamp(now, UTC).date()
    return tuple(today - timedelta(days=n) for n in (1, 2, 3, 4))  # type: ignore[return-value]


def _candles(market: Market, symbol: str, day: date, drop_last_hour: bool = False) -> list[dict]:
    start = day_start_ms(day)
    end = start + DAY_MS - (60 * MINUTE_MS if drop_last_hour else 0)
    rows = market.klines(symbol, "5m", start, end - 1, 1000, now_ms=start + 2 * DAY_MS)
    return page_docs(symbol, "5m", "ws", "live-ws_candles_5m-spot", rows)


def test_days_streams_completed_are_recorded_once_and_never_a_runs(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(partitions=1, universe=SYMBOLS, interval="5m")
    market = Market.from_config(
        config_from_mapping(
            {
                "seed": 5,
                "symbols": [
                    {
                        "name": s,
                        "base_price": 10.0,
                        "tick_size": "0.01",
                        "step_size": "0.01",
                        "listing": "2024-01-01",
                    }
                    for s in SYMBOLS
                ],
            }
        )
    )
    now = time.time()
    # DAY_1 (yesterday): complete, from the stream; DAY_2: complete, but a run materialized it (the
    # run's); DAY_3: its last hour missing for BETA (waits); DAY_4: complete, but a load of it is under
    # way (the run's)
    DAY_1, DAY_2, DAY_3, DAY_4 = _days_before(now)
    with store_from_settings(settings) as db:
        for day in (DAY_1, DAY_2, DAY_3, DAY_4):
            for s in SYMBOLS:
                db.upsert(CANDLES, _candles(market, s, day, drop_last_hour=day == DAY_3 and s == "BETAUSDT"))
        _want(db, "start", "ws_candles_5m", "live-ws_candles_5m-spot", now - 60, created=now - 4 * 86_400)
        # a load of DAY_4 under way (its step owns the day), and a stream of another market: ignored
        loading = TaskRecord(
            queue_id="wf-load",
            symbol="ALPHAUSDT",
            type="api_candles_5m",
            time_range=format_time_range(DAY_4, DAY_4),
        )
        db.put_task(replace(loading, status="loading"))

    key = dg.AssetKey(candles_asset("5m"))
    with dg.instance_for_test() as instance, store_from_settings(settings) as db:
        for s in SYMBOLS:
            instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=f"{DAY_2}|{s}"))
        tick = streams_tick(instance, settings, db, None, now=now)
        # symbol by symbol: ALPHA's DAY_3 is complete (BETA's is not, and waits)
        assert sorted(tick.recorded) == sorted(
            (candles_asset("5m"), k)
            for k in (f"{DAY_1}|ALPHAUSDT", f"{DAY_3}|ALPHAUSDT", f"{DAY_1}|BETAUSDT")
        )
        assert instance.get_dynamic_partitions("symbols") == list(SYMBOLS)  # the stream's symbols
        waits = [line for line in tick.info if "waits" in line]
        assert waits == [
            f"candles_5m {DAY_3} BETAUSDT (stream live-ws_candles_5m-spot) waits: "
            "12 candles missing: BETAUSDT (12)"
        ]
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[f"{DAY_1}|BETAUSDT"]), limit=5
        ).records
        assert record.run_id == "" and record.asset_materialization is not None
        meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        assert (meta["expected"], meta["stored"], meta["missing"], meta["downtime"]) == (288, 288, 0, 0)
        assert meta["stream"] == "live-ws_candles_5m-spot"
        # DAY_2's two from the run, three from the stream
        assert len(instance.fetch_materializations(key, limit=10).records) == 5
        again = streams_tick(instance, settings, db, tick.cursor, now=now + 1)
        assert again.recorded == []  # recorded once
        assert [line for line in again.info if "waits" in line] == []  # said once

        # the graph trigger takes it from there: DAY_1's graph is requested (DAY_2, the run's, waits
        # for DAY_3's hole in its trailing window)
        requests = graph_requests(instance, settings, db, None).requests
        assert [r.partition_key for r in requests] == [DAY_1.isoformat()]


def _agg_docs(market: Market, symbol: str, start_ms: int, end_ms: int, skip: int | None = None) -> list[dict]:
    """The simulator's aggregate trades of ``[start_ms, end_ms)`` as store documents (``skip``: an id
    left out)."""
    got = market.agg_trades(symbol, end_ms + DAY_MS, limit=1000, start_ms=start_ms, end_ms=end_ms - 1)
    rows = []
    while got:
        rows += [[e["a"], e["p"], e["q"], e["f"], e["l"], e["T"], e["m"]] for e in got if e["a"] != skip]
        got = market.agg_trades(
            symbol, end_ms + DAY_MS, limit=1000, from_id=got[-1]["a"] + 1, end_ms=end_ms - 1
        )
    return decode_record(encode_record(trade_page(rows, symbol, "agg", "ws", "live-ws_agg_trades-spot")))[
        "docs"
    ]


def test_a_day_of_aggregate_trades_is_complete_between_its_neighbours(
    make_settings: Callable[..., Settings],
) -> None:
    """Ids are consecutive: the last id stored before the day and the first after it bound the day's
    span, so the store alone tells a complete day; a symbol with a hole, or without its neighbours,
    keeps the day waiting."""
    settings = make_settings(partitions=1)
    config = config_from_mapping(
        {
            "seed": 8,
            "symbols": [
                {
                    "name": s,
                    "base_price": 10.0,
                    "tick_size": "0.01",
                    "step_size": "0.01",
                    "listing": "2024-01-01",
                    "trades_per_minute": 0.5,
                }
                for s in SYMBOLS
            ],
        }
    )
    market = Market.from_config(config)
    now = time.time()
    DAY_1, DAY_2, _, _ = _days_before(now)
    first, last = day_start_ms(DAY_2) - 3 * 3_600_000, day_start_ms(DAY_1) + 3 * 3_600_000
    with store_from_settings(settings) as db:
        for s in SYMBOLS:  # DAY_2 whole with its neighbours; DAY_1 with a hole in BETA
            hole = None
            if s == "BETAUSDT":
                hole = _agg_docs(market, s, day_start_ms(DAY_1), day_start_ms(DAY_1) + DAY_MS)[5]["id"]
            db.upsert(TRADES, _agg_docs(market, s, first, last + DAY_MS, skip=hole))
        _want(db, "start", "ws_agg_trades", "live-ws_agg_trades-spot", now - 60, created=now - 3 * 86_400)
    with dg.instance_for_test() as instance, store_from_settings(settings) as db:
        tick = streams_tick(instance, settings, db, None, now=now)
        # symbol by symbol: BETA's DAY_1 has a hole (waits), ALPHA's is whole
        assert sorted(tick.recorded) == sorted(
            (AGG_TRADES, k) for k in (f"{DAY_2}|ALPHAUSDT", f"{DAY_2}|BETAUSDT", f"{DAY_1}|ALPHAUSDT")
        )
        (waits,) = [line for line in tick.info if "waits" in line and str(DAY_1) in line]
        assert waits.endswith("waits: incomplete: BETAUSDT (1)")
        day_ids = {
            s: [d["id"] for d in _agg_docs(market, s, day_start_ms(DAY_2), day_start_ms(DAY_2) + DAY_MS)]
            for s in SYMBOLS
        }
        for s in SYMBOLS:
            (record,) = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(AGG_TRADES), asset_partitions=[f"{DAY_2}|{s}"]),
                limit=5,
            ).records
            meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}  # type: ignore[union-attr]
            assert meta["expected"] == meta["stored"] == len(day_ids[s]) > 0
