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
``…/public/stream?streams=`` → ``/fapi-ws/public/stream?streams=``, the same for ``/market``, and the
legacy unrouted ``…/ws/<s>`` / ``…/stream`` → ``/fapi-ws/ws/<s>`` / ``/fapi-ws/stream``. ``/public``
and the unrouted URLs deliver the book streams (depth, partial depth, bookTicker), ``/market`` the
others (aggTrade, kline); a valid stream on the other route is accepted and stays silent (Binance does
not document this case). Contracts are those of ``/fapi/v1`` (:func:`..usdm.contract`): the spot
model shifted by a constant basis, rendered at the contract's price / quantity precision.

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
