"""Independent proof of fidelity: real third-party Binance clients, pointed at the simulator.

``ccxt`` (sync and ``async_support``) and ``python-binance`` are test dependencies only. Each is
configured so that every base URL it knows points at one simulator served on loopback from a
background thread (its own event loop), and then used exactly as against the real exchange: load
the markets, page klines over several days (spot and USD-M futures), read aggregate trades, trades and
order books, read errors. What the clients return must be exactly the simulator's market
(``Market.klines``, ``agg_trades``, ``trades``, ``depth_snapshot``), contiguous and without
duplicates. A middleware records every request with the simulator's clock reading for it, so each
test also states which simulator routes it proved, and answers that depend on "now" (recent trades,
the book) are recomputed for exactly that instant.

The simulator runs on the wall clock (the clients use it too: ccxt's pagination and python-binance's
earliest-candle probe read ``time.time()``), so the compared ranges are fixed days that are long
closed on any date (they end at :data:`END_MS`, 2024-08-15 00:00 UTC): closed candles are a pure
function of the seed, so the data under test are the same every day. Only ccxt's own pagination
(``paginate: True``) cannot reach back that far (it starts at most ten pages before its clock's
now): those ranges end at :data:`RECENT_END_MS`, a UTC midnight two days back read once per session,
so no range is still open and none depends on the time of day.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from itertools import islice, pairwise
from typing import Any, NamedTuple

import ccxt
import ccxt.async_support as ccxt_async
import pytest
from aiohttp import web
from binance.client import Client
from binance.enums import HistoricalKlinesType
from binance.exceptions import BinanceAPIException

from streamforge_pipelines.intervals import (
    DAY_MS,
    FIXED_INTERVAL_MS,
    HOUR_MS,
    day_start_ms,
    floor_open_time,
    next_open_time,
    open_times,
)
from streamforge_pipelines.simulator import Market, SimulatorServer
from streamforge_pipelines.simulator.rest import NOW_MS
from streamforge_pipelines.simulator.symbols import SCALE
from streamforge_pipelines.simulator.usdm import contract, futures_row

SEED = 8_0808
START_TIMEOUT_S = 10.0
#: End (exclusive) of the compared candle ranges: a fixed UTC midnight, long past.
END_MS = day_start_ms(date(2024, 8, 15))
#: End of the ranges ccxt paginates itself: the UTC midnight two days before the session started.
RECENT_END_MS = time.time_ns() // 1_000_000 // DAY_MS * DAY_MS - 2 * DAY_MS


class Request(NamedTuple):
    """One request the simulator served: path, query and the simulator's clock reading for it."""

    path: str
    query: dict[str, str]
    now_ms: int


class BackgroundSimulator:
    """A :class:`SimulatorServer` on its own event loop in a daemon thread, for synchronous clients.

    Every request it serves is recorded with the simulator's clock reading for it (so answers that
    depend on "now" — recent trades, the order book — can be recomputed from the market exactly);
    :meth:`take` returns and clears them.
    """

    def __init__(self, seed: int) -> None:
        self.server = SimulatorServer(seed=seed, port=0)
        self.market: Market = self.server.market
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self.server.app.middlewares.insert(0, self._record)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simulator", daemon=True)

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)  # the API middleware inside reads the clock once
        finally:
            with self._lock:
                self._requests.append(Request(request.path, dict(request.query), request.get(NOW_MS, -1)))

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(START_TIMEOUT_S)

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(START_TIMEOUT_S)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT_S)
            self._loop.close()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def take(self) -> list[Request]:
        with self._lock:
            out, self._requests = self._requests, []
        return out

    def paths(self) -> list[str]:
        return [r.path for r in self.take()]


@pytest.fixture(scope="module")
def sim() -> Iterator[BackgroundSimulator]:
    simulator = BackgroundSimulator(SEED)
    # The contiguity checks below assume a market without exchange downtime (real gaps).
    assert simulator.market.truth()["downtime"] == []
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture(autouse=True)
def _fresh_log(sim: BackgroundSimulator) -> None:
    sim.take()


# ---------------------------------------------------------------------- helpers


def expected_klines(market: Market, symbol: str, interval: str, start: int, end: int) -> list[list]:
    """The simulator's candles opening in ``[start, end)`` (all closed: ``end`` is in the past)."""
    now = time.time_ns() // 1_000_000
    assert end <= now
    rows: list[list] = []
    t = start
    while t < end:
        page = market.klines(symbol, interval, t, end - 1, 1000, now)
        if not page:
            break
        rows.extend(page)
        t = next_open_time(page[-1][0], interval)
    assert len(rows) == market.count_klines(symbol, interval, start, end, now)
    return rows


def assert_contiguous(times: list[int], interval: str, start: int, end: int) -> None:
    """Exactly one candle per interval step from ``start`` to ``end``: no gap, no duplicate."""
    assert len(set(times)) == len(times), "duplicate candles"
    assert all(next_open_time(a, interval) == b for a, b in pairwise(times)), "gap or disorder"
    assert times == open_times(start, end, interval)


def as_ohlcv(row: list) -> list:
    """A raw kline row as ccxt's unified OHLCV: [open time, open, high, low, close, base volume]."""
    return [row[0], *(float(v) for v in row[1:6])]


def assert_agg_trades_contiguous(rows: list[dict[str, Any]]) -> None:
    """Aggregate ids consecutive, their trade-id ranges adjacent, times non-decreasing."""
    assert rows
    for a, b in pairwise(rows):
        assert b["a"] == a["a"] + 1
        assert b["f"] == a["l"] + 1
        assert b["T"] >= a["T"]
    assert all(r["f"] <= r["l"] for r in rows)


def as_book_side(levels: list[list[str]]) -> list[list[float]]:
    """A raw depth side as ccxt's unified order book side: [[price, amount], ...] as floats."""
    return [[float(price), float(qty)] for price, qty in levels]


def trades_window_start() -> int:
    """An arbitrary past instant (2024-08-14 10:00:07.654 UTC): all trades around it are final."""
    return END_MS - DAY_MS + 10 * HOUR_MS + 7_654


def expected_futures_klines(market: Market, symbol: str, interval: str, start: int, end: int) -> list[list]:
    """The USD-M perpetual's candles: the spot candles shifted by the contract's basis."""
    c = contract(market.symbol(symbol))
    return [futures_row(c, row) for row in expected_klines(market, symbol, interval, start, end)]


def assert_futures_side_is_spot_plus_basis(
    futures: list[list[str]], spot: list[list[str]], market: Market, symbol: str
) -> None:
    """Futures depth levels: the spot book's levels, prices shifted by the basis, same quantities."""
    basis = Decimal(contract(market.symbol(symbol)).basis_units) / SCALE
    assert len(futures) == len(spot)
    for (f_price, f_qty), (s_price, s_qty) in zip(futures, spot, strict=True):
        assert Decimal(f_price) == Decimal(s_price) + basis
        assert Decimal(f_qty) == Decimal(s_qty)


def simulated_urls(api: dict[str, Any], base_url: str) -> dict[str, Any]:
    """ccxt's ``urls['api']`` with every host replaced by the simulator (paths kept)."""
    return {key: re.sub(r"^https?://[^/]+", base_url, url) for key, url in api.items()}


CCXT_OPTIONS = {
    "options": {
        "fetchMarkets": {"types": ["spot"]},  # spot exchangeInfo only (no fapi/dapi)
        "fetchMargins": False,  # no sapi margin pairs
        "fetchCurrencies": False,  # sapi, needs keys
        "defaultType": "spot",
    },
}


def ccxt_client(base_url: str) -> ccxt.binance:
    exchange = ccxt.binance(CCXT_OPTIONS)
    exchange.urls["api"] = simulated_urls(exchange.urls["api"], base_url)
    return exchange


def ccxt_async_client(base_url: str) -> ccxt_async.binance:
    exchange = ccxt_async.binance(CCXT_OPTIONS)
    exchange.urls["api"] = simulated_urls(exchange.urls["api"], base_url)
    return exchange


@pytest.fixture(scope="module")
def binance_client(sim: BackgroundSimulator) -> Iterator[Client]:
    """python-binance's sync Client, its spot and futures base URLs on the simulator.

    The class attributes are patched only while the client is built: it pings on construction and
    keeps the URLs as instance attributes.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Client, "API_URL", sim.base_url + "/api")
        mp.setattr(Client, "FUTURES_URL", sim.base_url + "/fapi")
        sim.take()
        client = Client()
        assert sim.paths() == ["/api/v3/ping"]
    try:
        yield client
    finally:
        client.close_connection()


# ---------------------------------------------------------------------- ccxt (sync)


def test_ccxt_load_markets_lists_the_simulators_symbols(sim: BackgroundSimulator) -> None:
    exchange = ccxt_client(sim.base_url)
    markets = exchange.load_markets()
    assert sim.paths() == ["/api/v3/exchangeInfo"]

    specs = sim.market.symbols
    assert sorted(m["id"] for m in markets.values()) == sorted(s.name for s in specs)
    for spec in specs:
        market = markets[f"{spec.base_asset}/{spec.quote_asset}"]
        assert market["id"] == spec.name
        assert (market["base"], market["quote"]) == (spec.base_asset, spec.quote_asset)
        assert market["spot"] is True and market["type"] == "spot"
        assert market["active"] is (spec.status == "TRADING")
        assert market["precision"]["price"] == float(spec.tick_size)
        assert market["precision"]["amount"] == float(spec.step_size)
        assert market["precision"]["base"] == market["precision"]["quote"] == 1e-8
        assert market["limits"]["price"]["min"] == float(spec.tick_size)
        assert market["limits"]["amount"]["min"] == float(spec.step_size)
        assert market["limits"]["cost"]["min"] == 5.0


def test_ccxt_fetch_ohlcv_paginated_equals_the_market(sim: BackgroundSimulator) -> None:
    exchange = ccxt_client(sim.base_url)
    exchange.load_markets()
    sim.take()
    end = RECENT_END_MS
    start = end - 3 * DAY_MS

    got = exchange.fetch_ohlcv("BTC/USDT", "1m", since=start, params={"paginate": True, "until": end - 1})

    assert_contiguous([c[0] for c in got], "1m", start, end)
    assert got == [as_ohlcv(r) for r in expected_klines(sim.market, "BTCUSDT", "1m", start, end)]
    requests = sim.take()
    assert [r.path for r in requests] == ["/api/v3/klines"] * 5  # 4320 candles, 1000 per page
    assert all(r.query["symbol"] == "BTCUSDT" and r.query["interval"] == "1m" for r in requests)


def test_ccxt_fetch_ohlcv_since_loop_equals_the_market(sim: BackgroundSimulator) -> None:
    exchange = ccxt_client(sim.base_url)
    exchange.load_markets()
    sim.take()
    end = END_MS
    start = end - 7 * DAY_MS
    step = FIXED_INTERVAL_MS["5m"]

    got: list[list] = []
    since = start
    while since < end:
        page = exchange.fetch_ohlcv("SOL/USDT", "5m", since=since, limit=1000, params={"until": end - 1})
        if not page:
            break
        got.extend(page)
        since = page[-1][0] + step

    assert_contiguous([c[0] for c in got], "5m", start, end)
    assert got == [as_ohlcv(r) for r in expected_klines(sim.market, "SOLUSDT", "5m", start, end)]
    assert sim.paths() == ["/api/v3/klines"] * 3  # 2016 candles


def test_ccxt_maps_the_simulators_error_bodies(sim: BackgroundSimulator) -> None:
    exchange = ccxt_client(sim.base_url)
    with pytest.raises(ccxt.BadSymbol, match="-1121"):
        exchange.publicGetKlines({"symbol": "NOPEUSDT", "interval": "1m"})
    with pytest.raises(ccxt.BadRequest, match="-1120"):
        exchange.publicGetKlines({"symbol": "BTCUSDT", "interval": "7m"})
    assert sim.paths() == ["/api/v3/klines"] * 2


def test_ccxt_fetch_trades_equal_the_markets_agg_trades(sim: BackgroundSimulator) -> None:
    exchange = ccxt_client(sim.base_url)
    exchange.load_markets()
    sim.take()
    since = trades_window_start()

    got = exchange.fetch_trades("BTC/USDT", since=since, limit=300)

    (request,) = sim.take()
    assert request.path == "/api/v3/aggTrades"
    assert request.query == {
        "symbol": "BTCUSDT",
        "startTime": str(since),
        "endTime": str(since + HOUR_MS),  # ccxt asks for one hour from `since`
        "limit": "300",
    }
    expected = sim.market.agg_trades("BTCUSDT", request.now_ms, 300, start_ms=since, end_ms=since + HOUR_MS)
    assert len(expected) == 300
    assert [t["info"] for t in got] == expected  # same rows, same order (ccxt sorts by time)
    assert_agg_trades_contiguous(expected)
    assert expected[0]["T"] >= since
    for trade, raw in zip(got, expected, strict=True):
        assert trade["id"] == str(raw["a"])
        assert trade["timestamp"] == raw["T"]
        assert trade["price"] == float(raw["p"])
        assert trade["amount"] == float(raw["q"])
        assert trade["side"] == ("sell" if raw["m"] else "buy")


def test_ccxt_fetch_order_book_equals_the_markets_book(sim: BackgroundSimulator) -> None:
    exchange = ccxt_client(sim.base_url)
    exchange.load_markets()
    sim.take()

    book = exchange.fetch_order_book("ETH/USDT", limit=50)

    (request,) = sim.take()
    assert (request.path, request.query) == ("/api/v3/depth", {"symbol": "ETHUSDT", "limit": "50"})
    snapshot = sim.market.depth_snapshot("ETHUSDT", 50, request.now_ms).to_json()
    assert book["nonce"] == snapshot["lastUpdateId"]
    assert book["bids"] == as_book_side(snapshot["bids"])  # ccxt re-sorts: same order means best first
    assert book["asks"] == as_book_side(snapshot["asks"])
    assert len(book["bids"]) == len(book["asks"]) == 50
    assert book["bids"][0][0] < book["asks"][0][0]


def test_ccxt_linear_markets_ohlcv_and_order_book(sim: BackgroundSimulator) -> None:
    exchange = ccxt.binance(
        {"options": {**CCXT_OPTIONS["options"], "fetchMarkets": {"types": ["spot", "linear"]}}}
    )
    exchange.urls["api"] = simulated_urls(exchange.urls["api"], sim.base_url)
    markets = exchange.load_markets()
    assert sim.paths() == ["/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo"]
    assert len(markets) == 2 * len(sim.market.symbols)
    spec = sim.market.symbol("BTCUSDT")
    perpetual = markets["BTC/USDT:USDT"]
    assert perpetual["id"] == "BTCUSDT"
    assert perpetual["swap"] is True and perpetual["linear"] is True and perpetual["settle"] == "USDT"
    assert perpetual["precision"]["price"] == float(spec.tick_size)
    assert perpetual["precision"]["amount"] == float(spec.step_size)

    end = RECENT_END_MS
    start = end - 5 * DAY_MS
    got = exchange.fetch_ohlcv(
        "BTC/USDT:USDT", "5m", since=start, params={"paginate": True, "until": end - 1}
    )
    assert_contiguous([c[0] for c in got], "5m", start, end)
    assert got == [as_ohlcv(r) for r in expected_futures_klines(sim.market, "BTCUSDT", "5m", start, end)]
    assert sim.paths() == ["/fapi/v1/klines"] * 2  # 1440 candles, 1000 per page

    book = exchange.fetch_order_book("BTC/USDT:USDT", limit=20)
    (request,) = sim.take()
    assert (request.path, request.query) == ("/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": "20"})
    spot = sim.market.depth_snapshot("BTCUSDT", 20, request.now_ms).to_json()
    assert book["nonce"] == spot["lastUpdateId"]
    assert book["timestamp"] <= request.now_ms
    basis = float(Decimal(contract(spec).basis_units) / SCALE)
    assert [q for _, q in book["bids"]] == [float(q) for _, q in spot["bids"]]
    assert [p for p, _ in book["bids"]] == pytest.approx([float(p) + basis for p, _ in spot["bids"]])


# ---------------------------------------------------------------------- ccxt (async_support)


def test_ccxt_async_markets_and_paginated_ohlcv_equal_the_market(sim: BackgroundSimulator) -> None:
    end = RECENT_END_MS
    start = end - 20 * DAY_MS

    async def main() -> tuple[dict, list[list]]:
        exchange = ccxt_async_client(sim.base_url)
        try:
            markets = await exchange.load_markets()
            candles = await exchange.fetch_ohlcv(
                "ETH/USDT", "15m", since=start, params={"paginate": True, "until": end - 1}
            )
            return markets, candles
        finally:
            await exchange.close()

    markets, got = asyncio.run(main())

    assert markets["ETH/USDT"]["precision"]["price"] == 0.01
    assert_contiguous([c[0] for c in got], "15m", start, end)
    assert got == [as_ohlcv(r) for r in expected_klines(sim.market, "ETHUSDT", "15m", start, end)]
    paths = sim.paths()
    assert paths[0] == "/api/v3/exchangeInfo"
    assert paths[1:] == ["/api/v3/klines"] * 2  # 1920 candles, two pages fetched concurrently


def test_ccxt_async_trades_and_order_book_equal_the_market(sim: BackgroundSimulator) -> None:
    since = trades_window_start() + 2 * HOUR_MS

    async def main() -> tuple[list[dict], dict]:
        exchange = ccxt_async_client(sim.base_url)
        try:
            await exchange.load_markets()
            return await asyncio.gather(
                exchange.fetch_trades("SOL/USDT", since=since, limit=100),
                exchange.fetch_order_book("SOL/USDT", limit=10),
            )
        finally:
            await exchange.close()

    trades, book = asyncio.run(main())

    requests = {r.path: r for r in sim.take()}
    agg = requests["/api/v3/aggTrades"]
    expected = sim.market.agg_trades("SOLUSDT", agg.now_ms, 100, start_ms=since, end_ms=since + HOUR_MS)
    assert [t["info"] for t in trades] == expected
    depth = requests["/api/v3/depth"]
    snapshot = sim.market.depth_snapshot("SOLUSDT", 10, depth.now_ms).to_json()
    assert (book["bids"], book["asks"]) == (as_book_side(snapshot["bids"]), as_book_side(snapshot["asks"]))
    assert book["nonce"] == snapshot["lastUpdateId"]


# ---------------------------------------------------------------------- python-binance


def test_python_binance_exchange_and_symbol_info(sim: BackgroundSimulator, binance_client: Client) -> None:
    info = binance_client.get_exchange_info()
    assert [s["symbol"] for s in info["symbols"]] == [s.name for s in sim.market.symbols]
    assert info["timezone"] == "UTC" and isinstance(info["serverTime"], int)

    btc = binance_client.get_symbol_info("BTCUSDT")
    assert btc is not None
    filters = {f["filterType"]: f for f in btc["filters"]}
    spec = sim.market.symbol("BTCUSDT")
    assert float(filters["PRICE_FILTER"]["tickSize"]) == float(spec.tick_size)
    assert float(filters["LOT_SIZE"]["stepSize"]) == float(spec.step_size)
    assert binance_client.get_symbol_info("NOPEUSDT") is None
    assert sim.paths() == ["/api/v3/exchangeInfo"] * 3


def test_python_binance_historical_klines_equal_the_market(
    sim: BackgroundSimulator, binance_client: Client
) -> None:
    end = END_MS
    start = end - 3 * DAY_MS

    got = binance_client.get_historical_klines("ETHUSDT", "1m", start, end - 1)

    assert_contiguous([r[0] for r in got], "1m", start, end)
    assert got == expected_klines(sim.market, "ETHUSDT", "1m", start, end)  # raw rows, byte for byte
    requests = sim.take()
    # One probe for the listing candle (startTime=0, limit=1), then pages of 1000.
    probe = requests[0]
    assert probe.path == "/api/v3/klines"
    assert {k: probe.query[k] for k in ("symbol", "interval", "limit", "startTime")} == {
        "symbol": "ETHUSDT",
        "interval": "1m",
        "limit": "1",
        "startTime": "0",
    }
    assert [r.path for r in requests[1:]] == ["/api/v3/klines"] * 5
    assert all(r.query["limit"] == "1000" for r in requests[1:])


def test_python_binance_earliest_candle_is_the_listing_candle(
    sim: BackgroundSimulator, binance_client: Client
) -> None:
    spec = sim.market.symbol("DOGEUSDT")
    first = binance_client._get_earliest_valid_timestamp("DOGEUSDT", "1d")
    assert first == sim.market.first_open_time("DOGEUSDT", "1d")
    assert first == spec.first_minute_ms - spec.first_minute_ms % DAY_MS


@pytest.mark.parametrize("interval", ["1d", "1w", "1M"])
def test_python_binance_whole_history_from_the_listing(
    sim: BackgroundSimulator, binance_client: Client, interval: str
) -> None:
    """From ``start_str=0``: the client probes the first candle, then pages to the last closed one."""
    end = floor_open_time(time.time_ns() // 1_000_000, interval)  # the open candle's open time
    first = sim.market.first_open_time("DOGEUSDT", interval)

    got = binance_client.get_historical_klines("DOGEUSDT", interval, 0, end - 1)

    assert got[0][0] == first <= sim.market.symbol("DOGEUSDT").listing_ms
    assert_contiguous([r[0] for r in got], interval, first, end)
    assert got == expected_klines(sim.market, "DOGEUSDT", interval, first, end)


def test_python_binance_raises_the_simulators_errors(binance_client: Client) -> None:
    with pytest.raises(BinanceAPIException) as bad_symbol:
        binance_client.get_klines(symbol="NOPEUSDT", interval="1m")
    assert (bad_symbol.value.status_code, bad_symbol.value.code) == (400, -1121)
    assert bad_symbol.value.message == "Invalid symbol."
    with pytest.raises(BinanceAPIException) as bad_interval:
        binance_client.get_klines(symbol="BTCUSDT", interval="7m")
    assert (bad_interval.value.code, bad_interval.value.message) == (-1120, "Invalid interval.")


def test_python_binance_aggregate_trades_equal_the_market(
    sim: BackgroundSimulator, binance_client: Client
) -> None:
    start = trades_window_start()
    end = start + 5 * 60_000

    got = binance_client.get_aggregate_trades(symbol="BNBUSDT", startTime=start, endTime=end, limit=1000)

    (request,) = sim.take()
    assert request.path == "/api/v3/aggTrades"
    assert got == sim.market.agg_trades("BNBUSDT", request.now_ms, 1000, start_ms=start, end_ms=end)
    assert_agg_trades_contiguous(got)
    assert start <= got[0]["T"] and got[-1]["T"] <= end


def test_python_binance_aggregate_trade_iter_pages_by_id(
    sim: BackgroundSimulator, binance_client: Client
) -> None:
    start = trades_window_start()
    count = 1_800  # the hour's first page (500), then fromId pages of 500 minus the repeated first row

    got = list(islice(binance_client.aggregate_trade_iter("BTCUSDT", start_str=start), count))

    assert_agg_trades_contiguous(got)
    requests = sim.take()
    assert requests[0].query == {
        "symbol": "BTCUSDT",
        "startTime": str(start),
        "endTime": str(start + HOUR_MS),
    }
    assert all(r.query.keys() == {"symbol", "fromId"} for r in requests[1:])
    assert len(requests) == 4  # 500 + 3 x 499 >= 1800
    now = requests[-1].now_ms
    first = sim.market.agg_trades("BTCUSDT", now, 1, start_ms=start)[0]
    expected = sim.market.agg_trades("BTCUSDT", now, 1000, from_id=first["a"])
    expected += sim.market.agg_trades("BTCUSDT", now, count - 1000, from_id=first["a"] + 1000)
    assert got == expected


def test_python_binance_trades_match_the_aggregates(sim: BackgroundSimulator, binance_client: Client) -> None:
    """historicalTrades from an aggregate's first id: the trades each aggregate stands for."""
    aggs = binance_client.get_aggregate_trades(symbol="XRPUSDT", startTime=trades_window_start(), limit=50)
    first, last = aggs[0]["f"], aggs[-1]["l"]
    assert last - first + 1 <= 1000  # one historicalTrades page

    trades = binance_client.get_historical_trades(symbol="XRPUSDT", fromId=first, limit=last - first + 1)

    requests = sim.take()
    assert [r.path for r in requests] == ["/api/v3/aggTrades", "/api/v3/historicalTrades"]
    now = requests[1].now_ms
    assert trades == sim.market.trades("XRPUSDT", now, last - first + 1, from_id=first)
    assert [t["id"] for t in trades] == list(range(first, last + 1))
    by_id = {t["id"]: t for t in trades}
    for agg in aggs:
        members = [by_id[i] for i in range(agg["f"], agg["l"] + 1)]
        assert {(t["price"], t["time"], t["isBuyerMaker"]) for t in members} == {
            (agg["p"], agg["T"], agg["m"])
        }
        assert sum(Decimal(t["qty"]) for t in members) == Decimal(agg["q"])
        for t in members:  # quote quantity: price x quantity, to the 8th decimal
            assert abs(Decimal(t["quoteQty"]) - Decimal(t["price"]) * Decimal(t["qty"])) < Decimal("1e-8")


def test_python_binance_recent_trades_and_order_book_equal_the_market(
    sim: BackgroundSimulator, binance_client: Client
) -> None:
    recent = binance_client.get_recent_trades(symbol="ADAUSDT", limit=40)
    book = binance_client.get_order_book(symbol="ADAUSDT", limit=100)

    trades_request, depth_request = sim.take()
    assert (trades_request.path, depth_request.path) == ("/api/v3/trades", "/api/v3/depth")
    assert recent == sim.market.trades("ADAUSDT", trades_request.now_ms, 40)
    assert [t["id"] for t in recent] == list(range(recent[0]["id"], recent[0]["id"] + 40))
    assert recent[-1]["time"] <= trades_request.now_ms
    assert book == sim.market.depth_snapshot("ADAUSDT", 100, depth_request.now_ms).to_json()
    assert list(book) == ["lastUpdateId", "bids", "asks"]


def test_python_binance_futures_klines_and_order_book(
    sim: BackgroundSimulator, binance_client: Client
) -> None:
    end = END_MS
    start = end - 4 * DAY_MS

    got = binance_client.get_historical_klines(
        "LINKUSDT", "5m", start, end - 1, klines_type=HistoricalKlinesType.FUTURES
    )

    assert_contiguous([r[0] for r in got], "5m", start, end)
    assert got == expected_futures_klines(sim.market, "LINKUSDT", "5m", start, end)
    assert sim.paths() == ["/fapi/v1/klines"] * 3  # the listing probe, then 1152 candles in 2 pages

    info = binance_client.futures_exchange_info()
    assert [s["symbol"] for s in info["symbols"]] == [s.name for s in sim.market.symbols]
    book = binance_client.futures_order_book(symbol="LINKUSDT", limit=10)
    requests = sim.take()
    assert [r.path for r in requests] == ["/fapi/v1/exchangeInfo", "/fapi/v1/depth"]
    now = requests[1].now_ms
    assert list(book) == ["lastUpdateId", "E", "T", "bids", "asks"]
    assert book["E"] == now and book["T"] <= now
    spot = sim.market.depth_snapshot("LINKUSDT", 10, now).to_json()
    assert book["lastUpdateId"] == spot["lastUpdateId"]
    assert_futures_side_is_spot_plus_basis(book["bids"], spot["bids"], sim.market, "LINKUSDT")
    assert_futures_side_is_spot_plus_basis(book["asks"], spot["asks"], sim.market, "LINKUSDT")
