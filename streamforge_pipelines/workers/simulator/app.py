"""The simulator's Binance-compatible REST API (aiohttp): spot ``/api/v3`` and USD-M ``/fapi/v1``.

Spot: ``ping``, ``time``, ``exchangeInfo``, ``klines``, ``uiKlines``, ``aggTrades``, ``trades``,
``historicalTrades`` and ``depth``; USD-M futures (:mod:`.futures`): ``klines``, ``depth``,
``exchangeInfo``; and ``GET /_sim/truth`` (the market's ground truth, :meth:`Market.truth`). As
``reference/BINANCE_API.md`` (sections 1–3) describes them: same parameters, same JSON shapes
(orjson), same error bodies ``{"code": int, "msg": str}`` with HTTP 400, and an
``X-MBX-USED-WEIGHT-1M`` header on every response (spot and futures weights counted apart).

Choices where Binance's behaviour is not documented:

* ``limit`` above 1000 is capped at 1000 (as spot ``depth`` documents for its own maximum; clients
  paging with ``limit=1000`` are unaffected). ``limit`` below 1 is ``-1130``.
* ``startTime`` > ``endTime`` is ``-1128`` (USD-M futures answer ``-1023`` instead).
* ``timeZone`` (klines, uiKlines): ``[+|-]H``, ``[+|-]HH``, ``[+|-]H:MM`` or ``[+|-]HH:MM`` with
  minutes below 60, in ``[-12:00, +14:00]``; anything else is ``-1130``. Interval boundaries are
  those of the local time (:meth:`Market.klines`), startTime/endTime stay UTC.
* ``depth`` (spot and USD-M): with :attr:`FaultConfig.stale_snapshot_rate` a seeded share of the
  snapshots is the book of 1–5 s earlier (an older ``lastUpdateId``), as a lagging replica would
  serve it; clients detect it by section 5.1 step 4 of the reference.
* ``uiKlines`` returns the same candles as ``klines`` (Binance does not document its changes).
* ``aggTrades``: ``fromId`` together with ``startTime``/``endTime`` is ``-1128``; limits as klines.
* ``depth``: ``symbolStatus`` other than TRADING/HALT/BREAK is ``-1130``, one that does not match the
  symbol's status is ``-1220``.
* Weight is counted per client address in the current clock minute, also for rejected requests.

Rate limits (429/418 with ``Retry-After``) come from :mod:`.limits`, faults from :mod:`.faults`.
Request weights (and so the ``X-MBX-USED-WEIGHT-1M`` figures) come from :mod:`.limits`' tables.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from streamforge_pipelines.intervals import INTERVALS

from . import book
from .config import SimulatorConfig
from .faults import FaultConfig, fault_middleware
from .limits import LimitsConfig, RateLimiter, default_weight_of, rate_limit_middleware
from .market import TZ_MAX_OFFSET, TZ_MIN_OFFSET, Market, SymbolSpec, UnknownSymbolError, format_units
from .ws import WsConfig, WsStreams

__all__ = [
    "KLINES_DEFAULT_LIMIT",
    "KLINES_MAX_LIMIT",
    "ApiError",
    "StaleSnapshots",
    "build_app",
    "parse_time_zone",
]

Clock = Callable[[], int]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KLINES_DEFAULT_LIMIT = 500
KLINES_MAX_LIMIT = 1000
TRADES_DEFAULT_LIMIT = 500
TRADES_MAX_LIMIT = 1000
DEPTH_DEFAULT_LIMIT = 100
DEPTH_MAX_LIMIT = 5000
#: USD-M futures REQUEST_WEIGHT per minute (spot: 6000, from :class:`LimitsConfig`).
FUTURES_WEIGHT_PER_MINUTE = 2400

RATE_LIMITS: list[dict[str, Any]] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300000},
]

_LONG = re.compile(r"^[0-9]{1,20}$")
_LONG_RANGE = "^[0-9]{1,20}$"
_SYMBOLS_RANGE = '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'
_TIME_ZONE = re.compile(r"^([+-]?)([0-9]{1,2})(?::([0-9]{2}))?$")
#: Age of a stale depth snapshot, in 100 ms windows: 1 to 5 seconds.
STALE_MIN_WINDOWS = 10
STALE_MAX_WINDOWS = 50
_JSON_HEADERS = {"Content-Type": "application/json;charset=UTF-8"}

_ORDER_TYPES = [
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
]
_STP_MODES = ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"]


class ApiError(Exception):
    """A request Binance would reject: rendered as ``{"code": code, "msg": msg}`` with ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status

    @classmethod
    def mandatory(cls, name: str) -> ApiError:
        return cls(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")

    @classmethod
    def illegal(cls, name: str, legal: str = _LONG_RANGE) -> ApiError:
        return cls(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")

    @classmethod
    def invalid(cls, name: str) -> ApiError:
        return cls(-1130, f"Data sent for parameter '{name}' is not valid.")

    @classmethod
    def bad_combo(cls) -> ApiError:
        return cls(-1128, "Combination of optional parameters invalid.")

    @classmethod
    def bad_symbol(cls) -> ApiError:
        return cls(-1121, "Invalid symbol.")


class StaleSnapshots:
    """Seeded decisions of the stale-snapshot fault (:attr:`FaultConfig.stale_snapshot_rate`).

    Every depth request (spot and USD-M) draws two values from one ``random.Random(seed)``,
    synchronously in its handler, so sequential requests get the same decisions for the same seed.
    """

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.rng = random.Random(seed)

    def age_ms(self) -> int:
        """How old the next snapshot is: 0 (current) or 1–5 s in whole 100 ms windows."""
        u_stale, u_age = self.rng.random(), self.rng.random()
        if u_stale >= self.rate:
            return 0
        span = STALE_MAX_WINDOWS - STALE_MIN_WINDOWS + 1
        windows = STALE_MIN_WINDOWS + min(int(u_age * span), span - 1)
        return windows * book.WINDOW_MS


@dataclass(slots=True)
class SimulatorState:
    """What the handlers share: the market, the clock and the faults the handlers apply."""

    market: Market
    clock: Clock
    symbol_info: dict[str, dict[str, Any]]
    faults: FaultConfig | None = None
    #: None: depth snapshots are never stale.
    stale: StaleSnapshots | None = None

    def snapshot_time(self, now_ms: int) -> int:
        """The clock reading whose book a depth snapshot at ``now_ms`` shows (earlier when stale)."""
        return now_ms if self.stale is None else now_ms - self.stale.age_ms()


STATE = web.AppKey("simulator_state", SimulatorState)
#: The clock reading of a request, taken once by the middleware (plain key on aiohttp < 3.14).
NOW_MS: Any = web.RequestKey("now_ms", int) if hasattr(web, "RequestKey") else "now_ms"


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def build_app(
    market: Market | SimulatorConfig,
    *,
    clock: Clock | None = None,
    limits: LimitsConfig | None = None,
    faults: FaultConfig | None = None,
    fault_seed: int = 0,
    ws: WsConfig | None = None,
) -> web.Application:
    """An aiohttp application serving ``market`` (or the market of a config) as Binance does.

    ``clock`` returns epoch ms (default: the wall clock). ``limits`` enforces the spot
    REQUEST_WEIGHT/RAW_REQUESTS limits (429, then 418 bans); USD-M gets the same rules with its own
    2400/minute budget. Without ``limits`` weight is counted and reported in the headers but never
    refused. ``faults`` injects seeded faults into the REST and archive paths (and, through
    ``ws_disconnect_rate``/``depth_gap_rate``, into the WebSocket streams unless ``ws`` is given).
    Besides the REST API it serves the WebSocket market streams (``/ws``, ``/stream``), the
    data.binance.vision archive under ``/data/`` and the ground truth at ``/_sim/truth``.
    """
    from .archive import add_archive_routes
    from .futures import add_futures_routes

    if isinstance(market, SimulatorConfig):
        market = Market.from_config(market)
    clock = clock or _wall_clock_ms
    spot_limits = limits or LimitsConfig(enabled=False)
    futures_limits = dataclasses.replace(spot_limits, request_weight_per_minute=FUTURES_WEIGHT_PER_MINUTE)
    middlewares = [_count_requests, _limits_middleware(spot_limits, futures_limits, clock)]
    if faults is not None and faults.enabled:
        middlewares.append(
            _on_paths(("/api/", "/fapi/", "/data/"), fault_middleware(faults, rng_seed=fault_seed))
        )
    middlewares.append(_api_middleware)
    app = web.Application(middlewares=middlewares)
    app[STATE] = SimulatorState(
        market=market,
        clock=clock,
        symbol_info={s.name: _symbol_info(s) for s in market.symbols},
        faults=faults,
        stale=(
            StaleSnapshots(faults.stale_snapshot_rate, fault_seed)
            if faults is not None and faults.enabled and faults.stale_snapshot_rate > 0
            else None
        ),
    )
    app.router.add_get("/api/v3/ping", _ping)
    app.router.add_get("/api/v3/time", _time)
    app.router.add_get("/api/v3/exchangeInfo", _exchange_info)
    app.router.add_get("/api/v3/klines", _klines)
    app.router.add_get("/api/v3/uiKlines", _klines)
    app.router.add_get("/api/v3/aggTrades", _agg_trades)
    app.router.add_get("/api/v3/trades", _trades)
    app.router.add_get("/api/v3/historicalTrades", _historical_trades)
    app.router.add_get("/api/v3/depth", _depth)
    app.router.add_get("/_sim/truth", _truth)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    add_futures_routes(app)
    add_archive_routes(app, market, clock)
    if ws is None:
        ws = WsConfig.from_faults(faults, fault_seed=fault_seed) if faults is not None else WsConfig()
    WsStreams(market, clock=clock, config=ws).install(app)
    return app


REQUESTS = Counter(
    "streamforge_simulator_requests_total", "Requests served by the exchange simulator", ["route", "status"]
)


@web.middleware
async def _count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every answer by route family and status (429/418 and injected faults included)."""
    route = "/".join(request.path.split("/")[:3]) or "/"
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        REQUESTS.labels(route, str(exc.status)).inc()
        raise
    REQUESTS.labels(route, str(response.status)).inc()
    return response


async def _health(request: web.Request) -> web.Response:
    market = request.app[STATE].market
    return _json({"status": "ok", "seed": market.seed, "symbols": len(market.symbols)})


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _on_paths(prefixes: tuple[str, ...], middleware: Any) -> Any:
    """``middleware`` applied only to requests whose path starts with one of ``prefixes``."""

    @web.middleware
    async def scoped(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(prefixes):
            return await middleware(request, handler)
        return await handler(request)

    return scoped


def _limits_middleware(spot: LimitsConfig, futures: LimitsConfig, clock: Clock) -> Any:
    """Spot (``/api/``) and USD-M (``/fapi/``) weight, each with its own limiter, as Binance does."""

    weight_of = default_weight_of
    spot_mw = rate_limit_middleware(RateLimiter(spot), weight_of=weight_of, clock=clock)
    futures_mw = rate_limit_middleware(RateLimiter(futures), weight_of=weight_of, clock=clock)

    @web.middleware
    async def limited(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            return await spot_mw(request, handler)
        if request.path.startswith("/fapi/"):
            return await futures_mw(request, handler)
        return await handler(request)

    return limited


# ---------------------------------------------------------------------- middleware and responses


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, headers=_JSON_HEADERS)


def _now(request: web.Request) -> int:
    return request[NOW_MS]


@web.middleware
async def _api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the clock once per request and map :class:`ApiError` to Binance's error JSON."""
    state = request.app[STATE]
    request[NOW_MS] = state.clock()
    try:
        return await handler(request)
    except ApiError as err:
        return _json({"code": err.code, "msg": err.msg}, status=err.status)


# ---------------------------------------------------------------------- handlers


async def _ping(request: web.Request) -> web.Response:
    return _json({})


async def _time(request: web.Request) -> web.Response:
    return _json({"serverTime": _now(request)})


async def _exchange_info(request: web.Request) -> web.Response:
    state = request.app[STATE]
    names = _requested_symbols(request.query, state.symbol_info)
    return _json(
        {
            "timezone": "UTC",
            "serverTime": _now(request),
            "rateLimits": RATE_LIMITS,
            "exchangeFilters": [],
            "symbols": [state.symbol_info[n] for n in names],
        }
    )


async def _klines(request: web.Request) -> web.Response:
    q = _parse_klines(request.query, request.app[STATE].market)
    rows = request.app[STATE].market.klines(
        q.symbol, q.interval, q.start_ms, q.end_ms, q.limit, _now(request), q.tz_offset_min
    )
    return _json(rows)


async def _agg_trades(request: web.Request) -> web.Response:
    q = request.query
    market = request.app[STATE].market
    symbol = _mandatory(q, "symbol")
    from_id = _optional_long(q, "fromId")
    start = _optional_long(q, "startTime")
    end = _optional_long(q, "endTime")
    limit = _limit(q, TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT)
    _check_symbol(market, symbol)
    if from_id is not None and (start is not None or end is not None):
        raise ApiError.bad_combo()
    if start is not None and end is not None and start > end:
        raise ApiError.bad_combo()
    rows = market.agg_trades(symbol, _now(request), limit, from_id=from_id, start_ms=start, end_ms=end)
    return _json(rows)


async def _trades(request: web.Request) -> web.Response:
    q = request.query
    market = request.app[STATE].market
    symbol = _mandatory(q, "symbol")
    limit = _limit(q, TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT)
    _check_symbol(market, symbol)
    return _json(market.trades(symbol, _now(request), limit))


async def _historical_trades(request: web.Request) -> web.Response:
    q = request.query
    market = request.app[STATE].market
    symbol = _mandatory(q, "symbol")
    from_id = _optional_long(q, "fromId")
    limit = _limit(q, TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT)
    _check_symbol(market, symbol)
    return _json(market.trades(symbol, _now(request), limit, from_id=from_id))


async def _depth(request: web.Request) -> web.Response:
    q = request.query
    market = request.app[STATE].market
    symbol = _mandatory(q, "symbol")
    limit = _limit(q, DEPTH_DEFAULT_LIMIT, DEPTH_MAX_LIMIT)
    spec = _check_symbol(market, symbol)
    status = q.get("symbolStatus")
    if status is not None:
        if status not in ("TRADING", "HALT", "BREAK"):
            raise ApiError.invalid("symbolStatus")
        if status != spec.status:
            raise ApiError(-1220, "The symbol's status does not match the requested symbolStatus.")
    at = request.app[STATE].snapshot_time(_now(request))
    return _json(market.depth_snapshot(symbol, limit, at).to_json())


async def _truth(request: web.Request) -> web.Response:
    return _json(request.app[STATE].market.truth())


# ---------------------------------------------------------------------- parameters


def _limit(query: Mapping[str, str], default: int, maximum: int) -> int:
    """``limit``: default when absent, ``-1130`` below 1, capped at ``maximum``."""
    limit = _optional_long(query, "limit")
    if limit is None:
        return default
    if limit < 1:
        raise ApiError.invalid("limit")
    return min(limit, maximum)


@dataclass(frozen=True, slots=True)
class KlinesQuery:
    """The validated parameters of a klines request."""

    symbol: str
    interval: str
    start_ms: int | None
    end_ms: int | None
    limit: int
    #: ``timeZone`` in minutes east of UTC.
    tz_offset_min: int = 0


def parse_time_zone(text: str) -> int:
    """A ``timeZone`` value in minutes east of UTC (``"8"`` → 480, ``"-5:30"`` → -330).

    ``[+|-]H[H][:MM]`` with minutes below 60, in ``[-12:00, +14:00]``; else ``-1130``.
    """
    match = _TIME_ZONE.match(text)
    if match is None:
        raise ApiError.invalid("timeZone")
    sign, hours, minutes = match.groups()
    if minutes is not None and int(minutes) >= 60:
        raise ApiError.invalid("timeZone")
    offset = int(hours) * 60 + int(minutes or 0)
    offset = -offset if sign == "-" else offset
    if not TZ_MIN_OFFSET <= offset <= TZ_MAX_OFFSET:
        raise ApiError.invalid("timeZone")
    return offset


def _parse_klines(query: Mapping[str, str], market: Market) -> KlinesQuery:
    """Validate in Binance's order: mandatory, formats, interval, symbol, then combinations."""
    symbol = _mandatory(query, "symbol")
    interval = _mandatory(query, "interval")
    start = _optional_long(query, "startTime")
    end = _optional_long(query, "endTime")
    limit = _optional_long(query, "limit")
    if interval not in INTERVALS:
        raise ApiError(-1120, "Invalid interval.")
    _check_symbol(market, symbol)
    zone = query.get("timeZone")
    tz_offset = 0 if zone is None else parse_time_zone(zone)
    if limit is None:
        limit = KLINES_DEFAULT_LIMIT
    elif limit < 1:
        raise ApiError.invalid("limit")
    if start is not None and end is not None and start > end:
        raise ApiError.bad_combo()
    return KlinesQuery(symbol, interval, start, end, min(limit, KLINES_MAX_LIMIT), tz_offset)


def _mandatory(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    if not value:
        raise ApiError.mandatory(name)
    return value


def _optional_long(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    if value == "":
        raise ApiError(-1105, f"Parameter '{name}' was empty.")
    if not _LONG.match(value):
        raise ApiError.illegal(name)
    return int(value)


def _check_symbol(market: Market, name: str) -> SymbolSpec:
    try:
        return market.symbol(name)
    except UnknownSymbolError:
        raise ApiError.bad_symbol() from None


def _requested_symbols(query: Mapping[str, str], known: Mapping[str, Any]) -> Iterable[str]:
    """Names selected by exchangeInfo's ``symbol`` / ``symbols`` / ``symbolStatus`` parameters."""
    symbol, symbols, status = query.get("symbol"), query.get("symbols"), query.get("symbolStatus")
    if sum(p is not None for p in (symbol, symbols, status)) > 1:
        raise ApiError.bad_combo()
    if symbol is not None:
        names = [symbol]
    elif symbols is not None:
        names = _parse_symbol_list(symbols)
    else:
        if status is not None and status not in ("TRADING", "HALT", "BREAK"):
            raise ApiError.invalid("symbolStatus")
        return [n for n, info in known.items() if status is None or info["status"] == status]
    if any(n not in known for n in names):
        raise ApiError.bad_symbol()
    return names


def _parse_symbol_list(text: str) -> list[str]:
    try:
        names = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ApiError.illegal("symbols", _SYMBOLS_RANGE) from None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ApiError.illegal("symbols", _SYMBOLS_RANGE)
    return names


# ---------------------------------------------------------------------- exchangeInfo entries


def _symbol_info(spec: SymbolSpec) -> dict[str, Any]:
    """One ``symbols[]`` entry of exchangeInfo, keys in the documented order."""
    tick, step = format_units(spec.tick_units), format_units(spec.step_units)
    return {
        "symbol": spec.name,
        "status": spec.status,
        "baseAsset": spec.base_asset,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote_asset,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": _ORDER_TYPES,
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "opoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "pegInstructionsAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": _filters(tick, step),
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": _STP_MODES,
    }


def _filters(tick: str, step: str) -> list[dict[str, Any]]:
    return [
        {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000", "tickSize": tick},
        {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000000.00000000", "stepSize": step},
        {"filterType": "ICEBERG_PARTS", "limit": 10},
        {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": "0.00000000",
            "maxQty": "100000.00000000",
            "stepSize": "0.00000000",
        },
        {
            "filterType": "PERCENT_PRICE_BY_SIDE",
            "bidMultiplierUp": "5",
            "bidMultiplierDown": "0.2",
            "askMultiplierUp": "5",
            "askMultiplierDown": "0.2",
            "avgPriceMins": 5,
        },
        {
            "filterType": "NOTIONAL",
            "minNotional": "5.00000000",
            "applyMinToMarket": True,
            "maxNotional": "9000000.00000000",
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        },
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
    ]
