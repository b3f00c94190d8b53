"""The exchange simulator (dummy-service): a Binance-compatible spot market, deterministic from a seed.

* :mod:`.config` — :class:`SimulatorConfig` (seed, symbols, clusters, lead-lags, downtime), ``load_config``.
* :mod:`.market` — the market model: trades, candles and books as a pure function of the config.
* :mod:`.book` — the order book and its diff events.
* :mod:`.app` — the REST API (aiohttp) over a market; :mod:`.futures` — its USD-M ``/fapi/v1`` part.
* :mod:`.server` — :class:`SimulatorServer` for tests and jobs, :func:`serve` for a process.

WebSocket streams, rate-limit enforcement, fault injection and the data.binance.vision archive are
later issues; each plugs into the app or the market without changing these interfaces.
"""

from .app import build_app
from .config import Cluster, DowntimeWindow, LeadLag, SimulatorConfig, load_config
from .market import DEFAULT_SYMBOLS, Market, SymbolSpec, UnknownSymbolError
from .server import SimulatorServer, serve

__all__ = [
    "DEFAULT_SYMBOLS",
    "Cluster",
    "DowntimeWindow",
    "LeadLag",
    "Market",
    "SimulatorConfig",
    "SimulatorServer",
    "SymbolSpec",
    "UnknownSymbolError",
    "build_app",
    "load_config",
    "serve",
]
