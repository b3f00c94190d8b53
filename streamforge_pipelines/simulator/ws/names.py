"""Stream names: what each one denotes (:class:`StreamSpec`), for spot and for each USD-M route.

Symbols are lowercase in stream names. Spot (``reference/BINANCE_API.md`` §4.3):
``<s>@kline_<interval>[@+08:00]``, ``<s>@trade``, ``<s>@aggTrade``, ``<s>@depth[@100ms]``,
``<s>@depth<5|10|20>[@100ms]``, ``<s>@bookTicker``. USD-M (§4.4): ``<s>@aggTrade``,
``<s>@kline_<interval>`` (no ``1s``), ``<s>@depth[@500ms|@100ms]``,
``<s>@depth<5|10|20>[@500ms|@100ms]``, ``<s>@bookTicker``. A name that is none of these is not a
stream (None).

Each USD-M route serves some kinds only (:data:`FUTURES_ROUTES`: ``/public`` the book streams,
``/market`` trades and klines); on a route, a stream of the other route is not one of its streams
(:meth:`Dialect.serves`), which the endpoints refuse like an unknown kind (:mod:`.routes`,
:mod:`.connection`). The legacy unrouted futures URLs are retired (:data:`FUTURES_RETIRED`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streamforge_pipelines.intervals import INTERVALS

from .. import book

__all__ = [
    "FUTURES_PREFIX",
    "FUTURES_RETIRED",
    "FUTURES_RETIRED_MSG",
    "FUTURES_ROUTES",
    "SPOT",
    "Dialect",
    "StreamSpec",
    "parse_futures_stream",
    "parse_stream",
]

_STREAM = re.compile(
    r"^(?P<sym>[a-z0-9]+)@(?:kline_(?P<interval>[0-9]+[smhdwM])(?P<tz>@\+08:00)?"
    r"|(?P<kind>trade|aggTrade|bookTicker)|depth(?P<levels>5|10|20)?(?:@(?P<speed>100ms))?)$"
)
_FUTURES_STREAM = re.compile(
    r"^(?P<sym>[a-z0-9]+)@(?:kline_(?P<interval>[0-9]+[smhdwM])|(?P<kind>aggTrade|bookTicker)"
    r"|depth(?P<levels>5|10|20)?(?:@(?P<speed>100ms|500ms))?)$"
)
#: UTC+8 bucketing of ``@kline_<i>@+08:00`` (minutes east of UTC).
_TZ_PLUS8_MIN = 480
#: Futures kline pushes (simulated ms); futures diff / partial depth default period.
_FUTURES_KLINE_MS = 250
_FUTURES_DEPTH_MS = 250
#: Futures stream kinds by routed endpoint (``/public``: book data, ``/market``: the rest).
_PUBLIC_KINDS = frozenset({"depth", "partial", "bookTicker"})
_MARKET_KINDS = frozenset({"kline", "aggTrade"})


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A parsed stream name: ``kind`` is kline, trade, aggTrade, depth, partial or bookTicker.

    ``tz_offset_min``: the local time of a ``@kline_<i>@+08:00`` stream's candles (minutes east of
    UTC); ``futures``: a USD-M stream name (:func:`parse_futures_stream`).
    """

    name: str
    symbol: str
    kind: str
    interval: str = ""
    period_ms: int = 0
    levels: int = 0
    tz_offset_min: int = 0
    futures: bool = False


def parse_stream(name: str) -> StreamSpec | None:
    """The spot stream ``name`` denotes, or None when it is not a stream this simulator serves."""
    m = _STREAM.match(name)
    if m is None:
        return None
    sym = m["sym"].upper()
    if m["interval"] is not None:
        if m["interval"] not in INTERVALS:
            return None
        tz = _TZ_PLUS8_MIN if m["tz"] else 0
        return StreamSpec(
            name, sym, "kline", m["interval"], 1000 if m["interval"] == "1s" else 2000, tz_offset_min=tz
        )
    if m["kind"] is not None:
        return StreamSpec(name, sym, m["kind"], period_ms=book.WINDOW_MS if m["kind"] == "bookTicker" else 0)
    period = 100 if m["speed"] == "100ms" else 1000
    if m["levels"] is not None:
        return StreamSpec(name, sym, "partial", period_ms=period, levels=int(m["levels"]))
    return StreamSpec(name, sym, "depth", period_ms=period)


def parse_futures_stream(name: str) -> StreamSpec | None:
    """The USD-M futures stream ``name`` denotes (§4.4), or None when it is not one served here.

    ``<s>@aggTrade``, ``<s>@kline_<i>`` (no ``1s``), ``<s>@depth[@500ms|@100ms]``,
    ``<s>@depth<5|10|20>[@500ms|@100ms]`` (250 ms by default) and ``<s>@bookTicker``.
    """
    m = _FUTURES_STREAM.match(name)
    if m is None:
        return None
    sym = m["sym"].upper()
    if m["interval"] is not None:
        if m["interval"] not in INTERVALS or m["interval"] == "1s":
            return None
        return StreamSpec(name, sym, "kline", m["interval"], _FUTURES_KLINE_MS, futures=True)
    if m["kind"] is not None:
        period = book.WINDOW_MS if m["kind"] == "bookTicker" else 0
        return StreamSpec(name, sym, m["kind"], period_ms=period, futures=True)
    period = int(m["speed"][:-2]) if m["speed"] else _FUTURES_DEPTH_MS
    if m["levels"] is not None:
        return StreamSpec(name, sym, "partial", period_ms=period, levels=int(m["levels"]), futures=True)
    return StreamSpec(name, sym, "depth", period_ms=period, futures=True)


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one endpoint serves: spot (every spot kind), or one futures route (``kinds``).

    :meth:`parse` reads any stream name of the dialect's market; :meth:`serves` says whether this
    endpoint delivers it. A futures stream of the other route parses but is not served: the
    endpoints refuse it (HTTP 400 in a URL, ``invalid stream`` to SUBSCRIBE), where a name that does
    not parse at all is ignored in a URL.
    """

    futures: bool
    kinds: frozenset[str] | None = None

    def parse(self, name: str) -> StreamSpec | None:
        return parse_futures_stream(name) if self.futures else parse_stream(name)

    def serves(self, spec: StreamSpec) -> bool:
        return self.kinds is None or spec.kind in self.kinds

    def stream(self, name: str) -> StreamSpec | None:
        """The stream ``name`` denotes when this endpoint serves it, else None (an invalid stream here)."""
        spec = self.parse(name)
        return spec if spec is not None and self.serves(spec) else None


SPOT = Dialect(futures=False)
#: Prefix of the USD-M futures endpoints: ``wss://fstream.binance.com/<route>/...`` is served at
#: ``/fapi-ws/<route>/...``.
FUTURES_PREFIX = "/fapi-ws"
#: Futures routes (§4.4) and the stream kinds each delivers (``/private``, user data, is not modelled).
FUTURES_ROUTES: dict[str, frozenset[str]] = {
    "/public": _PUBLIC_KINDS,
    "/market": _MARKET_KINDS,
}
#: The legacy unrouted futures paths (``wss://fstream.binance.com/ws/...``, ``/stream?streams=``),
#: retired by Binance on 2026-04-23: their handshake is refused with HTTP 404 and this message.
FUTURES_RETIRED = ("/ws", "/stream")
FUTURES_RETIRED_MSG = "This WebSocket URL was retired on 2026-04-23: use the /public or /market route"
