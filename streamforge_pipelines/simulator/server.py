"""Running the simulator: an in-process server for tests and jobs, and a standalone ``serve``.

``SimulatorServer`` is what tests and the embedded defaults use::

    async with SimulatorServer(seed=42) as sim:
        url = sim.base_url          # "http://127.0.0.1:<free port>"

``serve(host, port, seed, config=None)`` is the long-running process behind ``streamforge
simulator``: it logs one JSON line with the URL when it is listening and stops cleanly on
SIGTERM/SIGINT. A :class:`~.config.SimulatorConfig` (e.g. from :func:`~.config.load_config`) replaces
the seed-only default market.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from types import TracebackType

import orjson
from aiohttp import web

from .app import build_app
from .clock import Clock
from .config import SimulatorConfig
from .faults import FaultConfig
from .limits import LimitsConfig
from .market import Market
from .ws import WsConfig

__all__ = ["SimulatorServer", "serve"]

log = logging.getLogger(__name__)


class SimulatorServer:
    """The simulator's HTTP server on ``host:port`` (port 0: a free one), as an async context manager."""

    def __init__(
        self,
        market: Market | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        clock: Clock | None = None,
        config: SimulatorConfig | None = None,
        limits: LimitsConfig | None = None,
        faults: FaultConfig | None = None,
        ws: WsConfig | None = None,
    ) -> None:
        if market is None:
            market = Market.from_config(config) if config is not None else Market(seed)
        self.market = market
        self.host = host
        self.port = port
        self.app = build_app(
            self.market, clock=clock, limits=limits, faults=faults, fault_seed=self.market.seed, ws=ws
        )
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._runner is None:
            raise RuntimeError("the simulator server is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        """Start listening (no-op when already running); fills in the port when it was 0."""
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and close connections (no-op when not running)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def _serve_until_signalled(
    host: str,
    port: int,
    seed: int,
    config: SimulatorConfig | None,
    limits: LimitsConfig | None,
    faults: FaultConfig | None,
    ws: WsConfig | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with SimulatorServer(
        host=host, port=port, seed=seed, config=config, limits=limits, faults=faults, ws=ws
    ) as server:
        seed = server.market.seed
        log.info(
            orjson.dumps(
                {
                    "event": "simulator_started",
                    "url": server.base_url,
                    "host": host,
                    "port": server.port,
                    "seed": seed,
                }
            ).decode()
        )
        await stop.wait()
    log.info(orjson.dumps({"event": "simulator_stopped", "seed": seed}).decode())


def serve(
    host: str,
    port: int,
    seed: int,
    config: SimulatorConfig | None = None,
    *,
    limits: LimitsConfig | None = None,
    faults: FaultConfig | None = None,
    ws: WsConfig | None = None,
) -> None:
    """Serve the simulator on ``host:port`` until SIGTERM/SIGINT (uvloop when installed).

    With ``config`` its seed, symbols and structure are served (``seed`` is then ignored);
    ``limits`` enforces Binance's rate limits, ``faults`` injects seeded faults.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    runner_kwargs: dict = {}
    with contextlib.suppress(ImportError):
        import uvloop

        runner_kwargs["loop_factory"] = uvloop.new_event_loop
    with asyncio.Runner(**runner_kwargs) as runner:
        runner.run(_serve_until_signalled(host, port, seed, config, limits, faults, ws))
