"""The exchange simulator on its own loop in a thread, slowed down on klines and counting them.

For tests that must catch a load in the middle (stop it, cancel its run, kill its loader): every
klines request waits :attr:`RecordingSimulator.latency_ms` before it is answered, so a task of many
REST windows takes seconds, and :meth:`RecordingSimulator.klines_requests` says how many windows were
fetched (:meth:`RecordingSimulator.klines_starts`: the ``startTime`` of each, in arrival order).

The delay is needed only while the test waits to catch the load; once it has caught it, the test
sets ``latency_ms = 0`` and whatever follows (the resumed or re-run rest of the range) runs at the
simulator's own speed: the same requests, the same answers, no waiting that proves nothing.

:attr:`RecordingSimulator.outage` answers a run of one symbol's klines requests with HTTP 503
(``-1008``, Binance's "server is currently overloaded"): the ``n``-th to the ``n + count - 1``-th,
so a task that gives up after ``count`` tries fails at a known point of its range, and whatever asks
again afterwards is answered.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from streamforge_pipelines.simulator import SimulatorServer

SEED = 42
KLINES = "/api/v3/klines"


class RecordingSimulator:
    """A context manager: the simulator served from a thread, with the ``startTime`` of each klines
    request recorded as it arrives, each delayed by ``latency_ms`` (read per request: the test may
    change it at any time), and the requests in progress counted (:attr:`active`)."""

    def __init__(self, latency_ms: float = 150.0, seed: int = SEED) -> None:
        self.server = SimulatorServer(seed=seed)
        #: Delay of each klines request before it is handled, in milliseconds.
        self.latency_ms = latency_ms
        #: Requests (any path) the simulator is handling now.
        self.active = 0
        #: (symbol, n, count): the n-th (1-based) and the next count - 1 klines requests of the
        #: symbol are answered 503.
        self.outage: tuple[str, int, int] | None = None
        self._by_symbol: dict[str, int] = {}
        self._starts: list[int] = []
        self._lock = threading.Lock()
        self.server.app.middlewares.insert(0, self._record)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simulator", daemon=True)

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        refuse = False
        with self._lock:
            self.active += 1
            if request.path == KLINES:
                self._starts.append(int(request.query["startTime"]))
                symbol = request.query.get("symbol", "")
                self._by_symbol[symbol] = self._by_symbol.get(symbol, 0) + 1
                if self.outage is not None and self.outage[0] == symbol:
                    refuse = 0 <= self._by_symbol[symbol] - self.outage[1] < self.outage[2]
        try:
            if refuse:
                overloaded = {"code": -1008, "msg": "Server is currently overloaded with other requests."}
                return web.json_response(overloaded, status=503)
            if request.path == KLINES and self.latency_ms > 0:
                await asyncio.sleep(self.latency_ms / 1000)
            return await handler(request)
        finally:
            with self._lock:
                self.active -= 1

    def __enter__(self) -> RecordingSimulator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(30)
        assert self.server.market.truth()["downtime"] == []  # every open time has a candle
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop.close()

    def klines_requests(self) -> int:
        """Klines requests received so far."""
        with self._lock:
            return len(self._starts)

    def klines_requests_of(self, symbol: str) -> int:
        """Klines requests of ``symbol`` received so far."""
        with self._lock:
            return self._by_symbol.get(symbol, 0)

    def klines_starts(self) -> list[int]:
        """The ``startTime`` of every klines request received so far, in arrival order."""
        with self._lock:
            return list(self._starts)
