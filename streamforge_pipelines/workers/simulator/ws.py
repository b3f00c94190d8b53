"""The simulator's Binance spot and USD-M futures WebSocket market streams (aiohttp), over a Market.

``WsStreams(market, clock=..., config=WsConfig(...)).install(app)`` adds the spot and futures routes and an
``on_shutdown`` hook that sends every open connection ``serverShutdown`` and closes it (close code
1001); ``ws_routes(...)`` returns just the spot routes. Spot paths:

* ``/ws/<stream>[/<stream>...]`` — raw frames (the bare payload); ``/ws`` alone for SUBSCRIBE-only use;
* ``/stream?streams=<s1>/<s2>/...`` — combined frames ``{"stream": name, "data": payload}``;
* optional URL parameter ``timeUnit=MICROSECOND`` / ``MILLISECOND`` (any case): event and trade
  times in µs.

Streams (``reference/BINANCE_API.md`` §4.3, payload keys in the real capture's order; symbols are
lowercase in stream names):

* ``<s>@kline_<interval>``: a push every 2000 ms of simulated time (1000 ms for ``1s``) on a grid
  aligned to the epoch, showing the open candle as it stood just before the push (trades with time
  ``< E``); when ``E`` is a candle boundary the push is instead the final update of the candle that
  just closed, with ``x: true`` and the values of the REST kline (``E = T + 1``). So ``x`` is true
  exactly once per candle and every ``1s`` push is final. ``f``/``L`` are the candle's first/last
  trade ids so far (``-1``/``-1`` while it has no trades — inferred).
* ``<s>@trade``, ``<s>@aggTrade``: real time (``E == T``), from the model's trades, with the same
  ids and values as ``GET /api/v3/trades`` / ``aggTrades``.
* ``<s>@depth@100ms`` / ``<s>@depth`` (1000 ms): the model's diff events (``Market.depth_updates``);
  ``@depth`` merges the ten 100 ms events of its second (``U`` of the first, ``u`` of the last,
  later quantities win). Only windows in which the book changed are sent.
* ``<s>@depth<5|10|20>[@100ms]``: ``{"lastUpdateId", "bids", "asks"}`` every 1000 (100) ms.
* ``<s>@bookTicker``: the best levels after each 100 ms window in which they changed; ``u`` is the
  window's update id, the same sequence as the diff events' ``u``.
* ``<s>@kline_<interval>@+08:00``: the same, bucketed in UTC+8 (``Market.klines(...,
  tz_offset_min=480)``): a ``1d`` candle opens at 16:00 UTC and aggregates the 1m candles of its
  window; where 8 h is a multiple of the interval (``1m`` … ``4h``, ``8h``) nothing changes.

USD-M futures streams (§4.4) on the same app, under :data:`FUTURES_PREFIX`; Binance's routed
endpoints map as ``wss://fstream.binance.com/public/ws/<s>`` → ``/fapi-ws/public/ws/<s>``,
``…/public/stream?streams=`` → ``/fapi-ws/public/stream?streams=``, the same for ``/market``, and the
legacy unrouted ``…/ws/<s>`` / ``…/stream`` → ``/fapi-ws/ws/<s>`` / ``/fapi-ws/stream``. ``/public``
and the unrouted URLs deliver the book streams (depth, partial depth, bookTicker), ``/market`` the
others (aggTrade, kline); a valid stream on the other route is accepted and stays silent (Binance does
not document this case). Contracts are those of ``/fapi/v1`` (:func:`.futures.contract`): the spot
model shifted by a constant basis, rendered at the contract's price / quantity precision.

* ``<s>@aggTrade``: the spot aggregate trades (same ids and times), no ``M``;
* ``<s>@kline_<interval>`` (no ``1s``): pushed every 250 ms, values as ``/fapi/v1/klines``;
* ``<s>@depth`` (250 ms) / ``@depth@500ms`` / ``@depth@100ms``: the 100 ms windows published in
  each period merged, ``{"e", "E", "T", "s", "U", "u", "pu", "b", "a"}``: ``E`` the period's end,
  ``T`` the publish time of its last window, ``u`` that window's update id (the sequence of
  ``/fapi/v1/depth``'s ``lastUpdateId``), ``pu`` the previous period's ``u``; ``U`` lies in
  ``(pu, u of the first window]``, picked by a hash — generally not ``pu + 1`` (§5.2);
* ``<s>@depth<5|10|20>[@500ms|@100ms]`` (250 ms by default): the top levels after the period, in
  the diff event's shape (same ``E``, ``T``, ``U``, ``u``, ``pu``);
* ``<s>@bookTicker``: ``{"e", "u", "E", "T", "s", "b", "B", "a", "A"}`` after each 100 ms window.

Futures connections follow the ``futures_*`` fields of :class:`WsConfig` (ping every 3 min, pong
within 10 min, 10 incoming messages/s, 200 streams); ``depth_gap_rate`` drops futures diff events
too, which a client sees as ``pu`` differing from the last ``u`` it received.

Simulated time: each connection reads ``clock()`` once when it opens (``T0``) and then runs its own
timeline ``T0 + real elapsed x speedup``. With the wall clock and ``speedup=1`` that is the wall
clock; with a frozen test clock a connection's output is a function of its real timing only.

Control messages (§4.2): ``SUBSCRIBE``, ``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY``
``["combined", bool]`` and ``GET_PROPERTY ["combined"]`` answer ``{"result": ..., "id": ...}``.
Errors are sent as Binance does on the wire, ``{"error": {"code": c, "msg": m}, "id": id}`` (the
docs table lists the inner objects; real clients log the wrapped form): code 0 ``Unknown
property``, 1 ``Invalid value type: expected Boolean``, 2 ``Invalid request: ...`` (id type, unknown
method, missing ``method``, too many parameters, property name, invalid stream, too many streams),
3 ``Invalid JSON: expected value at line L column C``. Choices where Binance is not documented:

* a stream name that is not one of the kinds above (bad interval, unmodelled stream type, upper
  case) is an invalid stream: error reply ``Invalid request: invalid stream`` to SUBSCRIBE (as
  observed); in a URL it is ignored (the connection opens without it: ccxt opens ``/ws/0`` on the
  real exchange and SUBSCRIBEs); a well-formed name with an unknown symbol is accepted and stays
  silent (as Binance does);
* more than ``max_streams`` streams: error reply ``Invalid request: too many streams`` (HTTP 400 in
  a URL), nothing subscribed;
* too many incoming messages: close code 1008 ``Too many requests`` (as observed); no pong in
  time: close 1008 ``Pong timeout``; lifetime over: the ``serverShutdown`` event, then close 1000.

Connection rules use real seconds: a ping frame every ``ping_interval_s`` (payload: the simulated
time in ms as text); a pong echoing any outstanding ping's payload answers it and every earlier one,
unsolicited pongs do not; no answer within ``pong_timeout_s`` closes the connection. Client pings are
answered with a pong. Every incoming frame (text, binary, ping, pong) counts against
``max_incoming_per_s`` over a sliding second.

Faults (seeded by ``WsConfig.fault_seed``; the same fields as ``faults.FaultConfig``):
``disconnect_rate`` is the share of connections the server drops abruptly (transport aborted, no
close frame) at a uniform time within ``disconnect_within_s``; ``depth_gap_rate`` is the share of diff
events (``@depth``/``@depth@100ms``) not sent, so the next event's ``U`` jumps past ``u + 1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
from aiohttp import WSMsgType, web

from streamforge_pipelines.intervals import INTERVALS, floor_open_time, next_open_time

from . import book
from .market import SCALE, Market, UnknownSymbolError

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

log = logging.getLogger(__name__)

Clock = Callable[[], int]

_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_ID_STRING = re.compile(r"^[A-Za-z0-9]{1,36}$")
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
_INT64 = (-(1 << 63), (1 << 63) - 1)
_DEPTH_CACHE = 20_000
#: Simulated time one depth stream computes per pump round (the model needs ~1 ms per 100 ms window).
_MAX_CATCH_UP_MS = 2_000


@dataclass(frozen=True, slots=True)
class WsConfig:
    """Connection rules, time scale and faults of the WebSocket streams (tests shorten them)."""

    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    max_lifetime_s: float = 86_400.0
    max_incoming_per_s: int = 5
    max_streams: int = 1024
    #: Simulated seconds per real second.
    speedup: float = 1.0
    #: Share of connections dropped by the server (``FaultConfig.ws_disconnect_rate``).
    disconnect_rate: float = 0.0
    #: A dropped connection goes at a uniform real time in ``[0, disconnect_within_s)``.
    disconnect_within_s: float = 60.0
    #: Share of diff-depth events not sent (``FaultConfig.depth_gap_rate``).
    depth_gap_rate: float = 0.0
    fault_seed: int = 0
    #: USD-M futures connection rules (§4.4): ping every 3 min, pong within 10 min, 10 msgs/s,
    #: 200 streams; the other fields (lifetime, speedup, faults) are shared with spot.
    futures_ping_interval_s: float = 180.0
    futures_pong_timeout_s: float = 600.0
    futures_max_incoming_per_s: int = 10
    futures_max_streams: int = 200

    def __post_init__(self) -> None:
        for name in (
            "ping_interval_s",
            "pong_timeout_s",
            "max_lifetime_s",
            "speedup",
            "disconnect_within_s",
            "futures_ping_interval_s",
            "futures_pong_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if (
            min(
                self.max_incoming_per_s,
                self.max_streams,
                self.futures_max_incoming_per_s,
                self.futures_max_streams,
            )
            < 1
        ):
            raise ValueError("max_incoming_per_s and max_streams must be at least 1")
        for name in ("disconnect_rate", "depth_gap_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")

    @classmethod
    def from_faults(cls, faults: Any, **fields: Any) -> WsConfig:
        """A config taking ``ws_disconnect_rate`` / ``depth_gap_rate`` from a ``faults.FaultConfig``."""
        return cls(disconnect_rate=faults.ws_disconnect_rate, depth_gap_rate=faults.depth_gap_rate, **fields)

    def for_futures(self) -> WsConfig:
        """The rules of the futures endpoints: the ``futures_*`` fields in place of the spot ones."""
        return dataclasses.replace(
            self,
            ping_interval_s=self.futures_ping_interval_s,
            pong_timeout_s=self.futures_pong_timeout_s,
            max_incoming_per_s=self.futures_max_incoming_per_s,
            max_streams=self.futures_max_streams,
        )


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
class _Dialect:
    """What one endpoint serves: spot, or a futures route (``public``, ``market`` or unrouted)."""

    futures: bool
    kinds: frozenset[str] | None = None

    def parse(self, name: str) -> StreamSpec | None:
        return parse_futures_stream(name) if self.futures else parse_stream(name)

    def serves(self, spec: StreamSpec) -> bool:
        return self.kinds is None or spec.kind in self.kinds


_SPOT = _Dialect(futures=False)
#: Prefix of the USD-M futures endpoints: ``wss://fstream.binance.com/<route>/...`` is served at
#: ``/fapi-ws/<route>/...``.
FUTURES_PREFIX = "/fapi-ws"
#: Futures routes (§4.4) and the stream kinds each delivers; ``""`` is the unrouted legacy URL,
#: which only gets ``/public`` data.
FUTURES_ROUTES: dict[str, frozenset[str]] = {
    "/public": _PUBLIC_KINDS,
    "/market": _MARKET_KINDS,
    "": _PUBLIC_KINDS,
}


class _RequestError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


# ---------------------------------------------------------------------- shared state


class _DepthCache:
    """Diff events per (symbol, 100 ms window), shared by the connections of one route set."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self._events: OrderedDict[tuple[str, int], book.DepthUpdate | None] = OrderedDict()

    def events(self, symbol: str, after_ms: int, upto_ms: int) -> list[book.DepthUpdate]:
        """Diff events with ``after_ms < E <= upto_ms`` (window ``w`` publishes at ``E = 100 (w + 1)``)."""
        w_lo, w_hi = after_ms // book.WINDOW_MS, upto_ms // book.WINDOW_MS - 1
        out: list[book.DepthUpdate] = []
        w = w_lo
        while w <= w_hi:
            key = (symbol, w)
            if key in self._events:
                self._events.move_to_end(key)
                ev = self._events[key]
                if ev is not None:
                    out.append(ev)
                w += 1
                continue
            run_end = w
            while run_end < w_hi and (symbol, run_end + 1) not in self._events:
                run_end += 1
            got = {
                e.event_ms: e
                for e in self.market.depth_updates(
                    symbol, (w + 1) * book.WINDOW_MS, (run_end + 1) * book.WINDOW_MS + 1
                )
            }
            for v in range(w, run_end + 1):
                ev = got.get((v + 1) * book.WINDOW_MS)
                self._events[(symbol, v)] = ev
                if ev is not None:
                    out.append(ev)
            w = run_end + 1
        while len(self._events) > _DEPTH_CACHE:
            self._events.popitem(last=False)
        return out


@dataclass(slots=True)
class _Shared:
    market: Market
    clock: Clock
    config: WsConfig
    depth: _DepthCache
    rng: random.Random


# ---------------------------------------------------------------------- streams


class _Stream:
    """One subscribed stream: emits the payloads with event time in ``(cursor, now]``."""

    def __init__(self, spec: StreamSpec, shared: _Shared, start_ms: int, time_mult: int) -> None:
        self.spec = spec
        self.shared = shared
        self.cursor = start_ms
        self.mult = time_mult
        self.name_bytes = spec.name.encode()

    def next_due(self) -> int:
        """Simulated time of the next possible event."""
        p = self.spec.period_ms
        return (self.cursor // p + 1) * p

    def collect(self, now_ms: int) -> list[tuple[int, dict[str, Any]]]:
        """(E, payload) of the events in ``(cursor, now_ms]``; advances the cursor."""
        out: list[tuple[int, dict[str, Any]]] = []
        p = self.spec.period_ms
        e = (self.cursor // p + 1) * p
        while e <= now_ms:
            payload = self.at(e)
            if payload is not None:
                out.append((e, payload))
            e += p
        self.cursor = max(self.cursor, now_ms)
        return out

    def at(self, e: int) -> dict[str, Any] | None:  # pragma: no cover - overridden
        raise NotImplementedError


class _Silent(_Stream):
    """A well-formed stream of a symbol the exchange does not list: accepted, never sends."""

    def next_due(self) -> int:
        return 1 << 62

    def collect(self, now_ms: int) -> list[tuple[int, dict[str, Any]]]:
        return []


class _Kline(_Stream):
    """``<s>@kline_<i>[@+08:00]``: the open candle every push, the closed one once at its boundary."""

    def row(self, e: int) -> tuple[list, bool] | None:
        """The REST row of the candle the push at ``e`` shows, and whether it is closed."""
        spec, market = self.spec, self.shared.market
        interval, off = spec.interval, spec.tz_offset_min * 60_000
        candle = floor_open_time(e - 1 + off, interval) - off
        closed = next_open_time(candle + off, interval) - off <= e
        now = e if closed else e - 1
        if off:
            rows = market.klines(
                spec.symbol, interval, candle, candle, 1, now, tz_offset_min=spec.tz_offset_min
            )
        else:
            rows = market.klines(spec.symbol, interval, candle, candle, 1, now)
        if not rows or rows[0][0] != candle:
            return None
        return rows[0], closed

    def render(self, row: list) -> list:
        """The row's values as the stream shows them (spot: unchanged)."""
        return row

    def at(self, e: int) -> dict[str, Any] | None:
        spec, market = self.spec, self.shared.market
        interval = spec.interval
        got = self.row(e)
        if got is None:
            return None
        row, closed = got
        t, o, h, lo, c, v, close_ms, q, n, tv, tq, _ = self.render(row)
        if n:
            last = market.trades(spec.symbol, min(e - 1, close_ms), 1)
            last_id = last[0]["id"] if last else -1
            first_id = last_id - n + 1
        else:
            first_id = last_id = -1
        mult = self.mult
        return {
            "e": "kline",
            "E": e * mult,
            "s": spec.symbol,
            "k": {
                "t": t * mult,
                "T": close_ms * mult + (mult - 1),
                "s": spec.symbol,
                "i": interval,
                "f": first_id,
                "L": last_id,
                "o": o,
                "c": c,
                "h": h,
                "l": lo,
                "v": v,
                "n": n,
                "x": closed,
                "q": q,
                "V": tv,
                "Q": tq,
                "B": "0",
            },
        }


def _fmt(values: np.ndarray) -> list[str]:
    whole, frac = np.divmod(values, SCALE)
    return [f"{w}.{f:08d}" for w, f in zip(whole.tolist(), frac.tolist(), strict=True)]


class _Trades(_Stream):
    """``@trade`` and ``@aggTrade``: every trade (taker order) with ``cursor < T <= now``."""

    def next_due(self) -> int:
        market, minute = self.shared.market, floor_open_time(self.cursor, "1m")
        for m in (minute, minute + 60_000):
            mt = market.minute_trades(self.spec.symbol, m)
            times = mt.time if self.spec.kind == "trade" else mt.time[mt.agg_start]
            i = int(np.searchsorted(times, self.cursor, side="right"))
            if i < len(times):
                return int(times[i])
        return minute + 120_000

    def collect(self, now_ms: int) -> list[tuple[int, dict[str, Any]]]:
        out: list[tuple[int, dict[str, Any]]] = []
        market, sym, mult = self.shared.market, self.spec.symbol, self.mult
        minute = floor_open_time(self.cursor + 1, "1m")
        while minute <= now_ms:
            mt = market.minute_trades(sym, minute)
            if len(mt):
                if self.spec.kind == "trade":
                    lo = int(np.searchsorted(mt.time, self.cursor, side="right"))
                    hi = int(np.searchsorted(mt.time, now_ms, side="right"))
                    if hi > lo:
                        sl = slice(lo, hi)
                        ids = (mt.first_id + np.arange(lo, hi)).tolist()
                        times = mt.time[sl].tolist()
                        for tid, p, q, t, b in zip(
                            ids, _fmt(mt.price[sl]), _fmt(mt.qty[sl]), times, mt.buy[sl].tolist(), strict=True
                        ):
                            out.append(
                                (t, {"e": "trade", "E": t * mult, "s": sym, "t": tid, "p": p, "q": q,
                                     "T": t * mult, "m": not b, "M": True})
                            )  # fmt: skip
                else:
                    starts = mt.agg_start
                    times = mt.time[starts]
                    lo = int(np.searchsorted(times, self.cursor, side="right"))
                    hi = int(np.searchsorted(times, now_ms, side="right"))
                    if hi > lo:
                        ends = np.append(starts[1:], len(mt))
                        qty = np.add.reduceat(mt.qty, starts)[lo:hi]
                        st = starts[lo:hi]
                        for a, p, q, f, la, t, b in zip(
                            (mt.first_agg_id + np.arange(lo, hi)).tolist(),
                            _fmt(mt.price[st]),
                            _fmt(qty),
                            (mt.first_id + st).tolist(),
                            (mt.first_id + ends[lo:hi] - 1).tolist(),
                            times[lo:hi].tolist(),
                            mt.buy[st].tolist(),
                            strict=True,
                        ):
                            out.append(
                                (t, {"e": "aggTrade", "E": t * mult, "s": sym, "a": a, "p": p, "q": q,
                                     "f": f, "l": la, "T": t * mult, "m": not b, "M": True})
                            )  # fmt: skip
            minute += 60_000
        self.cursor = max(self.cursor, now_ms)
        return out


def _merge_side(updates: Iterable[list[list[str]]], descending: bool) -> list[list[str]]:
    levels: dict[str, str] = {}
    for side in updates:
        for p, q in side:
            levels[p] = q
    return [[p, levels[p]] for p in sorted(levels, key=Decimal, reverse=descending)]


class _Depth(_Stream):
    """Diff depth: the model's 100 ms events, or their merge per second; gaps as configured."""

    def collect(self, now_ms: int) -> list[tuple[int, dict[str, Any]]]:
        shared, spec, p = self.shared, self.spec, self.spec.period_ms
        now_ms = min(now_ms, self.cursor + _MAX_CATCH_UP_MS)  # a lagging stream catches up in steps
        if p == book.WINDOW_MS:
            merged = shared.depth.events(spec.symbol, self.cursor, now_ms)
            self.cursor = max(self.cursor, now_ms)
        else:  # whole seconds (E - 1000, E] only, the first one included when subscribed mid-second
            base, end = self.cursor // p * p, now_ms // p * p
            if end <= base:
                return []
            groups: dict[int, list[book.DepthUpdate]] = {}
            for ev in shared.depth.events(spec.symbol, base, end):
                groups.setdefault(-(-ev.event_ms // p) * p, []).append(ev)
            merged = [self._merge(g) for _, g in sorted(groups.items())]
            self.cursor = end
        rate = shared.config.depth_gap_rate
        out = []
        for ev in merged:
            if not (ev.bids or ev.asks) or (rate and shared.rng.random() < rate):
                continue
            payload = ev.to_event(spec.symbol)
            payload["E"] *= self.mult
            out.append((ev.event_ms, payload))
        return out

    @staticmethod
    def _merge(group: list[book.DepthUpdate]) -> book.DepthUpdate:
        if len(group) == 1:
            return group[0]
        return book.DepthUpdate(
            event_ms=group[-1].event_ms,
            first_update_id=group[0].first_update_id,
            last_update_id=group[-1].last_update_id,
            bids=_merge_side((g.bids for g in group), descending=True),
            asks=_merge_side((g.asks for g in group), descending=False),
        )


class _Partial(_Stream):
    def at(self, e: int) -> dict[str, Any] | None:
        return self.shared.market.depth_snapshot(self.spec.symbol, self.spec.levels, e).to_json()


class _BookTicker(_Stream):
    def __init__(self, spec: StreamSpec, shared: _Shared, start_ms: int, time_mult: int) -> None:
        super().__init__(spec, shared, start_ms, time_mult)
        self._last: tuple[str, ...] = ()

    def at(self, e: int) -> dict[str, Any] | None:
        snap = self.shared.market.depth_snapshot(self.spec.symbol, 1, e)
        if not snap.bids or not snap.asks:
            return None
        best = (*snap.bids[0], *snap.asks[0])
        if best == self._last:
            return None
        self._last = best
        b, bq, a, aq = best
        return {"u": snap.last_update_id, "s": self.spec.symbol, "b": b, "B": bq, "a": a, "A": aq}


# ---------------------------------------------------------------------- USD-M futures streams


def _contract(market: Market, symbol: str) -> Any:
    """The futures contract (precisions, basis) of ``symbol``: ``futures.contract`` read-only."""
    from .futures import contract  # late: futures imports .app, which imports this module

    return contract(market.symbol(symbol))


def _spot_units(text: str) -> int:
    """1e-8 units of a spot string (always 8 decimals)."""
    return int(text.replace(".", ""))


def _to_futures(c: Any, side: list[list[str]]) -> list[list[str]]:
    """Spot ``[price, qty]`` levels at contract precision, prices shifted by the basis."""
    return [[c.price(_spot_units(p)), c.qty(_spot_units(q))] for p, q in side]


def _first_update_id(pu: int, u1: int) -> int:
    """``U`` of a futures event whose first window ends at ``u1`` (after ``pu``): in ``[pu + 1, u1]``.

    Futures update ids are shared with other books, so ``U`` is generally not ``pu + 1``
    (§5.2); a deterministic hash of ``u1`` picks it.
    """
    return pu + 1 + (u1 * 0x9E3779B1 >> 7) % (u1 - pu)


class _FKline(_Kline):
    """``<s>@kline_<i>``: the spot candle as ``/fapi/v1/klines`` renders it, pushed every 250 ms."""

    def render(self, row: list) -> list:
        from .futures import futures_row

        return futures_row(_contract(self.shared.market, self.spec.symbol), row)


class _FAggTrades(_Trades):
    """``<s>@aggTrade``: the spot aggregate trades at contract precision, without ``M``."""

    def collect(self, now_ms: int) -> list[tuple[int, dict[str, Any]]]:
        out = super().collect(now_ms)
        if out:
            c = _contract(self.shared.market, self.spec.symbol)
            for _, payload in out:
                del payload["M"]
                payload["p"] = c.price(_spot_units(payload["p"]))
                payload["q"] = c.qty(_spot_units(payload["q"]))
        return out


class _FDepth(_Stream):
    """``<s>@depth[@500ms|@100ms]``: the windows published in each period merged, with ``T``, ``pu``.

    ``E`` is the period's end (a multiple of 250 / 500 / 100 ms), ``T`` the publish time of its
    last 100 ms window, ``u`` that window's update id, ``pu`` the ``u`` of the previous period (sent
    or not: an injected gap shows as ``pu`` differing from the last ``u`` received).
    """

    def collect(self, now_ms: int) -> list[tuple[int, dict[str, Any]]]:
        shared, spec, p = self.shared, self.spec, self.spec.period_ms
        now_ms = min(now_ms, self.cursor + _MAX_CATCH_UP_MS)
        base, end = self.cursor // p * p, now_ms // p * p
        if end <= base:
            return []
        groups: dict[int, list[book.DepthUpdate]] = {}
        for ev in shared.depth.events(spec.symbol, base, end):
            groups.setdefault(-(-ev.event_ms // p) * p, []).append(ev)
        self.cursor = end
        rate = shared.config.depth_gap_rate
        c = _contract(shared.market, spec.symbol)
        out = []
        for e, group in sorted(groups.items()):
            merged = _Depth._merge(group)
            if not (merged.bids or merged.asks) or (rate and shared.rng.random() < rate):
                continue
            pu = group[0].first_update_id - 1
            payload = {
                "e": "depthUpdate",
                "E": e * self.mult,
                "T": merged.event_ms * self.mult,
                "s": spec.symbol,
                "U": _first_update_id(pu, group[0].last_update_id),
                "u": merged.last_update_id,
                "pu": pu,
                "b": _to_futures(c, merged.bids),
                "a": _to_futures(c, merged.asks),
            }
            out.append((e, payload))
        return out


class _FPartial(_Stream):
    """``<s>@depth<N>[@500ms|@100ms]``: the top ``N`` levels in the diff event's shape (§4.4)."""

    def at(self, e: int) -> dict[str, Any] | None:
        market, spec, p = self.shared.market, self.spec, self.spec.period_ms
        w_last = e // book.WINDOW_MS - 1
        w_first = (e - p) // book.WINDOW_MS
        c = _contract(market, spec.symbol)
        levels = market.book_levels(spec.symbol, w_last, spec.levels)
        snap = book.DepthSnapshot.from_levels(levels, c.price_decimals, c.qty_decimals, c.basis_units)
        pu = market.book_levels(spec.symbol, w_first - 1, 0).last_update_id
        u1 = (
            market.book_levels(spec.symbol, w_first, 0).last_update_id
            if w_first < w_last
            else snap.last_update_id
        )
        return {
            "e": "depthUpdate",
            "E": e * self.mult,
            "T": (w_last + 1) * book.WINDOW_MS * self.mult,
            "s": spec.symbol,
            "U": _first_update_id(pu, u1),
            "u": snap.last_update_id,
            "pu": pu,
            "b": snap.bids,
            "a": snap.asks,
        }


class _FBookTicker(_BookTicker):
    """``<s>@bookTicker``: best levels after each 100 ms window that changed them, with ``e``/``E``/``T``."""

    def at(self, e: int) -> dict[str, Any] | None:
        market, spec = self.shared.market, self.spec
        c = _contract(market, spec.symbol)
        levels = market.book_levels(spec.symbol, e // book.WINDOW_MS - 1, 1)
        snap = book.DepthSnapshot.from_levels(levels, c.price_decimals, c.qty_decimals, c.basis_units)
        if not snap.bids or not snap.asks:
            return None
        best = (*snap.bids[0], *snap.asks[0])
        if best == self._last:
            return None
        self._last = best
        b, bq, a, aq = best
        t = e * self.mult
        return {"e": "bookTicker", "u": snap.last_update_id, "E": t, "T": t, "s": spec.symbol,
                "b": b, "B": bq, "a": a, "A": aq}  # fmt: skip


_FUTURES_KINDS: dict[str, type[_Stream]] = {
    "kline": _FKline,
    "aggTrade": _FAggTrades,
    "depth": _FDepth,
    "partial": _FPartial,
    "bookTicker": _FBookTicker,
}

_KINDS: dict[str, type[_Stream]] = {
    "kline": _Kline,
    "trade": _Trades,
    "aggTrade": _Trades,
    "depth": _Depth,
    "partial": _Partial,
    "bookTicker": _BookTicker,
}


# ---------------------------------------------------------------------- one connection


class _Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        shared: _Shared,
        *,
        combined: bool,
        time_mult: int,
        dialect: _Dialect = _SPOT,
    ) -> None:
        self.ws = ws
        self.dialect = dialect
        self.shared = shared
        self.config = shared.config
        self.combined = combined
        self.mult = time_mult
        self.t0_sim = shared.clock()
        self.t0_real = time.monotonic()
        self.streams: dict[str, _Stream] = {}
        self.changed = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.incoming: deque[float] = deque()
        self.pings: deque[tuple[bytes, float]] = deque()
        self.closing = False
        self.transport: asyncio.BaseTransport | None = None

    def now(self) -> int:
        return self.t0_sim + int((time.monotonic() - self.t0_real) * 1000 * self.config.speedup)

    def real_delay(self, sim_ms: int) -> float:
        return max(sim_ms, 0) / 1000 / self.config.speedup

    def add(self, names: list[str]) -> None:
        now = self.now()
        for name in names:
            if name in self.streams:
                continue
            spec = self.dialect.parse(name)
            assert spec is not None
            try:
                self.shared.market.symbol(spec.symbol)
                cls = (_FUTURES_KINDS if spec.futures else _KINDS)[spec.kind]
            except UnknownSymbolError:
                cls = _Silent
            if not self.dialect.serves(spec):
                cls = _Silent
            self.streams[name] = cls(spec, self.shared, now, self.mult)
        self.changed.set()

    # -- sending

    async def send(self, data: bytes) -> None:
        async with self.send_lock:
            await self.ws.send_frame(data, WSMsgType.TEXT)

    async def send_event(self, stream: bytes, payload: dict[str, Any]) -> None:
        body = orjson.dumps(payload)
        if self.combined:
            body = b'{"stream":"' + stream + b'","data":' + body + b"}"
        await self.send(body)

    async def reply(self, req_id: Any, result: Any) -> None:
        await self.send(orjson.dumps({"result": result, "id": req_id}))

    async def error(self, req_id: Any, code: int, msg: str) -> None:
        await self.send(orjson.dumps({"error": {"code": code, "msg": msg}, "id": req_id}))

    async def close(self, code: int, message: str) -> None:
        if self.closing:
            return
        self.closing = True
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=message.encode())

    async def shutdown(self, code: int, message: str) -> None:
        """A planned shutdown: the ``serverShutdown`` event, then the close frame."""
        if self.closing:
            return
        with contextlib.suppress(Exception):
            await self.send_event(b"!serverShutdown", {"e": "serverShutdown", "E": self.now() * self.mult})
        await self.close(code, message)

    async def guard(self, task: Coroutine[Any, Any, None]) -> None:
        """Run one of the connection's tasks; a failure closes the connection (1011) instead of hanging."""
        try:
            await task
        except asyncio.CancelledError:
            raise
        except ConnectionError:  # the peer went away mid-send: the receive loop sees it too
            await self.close(1001, "Connection lost")
        except Exception:
            if not self.closing:
                log.exception("websocket stream task failed")
                await self.close(1011, "Internal error")

    # -- tasks

    async def pump(self) -> None:
        """Send every stream's events as the simulated clock passes their event times."""
        while not self.closing:
            self.changed.clear()
            now = self.now()
            batch: list[tuple[int, int, bytes, dict[str, Any]]] = []
            for i, stream in enumerate(list(self.streams.values())):
                batch.extend((e, i, stream.name_bytes, p) for e, p in stream.collect(now))
                await asyncio.sleep(0)  # let control messages and pings through between streams
            batch.sort(key=lambda x: (x[0], x[1]))
            for _, _, name, payload in batch:
                await self.send_event(name, payload)
            due = min((s.next_due() for s in self.streams.values()), default=None)
            delay = 60.0 if due is None else min(self.real_delay(due - self.now()), 60.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=max(delay, 0.0005))

    async def keeper(self) -> None:
        """Pings, the pong timeout, the lifetime and the injected disconnect (real seconds)."""
        cfg = self.config
        start = time.monotonic()
        next_ping = start + cfg.ping_interval_s
        end = start + cfg.max_lifetime_s
        drop_at = None
        if cfg.disconnect_rate and self.shared.rng.random() < cfg.disconnect_rate:
            drop_at = start + self.shared.rng.random() * cfg.disconnect_within_s
        while not self.closing:
            now = time.monotonic()
            if drop_at is not None and now >= drop_at:
                self.closing = True
                if self.transport is not None:
                    self.transport.abort()
                return
            if now >= end:
                await self.shutdown(1000, "Connection lifetime expired")
                return
            if self.pings and now - self.pings[0][1] >= cfg.pong_timeout_s:
                await self.close(1008, "Pong timeout")
                return
            if now >= next_ping:
                data = str(self.now()).encode()
                self.pings.append((data, now))
                with contextlib.suppress(Exception):
                    await self.ws.ping(data)
                next_ping = now + cfg.ping_interval_s
            deadlines = [next_ping, end]
            if self.pings:
                deadlines.append(self.pings[0][1] + cfg.pong_timeout_s)
            if drop_at is not None:
                deadlines.append(drop_at)
            await asyncio.sleep(max(min(deadlines) - time.monotonic(), 0.0))

    def count_incoming(self) -> bool:
        """Record one incoming frame; False when the sliding second holds too many."""
        now = time.monotonic()
        self.incoming.append(now)
        while self.incoming and self.incoming[0] <= now - 1.0:
            self.incoming.popleft()
        return len(self.incoming) <= self.config.max_incoming_per_s

    def pong(self, data: bytes) -> None:
        for i, (payload, _) in enumerate(self.pings):
            if payload == data:
                for _ in range(i + 1):
                    self.pings.popleft()
                return

    # -- control messages

    async def control(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except json.JSONDecodeError as err:
            await self.error(None, 3, f"Invalid JSON: expected value at line {err.lineno} column {err.colno}")
            return
        if not isinstance(msg, dict):
            await self.error(None, 2, "Invalid request: expected a JSON object")
            return
        req_id = msg.get("id")
        if "id" not in msg or not _valid_id(req_id):
            await self.error(None, 2, "Invalid request: request ID must be an unsigned integer")
            return
        try:
            result = self.handle(msg, text)
        except _RequestError as err:
            await self.error(req_id, err.code, err.msg)
            return
        await self.reply(req_id, result)

    def handle(self, msg: dict[str, Any], text: str) -> Any:
        method = msg.get("method")
        if "method" not in msg:
            raise _RequestError(2, f"Invalid request: missing field `method` at line 1 column {len(text)}")
        if method not in _METHODS:
            col = _column_after(text, method)
            raise _RequestError(
                2,
                f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`,"
                f" `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY` at line 1 column {col}",
            )
        params = msg.get("params", [])
        if not isinstance(params, list):
            raise _RequestError(2, "Invalid request: params must be an array")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not all(isinstance(p, str) and self.dialect.parse(p) is not None for p in params):
                raise _RequestError(2, "Invalid request: invalid stream")
            if method == "UNSUBSCRIBE":
                for p in params:
                    self.streams.pop(p, None)
                self.changed.set()
                return None
            new = {p for p in params if p not in self.streams}
            if len(self.streams) + len(new) > self.config.max_streams:
                raise _RequestError(2, "Invalid request: too many streams")
            self.add(params)
            return None
        if method == "LIST_SUBSCRIPTIONS":
            if params:
                raise _RequestError(2, "Invalid request: too many parameters")
            return list(self.streams)
        want = 2 if method == "SET_PROPERTY" else 1
        if len(params) > want:
            raise _RequestError(2, "Invalid request: too many parameters")
        if not params or not isinstance(params[0], str):
            raise _RequestError(2, "Invalid request: property name must be a string")
        if params[0] != "combined":
            raise _RequestError(0, "Unknown property")
        if method == "GET_PROPERTY":
            return self.combined
        if len(params) < 2 or not isinstance(params[1], bool):
            raise _RequestError(1, "Invalid value type: expected Boolean")
        self.combined = params[1]
        return None


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return _INT64[0] <= value <= _INT64[1]
    return isinstance(value, str) and _ID_STRING.match(value) is not None


def _column_after(text: str, value: Any) -> int:
    token = json.dumps(value)
    i = text.find(token)
    return i + len(token) if i >= 0 else 1


# ---------------------------------------------------------------------- routes


def _bad_request(msg: str) -> web.Response:
    return web.Response(
        body=orjson.dumps({"code": 2, "msg": f"Invalid request: {msg}"}),
        status=400,
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
        self._shared = _Shared(
            market=market,
            clock=clock or _wall_clock_ms,
            config=cfg,
            depth=_DepthCache(market),
            rng=random.Random(cfg.fault_seed),
        )
        self._futures = _Shared(
            market=market,
            clock=self._shared.clock,
            config=cfg.for_futures(),
            depth=self._shared.depth,
            rng=random.Random(f"futures-{cfg.fault_seed}"),
        )
        self._connections: set[_Connection] = set()
        #: The spot routes (``/ws``, ``/ws/<streams>``, ``/stream``).
        self.routes: list[web.RouteDef] = self._route_set("", self._shared, _SPOT)
        #: The USD-M futures routes (``/fapi-ws/{public,market}/{ws,stream}`` and ``/fapi-ws/{ws,stream}``).
        self.futures_routes: list[web.RouteDef] = []
        for route, kinds in FUTURES_ROUTES.items():
            self.futures_routes += self._route_set(
                f"{FUTURES_PREFIX}{route}", self._futures, _Dialect(True, kinds)
            )

    def _route_set(self, prefix: str, shared: _Shared, dialect: _Dialect) -> list[web.RouteDef]:
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
        self, request: web.Request, shared: _Shared, dialect: _Dialect, combined: bool
    ) -> web.StreamResponse:
        cfg = shared.config
        raw = request.query.get("streams", "") if combined else request.match_info.get("streams", "")
        # Binance accepts names it does not know in the URL (ccxt connects to ``/ws/0`` and then
        # SUBSCRIBEs): they are ignored.
        names = [n for n in raw.split("/") if n and dialect.parse(n) is not None]
        if len(dict.fromkeys(names)) > cfg.max_streams:
            return _bad_request("too many streams")
        unit = request.query.get("timeUnit", "MILLISECOND").upper()
        if unit not in ("MILLISECOND", "MICROSECOND"):
            return _bad_request("invalid timeUnit")
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=5.0, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = _Connection(
            ws, shared, combined=combined, time_mult=1000 if unit == "MICROSECOND" else 1, dialect=dialect
        )
        conn.transport = request.transport
        conn.add(names)
        self._connections.add(conn)
        tasks = [asyncio.create_task(conn.guard(conn.pump())), asyncio.create_task(conn.guard(conn.keeper()))]
        try:
            await _receive(conn)
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


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


async def _receive(conn: _Connection) -> None:
    ws = conn.ws
    while not conn.closing:
        msg = await ws.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return
        if not conn.count_incoming():
            await conn.close(1008, "Too many requests")
            return
        if msg.type == WSMsgType.PING:
            with contextlib.suppress(Exception):
                await ws.pong(msg.data)
        elif msg.type == WSMsgType.PONG:
            conn.pong(msg.data)
        elif msg.type == WSMsgType.TEXT:
            await conn.control(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await conn.control(msg.data.decode("utf-8", "replace"))
