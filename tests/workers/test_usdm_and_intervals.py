"""USD-M futures beside spot, and every kline interval, through loader -> Kafka -> connector -> SQLite.

One simulator, one connector and one set of topics serve the whole interval matrix (a module
fixture loads every (market, interval) at once); each parametrized test then reconciles its slice
of the store with the simulator's REST klines, read here with plain HTTP requests: count, order and
every field. The other tests check the USD-M pieces one by one: request weights by ``limit`` as
the simulator charges them, the futures governor, topics and collections by market, the archive
reading the ``futures/um`` files, and the refusal of 1s candles on USD-M.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from click.testing import CliRunner

from streamforge_pipelines import datasets
from streamforge_pipelines.datasets import CANDLES, CANDLES_USDM
from streamforge_pipelines.intervals import INTERVALS, count_open_times, day_range_ms, open_times
from streamforge_pipelines.kafka import ensure_topics_sync, make_producer
from streamforge_pipelines.protocol import (
    Command,
    ProtocolError,
    decode_command,
    format_time_range,
)
from streamforge_pipelines.queue_manager import LoadRequest, build_commands, load
from streamforge_pipelines.queue_manager.telemetry import EventFollower
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.limits import futures_klines_weight
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.store import store_from_settings
from streamforge_pipelines.workers import run_task
from streamforge_pipelines.workers.archive_client import ArchiveClient, daily_klines_path
from streamforge_pipelines.workers.connector import Connector
from streamforge_pipelines.workers.errors import TaskInvalid
from streamforge_pipelines.workers.exchange_client import (
    KLINES_PAGE_LIMITS,
    BinanceRestClient,
    request_weight,
)
from streamforge_pipelines.workers.governor import WeightGovernor, default_governor
from streamforge_pipelines.workers.loader_task import LoadResult, governor_for

SYMBOL = "BTCUSDT"
SEED = 42
#: Intraday intervals and 1d load one day; 3d, 1w and 1M a quarter (2024-01-01 is a Monday).
DAY = (date(2024, 6, 3), date(2024, 6, 3))
QUARTER = (date(2024, 1, 1), date(2024, 3, 31))
LONG_INTERVALS = ("3d", "1w", "1M")
MATRIX = [("spot", i) for i in INTERVALS] + [("usdm", i) for i in INTERVALS if i != "1s"]
#: Seconds the matrix may take to be stored before the test fails (it takes a few).
STORED_WITHIN_S = 90.0
KLINE_FIELDS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base",
    "taker_buy_quote",
)


def _days(interval: str) -> tuple[date, date]:
    return QUARTER if interval in LONG_INTERVALS else DAY


def _command(market: str, interval: str, source: str = "rest", *, tag: str = "") -> Command:
    first, last = _days(interval)
    return Command(
        command="start",
        queue_id=f"wf-{SYMBOL.lower()}-api_candles_{interval}-{first:%Y%m%d}-{market}{tag}{uuid.uuid4().hex[:6]}",
        target="loader-producer",
        symbol=SYMBOL,
        type=f"api_candles_{interval}",
        time_range=format_time_range(first, last),
        source=source,  # type: ignore[arg-type]
        market=market,  # type: ignore[arg-type]
    )


def _settings(bootstrap: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings on the session broker with fresh, uniquely named topics (spot and USD-M), created."""
    suffix = uuid.uuid4().hex[:10]
    settings = Settings.from_env(
        {},
        data_dir=data_dir,
        kafka_bootstrap_servers=bootstrap,
        topic_control=f"queue-control.{suffix}",
        topic_events=f"queue-events.{suffix}",
        topic_candles=f"sf.candles.v1.{suffix}",
        topic_candles_usdm=f"sf.candles-usdm.v1.{suffix}",
        data_partitions=2,
        consumer_group=f"connector-{suffix}",
        task_stall_s=60.0,
        **overrides,
    )
    ensure_topics_sync(bootstrap, settings.topics())
    return settings


async def _rest_klines(base_url: str, market: str, interval: str, start: int, end: int) -> list[list[Any]]:
    """The simulator's klines opening in ``[start, end)``, paged by hand (the reference, not the client)."""
    path, limit = ("/fapi/v1/klines", 1500) if market == "usdm" else ("/api/v3/klines", 1000)
    out: list[list[Any]] = []
    async with aiohttp.ClientSession() as session:
        t = start
        while t < end:
            params = {
                "symbol": SYMBOL,
                "interval": interval,
                "startTime": str(t),
                "endTime": str(end - 1),
                "limit": str(limit),
            }
            async with session.get(base_url + path, params=params) as resp:
                assert resp.status == 200, await resp.text()
                rows = await resp.json()
            if not rows:
                break
            out.extend(rows)
            t = rows[-1][0] + 1
    return out


async def _wait_stored(follower: EventFollower, queue_ids: set[str], timeout_s: float) -> None:
    """Until the connector acknowledged the end marker of every task (bounded; fails naming the rest)."""
    pending = set(queue_ids)
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            pytest.fail(f"not stored within {timeout_s:.0f}s: {sorted(pending)}")
        for e in await follower.poll(timeout_ms=200):
            if e.component == "arango-connector" and e.status == "finished":
                pending.discard(e.queue_id)


@dataclass
class Matrix:
    settings: Settings
    results: dict[tuple[str, str], LoadResult]
    reference: dict[tuple[str, str], list[list[Any]]]
    seconds: float


@pytest.fixture(scope="module")
def matrix(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """Every (market, interval) of :data:`MATRIX` loaded from REST, stored by one in-process connector."""
    settings0 = _settings(kafka_bootstrap, tmp_path_factory.mktemp("matrix"))
    settings0.data_dir.mkdir(parents=True, exist_ok=True)

    async def main() -> Matrix:
        t0 = time.perf_counter()
        async with SimulatorServer(seed=SEED) as sim:
            settings = settings0.model_copy(update={"exchange_url": sim.base_url})
            store = store_from_settings(settings)
            stop = asyncio.Event()
            connector = Connector(settings, store)  # the default collections: both markets' topics
            connector_task = asyncio.create_task(connector.run(stop))
            producer = make_producer(kafka_bootstrap)
            await producer.start()
            try:
                # Each market's published rate limit read up front, as the first of many concurrent
                # tasks would: so every task's request count is its own pages, whichever ran first.
                for market in ("spot", "usdm"):
                    async with BinanceRestClient(sim.base_url, market=market) as client:
                        await client.apply_exchange_limit()
                async with EventFollower(kafka_bootstrap, settings.topic_events) as follower:
                    commands = {(m, i): _command(m, i) for m, i in MATRIX}
                    done = await asyncio.gather(
                        *(run_task(c, settings, producer=producer) for c in commands.values())
                    )
                    results = dict(zip(commands, done, strict=True))
                    await _wait_stored(follower, {c.queue_id for c in commands.values()}, STORED_WITHIN_S)
                reference = {}
                for m, i in MATRIX:
                    start, end = day_range_ms(*_days(i))
                    reference[(m, i)] = await _rest_klines(sim.base_url, m, i, start, end)
            finally:
                await producer.stop()
                stop.set()
                await connector_task
                store.close()
        return Matrix(settings, results, reference, time.perf_counter() - t0)

    yield asyncio.run(main())


@pytest.mark.parametrize(("market", "interval"), MATRIX, ids=[f"{m}-{i}" for m, i in MATRIX])
def test_every_interval_reconciles_with_the_exchange(matrix: Matrix, market: str, interval: str) -> None:
    start, end = day_range_ms(*_days(interval))
    reference = matrix.reference[(market, interval)]
    expected = count_open_times(start, end, interval)
    # the simulator has every candle of the range (no downtime configured): the reference is whole
    assert [r[0] for r in reference] == open_times(start, end, interval)
    assert matrix.results[(market, interval)].records == expected
    with store_from_settings(matrix.settings) as store:
        docs = store.read(datasets.candles(market), (SYMBOL, interval), start, end)
        other = "spot" if market == "usdm" else "usdm"
        others = store.read(datasets.candles(other), (SYMBOL, interval), start, end)
    assert len(docs) == len(reference) == expected
    for doc, row in zip(docs, reference, strict=True):
        assert [doc[f] for f in KLINE_FIELDS] == row[:11], (market, interval, doc["open_time"])
    source = "binance-usdm-rest" if market == "usdm" else "binance-rest"
    assert {d["source"] for d in docs} == {source}
    assert {(d["symbol"], d["interval"]) for d in docs} == {(SYMBOL, interval)}
    # the same keys live in both markets' collections, each with its own market's values
    if interval != "1s":
        assert [d["key"] for d in others] == [d["key"] for d in docs]
        assert [d["open"] for d in others] != [d["open"] for d in docs]


def test_usdm_pages_are_charged_by_limit(matrix: Matrix) -> None:
    print(f"\nthe interval matrix took {matrix.seconds:.1f}s")  # a figure, not a bound: see bench/
    # 1m over a day: spot in 2 pages of <= 1000, USD-M in 3 windows of <= 499 (weight 2 each)
    spot, usdm = matrix.results[("spot", "1m")], matrix.results[("usdm", "1m")]
    assert (spot.requests, usdm.requests) == (2, 3)
    assert (spot.http_429, usdm.http_429) == (0, 0)


# ------------------------------------------------------------------------------- weights, governor


def test_request_weights_follow_the_futures_limit_table() -> None:
    for limit in range(1, 1501):
        assert request_weight("/fapi/v1/klines", {"limit": str(limit)}) == futures_klines_weight(
            {"limit": str(limit)}
        )
    assert [
        request_weight("/fapi/v1/klines", {"limit": str(n)}) for n in (99, 100, 499, 500, 1000, 1001)
    ] == [
        1,
        2,
        2,
        5,
        5,
        10,
    ]
    assert request_weight("/fapi/v1/klines") == 5  # the default limit is 500
    assert request_weight("/api/v3/klines", {"limit": "1000"}) == 2  # spot: 2 at any limit
    assert KLINES_PAGE_LIMITS == {"spot": 1000, "usdm": 499}


def test_usdm_client_charges_what_the_exchange_counts() -> None:
    """The governor's weight equals the simulator's X-MBX-USED-WEIGHT-1M after each USD-M request.

    The simulator's clock stands still (a day after the candles), so every request falls in one
    weight window and its running count is never reset by a minute boundary."""
    start, end = day_range_ms(*DAY)

    async def main() -> list[tuple[int, int]]:
        async with SimulatorServer(seed=SEED, clock=lambda: end + 86_400_000) as sim:
            governor = WeightGovernor(2400, pool="usdm")
            seen = []
            async with BinanceRestClient(sim.base_url, governor=governor, market="usdm") as client:
                minute = 60_000
                for window, limit in ((50, None), (499, None), (1000, None), (1500, None), (10, 1200)):
                    rows = await client.klines(SYMBOL, "1m", start, start + (window - 1) * minute, limit)
                    assert len(rows) == window
                    seen.append((governor.total_weight, client.used_weight_1m))
                with pytest.raises(ValueError, match=r"1\.\.1500"):
                    await client.klines(SYMBOL, "1m", start, start, 1501)
                with pytest.raises(ValueError, match="no 1s klines"):
                    await client.klines(SYMBOL, "1s", start, start)
            return seen

    seen = asyncio.run(main())
    # /fapi/v1/exchangeInfo first (1: the client reads the published limit), then
    # 50 candles -> limit 50 (1), 499 -> 2, 1000 -> 5, 1500 -> 10, an explicit limit 1200 -> 10
    assert [w for w, _ in seen] == [2, 4, 9, 19, 29]
    assert [h for _, h in seen] == [2, 4, 9, 19, 29]  # the exchange's running count of its window


def test_usdm_tasks_get_the_futures_governor(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path, exchange_futures_weight_limit=2400)
    usdm, spot = _command("usdm", "1h"), _command("spot", "1h")
    g_usdm, g_spot = governor_for(usdm, settings), governor_for(spot, settings)
    assert (g_usdm.configured_limit, g_usdm.pool) == (2400, "usdm")
    assert (g_spot.configured_limit, g_spot.pool) == (6000, "spot")
    assert g_usdm is governor_for(usdm, settings)  # the process-wide one of its pool
    # equal limits still make two governors: Binance counts the markets' weight apart
    same = Settings.from_env({}, data_dir=tmp_path, exchange_futures_weight_limit=6000)
    assert governor_for(usdm, same) is not governor_for(spot, same)
    assert default_governor(6000, pool="usdm") is not default_governor(6000, pool="spot")
    shared = governor_for(usdm.model_copy(update={"weight_share": 0.5}), settings)
    assert (shared.configured_limit, shared.share, shared.pool) == (2400, 0.5, "usdm")
    assert Settings.from_env({"EXCHANGE_FUTURES_WEIGHT_LIMIT": "1200"}).exchange_futures_weight_limit == 1200


# ------------------------------------------------------------------- topics, collections, commands


def test_markets_have_their_own_topics_collections_and_commands(tmp_path: Path) -> None:
    settings = Settings.from_env({"KAFKA_TOPIC_CANDLES_USDM": "fut.candles"}, data_dir=tmp_path)
    assert settings.topics()["fut.candles"] == settings.data_partitions
    assert settings.topics()["fut.candles.dlq"] == 1
    assert (settings.candle_topic("spot"), settings.candle_topic("usdm")) == ("sf.candles.v1", "fut.candles")
    assert Settings().topic_candles_usdm == "sf.candles-usdm.v1"
    first, last = DAY
    (usdm,) = build_commands(LoadRequest((SYMBOL,), "5m", first, last, market="usdm"), settings)
    (spot,) = build_commands(LoadRequest((SYMBOL,), "5m", first, last), settings)
    assert (usdm.kafka_topic, usdm.collection_name, usdm.market) == ("fut.candles", "candles_usdm", "usdm")
    assert (spot.kafka_topic, spot.collection_name, spot.market) == ("sf.candles.v1", "candles", "spot")
    assert decode_command(usdm.encode()).market == "usdm"
    # an old command (no market) still parses and means spot
    old = decode_command(
        {
            "command": "start",
            "queue_id": "q1",
            "target": "loader-producer",
            "symbol": SYMBOL,
            "type": "api_candles_5m",
            "time_range": format_time_range(first, last),
        }
    )
    assert old.market is None
    connector = Connector(settings, store_from_settings(settings))
    assert {t: s.collection for t, s in connector.specs.items() if "candles" in s.collection} == {
        "sf.candles.v1": "candles",
        "fut.candles": "candles_usdm",
    }
    connector.store.close()


def test_one_second_candles_are_spot_only() -> None:
    first, last = DAY
    with pytest.raises(ValueError, match="1s candles exist only on spot"):
        LoadRequest((SYMBOL,), "1s", first, last, market="usdm")
    with pytest.raises(ProtocolError, match=r"^command\.market: USD-M futures have no 1s klines"):
        decode_command(
            {
                "command": "start",
                "queue_id": "q1",
                "target": "loader-producer",
                "type": "api_candles_1s",
                "market": "usdm",
            }
        )
    from streamforge_pipelines.cli import main

    runner = CliRunner()
    out = runner.invoke(
        main,
        [
            "worker",
            "loader",
            "--symbol",
            SYMBOL,
            "--interval",
            "1s",
            "--start",
            "2024-06-03",
            "--market",
            "usdm",
        ],
    )
    assert out.exit_code == 2 and "1s candles exist only on spot" in out.output
    assert "Traceback" not in out.output
    bad = runner.invoke(main, ["run", "--market", "coinm"])
    assert bad.exit_code == 2 and "'coinm' is not one of 'spot', 'usdm'" in bad.output
    assert "--market [spot|usdm]" in runner.invoke(main, ["run", "--help"]).output


def test_a_usdm_1s_command_built_around_validation_is_refused_by_the_loader(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    command = Command.model_construct(**{**_command("usdm", "1h").model_dump(), "type": "api_candles_1s"})
    settings = _settings(kafka_bootstrap, tmp_path, exchange_url="http://127.0.0.1:9")
    with pytest.raises(TaskInvalid, match=r"command\.market: USD-M futures have no 1s klines"):
        asyncio.run(run_task(command, settings))


# --------------------------------------------------------------------------------- archive vs REST


def test_usdm_archive_and_rest_records_are_identical_but_for_source(
    kafka_bootstrap: str, tmp_path: Path, read_docs
) -> None:
    day = DAY[0]
    s_archive = _settings(kafka_bootstrap, tmp_path / "a")
    s_rest = _settings(kafka_bootstrap, tmp_path / "r")

    async def main() -> list[tuple[LoadResult, list[dict[str, Any]]]]:
        async with SimulatorServer(seed=SEED) as sim:
            async with ArchiveClient(sim.base_url, market="usdm") as archive:
                header = (await archive._get(daily_klines_path(SYMBOL, "1m", day, "usdm"))).startswith(b"PK")
                assert header  # the futures/um file exists: a zip
            out = []
            for settings, source in ((s_archive, "archive"), (s_rest, "rest")):
                # USD-M REST on its own host (as fapi.binance.com), the archive on another: nothing
                # of a usdm task may go to the spot URL
                urls = {"exchange_futures_url": sim.base_url, "exchange_archive_url": sim.base_url}
                live = settings.model_copy(update={"exchange_url": "http://127.0.0.1:9", **urls})
                result = await run_task(
                    _command("usdm", "1m", source), live, governor=WeightGovernor(100_000, pool="usdm")
                )
                out.append((result, await read_docs(kafka_bootstrap, settings.topic_candles_usdm)))
                assert await read_docs(kafka_bootstrap, settings.topic_candles) == []  # nothing on spot's
            return out

    (r_archive, archive), (r_rest, rest) = asyncio.run(main())
    assert r_archive.days_by_source == {"archive": 1, "rest": 0} and r_archive.requests == 0
    # /fapi/v1/exchangeInfo (the published limit, read by the first REST request), then 3 pages
    assert r_rest.days_by_source == {"archive": 0, "rest": 1} and r_rest.requests == 1 + 3
    assert len(archive) == len(rest) == 1440
    assert [d["open_time"] for d in archive] == open_times(*day_range_ms(day, day), "1m")
    assert {d["source"] for d in archive} == {"binance-usdm-archive"}
    assert {d["source"] for d in rest} == {"binance-usdm-rest"}
    strip = ("source", "queue_id")
    assert [{k: v for k, v in d.items() if k not in strip} for d in archive] == [
        {k: v for k, v in d.items() if k not in strip} for d in rest
    ]
    # futures precision, not spot's 8 decimals
    assert len(archive[0]["open"].split(".")[1]) < 8
    assert daily_klines_path(SYMBOL, "1m", day, "usdm").startswith("data/futures/um/daily/klines/BTCUSDT/1m/")
    with pytest.raises(ValueError, match="no daily 1s"):
        daily_klines_path(SYMBOL, "1s", day, "usdm")


# ------------------------------------------------------------------------------ through the manager


def test_queue_manager_loads_usdm_into_its_collection(kafka_bootstrap: str, tmp_path: Path) -> None:
    first, last = date(2024, 6, 3), date(2024, 6, 4)
    settings0 = _settings(kafka_bootstrap, tmp_path)
    settings0.data_dir.mkdir(parents=True, exist_ok=True)
    request = LoadRequest((SYMBOL, "ETHUSDT"), "1h", first, last, source="auto", market="usdm")

    async def main():
        async with SimulatorServer(seed=SEED) as sim:
            settings = settings0.model_copy(update={"exchange_url": sim.base_url})
            store = store_from_settings(settings)
            stop = asyncio.Event()
            connector_task = asyncio.create_task(Connector(settings, store).run(stop))
            try:
                return await asyncio.wait_for(load(request, settings, store), 60)
            finally:
                stop.set()
                await connector_task
                store.close()

    report = asyncio.run(main())
    assert report.ok, report
    assert (report.expected, report.stored, report.duplicate_keys) == (2 * 48, 2 * 48, 0)
    assert report.exchange.days_by_source == {"archive": 4, "rest": 0}
    with store_from_settings(settings0) as store:
        start, end = day_range_ms(first, last)
        assert store.count(CANDLES_USDM, (SYMBOL, "1h"), start, end) == 48
        assert store.count(CANDLES, (SYMBOL, "1h"), start, end) == 0
        docs = store.read(CANDLES_USDM, (SYMBOL, "1h"), start, end)
    assert {d["source"] for d in docs} == {"binance-usdm-archive"}
    assert orjson.dumps(docs[0])  # plain JSON documents


def test_streamforge_run_main_job_with_market_usdm(make_settings) -> None:
    """`streamforge run --market usdm` as the CLI runs it: Dagster, the stack's connector, usdm collection."""
    from streamforge_pipelines.runner import run_main_job

    settings = make_settings(partitions=2, topic_candles_usdm=f"sf.candles-usdm.v1.{uuid.uuid4().hex[:10]}")
    first, last = date(2024, 6, 3), date(2024, 6, 4)
    request = LoadRequest((SYMBOL,), "15m", first, last, source="auto", market="usdm")
    summary = run_main_job(settings, request)
    assert summary.ok, summary.to_json()
    assert (summary.expected, summary.stored, summary.duplicate_keys) == (2 * 96, 2 * 96, 0)
    assert summary.to_json()["days_by_source"] == {"archive": 2, "rest": 0, "repair": 0}
    with store_from_settings(settings) as db:
        start, end = day_range_ms(first, last)
        assert db.count(CANDLES_USDM, (SYMBOL, "15m"), start, end) == 2 * 96
        assert db.count(CANDLES, (SYMBOL, "15m"), start, end) == 0


def test_usdm_archive_month_matches_rest(kafka_bootstrap: str, tmp_path: Path, read_docs) -> None:
    """A whole past month from the USD-M archive (its monthly or daily files) equals USD-M REST."""
    first, last = date(2024, 2, 1), date(2024, 2, 29)
    settings0 = _settings(kafka_bootstrap, tmp_path)
    command = _command("usdm", "1h", "archive").model_copy(
        update={"time_range": format_time_range(first, last)}
    )

    async def main() -> tuple[LoadResult, list[dict[str, Any]], list[list[Any]]]:
        async with SimulatorServer(seed=SEED) as sim:
            live = settings0.model_copy(update={"exchange_url": sim.base_url})
            result = await run_task(command, live)
            docs = await read_docs(kafka_bootstrap, settings0.topic_candles_usdm)
            return result, docs, await _rest_klines(sim.base_url, "usdm", "1h", *day_range_ms(first, last))

    result, docs, reference = asyncio.run(main())
    assert result.days_by_source == {"archive": 29, "rest": 0} and result.requests == 0
    assert len(docs) == len(reference) == 29 * 24
    assert [[d[f] for f in KLINE_FIELDS] for d in docs] == [r[:11] for r in reference]
    assert {d["source"] for d in docs} == {"binance-usdm-archive"}
