"""The exchange simulator (the dummy-service's exchange): a Binance-compatible market, deterministic
from a seed. A room of its own: it imports nothing of the pipeline beyond the interval calendar.

* :mod:`.config` — :class:`SimulatorConfig` (seed, symbols, clusters, lead-lags, downtime),
  ``load_config``, ``check_file``; :mod:`.symbols` — :class:`SymbolSpec`, :data:`DEFAULT_SYMBOLS`.
* :mod:`.market` — the market model: trades, candles and books as a pure function of the config;
  :mod:`.book` — the order book and its diff events.
* :mod:`.app` — the HTTP app over a market: :mod:`.spot` (``/api/v3``), :mod:`.usdm` (USD-M
  contracts and ``/fapi/v1``), :mod:`.rest` (what the REST routes share), :mod:`.archive`
  (data.binance.vision), :mod:`.ws` (WebSocket streams), :mod:`.limits` (rate limits),
  :mod:`.faults` (fault injection).
* :mod:`.server` — :class:`SimulatorServer` for tests and jobs, :func:`serve` for a process.
"""

from .app import build_app
from .config import Cluster, DowntimeWindow, LeadLag, SimulatorConfig, check_file, load_config
from .market import Market
from .server import SimulatorServer, serve
from .symbols import DEFAULT_SYMBOLS, SCALE, SymbolSpec, UnknownSymbolError

__all__ = [
    "DEFAULT_SYMBOLS",
    "SCALE",
    "Cluster",
    "DowntimeWindow",
    "LeadLag",
    "Market",
    "SimulatorConfig",
    "SimulatorServer",
    "SymbolSpec",
    "UnknownSymbolError",
    "build_app",
    "check_file",
    "load_config",
    "serve",
]
