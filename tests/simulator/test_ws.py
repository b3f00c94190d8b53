"""The simulator's WebSocket market streams, served for real on loopback.

Each test mounts :func:`ws_routes` in a small aiohttp app on a free port and reads it with aiohttp's
``ws_connect`` (one test with the ``websockets`` package). The clock is frozen at a chosen instant and
``WsConfig.speedup`` runs simulated time fast, so candles close within a second; connection-rule
timers are shortened. Waits are bounded (``asyncio.timeout``); nothing sleeps to synchronise.

Shapes are compared with the real captures in ``tests/fixtures/binance/`` (keys in order, JSON
types); values with the market model (``Market.klines``, ``trades``, ``agg_trades``,
``depth_snapshot``), which is what the REST API serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp import WSMsgType, web

from streamforge_pipelines.intervals import HOUR_MS, MINUTE_MS
from streamforge_pipelines.simulator.faults import FaultConfig
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.simulator.ws import WsConfig, WsStreams, parse_stream, ws_routes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "binance"
SEED = 20240801
MARKET = Market(SEED)
#: 2024-08-02 05:00:57 UTC: three simulated seconds before a minute closes.
T0 = 1_722_556_800_000 + 5 * HOUR_MS + 57_000
SYM = "BTCUSDT"
#: Rate limit high enough for tests that send many control messages.
CHATTY = WsConfig(max_incoming_per_s=100)


def capture_frames(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [json.loads(line.split("\t", 1)[1]) for line in lines if line and not line.startswith("#")]


def capture(stream_suffix: str) -> dict[str, Any]:
    """The payload of the first real frame whose stream ends with ``stream_suffix``."""
    for name in (
        "spot_ws_kline_aggTrade_bookTicker_combined.jsonl",
        "spot_ws_depth100ms_NKNUSDT_combined.jsonl",
    ):
        for frame in capture_frames(name):
            if frame["stream"].endswith(stream_suffix):
                return frame["data"]
    raise LookupError(stream_suffix)


def shape(value: Any) -> Any:
    """Keys in order and JSON types (lists: the shape of their first element)."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return ["list", shape(value[0]) if value else None]
    return type(value).__name__


def run(coro: Callable[[], Coroutine[Any, Any, Any]], limit_s: float = 15.0) -> Any:
    async def main() -> Any:
        async with asyncio.timeout(limit_s):
            return await coro()

    return asyncio.run(main())


@contextlib.asynccontextmanager
async def serve(config: WsConfig | None = None, now_ms: int = T0) -> AsyncIterator[str]:
    """A server with the WS routes on a free loopback port; yields ``ws://127.0.0.1:<port>``."""
    app = web.Application()
    WsStreams(MARKET, clock=lambda: now_ms, config=config or WsConfig()).install(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"ws://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def connect(url: str, **kwargs: Any) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with aiohttp.ClientSession() as session, session.ws_connect(url, **kwargs) as ws:
        yield ws


async def recv(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await ws.receive()
    assert msg.type == WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def request(ws: aiohttp.ClientWebSocketResponse, message: Any) -> Any:
    """Send a control message and return the next frame that is a reply (not stream data)."""
    await ws.send_str(message if isinstance(message, str) else json.dumps(message))
    while True:
        frame = await recv(ws)
        if "id" in frame:
            return frame


# ---------------------------------------------------------------------- stream names


def test_parse_stream_names() -> None:
    assert parse_stream("btcusdt@kline_1m").interval == "1m"  # type: ignore[union-attr]
    assert parse_stream("btcusdt@kline_1M").interval == "1M"  # type: ignore[union-attr]
    assert parse_stream("btcusdt@depth20@100ms").levels == 20  # type: ignore[union-attr]
    assert parse_stream("btcusdt@depth").period_ms == 1000  # type: ignore[union-attr]
    assert parse_stream("btcusdt@depth@100ms").period_ms == 100  # type: ignore[union-attr]
    for bad in (
        "btcusdt@kline_2m",
        "BTCUSDT@trade",
        "btcusdt@depth7",
        "btcusdt@ticker",
        "btcusdt",
        "@trade",
        "btcusdt@depth@1000ms",
    ):
        assert parse_stream(bad) is None, bad


# ---------------------------------------------------------------------- klines


def test_kline_stream_raw_frames_close_once_and_match_rest() -> None:
    real = capture("@kline_1m")

    async def body() -> list[dict[str, Any]]:
        async with serve(WsConfig(speedup=60)) as url, connect(f"{url}/ws/btcusdt@kline_1m") as ws:
            frames: list[dict[str, Any]] = []
            while sum(f["k"]["x"] for f in frames) < 2:  # two closes: T0+3 s and T0+63 s simulated
                frames.append(await recv(ws))
            return frames

    frames = run(body)
    for f in frames:
        assert shape(f) == shape(real)
        k = f["k"]
        assert f["s"] == k["s"] == SYM and k["i"] == "1m"
        assert f["E"] % 2000 == 0 and k["T"] == k["t"] + MINUTE_MS - 1
        assert k["L"] - k["f"] + 1 == k["n"]
    opens = [f["k"]["t"] for f in frames]
    assert opens == sorted(opens) and len(set(opens)) == 2
    for t in sorted(set(opens)):
        updates = [f for f in frames if f["k"]["t"] == t]
        assert [u["k"]["x"] for u in updates] == [False] * (len(updates) - 1) + [True]
        final = updates[-1]
        assert final["E"] == final["k"]["T"] + 1
        (rest,) = MARKET.klines(SYM, "1m", t, t, 1, final["E"])
        k = final["k"]
        assert [
            k["t"],
            k["o"],
            k["h"],
            k["l"],
            k["c"],
            k["v"],
            k["T"],
            k["q"],
            k["n"],
            k["V"],
            k["Q"],
        ] == rest[:11]
        assert k["L"] == MARKET.trades(SYM, k["T"], 1)[0]["id"]
        # every earlier update shows the candle as it stood just before its event time
        for u in updates[:-1]:
            (row,) = MARKET.klines(SYM, "1m", t, t, 1, u["E"] - 1)
            assert u["k"]["c"] == row[4] and u["k"]["n"] == row[8]


def test_kline_1s_every_push_is_final() -> None:
    async def body() -> list[dict[str, Any]]:
        async with serve(WsConfig(speedup=20)) as url, connect(f"{url}/ws/ethusdt@kline_1s") as ws:
            return [await recv(ws) for _ in range(5)]

    frames = run(body)
    assert [f["k"]["t"] for f in frames] == [frames[0]["k"]["t"] + 1000 * i for i in range(5)]
    for f in frames:
        k = f["k"]
        assert k["x"] is True and f["E"] == k["T"] + 1
        (rest,) = MARKET.klines("ETHUSDT", "1s", k["t"], k["t"], 1, f["E"])
        assert [k["o"], k["h"], k["l"], k["c"], k["v"], k["n"]] == [
            rest[1],
            rest[2],
            rest[3],
            rest[4],
            rest[5],
            rest[8],
        ]
        assert (k["f"], k["L"]) == ((-1, -1) if k["n"] == 0 else (k["L"] - k["n"] + 1, k["L"]))


# ---------------------------------------------------------------------- trades, combined frames


def test_combined_trade_and_aggtrade_streams_match_rest() -> None:
    real_agg = capture("@aggTrade")
    real_trade_keys = ["e", "E", "s", "t", "p", "q", "T", "m", "M"]  # reference/BINANCE_API.md §4.3

    async def body() -> list[dict[str, Any]]:
        url = "/stream?streams=ethusdt@trade/ethusdt@aggTrade"
        async with serve(WsConfig(speedup=20)) as base, connect(base + url) as ws:
            frames: list[dict[str, Any]] = []
            while sum(f["stream"] == "ethusdt@aggTrade" for f in frames) < 30:
                frames.append(await recv(ws))
            return frames

    frames = run(body)
    assert all(list(f) == ["stream", "data"] for f in frames)
    trades = [f["data"] for f in frames if f["stream"] == "ethusdt@trade"]
    aggs = [f["data"] for f in frames if f["stream"] == "ethusdt@aggTrade"]
    assert all(shape(a) == shape(real_agg) for a in aggs)
    assert all(list(t) == real_trade_keys and t["E"] == t["T"] for t in trades)
    ids = [t["t"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    rest = MARKET.trades("ETHUSDT", trades[-1]["T"], len(trades), from_id=ids[0])
    assert [(r["id"], r["price"], r["qty"], r["time"], r["isBuyerMaker"]) for r in rest] == [
        (t["t"], t["p"], t["q"], t["T"], t["m"]) for t in trades
    ]
    rest_aggs = MARKET.agg_trades("ETHUSDT", aggs[-1]["T"], len(aggs), from_id=aggs[0]["a"])
    assert [{k: a[k] for k in ("a", "p", "q", "f", "l", "T", "m", "M")} for a in aggs] == rest_aggs
    times = [f["data"]["E"] for f in frames]
    assert times == sorted(times)


def test_time_unit_microsecond() -> None:
    async def body() -> list[dict[str, Any]]:
        url = "/stream?streams=ethusdt@aggTrade/ethusdt@kline_1s&timeUnit=microsecond"
        async with serve(WsConfig(speedup=10)) as base, connect(base + url) as ws:
            return [(await recv(ws))["data"] for _ in range(6)]

    frames = run(body)
    assert {d["e"] for d in frames} == {"kline", "aggTrade"}  # both kinds below are checked
    for data in frames:
        assert data["E"] > T0 * 100
        if data["e"] == "kline":
            assert data["k"]["t"] % 1_000_000 == 0 and data["k"]["T"] == data["k"]["t"] + 999_999
        else:
            assert data["T"] == data["E"]


# ---------------------------------------------------------------------- control messages


def test_control_messages_and_errors() -> None:
    async def body() -> None:
        async with serve(CHATTY) as url, connect(f"{url}/ws") as ws:
            assert await request(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 1}) == {
                "result": False,
                "id": 1,
            }
            sub = {"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "ethusdt@depth"], "id": "abc1"}
            assert await request(ws, sub) == {"result": None, "id": "abc1"}
            first = await recv(ws)
            assert first["e"] in ("aggTrade", "depthUpdate")  # raw: bare payloads
            listed = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": None})
            assert listed == {"result": ["btcusdt@aggTrade", "ethusdt@depth"], "id": None}
            unsub = {"method": "UNSUBSCRIBE", "params": ["ethusdt@depth"], "id": 312}
            assert await request(ws, unsub) == {"result": None, "id": 312}
            set_prop = {"method": "SET_PROPERTY", "params": ["combined", True], "id": 5}
            assert await request(ws, set_prop) == {"result": None, "id": 5}
            get_prop = {"method": "GET_PROPERTY", "params": ["combined"], "id": 2}
            assert await request(ws, get_prop) == {"result": True, "id": 2}
            while (frame := await recv(ws)).get("stream") is None:
                pass  # frames sent before SET_PROPERTY took effect
            assert frame["stream"] == "btcusdt@aggTrade" and frame["data"]["e"] == "aggTrade"
            assert (await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 7}))["result"] == [
                "btcusdt@aggTrade"
            ]

            async def error(message: Any) -> tuple[int, str, Any]:
                reply = await request(ws, message)
                return reply["error"]["code"], reply["error"]["msg"], reply["id"]

            assert await error({"method": "GET_PROPERTY", "params": ["foo"], "id": 9}) == (
                0,
                "Unknown property",
                9,
            )
            assert await error({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 10}) == (
                1,
                "Invalid value type: expected Boolean",
                10,
            )
            assert await error({"method": "SET_PROPERTY", "params": [3, True], "id": 11}) == (
                2,
                "Invalid request: property name must be a string",
                11,
            )
            for bad_id in (1.5, True, "has space", "x" * 37, [1]):
                code, msg, rid = await error({"method": "LIST_SUBSCRIPTIONS", "id": bad_id})
                assert (code, msg, rid) == (
                    2,
                    "Invalid request: request ID must be an unsigned integer",
                    None,
                )
            code, msg, rid = await error({"method": "FOO", "id": 12})
            assert (
                code == 2
                and msg.startswith("Invalid request: unknown variant `FOO`, expected one of")
                and rid == 12
            )
            code, msg, rid = await error({"params": [], "id": 13})
            assert code == 2 and msg.startswith("Invalid request: missing field `method`") and rid == 13
            assert await error({"method": "GET_PROPERTY", "params": ["combined", 1], "id": 14}) == (
                2,
                "Invalid request: too many parameters",
                14,
            )
            assert await error({"method": "SUBSCRIBE", "params": ["btcusdt@kline_7m"], "id": 15}) == (
                2,
                "Invalid request: invalid stream",
                15,
            )
            assert await error('{"method": "SUBSCRIBE",') == (
                3,
                "Invalid JSON: expected value at line 1 column 24",
                None,
            )
            assert await error("{\n  oops}") == (3, "Invalid JSON: expected value at line 2 column 3", None)
            # a well-formed stream of an unlisted symbol is accepted and stays silent
            assert await request(ws, {"method": "SUBSCRIBE", "params": ["nosuchusdt@trade"], "id": 16}) == {
                "result": None,
                "id": 16,
            }

    run(body)


def test_stream_limit_and_invalid_url_streams() -> None:
    async def body() -> None:
        async with serve(WsConfig(max_streams=3, max_incoming_per_s=100)) as url:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                async with connect(f"{url}/ws/btcusdt@trade/ethusdt@trade/bnbusdt@trade/solusdt@trade"):
                    pass
            assert err.value.status == 400
            # names Binance does not know are ignored in a URL (ccxt opens /ws/0, then SUBSCRIBEs)
            async with connect(f"{url}/stream?streams=btcusdt@nonsense/0/ethusdt@trade") as ws:
                listed = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 0})
                assert listed == {"result": ["ethusdt@trade"], "id": 0}
            async with connect(f"{url}/stream?streams=btcusdt@trade/ethusdt@trade") as ws:
                assert await request(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 1}) == {
                    "result": True,
                    "id": 1,
                }
                too_many = {"method": "SUBSCRIBE", "params": ["bnbusdt@trade", "solusdt@trade"], "id": 2}
                assert (await request(ws, too_many))["error"] == {
                    "code": 2,
                    "msg": "Invalid request: too many streams",
                }
                ok = {"method": "SUBSCRIBE", "params": ["bnbusdt@trade", "btcusdt@trade"], "id": 3}
                assert await request(ws, ok) == {"result": None, "id": 3}
                listed = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 4})
                assert listed["result"] == ["btcusdt@trade", "ethusdt@trade", "bnbusdt@trade"]

    run(body)


def test_websockets_client_sees_same_protocol() -> None:
    async def body() -> None:
        async with serve(CHATTY) as url, websockets.connect(f"{url}/stream?streams=btcusdt@bookTicker") as ws:
            frame = json.loads(await ws.recv())
            assert frame["stream"] == "btcusdt@bookTicker"
            assert shape(frame["data"]) == shape(capture("@bookTicker"))
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
            while "id" not in (reply := json.loads(await ws.recv())):
                pass
            assert reply == {"result": ["btcusdt@bookTicker"], "id": 1}

    run(body)


# ---------------------------------------------------------------------- connection rules


def test_pings_arrive_and_answering_keeps_the_connection() -> None:
    cfg = WsConfig(ping_interval_s=0.05, pong_timeout_s=0.2, max_incoming_per_s=1000)

    async def body() -> int:
        async with serve(cfg) as url, connect(f"{url}/ws", autoping=False) as ws:
            pings = 0
            while pings < 10:  # 0.5 s: well past the pong timeout
                msg = await ws.receive()
                assert msg.type == WSMsgType.PING, msg
                await ws.pong(msg.data)
                pings += 1
            return pings

    assert run(body) == 10


def test_client_that_never_pongs_is_dropped() -> None:
    cfg = WsConfig(ping_interval_s=0.05, pong_timeout_s=0.2, max_incoming_per_s=100)

    async def body() -> tuple[int, Any]:
        async with serve(cfg) as url, connect(f"{url}/ws", autoping=False) as ws:
            pings = 0
            while (msg := await ws.receive()).type == WSMsgType.PING:
                pings += 1
                await ws.pong(b"unsolicited")  # a pong that echoes nothing does not count
            assert msg.type == WSMsgType.CLOSE
            return pings, ws.close_code

    pings, code = run(body)
    assert 3 <= pings <= 6 and code == 1008


def test_too_many_incoming_messages_disconnect() -> None:
    async def body() -> Any:
        async with serve(WsConfig(max_incoming_per_s=5)) as url, connect(f"{url}/ws") as ws:
            for i in range(5):
                assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": i}) == {"result": [], "id": i}
            await ws.ping()
            msg = await ws.receive()
            assert msg.type == WSMsgType.CLOSE
            return ws.close_code, msg.extra

    assert run(body) == (1008, "Too many requests")


@pytest.mark.parametrize("path", ["/ws/btcusdt@depth@100ms", "/stream?streams=btcusdt@depth@100ms"])
def test_lifetime_ends_with_server_shutdown(path: str) -> None:
    async def body() -> tuple[list[Any], Any]:
        async with serve(WsConfig(max_lifetime_s=0.3, speedup=5)) as url, connect(url + path) as ws:
            frames = []
            while (msg := await ws.receive()).type == WSMsgType.TEXT:
                frames.append(json.loads(msg.data))
            assert msg.type == WSMsgType.CLOSE
            return frames, ws.close_code

    frames, code = run(body)
    assert code == 1000 and len(frames) > 1
    last = frames[-1]
    if path.startswith("/stream"):
        assert last["stream"] == "!serverShutdown"
        last = last["data"]
    assert list(last) == ["e", "E"] and last["e"] == "serverShutdown" and last["E"] > T0


def test_injected_disconnect_drops_the_connection() -> None:
    cfg = WsConfig(disconnect_rate=1.0, disconnect_within_s=0.2)

    async def body() -> WSMsgType:
        async with serve(cfg) as url, connect(f"{url}/ws/btcusdt@depth@100ms") as ws:
            while (msg := await ws.receive()).type == WSMsgType.TEXT:
                pass
            return msg.type

    assert run(body) in (WSMsgType.CLOSED, WSMsgType.ERROR)


# ---------------------------------------------------------------------- order book


class LocalBook:
    """A client's book per reference/BINANCE_API.md §5.1 (spot)."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.last_id = -1

    def load(self, snapshot: dict[str, Any]) -> None:
        self.bids = dict(map(tuple, snapshot["bids"]))
        self.asks = dict(map(tuple, snapshot["asks"]))
        self.last_id = snapshot["lastUpdateId"]

    def apply(self, event: dict[str, Any]) -> str:
        """'stale', 'gap' or 'applied'."""
        if event["u"] < self.last_id:
            return "stale"
        if event["U"] > self.last_id + 1:
            return "gap"
        for side, levels in ((self.bids, event["b"]), (self.asks, event["a"])):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_id = event["u"]
        return "applied"

    def top(self, n: int) -> dict[str, Any]:
        bids = sorted(self.bids.items(), key=lambda x: Decimal(x[0]), reverse=True)[:n]
        asks = sorted(self.asks.items(), key=lambda x: Decimal(x[0]))[:n]
        return {
            "lastUpdateId": self.last_id,
            "bids": [list(b) for b in bids],
            "asks": [list(a) for a in asks],
        }


def snapshot(symbol: str, now_ms: int, limit: int = 5000) -> dict[str, Any]:
    return MARKET.depth_snapshot(symbol, limit, now_ms).to_json()


def test_local_book_rebuilt_from_diffs_across_injected_gaps() -> None:
    """§5.1 against the model's true book, with dropped diff events forcing resyncs."""
    real = capture("@depth@100ms")
    cfg = WsConfig(speedup=10, depth_gap_rate=0.08, fault_seed=7)

    async def body() -> tuple[int, int]:
        local = LocalBook()
        async with serve(cfg) as url, connect(f"{url}/ws/btcusdt@depth@100ms") as ws:
            buffered: list[dict[str, Any]] = []
            synced = resyncs = checked = 0
            first_try = True
            while checked < 25 or resyncs < 2:
                event = await recv(ws)
                assert list(event) == list(real) and shape(event)[:5] == shape(real)[:5]
                if not synced:
                    buffered.append(event)
                    # steps 3-4: a snapshot older than the first buffered event is refused; the first
                    # attempt deliberately asks for one from a second earlier.
                    at = buffered[0]["E"] - 1000 if first_try else event["E"]
                    first_try = False
                    snap = snapshot(SYM, at)
                    if snap["lastUpdateId"] < buffered[0]["U"]:
                        continue
                    local.load(snap)  # step 6; step 5 is the 'stale' answer below
                    pending, buffered = buffered, []
                    synced = 1
                else:
                    pending = [event]
                for ev in pending:
                    outcome = local.apply(ev)
                    if outcome == "gap":  # events were missed: restart from step 1
                        resyncs += 1
                        synced = 0
                        buffered = [ev]
                        break
                    if outcome == "applied" and ev["E"] % 300 == 0:
                        true = snapshot(SYM, ev["E"])
                        assert local.top(5000) == true
                        checked += 1
        return checked, resyncs

    checked, resyncs = run(body, limit_s=20)
    assert checked >= 25 and resyncs >= 2


def test_depth_1000ms_partial_depth_and_book_ticker_share_update_ids() -> None:
    streams = "btcusdt@depth/btcusdt@depth@100ms/btcusdt@depth5@100ms/btcusdt@depth10/btcusdt@bookTicker"

    async def body() -> list[dict[str, Any]]:
        async with serve(WsConfig(speedup=10)) as url, connect(f"{url}/stream?streams={streams}") as ws:
            frames: list[dict[str, Any]] = []
            while sum(f["stream"] == "btcusdt@depth" for f in frames) < 3:
                frames.append(await recv(ws))
            return frames

    frames = run(body)
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for f in frames:
        by_stream.setdefault(f["stream"], []).append(f["data"])
    diffs = by_stream["btcusdt@depth@100ms"]
    assert all(b["U"] == a["u"] + 1 for a, b in pairwise(diffs))
    e_of_u = {d["u"]: d["E"] for d in diffs}
    # partial depth: the model's book at the time of the diff event with the same update id
    real_snapshot = json.loads((FIXTURES / "spot_rest_depth_snapshot_NKNUSDT_limit1000.json").read_text())
    partial_shape = shape(real_snapshot["response"])
    # Every frame up to the last diff received (a frame of the final tick may come before its diff)
    # carries the update id of a diff event: at least all but one of each stream's frames, at least 2.
    last_u = diffs[-1]["u"]

    def covered(frames: list[dict[str, Any]], id_key: str) -> list[dict[str, Any]]:
        within = [f for f in frames if f[id_key] <= last_u]
        assert len(within) >= max(2, len(frames) - 1), (id_key, len(within), len(frames))
        assert all(f[id_key] in e_of_u for f in within)
        return within

    for name, n in (("btcusdt@depth5@100ms", 5), ("btcusdt@depth10", 10)):
        for p in by_stream[name]:
            assert shape(p) == partial_shape and len(p["bids"]) == len(p["asks"]) == n
        for p in covered(by_stream[name], "lastUpdateId"):
            assert p == snapshot(SYM, e_of_u[p["lastUpdateId"]], n)
    # bookTicker: u is a diff event's u; the values are that book's best levels
    for t in covered(by_stream["btcusdt@bookTicker"], "u"):
        best = snapshot(SYM, e_of_u[t["u"]], 1)
        assert [t["b"], t["B"], t["a"], t["A"]] == [*best["bids"][0], *best["asks"][0]]
    # 1000 ms diffs: on the second grid, chained, and each equal to its ten 100 ms events applied
    seconds = by_stream["btcusdt@depth"]
    assert all(s["E"] % 1000 == 0 for s in seconds)
    assert all(b["U"] == a["u"] + 1 for a, b in pairwise(seconds))
    book = LocalBook()
    book.load(snapshot(SYM, seconds[0]["E"] - 1000))
    for s in seconds:
        assert book.apply(s) == "applied"
        assert book.top(5000) == snapshot(SYM, s["E"])


def test_server_stop_sends_server_shutdown_and_closes() -> None:
    async def body() -> tuple[dict[str, Any], Any]:
        app = web.Application()
        streams = WsStreams(MARKET, clock=lambda: T0, config=WsConfig(speedup=5))
        streams.install(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with connect(f"ws://127.0.0.1:{port}/stream?streams=btcusdt@depth@100ms") as ws:
                await recv(ws)
                assert streams.connections == 1
                stopping = asyncio.create_task(runner.cleanup())
                while (frame := await recv(ws))["stream"] != "!serverShutdown":
                    pass
                assert (await ws.receive()).type == WSMsgType.CLOSE
                await stopping
                return frame, ws.close_code
        finally:
            await runner.cleanup()

    frame, code = run(body, limit_s=10)
    assert frame["data"]["e"] == "serverShutdown" and code == 1001


def test_ws_routes_are_the_three_paths() -> None:
    routes = ws_routes(MARKET, clock=lambda: T0)
    assert [(r.method, r.path) for r in routes] == [
        ("GET", "/ws"),
        ("GET", "/ws/{streams:.+}"),
        ("GET", "/stream"),
    ]


def test_config_from_fault_config() -> None:
    faults = FaultConfig(ws_disconnect_rate=0.01, depth_gap_rate=0.2)
    cfg = WsConfig.from_faults(faults, fault_seed=3, speedup=2)
    assert (cfg.disconnect_rate, cfg.depth_gap_rate, cfg.fault_seed, cfg.speedup) == (0.01, 0.2, 3, 2)
    with pytest.raises(ValueError):
        WsConfig(depth_gap_rate=1.5)


# ---------------------------------------------------------------------- a third-party client


def test_ccxt_pro_order_book_trades_and_ohlcv_equal_the_market() -> None:
    """ccxt.pro runs Binance's book procedure against these streams plus the REST snapshot.

    The simulator's REST app (``build_app``) and the streams share one market on the wall clock, as
    in production; ccxt opens ``/ws/<n>`` and SUBSCRIBEs, fetches ``/api/v3/depth`` and checks the
    update-id sequence itself. Its book at each nonce must be the model's book of that update id.
    """
    ccxtpro = pytest.importorskip("ccxt.pro")
    from streamforge_pipelines.simulator.app import build_app
    from streamforge_pipelines.simulator.book import UPDATE_STRIDE, WINDOW_MS

    market = Market(5)
    spec = market.symbol(SYM)

    def window_of(update_id: int) -> int:
        return (update_id - 1) // UPDATE_STRIDE + spec.first_minute_ms // WINDOW_MS - 1

    async def body() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[list[float]]]:
        app = build_app(market)
        WsStreams(market).install(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host = f"127.0.0.1:{runner.addresses[0][1]}"
        exchange = ccxtpro.binance(
            {
                "options": {
                    "fetchMarkets": {"types": ["spot"]},
                    "fetchMargins": False,
                    "fetchCurrencies": False,
                }
            }
        )
        api = exchange.urls["api"]
        for key, url in list(api.items()):
            if isinstance(url, str):
                api[key] = re.sub(r"^https?://[^/]+", f"http://{host}", url)
        api["ws"]["spot"] = f"ws://{host}/ws"
        books: list[dict[str, Any]] = []
        try:
            for _ in range(12):
                ob = await exchange.watch_order_book("BTC/USDT", 1000)
                books.append(  # copies: ccxt updates its levels in place
                    {
                        "nonce": ob["nonce"],
                        "bids": [list(level) for level in ob["bids"][:100]],
                        "asks": [list(level) for level in ob["asks"][:100]],
                    }
                )
            trades = await exchange.watch_trades("BTC/USDT")
            candles = await exchange.watch_ohlcv("BTC/USDT", "1m")
            return books, [t["info"] for t in trades], candles
        finally:
            await exchange.close()
            await runner.cleanup()

    books, trades, candles = run(body, limit_s=20)
    nonces = [b["nonce"] for b in books]
    assert nonces == sorted(nonces) and len(set(nonces)) > 1
    for b in books:
        w = window_of(b["nonce"])
        assert market.book_levels(SYM, w, 1).last_update_id == b["nonce"]
        true = market.depth_snapshot(SYM, 100, (w + 1) * WINDOW_MS)
        assert b["bids"] == [[float(p), float(q)] for p, q in true.bids]
        assert b["asks"] == [[float(p), float(q)] for p, q in true.asks]
    for t in trades:
        (rest,) = market.trades(SYM, t["T"], 1, from_id=t["t"])
        assert (rest["price"], rest["qty"], rest["time"]) == (t["p"], t["q"], t["T"])
    last = candles[-1]
    (row,) = market.klines(SYM, "1m", last[0], last[0], 1, last[0] + MINUTE_MS)
    assert last[1] == float(row[1])  # the open of a candle never changes
