"""REST trades, aggTrades, depth, USD-M futures and ``/_sim/truth``, served for real on loopback.

Fixed seed, injected clock, no sleeps. Shapes are checked against the real captures copied into
``tests/fixtures/binance`` (depth) and the documented element layouts (trades,
aggTrades: reference section 1.5/1.6; futures: section 3).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamforge_pipelines.intervals import HOUR_MS, MINUTE_MS
from streamforge_pipelines.simulator import (
    Cluster,
    DowntimeWindow,
    LeadLag,
    Market,
    SimulatorConfig,
    SimulatorServer,
)

SEED = 20240801
NOW_MS = 1_722_556_800_000 + 5 * HOUR_MS + 12_345
MARKET = Market(SEED)
EIGHT_DP = re.compile(r"^[0-9]+\.[0-9]{8}$")
SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "binance"


class Reply:
    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw
        self.json = json.loads(raw)


Body = Callable[[SimulatorServer, aiohttp.ClientSession], Awaitable[Any]]


def run(body: Body, *, market: Market | None = None, config: SimulatorConfig | None = None) -> Any:
    async def main() -> Any:
        server = (
            SimulatorServer(config=config, clock=lambda: NOW_MS)
            if config is not None
            else SimulatorServer(market or MARKET, clock=lambda: NOW_MS)
        )
        async with server as sim, aiohttp.ClientSession(sim.base_url) as http:
            return await body(sim, http)

    return asyncio.run(main())


async def get(http: aiohttp.ClientSession, path: str, **params: Any) -> Reply:
    async with http.get(path, params={k: str(v) for k, v in params.items()}) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.read())


def fetch(*requests: tuple[str, dict[str, Any]], **kw: Any) -> list[Reply]:
    async def body(sim: SimulatorServer, http: aiohttp.ClientSession) -> list[Reply]:
        return [await get(http, path, **params) for path, params in requests]

    return run(body, **kw)


def one(path: str, **params: Any) -> Reply:
    return fetch((path, params))[0]


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return ("object", tuple((k, shape(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("array", shape(value[0]) if value else None)
    return type(value).__name__


# ---------------------------------------------------------------------- shapes


def test_agg_trades_and_trades_elements_have_the_documented_shape() -> None:
    aggs, trades, hist = fetch(
        ("/api/v3/aggTrades", {"symbol": "BTCUSDT", "limit": 5}),
        ("/api/v3/trades", {"symbol": "BTCUSDT", "limit": 5}),
        ("/api/v3/historicalTrades", {"symbol": "BTCUSDT", "limit": 5, "fromId": 1000}),
    )
    assert [r.status for r in (aggs, trades, hist)] == [200, 200, 200]
    assert len(aggs.json) == len(trades.json) == len(hist.json) == 5
    agg_keys = tuple(zip("apqflTmM", ["int", "str", "str", "int", "int", "int", "bool", "bool"], strict=True))
    assert shape(aggs.json) == ("array", ("object", agg_keys))
    names = ["id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"]
    trade_keys = tuple(zip(names, ["int", "str", "str", "str", "int", "bool", "bool"], strict=True))
    assert shape(trades.json) == shape(hist.json) == ("array", ("object", trade_keys))
    assert all(EIGHT_DP.match(a["p"]) and EIGHT_DP.match(a["q"]) for a in aggs.json)
    assert [t["id"] for t in hist.json] == [1000, 1001, 1002, 1003, 1004]
    assert trades.json[-1]["time"] <= NOW_MS and aggs.json[-1]["l"] == trades.json[-1]["id"]


def test_depth_matches_the_real_capture_shape_and_weights() -> None:
    real = json.loads((SAMPLES / "spot_rest_depth_snapshot_NKNUSDT_limit1000.json").read_text())["response"]
    replies = fetch(
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 10}),
        ("/api/v3/depth", {"symbol": "BTCUSDT"}),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 500}),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 1000}),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 9999}),
    )
    ten, default, _, _, capped = replies
    assert shape(ten.json) == shape(real) and list(ten.json) == ["lastUpdateId", "bids", "asks"]
    assert all(EIGHT_DP.match(x) for side in ("bids", "asks") for lvl in ten.json[side] for x in lvl)
    assert [len(r.json["bids"]) for r in replies] == [10, 100, 500, 1000, 5000]
    used = [int(r.headers["X-MBX-USED-WEIGHT-1M"]) for r in replies]
    assert used == [5, 10, 35, 85, 335]  # 5, 5, 25, 50, 250
    assert ten.json["bids"] == default.json["bids"][:10] == capped.json["bids"][:10]
    assert len({r.json["lastUpdateId"] for r in replies}) == 1


def test_trades_endpoint_weights() -> None:
    replies = fetch(
        ("/api/v3/aggTrades", {"symbol": "ETHUSDT"}),
        ("/api/v3/trades", {"symbol": "ETHUSDT"}),
        ("/api/v3/historicalTrades", {"symbol": "ETHUSDT"}),
    )
    assert [int(r.headers["X-MBX-USED-WEIGHT-1M"]) for r in replies] == [4, 29, 54]
    assert [len(r.json) for r in replies] == [500, 500, 500]
    assert replies[1].json == replies[2].json  # historicalTrades without fromId: the most recent


def test_agg_trades_pagination_over_rest_has_no_gaps() -> None:
    start = NOW_MS - 2 * HOUR_MS

    async def body(sim: SimulatorServer, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        first = (await get(http, "/api/v3/aggTrades", symbol="ADAUSDT", startTime=start, limit=1000)).json
        out = list(first)
        for _ in range(3):
            page = await get(http, "/api/v3/aggTrades", symbol="ADAUSDT", fromId=out[-1]["a"] + 1, limit=1000)
            out.extend(page.json)
        return out

    aggs = run(body)
    assert len(aggs) == 4000 and aggs[0]["T"] >= start
    assert [a["a"] for a in aggs] == list(range(aggs[0]["a"], aggs[0]["a"] + 4000))
    assert all(b["f"] == a["l"] + 1 for a, b in pairwise(aggs))


# ---------------------------------------------------------------------- errors

MANDATORY = "Mandatory parameter '{}' was not sent, was empty/null, or malformed."
ILLEGAL = "Illegal characters found in parameter '{}'; legal range is '^[0-9]{{1,20}}$'."
INVALID = "Data sent for parameter '{}' is not valid."
COMBO = "Combination of optional parameters invalid."


@pytest.mark.parametrize(
    ("path", "params", "code", "msg"),
    [
        ("/api/v3/aggTrades", {}, -1102, MANDATORY.format("symbol")),
        ("/api/v3/aggTrades", {"symbol": "NOPEUSDT"}, -1121, "Invalid symbol."),
        ("/api/v3/aggTrades", {"symbol": "BTCUSDT", "fromId": "x1"}, -1100, ILLEGAL.format("fromId")),
        (
            "/api/v3/aggTrades",
            {"symbol": "BTCUSDT", "startTime": ""},
            -1105,
            "Parameter 'startTime' was empty.",
        ),
        ("/api/v3/aggTrades", {"symbol": "BTCUSDT", "limit": 0}, -1130, INVALID.format("limit")),
        ("/api/v3/aggTrades", {"symbol": "BTCUSDT", "fromId": 1, "startTime": 1}, -1128, COMBO),
        ("/api/v3/aggTrades", {"symbol": "BTCUSDT", "startTime": 2, "endTime": 1}, -1128, COMBO),
        ("/api/v3/trades", {}, -1102, MANDATORY.format("symbol")),
        ("/api/v3/trades", {"symbol": "BTCUSDT", "limit": "-5"}, -1100, ILLEGAL.format("limit")),
        ("/api/v3/historicalTrades", {"symbol": "BTCUSDT", "fromId": "1.5"}, -1100, ILLEGAL.format("fromId")),
        ("/api/v3/historicalTrades", {"symbol": "nope"}, -1121, "Invalid symbol."),
        ("/api/v3/depth", {"limit": 5}, -1102, MANDATORY.format("symbol")),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 0}, -1130, INVALID.format("limit")),
        (
            "/api/v3/depth",
            {"symbol": "BTCUSDT", "symbolStatus": "OPEN"},
            -1130,
            INVALID.format("symbolStatus"),
        ),
        (
            "/api/v3/depth",
            {"symbol": "BTCUSDT", "symbolStatus": "HALT"},
            -1220,
            "The symbol's status does not match the requested symbolStatus.",
        ),
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1s"}, -1120, "Invalid interval."),
        ("/fapi/v1/klines", {"symbol": "BTCUSDT"}, -1102, MANDATORY.format("interval")),
        ("/fapi/v1/klines", {"symbol": "XUSDT", "interval": "1m"}, -1121, "Invalid symbol."),
        (
            "/fapi/v1/klines",
            {"symbol": "BTCUSDT", "interval": "1m", "startTime": 5, "endTime": 4},
            -1023,
            "Start time is greater than end time.",
        ),
        ("/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": 7}, -1130, INVALID.format("limit")),
    ],
)
def test_error_codes_and_messages(path: str, params: dict[str, Any], code: int, msg: str) -> None:
    reply = one(path, **params)
    assert (reply.status, reply.json) == (400, {"code": code, "msg": msg})


# ---------------------------------------------------------------------- USD-M futures


def test_futures_klines_precision_limit_and_weights() -> None:
    replies = fetch(
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1500}),
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m"}),
        ("/fapi/v1/klines", {"symbol": "XRPUSDT", "interval": "1h", "limit": 99}),
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "5m", "limit": 100}),
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 2000}),
        ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1000}),
    )
    big, _, xrp, _, _, spot = replies
    assert [len(r.json) for r in replies] == [1500, 500, 99, 100, 1500, 1000]
    # futures and spot weights are counted apart: 10, 5, 1, 2, 10 then spot 2
    assert [int(r.headers["X-MBX-USED-WEIGHT-1M"]) for r in replies] == [10, 15, 16, 18, 28, 2]
    row = big.json[-1]
    assert [type(x).__name__ for x in row] == ["int", *["str"] * 5, "int", "str", "int", "str", "str", "str"]
    assert all(re.fullmatch(r"[0-9]+\.[0-9]{2}", row[i]) for i in (1, 2, 3, 4))  # tick 0.01
    assert re.fullmatch(r"[0-9]+\.[0-9]{5}", row[5]) and EIGHT_DP.match(row[7])
    assert all(re.fullmatch(r"[0-9]+\.[0-9]{4}", r[1]) for r in xrp.json)  # "0.5512": tick 0.0001
    # same candles as spot, shifted by a constant basis
    spot_last = spot.json[-1]
    assert row[0] == spot_last[0] and row[8] == spot_last[8]
    basis = float(row[1]) - float(spot_last[1])
    assert basis > 0 and abs(float(row[4]) - float(spot_last[4]) - basis) < 1e-6


def test_futures_depth_and_exchange_info() -> None:
    depth, d5, info = fetch(
        ("/fapi/v1/depth", {"symbol": "ETHUSDT"}),
        ("/fapi/v1/depth", {"symbol": "ETHUSDT", "limit": 5}),
        ("/fapi/v1/exchangeInfo", {}),
    )
    assert list(depth.json) == ["lastUpdateId", "E", "T", "bids", "asks"]
    assert depth.json["E"] == NOW_MS and depth.json["T"] <= NOW_MS
    assert len(depth.json["bids"]) == len(depth.json["asks"]) == 500 and len(d5.json["bids"]) == 5
    assert re.fullmatch(r"[0-9]+\.[0-9]{2}", depth.json["bids"][0][0])
    assert [int(r.headers["X-MBX-USED-WEIGHT-1M"]) for r in (depth, d5, info)] == [10, 12, 13]
    body = info.json
    assert body["futuresType"] == "U_MARGINED" and body["assets"][0]["asset"] == "USDT"
    weight = {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}
    assert body["rateLimits"][0] == weight
    btc = next(s for s in body["symbols"] if s["symbol"] == "BTCUSDT")
    assert btc["contractType"] == "PERPETUAL" and btc["pricePrecision"] == 2 and btc["quantityPrecision"] == 5


# ---------------------------------------------------------------------- truth and determinism


def test_sim_truth_serves_the_configuration() -> None:
    config = SimulatorConfig(
        seed=99,
        symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"),
        clusters=(Cluster("l1", ("ETHUSDT", "SOLUSDT"), 0.6),),
        lead_lags=(LeadLag("BTCUSDT", "SOLUSDT", 2, 0.5),),
        downtime=(DowntimeWindow(NOW_MS - 3 * HOUR_MS, NOW_MS - 2 * HOUR_MS),),
    )
    reply = fetch(("/_sim/truth", {}), config=config)[0]
    truth = reply.json
    assert truth["seed"] == 99
    assert [s["symbol"] for s in truth["symbols"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert truth["clusters"] == [{"name": "l1", "symbols": ["ETHUSDT", "SOLUSDT"], "loading": 0.6}]
    assert truth["leadLags"] == [
        {"leader": "BTCUSDT", "follower": "SOLUSDT", "lagMinutes": 2, "strength": 0.5}
    ]
    down = truth["downtime"][0]
    assert down["startTime"] == (NOW_MS - 3 * HOUR_MS) // MINUTE_MS * MINUTE_MS and down["symbols"] is None


REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/api/v3/aggTrades", {"symbol": "BTCUSDT", "limit": 1000}),
    ("/api/v3/aggTrades", {"symbol": "SOLUSDT", "startTime": NOW_MS - HOUR_MS}),
    ("/api/v3/trades", {"symbol": "ETHUSDT", "limit": 1000}),
    ("/api/v3/historicalTrades", {"symbol": "XRPUSDT", "fromId": 123456}),
    ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 5000}),
    ("/fapi/v1/klines", {"symbol": "DOGEUSDT", "interval": "15m", "limit": 1500}),
    ("/fapi/v1/depth", {"symbol": "LINKUSDT", "limit": 1000}),
    ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1s", "limit": 1000}),
    ("/_sim/truth", {}),
]


def test_same_seed_gives_byte_identical_responses() -> None:
    first = [r.raw for r in fetch(*REQUESTS, market=Market(5))]
    again = [r.raw for r in fetch(*REQUESTS, market=Market(5))]
    other = [r.raw for r in fetch(*REQUESTS, market=Market(6))]
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))
