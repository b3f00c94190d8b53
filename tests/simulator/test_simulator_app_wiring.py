"""The whole simulator app: rate limits (429 then 418), faults and the archive behind build_app."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile

import aiohttp
import orjson

from streamforge_pipelines.simulator.faults import FaultConfig
from streamforge_pipelines.simulator.limits import LimitsConfig
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.simulator.server import SimulatorServer

NOW = 1_722_470_400_000 + 10 * 60_000 + 10_000  # 2024-08-01 00:10:10 UTC: 50 s left in the window
KLINES = "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000"


def _clock() -> int:
    return NOW


def test_client_ignoring_limits_gets_429_then_418_with_binance_headers_and_bodies() -> None:
    async def scenario() -> list[tuple[int, dict, dict]]:
        limits = LimitsConfig(request_weight_per_minute=10)
        out = []
        async with SimulatorServer(Market(7), clock=_clock, limits=limits) as sim:
            async with aiohttp.ClientSession() as http:
                for _ in range(7):  # klines weigh 2: five pass, the sixth is refused, the seventh banned
                    async with http.get(sim.base_url + KLINES) as resp:
                        out.append((resp.status, dict(resp.headers), orjson.loads(await resp.read())))
        return out

    results = asyncio.run(scenario())
    statuses = [s for s, _, _ in results]
    assert statuses == [200, 200, 200, 200, 200, 429, 418]
    assert [h["X-MBX-USED-WEIGHT-1M"] for _, h, _ in results[:5]] == ["2", "4", "6", "8", "10"]
    _, h429, b429 = results[5]
    assert b429 == {
        "code": -1003,
        "msg": "Too much request weight used; current limit is 10 request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
    }
    assert h429["Retry-After"] == "50"  # seconds to the end of the minute window
    _, h418, b418 = results[6]
    assert b418["code"] == -1003 and b418["msg"].startswith(
        "Way too much request weight used; IP banned until "
    )
    assert int(h418["Retry-After"]) == 120


def test_futures_weight_counted_apart_and_unlimited_by_default() -> None:
    async def scenario() -> tuple[list[int], str]:
        async with SimulatorServer(Market(7), clock=_clock) as sim:
            async with aiohttp.ClientSession() as http:
                statuses = []
                for _ in range(3100):  # 6,200 weight: over the spot limit, yet nothing is enforced
                    async with http.get(sim.base_url + "/api/v3/ping") as resp:
                        statuses.append(resp.status)
                async with http.get(sim.base_url + "/fapi/v1/ping") as resp:
                    fut = resp.headers.get("X-MBX-USED-WEIGHT-1M", "")
        return statuses, fut

    statuses, futures_weight = asyncio.run(scenario())
    assert set(statuses) == {200}
    assert futures_weight in ("0", "1")


def test_faults_reach_rest_clients_and_spare_the_truth_endpoint() -> None:
    faults = FaultConfig.from_dict({"default": {"server_error_rate": 1.0}})

    async def scenario() -> tuple[int, int]:
        async with SimulatorServer(Market(7), clock=_clock, faults=faults) as sim:
            async with aiohttp.ClientSession() as http:
                async with http.get(sim.base_url + KLINES) as resp:
                    rest = resp.status
                async with http.get(sim.base_url + "/_sim/truth") as resp:
                    truth = resp.status
        return rest, truth

    rest, truth = asyncio.run(scenario())
    assert 500 <= rest <= 504 and truth == 200


def test_archive_served_by_the_app_verifies_against_its_checksum() -> None:
    path = "/data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-07-30.zip"

    async def scenario() -> tuple[bytes, str]:
        async with SimulatorServer(Market(7), clock=_clock) as sim:
            async with aiohttp.ClientSession() as http:
                async with http.get(sim.base_url + path) as resp:
                    assert resp.status == 200
                    body = await resp.read()
                async with http.get(sim.base_url + path + ".CHECKSUM") as resp:
                    checksum = (await resp.read()).decode()
        return body, checksum

    body, checksum = asyncio.run(scenario())
    digest, name = checksum.split()
    assert name == "BTCUSDT-1h-2024-07-30.zip" and digest == hashlib.sha256(body).hexdigest()
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        rows = z.read("BTCUSDT-1h-2024-07-30.csv").decode().splitlines()
    assert len(rows) == 24


def test_health_and_metrics() -> None:
    async def scenario() -> tuple[dict, str]:
        async with SimulatorServer(Market(7), clock=_clock) as sim:
            async with aiohttp.ClientSession() as http:
                async with http.get(sim.base_url + KLINES) as resp:
                    assert resp.status == 200
                async with http.get(sim.base_url + "/health") as resp:
                    health = orjson.loads(await resp.read())
                async with http.get(sim.base_url + "/metrics") as resp:
                    metrics = (await resp.read()).decode()
        return health, metrics

    health, metrics = asyncio.run(scenario())
    assert health == {"status": "ok", "seed": 7, "symbols": len(Market(7).symbols)}
    assert 'streamforge_simulator_requests_total{route="/api/v3",status="200"}' in metrics
