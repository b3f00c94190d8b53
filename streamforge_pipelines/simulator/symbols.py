"""The listed pairs of the simulated exchange, and its integer units.

Every price and quantity of the simulator is an integer in units of 1e-8 (:data:`SCALE`), rendered
with 8 decimals as Binance renders spot values (:func:`format_units`, :func:`format_units_array`).
A :class:`SymbolSpec` is one listed pair with the parameters of its simulated market;
:data:`DEFAULT_SYMBOLS` is the universe a market serves when its config names none. The config
(:mod:`.config`) and the market model (:mod:`.market`) both read this module, so neither imports
the other's module back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import numpy as np

from streamforge_pipelines.intervals import day_start_ms, floor_open_time

__all__ = [
    "DEFAULT_SYMBOLS",
    "SCALE",
    "SymbolSpec",
    "UnknownSymbolError",
    "format_units",
    "format_units_array",
    "with_listing",
]

#: Quantities are integers in units of 1e-8 (Binance renders 8 decimals on spot).
SCALE = 100_000_000


class UnknownSymbolError(KeyError):
    """A symbol the simulated exchange does not list."""


def _ms(day: str) -> int:
    return day_start_ms(date.fromisoformat(day))


def _units(decimal_text: str) -> int:
    return int(Decimal(decimal_text) * SCALE)


def format_units(value: int) -> str:
    """Render an integer amount of 1e-8 units as Binance does: ``6068522000000`` → ``"60685.22000000"``."""
    whole, frac = divmod(value, SCALE)
    return f"{whole}.{frac:08d}"


def format_units_array(values: np.ndarray) -> list[str]:
    """:func:`format_units` of every value of an integer array (vectorised: millions of trades)."""
    whole, frac = np.divmod(values, SCALE)
    return [f"{w}.{f:08d}" for w, f in zip(whole.tolist(), frac.tolist(), strict=True)]


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One listed spot pair and the parameters of its simulated market."""

    name: str
    base_asset: str
    quote_asset: str
    listing_ms: int
    base_price: float
    tick_size: str
    step_size: str
    #: Average quote-asset volume per minute and trades per minute (scaled by an activity process).
    quote_volume_per_minute: float
    trades_per_minute: float
    daily_volatility: float = 0.035
    market_beta: float = 0.7
    status: str = "TRADING"
    tick_units: int = field(init=False, repr=False)
    step_units: int = field(init=False, repr=False)
    first_minute_ms: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tick_units", _units(self.tick_size))
        object.__setattr__(self, "step_units", _units(self.step_size))
        # The exchange's first candle is the minute that contains the listing time.
        object.__setattr__(self, "first_minute_ms", floor_open_time(self.listing_ms, "1m"))
        if self.tick_units <= 0 or self.step_units <= 0:
            raise ValueError(f"{self.name}: tick and step sizes must be at least 1e-8")
        if (self.tick_units * self.step_units) % SCALE:
            raise ValueError(f"{self.name}: tick x step must be a multiple of 1e-8 (exact quote volumes)")
        if self.listing_ms < 0:
            raise ValueError(f"{self.name}: listing time before the epoch")


def _spec(
    base: str, price: float, tick: str, step: str, qv: float, tpm: float, listed: str, vol: float, beta: float
) -> SymbolSpec:
    return SymbolSpec(
        name=f"{base}USDT",
        base_asset=base,
        quote_asset="USDT",
        listing_ms=_ms(listed),
        base_price=price,
        tick_size=tick,
        step_size=step,
        quote_volume_per_minute=qv,
        trades_per_minute=tpm,
        daily_volatility=vol,
        market_beta=beta,
    )


#: The default universe. Listing dates are all before 2019 so that recent loads are complete
#: (several real pairs were listed later; the model keeps the date, nothing is served before it).
DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    _spec("BTC", 60_000.0, "0.01", "0.00001", 1_200_000.0, 650, "2017-08-17", 0.030, 0.95),
    _spec("ETH", 3_000.0, "0.01", "0.0001", 600_000.0, 450, "2017-08-17", 0.038, 0.90),
    _spec("BNB", 550.0, "0.01", "0.001", 120_000.0, 160, "2017-11-06", 0.035, 0.80),
    _spec("SOL", 150.0, "0.01", "0.001", 250_000.0, 300, "2018-03-01", 0.055, 0.80),
    _spec("XRP", 0.55, "0.0001", "0.1", 150_000.0, 200, "2018-05-04", 0.045, 0.75),
    _spec("ADA", 0.45, "0.0001", "0.1", 60_000.0, 120, "2018-04-17", 0.048, 0.75),
    _spec("DOGE", 0.12, "0.00001", "1", 120_000.0, 180, "2018-07-05", 0.060, 0.70),
    _spec("AVAX", 30.0, "0.01", "0.01", 40_000.0, 90, "2018-09-22", 0.058, 0.75),
    _spec("DOT", 6.5, "0.001", "0.01", 30_000.0, 70, "2018-08-18", 0.050, 0.75),
    _spec("LINK", 14.0, "0.01", "0.01", 40_000.0, 90, "2018-10-16", 0.052, 0.75),
    _spec("LTC", 80.0, "0.01", "0.001", 30_000.0, 80, "2017-12-13", 0.040, 0.80),
    _spec("TRX", 0.12, "0.00001", "0.1", 25_000.0, 60, "2018-06-11", 0.035, 0.60),
    _spec("ATOM", 8.0, "0.001", "0.01", 15_000.0, 40, "2018-11-01", 0.050, 0.70),
    _spec("UNI", 7.0, "0.001", "0.01", 15_000.0, 40, "2018-11-20", 0.055, 0.70),
    _spec("ETC", 25.0, "0.01", "0.01", 20_000.0, 50, "2018-06-12", 0.045, 0.75),
    _spec("BCH", 400.0, "0.1", "0.001", 25_000.0, 60, "2017-11-28", 0.045, 0.80),
)


def with_listing(spec: SymbolSpec, listing_ms: int) -> SymbolSpec:
    """``spec`` listed at ``listing_ms`` instead (a config's ``listings`` override)."""
    return SymbolSpec(
        name=spec.name,
        base_asset=spec.base_asset,
        quote_asset=spec.quote_asset,
        listing_ms=listing_ms,
        base_price=spec.base_price,
        tick_size=spec.tick_size,
        step_size=spec.step_size,
        quote_volume_per_minute=spec.quote_volume_per_minute,
        trades_per_minute=spec.trades_per_minute,
        daily_volatility=spec.daily_volatility,
        market_beta=spec.market_beta,
        status=spec.status,
    )
