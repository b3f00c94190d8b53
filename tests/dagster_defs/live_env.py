"""What the Dagster tests of live streams share: the simulator and a stream worker served from threads.

The simulator runs in a thread of the test process on a :class:`~live_support.MovingClock` (minutes
of market in seconds, REST and streams on the same clock), so a stream worker in another thread or
in a child process (``streamforge worker streams``) streams from it while the test drives Dagster
synchronously; the test compares what was stored with the simulator's own market model.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from live_support import MovingClock, small_market

from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.config import SimulatorConfig
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.simulator.ws import WsConfig
from streamforge_pipelines.workers import serve_streams

#: Bound on a thread's server or worker starting and stopping.
THREAD_WITHIN_S = 30.0

SYMBOLS = ["ALPHAUSDT", "BETAUSDT"]
#: Two symbols trading a few times a second (seed fixed: the market is the same every run).
CONFIG = small_market(21, ALPHAUSDT=120.0, BETAUSDT=60.0)
T0 = 1_741_608_000_000  # 2025-03-10 12:00 UTC: where the simulated market starts
SPEEDUP = 10.0


class _LoopThread:
    """An asyncio loop running in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = THREAD_WITHIN_S) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(THREAD_WITHIN_S)
        assert not self.thread.is_alive(), f"thread {self.thread.name} did not stop"
        self.loop.close()


@contextmanager
def threaded_simulator(
    config: SimulatorConfig = CONFIG, ws: WsConfig | None = None, start_ms: int = T0
) -> Iterator[tuple[SimulatorServer, MovingClock]]:
    """The simulator on loopback, served from a thread, its clock from ``start_ms`` at the speedup."""
    ws = ws or WsConfig(speedup=SPEEDUP)
    clock = MovingClock(start_ms, ws.speedup)
    runner = _LoopThread("simulator")
    sim = SimulatorServer(config=config, clock=clock, ws=ws)
    try:
        runner.run(sim.start())
        yield sim, clock
    finally:
        if sim.running:
            runner.run(sim.stop())
        runner.close()


@contextmanager
def stream_worker_thread(settings: Settings) -> Iterator[None]:
    """``serve_streams`` in a thread until the block ends; then it must stop cleanly (its tasks
    report ``finished``) and without an exception."""
    runner = _LoopThread("stream-worker")
    stop: asyncio.Event | None = None

    async def make_stop() -> asyncio.Event:
        return asyncio.Event()

    stop = runner.run(make_stop())
    serving = asyncio.run_coroutine_threadsafe(
        serve_streams(settings, stop=stop, install_signals=False), runner.loop
    )
    try:
        yield
    finally:
        runner.loop.call_soon_threadsafe(stop.set)
        try:
            serving.result(THREAD_WITHIN_S)  # re-raises what the worker raised
        finally:
            runner.close()
