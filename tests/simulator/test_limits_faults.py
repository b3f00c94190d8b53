"""The simulator's rate-limit and fault-injection middlewares, served for real on loopback.

Each test mounts the middlewares on a tiny app of its own (dummy ``/api/v3/*`` handlers), serves it
with ``web.AppRunner`` on 127.0.0.1 and talks to it with a real aiohttp client. The limiter reads an
injected clock the tests advance, so no test sleeps on limits; only the latency test waits (loosely
measured). A second client address comes from binding the client socket to 127.0.0.2.

aiohttp's client retries an idempotent request (GET) once when the server drops the connection
(``ServerDisconnectedError``), so a dropped GET reaches the fault middleware twice and the client
sees the error only when both attempts are dropped; the tests below account for that retry.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from streamforge_pipelines.simulator.faults import (
    CLOUDFRONT_403_HTML,
    Fault,
    FaultConfig,
    FaultInjector,
    FaultRates,
)
from streamforge_pipelines.simulator.limits import (
    LimitsConfig,
    RateLimiter,
    default_weight_of,
    rate_limit_middleware,
)

MINUTE_MS = 60_000
#: 2024-08-02 05:00:45.500 UTC: 14.5 s before the minute ends.
T0 = 1_722_574_800_000 + 45_500
WEIGHT_MSG = (
    "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)
BAN_MSG = (
    "Way too much request weight used; IP banned until {}. "
    "Please use WebSocket Streams for live updates to avoid bans."
)
HEAVY = {"symbol": "BTCUSDT", "limit": "5000"}  # spot depth limit 5000: weight 250, 24 per minute
KLINE_ROWS = [
    [1_722_574_800_000 + i * MINUTE_MS, "60685.22000000", "60729.84000000", "60670.90000000",
     "60719.27000000", "21.63272000", 1_722_574_859_999 + i * MINUTE_MS, "1313200.01340410", 617,
     "12.28492000", "745719.41022840", "0"]
    for i in range(50)
]  # fmt: skip


class Clock:
    """An injected epoch-ms clock the test moves by hand."""

    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


class Reply:
    """One HTTP answer: status, headers and raw body."""

    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def weight(self) -> int:
        used = self.headers["X-MBX-USED-WEIGHT-1M"]
        assert self.headers["X-MBX-USED-WEIGHT"] == used
        return int(used)


def _json(payload: Any) -> web.Response:
    return web.json_response(payload, dumps=lambda v: json.dumps(v, separators=(",", ":")))


async def _ping(request: web.Request) -> web.Response:
    return _json({})


async def _klines(request: web.Request) -> web.Response:
    return _json(KLINE_ROWS)


async def _depth(request: web.Request) -> web.Response:
    return _json({"lastUpdateId": 1027024, "bids": [["4.00000000", "431.00000000"]], "asks": []})


def make_app(
    *, limiter: RateLimiter | None = None, clock: Clock | None = None, faults: FaultInjector | None = None
) -> web.Application:
    """The tiny app: limiter outermost, then faults, then dummy handlers (no exchangeInfo route)."""
    middlewares = []
    if limiter is not None:
        assert clock is not None
        middlewares.append(rate_limit_middleware(limiter, weight_of=default_weight_of, clock=clock))
    if faults is not None:
        middlewares.append(faults.middleware)
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/api/v3/ping", _ping)
    app.router.add_get("/api/v3/klines", _klines)
    app.router.add_get("/api/v3/depth", _depth)
    return app


Body = Callable[[str], Awaitable[Any]]


def serve(app: web.Application, body: Body) -> Any:
    """Serve ``app`` on 127.0.0.1 (free port), run ``body(base_url)``, stop the server."""

    async def main() -> Any:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            return await body(f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def session(base_url: str, *, source: str = "127.0.0.1", force_close: bool = False) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=force_close)
    return aiohttp.ClientSession(base_url, connector=connector)


async def get(http: aiohttp.ClientSession, path: str, params: dict[str, str] | None = None) -> Reply:
    async with http.get(path, params=params) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.read())


def limited(
    config: LimitsConfig | None = None, now_ms: int = T0
) -> tuple[RateLimiter, Clock, web.Application]:
    limiter, clock = RateLimiter(config or LimitsConfig()), Clock(now_ms)
    return limiter, clock, make_app(limiter=limiter, clock=clock)


# ---------------------------------------------------------------------- weights


def test_default_weight_of_by_path_and_params() -> None:
    def weight(path: str) -> int:
        return default_weight_of(make_mocked_request("GET", path))

    assert [weight("/api/v3/ping"), weight("/api/v3/klines?limit=1000"), weight("/api/v3/exchangeInfo")] == [
        1,
        2,
        20,
    ]
    assert weight("/api/v3/unknown") == 0
    spot = {None: 5, "1": 5, "100": 5, "101": 25, "500": 25, "501": 50, "1000": 50, "1001": 250, "9000": 250}
    for limit, expected in spot.items():
        path = "/api/v3/depth" + ("" if limit is None else f"?limit={limit}")
        assert weight(path) == expected, limit
    assert weight("/api/v3/depth?limit=abc") == 5  # malformed: the default limit's weight
    futures_klines = {
        None: 5,
        "1": 1,
        "99": 1,
        "100": 2,
        "499": 2,
        "500": 5,
        "1000": 5,
        "1001": 10,
        "1500": 10,
    }
    for limit, expected in futures_klines.items():
        for path in ("/fapi/v1/klines", "/fapi/v1/markPriceKlines"):
            assert weight(path + ("" if limit is None else f"?limit={limit}")) == expected, (path, limit)
    futures_depth = {None: 10, "5": 2, "10": 2, "20": 2, "50": 2, "100": 5, "500": 10, "1000": 20}
    for limit, expected in futures_depth.items():
        assert weight("/fapi/v1/depth" + ("" if limit is None else f"?limit={limit}")) == expected, limit


def test_weight_header_counts_up_per_window() -> None:
    _limiter, clock, app = limited()

    async def body(url: str) -> list[int]:
        async with session(url) as http:
            weights = [
                (await get(http, "/api/v3/ping")).weight,
                (await get(http, "/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m"})).weight,
                (await get(http, "/api/v3/depth", {"symbol": "BTCUSDT", "limit": "500"})).weight,
                (await get(http, "/api/v3/depth", HEAVY)).weight,
            ]
            missing = await get(http, "/api/v3/exchangeInfo")  # no route here: 404, still charged
            assert missing.status == 404
            weights.append(missing.weight)
            clock.advance(15_000)  # the next minute: a fresh window
            weights.append((await get(http, "/api/v3/ping")).weight)
            return weights

    assert serve(app, body) == [1, 3, 28, 278, 298, 1]


# ---------------------------------------------------------------------- 429, 418, bans


async def exhaust(http: aiohttp.ClientSession) -> None:
    """Use the whole 6000 weight of the current minute (24 x 250)."""
    for i in range(24):
        reply = await get(http, "/api/v3/depth", HEAVY)
        assert (reply.status, reply.weight) == (200, 250 * (i + 1))


def test_over_the_limit_is_429_with_retry_after_and_exact_body() -> None:
    _limiter, _clock, app = limited()

    async def body(url: str) -> Reply:
        async with session(url) as http:
            await exhaust(http)
            return await get(http, "/api/v3/ping")  # weight 1 more than allowed

    reply = serve(app, body)
    assert reply.status == 429
    assert reply.headers["Retry-After"] == "15"  # 14.5 s to the end of the minute, rounded up
    assert reply.json == {"code": -1003, "msg": WEIGHT_MSG}
    assert reply.weight == 6000
    assert reply.headers["Content-Type"].startswith("application/json")


def test_continuing_after_429_is_banned_with_418() -> None:
    limiter, clock, app = limited()

    async def body(url: str) -> list[Reply]:
        async with session(url) as http:
            await exhaust(http)
            replies = [await get(http, "/api/v3/ping")]
            clock.advance(1000)  # still inside the limited minute
            replies.append(await get(http, "/api/v3/ping"))
            clock.advance(60_000)  # next minute, but banned
            replies.append(await get(http, "/api/v3/klines"))
            clock.advance(59_500)  # 500 ms of the ban left
            replies.append(await get(http, "/api/v3/ping"))
            clock.advance(500)  # ban over, fresh window
            replies.append(await get(http, "/api/v3/ping"))
            return replies

    first, banned, during, last_moment, after = serve(app, body)
    assert first.status == 429
    until = T0 + 1000 + 120_000
    assert (banned.status, banned.headers["Retry-After"]) == (418, "120")
    assert banned.json == {"code": -1003, "msg": BAN_MSG.format(until)}
    assert banned.headers["Content-Type"].startswith("application/json")
    assert (during.status, during.headers["Retry-After"], during.json) == (418, "60", banned.json)
    assert (last_moment.status, last_moment.headers["Retry-After"]) == (418, "1")
    assert (after.status, after.weight) == (200, 1)
    assert limiter.ban_count("127.0.0.1") == 1


def test_bans_escalate_up_to_the_maximum() -> None:
    _limiter, clock, app = limited(LimitsConfig(ban_initial_s=120, ban_max_s=400))

    async def body(url: str) -> list[int]:
        bans = []
        async with session(url) as http:
            for _ in range(4):
                await exhaust(http)
                assert (await get(http, "/api/v3/ping")).status == 429
                ban = await get(http, "/api/v3/ping")
                assert ban.status == 418
                seconds = int(ban.headers["Retry-After"])
                assert ban.json["msg"] == BAN_MSG.format(clock() + seconds * 1000)
                bans.append(seconds)
                clock.advance(seconds * 1000)
                clock.now_ms = clock.now_ms - clock.now_ms % MINUTE_MS + 45_500  # mid-minute again
        return bans

    assert serve(app, body) == [120, 240, 400, 400]


def test_after_the_window_resets_requests_pass_again() -> None:
    _limiter, clock, app = limited()

    async def body(url: str) -> tuple[Reply, Reply]:
        async with session(url) as http:
            await exhaust(http)
            limited_reply = await get(http, "/api/v3/ping")
            clock.advance(int(limited_reply.headers["Retry-After"]) * 1000)
            return limited_reply, await get(http, "/api/v3/depth", HEAVY)

    limited_reply, again = serve(app, body)
    assert limited_reply.status == 429
    assert (again.status, again.weight) == (200, 250)


def test_a_client_that_waits_retry_after_is_never_banned() -> None:
    limiter, clock, app = limited(now_ms=T0 - 45_500 + 123)

    async def body(url: str) -> list[int]:
        statuses = []
        async with session(url) as http:
            for _ in range(300):
                reply = await get(http, "/api/v3/depth", HEAVY)
                statuses.append(reply.status)
                if reply.status == 429:
                    clock.advance(int(reply.headers["Retry-After"]) * 1000)
                else:
                    clock.advance(700)
        return statuses

    statuses = serve(app, body)
    assert set(statuses) == {200, 429}
    assert statuses.count(429) >= 3
    assert limiter.ban_count("127.0.0.1") == 0


def test_limits_are_per_client_address() -> None:
    limiter, _clock, app = limited()

    async def body(url: str) -> tuple[Reply, Reply, Reply]:
        async with session(url) as first, session(url, source="127.0.0.2") as second:
            await exhaust(first)
            assert (await get(first, "/api/v3/ping")).status == 429
            banned = await get(first, "/api/v3/ping")
            other = await get(second, "/api/v3/klines")
            other_heavy = await get(second, "/api/v3/depth", HEAVY)
            return banned, other, other_heavy

    banned, other, other_heavy = serve(app, body)
    assert banned.status == 418
    assert (other.status, other.weight) == (200, 2)
    assert (other_heavy.status, other_heavy.weight) == (200, 252)
    assert limiter.ban_count("127.0.0.1") == 1 and limiter.ban_count("127.0.0.2") == 0


def test_raw_requests_limit_per_5_minutes() -> None:
    five_min = 300_000
    start = T0 - T0 % five_min + 200_000  # 100 s before the 5-minute window ends
    _limiter, clock, app = limited(LimitsConfig(raw_requests_per_5m=10), now_ms=start)

    async def body(url: str) -> tuple[list[Reply], Reply, Reply]:
        async with session(url) as http:
            ok = []
            for _ in range(10):
                ok.append(await get(http, "/api/v3/ping"))
                clock.advance(5_000)  # weight windows roll; the raw window does not
            over = await get(http, "/api/v3/ping")
            clock.advance(int(over.headers["Retry-After"]) * 1000)
            return ok, over, await get(http, "/api/v3/ping")

    ok, over, again = serve(app, body)
    assert all(r.status == 200 for r in ok)
    assert over.status == 429
    assert over.headers["Retry-After"] == "50"  # 100 s - 10 x 5 s
    assert over.json == {
        "code": -1003,
        "msg": "Too many requests; current limit is 10 requests per 5 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
    }
    assert again.status == 200


def test_disabled_limiter_counts_but_never_rejects() -> None:
    _limiter, _clock, app = limited(LimitsConfig(enabled=False))

    async def body(url: str) -> list[Reply]:
        async with session(url) as http:
            return [await get(http, "/api/v3/depth", HEAVY) for _ in range(30)]

    replies = serve(app, body)
    assert [r.status for r in replies] == [200] * 30
    assert replies[-1].weight == 7500


def test_tolerated_requests_after_429_before_the_ban() -> None:
    limiter = RateLimiter(LimitsConfig(request_weight_per_minute=10, tolerated_after_429=2))
    assert limiter.check("c", 10, T0).status == 200
    assert [limiter.check("c", 1, T0 + i).status for i in range(4)] == [429, 429, 429, 418]
    assert limiter.banned_until("c") == T0 + 3 + 120_000


# ---------------------------------------------------------------------- faults


def faulty(config: FaultConfig, seed: int = 7, *, with_limiter: bool = False) -> tuple[FaultInjector, Any]:
    injector = FaultInjector(config, rng_seed=seed)
    if with_limiter:
        return injector, make_app(limiter=RateLimiter(), clock=Clock(), faults=injector)
    return injector, make_app(faults=injector)


def every(**rates: float) -> FaultConfig:
    return FaultConfig(default=FaultRates(**rates))


def test_latency_is_added_to_the_configured_endpoint_only() -> None:
    config = FaultConfig(endpoints={"/api/v3/klines": FaultRates(latency_ms=150, jitter_ms=50)})
    injector, app = faulty(config)

    async def body(url: str) -> float:
        async with session(url) as http:
            started = time.perf_counter()
            assert (await get(http, "/api/v3/klines")).status == 200
            slow = time.perf_counter() - started
            assert (await get(http, "/api/v3/ping")).status == 200
            return slow

    slow = serve(app, body)
    assert slow >= 0.14  # at least the configured 150 ms (plus 0-50 ms jitter), less timer slack
    # two requests, one delayed: the klines one (the ping was not, whatever its wall-clock time)
    assert injector.counts["delayed"] == 1


def test_server_errors_are_5xx_with_empty_or_binance_bodies() -> None:
    _injector, app = faulty(every(server_error_rate=1.0), with_limiter=True)

    async def body(url: str) -> list[Reply]:
        async with session(url, force_close=True) as http:
            return [await get(http, "/api/v3/klines") for _ in range(30)]

    replies = serve(app, body)
    assert {r.status for r in replies} == {500, 502, 503, 504}
    empty = [r for r in replies if not r.raw]
    shaped = [r for r in replies if r.raw]
    assert empty and shaped
    for reply in shaped:
        assert reply.headers["Content-Type"].startswith("application/json")
        assert reply.json["code"] < 0 and reply.json["msg"]
    # the limiter sits outside: failed requests are charged like Binance charges them
    assert [r.weight for r in replies] == [2 * (i + 1) for i in range(30)]


def test_waf_block_is_a_cloudfront_403_html_page() -> None:
    _injector, app = faulty(every(waf_block_rate=1.0))

    async def body(url: str) -> Reply:
        async with session(url) as http:
            return await get(http, "/api/v3/klines")

    reply = serve(app, body)
    assert reply.status == 403
    assert reply.headers["Content-Type"].startswith("text/html")
    text = reply.raw.decode()
    assert "<TITLE>ERROR: The request could not be satisfied</TITLE>" in text
    assert "Generated by cloudfront (CloudFront)" in text
    assert text.startswith(CLOUDFRONT_403_HTML.split("{request_id}")[0])
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.raw)


def test_truncated_body_raises_payload_error() -> None:
    _injector, app = faulty(every(truncated_rate=1.0), with_limiter=True)

    async def body(url: str) -> tuple[int, dict[str, str], Exception]:
        async with session(url) as http, http.get("/api/v3/klines") as resp:
            with pytest.raises(aiohttp.ClientPayloadError) as caught:
                await resp.json()
            return resp.status, dict(resp.headers), caught.value

    status, headers, _ = serve(app, body)
    assert status == 200
    assert int(headers["Content-Length"]) == len(json.dumps(KLINE_ROWS, separators=(",", ":")))
    assert headers["X-MBX-USED-WEIGHT-1M"] == "2"


def test_malformed_body_is_invalid_json_with_200() -> None:
    _injector, app = faulty(every(malformed_rate=1.0))

    async def body(url: str) -> Reply:
        async with session(url) as http:
            return await get(http, "/api/v3/klines")

    reply = serve(app, body)
    assert reply.status == 200
    assert int(reply.headers["Content-Length"]) == len(reply.raw) > 0
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.raw)


def test_dropped_connection_raises_server_disconnected() -> None:
    config = FaultConfig(endpoints={"/api/v3/klines": FaultRates(drop_rate=1.0)})
    injector, app = faulty(config)

    async def body(url: str) -> Reply:
        async with session(url, force_close=True) as http:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await get(http, "/api/v3/klines")
            return await get(http, "/api/v3/ping")  # the server itself is fine

    assert serve(app, body).status == 200
    assert injector.counts[Fault.DROP.value] == 2  # aiohttp's own retry was dropped too


MIXED = FaultConfig(
    default=FaultRates(
        server_error_rate=0.15,
        waf_block_rate=0.15,
        truncated_rate=0.15,
        malformed_rate=0.15,
        drop_rate=0.15,
    )
)


async def outcome(http: aiohttp.ClientSession, path: str) -> str:
    """What a client observes, as the name of the fault it implies."""
    try:
        async with http.get(path) as resp:
            raw = await resp.read()
            if resp.status >= 500:
                return Fault.SERVER_ERROR.value
            if resp.status == 403:
                return Fault.WAF_BLOCK.value
            try:
                json.loads(raw)
            except json.JSONDecodeError:
                return Fault.MALFORMED.value
            return Fault.NONE.value
    except aiohttp.ServerDisconnectedError:
        return Fault.DROP.value
    except aiohttp.ClientPayloadError:
        return Fault.TRUNCATED.value


def observed(seed: int, paths: list[str]) -> list[str]:
    _injector, app = faulty(MIXED, seed)

    async def body(url: str) -> list[str]:
        async with session(url, force_close=True) as http:
            return [await outcome(http, path) for path in paths]

    return serve(app, body)


def test_same_seed_gives_the_same_fault_sequence() -> None:
    paths = ["/api/v3/klines", "/api/v3/ping", "/api/v3/depth"] * 20
    first = observed(7, paths)
    assert observed(7, paths) == first
    assert observed(8, paths) != first
    assert set(first) == {kind.value for kind in Fault}
    planner = FaultInjector(MIXED, rng_seed=7)  # the sequence is the RNG's, request by request
    expected = []
    for path in paths:
        kind = planner.decide(path).kind
        if kind is Fault.DROP:  # aiohttp retries a dropped GET once: the retry's fault is seen
            kind = planner.decide(path).kind
        expected.append(kind.value)
    assert expected == first


# ---------------------------------------------------------------------- configuration


def test_fault_config_from_dict_and_json(tmp_path: Any) -> None:
    data = {
        "default": {"latency_ms": 20, "jitter_ms": 30, "server_error_rate": 0.01},
        "endpoints": {"/api/v3/klines": {"drop_rate": 0.02}, "/api/v3/": {"waf_block_rate": 0.5}},
        "server_error_statuses": [503],
        "ws_disconnect_rate": 0.001,
        "depth_gap_rate": 0.01,
        "stale_snapshot_rate": 0.02,
    }
    config = FaultConfig.from_dict(data)
    klines = config.rates_for("/api/v3/klines")
    assert (klines.drop_rate, klines.latency_ms, klines.server_error_rate) == (0.02, 20, 0.01)
    assert config.rates_for("/api/v3/ping").waf_block_rate == 0.5
    assert config.rates_for("/fapi/v1/klines") == config.default
    assert config.server_error_statuses == (503,)
    assert (config.ws_disconnect_rate, config.depth_gap_rate, config.stale_snapshot_rate) == (
        0.001,
        0.01,
        0.02,
    )

    path = tmp_path / "faults.json"
    path.write_text(json.dumps(config.to_dict()))
    assert FaultConfig.from_json(path) == config
    assert FaultConfig.from_json(json.dumps(data).encode()) == config

    with pytest.raises(ValueError, match="unknown fault config key"):
        FaultConfig.from_dict({"defaults": {}})
    with pytest.raises(ValueError, match="unknown fault field"):
        FaultConfig.from_dict({"default": {"drop": 0.1}})
    with pytest.raises(ValueError, match="exceed 1"):
        FaultConfig.from_dict({"default": {"drop_rate": 0.6, "truncated_rate": 0.6}})
    with pytest.raises(ValueError, match="<= 1"):
        FaultRates(server_error_rate=1.5)
    with pytest.raises(ValueError, match="5xx"):
        FaultConfig(server_error_statuses=(404,))


def test_disabled_faults_pass_through() -> None:
    _injector, app = faulty(FaultConfig(default=FaultRates(drop_rate=1.0), enabled=False))

    async def body(url: str) -> Reply:
        async with session(url) as http:
            return await get(http, "/api/v3/klines")

    assert serve(app, body).json == KLINE_ROWS
