"""USD-M futures: the perpetual contracts over the spot market model, and their REST routes
(``/fapi/v1``, ``reference/BINANCE_API.md`` §3).

A perpetual contract per spot symbol (:func:`contract`, :func:`futures_row`; the archive's UM files
and the futures WebSocket streams render with the same helpers): its prices are the spot prices
plus a constant basis of :data:`BASIS` of the base price (a whole number of ticks), so every spot
identity holds for futures too (quote volume = spot quote volume + basis × volume, exactly).
Prices are rendered at the contract's price precision (the decimals of the tick size, e.g.
``"7.6080"``), quantities at its quantity precision, quote volumes at 8 decimals.

Served: ``klines`` (limit default 500, max 1500, weight 1/2/5/10 by ``limit``; no ``1s`` →
``-1120``; ``startTime > endTime`` → ``-1023``), ``depth`` (limit ∈ {5, 10, 20, 50, 100, 500, 1000},
default 500, anything else ``-1130``; weight 2/5/10/20; ``E`` and ``T`` fields; same book and update
ids as spot, shifted by the basis; stale with :attr:`.faults.FaultConfig.stale_snapshot_rate`
as spot ``depth`` is) and ``exchangeInfo`` (``futuresType``, ``assets``,
``REQUEST_WEIGHT`` 2400 / 1 MINUTE).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from aiohttp import web

from streamforge_pipelines.intervals import INTERVALS

from . import book
from .rest import STATE, ApiError, check_symbol, json_response, mandatory, optional_long, request_now
from .symbols import SCALE, SymbolSpec

__all__ = [
    "BASIS",
    "FUTURES_DEPTH_LIMITS",
    "FUTURES_KLINES_MAX_LIMIT",
    "Contract",
    "add_usdm_routes",
    "contract",
    "futures_row",
]

FUTURES_KLINES_DEFAULT_LIMIT = 500
FUTURES_KLINES_MAX_LIMIT = 1500
FUTURES_DEPTH_DEFAULT_LIMIT = 500
FUTURES_DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
#: Futures premium over spot, as a fraction of the symbol's base price.
BASIS = 0.0004

RATE_LIMITS: list[dict[str, Any]] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]


def _decimals(text: str) -> int:
    exponent = Decimal(text).normalize().as_tuple().exponent
    return max(0, -int(exponent))


@dataclass(frozen=True, slots=True)
class Contract:
    """A perpetual contract on a spot symbol: precisions and the basis (1e-8 units)."""

    symbol: str
    price_decimals: int
    qty_decimals: int
    basis_units: int

    def price(self, spot_units: int) -> str:
        return _render(spot_units + self.basis_units, self.price_decimals)

    def qty(self, units: int) -> str:
        return _render(units, self.qty_decimals)


@lru_cache(maxsize=1024)
def contract(spec: SymbolSpec) -> Contract:
    """The futures contract of ``spec``."""
    basis_ticks = max(1, round(spec.base_price * BASIS * SCALE / spec.tick_units))
    return Contract(
        spec.name, _decimals(spec.tick_size), _decimals(spec.step_size), basis_ticks * spec.tick_units
    )


def _render(units: int, decimals: int) -> str:
    whole, frac = divmod(units, SCALE)
    if decimals <= 0:
        return str(whole)
    return f"{whole}.{frac // 10 ** (8 - decimals):0{decimals}d}"


def _units(text: str) -> int:
    """Spot strings have exactly 8 decimals: drop the point."""
    return int(text.replace(".", ""))


def futures_row(c: Contract, row: list) -> list:
    """A futures kline row from the spot row of the same candle."""
    vol, taker = _units(row[5]), _units(row[9])
    b = c.basis_units
    return [
        row[0],
        c.price(_units(row[1])),
        c.price(_units(row[2])),
        c.price(_units(row[3])),
        c.price(_units(row[4])),
        c.qty(vol),
        row[6],
        _render(_units(row[7]) + b * vol // SCALE, 8),
        row[8],
        c.qty(taker),
        _render(_units(row[10]) + b * taker // SCALE, 8),
        "0",
    ]


async def _klines(request: web.Request) -> web.Response:
    q = request.query
    market = request.app[STATE].market
    symbol = mandatory(q, "symbol")
    interval = mandatory(q, "interval")
    start = optional_long(q, "startTime")
    end = optional_long(q, "endTime")
    limit = optional_long(q, "limit")
    if interval not in INTERVALS or interval == "1s":
        raise ApiError(-1120, "Invalid interval.")
    spec = check_symbol(market, symbol)
    if limit is None:
        limit = FUTURES_KLINES_DEFAULT_LIMIT
    elif limit < 1:
        raise ApiError.invalid("limit")
    if start is not None and end is not None and start > end:
        raise ApiError(-1023, "Start time is greater than end time.")
    rows = market.klines(
        symbol, interval, start, end, min(limit, FUTURES_KLINES_MAX_LIMIT), request_now(request)
    )
    c = contract(spec)
    return json_response([futures_row(c, r) for r in rows])


async def _depth(request: web.Request) -> web.Response:
    q = request.query
    market = request.app[STATE].market
    symbol = mandatory(q, "symbol")
    limit = optional_long(q, "limit")
    spec = check_symbol(market, symbol)
    if limit is None:
        limit = FUTURES_DEPTH_DEFAULT_LIMIT
    elif limit not in FUTURES_DEPTH_LIMITS:
        raise ApiError.invalid("limit")
    now = request_now(request)
    # A stale snapshot (FaultConfig.stale_snapshot_rate) is the book of an earlier window.
    window = request.app[STATE].snapshot_time(now) // book.WINDOW_MS - 1
    c = contract(spec)
    levels = market.book_levels(spec.name, window, limit)
    snap = book.DepthSnapshot.from_levels(levels, c.price_decimals, c.qty_decimals, c.basis_units)
    return json_response(
        {
            "lastUpdateId": snap.last_update_id,
            "E": now,
            "T": (window + 1) * book.WINDOW_MS,
            "bids": snap.bids,
            "asks": snap.asks,
        }
    )


async def _exchange_info(request: web.Request) -> web.Response:
    market = request.app[STATE].market
    quotes = sorted({s.quote_asset for s in market.symbols})
    return json_response(
        {
            "timezone": "UTC",
            "serverTime": request_now(request),
            "futuresType": "U_MARGINED",
            "rateLimits": request.app[STATE].rate_limits("usdm", RATE_LIMITS),
            "exchangeFilters": [],
            "assets": [{"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"} for a in quotes],
            "symbols": [_symbol_info(s) for s in market.symbols],
        }
    )


def _symbol_info(spec: SymbolSpec) -> dict[str, Any]:
    c = contract(spec)
    tick = _render(spec.tick_units, c.price_decimals)
    step = _render(spec.step_units, c.qty_decimals)
    return {
        "symbol": spec.name,
        "pair": spec.name,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": spec.listing_ms,
        "status": spec.status,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": spec.base_asset,
        "quoteAsset": spec.quote_asset,
        "marginAsset": spec.quote_asset,
        "pricePrecision": c.price_decimals,
        "quantityPrecision": c.qty_decimals,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000", "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "1000000", "stepSize": step},
            {"filterType": "MARKET_LOT_SIZE", "minQty": step, "maxQty": "100000", "stepSize": step},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": "5"},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": "1.0500",
                "multiplierDown": "0.9500",
                "multiplierDecimal": "4",
            },
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def add_usdm_routes(app: web.Application) -> None:
    """Register the ``/fapi/v1`` routes on a simulator app built by :func:`.app.build_app`."""
    app.router.add_get("/fapi/v1/klines", _klines)
    app.router.add_get("/fapi/v1/depth", _depth)
    app.router.add_get("/fapi/v1/exchangeInfo", _exchange_info)
