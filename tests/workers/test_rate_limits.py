"""The weight governor against the simulator's real rate limits (2 s windows, 60 weight per window).

Klines weigh 2, so the simulator admits 30 requests per window from one address; the governor aims
for floor(60 * 0.97) = 58 weight = 29 requests. Simulator and governor both use the wall clock and
windows aligned to it, as Binance's are aligned to the minute.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from streamforge_pipelines.intervals import day_range_ms
from streamforge_pipelines.protocol import Command, decode_event, format_time_range
from streamforge_pipelines.telemetry import read_events
from streamforge_pipelines.workers.exchange_client import BinanceRestClient
from streamforge_pipelines.workers.governor import WeightGovernor
from streamforge_pipelines.workers.loader_candles import plan_windows, run_candle_task
from streamforge_pipelines.workers.simulator.limits import LimitsConfig
from streamforge_pipelines.workers.simulator.server import SimulatorServer

WINDOW_MS = 2000
LIMIT = 60


def _limits() -> LimitsConfig:
    return LimitsConfig(request_weight_per_minute=LIMIT, window_1m_ms=WINDOW_MS)


def _days_ago(n: int):
    return datetime.now(UTC).date() - timedelta(days=n)


def test_governed_loader_with_high_concurrency_meets_no_429_and_no_418(make_settings) -> None:
    first, last = _days_ago(46), _days_ago(2)  # 45 days of 1m candles: 65 pages, 130 weight
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
    pages = len(plan_windows(*day_range_ms(first, last), "1m"))
    assert pages * 2 > 2 * LIMIT * 0.97  # needs at least three windows

    async def main():
        async with SimulatorServer(seed=42, limits=_limits()) as sim:
            settings = settings0.model_copy(update={"exchange_url": sim.base_url})
            governor = WeightGovernor(LIMIT, window_ms=WINDOW_MS)
            t0 = time.monotonic()
            result = await run_candle_task(command, settings, governor=governor)
            return result, governor, time.monotonic() - t0

    result, governor, seconds = asyncio.run(main())
    assert result.records == 45 * 1440
    assert result.requests == pages
    assert (result.http_429, result.http_418, result.retries) == (0, 0, 0)
    stats = governor.stats()
    assert stats.http_429 == stats.http_418 == 0
    assert stats.waits >= 2  # it did hold requests back
    assert 0.9 <= result.weight_budget_used <= 1.0
    assert seconds < 12
    events, _ = asyncio.run(read_events(settings0.kafka_bootstrap_servers or "", settings0.topic_events, {}))
    (finished,) = [e for e in events if e.status == "finished"]
    assert (finished.http_429, finished.http_418, finished.retries) == (0, 0, 0)
    assert finished.weight_used_peak == pytest.approx(result.weight_budget_used, abs=1e-4)
    assert decode_event(finished.encode()) == finished


def test_naive_client_against_the_same_limits_gets_429_then_418() -> None:
    """The limits are real: a plain request loop without the governor is rate-limited, then banned."""

    async def main() -> list[int]:
        statuses: list[int] = []
        async with SimulatorServer(seed=42, limits=_limits()) as sim, aiohttp.ClientSession() as http:
            start, end = day_range_ms(_days_ago(3), _days_ago(3))
            params = {"symbol": "BTCUSDT", "interval": "1m", "startTime": str(start), "endTime": str(end)}
            for _ in range(200):
                async with http.get(sim.base_url + "/api/v3/klines", params=params) as resp:
                    await resp.read()
                    statuses.append(resp.status)
                if resp.status == 418:
                    break
        return statuses

    statuses = asyncio.run(main())
    assert 429 in statuses and statuses[-1] == 418
    assert statuses.index(429) < statuses.index(418)


def test_header_reconciliation_keeps_clear_of_weight_used_by_another_client() -> None:
    """Another client on the same address used most of the window; the governor learns it from the header."""

    async def main() -> tuple[list[int], WeightGovernor, bool]:
        async with SimulatorServer(seed=42, limits=_limits()) as sim, aiohttp.ClientSession() as http:
            start, end = day_range_ms(_days_ago(3), _days_ago(3))
            # Start right after a window boundary so the other client's weight and ours share a window.
            now_ms = time.time() * 1000
            await asyncio.sleep((WINDOW_MS - now_ms % WINDOW_MS) / 1000 + 0.01)
            params = {"symbol": "BTCUSDT", "interval": "1m", "startTime": str(start), "endTime": str(end)}
            window = int(time.time() * 1000) // WINDOW_MS
            for _ in range(20):  # 40 weight: someone else's
                async with http.get(sim.base_url + "/api/v3/klines", params=params) as resp:
                    assert resp.status == 200
            same_window = int(time.time() * 1000) // WINDOW_MS == window
            governor = WeightGovernor(LIMIT, window_ms=WINDOW_MS)
            async with BinanceRestClient(sim.base_url, governor=governor) as client:
                sem = asyncio.Semaphore(2)

                async def one() -> int:
                    async with sem:
                        return len(await client.klines("BTCUSDT", "1m", start, end))

                counts = await asyncio.gather(*(one() for _ in range(20)))
                assert (client.http_429, client.http_418, client.retries) == (0, 0, 0)
            return counts, governor, same_window

    counts, governor, same_window = asyncio.run(main())
    assert counts == [1000] * 20
    if same_window:  # (a very slow machine may have crossed into the next window already)
        assert governor.stats().waits >= 1


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
            async with BinanceRestClient(f"http://127.0.0.1:{port}", governor=governor) as client:
                first = asyncio.create_task(client.klines("BTCUSDT", "1m", 0, 1))
                await limited.wait()
                await asyncio.sleep(0.05)  # the 429 reaches the client
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
    from streamforge_pipelines.workers.simulator.faults import FaultConfig, FaultRates

    first, last = _days_ago(12), _days_ago(2)  # 11 days of 1m: 16 pages
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
            return await run_candle_task(command, settings, governor=WeightGovernor(6000))

    result = asyncio.run(main())
    assert result.records == 11 * 1440
    assert result.retries >= 1 and result.requests == 16 + result.retries  # each 403 tried again
    assert (result.http_429, result.http_418) == (0, 0)


def test_a_waf_block_that_does_not_pass_fails_with_one_clear_line() -> None:
    from streamforge_pipelines.workers.errors import WafBlocked
    from streamforge_pipelines.workers.simulator.faults import FaultConfig, FaultRates

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
    assert client.requests == 6 and client.retries == 5  # the client's 6 attempts, then it gives up
    assert seconds >= 5 * 0.1 * 0.9  # every retry waited out the pause (the governor held it)
