"""loader-api-trades: aggTrades and trades, simulator -> loader -> Kafka -> connector -> SQLite.

One module fixture runs a simulator with a low-activity symbol (``TINYUSDT``: 12 aggregate trades a
minute, ~19k trades a day, with the first 2.5 hours of the day down, so the first-id search walks
hours) and loads one day of each kind from REST (stored by an in-process connector) and from the
bulk archive (read back from Kafka). The tests reconcile them with the simulator's own market model
(ids, counts, Σ qty per minute against the 1m klines), with each other (identical but for
``source``), check the governor's weight per request, deterministic keys, and the trades ledger
finding (and the loader repairing) a gap made by deleting stored trades.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streamforge_pipelines.datasets import TRADES
from streamforge_pipelines.intervals import DAY_MS, MINUTE_MS, day_start_ms
from streamforge_pipelines.kafka import ensure_topics_sync, make_producer
from streamforge_pipelines.partitions import day_symbol_key, ensure_symbols
from streamforge_pipelines.protocol import (
    Command,
    ProtocolError,
    decode_record,
    encode_record,
    format_time_range,
    trade_page,
)
from streamforge_pipelines.queue_manager import TradesReport, TradesRequest, build_commands, load
from streamforge_pipelines.queue_manager.telemetry import EventFollower
from streamforge_pipelines.queue_manager.trades_ledger import (
    check_id_day,
    exchange_day_span,
    missing_id_ranges,
    repair_plan,
)
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.config import config_from_mapping
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.store import store_from_settings
from streamforge_pipelines.workers import run_task
from streamforge_pipelines.workers.archive_client import ArchiveNotAvailable, parse_trades_csv, trades_path
from streamforge_pipelines.workers.checkpoint import CheckpointStore
from streamforge_pipelines.workers.connector import Connector
from streamforge_pipelines.workers.dispatcher import loader_for
from streamforge_pipelines.workers.errors import TaskInvalid
from streamforge_pipelines.workers.exchange_client import BinanceRestClient
from streamforge_pipelines.workers.governor import WeightGovernor
from streamforge_pipelines.workers.loader_task import LoadResult, task_fingerprint
from streamforge_pipelines.workers.loader_trades import (
    TRADES_LOADER,
    plan_trade_sources,
)

SYMBOL = "TINYUSDT"
DAY = date(2025, 3, 10)  # a microsecond archive file (spot files from 2025-01-01 on)
DOWN_UNTIL_MS = day_start_ms(DAY) + 150 * MINUTE_MS  # 02:30
CONFIG = config_from_mapping(
    {
        "seed": 7,
        "symbols": [
            "BTCUSDT",
            {
                "name": SYMBOL,
                "base_price": 5.0,
                "tick_size": "0.001",
                "step_size": "0.01",
                "quote_volume_per_minute": 3000.0,
                "trades_per_minute": 25.0,
                "listing": "2024-01-01",
            },
        ],
        "downtime": [{"start": "2025-03-10T00:00:00Z", "end": "2025-03-10T02:30:00Z", "symbols": [SYMBOL]}],
    }
)
#: Seconds everything may take to be stored before a test fails.
STORED_WITHIN_S = 90.0
#: The weights the simulator charges (reference section 1.5 / 1.6).
AGG_WEIGHT, HISTORICAL_WEIGHT = 4, 25
#: aggTrades requests of the first-id search: hours 00 and 01 are down, 02 has trades.
SEARCH_REQUESTS = 3


def _settings(bootstrap: str, data_dir: Path) -> Settings:
    suffix = uuid.uuid4().hex[:10]
    settings = Settings.from_env(
        {},
        data_dir=data_dir,
        kafka_bootstrap_servers=bootstrap,
        topic_control=f"queue-control.{suffix}",
        topic_events=f"queue-events.{suffix}",
        topic_candles=f"sf.candles.v1.{suffix}",
        topic_candles_usdm=f"sf.candles-usdm.v1.{suffix}",
        topic_trades=f"sf.trades.v1.{suffix}",
        topic_checkpoints=f"sf.checkpoints.v1.{suffix}",
        data_partitions=2,
        consumer_group=f"connector-{suffix}",
        loader_concurrency=4,
    )
    ensure_topics_sync(bootstrap, settings.topics())
    return settings


def _command(task_type: str, source: str, *, topic: str | None = None, **extra: Any) -> Command:
    return Command(
        command="start",
        queue_id=f"wf-{SYMBOL.lower()}-{task_type}-{DAY:%Y%m%d}-{uuid.uuid4().hex[:6]}",
        target="loader-producer",
        symbol=SYMBOL,
        type=task_type,
        time_range=format_time_range(DAY, DAY),
        kafka_topic=topic,
        source=source,  # type: ignore[arg-type]
        **extra,
    )


async def _wait_stored(follower: EventFollower, queue_ids: set[str]) -> None:
    """Until the connector acknowledged the end markers of every task (bounded)."""
    pending = set(queue_ids)
    deadline = time.monotonic() + STORED_WITHIN_S
    while pending:
        if time.monotonic() > deadline:
            pytest.fail(f"not stored within {STORED_WITHIN_S:.0f}s: {sorted(pending)}")
        for e in await follower.poll(timeout_ms=200):
            if e.component == "arango-connector" and e.status == "finished":
                pending.discard(e.queue_id)


@dataclass
class Loaded:
    settings: Settings
    base_url: str
    #: run name -> (result, governor of the run)
    runs: dict[str, tuple[LoadResult, WeightGovernor]]
    #: run name -> documents read back from its archive topic
    archive_docs: dict[str, list[dict[str, Any]]]
    #: (kind, source) of each run
    kinds: dict[str, str]


@pytest.fixture(scope="module")
def loaded(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, read_docs) -> Iterator[Loaded]:
    settings0 = _settings(kafka_bootstrap, tmp_path_factory.mktemp("trades"))
    archive_topic = settings0.topic_trades + ".archive"
    ensure_topics_sync(kafka_bootstrap, {archive_topic: 2})

    async def main() -> Loaded:
        async with SimulatorServer(config=CONFIG) as sim:
            settings = settings0.model_copy(update={"exchange_url": sim.base_url})
            store = store_from_settings(settings)
            stop = asyncio.Event()
            connector = Connector(settings, store)  # default collections: trades topic -> trades
            connector_task = asyncio.create_task(connector.run(stop))
            producer = make_producer(kafka_bootstrap)
            await producer.start()
            runs: dict[str, tuple[LoadResult, WeightGovernor]] = {}
            archive_docs: dict[str, list[dict[str, Any]]] = {}
            try:
                # The published rate limit read up front (once per process): each run's requests and
                # weight are then its own, whichever runs first.
                async with BinanceRestClient(sim.base_url, governor=WeightGovernor(1_000_000)) as client:
                    await client.apply_exchange_limit()
                async with EventFollower(kafka_bootstrap, settings.topic_events) as follower:
                    plan = {
                        "agg-rest": _command("api_agg_trades", "rest"),
                        "trade-rest": _command("api_trades", "rest"),
                        "agg-auto": _command("api_agg_trades", "auto", topic=archive_topic),
                        "trade-archive": _command("api_trades", "archive", topic=archive_topic),
                    }
                    for name, cmd in plan.items():
                        gov = WeightGovernor(1_000_000)
                        runs[name] = (
                            await run_task(cmd, settings, producer=producer, governor=gov),
                            gov,
                        )
                    await _wait_stored(follower, {plan["agg-rest"].queue_id, plan["trade-rest"].queue_id})
                    # the same task again under a new queue_id: upserts by key, nothing added
                    again = _command("api_agg_trades", "rest")
                    gov = WeightGovernor(1_000_000)
                    runs["agg-rest-again"] = (
                        await run_task(again, settings, producer=producer, governor=gov),
                        gov,
                    )
                    await _wait_stored(follower, {again.queue_id})
                docs = await read_docs(kafka_bootstrap, archive_topic)
                for name, cmd in plan.items():
                    if cmd.kafka_topic == archive_topic:
                        archive_docs[name] = [d for d in docs if d["queue_id"] == cmd.queue_id]
            finally:
                await producer.stop()
                stop.set()
                await connector_task
                store.close()
            kinds = {"agg-rest": "agg", "trade-rest": "trade", "agg-auto": "agg", "trade-archive": "trade"}
            return Loaded(settings, sim.base_url, runs, archive_docs, kinds)

    yield asyncio.run(main())


def _truth(kind: str) -> tuple[int, int]:
    """The simulator's ``[first_id, end_id)`` of the day's aggregate trades / trades."""
    market = Market.from_config(CONFIG)
    start = day_start_ms(DAY)
    at = 1 if kind == "agg" else 0
    return market.trades_before(SYMBOL, start)[at], market.trades_before(SYMBOL, start + DAY_MS)[at]


def _minute_klines() -> dict[int, list[Any]]:
    market = Market.from_config(CONFIG)
    start = day_start_ms(DAY)
    rows = market.klines(SYMBOL, "1m", start, start + DAY_MS - 1, 1500, start + 10 * DAY_MS)
    return {r[0]: r for r in rows}


def _stored(settings: Settings, kind: str) -> list[dict[str, Any]]:
    start = day_start_ms(DAY)
    with store_from_settings(settings) as store:
        return store.read(TRADES, (SYMBOL, kind), start, start + DAY_MS)


# ------------------------------------------------------------------------------------- reconcile


@pytest.mark.parametrize("kind", ["agg", "trade"])
def test_rest_load_reconciles_exactly_with_the_simulator(loaded: Loaded, kind: str) -> None:
    first, end = _truth(kind)
    docs = _stored(loaded.settings, kind)
    assert end - first > 15_000  # a real day's worth, not a trivial one
    assert [d["id"] for d in docs] == list(range(first, end))  # consecutive ids, nothing missing
    assert docs[0]["time"] >= DOWN_UNTIL_MS  # nothing in the downtime
    assert loaded.runs[f"{kind}-rest"][0].records == end - first
    assert {d["key"] for d in docs} == {f"{SYMBOL}:{kind}:{i}" for i in range(first, end)}
    # Σ qty per minute == the 1m klines' volume, Σ taker-buy qty == taker-buy volume
    volume: dict[int, Decimal] = defaultdict(Decimal)
    taker: dict[int, Decimal] = defaultdict(Decimal)
    count: dict[int, int] = defaultdict(int)
    quote: dict[int, Decimal] = defaultdict(Decimal)
    for d in docs:
        minute = d["time"] - d["time"] % MINUTE_MS
        volume[minute] += Decimal(d["qty"])
        count[minute] += 1
        if not d["is_buyer_maker"]:
            taker[minute] += Decimal(d["qty"])
        if kind == "trade":
            quote[minute] += Decimal(d["quote_qty"])
    klines = _minute_klines()
    assert sorted(volume) == sorted(klines)
    for minute, k in klines.items():
        assert volume[minute] == Decimal(k[5]), minute
        assert taker[minute] == Decimal(k[9]), minute
        if kind == "trade":
            assert count[minute] == k[8], minute
            assert quote[minute] == Decimal(k[7]), minute
    if kind == "agg":  # every aggregate trade spans its trades' ids
        assert all(d["first_trade_id"] <= d["last_trade_id"] for d in docs)
        assert sum(d["last_trade_id"] - d["first_trade_id"] + 1 for d in docs) == sum(
            k[8] for k in klines.values()
        )


@pytest.mark.parametrize(("kind", "run"), [("agg", "agg-auto"), ("trade", "trade-archive")])
def test_archive_records_equal_rest_records_but_for_source(loaded: Loaded, kind: str, run: str) -> None:
    result, _ = loaded.runs[run]
    assert result.requests == 0  # a closed day in auto, and archive mode: no REST weight spent
    assert result.days_by_source == {"archive": 1, "rest": 0}
    archive = loaded.archive_docs[run]
    rest = _stored(loaded.settings, kind)
    assert {d["source"] for d in archive} == {"binance-archive"}
    assert {d["source"] for d in rest} == {"binance-rest"}

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in ("source", "queue_id")}

    assert [strip(d) for d in archive] == [strip(d) for d in rest]  # the microseconds came back as ms


def test_rerun_adds_nothing_keys_are_deterministic(loaded: Loaded) -> None:
    first, end = _truth("agg")
    again, _ = loaded.runs["agg-rest-again"]
    assert again.records == end - first  # loaded again ...
    start = day_start_ms(DAY)
    with store_from_settings(loaded.settings) as store:
        assert store.count(TRADES, (SYMBOL, "agg"), start, start + DAY_MS) == end - first  # ... stored once
        span = store.order_span(TRADES, (SYMBOL, "agg"), start, start + DAY_MS)
        assert span == (first, end - 1, end - first)


@pytest.mark.parametrize(
    ("run", "page_weight"), [("agg-rest", AGG_WEIGHT), ("trade-rest", HISTORICAL_WEIGHT)]
)
def test_governor_is_charged_the_weight_of_each_request(loaded: Loaded, run: str, page_weight: int) -> None:
    result, gov = loaded.runs[run]
    first, end = _truth(loaded.kinds[run])
    pages = result.requests - SEARCH_REQUESTS
    # the pages the data needs (the last one also holds the next day's first trades), plus at most the
    # LOADER_CONCURRENCY - 1 pages already in flight when the end was seen
    needed = math.ceil((end - first + 1) / 1000)
    assert needed <= pages <= needed + loaded.settings.loader_concurrency - 1
    assert gov.total_weight == SEARCH_REQUESTS * AGG_WEIGHT + pages * page_weight
    assert gov.requests == result.requests
    assert (result.http_429, result.http_418, result.retries) == (0, 0, 0)
    assert result.pages == math.ceil((end - first) / 1000)  # one Kafka message per <= 1000 trades


# ------------------------------------------------------------------------------------------ ledger


def test_ledger_finds_a_gap_and_the_repair_fills_it(loaded: Loaded) -> None:
    """Runs last: it deletes stored trades, then repairs them."""
    first, end = _truth("agg")
    settings = loaded.settings
    holes = [(first, first + 5), (first + 7000, first + 8234), (end - 1, end)]  # edges included
    with sqlite3.connect(settings.sqlite_path) as conn:
        for a, b in holes:
            conn.execute(
                'DELETE FROM "trades" WHERE "symbol" = ? AND "kind" = ? AND "id" >= ? AND "id" < ?',
                (SYMBOL, "agg", a, b),
            )

    async def main() -> tuple[Any, Any, Any]:
        async with SimulatorServer(config=CONFIG) as sim:
            live = settings.model_copy(update={"exchange_url": sim.base_url})
            async with BinanceRestClient(sim.base_url, governor=WeightGovernor(1_000_000)) as client:
                span = await exchange_day_span(client, SYMBOL, "agg", DAY)
            with store_from_settings(live) as store:
                ledger = check_id_day(store, TRADES, (SYMBOL, "agg"), DAY, span)
                only_store = check_id_day(store, TRADES, (SYMBOL, "agg"), DAY)
            plan = repair_plan(ledger)
            assert plan is not None
            (command,) = build_commands(TradesRequest((SYMBOL,), "agg", DAY, DAY), live, plans=[plan])
            assert command.kafka_topic == live.topic_trades
            assert command.id_ranges == list(plan.id_ranges or ())
            stop = asyncio.Event()
            store = store_from_settings(live)
            connector_task = asyncio.create_task(Connector(live, store).run(stop))
            try:
                async with EventFollower(
                    settings.kafka_bootstrap_servers or "", live.topic_events
                ) as follower:
                    result = await run_task(command, live, governor=WeightGovernor(1_000_000))
                    await _wait_stored(follower, {command.queue_id})
            finally:
                stop.set()
                await connector_task
                store.close()
            with store_from_settings(live) as store:
                after = check_id_day(store, TRADES, (SYMBOL, "agg"), DAY, span)
            return (span, ledger, only_store), result, after

    (span, ledger, only_store), result, after = asyncio.run(main())
    assert span == (first, end - 1)
    assert ledger.status == "missing"
    assert ledger.missing_ranges == holes
    assert (ledger.expected, ledger.stored) == (end - first, end - first - sum(b - a for a, b in holes))
    # without the exchange's span only the inner hole shows: the edges look like the day's bounds
    assert only_store.missing_ranges == [holes[1]]
    assert result.records == sum(b - a for a, b in holes)  # only the missing ids were fetched
    assert after.status == "complete" and after.stored == end - first


# -------------------------------------------------------------------------------------- units


def test_trade_pages_validate_in_bulk_and_name_the_bad_field() -> None:
    rows = [
        [1, "1.5", "2.0", 10, 12, 1_700_000_000_000, True],
        [2, "1.6", "1.0", 13, 13, 1_700_000_000_001, False],
    ]
    value = decode_record(encode_record(trade_page(rows, "BTCUSDT", "agg", "binance-rest", "q1")))
    assert value["record"] == "trades" and value["kind"] == "agg" and value["queue_id"] == "q1"
    assert value["docs"][0]["key"] == "BTCUSDT:agg:1"
    assert value["docs"][1]["quote_qty"] is None and value["docs"][1]["is_buyer_maker"] is False
    trade = decode_record(
        encode_record(
            trade_page([[5, "1.5", "2.0", "3.0", 9, True]], "BTCUSDT", "trade", "binance-rest", "q2")
        )
    )
    assert trade["docs"][0]["key"] == "BTCUSDT:trade:5" and trade["docs"][0]["first_trade_id"] is None
    bad = [
        ([[1, 1.5, "2.0", 10, 12, 5, True]], r"trades\.rows\[0\]\.price: expected str"),
        ([[1, "1.5", "2.0", 10, 12, 5, "yes"]], r"trades\.rows\[0\]\.is_buyer_maker: expected bool"),
        (
            [[2, "1", "1", 1, 1, 5, True], [2, "1", "1", 1, 1, 5, True]],
            r"trades\.rows\[1\]\.id: 2 does not follow",
        ),
        ([[1, "1.5"]], r"trades\.rows\[0\]: expected a agg array of 7 fields, got 2"),
    ]
    for rows_, message in bad:
        with pytest.raises(ProtocolError, match=message):
            decode_record(encode_record(trade_page(rows_, "BTCUSDT", "agg", "binance-rest", "q")))
    with pytest.raises(ProtocolError, match=r"trades\.kind"):
        decode_record(encode_record(trade_page([], "BTCUSDT", "tick", "binance-rest", "q")))


def test_archive_csv_parsing_micros_and_booleans() -> None:
    agg = (
        b"7,4.18300000,11.51000000,14,15,1741564802990000,False,True\n"
        b"8,4.1,1.0,16,16,1741564802991000,True,True\n"
    )
    assert parse_trades_csv(agg, "agg") == [
        [7, "4.18300000", "11.51000000", 14, 15, 1741564802990, False],
        [8, "4.1", "1.0", 16, 16, 1741564802991, True],
    ]
    um = b"id,price,qty,quote_qty,time,is_buyer_maker\n3,1.0,2.0,2.0,1700000000000,true\n"
    assert parse_trades_csv(um, "trade") == [[3, "1.0", "2.0", "2.0", 1700000000000, True]]
    assert trades_path("BTCUSDT", "agg", "2025-03-10") == (
        "data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2025-03-10.zip"
    )
    assert (
        trades_path("BTCUSDT", "trade", "2025-03")
        == "data/spot/monthly/trades/BTCUSDT/BTCUSDT-trades-2025-03.zip"
    )


def test_missing_id_ranges_and_source_plan() -> None:
    assert missing_id_ranges([], 10, 15) == [(10, 15)]
    assert missing_id_ranges([10, 11, 13, 14], 10, 15) == [(12, 13)]
    assert missing_id_ranges([8, 12, 20], 10, 15) == [(10, 12), (13, 15)]
    days = [date(2026, 11, 22), date(2026, 11, 24)]
    now = day_start_ms(date(2026, 11, 25)) + 3_600_000
    assert plan_trade_sources(days, now, "auto") == [(days[0], "archive"), (days[1], "rest")]
    with pytest.raises(TaskInvalid, match=r"command\.source"):
        plan_trade_sources(days, now, "ftp")


def test_dispatch_and_command_kinds() -> None:
    assert _command("api_agg_trades", "rest").trade_kind() == "agg"
    assert _command("api_trades", "rest").trade_kind() == "trade"
    assert loader_for(_command("api_trades", "rest").type) is TRADES_LOADER
    candles = _command("api_agg_trades", "rest").model_dump() | {"type": "api_candles_1m"}
    with pytest.raises(ProtocolError, match=r"command\.type: expected api_agg_trades or api_trades"):
        Command(**candles).trade_kind()
    # the validator refuses a type no loader has, first; loader_for still does for one built around it
    with pytest.raises(ProtocolError, match=r"^command\.type: no loader for this type.*got 'api_ticks'$"):
        Command(**(candles | {"type": "api_ticks"}))
    with pytest.raises(TaskInvalid, match="api_agg_trades, api_trades"):
        loader_for(Command.model_construct(**(candles | {"type": "api_ticks"})).type)


def test_resume_from_a_checkpoint_fetches_only_the_rest(
    loaded: Loaded, kafka_bootstrap: str, read_docs
) -> None:
    """A task whose checkpoint says ids below ``next_id`` are acknowledged continues from there."""
    first, end = _truth("agg")
    settings = loaded.settings
    topic = settings.topic_trades + ".resume"
    ensure_topics_sync(kafka_bootstrap, {topic: 2})
    command = _command("api_agg_trades", "rest", topic=topic)
    done = 5000
    # what the loader would have written after 5 pages were acknowledged
    checkpoint = {
        "queue_id": command.queue_id,
        "task": task_fingerprint(command, topic),
        "next_id": first + done,
        "after_ms": DOWN_UNTIL_MS + 1,
        "records": done,
        "pages": 5,
        "partitions": {"0": done},
        "days_by_source": {"archive": 0, "rest": 0},
    }
    checkpoints = CheckpointStore(
        kafka_bootstrap, settings.topic_checkpoints, entries={command.queue_id: checkpoint}
    )

    async def main() -> tuple[LoadResult, list[dict[str, Any]]]:
        async with SimulatorServer(config=CONFIG) as sim:
            live = settings.model_copy(update={"exchange_url": sim.base_url})
            result = await run_task(
                command, live, governor=WeightGovernor(1_000_000), checkpoints=checkpoints
            )
        return result, await read_docs(kafka_bootstrap, topic)

    result, docs = asyncio.run(main())
    assert [d["id"] for d in docs] == list(range(first + done, end))  # only what was not acknowledged
    assert result.records == end - first  # the checkpoint's counts carry over
    assert result.days_by_source == {"archive": 0, "rest": 1}
    final = checkpoints.get(command.queue_id)
    assert final is not None and final["complete"] is True and final["next_id"] == end


def test_queue_manager_load_trades_reports_a_complete_ledger(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The path of the ``agg_trades`` asset: commands, in-step loaders, connector, trades ledger."""
    settings0 = _settings(kafka_bootstrap, tmp_path / "data")
    request = TradesRequest(symbols=(SYMBOL,), kind="agg", first=DAY, last=DAY, source="auto", run_id="r1")

    async def main() -> TradesReport:
        async with SimulatorServer(config=CONFIG) as sim:
            settings = settings0.model_copy(update={"exchange_url": sim.base_url})
            store = store_from_settings(settings)
            stop = asyncio.Event()
            connector_task = asyncio.create_task(Connector(settings, store).run(stop))
            try:
                return await asyncio.wait_for(load(request, settings, store), STORED_WITHIN_S)
            finally:
                stop.set()
                await connector_task
                store.close()

    report = asyncio.run(main())
    first, end = _truth("agg")
    assert report.ok, report
    assert list(report.tasks.values()) == ["complete"]
    assert report.loaded == report.expected == report.stored == end - first
    assert report.repaired == 0 and report.exchange.days_by_source == {"archive": 1, "rest": 0}
    (day,) = report.ledger
    assert (day.first_id, day.last_id, day.status) == (first, end - 1, "complete")
    with store_from_settings(settings0) as store:
        (task,) = store.list_tasks(run_id="r1")
    assert task.type == "api_agg_trades" and task.status == "complete"


def test_agg_trades_asset_materializes_a_partition(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The Dagster asset end to end: simulator and connector on a background loop, the step in Dagster."""
    import dagster as dg

    from streamforge_pipelines.assets.trades import agg_trades
    from streamforge_pipelines.resources import resources_for

    settings = _settings(kafka_bootstrap, tmp_path / "data")
    stack = contextlib.ExitStack()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = SimulatorServer(config=CONFIG)
    stop = asyncio.Event()

    async def start() -> tuple[Connector, asyncio.Task[Any]]:
        await sim.start()
        live = settings.model_copy(update={"exchange_url": sim.base_url})
        connector = Connector(live, store_from_settings(live))
        task = asyncio.create_task(connector.run(stop))
        await asyncio.wait_for(connector.ready.wait(), 30)
        return connector, task

    connector, connector_task = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    # An instance of the test's own (entered): the run never depends on an instance other tests left.
    instance = stack.enter_context(dg.instance_for_test())
    try:
        ensure_symbols(instance, [SYMBOL])
        result = dg.materialize(
            [agg_trades],
            partition_key=day_symbol_key(DAY, SYMBOL),
            resources=resources_for(settings.model_copy(update={"exchange_url": sim.base_url})),
            run_config={"ops": {"agg_trades": {"config": {"source": "rest"}}}},
            instance=instance,
        )
    finally:
        stack.close()

        async def halt() -> None:
            stop.set()
            await connector_task
            connector.store.close()
            await sim.stop()

        asyncio.run_coroutine_threadsafe(halt(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    first, end = _truth("agg")
    assert result.success
    (mat,) = result.asset_materializations_for_node("agg_trades")
    assert mat.metadata["stored_trades"].value == mat.metadata["expected_trades"].value == end - first
    assert mat.metadata["missing_trades"].value == 0
    assert mat.metadata["days_from_rest"].value == 1
    (check,) = result.get_asset_check_evaluations()
    assert check.passed


def test_auto_falls_back_to_rest_for_a_day_the_archive_lacks_and_archive_mode_fails(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings0 = _settings(kafka_bootstrap, tmp_path / "data")

    async def main() -> tuple[LoadResult, BaseException]:
        async with SimulatorServer(config=CONFIG) as sim:
            live = settings0.model_copy(
                update={"exchange_url": sim.base_url, "exchange_archive_url": sim.base_url + "/nothing"}
            )
            auto = await run_task(_command("api_agg_trades", "auto"), live)
            with pytest.raises(ArchiveNotAvailable) as err:
                await run_task(_command("api_agg_trades", "archive"), live)
            return auto, err.value

    auto, err = asyncio.run(main())
    first, end = _truth("agg")
    assert auto.records == end - first
    assert auto.days_by_source == {"archive": 0, "rest": 1}
    assert auto.archive_requests >= 1 and auto.requests > SEARCH_REQUESTS
    assert "404" in str(err)
