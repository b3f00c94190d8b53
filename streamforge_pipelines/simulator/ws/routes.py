"""The WebSocket endpoints of one simulator: the spot and USD-M routes and their open connections.

``WsStreams(market, clock=..., config=WsConfig(...)).install(app)`` adds the routes and an
``on_shutdown`` hook that sends every open connection ``serverShutdown`` and closes it (close code
1001); :func:`ws_routes` returns just the spot routes.

The handshake is refused (never upgraded) with a Binance-style JSON body when:

* the path is a retired legacy unrouted futures URL (``/fapi-ws/ws[/<s>]``, ``/fapi-ws/stream``):
  HTTP 404 ``{"code": -1, "msg": "This WebSocket URL was retired on 2026-04-23: ..."}``;
* the URL names a USD-M stream of the other route (``btcusdt@aggTrade`` on ``/public``,
  ``btcusdt@depth`` on ``/market``): HTTP 400 ``{"code": 2, "msg": "Invalid request: invalid
  stream"}``. Binance does not document this case; refusing it tells the client at once, where an
  accepted stream that never sends cannot be told from a quiet market;
* more than ``max_streams`` streams (HTTP 400 ``too many streams``) or a bad ``timeUnit``.

A name the dialect cannot parse at all is ignored in a URL (ccxt opens ``/ws/0`` on the real
exchange, then SUBSCRIBEs); a well-formed stream of an unknown symbol is accepted and stays silent,
as on Binance.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from aiohttp import web

from ..clock import Clock, wall_clock_ms
from ..market import Market
from .config import WsConfig
from .connection import Connection, receive
from .names import FUTURES_PREFIX, FUTURES_RETIRED, FUTURES_RETIRED_MSG, FUTURES_ROUTES, SPOT, Dialect
from .stream import DepthCache, Shared

__all__ = ["WsStreams", "ws_routes"]


def bad_request(msg: str) -> web.Response:
    return web.Response(
        body=orjson.dumps({"code": 2, "msg": f"Invalid request: {msg}"}),
        status=400,
        content_type="application/json",
    )


async def retired(request: web.Request) -> web.Response:
    """A legacy unrouted futures URL: HTTP 404 with the reason, the connection is never upgraded."""
    return web.Response(
        body=orjson.dumps({"code": -1, "msg": FUTURES_RETIRED_MSG}),
        status=404,
        content_type="application/json",
    )


class WsStreams:
    """The WebSocket endpoints of one simulator: routes, and the open connections to close at shutdown.

    ``clock`` returns epoch ms (default: the wall clock); each connection starts its simulated
    timeline there. :meth:`install` adds the routes and an ``on_shutdown`` hook to an app; without
    the hook, ``AppRunner.cleanup()`` waits ``shutdown_timeout`` (60 s) for open streams.
    """

    def __init__(self, market: Market, *, clock: Clock | None = None, config: WsConfig | None = None) -> None:
        cfg = config or WsConfig()
        self.config = cfg
        self._shared = Shared(
            market=market,
            clock=clock or wall_clock_ms,
            config=cfg,
            depth=DepthCache(market),
            rng=random.Random(cfg.fault_seed),
        )
        self._futures = Shared(
            market=market,
            clock=self._shared.clock,
            config=cfg.for_futures(),
            depth=self._shared.depth,
            rng=random.Random(f"futures-{cfg.fault_seed}"),
        )
        self._connections: set[Connection] = set()
        #: The spot routes (``/ws``, ``/ws/<streams>``, ``/stream``).
        self.routes: list[web.RouteDef] = self._route_set("", self._shared, SPOT)
        #: The USD-M futures routes (``/fapi-ws/{public,market}/{ws,stream}``) and the retired
        #: unrouted ones (``/fapi-ws/{ws,stream}``, answered 404).
        self.futures_routes: list[web.RouteDef] = []
        for route, kinds in FUTURES_ROUTES.items():
            self.futures_routes += self._route_set(
                f"{FUTURES_PREFIX}{route}", self._futures, Dialect(True, kinds)
            )
        for path in FUTURES_RETIRED:
            self.futures_routes.append(web.get(f"{FUTURES_PREFIX}{path}", retired))
        self.futures_routes.append(web.get(f"{FUTURES_PREFIX}/ws/{{streams:.+}}", retired))

    def _route_set(self, prefix: str, shared: Shared, dialect: Dialect) -> list[web.RouteDef]:
        def handler(combined: bool) -> Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]:
            async def handle(request: web.Request) -> web.StreamResponse:
                return await self._handle(request, shared, dialect, combined)

            return handle

        raw, comb = handler(False), handler(True)
        return [
            web.get(f"{prefix}/ws", raw),
            web.get(f"{prefix}/ws/{{streams:.+}}", raw),
            web.get(f"{prefix}/stream", comb),
        ]

    @property
    def connections(self) -> int:
        """How many connections are open."""
        return len(self._connections)

    def install(self, app: web.Application) -> None:
        """Add the spot and futures routes to ``app``; close the open connections when it shuts down."""
        app.add_routes(self.routes)
        app.add_routes(self.futures_routes)
        app.on_shutdown.append(self._on_shutdown)

    async def close_all(self, code: int = 1001, message: str = "Server shutting down") -> None:
        """Send every open connection the ``serverShutdown`` event, then close it."""
        await asyncio.gather(*(c.shutdown(code, message) for c in list(self._connections)))

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close_all()

    async def _handle(
        self, request: web.Request, shared: Shared, dialect: Dialect, combined: bool
    ) -> web.StreamResponse:
        cfg = shared.config
        raw = request.query.get("streams", "") if combined else request.match_info.get("streams", "")
        # Binance accepts names it does not know in the URL (ccxt connects to ``/ws/0`` and then
        # SUBSCRIBEs): they are ignored. A stream of the other futures route is refused.
        specs = [spec for n in raw.split("/") if n and (spec := dialect.parse(n)) is not None]
        if not all(dialect.serves(spec) for spec in specs):
            return bad_request("invalid stream")
        names = [spec.name for spec in specs]
        if len(dict.fromkeys(names)) > cfg.max_streams:
            return bad_request("too many streams")
        unit = request.query.get("timeUnit", "MILLISECOND").upper()
        if unit not in ("MILLISECOND", "MICROSECOND"):
            return bad_request("invalid timeUnit")
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=5.0, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Connection(
            ws, shared, combined=combined, time_mult=1000 if unit == "MICROSECOND" else 1, dialect=dialect
        )
        conn.transport = request.transport
        conn.add(names)
        self._connections.add(conn)
        tasks = [asyncio.create_task(conn.guard(conn.pump())), asyncio.create_task(conn.guard(conn.keeper()))]
        try:
            await receive(conn)
        finally:
            self._connections.discard(conn)
            conn.closing = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await ws.close()
        return ws


def ws_routes(
    market: Market, *, clock: Clock | None = None, config: WsConfig | None = None
) -> list[web.RouteDef]:
    """Routes serving ``market``'s spot streams: ``/ws``, ``/ws/<streams>``, ``/stream?streams=...``.

    ``app.add_routes(ws_routes(market, clock=clock, config=...))``. Prefer
    ``WsStreams(...).install(app)`` in servers that stop while clients are connected.
    """
    return WsStreams(market, clock=clock, config=config).routes
