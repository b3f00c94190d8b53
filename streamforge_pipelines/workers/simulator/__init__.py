"""The exchange simulator (dummy-service): a Binance-compatible spot market, deterministic from a seed.

* :mod:`.market` — the market model: symbols and candles as a pure function of the seed.
* :mod:`.app` — the REST API (aiohttp) over a market.
* :mod:`.server` — :class:`SimulatorServer` for tests and jobs, :func:`serve` for a process.

WebSocket streams, rate-limit enforcement, fault injection and the data.binance.vision archive are
later issues; each plugs into the app or the market without changing these interfaces.
"""

from .app import build_app
from .market import DEFAULT_SYMBOLS, Market, SymbolSpec, UnknownSymbolError
from .server import SimulatorServer, serve

__all__ = [
    "DEFAULT_SYMBOLS",
    "Market",
    "SimulatorServer",
    "SymbolSpec",
    "UnknownSymbolError",
    "build_app",
    "serve",
]
