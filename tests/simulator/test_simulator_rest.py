"""The exchange simulator's spot REST API, served for real on loopback and read with aiohttp.

Every test runs against a fixed seed and a fixed injected clock, so the answers are exact and the
suite needs no sleeps. The shape checks compare with a real Binance capture (first rows of
``reference/binance-samples/spot_rest_klines_BTCUSDT_1m_nautilus.json``, copied below).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable
from decimal import Decimal
from itertools import pairwise
from typing import Any

import aiohttp
import pytest

from streamforge_pipelines.intervals import DAY_MS, HOUR_MS, MINUTE_MS, floor_open_time
from streamforge_pipelines.simulator import DEFAULT_SYMBOLS, Market, SimulatorServer, SymbolSpec

SEED = 20240801
#: 2024-08-02 05:00:12.345 UTC: mid-minute, so the newest candle is still open.
NOW_MS = 1_722_556_800_000 + 5 * HOUR_MS + 12_345
MARKET = Market(SEED)  # shared: its caches make the suite fast; it is a pure function of SEED

#: Real GET /api/v3/klines BTCUSDT 1m rows (nautechsystems/nautilus_trader test resources, 2021-10-22).
REAL_ROWS = [
    [1634943780000, "60685.22000000", "60729.84000000", "60670.90000000", "60719.27000000", "21.63272000",
     1634943839999, "1313200.01340410", 617, "12.28492000", "745719.41022840", "0"],
    [1634943840000, "60719.28000000", "60780.41000000", "60707.00000000", "60771.81000000", "21.91797000",
     1634943899999, "1331667.75064580", 769, "11.54481000", "701336.15460230", "0"],
]  # fmt: skip
MANDATORY = "Mandatory parameter '{}' was not sent, was empty/null, or malformed."
ILLEGAL = "Illegal characters found in parameter '{}'; legal range is '^[0-9]{{1,20}}$'."
EIGHT_DP = re.compile(r"^[0-9]+\.[0-9]{8}$")

Body = Callable[[SimulatorServer, aiohttp.ClientSession], Awaitable[Any]]


class Reply:
    """One HTTP answer: status, headers, raw body and parsed JSON."""

    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw
        self.json = json.loads(raw)


def run(body: Body, *, market: Market = MARKET, clock: Callable[[], int] = lambda: NOW_MS) -> Any:
    """Start a simulator with ``market`` and ``clock``, run ``body(server, session)``, stop it."""

    async def main() -> Any:
        async with (
            SimulatorServer(market, clock=clock) as sim,
            aiohttp.ClientSession(sim.base_url) as http,
        ):
            return await body(sim, http)

    return asyncio.run(main())


async def get(http: aiohttp.ClientSession, path: str, **params: Any) -> Reply:
    query = {k: str(v) for k, v in params.items()}
    async with http.get(path, params=query) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.read())


def klines(**params: Any) -> Reply:
    """One GET /api/v3/klines against the shared market at NOW_MS."""
    return run(lambda sim, http: get(http, "/api/v3/klines", **params))


def ok_rows(**params: Any) -> list[list]:
    reply = klines(**params)
    assert reply.status == 200, reply.json
    return reply.json


def open_times(rows: list[list]) -> list[int]:
    return [r[0] for r in rows]


def assert_contiguous(rows: list[list], step_ms: int) -> None:
    times = open_times(rows)
    assert all(b - a == step_ms for a, b in pairwise(times)), "gap or duplicate"
    assert all(b[1] == a[4] for a, b in pairwise(rows)), "open != previous close"


# ---------------------------------------------------------------------- ping, time, exchangeInfo


def test_ping_and_time() -> None:
    async def body(sim: SimulatorServer, http: aiohttp.ClientSession) -> tuple[Reply, Reply]:
        return await get(http, "/api/v3/ping"), await get(http, "/api/v3/time")

    ping, now = run(body)
    assert (ping.status, ping.json) == (200, {})
    assert (now.status, now.json) == (200, {"serverTime": NOW_MS})
    assert ping.headers["Content-Type"].startswith("application/json")


def test_exchange_info_shape() -> None:
    info = run(lambda sim, http: get(http, "/api/v3/exchangeInfo")).json
    assert list(info) == ["timezone", "serverTime", "rateLimits", "exchangeFilters", "symbols"]
    assert info["timezone"] == "UTC" and info["serverTime"] == NOW_MS and info["exchangeFilters"] == []
    limits = {(r["rateLimitType"], r["interval"], r["intervalNum"]): r["limit"] for r in info["rateLimits"]}
    assert limits[("REQUEST_WEIGHT", "MINUTE", 1)] == 6000
    assert limits[("RAW_REQUESTS", "MINUTE", 5)] == 300000
    assert any(kind == "ORDERS" for kind, _, _ in limits)

    names = [s["symbol"] for s in info["symbols"]]
    assert len(names) >= 12 and {"BTCUSDT", "ETHUSDT", "DOGEUSDT", "TRXUSDT"} <= set(names)
    btc = info["symbols"][names.index("BTCUSDT")]
    assert list(btc) == [
        "symbol", "status", "baseAsset", "baseAssetPrecision", "quoteAsset", "quotePrecision",
        "quoteAssetPrecision", "baseCommissionPrecision", "quoteCommissionPrecision", "orderTypes",
        "icebergAllowed", "ocoAllowed", "otoAllowed", "opoAllowed", "quoteOrderQtyMarketAllowed",
        "allowTrailingStop", "cancelReplaceAllowed", "amendAllowed", "pegInstructionsAllowed",
        "isSpotTradingAllowed", "isMarginTradingAllowed", "filters", "permissions", "permissionSets",
        "defaultSelfTradePreventionMode", "allowedSelfTradePreventionModes",
    ]  # fmt: skip
    assert (btc["status"], btc["baseAsset"], btc["quoteAsset"]) == ("TRADING", "BTC", "USDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    for f in (filters["PRICE_FILTER"], filters["LOT_SIZE"]):
        assert all(EIGHT_DP.match(v) for k, v in f.items() if k != "filterType")


def test_exchange_info_symbol_params() -> None:
    async def body(sim: SimulatorServer, http: aiohttp.ClientSession) -> list[Reply]:
        path = "/api/v3/exchangeInfo"
        return [
            await get(http, path, symbol="ETHUSDT"),
            await get(http, path, symbols='["BTCUSDT","SOLUSDT"]'),
            await get(http, path, symbol="NOPEUSDT"),
            await get(http, path, symbols='["BTCUSDT","NOPEUSDT"]'),
            await get(http, path, symbols="BTCUSDT"),
            await get(http, path, symbol="BTCUSDT", symbols='["BTCUSDT"]'),
        ]

    one, two, unknown, unknown_in_list, malformed, both = run(body)
    assert [s["symbol"] for s in one.json["symbols"]] == ["ETHUSDT"]
    assert [s["symbol"] for s in two.json["symbols"]] == ["BTCUSDT", "SOLUSDT"]
    for reply in (unknown, unknown_in_list):
        assert (reply.status, reply.json) == (400, {"code": -1121, "msg": "Invalid symbol."})
    assert (malformed.status, malformed.json["code"]) == (400, -1100)
    assert (both.status, both.json["code"]) == (400, -1128)


# ---------------------------------------------------------------------- klines: shape and windows


def test_klines_rows_have_the_real_capture_shape() -> None:
    for path in ("/api/v3/klines", "/api/v3/uiKlines"):
        reply = run(lambda sim, http, p=path: get(http, p, symbol="BTCUSDT", interval="1m", limit=10))
        assert reply.status == 200
        rows = reply.json
        assert len(rows) == 10
        for row in rows:
            assert len(row) == len(REAL_ROWS[0]) == 12
            assert [type(v) for v in row] == [type(v) for v in REAL_ROWS[0]]
            for i in (1, 2, 3, 4, 5, 7, 9, 10):
                assert EIGHT_DP.match(row[i]), row[i]
            assert row[6] == row[0] + MINUTE_MS - 1 and row[11] == "0"
            o, h, lo, c = (Decimal(x) for x in row[1:5])
            assert lo <= min(o, c) and h >= max(o, c) and lo > 0
            assert Decimal(row[9]) <= Decimal(row[5]) and Decimal(row[10]) <= Decimal(row[7])
        # BTC trades around the base price with realistic per-minute figures
        assert 10_000 < Decimal(rows[0][1]) < 500_000 and rows[0][8] > 0


def test_klines_without_bounds_returns_most_recent_including_the_open_candle() -> None:
    rows = ok_rows(symbol="BTCUSDT", interval="1m", limit=5)
    assert open_times(rows) == [floor_open_time(NOW_MS, "1m") - i * MINUTE_MS for i in range(4, -1, -1)]
    assert rows[-1][6] > NOW_MS  # still open at NOW_MS
    assert_contiguous(rows, MINUTE_MS)


def test_klines_only_start_returns_oldest_at_or_after_start() -> None:
    start = NOW_MS - DAY_MS + 1  # not on a boundary: the first candle opens at the next minute
    rows = ok_rows(symbol="ETHUSDT", interval="5m", startTime=start, limit=7)
    first = floor_open_time(start, "5m") + 5 * MINUTE_MS
    assert open_times(rows) == [first + i * 5 * MINUTE_MS for i in range(7)]


def test_klines_only_end_returns_newest_at_or_before_end() -> None:
    end = NOW_MS - DAY_MS
    rows = ok_rows(symbol="ETHUSDT", interval="1h", endTime=end, limit=3)
    last = floor_open_time(end, "1h")
    assert open_times(rows) == [last - 2 * HOUR_MS, last - HOUR_MS, last]


def test_klines_both_bounds_start_from_start_and_never_pass_end() -> None:
    start = floor_open_time(NOW_MS - 2 * DAY_MS, "15m")
    short = ok_rows(symbol="SOLUSDT", interval="15m", startTime=start, endTime=start + HOUR_MS, limit=1000)
    assert open_times(short) == [start + i * 15 * MINUTE_MS for i in range(5)]  # end is inclusive
    capped = ok_rows(symbol="SOLUSDT", interval="15m", startTime=start, endTime=start + DAY_MS, limit=3)
    assert open_times(capped) == [start + i * 15 * MINUTE_MS for i in range(3)]
    same = ok_rows(symbol="SOLUSDT", interval="15m", startTime=start, endTime=start)
    assert open_times(same) == [start]


def test_klines_never_before_listing_nor_after_now() -> None:
    listed = DEFAULT_SYMBOLS[0].listing_ms
    first = ok_rows(symbol="BTCUSDT", interval="1d", startTime=0, limit=1)
    assert open_times(first) == [floor_open_time(listed, "1d")]
    assert ok_rows(symbol="BTCUSDT", interval="1d", endTime=listed - DAY_MS) == []
    assert ok_rows(symbol="BTCUSDT", interval="1m", startTime=NOW_MS + MINUTE_MS) == []
    newest = ok_rows(symbol="BTCUSDT", interval="1m", startTime=NOW_MS - 3 * MINUTE_MS, limit=1000)
    assert open_times(newest)[-1] == floor_open_time(NOW_MS, "1m")


def test_klines_respect_a_listing_inside_the_window() -> None:
    listing = NOW_MS - DAY_MS - 37 * MINUTE_MS - 4_321
    fresh = SymbolSpec(
        name="NEWUSDT", base_asset="NEW", quote_asset="USDT", listing_ms=listing, base_price=1.5,
        tick_size="0.0001", step_size="0.1", quote_volume_per_minute=2_000.0, trades_per_minute=8,
    )  # fmt: skip
    market = Market(SEED, [DEFAULT_SYMBOLS[0], fresh])

    async def body(sim: SimulatorServer, http: aiohttp.ClientSession) -> list[Reply]:
        return [
            await get(http, "/api/v3/klines", symbol="NEWUSDT", interval=i, startTime=0, limit=1000)
            for i in ("1m", "1h")
        ]

    minutes, hours = (r.json for r in run(body, market=market))
    assert minutes[0][0] == floor_open_time(listing, "1m")
    assert hours[0][0] == floor_open_time(listing, "1h")
    first_hour = [r for r in minutes if r[0] < hours[0][0] + HOUR_MS]
    assert hours[0][1] == minutes[0][1]
    assert Decimal(hours[0][5]) == sum(Decimal(r[5]) for r in first_hour)
    assert market.count_klines("NEWUSDT", "1m", 0, floor_open_time(listing, "1m"), NOW_MS) == 0


def test_klines_limit_default_and_maximum() -> None:
    assert len(ok_rows(symbol="BNBUSDT", interval="1m")) == 500
    assert len(ok_rows(symbol="BNBUSDT", interval="1m", limit=1000)) == 1000
    assert len(ok_rows(symbol="BNBUSDT", interval="1m", limit=5000)) == 1000  # capped, see app docstring
    zero = klines(symbol="BNBUSDT", interval="1m", limit=0)
    assert (zero.status, zero.json["code"]) == (400, -1130)


# ---------------------------------------------------------------------- paging and ground truth


@pytest.mark.parametrize(("symbol", "interval", "days"), [("BTCUSDT", "1m", 2.5), ("LINKUSDT", "5m", 7)])
def test_pagination_is_contiguous_and_matches_count_klines(symbol: str, interval: str, days: float) -> None:
    start = NOW_MS - int(days * DAY_MS) + 12_345
    end = NOW_MS - HOUR_MS - 1  # inclusive endTime

    async def body(sim: SimulatorServer, http: aiohttp.ClientSession) -> tuple[list[list], int]:
        rows: list[list] = []
        cursor, pages = start, 0
        while True:
            page = (
                await get(http, "/api/v3/klines", symbol=symbol, interval=interval, startTime=cursor,
                          endTime=end, limit=1000)
            ).json  # fmt: skip
            if not page:
                return rows, pages
            rows.extend(page)
            cursor, pages = page[-1][0] + 1, pages + 1

    rows, pages = run(body)
    step = {"1m": MINUTE_MS, "5m": 5 * MINUTE_MS}[interval]
    assert len(rows) == MARKET.count_klines(symbol, interval, start, end + 1, NOW_MS)
    assert pages == -(-len(rows) // 1000) and len(rows) > 2000
    assert len(set(open_times(rows))) == len(rows)
    assert rows[0][0] >= start and rows[-1][0] <= end
    assert_contiguous(rows, step)


def test_5m_candle_aggregates_its_five_1m_candles() -> None:
    start = floor_open_time(NOW_MS - 3 * HOUR_MS, "5m")
    fives = ok_rows(symbol="XRPUSDT", interval="5m", startTime=start, limit=12)
    ones = ok_rows(symbol="XRPUSDT", interval="1m", startTime=start, limit=60)
    for i, five in enumerate(fives):
        group = ones[5 * i : 5 * i + 5]
        assert five[0] == group[0][0] and five[6] == group[-1][6]
        assert five[1] == group[0][1] and five[4] == group[-1][4]
        assert Decimal(five[2]) == max(Decimal(r[2]) for r in group)
        assert Decimal(five[3]) == min(Decimal(r[3]) for r in group)
        for idx in (5, 7, 9, 10):
            assert Decimal(five[idx]) == sum(Decimal(r[idx]) for r in group)
        assert five[8] == sum(r[8] for r in group)


def test_open_equals_previous_close_across_midnight() -> None:
    midnight = floor_open_time(NOW_MS, "1d")
    rows = ok_rows(symbol="ADAUSDT", interval="1m", startTime=midnight - 500 * MINUTE_MS, limit=1000)
    assert midnight in open_times(rows)
    assert_contiguous(rows, MINUTE_MS)
    assert_contiguous(ok_rows(symbol="ADAUSDT", interval="1h", limit=1000), HOUR_MS)


def test_open_candle_grows_into_the_closed_candle() -> None:
    t = floor_open_time(NOW_MS, "5m") - 5 * MINUTE_MS
    closed = MARKET.klines("DOTUSDT", "5m", t, t, 1, t + 5 * MINUTE_MS)[0]
    halfway = MARKET.klines("DOTUSDT", "5m", t, t, 1, t + 150_500)[0]
    last_ms = MARKET.klines("DOTUSDT", "5m", t, t, 1, t + 5 * MINUTE_MS - 1)[0]
    assert last_ms == closed
    assert halfway[0] == closed[0] and halfway[1] == closed[1] and halfway[6] == closed[6]
    assert Decimal(halfway[5]) < Decimal(closed[5]) and halfway[8] < closed[8]


def test_1s_candles_aggregate_to_their_minute() -> None:
    minute = MARKET.klines("BTCUSDT", "1m", None, NOW_MS - HOUR_MS, 1, NOW_MS)[0]
    seconds = MARKET.klines("BTCUSDT", "1s", minute[0], minute[6], 1000, NOW_MS)
    assert len(seconds) == 60
    assert_contiguous(seconds, 1_000)
    assert seconds[0][1] == minute[1] and seconds[-1][4] == minute[4]
    assert max(Decimal(s[2]) for s in seconds) == Decimal(minute[2])
    assert min(Decimal(s[3]) for s in seconds) == Decimal(minute[3])
    for idx in (5, 7, 9, 10):
        assert sum(Decimal(s[idx]) for s in seconds) == Decimal(minute[idx])
    assert sum(s[8] for s in seconds) == minute[8]


# ---------------------------------------------------------------------- determinism


def _fetch_bytes(seed: int) -> list[bytes]:
    async def body(sim: SimulatorServer, http: aiohttp.ClientSession) -> list[bytes]:
        replies = [
            await get(http, "/api/v3/klines", symbol="BTCUSDT", interval="1m", limit=1000),
            await get(http, "/api/v3/klines", symbol="DOGEUSDT", interval="4h", startTime=0, limit=1000),
            await get(http, "/api/v3/exchangeInfo"),
        ]
        return [r.raw for r in replies]

    return run(body, market=Market(seed))


def test_same_seed_gives_identical_bytes_and_another_seed_differs() -> None:
    first, again, other = _fetch_bytes(SEED), _fetch_bytes(SEED), _fetch_bytes(SEED + 1)
    assert first == again
    assert first[0] != other[0] and first[1] != other[1]
    assert first[2] == other[2]  # exchangeInfo depends on the symbols, not on the seed


# ---------------------------------------------------------------------- errors and weight


@pytest.mark.parametrize(
    ("params", "code", "msg"),
    [
        ({"interval": "1m"}, -1102, MANDATORY.format("symbol")),
        ({"symbol": "", "interval": "1m"}, -1102, MANDATORY.format("symbol")),
        ({"symbol": "BTCUSDT"}, -1102, MANDATORY.format("interval")),
        ({"symbol": "BTCUSDT", "interval": "2m"}, -1120, "Invalid interval."),
        ({"symbol": "BTCUSDT", "interval": "1H"}, -1120, "Invalid interval."),
        ({"symbol": "NOPEUSDT", "interval": "1m"}, -1121, "Invalid symbol."),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": "abc"}, -1100, ILLEGAL.format("startTime")),
        ({"symbol": "BTCUSDT", "interval": "1m", "endTime": "1.5"}, -1100, ILLEGAL.format("endTime")),
        ({"symbol": "BTCUSDT", "interval": "1m", "limit": "-1"}, -1100, ILLEGAL.format("limit")),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": 2, "endTime": 1}, -1128,
         "Combination of optional parameters invalid."),
    ],
)  # fmt: skip
def test_klines_error_bodies(params: dict[str, Any], code: int, msg: str) -> None:
    reply = klines(**params)
    assert reply.status == 400
    assert reply.json == {"code": code, "msg": msg}
    assert "X-MBX-USED-WEIGHT-1M" in reply.headers


def test_used_weight_header_counts_per_minute() -> None:
    now = [NOW_MS]

    async def body(sim: SimulatorServer, http: aiohttp.ClientSession) -> list[int]:
        used = []
        for path, params in [
            ("/api/v3/ping", {}),
            ("/api/v3/time", {}),
            ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1}),
            ("/api/v3/uiKlines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1}),
            ("/api/v3/exchangeInfo", {}),
            ("/api/v3/klines", {"symbol": "NOPE", "interval": "1m"}),  # rejected requests cost too
        ]:
            used.append(int((await get(http, path, **params)).headers["X-MBX-USED-WEIGHT-1M"]))
        now[0] = floor_open_time(NOW_MS, "1m") + MINUTE_MS  # the next minute window
        used.append(int((await get(http, "/api/v3/ping")).headers["X-MBX-USED-WEIGHT-1M"]))
        return used

    assert run(body, market=Market(SEED), clock=lambda: now[0]) == [1, 2, 4, 6, 26, 28, 1]


# ---------------------------------------------------------------------- server lifecycle


def test_server_start_stop_are_idempotent() -> None:
    async def main() -> None:
        sim = SimulatorServer(seed=1)
        with pytest.raises(RuntimeError):
            _ = sim.base_url
        await sim.start()
        url = sim.base_url
        await sim.start()
        assert sim.base_url == url and sim.port > 0 and url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http, http.get(f"{url}/api/v3/ping") as resp:
            assert resp.status == 200
        await sim.stop()
        await sim.stop()
        assert not sim.running

    asyncio.run(main())


def test_serve_logs_its_url_and_stops_on_sigterm() -> None:
    code = "from streamforge_pipelines.simulator import serve; serve('127.0.0.1', 0, 7)"
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        started = json.loads(proc.stderr.readline())
        assert started["event"] == "simulator_started" and started["seed"] == 7
        with urllib.request.urlopen(f"{started['url']}/api/v3/ping", timeout=10) as resp:
            assert json.loads(resp.read()) == {}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
