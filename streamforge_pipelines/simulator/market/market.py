"""The simulated exchange's market: a pure function of its config, served by every route.

:class:`Market` is the whole model: its configuration and calendar (:mod:`.base`), prices
(:mod:`.prices`), trades (:mod:`.trades`), candles (:mod:`.candles`, :mod:`.zones`,
:mod:`.klines`) and order book (:mod:`.depth`), each layer a class the next builds on; and the
ground truth it serves at ``GET /_sim/truth``.
"""

from __future__ import annotations

from typing import Any

from ..config import SimulatorConfig
from ..symbols import DEFAULT_SYMBOLS, SymbolSpec, with_listing
from .depth import BookModel
from .klines import KlinesModel

__all__ = ["Market"]


class Market(KlinesModel, BookModel):
    """The simulated exchange's market: symbols, trades, candles and books, a pure function of its config.

    ``Market(seed)`` serves :data:`~..symbols.DEFAULT_SYMBOLS`; :meth:`from_config` takes a whole
    :class:`~..config.SimulatorConfig`.
    """

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> Market:
        """The market a :class:`~..config.SimulatorConfig` describes."""
        specs: list[SymbolSpec] = []
        defaults = {s.name: s for s in DEFAULT_SYMBOLS}
        for entry in DEFAULT_SYMBOLS if config.symbols is None else config.symbols:
            if isinstance(entry, str):
                if entry not in defaults:
                    raise ValueError(f"unknown default symbol {entry}")
                entry = defaults[entry]
            specs.append(entry)
        names = {s.name for s in specs}
        for name in config.listings:
            if name not in names:
                raise ValueError(f"listing for unknown symbol {name}")
        specs = [with_listing(s, config.listings[s.name]) if s.name in config.listings else s for s in specs]
        return cls(
            config.seed,
            specs,
            clusters=config.clusters,
            lead_lags=config.lead_lags,
            downtime=config.downtime,
        )

    def truth(self) -> dict[str, Any]:
        """The ground truth of the simulated market (served at ``GET /_sim/truth``)."""
        return {
            "seed": self.seed,
            "symbols": [
                {
                    "symbol": s.name,
                    "listingTime": s.listing_ms,
                    "firstMinute": s.first_minute_ms,
                    "marketBeta": s.market_beta,
                    "dailyVolatility": s.daily_volatility,
                }
                for s in self.symbols
            ],
            "clusters": [
                {"name": c.name, "symbols": list(c.symbols), "loading": c.loading} for c in self.clusters
            ],
            "leadLags": [
                {
                    "leader": ll.leader,
                    "follower": ll.follower,
                    "lagMinutes": ll.lag_minutes,
                    "strength": ll.strength,
                }
                for ll in self.lead_lags
            ],
            "downtime": [
                {
                    "startTime": w.start_ms,
                    "endTime": w.end_ms,
                    "symbols": None if w.symbols is None else list(w.symbols),
                }
                for w in self.downtime
            ],
        }
