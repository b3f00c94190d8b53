"""The weight governor against the simulator's real rate limits (2 s windows, 60 weight per window).

Klines weigh 2, so the simulator admits 30 requests per window from one address; the governor aims
for floor(60 * 0.995) = 59 weight: 29 requests (58 weight). Where the test is about windows, governor and
simulator share a :class:`~lockstep_clock.LockstepClock` (virtual time that moves only when the
governor waits, once its requests are answered), so a busy machine cannot move a request into
another window; the data are fixed historical days, the same on any date.
"""

from __future__ import annotations

import asyncio
import time
from datetime import date

import aiohttp
import pytest
from lockstep_clock import LockstepClock

from streamforge_pipelines.intervals import day_range_ms, day_start_ms
from streamforge_pipelines.protocol import Command, decode_event, format_time_range
from streamforge_pipelines.queue_manager.telemetry import read_events
from streamforge_pipelines.simulator.limits import LimitsConfig
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.workers import run_task
from streamforge_pipelines.workers.exchange_client import BinanceRestClient
from streamforge_pipelines.workers.governor import WeightGovernor

WINDOW_MS = 2000
LIMIT = 60
DAY = date(2024, 8, 12)
#: The virtual "now" of the lockstep tests: a window boundary well after every range loaded here.
T0_MS = day_start_ms(date(2024, 10, 1))


def _limits() -> LimitsConfig:
    return LimitsConfig(request_weight_per_minute=LIMIT, window_1m_ms=WINDOW_MS)


def test_governed_loader_with_high_concurrency_meets_no_429_and_no_418(make_settings) -> None:
    # 45 days of 1m candles = 64,800 candles; windows of 1000 -> ceil(64.8) = 65 pages, 130 weight
    first, last = date(2024, 7, 1), date(2024, 8, 14)
    pages = 65
    settings0 = make_settings(partitions=2, loader_concurrency=32, exchange_weight_limit=LIMIT)
    command = Command(
        command="start",
        queue_id="wf-btcusdt-api_candles_1m-20240801-abc123",
        target="loader-producer",
        symbol="BTCUSDT",
        type="api_candles_1m",
        time_range=format_time_range(first, last),
        weight_share=1.0,
    )
    clock = LockstepClock(T0_MS)

    async def main():
        async with SimulatorServer(seed=42, limits=_limits(), clock=clock.ms) as sim:
            settings = settings0.model_copy(update={"exchange_url": sim.base_url})
            governor = clock.governor(LIMIT, window_ms=WINDOW_MS)
            result = await run_task(command, settings, governor=governor, clock_ms=clock.ms)
            return result, governor

    result, governor = asyncio.run(main())
    assert result.records == 45 * 1440
    assert result.requests == pages + 1  # and the exchangeInfo the client reads the limit from
    assert (result.http_429, result.http_418, result.retries) == (0, 0, 0)
    stats = governor.stats()
    assert stats.http_429 == stats.http_418 == 0
    # exchangeInfo (20) + 19 pages, then 29 + 17 pages (58 weight per window): two waits
    assert stats.waits == 2 and clock.elapsed_ms == 2 * WINDOW_MS
    assert result.weight_budget_used == pytest.approx(58 / 60, abs=1e-4)
    events, _ = asyncio.run(read_events(settings0.kafka_bootstrap_servers or "", settings0.topic_events, {}))
    (finished,) = [e for e in events if e.status == "finished"]
    assert (finished.http_429, finished.http_418, finished.retries) == (0, 0, 0)
    assert finished.weight_used_peak == pytest.approx(result.weight_budget_used, abs=1e-4)
    assert decode_event(finished.encode()) == finished


def test_naive_client_against_the_same_limits_gets_429_then_418() -> None:
    """The limits are real: a plain request loop without the governor is rate-limited, then banned.

    The simulator's clock stands still (one window), so the sequence is exact: 60 / 2 = 30 requests
    admitted, the 31st answered 429, the next one in that window banned (418; no request is
    tolerated after a 429 by default)."""

    async def main() -> list[int]:
        statuses: list[int] = []
        sim_server = SimulatorServer(seed=42, limits=_limits(), clock=lambda: T0_MS)
        async with sim_server as sim, aiohttp.ClientSession() as http:
            start, end = day_range_ms(DAY, DAY)
            params = {"symbol": "BTCUSDT", "interval": "1m", "startTime": str(start), "endTime": str(end)}
            for _ in range(200):
                async with http.get(sim.base_url + "/api/v3/klines", params=params) as resp:
                    await resp.read()
                    statuses.append(resp.status)
                if resp.status == 418:
                    break
        return statuses

    statuses = asyncio.run(main())
    assert statuses == [200] * 30 + [429, 418]


def test_header_reconciliation_keeps_clear_of_weight_used_by_another_client() -> None:
    """Another client on the same address used most of the window; the governor learns it from the header."""

    clock = LockstepClock(T0_MS)

    async def main() -> tuple[list[int], WeightGovernor]:
        sim_server = SimulatorServer(seed=42, limits=_limits(), clock=clock.ms)
        async with sim_server as sim, aiohttp.ClientSession() as http:
            start, end = day_range_ms(DAY, DAY)
            params = {"symbol": "BTCUSDT", "interval": "1m", "startTime": str(start), "endTime": str(end)}
            for _ in range(20):  # 40 weight in the governor's first window: someone else's
                async with http.get(sim.base_url + "/api/v3/klines", params=params) as resp:
                    assert resp.status == 200
            governor = clock.governor(LIMIT, window_ms=WINDOW_MS)
            async with BinanceRestClient(sim.base_url, governor=governor) as client:
                sem = asyncio.Semaphore(2)

                async def one() -> int:
                    async with sem:
                        return len(await client.klines("BTCUSDT", "1m", start, end))

                counts = await asyncio.gather(*(one() for _ in range(20)))
                assert (client.http_429, client.http_418, client.retries) == (0, 0, 0)
            return counts, governor

    counts, governor = asyncio.run(main())
    assert counts == [1000] * 20
    # The client's first request, exchangeInfo (20), takes the IP to 60 of 60: the header says the
    # window is full, so the governor waited once instead of meeting a 429 with its next request,
    # and the 20 klines (40 weight) fit in the next window.
    assert governor.stats().waits == 1 and clock.elapsed_ms == WINDOW_MS


def test_a_429_holds_every_request_of_the_process_for_retry_after() -> None:
    """Not only the coroutine that met the 429 waits: a request started after it waits too."""
    from aiohttp import web

    hits: list[float] = []
    limited = asyncio.Event()

    async def klines(request: web.Request) -> web.Response:
        hits.append(time.monotonic())
        if len(hits) == 1:
            limited.set()
            return web.json_response(
                {"code": -1003, "msg": "too much"}, status=429, headers={"Retry-After": "1"}
            )
        return web.json_response([], headers={"X-MBX-USED-WEIGHT-1M": str(2 * len(hits))})

    async def main() -> tuple[float, float, BinanceRestClient]:
        app = web.Application()
        app.router.add_get("/api/v3/klines", klines)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            governor = WeightGovernor(6000)
            # A bare server without exchangeInfo: no limit to read (the client would log it and go on).
            url = f"http://127.0.0.1:{port}"
            client = BinanceRestClient(url, governor=governor, read_exchange_limit=False)
            async with client:
                first = asyncio.create_task(client.klines("BTCUSDT", "1m", 0, 1))
                await limited.wait()
                deadline = time.monotonic() + 10
                while client.http_429 == 0:  # bounded: the 429 reaches the client
                    assert time.monotonic() < deadline, "the client never saw the 429"
                    await asyncio.sleep(0.005)
                assert client.http_429 == 1
                t_429 = hits[0]
                await client.klines("ETHUSDT", "1m", 0, 1)  # another coroutine, after the 429
                t_other = time.monotonic()
                await first
                return t_429, t_other, client
        finally:
            await runner.cleanup()

    t_429, t_other, client = asyncio.run(main())
    assert t_other - t_429 >= 0.9
    assert min(hits[1:]) - hits[0] >= 0.9  # nothing reached the exchange during Retry-After
    assert (client.http_429, client.http_418, client.retries, client.requests) == (1, 0, 1, 3)
    assert client.governor.stats().http_429 == 1


def test_a_passing_waf_block_pauses_and_is_survived(make_settings) -> None:
    """The simulator answers a share of the klines requests with CloudFront's 403 page (Binance's WAF
    block): the loader pauses every request, retries, and stores every candle."""
    from streamforge_pipelines.simulator.faults import FaultConfig, FaultRates

    # 11 days of 1m = 15,840 candles: ceil(15.84) = 16 pages of 1000
    first, last = date(2024, 8, 1), date(2024, 8, 11)
    settings0 = make_settings(partitions=2, exchange_waf_pause_s=0.05)
    command = Command(
        command="start",
        queue_id="wf-btcusdt-api_candles_1m-20240801-waf001",
        target="loader-producer",
        symbol="BTCUSDT",
        type="api_candles_1m",
        time_range=format_time_range(first, last),
    )
    faults = FaultConfig(endpoints={"/api/v3/klines": FaultRates(waf_block_rate=0.3)})

    async def main():
        async with SimulatorServer(seed=42, faults=faults) as sim:
            settings = settings0.model_copy(update={"exchange_url": sim.base_url})
            return await run_task(command, settings, governor=WeightGovernor(6000))

    result = asyncio.run(main())
    assert result.records == 11 * 1440
    # each 403 tried again; one exchangeInfo first (the WAF blocks klines here)
    assert result.retries >= 1 and result.requests == 1 + 16 + result.retries
    assert (result.http_429, result.http_418) == (0, 0)


def test_a_waf_block_that_does_not_pass_fails_with_one_clear_line() -> None:
    from streamforge_pipelines.simulator.faults import FaultConfig, FaultRates
    from streamforge_pipelines.workers.errors import WafBlocked

    faults = FaultConfig(endpoints={"/api/v3/klines": FaultRates(waf_block_rate=1.0)})

    async def main() -> tuple[WafBlocked, BinanceRestClient, float]:
        async with SimulatorServer(seed=42, faults=faults) as sim:
            client = BinanceRestClient(sim.base_url, governor=WeightGovernor(6000), waf_pause_s=0.1)
            async with client:
                t0 = time.monotonic()
                with pytest.raises(WafBlocked) as caught:
                    await client.klines("BTCUSDT", "1m", 0, 1)
                return caught.value, client, time.monotonic() - t0

    exc, client, seconds = asyncio.run(main())
    assert str(exc) == "/api/v3/klines: HTTP 403 (WAF block, CloudFront): every request paused 0.1s"
    assert exc.status == 403 and exc.retriable
    # exchangeInfo, then the client's 6 attempts at klines, then it gives up
    assert client.requests == 1 + 6 and client.retries == 5
    assert seconds >= 5 * 0.1 * 0.9  # every retry waited out the pause (the governor held it)


def test_a_limit_configured_ten_times_too_high_earns_no_ban(make_settings) -> None:
    """A new user's mistake: ``EXCHANGE_WEIGHT_LIMIT`` ten times what the exchange allows, 32 requests
    in flight, and an exchange that bans the first request after a 429 (``tolerated_after_429=0``,
    120 s bans). The client reads the published limit (``exchangeInfo``: 60 per 2 s) before its first
    klines request, so the load keeps under it: every candle, no 418 and no 429 either."""
    first, last = date(2024, 7, 1), date(2024, 8, 14)  # 64,800 candles: 65 pages
    settings0 = make_settings(partitions=2, loader_concurrency=32, exchange_weight_limit=10 * LIMIT)
    command = Command(
        command="start",
        queue_id="wf-btcusdt-api_candles_1m-20240801-x10lim",
        target="loader-producer",
        symbol="BTCUSDT",
        type="api_candles_1m",
        time_range=format_time_range(first, last),
        weight_share=1.0,
    )
    limits = LimitsConfig(
        request_weight_per_minute=LIMIT, window_1m_ms=WINDOW_MS, tolerated_after_429=0, ban_initial_s=120
    )
    clock = LockstepClock(T0_MS)

    async def main():
        async with SimulatorServer(seed=42, limits=limits, clock=clock.ms) as sim:
            settings = settings0.model_copy(update={"exchange_url": sim.base_url})
            governor = clock.governor(settings.exchange_weight_limit, window_ms=WINDOW_MS)
            result = await run_task(command, settings, governor=governor, clock_ms=clock.ms)
            return result, governor

    result, governor = asyncio.run(main())
    assert result.records == 45 * 1440
    stats = governor.stats()
    print(f"configured {10 * LIMIT}, exchange {LIMIT}: 429s {result.http_429}, 418s {result.http_418}")
    assert (result.http_418, stats.http_418) == (0, 0)
    assert (result.http_429, stats.http_429, result.retries) == (0, 0, 0)
    assert (governor.limit, governor.exchange_limit, governor.budget) == (LIMIT, LIMIT, 59)
    assert result.requests == 65 + 1 and clock.elapsed_ms == 2 * WINDOW_MS
    events, _ = asyncio.run(read_events(settings0.kafka_bootstrap_servers or "", settings0.topic_events, {}))
    (finished,) = [e for e in events if e.status == "finished"]
    assert finished.records_written == 45 * 1440 and (finished.http_429, finished.http_418) == (0, 0)


def test_the_simulator_publishes_the_limit_it_enforces() -> None:
    """``exchangeInfo``'s REQUEST_WEIGHT entry is the enforced limit (spot and USD-M), so a client
    reading it keeps under what the exchange really allows."""
    from streamforge_pipelines.workers.exchange_client import weight_limits_of

    async def main() -> tuple[object, object]:
        async with SimulatorServer(seed=42, limits=_limits(), clock=lambda: T0_MS) as sim:
            async with aiohttp.ClientSession() as http:
                async with http.get(sim.base_url + "/api/v3/exchangeInfo") as resp:
                    spot = await resp.json()
                async with http.get(sim.base_url + "/fapi/v1/exchangeInfo") as resp:
                    usdm = await resp.json()
        return spot, usdm

    spot, usdm = asyncio.run(main())
    assert weight_limits_of(spot) == {WINDOW_MS: LIMIT}
    assert weight_limits_of(usdm) == {WINDOW_MS: 2400}
