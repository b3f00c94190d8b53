"""A small Binance REST client for market data (aiohttp).

Only what the loaders need: klines with Binance's error model mapped onto :mod:`.errors`, the
``X-MBX-USED-WEIGHT-1M`` header recorded after every response, and retries with capped,
jittered exponential backoff for 5xx, timeouts, dropped connections and truncated bodies.

Every request goes through a :class:`~.governor.WeightGovernor` (the one passed in, else the
process-wide default): it is charged the request's known weight (:data:`REQUEST_WEIGHTS`) before
it is sent, reconciled with the weight header after, and a 429/418 blocks the governor, so every
request of the process waits out ``Retry-After`` — not only the one that failed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import aiohttp
import orjson

from .backoff import Backoff
from .errors import ExchangeError, ExchangeRejected, ExchangeUnavailable, RateLimited
from .governor import WeightGovernor, default_governor
from .observability import (
    EXCHANGE_LATENCY,
    EXCHANGE_RATE_LIMITED,
    EXCHANGE_REQUESTS,
    EXCHANGE_RETRIES,
    EXCHANGE_USED_WEIGHT,
    EXCHANGE_WEIGHT,
)

log = logging.getLogger(__name__)

KLINES_MAX_LIMIT = 1000

#: Request weights of the spot endpoints this client calls (reference section 2). Kept here, not
#: imported from the simulator: workers never depend on it. Unknown paths are charged 1.
REQUEST_WEIGHTS: dict[str, int] = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/klines": 2,
    "/api/v3/uiKlines": 2,
    "/api/v3/aggTrades": 4,
    "/api/v3/trades": 25,
    "/api/v3/historicalTrades": 25,
    "/api/v3/avgPrice": 2,
}


def request_weight(path: str) -> int:
    return REQUEST_WEIGHTS.get(path, 1)


class BinanceRestClient:
    """Spot market-data client. ``async with BinanceRestClient(url) as client: ...``."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        max_attempts: int = 6,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 10.0,
        rng: random.Random | None = None,
        governor: WeightGovernor | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._backoff = Backoff(max_attempts, backoff_base_s, backoff_cap_s, rng or random.Random())
        self._session: aiohttp.ClientSession | None = None
        self.governor = governor if governor is not None else default_governor()
        self.used_weight_1m = 0
        self.requests = 0
        self.retries = 0
        self.http_429 = 0
        self.http_418 = 0

    async def __aenter__(self) -> BinanceRestClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=64, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def klines(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, limit: int = KLINES_MAX_LIMIT
    ) -> list[list[Any]]:
        """Klines whose open time lies in ``[start_ms, end_ms]`` (both inclusive, as Binance)."""
        params = {
            "symbol": symbol,
            "interval": interval,
            "startTime": str(start_ms),
            "endTime": str(end_ms),
            "limit": str(limit),
        }
        rows = await self._get("/api/v3/klines", params)
        if not isinstance(rows, list):
            raise ExchangeUnavailable(f"klines: expected a JSON array, got {type(rows).__name__}")
        return rows

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._get_once(path, params)
            except ExchangeError as exc:
                if not exc.retriable or self._backoff.gives_up(attempt):
                    raise
                self.retries += 1
                if isinstance(exc, RateLimited):
                    # The governor holds every request of the process until Retry-After has passed;
                    # this one waits in its acquire() like the others.
                    EXCHANGE_RETRIES.labels(path, str(exc.status)).inc()
                    log.warning(
                        "HTTP %s on %s: every request waits %.0fs (attempt %s)",
                        exc.status,
                        path,
                        exc.retry_after,
                        attempt,
                        extra={"path": path, "attempt": attempt, "status": exc.status},
                    )
                    continue
                delay = self._backoff.delay(attempt)
                EXCHANGE_RETRIES.labels(path, "unavailable").inc()
                log.warning(
                    "retrying %s after %s (attempt %s, %.2fs)",
                    path,
                    exc,
                    attempt,
                    delay,
                    extra={"path": path, "attempt": attempt},
                )
                await asyncio.sleep(delay)

    async def _get_once(self, path: str, params: dict[str, str]) -> Any:
        assert self._session is not None, "client not started: use 'async with'"
        weight = request_weight(path)
        governor = self.governor
        await governor.acquire(weight)
        self.requests += 1
        EXCHANGE_WEIGHT.labels(path).inc(weight)
        t0 = time.perf_counter()
        settled = False
        try:
            async with self._session.get(self.base_url + path, params=params) as resp:
                used = resp.headers.get("X-MBX-USED-WEIGHT-1M")
                used_weight = int(used) if used is not None and used.isdigit() else None
                if used_weight is not None:
                    self.used_weight_1m = used_weight
                    EXCHANGE_USED_WEIGHT.set(used_weight)
                governor.observe(used_weight, weight=weight)
                settled = True
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                body = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            EXCHANGE_REQUESTS.labels(path, "unavailable").inc()
            raise ExchangeUnavailable(f"{path}: {type(exc).__name__}: {exc}") from exc
        finally:
            if not settled:
                governor.release(weight)
            EXCHANGE_LATENCY.labels(path).observe(time.perf_counter() - t0)
        EXCHANGE_REQUESTS.labels(path, str(status)).inc()
        if status in (429, 418):
            wait = float(retry_after) if retry_after and retry_after.isdigit() else 60.0
            if status == 429:
                self.http_429 += 1
            else:
                self.http_418 += 1
            EXCHANGE_RATE_LIMITED.labels(str(status)).inc()
            governor.block_for(wait, status=status)
            raise RateLimited(f"{path}: HTTP {status}", status=status, retry_after=wait)
        if status >= 500:
            raise ExchangeUnavailable(f"{path}: HTTP {status}", status=status)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if status >= 400:
                raise ExchangeRejected(f"{path}: HTTP {status}: {body[:200]!r}", status=status) from None
            raise ExchangeUnavailable(f"{path}: malformed or truncated body ({exc})", status=status) from None
        if status >= 400:
            code = data.get("code") if isinstance(data, dict) else None
            msg = data.get("msg") if isinstance(data, dict) else str(data)
            raise ExchangeRejected(f"{path}: HTTP {status} code {code}: {msg}", status=status, code=code)
        return data
