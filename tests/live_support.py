"""What the live-stream tests share: a fast simulated clock and a stream task run against a simulator.

Live-stream tests point the simulator's REST and WebSocket sides at one :class:`MovingClock`: a
stream connection starts its timeline at ``clock()`` and runs at ``WsConfig.speedup``, REST answers
"now" from the same clock, so the two agree (a book snapshot is as recent as the diffs, a REST repair
finds the trades a connection missed) while minutes of market pass in seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from streamforge_pipelines.kafka import make_producer
from streamforge_pipelines.protocol import Command
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.config import SimulatorConfig, config_from_mapping
from streamforge_pipelines.simulator.faults import FaultConfig
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.simulator.ws import WsConfig
from streamforge_pipelines.workers.checkpoint import CheckpointStore
from streamforge_pipelines.workers.live.task import StreamTask

#: Seed of the simulator's market when a test gives no config.
SEED = 20240801
#: Bound on a stopping task's last flush, repairs and ``finished`` event.
STOP_WITHIN_S = 30.0


#: The small test symbols and their prices.
PRICES = {"ALPHAUSDT": 5.0, "BETAUSDT": 12.0, "GAMMAUSDT": 20.0}


def small_market(seed: int, **trades_per_minute: float | None) -> SimulatorConfig:
    """A market of the named test symbols (``ALPHAUSDT=240.0``: its trades a minute; ``None``: the
    model's default), listed since 2024, tick 0.001, step 0.01."""
    symbols = []
    for name, tpm in trades_per_minute.items():
        spec: dict[str, object] = {"name": name, "base_price": PRICES[name], "tick_size": "0.001"}
        spec |= {"step_size": "0.01", "listing": "2024-01-01"}
        if tpm is not None:
            spec |= {"trades_per_minute": tpm, "quote_volume_per_minute": 20_000.0}
        symbols.append(spec)
    return config_from_mapping({"seed": seed, "symbols": symbols})


class MovingClock:
    """``clock()`` -> epoch ms: ``start_ms`` plus the real time elapsed since creation x ``speedup``."""

    def __init__(self, start_ms: int, speedup: float) -> None:
        self.start_ms = start_ms
        self.speedup = speedup
        self._t0 = time.monotonic()

    def __call__(self) -> int:
        return self.start_ms + int((time.monotonic() - self._t0) * 1000 * self.speedup)


async def stream_for(
    settings: Settings,
    command: Command,
    seconds: float,
    *,
    config: SimulatorConfig | None,
    ws: WsConfig,
    faults: FaultConfig | None = None,
    start_ms: int,
    during: Callable[[SimulatorServer, Settings, MovingClock, StreamTask], Awaitable[None]] | None = None,
) -> tuple[StreamTask, SimulatorServer, MovingClock]:
    """Run one stream task against a fresh simulator (``config``'s market, else ``Market(SEED)``;
    faults injected as ``faults`` says; its clock from ``start_ms`` at ``ws.speedup``)
    for ``seconds`` real seconds, then stop it; ``during(sim, live_settings, clock, task)`` runs after
    the stop, while the simulator still serves (a repair round, a ledger)."""
    clock = MovingClock(start_ms, ws.speedup)
    async with SimulatorServer(config=config, seed=SEED, clock=clock, ws=ws, faults=faults) as sim:
        live = settings.model_copy(update={"exchange_url": sim.base_url, "live_heartbeat_s": 1.0})
        producer = make_producer(live.kafka_bootstrap_servers or "")
        await producer.start()
        try:
            checkpoints = await CheckpointStore.load(
                live.kafka_bootstrap_servers or "", live.topic_checkpoints
            )
            task = StreamTask(command, live, producer, checkpoints=checkpoints)
            runner = asyncio.create_task(task.run())
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                assert not runner.done(), runner.exception()
                await asyncio.sleep(0.1)
            task.stop()
            async with asyncio.timeout(STOP_WITHIN_S):
                await runner
        finally:
            await producer.stop()
        if during is not None:
            await during(sim, live, clock, task)
        return task, sim, clock
