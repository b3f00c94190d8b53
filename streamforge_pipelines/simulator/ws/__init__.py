"""The simulator's Binance spot and USD-M futures WebSocket market streams (aiohttp), over a Market.

``WsStreams(market, clock=..., config=WsConfig(...)).install(app)`` adds the spot and futures routes
and an ``on_shutdown`` hook that sends every open connection ``serverShutdown`` and closes it (close
code 1001); ``ws_routes(...)`` returns just the spot routes. Spot paths:

* ``/ws/<stream>[/<stream>...]`` — raw frames (the bare payload); ``/ws`` alone for SUBSCRIBE-only use;
* ``/stream?streams=<s1>/<s2>/...`` — combined frames ``{"stream": name, "data": payload}``;
* optional URL parameter ``timeUnit=MICROSECOND`` / ``MILLISECOND`` (any case): event and trade
  times in µs.

USD-M futures streams (§4.4) on the same app, under :data:`FUTURES_PREFIX`; Binance's routed
endpoints map as ``wss://fstream.binance.com/public/ws/<s>`` → ``/fapi-ws/public/ws/<s>``,
``…/public/stream?streams=`` → ``/fapi-ws/public/stream?streams=``, the same for ``/market``.
``/public`` delivers the book streams (depth, partial depth, bookTicker), ``/market`` the others
(aggTrade, kline). Choices where Binance is silent or has changed:

* the legacy unrouted URLs ``…/ws/<s>`` / ``…/stream`` (``/fapi-ws/ws/<s>``, ``/fapi-ws/stream``)
  were retired on 2026-04-23: their handshake is refused with HTTP 404 and
  ``{"code": -1, "msg": "This WebSocket URL was retired on 2026-04-23: ..."}``, never upgraded;
* a stream of the other route is an invalid stream (Binance does not document this case): HTTP 400
  ``{"code": 2, "msg": "Invalid request: invalid stream"}`` when a URL names it, the error reply
  ``Invalid request: invalid stream`` to a SUBSCRIBE naming it (nothing of that request is
  subscribed). A client learns at once, instead of hearing a silence it cannot tell from a quiet
  market. A well-formed stream of an unknown symbol is still accepted and stays silent, as on
  Binance; a name that does not parse at all is still ignored in a URL.

Contracts are those of ``/fapi/v1`` (:func:`..usdm.contract`): the spot model shifted by a constant
basis, rendered at the contract's price / quantity precision.

The package, by role: :mod:`.routes` (the endpoints, :class:`WsStreams`), :mod:`.connection` (one
connection: subscriptions, control messages, pings, simulated time, faults), :mod:`.names` (stream
names), :mod:`.stream` (the base stream and shared state), one module per stream kind —
:mod:`.klines`, :mod:`.trades` (trade, aggTrade), :mod:`.depth` (diff and partial depth, book
ticker), :mod:`.usdm` (the USD-M variants) — and :mod:`.config` (:class:`WsConfig`).
"""

from .config import WsConfig
from .names import FUTURES_PREFIX, FUTURES_ROUTES, StreamSpec, parse_futures_stream, parse_stream
from .routes import WsStreams, ws_routes

__all__ = [
    "FUTURES_PREFIX",
    "FUTURES_ROUTES",
    "StreamSpec",
    "WsConfig",
    "WsStreams",
    "parse_futures_stream",
    "parse_stream",
    "ws_routes",
]
