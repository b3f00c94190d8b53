"""The exchange simulator on its own loop in a thread, slowed down on klines and counting them.

For tests that must catch a load in the middle (stop it, cancel its run): every klines request
waits ``latency_ms`` before it is answered, so a task of many REST windows takes seconds, and
:meth:`RecordingSimulator.klines_requests` says how many windows were fetched.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from streamforge_pipelines.simulator import SimulatorServer
from streamforge_pipelines.simulator.faults import FaultConfig

SEED = 42


class RecordingSimulator:
    """A context manager: the simulator served from a thread, with the ``startTime`` of each klines
    request recorded as it arrives."""

    def __init__(self, latency_ms: float = 150.0, seed: int = SEED) -> None:
        faults = FaultConfig.from_dict({"endpoints": {"/api/v3/klines": {"latency_ms": latency_ms}}})
        self.server = SimulatorServer(seed=seed, faults=faults)
        self._starts: list[int] = []
        self._lock = threading.Lock()
        self.server.app.middlewares.insert(0, self._record)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simulator", daemon=True)

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/api/v3/klines":
            with self._lock:
                self._starts.append(int(request.query["startTime"]))
        return await handler(request)

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
