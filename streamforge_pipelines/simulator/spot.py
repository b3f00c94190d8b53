"""The simulator's spot REST routes (``/api/v3``), as ``reference/BINANCE_API.md`` (sections 1–2)
describes them.

``ping``, ``time``, ``exchangeInfo``, ``klines``, ``uiKlines``, ``aggTrades``, ``trades``,
``historicalTrades`` and ``depth``: same parameters, same JSON shapes (orjson), same error bodies
``{"code": int, "msg": str}`` with HTTP 400 (:class:`~.rest.ApiError`).

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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from streamforge_pipelines.intervals import INTERVALS

from .market import TZ_MAX_OFFSET, TZ_MIN_OFFSET, Market
from .rest import (
    STATE,
    ApiError,
    check_symbol,
    json_response,
    limit_param,
    mandatory,
    optional_long,
    request_now,
)
from .symbols import SymbolSpec, format_units

__all__ = [
    "KLINES_DEFAULT_LIMIT",
    "KLINES_MAX_LIMIT",
    "KlinesQuery",
    "add_spot_routes",
    "parse_time_zone",
    "symbol_info",
]

KLINES_DEFAULT_LIMIT = 500
KLINES_MAX_LIMIT = 1000
TRADES_DEFAULT_LIMIT = 500
TRADES_MAX_LIMIT = 1000
DEPTH_DEFAULT_LIMIT = 100
DEPTH_MAX_LIMIT = 5000

RATE_LIMITS: list[dict[str, Any]] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300000},
]

_SYMBOLS_RANGE = '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'
_TIME_ZONE = re.compile(r"^([+-]?)([0-9]{1,2})(?::([0-9]{2}))?$")

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


def add_spot_routes(app: web.Application) -> None:
    """Register the ``/api/v3`` routes on a simulator app built by :func:`.app.build_app`."""
    app.router.add_get("/api/v3/ping", _ping)
    app.router.add_get("/api/v3/time", _time)
    app.router.add_get("/api/v3/exchangeInfo", _exchange_info)
    app.router.add_get("/api/v3/klines", _klines)
    app.router.add_get("/api/v3/uiKlines", _klines)
    app.router.add_get("/api/v3/aggTrades", _agg_trades)
    app.router.add_get("/api/v3/trades", _trades)
    app.router.add_get("/api/v3/historicalTrades", _historical_trades)
    app.router.add_get("/api/v3/depth", _depth)


# ---------------------------------------------------------------------- handlers


async def _ping(request: web.Request) -> web.Response:
    return json_response({})


async def _time(request: web.Request) -> web.Response:
    return json_response({"serverTime": request_now(request)})


async def _exchange_info(request: web.Request) -> web.Response:
    state = request.app[STATE]
    names = _requested_symbols(request.query, state.symbol_info)
    return json_response(
        {
            "timezone": "UTC",
            "serverTime": request_now(request),
            "rateLimits": state.rate_limits("spot", RATE_LIMITS),
            "exchangeFilters": [],
            "symbols": [state.symbol_info[n] for n in names],
        }
    )


async def _klines(request: web.Request) -> web.Response:
    q = _parse_klines(request.query, request.app[STATE].market)
    rows = request.app[STATE].market.klines(
        q.symbol, q.interval, q.start_ms, q.end_ms, q.limit, request_now(request), q.tz_offset_min
    )
    return json_response(rows)


async def _agg_trades(request: web.Request) -> web.Response:
    q = request.query
    market = request.app[STATE].market
    symbol = mandatory(q, "symbol")
    from_id = optional_long(q, "fromId")
    start = optional_long(q, "startTime")
    end = optional_long(q, "endTime")
    limit = limit_param(q, TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT)
    check_symbol(market, symbol)
    if from_id is not None and (start is not None or end is not None):
        raise ApiError.bad_combo()
    if start is not None and end is not None and start > end:
        raise ApiError.bad_combo()
    rows = market.agg_trades(symbol, request_now(request), limit, from_id=from_id, start_ms=start, end_ms=end)
    return json_response(rows)


async def _trades(request: web.Request) -> web.Response:
    q = request.query
    market = request.app[STATE].market
    symbol = mandatory(q, "symbol")
    limit = limit_param(q, TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT)
    check_symbol(market, symbol)
    return json_response(market.trades(symbol, request_now(request), limit))


async def _historical_trades(request: web.Request) -> web.Response:
    q = request.query
    market = request.app[STATE].market
    symbol = mandatory(q, "symbol")
    from_id = optional_long(q, "fromId")
    limit = limit_param(q, TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT)
    check_symbol(market, symbol)
    return json_response(market.trades(symbol, request_now(request), limit, from_id=from_id))


async def _depth(request: web.Request) -> web.Response:
    q = request.query
    market = request.app[STATE].market
    symbol = mandatory(q, "symbol")
    limit = limit_param(q, DEPTH_DEFAULT_LIMIT, DEPTH_MAX_LIMIT)
    spec = check_symbol(market, symbol)
    status = q.get("symbolStatus")
    if status is not None:
        if status not in ("TRADING", "HALT", "BREAK"):
            raise ApiError.invalid("symbolStatus")
        if status != spec.status:
            raise ApiError(-1220, "The symbol's status does not match the requested symbolStatus.")
    at = request.app[STATE].snapshot_time(request_now(request))
    return json_response(market.depth_snapshot(symbol, limit, at).to_json())


# ---------------------------------------------------------------------- parameters


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
    symbol = mandatory(query, "symbol")
    interval = mandatory(query, "interval")
    start = optional_long(query, "startTime")
    end = optional_long(query, "endTime")
    limit = optional_long(query, "limit")
    if interval not in INTERVALS:
        raise ApiError(-1120, "Invalid interval.")
    check_symbol(market, symbol)
    zone = query.get("timeZone")
    tz_offset = 0 if zone is None else parse_time_zone(zone)
    if limit is None:
        limit = KLINES_DEFAULT_LIMIT
    elif limit < 1:
        raise ApiError.invalid("limit")
    if start is not None and end is not None and start > end:
        raise ApiError.bad_combo()
    return KlinesQuery(symbol, interval, start, end, min(limit, KLINES_MAX_LIMIT), tz_offset)


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


def symbol_info(spec: SymbolSpec) -> dict[str, Any]:
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
