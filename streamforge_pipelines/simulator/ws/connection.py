"""One WebSocket connection: its subscriptions, control messages, pings and the pump of its streams.

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
  silent (as Binance does; :class:`.stream.SilentStream`);
* on a USD-M route, a stream of the other route (``@aggTrade``/``@kline_<i>`` on ``/public``,
  ``@depth...``/``@bookTicker`` on ``/market``) is an invalid stream too: SUBSCRIBE and UNSUBSCRIBE
  get the ``Invalid request: invalid stream`` error reply and change nothing of that request (in a
  URL the handshake is refused with HTTP 400, :mod:`.routes`). Binance does not document this case;
  an error tells the client at once, where a stream accepted and never sent cannot be told from a
  quiet market;
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
import json
import logging
import re
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from ..symbols import UnknownSymbolError
from .depth import BookTickerStream, DepthStream, PartialDepthStream
from .klines import KlineStream
from .names import SPOT, Dialect
from .stream import Shared, SilentStream, Stream
from .trades import TradeStream
from .usdm import (
    FuturesAggTradeStream,
    FuturesBookTickerStream,
    FuturesDepthStream,
    FuturesKlineStream,
    FuturesPartialDepthStream,
)

__all__ = ["FUTURES_KINDS", "SPOT_KINDS", "Connection", "receive"]

log = logging.getLogger(__name__)

_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_ID_STRING = re.compile(r"^[A-Za-z0-9]{1,36}$")
_INT64 = (-(1 << 63), (1 << 63) - 1)

#: The stream class of each kind (:attr:`.names.StreamSpec.kind`), spot and USD-M.
FUTURES_KINDS: dict[str, type[Stream]] = {
    "kline": FuturesKlineStream,
    "aggTrade": FuturesAggTradeStream,
    "depth": FuturesDepthStream,
    "partial": FuturesPartialDepthStream,
    "bookTicker": FuturesBookTickerStream,
}

SPOT_KINDS: dict[str, type[Stream]] = {
    "kline": KlineStream,
    "trade": TradeStream,
    "aggTrade": TradeStream,
    "depth": DepthStream,
    "partial": PartialDepthStream,
    "bookTicker": BookTickerStream,
}


class RequestError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


# ---------------------------------------------------------------------- one connection


class Connection:
    """One open connection: its streams, control messages, pings and the pump that sends events."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        shared: Shared,
        *,
        combined: bool,
        time_mult: int,
        dialect: Dialect = SPOT,
    ) -> None:
        self.ws = ws
        self.dialect = dialect
        self.shared = shared
        self.config = shared.config
        self.combined = combined
        self.mult = time_mult
        self.t0_sim = shared.clock()
        self.t0_real = time.monotonic()
        self.streams: dict[str, Stream] = {}
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
            spec = self.dialect.stream(name)
            assert spec is not None, f"{name} is not served here: refused before add()"
            try:
                self.shared.market.symbol(spec.symbol)
                cls = (FUTURES_KINDS if spec.futures else SPOT_KINDS)[spec.kind]
            except UnknownSymbolError:  # a well-formed stream of an unlisted symbol: silent, as on Binance
                cls = SilentStream
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
        except RequestError as err:
            await self.error(req_id, err.code, err.msg)
            return
        await self.reply(req_id, result)

    def handle(self, msg: dict[str, Any], text: str) -> Any:
        method = msg.get("method")
        if "method" not in msg:
            raise RequestError(2, f"Invalid request: missing field `method` at line 1 column {len(text)}")
        if method not in _METHODS:
            col = _column_after(text, method)
            raise RequestError(
                2,
                f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`,"
                f" `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY` at line 1 column {col}",
            )
        params = msg.get("params", [])
        if not isinstance(params, list):
            raise RequestError(2, "Invalid request: params must be an array")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not all(isinstance(p, str) and self.dialect.stream(p) is not None for p in params):
                raise RequestError(2, "Invalid request: invalid stream")
            if method == "UNSUBSCRIBE":
                for p in params:
                    self.streams.pop(p, None)
                self.changed.set()
                return None
            new = {p for p in params if p not in self.streams}
            if len(self.streams) + len(new) > self.config.max_streams:
                raise RequestError(2, "Invalid request: too many streams")
            self.add(params)
            return None
        if method == "LIST_SUBSCRIPTIONS":
            if params:
                raise RequestError(2, "Invalid request: too many parameters")
            return list(self.streams)
        want = 2 if method == "SET_PROPERTY" else 1
        if len(params) > want:
            raise RequestError(2, "Invalid request: too many parameters")
        if not params or not isinstance(params[0], str):
            raise RequestError(2, "Invalid request: property name must be a string")
        if params[0] != "combined":
            raise RequestError(0, "Unknown property")
        if method == "GET_PROPERTY":
            return self.combined
        if len(params) < 2 or not isinstance(params[1], bool):
            raise RequestError(1, "Invalid value type: expected Boolean")
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


async def receive(conn: Connection) -> None:
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
