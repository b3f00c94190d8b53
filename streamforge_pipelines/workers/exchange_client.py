"""A small Binance REST client for market data (aiohttp), spot or USD-M futures.

Only what the loaders need: klines with Binance's error model mapped onto :mod:`.errors`, the
``X-MBX-USED-WEIGHT-1M`` header recorded after every response, and retries with capped,
jittered exponential backoff for 5xx, timeouts, dropped connections and truncated bodies.

Every request goes through a :class:`~.governor.WeightGovernor` (the one passed in, else the
process-wide default): it is charged the request's known weight (:data:`REQUEST_WEIGHTS`) before
it is sent, reconciled with the weight header after, and a 429/418 blocks the governor the moment
its headers arrive, so every request of the process waits out ``Retry-After`` — not only the one
that failed. A 429 also tells the governor the real limit (``learn_limit``: its ``-1003`` text, else
its weight header), should the configured one be too high. A 403 (the WAF's CloudFront page, which
Binance says may be rate-related) pauses every request the same way, for ``Retry-After`` when it
has one, else ``waf_pause_s`` (``EXCHANGE_WAF_PAUSE_S``), and is retried like the others: a loader
survives a passing WAF block, and one that does not pass fails with ``HTTP 403 (WAF block)``.

**The exchange's own limit**: before its first request a client reads the limit the exchange
publishes (``GET /api/v3/exchangeInfo``, ``/fapi/v1/exchangeInfo`` on USD-M: the ``rateLimits``
entry ``REQUEST_WEIGHT`` whose interval is the governor's window, ``MINUTE`` x 1 on Binance), once
per exchange URL and market for the process (:func:`exchange_weight_limits`; concurrent clients wait
for the one request), and its governor keeps under it when it is lower than the configured one
(``use_exchange_limit``). An exchange that publishes none, or cannot be read, leaves the configured
limit, with one log line; a 429 can still teach the real one.

**Markets** (``market=``): ``spot`` calls ``/api/v3/...`` (klines ``limit`` <= 1000, weight 2 at
any limit), ``usdm`` calls ``/fapi/v1/...`` (klines ``limit`` <= 1500, weight 1/2/5/10 by
``limit``, no ``1s`` interval). Binance counts spot and futures weight apart (6000 and 2400 per
minute), so a usdm client's default governor is a separate process-wide one with the futures limit.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from ..intervals import Market, check_market, check_market_interval, count_open_times
from .backoff import Backoff
from .errors import ExchangeError, ExchangeRejected, ExchangeUnavailable, RateLimited, WafBlocked
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

#: REST path prefix of each market.
API_PREFIX: dict[str, str] = {"spot": "/api/v3", "usdm": "/fapi/v1"}
#: Default REQUEST_WEIGHT per minute of each market (reference sections 2 and 3).
WEIGHT_LIMITS: dict[str, int] = {"spot": 6000, "usdm": 2400}

KLINES_MAX_LIMIT = 1000
#: The largest klines ``limit`` each market accepts.
KLINES_MAX_LIMITS: dict[str, int] = {"spot": KLINES_MAX_LIMIT, "usdm": 1500}
#: Candles per klines page the loader asks for: the most candles per unit of weight, since the weight
#: budget is what bounds a long load. Spot weighs 2 at any limit: 1000. USD-M weighs 1/2/5/10 by
#: limit: 499 (weight 2) gets 249.5 candles per weight, 1000 (weight 5) 200, 1500 (weight 10) 150.
KLINES_PAGE_LIMITS: dict[str, int] = {"spot": KLINES_MAX_LIMIT, "usdm": 499}
#: The largest ``limit`` of aggTrades / trades / historicalTrades (spot; weight independent of it).
TRADES_MAX_LIMIT = 1000

#: Request weights of the endpoints this client calls (reference sections 2 and 3) at their default
#: ``limit``; :data:`LIMIT_WEIGHTS` has those whose weight depends on it. Kept here, not imported from
#: the simulator: workers never depend on it. Unknown paths are charged 1.
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
    "/api/v3/depth": 5,
    "/fapi/v1/ping": 1,
    "/fapi/v1/time": 1,
    "/fapi/v1/exchangeInfo": 1,
    "/fapi/v1/klines": 5,
    "/fapi/v1/depth": 10,
}


def futures_klines_weight(limit: int) -> int:
    """USD-M klines (and its mark/index/premium variants): [1,100) 1, [100,500) 2, [500,1000] 5, >1000 10."""
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def futures_depth_weight(limit: int) -> int:
    """USD-M depth: <=50 2, 100 5, 500 10, 1000 20."""
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


def spot_depth_weight(limit: int) -> int:
    """Spot depth: 1-100 5, 101-500 25, 501-1000 50, 1001-5000 250."""
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


#: Endpoints whose weight depends on ``limit``: path -> (default limit, weight of a limit).
LIMIT_WEIGHTS: dict[str, tuple[int, Callable[[int], int]]] = {
    "/fapi/v1/klines": (500, futures_klines_weight),
    "/fapi/v1/depth": (500, futures_depth_weight),
    "/api/v3/depth": (100, spot_depth_weight),
}

#: Binance error codes (spot and USD-M futures) named in rejection messages.
ERROR_NAMES: dict[int, str] = {
    -1003: "TOO_MANY_REQUESTS",
    -1021: "INVALID_TIMESTAMP",
    -1023: "START_TIME_GREATER_THAN_END_TIME",  # USD-M futures (spot answers -1128)
    -1100: "ILLEGAL_CHARS",
    -1101: "TOO_MANY_PARAMETERS",
    -1102: "MANDATORY_PARAM_EMPTY_OR_MALFORMED",
    -1103: "UNKNOWN_PARAM",
    -1105: "PARAM_EMPTY",
    -1120: "BAD_INTERVAL",
    -1121: "BAD_SYMBOL",
    -1127: "MORE_THAN_XX_HOURS",
    -1128: "OPTIONAL_PARAMS_BAD_COMBO",
    -1130: "INVALID_PARAMETER",
}


def request_weight(path: str, params: Mapping[str, str] | None = None) -> int:
    """The weight Binance charges for ``path`` with ``params`` (its ``limit`` where that matters)."""
    by_limit = LIMIT_WEIGHTS.get(path)
    if by_limit is not None:
        default, weight_of = by_limit
        raw = (params or {}).get("limit", "")
        return weight_of(int(raw) if raw.isdigit() else default)
    return REQUEST_WEIGHTS.get(path, 1)


_UNIT_MS = {"SECOND": 1000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}


def weight_limits_of(info: object) -> dict[int, int]:
    """The ``REQUEST_WEIGHT`` limits an ``exchangeInfo`` body publishes: window ms -> limit.

    Binance's shape: ``{"rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
    "intervalNum": 1, "limit": 6000}, ...]}``. Entries that are not readable are skipped; an empty
    dict means the exchange publishes none.
    """
    entries = info.get("rateLimits") if isinstance(info, dict) else None
    limits: dict[int, int] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("rateLimitType") != "REQUEST_WEIGHT":
            continue
        unit, num, limit = entry.get("interval"), entry.get("intervalNum"), entry.get("limit")
        if unit not in _UNIT_MS or not isinstance(num, int) or not isinstance(limit, int):
            continue
        if num >= 1 and limit >= 1:
            window = num * _UNIT_MS[unit]
            limits[window] = min(limits.get(window, limit), limit)
    return limits


#: (base URL, market) -> the REQUEST_WEIGHT limits the exchange publishes, read once per process.
_EXCHANGE_LIMITS: dict[tuple[str, str], dict[int, int]] = {}
#: (base URL, market) -> the one read in progress (concurrent clients wait for it, not send their own).
_READING: dict[tuple[str, str], asyncio.Task[dict[int, int] | None]] = {}


def exchange_weight_limits(base_url: str, market: str = "spot") -> dict[int, int] | None:
    """The REQUEST_WEIGHT limits (window ms -> limit) read from ``base_url`` in this process; None
    when none was read yet."""
    return _EXCHANGE_LIMITS.get((base_url.rstrip("/"), market))


def forget_exchange_limits() -> None:
    """Forget every limit read from an exchange (tests: each starts as a new process would)."""
    _EXCHANGE_LIMITS.clear()
    _READING.clear()


def _error_msg(body: bytes) -> str | None:
    """The ``msg`` of a Binance error body ``{"code": ..., "msg": ...}``; None when there is none."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    msg = data.get("msg") if isinstance(data, dict) else None
    return msg if isinstance(msg, str) else None


class BinanceRestClient:
    """Spot or USD-M market-data client: ``async with BinanceRestClient(url, market="usdm") as c: ...``."""

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
        market: Market = "spot",
        waf_pause_s: float = 10.0,
        read_exchange_limit: bool = True,
    ) -> None:
        self.market = check_market(market)
        #: Whether the client still has to apply the exchange's published limit to its governor.
        self._limit_pending = read_exchange_limit
        #: Pause of every request after a 403 without ``Retry-After`` (the WAF's CloudFront page).
        self.waf_pause_s = waf_pause_s
        self.prefix = API_PREFIX[market]
        self.klines_max_limit = KLINES_MAX_LIMITS[market]
        #: Candles per page a loader should plan its windows with (:data:`KLINES_PAGE_LIMITS`).
        self.page_limit = KLINES_PAGE_LIMITS[market]
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._backoff = Backoff(max_attempts, backoff_base_s, backoff_cap_s, rng or random.Random())
        self._session: aiohttp.ClientSession | None = None
        self.governor = (
            governor if governor is not None else default_governor(WEIGHT_LIMITS[market], pool=market)
        )
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
        self, symbol: str, interval: str, start_ms: int, end_ms: int, limit: int | None = None
    ) -> list[list[Any]]:
        """Klines whose open time lies in ``[start_ms, end_ms]`` (both inclusive, as Binance).

        ``limit`` defaults to the number of candles that open in the window, at most
        :attr:`klines_max_limit` (1000 spot, 1500 USD-M): on USD-M the ``limit`` sets the request's
        weight, so a window planned with :attr:`page_limit` candles (499) is charged 2, not 10.
        """
        check_market_interval(self.market, interval)
        if limit is None:
            limit = max(1, min(self.klines_max_limit, count_open_times(start_ms, end_ms + 1, interval)))
        if not 1 <= limit <= self.klines_max_limit:
            raise ValueError(f"klines limit must be 1..{self.klines_max_limit} on {self.market}, got {limit}")
        params = {
            "symbol": symbol,
            "interval": interval,
            "startTime": str(start_ms),
            "endTime": str(end_ms),
            "limit": str(limit),
        }
        rows = await self._get(f"{self.prefix}/klines", params)
        if not isinstance(rows, list):
            raise ExchangeUnavailable(f"klines: expected a JSON array, got {type(rows).__name__}")
        return rows

    async def agg_trades(
        self,
        symbol: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        from_id: int | None = None,
        limit: int = TRADES_MAX_LIMIT,
    ) -> list[dict[str, Any]]:
        """``GET /api/v3/aggTrades`` (weight 4): ``from_id`` (inclusive) or a time window (inclusive
        bounds, Binance's window rule), not both. Elements ``{"a", "p", "q", "f", "l", "T", "m", "M"}``."""
        if not 1 <= limit <= TRADES_MAX_LIMIT:
            raise ValueError(f"aggTrades limit must be 1..{TRADES_MAX_LIMIT}, got {limit}")
        if from_id is not None and (start_ms is not None or end_ms is not None):
            raise ValueError("aggTrades takes fromId or startTime/endTime, not both")
        params = {"symbol": symbol, "limit": str(limit)}
        for name, value in (("fromId", from_id), ("startTime", start_ms), ("endTime", end_ms)):
            if value is not None:
                params[name] = str(value)
        rows = await self._get(f"{self.prefix}/aggTrades", params)
        if not isinstance(rows, list):
            raise ExchangeUnavailable(f"aggTrades: expected a JSON array, got {type(rows).__name__}")
        return rows

    async def historical_trades(
        self, symbol: str, from_id: int, limit: int = TRADES_MAX_LIMIT
    ) -> list[dict[str, Any]]:
        """``GET /api/v3/historicalTrades`` (weight 25): up to ``limit`` trades with ``id >= from_id``.
        Elements ``{"id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"}``."""
        if not 1 <= limit <= TRADES_MAX_LIMIT:
            raise ValueError(f"historicalTrades limit must be 1..{TRADES_MAX_LIMIT}, got {limit}")
        params = {"symbol": symbol, "fromId": str(from_id), "limit": str(limit)}
        rows = await self._get(f"{self.prefix}/historicalTrades", params)
        if not isinstance(rows, list):
            raise ExchangeUnavailable(f"historicalTrades: expected a JSON array, got {type(rows).__name__}")
        return rows

    async def depth(self, symbol: str, limit: int = 1000) -> dict[str, Any]:
        """``GET /api/v3/depth`` / ``/fapi/v1/depth``: the order book snapshot ``{"lastUpdateId",
        "bids", "asks"}`` (USD-M adds ``E``, ``T``); weight by ``limit`` (spot 1000: 50, USD-M 1000: 20)."""
        if not 1 <= limit <= 5000:
            raise ValueError(f"depth limit must be 1..5000, got {limit}")
        body = await self._get(f"{self.prefix}/depth", {"symbol": symbol, "limit": str(limit)})
        if not isinstance(body, dict) or "lastUpdateId" not in body:
            raise ExchangeUnavailable(f"depth: expected a snapshot object, got {type(body).__name__}")
        return body

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        if self._limit_pending:
            await self.apply_exchange_limit()
        return await self._get_retrying(path, params)

    async def apply_exchange_limit(self) -> None:
        """Keep the governor under the limit the exchange publishes (read once per process and
        exchange URL). The first request does it when nobody did before; idempotent."""
        key = (self.base_url, self.market)
        limits = _EXCHANGE_LIMITS.get(key)
        if limits is None:
            reading = _READING.get(key)
            loop = asyncio.get_running_loop()
            if reading is None or reading.get_loop() is not loop:
                reading = _READING[key] = loop.create_task(self._read_exchange_limits())
            limits = await asyncio.shield(reading)
            if _READING.get(key) is reading:
                del _READING[key]  # a failed read may be tried again by a later client
        self._limit_pending = False
        if limits is not None:
            self.governor.use_exchange_limit(limits.get(self.governor.window_ms))

    async def _read_exchange_limits(self) -> dict[int, int] | None:
        """``exchangeInfo``'s REQUEST_WEIGHT limits (cached for the process); None when unreadable."""
        path = f"{self.prefix}/exchangeInfo"
        governor = self.governor
        window_s = governor.window_ms / 1000
        try:
            limits = weight_limits_of(await self._get_retrying(path, {}))
        except ExchangeError as exc:
            log.warning(
                "could not read the exchange's rate limits (%s): keeping the configured %s weight per %.0fs",
                exc,
                governor.limit,
                window_s,
                extra={"url": self.base_url, "market": self.market},
            )
            return None
        _EXCHANGE_LIMITS[(self.base_url, self.market)] = limits
        limit = limits.get(governor.window_ms)
        if limit is None:
            log.info(
                "%s publishes no REQUEST_WEIGHT limit per %.0fs: keeping the configured %s",
                path,
                window_s,
                governor.limit,
                extra={"url": self.base_url, "market": self.market},
            )
        elif limit < governor.limit:
            log.warning(
                "the exchange allows %s request weight per %.0fs, below the %s configured: keeping under it",
                limit,
                window_s,
                governor.limit,
                extra={"url": self.base_url, "market": self.market, "limit": limit},
            )
        return limits

    async def _get_retrying(self, path: str, params: dict[str, str]) -> Any:
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
        weight = request_weight(path, params)
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
                default_wait = self.waf_pause_s if status == 403 else 60.0
                wait = float(retry_after) if retry_after and retry_after.isdigit() else default_wait
                if status in (429, 418, 403):
                    # Stop every request of the process now, before reading the body: no new one
                    # may reach the exchange during Retry-After (those in flight can't be recalled).
                    governor.block_for(wait, status=status)
                server = resp.headers.get("Server", "")
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
            if status == 429:
                self.http_429 += 1
                # The 429 shows the real limit (its -1003 text, else its weight header): keep under it.
                governor.learn_limit(used_weight, _error_msg(body))
            else:
                self.http_418 += 1
            EXCHANGE_RATE_LIMITED.labels(str(status)).inc()
            raise RateLimited(f"{path}: HTTP {status}", status=status, retry_after=wait)
        if status == 403:
            EXCHANGE_RATE_LIMITED.labels(str(status)).inc()
            via = f", {server}" if server else ""
            raise WafBlocked(
                f"{path}: HTTP 403 (WAF block{via}): every request paused {wait:g}s", retry_after=wait
            )
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
            name = f" {ERROR_NAMES[code]}" if isinstance(code, int) and code in ERROR_NAMES else ""
            raise ExchangeRejected(
                f"{path}: HTTP {status} code {code}{name}: {msg}", status=status, code=code
            )
        return data
