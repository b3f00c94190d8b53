"""The simulator's USD-M futures WebSocket streams and the spot ``@kline_<i>@+08:00`` streams.

Every test runs the whole simulator app (:func:`build_app`, which installs the WebSocket routes) on
a free loopback port and reads it with aiohttp. The clock runs ``speedup`` times real time from a
chosen instant and is shared by REST and the streams, so a REST snapshot and the events a connection
has received describe the same simulated moment. Waits are bounded (``asyncio.timeout``).

Values are compared with the market model (``Market.book_levels`` shifted by the futures basis,
``Market.klines``) and with the futures REST API (``/fapi/v1/depth``, ``/fapi/v1/klines``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from streamforge_pipelines.intervals import DAY_MS, HOUR_MS, MINUTE_MS
from streamforge_pipelines.simulator import book
from streamforge_pipelines.simulator.app import build_app
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.simulator.usdm import contract
from streamforge_pipelines.simulator.ws import WsConfig, parse_futures_stream, parse_stream
from streamforge_pipelines.simulator.ws.names import FUTURES_ROUTES, Dialect

SEED = 20240801
MARKET = Market(SEED)
DAY0 = 1_722_556_800_000  # 2024-08-02 00:00 UTC
#: Three simulated seconds before a minute closes.
T0 = DAY0 + 5 * HOUR_MS + 57_000
SYM = "BTCUSDT"
CONTRACT = contract(MARKET.symbol(SYM))
SPEEDUP = 10.0


class RunningClock:
    """Epoch ms running ``speedup`` times real time from ``start_ms`` (REST and streams share it)."""

    def __init__(self, start_ms: int, speedup: float) -> None:
        self.start_ms = start_ms
        self.speedup = speedup
        self.t0 = time.monotonic()

    def __call__(self) -> int:
        return self.start_ms + int((time.monotonic() - self.t0) * 1000 * self.speedup)


def run(coro: Callable[[], Coroutine[Any, Any, Any]], limit_s: float = 20.0) -> Any:
    async def main() -> Any:
        async with asyncio.timeout(limit_s):
            return await coro()

    return asyncio.run(main())


@contextlib.asynccontextmanager
async def serve(config: WsConfig | None = None, start_ms: int = T0) -> AsyncIterator[str]:
    """The simulator app on a free loopback port; yields ``http://127.0.0.1:<port>``."""
    cfg = config or WsConfig(speedup=SPEEDUP)
    app = build_app(MARKET, clock=RunningClock(start_ms, cfg.speedup), ws=cfg)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def recv(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await ws.receive()
    assert msg.type == WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def model_book(window: int, limit: int) -> tuple[list[list[str]], list[list[str]]]:
    """The model's futures book after ``window``: the spot book shifted by the basis (``/fapi/v1/depth``)."""
    levels = MARKET.book_levels(SYM, window, limit)
    c = CONTRACT
    snap = book.DepthSnapshot.from_levels(levels, c.price_decimals, c.qty_decimals, c.basis_units)
    return snap.bids, snap.asks


class LocalBook:
    """A §5 local order book: levels by price, rendered best first."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.last_update_id: int = snapshot["lastUpdateId"]
        self.bids = {p: q for p, q in snapshot["bids"]}
        self.asks = {p: q for p, q in snapshot["asks"]}
        #: The snapshot's price band: outside it a level is unknown until it changes (§5.1 caveat).
        self.band = (Decimal(snapshot["bids"][-1][0]), Decimal(snapshot["asks"][-1][0]))

    def in_band(self, levels: list[list[str]]) -> dict[str, str]:
        lo, hi = self.band
        return {p: q for p, q in levels if lo <= Decimal(p) <= hi}

    def matches(self, window: int) -> bool:
        """Whether the book equals the model's futures book after ``window`` within the band; raises if not.

        Returns True when the model's top 20 levels lie in the band, i.e. they were compared too.
        """
        bids, asks = model_book(window, book.BOOK_LEVELS)
        assert self.in_band([[p, q] for p, q in self.bids.items()]) == self.in_band(bids)
        assert self.in_band([[p, q] for p, q in self.asks.items()]) == self.in_band(asks)
        lo, hi = self.band
        return Decimal(bids[19][0]) >= lo and Decimal(asks[19][0]) <= hi

    def apply(self, event: dict[str, Any]) -> None:
        for side, levels in ((self.bids, event["b"]), (self.asks, event["a"])):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(p, None)
                else:
                    side[p] = q

    def top(self, n: int) -> tuple[list[list[str]], list[list[str]]]:
        bids = sorted(self.bids, key=Decimal, reverse=True)[:n]
        asks = sorted(self.asks, key=Decimal)[:n]
        return [[p, self.bids[p]] for p in bids], [[p, self.asks[p]] for p in asks]


# ---------------------------------------------------------------------- names and rules


def test_parse_futures_stream_names() -> None:
    agg = parse_futures_stream("btcusdt@aggTrade")
    assert agg is not None and agg.futures and agg.symbol == SYM
    assert parse_futures_stream("btcusdt@depth").period_ms == 250  # type: ignore[union-attr]
    assert parse_futures_stream("btcusdt@depth@500ms").period_ms == 500  # type: ignore[union-attr]
    partial = parse_futures_stream("btcusdt@depth10@100ms")
    assert partial is not None and (partial.kind, partial.levels, partial.period_ms) == ("partial", 10, 100)
    assert parse_futures_stream("btcusdt@depth20").period_ms == 250  # type: ignore[union-attr]
    assert parse_futures_stream("btcusdt@kline_1M").interval == "1M"  # type: ignore[union-attr]
    for bad in (
        "btcusdt@kline_1s",
        "btcusdt@trade",
        "btcusdt@depth@1000ms",
        "btcusdt@depth7",
        "BTCUSDT@aggTrade",
    ):
        assert parse_futures_stream(bad) is None, bad
    tz = parse_stream("btcusdt@kline_1d@+08:00")
    assert tz is not None and (tz.interval, tz.tz_offset_min, tz.period_ms) == ("1d", 480, 2000)
    assert parse_stream("btcusdt@kline_1d@+09:00") is None


def test_futures_connection_rules() -> None:
    """200 streams per connection, 10 incoming messages/s, pings on the futures timer, no ``@trade``."""
    cfg = WsConfig(speedup=SPEEDUP, futures_ping_interval_s=0.2)

    async def body() -> tuple[int, int | None, bytes, dict[str, Any]]:
        async with serve(cfg) as base, aiohttp.ClientSession() as session:
            ws_base = base.replace("http", "ws")
            names = "/".join(f"s{i}usdt@aggTrade" for i in range(201))
            async with session.get(f"{base}/fapi-ws/market/stream?streams={names}") as resp:
                too_many = resp.status
            async with session.ws_connect(f"{ws_base}/fapi-ws/market/ws", autoping=False) as ws:
                ping = await ws.receive()
                assert ping.type == WSMsgType.PING
                await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}))
                invalid = await recv(ws)
                for i in range(2, 11):  # the 10th message in this second is still allowed
                    await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
                await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 11}))
                replies = 0
                while (msg := await ws.receive()).type not in (WSMsgType.CLOSE, WSMsgType.CLOSED):
                    replies += msg.type == WSMsgType.TEXT
                assert replies == 9
                return too_many, ws.close_code, ping.data, invalid

    too_many, code, ping_data, invalid = run(body)
    assert too_many == 400
    assert code == 1008
    assert ping_data.isdigit()
    assert invalid == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 1}


#: What Binance's WebSocket handshake answers, as (HTTP status, JSON body).
INVALID_STREAM = {"code": 2, "msg": "Invalid request: invalid stream"}
RETIRED = {
    "code": -1,
    "msg": "This WebSocket URL was retired on 2026-04-23: use the /public or /market route",
}
#: Headers of a WebSocket upgrade request (RFC 6455 §4.1), sent by hand to read a refused handshake's body.
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def handshake(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    """Open ``url``: (101, its LIST_SUBSCRIPTIONS) when upgraded, else the refusal's (status, JSON body).

    A refused handshake is read a second time as a hand-made upgrade request, for its body (aiohttp's
    ``WSServerHandshakeError`` carries the status only).
    """
    try:
        async with session.ws_connect(url.replace("http", "ws", 1)) as ws:
            return 101, (await control(ws, "LIST_SUBSCRIPTIONS", [], 1))["result"]
    except aiohttp.WSServerHandshakeError as err:
        async with session.get(url, headers=UPGRADE) as resp:
            assert resp.status == err.status
            return resp.status, json.loads(await resp.read())


async def control(ws: aiohttp.ClientWebSocketResponse, method: str, params: list[str], req_id: int) -> Any:
    """Send one control message and return its reply, skipping the stream events received meanwhile."""
    await ws.send_str(json.dumps({"method": method, "params": params, "id": req_id}))
    while True:
        frame = await recv(ws)
        if isinstance(frame, dict) and frame.get("id") == req_id and ("result" in frame or "error" in frame):
            return frame


def test_retired_unrouted_futures_urls_are_refused() -> None:
    """``/fapi-ws/ws[/<s>]``, ``/fapi-ws/stream`` (retired 2026-04-23): 404 with a JSON reason, no upgrade."""
    paths = [
        "/fapi-ws/ws",
        "/fapi-ws/ws/btcusdt@bookTicker",
        "/fapi-ws/ws/btcusdt@aggTrade/btcusdt@depth",
        "/fapi-ws/stream?streams=btcusdt@bookTicker",
        "/fapi-ws/stream",
    ]

    async def body() -> tuple[list[tuple[int, Any]], tuple[int, Any], int]:
        async with serve() as base, aiohttp.ClientSession() as session:
            answers = [await handshake(session, base + p) for p in paths]
            routed = await handshake(session, f"{base}/fapi-ws/public/ws/btcusdt@depth")
            async with session.get(f"{base}/fapi-ws/stream?streams=btcusdt@depth") as resp:
                plain = resp.status  # a plain GET too: the path is gone, not just the upgrade
            return answers, routed, plain

    answers, routed, plain = run(body)
    assert answers == [(404, RETIRED)] * len(paths)
    assert routed == (101, ["btcusdt@depth"])  # the routed URL of the same stream opens
    assert plain == 404


def test_wrong_route_stream_in_url_refuses_the_handshake() -> None:
    """A stream of the other route in a URL: HTTP 400 ``invalid stream``; unparseable names still ignored."""

    async def body() -> dict[str, tuple[int, Any]]:
        async with serve() as base, aiohttp.ClientSession() as session:
            pub = f"{base}/fapi-ws/public"
            urls = {
                "aggTrade on public": f"{pub}/stream?streams=btcusdt@bookTicker/btcusdt@aggTrade",
                "kline on public": f"{base}/fapi-ws/public/ws/btcusdt@kline_1m",
                "depth on market": f"{base}/fapi-ws/market/ws/btcusdt@depth",
                "bookTicker on market": f"{base}/fapi-ws/market/stream?streams=btcusdt@bookTicker",
                "partial on market": f"{base}/fapi-ws/market/ws/ethusdt@depth5@100ms",
                "unparseable name": f"{base}/fapi-ws/public/ws/0",
                "spot-only name": f"{base}/fapi-ws/market/ws/btcusdt@trade",
                "own route": f"{base}/fapi-ws/market/ws/btcusdt@aggTrade/btcusdt@kline_1m",
            }
            return {k: await handshake(session, u) for k, u in urls.items()}

    got = run(body)
    for case in ("aggTrade on public", "kline on public", "depth on market", "bookTicker on market"):
        assert got[case] == (400, INVALID_STREAM), case
    assert got["partial on market"] == (400, INVALID_STREAM)
    # Names the futures dialect cannot parse are ignored (ccxt opens ``/ws/0``), not refused.
    assert got["unparseable name"] == (101, [])
    assert got["spot-only name"] == (101, [])
    assert got["own route"] == (101, ["btcusdt@aggTrade", "btcusdt@kline_1m"])


def test_wrong_route_subscribe_is_an_invalid_stream() -> None:
    """SUBSCRIBE naming a stream of the other route: ``invalid stream``, nothing of the request subscribed."""

    async def body() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with serve() as base, aiohttp.ClientSession() as session:
            ws_base = base.replace("http", "ws")
            async with session.ws_connect(f"{ws_base}/fapi-ws/public/ws") as ws:
                out["public mixed"] = await control(
                    ws, "SUBSCRIBE", ["btcusdt@bookTicker", "btcusdt@aggTrade"], 1
                )
                out["public after mixed"] = (await control(ws, "LIST_SUBSCRIPTIONS", [], 2))["result"]
                out["public own"] = await control(ws, "SUBSCRIBE", ["btcusdt@bookTicker"], 3)
                out["public unsubscribe wrong"] = await control(ws, "UNSUBSCRIBE", ["btcusdt@kline_1m"], 4)
                out["public list"] = (await control(ws, "LIST_SUBSCRIPTIONS", [], 5))["result"]
            async with session.ws_connect(f"{ws_base}/fapi-ws/market/stream") as ws:
                out["market depth"] = await control(ws, "SUBSCRIBE", ["btcusdt@depth@100ms"], 6)
                out["market own"] = await control(
                    ws, "SUBSCRIBE", ["btcusdt@aggTrade", "zzzusdt@kline_1m"], 7
                )
                out["market list"] = (await control(ws, "LIST_SUBSCRIPTIONS", [], 8))["result"]
                # Only the listed symbol's stream sends: the unknown symbol's is accepted and silent.
                out["market streams"] = {(await recv(ws))["stream"] for _ in range(10)}
        return out

    out = run(body)
    assert out["public mixed"] == {"error": INVALID_STREAM, "id": 1}
    assert out["public after mixed"] == []
    assert out["public own"] == {"result": None, "id": 3}
    assert out["public unsubscribe wrong"] == {"error": INVALID_STREAM, "id": 4}
    assert out["public list"] == ["btcusdt@bookTicker"]
    assert out["market depth"] == {"error": INVALID_STREAM, "id": 6}
    assert out["market own"] == {"result": None, "id": 7}
    assert out["market list"] == ["btcusdt@aggTrade", "zzzusdt@kline_1m"]
    assert out["market streams"] == {"btcusdt@aggTrade"}


def test_futures_route_kinds() -> None:
    """Each futures route serves its kinds only (§4.4): ``/public`` books, ``/market`` trades and klines."""
    assert set(FUTURES_ROUTES) == {"/public", "/market"}  # no unrouted legacy entry
    public, market = Dialect(True, FUTURES_ROUTES["/public"]), Dialect(True, FUTURES_ROUTES["/market"])
    for name in ("btcusdt@depth", "btcusdt@depth@500ms", "btcusdt@depth20", "btcusdt@bookTicker"):
        assert public.stream(name) is not None and market.stream(name) is None, name
        assert market.parse(name) is not None, name  # a stream, of the other route
    for name in ("btcusdt@aggTrade", "btcusdt@kline_4h"):
        assert market.stream(name) is not None and public.stream(name) is None, name
    assert public.stream("btcusdt@trade") is None and public.parse("btcusdt@trade") is None


# ---------------------------------------------------------------------- payload shapes


def test_futures_frame_shapes_and_values() -> None:
    wanted = {
        "btcusdt@aggTrade": "market",
        "btcusdt@kline_1m": "market",
        "btcusdt@bookTicker": "public",
        "btcusdt@depth": "public",
        "btcusdt@depth5@100ms": "public",
    }

    async def body() -> dict[str, dict[str, Any]]:
        got: dict[str, dict[str, Any]] = {}
        async with serve() as base, aiohttp.ClientSession() as session:
            ws_base = base.replace("http", "ws")
            for route in ("market", "public"):
                names = "/".join(n for n, r in wanted.items() if r == route)
                async with session.ws_connect(f"{ws_base}/fapi-ws/{route}/stream?streams={names}") as ws:
                    while not all(n in got for n, r in wanted.items() if r == route):
                        frame = await recv(ws)
                        got.setdefault(frame["stream"], frame["data"])
        return got

    got = run(body)
    pd, qd = CONTRACT.price_decimals, CONTRACT.qty_decimals

    agg = got["btcusdt@aggTrade"]
    assert list(agg) == ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m"]  # no "M"
    assert agg["e"] == "aggTrade" and agg["s"] == SYM and isinstance(agg["m"], bool)
    assert decimals(agg["p"]) == pd and decimals(agg["q"]) == qd
    spot = MARKET.agg_trades(SYM, agg["T"], limit=1, from_id=agg["a"])[0]
    assert Decimal(agg["p"]) - Decimal(spot["p"]) == Decimal(CONTRACT.basis_units) / 10**8
    assert Decimal(agg["q"]) == Decimal(spot["q"])
    assert (agg["f"], agg["l"], agg["T"]) == (spot["f"], spot["l"], spot["T"])

    bt = got["btcusdt@bookTicker"]
    assert list(bt) == ["e", "u", "E", "T", "s", "b", "B", "a", "A"]
    assert bt["e"] == "bookTicker" and all(isinstance(bt[k], int) for k in "uET")
    bids, asks = model_book(bt["T"] // book.WINDOW_MS - 1, 1)
    assert [[bt["b"], bt["B"]]] == bids and [[bt["a"], bt["A"]]] == asks
    assert decimals(bt["b"]) == pd and decimals(bt["B"]) == qd

    diff = got["btcusdt@depth"]
    assert list(diff) == ["e", "E", "T", "s", "U", "u", "pu", "b", "a"]
    assert diff["e"] == "depthUpdate" and diff["E"] % 250 == 0 and diff["T"] <= diff["E"]
    assert diff["pu"] < diff["U"] <= diff["u"]
    assert all(decimals(p) == pd and decimals(q) == qd for p, q in diff["b"] + diff["a"])

    part = got["btcusdt@depth5@100ms"]
    assert list(part) == list(diff)  # the same shape as the diff event (§4.4)
    assert len(part["b"]) == len(part["a"]) == 5 and part["E"] == part["T"]
    assert (part["b"], part["a"]) == model_book(part["T"] // book.WINDOW_MS - 1, 5)
    assert part["pu"] < part["U"] <= part["u"]

    kline = got["btcusdt@kline_1m"]
    assert list(kline) == ["e", "E", "s", "k"]
    assert list(kline["k"]) == [
        "t",
        "T",
        "s",
        "i",
        "f",
        "L",
        "o",
        "c",
        "h",
        "l",
        "v",
        "n",
        "x",
        "q",
        "V",
        "Q",
        "B",
    ]
    assert decimals(kline["k"]["o"]) == pd and decimals(kline["k"]["v"]) == qd


def test_futures_kline_closed_candle_equals_rest() -> None:
    async def body() -> tuple[dict[str, Any], list[Any]]:
        async with serve() as base, aiohttp.ClientSession() as session:
            ws_base = base.replace("http", "ws")
            async with session.ws_connect(f"{ws_base}/fapi-ws/market/ws/btcusdt@kline_1m") as ws:
                while not (k := (await recv(ws))["k"])["x"]:
                    pass
            rows = await get_json(
                session, f"{base}/fapi/v1/klines?symbol={SYM}&interval=1m&startTime={k['t']}&limit=1"
            )
            return k, rows[0]

    k, row = run(body)
    assert k["t"] == T0 + 3_000 - MINUTE_MS
    fields = [k[f] for f in ("t", "o", "h", "l", "c", "v", "T", "q", "n", "V", "Q")]
    assert fields == row[:11]


# ---------------------------------------------------------------------- local order book (§5.2)


async def _futures_book_run(
    cfg: WsConfig, stream: str, *, checkpoints: int, max_events: int
) -> tuple[int, int, list[dict[str, Any]]]:
    """Follow §5.2 on ``stream``; returns (breaks detected, top-20 matches, events applied).

    It stops after ``checkpoints`` applied events (and, with injected gaps, at least one break).

    Every applied event is a checkpoint: the local book must equal the model's futures book at the
    event's transaction time over the snapshot's price band (1000 levels a side); "matched" counts
    the checkpoints where that band also held the model's top 20 levels (then compared exactly). A
    ``pu`` that is not the previous ``u`` re-initialises from step 2.
    """
    breaks = matched = 0
    applied: list[dict[str, Any]] = []
    async with serve(cfg) as base, aiohttp.ClientSession() as session:
        ws_base = base.replace("http", "ws")
        snap_url = f"{base}/fapi/v1/depth?symbol={SYM}&limit=1000"
        async with session.ws_connect(f"{ws_base}/fapi-ws/public/stream?streams={stream}") as ws:
            buffered = [(await recv(ws))["data"] for _ in range(3)]  # step 1: buffer
            local: LocalBook | None = None
            prev_u: int | None = None
            for _ in range(max_events):
                event = buffered.pop(0) if buffered else (await recv(ws))["data"]
                if local is None:  # step 2: the snapshot
                    local = LocalBook(await get_json(session, snap_url))
                    prev_u = None
                lid = local.last_update_id
                if prev_u is None:
                    if event["u"] < lid:  # step 3
                        continue
                    if not event["U"] <= lid <= event["u"]:  # step 4 fails: the snapshot is too old
                        assert cfg.depth_gap_rate > 0, (event, lid)
                        local = None
                        continue
                elif event["pu"] != prev_u:  # step 5: a break, re-initialise
                    breaks += 1
                    local = None
                    continue
                local.apply(event)
                prev_u = event["u"]
                applied.append(event)
                window = event["T"] // book.WINDOW_MS - 1
                if local.matches(window):
                    assert local.top(20) == model_book(window, 20)
                    matched += 1
                if len(applied) >= checkpoints and (breaks or not cfg.depth_gap_rate):
                    break
    return breaks, matched, applied


def test_futures_local_book_procedure_rebuilds_the_book() -> None:
    breaks, matched, events = run(
        lambda: _futures_book_run(WsConfig(speedup=SPEEDUP), "btcusdt@depth", checkpoints=25, max_events=200)
    )
    assert breaks == 0 and len(events) == 25 and matched >= 1
    assert all(e["E"] % 250 == 0 for e in events)
    assert any(e["U"] != e["pu"] + 1 for e in events)  # futures: U is generally not the previous u + 1


def test_futures_pu_break_is_detected_and_resynced() -> None:
    cfg = WsConfig(speedup=SPEEDUP, depth_gap_rate=0.15, fault_seed=7)
    breaks, matched, events = run(
        lambda: _futures_book_run(cfg, "btcusdt@depth@100ms", checkpoints=30, max_events=2000), limit_s=40
    )
    assert breaks >= 1 and len(events) >= 30 and matched >= 1
    assert all(e["E"] == e["T"] for e in events)


# ---------------------------------------------------------------------- spot UTC+8 klines


@pytest.mark.parametrize("interval", ["1d"])
def test_spot_kline_plus8_closed_candle(interval: str) -> None:
    """``@kline_1d@+08:00``: the candle closes at 16:00 UTC and aggregates the 1m candles of its window."""
    start = DAY0 + 16 * HOUR_MS - 3_000

    async def body() -> tuple[dict[str, Any], dict[str, Any]]:
        async with serve(start_ms=start) as base, aiohttp.ClientSession() as session:
            ws_base = base.replace("http", "ws")
            async with session.ws_connect(f"{ws_base}/ws/btcusdt@kline_{interval}@+08:00") as ws:
                first = (await recv(ws))["k"]
                while not (k := (await recv(ws))["k"])["x"]:
                    pass
            return first, k

    first, k = run(body)
    open_ms = DAY0 - 8 * HOUR_MS
    assert k["t"] == first["t"] == open_ms and open_ms % DAY_MS == 16 * HOUR_MS
    assert k["T"] == open_ms + DAY_MS - 1 and k["i"] == interval
    minutes = MARKET.klines(SYM, "1m", open_ms, open_ms + DAY_MS - MINUTE_MS, 1440, open_ms + DAY_MS)
    assert len(minutes) == 1440

    def total(i: int) -> str:
        return f"{sum(Decimal(r[i]) for r in minutes):.8f}"

    assert k["o"] == minutes[0][1] and k["c"] == minutes[-1][4]
    assert Decimal(k["h"]) == max(Decimal(r[2]) for r in minutes)
    assert Decimal(k["l"]) == min(Decimal(r[3]) for r in minutes)
    assert (k["v"], k["q"], k["V"], k["Q"]) == (total(5), total(7), total(9), total(10))
    assert k["n"] == sum(r[8] for r in minutes)
    assert k["L"] - k["f"] + 1 == k["n"]
    # A UTC-bucketed 1d candle of the same instant is a different one.
    utc = MARKET.klines(SYM, "1d", DAY0, DAY0, 1, DAY0 + 16 * HOUR_MS)[0]
    assert utc[0] == DAY0 != k["t"]
