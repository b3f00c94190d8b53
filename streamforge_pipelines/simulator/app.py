"""The simulator's Binance-compatible HTTP app (aiohttp): every route over one market.

:func:`build_app` composes the spot REST API (:mod:`.spot`, ``/api/v3``), the USD-M futures REST
API (:mod:`.usdm`, ``/fapi/v1``), the data.binance.vision archive (:mod:`.archive`, ``/data/``),
the WebSocket market streams (:mod:`.ws`, ``/ws``, ``/stream``, ``/fapi-ws/...``), the ground truth
(``GET /_sim/truth``, :meth:`Market.truth`), ``/health`` and ``/metrics``; the handlers share
:mod:`.rest` (errors, state, parameters).

Every ``/api/`` and ``/fapi/`` response carries an ``X-MBX-USED-WEIGHT-1M`` header: weight is
counted per client address in the current clock minute, also for rejected requests, spot and
futures apart (request weights from :mod:`.limits`' tables). Rate limits (429/418 with
``Retry-After``) come from :mod:`.limits`, faults from :mod:`.faults`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from .archive import add_archive_routes
from .clock import Clock, wall_clock_ms
from .config import SimulatorConfig
from .faults import FaultConfig, fault_middleware
from .limits import LimitsConfig, RateLimiter, default_weight_of, rate_limit_middleware, weight_rate_limit
from .market import Market
from .rest import NOW_MS, STATE, ApiError, SimulatorState, StaleSnapshots, json_response
from .spot import add_spot_routes, symbol_info
from .usdm import add_usdm_routes
from .ws import WsConfig, WsStreams

__all__ = ["FUTURES_WEIGHT_PER_MINUTE", "REQUESTS", "build_app"]

#: USD-M futures REQUEST_WEIGHT per minute (spot: 6000, from :class:`LimitsConfig`).
FUTURES_WEIGHT_PER_MINUTE = 2400


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
    if isinstance(market, SimulatorConfig):
        market = Market.from_config(market)
    clock = clock or wall_clock_ms
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
        symbol_info={s.name: symbol_info(s) for s in market.symbols},
        faults=faults,
        weight_limits={"spot": weight_rate_limit(spot_limits), "usdm": weight_rate_limit(futures_limits)},
        stale=(
            StaleSnapshots(faults.stale_snapshot_rate, fault_seed)
            if faults is not None and faults.enabled and faults.stale_snapshot_rate > 0
            else None
        ),
    )
    add_spot_routes(app)
    app.router.add_get("/_sim/truth", _truth)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    add_usdm_routes(app)
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
    return json_response({"status": "ok", "seed": market.seed, "symbols": len(market.symbols)})


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


@web.middleware
async def _api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the clock once per request and map :class:`ApiError` to Binance's error JSON."""
    state = request.app[STATE]
    request[NOW_MS] = state.clock()
    try:
        return await handler(request)
    except ApiError as err:
        return json_response({"code": err.code, "msg": err.msg}, status=err.status)


async def _truth(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].market.truth())
