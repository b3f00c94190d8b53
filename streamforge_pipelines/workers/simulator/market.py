"""A deterministic, random-access market model for the exchange simulator: trades, candles, books.

Everything is a pure function of the configuration (:class:`~.config.SimulatorConfig`: seed,
symbols, listings, clusters, lead-lag relations, downtime): nothing is simulated from the beginning
of time, so any window can be served directly and two processes with the same seed serve the same
bytes.

**Prices** (log space, per symbol):

1. *Anchors* every :data:`BLOCK_DAYS` days: the base price, a slow sinusoidal trend and a keyed
   random deviation (part shared with the market factor, part idiosyncratic).
2. *Day opens*: a Brownian bridge between two anchors, daily steps.
3. *Minute closes*: a Brownian bridge between two day opens. The minute shocks are unit-variance
   mixes of the market factor, the symbol's cluster factor (``Cluster.loading`` is the correlation
   with it) and an idiosyncratic part; a follower of a :class:`~.config.LeadLag` mixes in its
   leader's shock of ``lag_minutes`` earlier (correlation ``strength``).

**Trades are the ground of the model.** Each minute has 6 price levels — open, high, low, close and
two intermediate prices on the path open → first extreme → second extreme → close — and 12 *cells*
(level × taker side). The day frame fixes, per minute and cell, the number of aggregate trades
(taker orders), trades and base quantity (in lot steps, every trade at least one step). Day totals
of trades and aggregate trades come from a per-block generator (so ids are random access: the id
of the first trade of a day is a sum of day totals since the listing, cached per 32-day block) and
are split over the minutes by an activity profile. A minute's individual trades are drawn on demand
from ``(seed, symbol, minute)``: the cell's trades split over its taker orders, quantities split
exactly over the trades, orders put in time order along the path (the first order is at the
open, the last at the close), one distinct millisecond per order. Therefore, exactly:

* first trade price = open, last = close, max = high, min = low (every level has trades);
* Σ qty = volume, count = trades, Σ qty of taker buys = taker-buy base volume;
* quote volume = Σ price·qty and taker-buy quote = Σ over taker buys, in integer 1e-8 units
  (:class:`SymbolSpec` requires ``tick · step`` to be a multiple of 1e-8 so every product is exact).

**Aggregate trades** are the taker orders: consecutive trades with the same price, the same taker
side and the same millisecond. Orders get distinct milliseconds, so each order is exactly one
maximal run. Trade ids and aggregate ids are consecutive per symbol from 0 at the listing.

**Candles** are sums of the trades: ``1m`` candles are computed from the cells (no trade needs to be
drawn), larger intervals aggregate minutes exactly, ``1s`` candles aggregate the drawn trades of
each second — except that a second *opens at the previous second's close* (its high/low include
it), so 1s candles are continuous like the minutes; a second without trades has O=H=L=C=previous
close and zero volume. Sixty seconds still aggregate exactly to their minute. The still-open
candle at ``now_ms`` aggregates the closed minutes and the seconds of the current minute so far.

**Time zones** (``timeZone`` of ``klines``): interval boundaries may be those of a local time
``UTC + offset``; a candle whose window is shifted aggregates the active minutes of that window
exactly (the 1m candles are the same in every zone).

**Listing and downtime**: minutes before the listing minute and minutes inside a
:class:`~.config.DowntimeWindow` have no trades and no candles; a candle of a larger interval
exists when at least one of its minutes is active and aggregates the active ones.

**Order book** (:meth:`Market.depth_snapshot`, :meth:`Market.depth_updates`): see
:mod:`.book`. All quantities are integers in units of 1e-8.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import lru_cache
from itertools import repeat
from typing import Any

import numpy as np

from streamforge_pipelines.intervals import (
    DAY_MS,
    FIXED_INTERVAL_MS,
    HOUR_MS,
    MINUTE_MS,
    check_interval,
    count_open_times,
    day_start_ms,
    floor_open_time,
    next_open_time,
)

from . import book
from .config import Cluster, DowntimeWindow, LeadLag, SimulatorConfig, check_structure

__all__ = [
    "DEFAULT_SYMBOLS",
    "SCALE",
    "TZ_MAX_OFFSET",
    "TZ_MIN_OFFSET",
    "Market",
    "MinuteTrades",
    "SymbolSpec",
    "UnknownSymbolError",
    "format_units",
]

#: Quantities are integers in units of 1e-8 (Binance renders 8 decimals on spot).
SCALE = 100_000_000
SECOND_MS = 1_000
MINUTES_PER_DAY = DAY_MS // MINUTE_MS
BLOCK_DAYS = 32
#: Price levels per minute (open, high, low, close, two intermediates) and cells (level x side).
LEVELS = 6
CELLS = 2 * LEVELS
_LEVEL_WEIGHTS = np.array([1.0, 0.6, 0.6, 1.0, 1.6, 1.6])

# Rows of a frame: a (9, n) int64 array, one column per candle.
_OPEN, _HIGH, _LOW, _CLOSE, _VOL, _QUOTE, _TRADES, _TAKER, _TAKER_QUOTE = range(9)
_SUMS = [_VOL, _QUOTE, _TRADES, _TAKER, _TAKER_QUOTE]

# Levels of keyed randomness.
_LEVEL_TREND, _LEVEL_ANCHOR, _LEVEL_DAY, _LEVEL_MINUTE = 1, 2, 3, 4
_LEVEL_COUNTS, _LEVEL_CELLS, _LEVEL_TRADES, _LEVEL_CLUSTER = 6, 7, 8, 9
_MARKET_KEY = 0

# Cache sizes (entries). A day (frame + cells) is ~250 kB, a second frame ~260 kB, a day of
# rendered 1m rows ~1 MB, a minute of trades up to ~100 kB.
_DAYS = 512
_SECOND_FRAMES = 64
_DAY_ROWS = 128
_HOUR_ROWS = 16
_DAY_AGGS = 1 << 16
_LONG_ROWS = 1 << 14
_MINUTE_TRADES = 2048

Agg = tuple[int, int, int, int, int, int, int, int, int]
Row = list[int | str]


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


def _symbol_key(name: str) -> int:
    """A stable 64-bit key per symbol (``hash()`` is salted per process, this is not)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") | 1


def _day_profile() -> np.ndarray:
    """Intraday activity/volatility profile over the 1440 minutes of a UTC day (mean 1, peak 14:00)."""
    minutes = np.arange(MINUTES_PER_DAY)
    return 1.0 + 0.35 * np.cos(2 * np.pi * (minutes - 14 * 60) / MINUTES_PER_DAY)


_PROFILE = _day_profile()


def _bridge(x0: float, x1: float, steps: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """Brownian bridge from ``x0`` to ``x1``: ``len(steps) + 1`` points, endpoints exact."""
    walk = np.concatenate(([0.0], np.cumsum(steps)))
    cum_var = np.concatenate(([0.0], np.cumsum(variances)))
    frac = cum_var / cum_var[-1]
    out = x0 + (x1 - x0) * frac + (walk - frac * walk[-1])
    out[0], out[-1] = x0, x1
    return out


def _aggregate(frame: np.ndarray, k: int) -> np.ndarray:
    """Aggregate consecutive groups of ``k`` candles of a frame whose length is a multiple of ``k``."""
    g = frame.reshape(9, -1, k)
    out = np.empty((9, g.shape[1]), dtype=np.int64)
    out[_OPEN] = g[_OPEN, :, 0]
    out[_HIGH] = g[_HIGH].max(axis=1)
    out[_LOW] = g[_LOW].min(axis=1)
    out[_CLOSE] = g[_CLOSE, :, -1]
    out[_SUMS] = g[_SUMS].sum(axis=2)
    return out


def _agg_one(frame: np.ndarray) -> Agg:
    """One aggregate (Python ints) over all candles of a non-empty frame."""
    sums = frame[_SUMS].sum(axis=1).tolist()
    return (
        int(frame[_OPEN, 0]),
        int(frame[_HIGH].max()),
        int(frame[_LOW].min()),
        int(frame[_CLOSE, -1]),
        *sums,
    )  # type: ignore[return-value]


def _combine(parts: Sequence[Agg]) -> Agg:
    """Aggregate consecutive aggregates into one."""
    first, last = parts[0], parts[-1]
    return (
        first[_OPEN],
        max(p[_HIGH] for p in parts),
        min(p[_LOW] for p in parts),
        last[_CLOSE],
        *(sum(p[i] for p in parts) for i in _SUMS),
    )  # type: ignore[return-value]


def _render(open_times: Sequence[int], step_ms: int, frame: np.ndarray) -> list[tuple]:
    """Binance's 12-field kline rows for the columns of an aggregated frame."""
    whole, frac = np.divmod(frame, SCALE)
    o, h, lo, c, v, q, tb, tq = (
        [f"{w}.{f:08d}" for w, f in zip(whole[i].tolist(), frac[i].tolist(), strict=True)]
        for i in (_OPEN, _HIGH, _LOW, _CLOSE, _VOL, _QUOTE, _TAKER, _TAKER_QUOTE)
    )
    if isinstance(open_times, range):
        close_times: Sequence[int] = range(
            open_times.start + step_ms - 1, open_times.stop + step_ms - 1, step_ms
        )
    else:
        close_times = [t + step_ms - 1 for t in open_times]
    trades = frame[_TRADES].tolist()
    return list(zip(open_times, o, h, lo, c, v, close_times, q, trades, tb, tq, repeat("0")))


def _split_rows(totals: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split each ``totals[j]`` over column ``weights[:, j]`` (positive) into exact integers."""
    cw = np.cumsum(weights, axis=0)
    cum = np.floor(totals * (cw / cw[-1])).astype(np.int64)
    cum[-1] = totals
    return np.diff(cum, axis=0, prepend=0)


def _aggregate_masked(frame: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`_aggregate` over the active (``mask``) columns only: (groups with any, aggregate)."""
    g = frame.reshape(9, -1, k)
    m = mask.reshape(-1, k)
    has = m.any(axis=1)
    first = np.argmax(m, axis=1)
    last = k - 1 - np.argmax(m[:, ::-1], axis=1)
    rows = np.arange(m.shape[0])
    out = np.empty((9, m.shape[0]), dtype=np.int64)
    out[_OPEN] = g[_OPEN, rows, first]
    out[_CLOSE] = g[_CLOSE, rows, last]
    out[_HIGH] = np.where(m, g[_HIGH], np.iinfo(np.int64).min).max(axis=1)
    out[_LOW] = np.where(m, g[_LOW], np.iinfo(np.int64).max).min(axis=1)
    out[_SUMS] = np.where(m[None], g[_SUMS], 0).sum(axis=2)
    return has, out[:, has]


def _ragged_split(totals: np.ndarray, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split each ``totals[i]`` over ``counts[i]`` consecutive items (weights) into exact integers.

    Items of segment ``i`` are consecutive in ``weights``; every segment with a positive total
    has at least one item. Returns one non-negative integer per item.
    """
    n = int(counts.sum())
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    seg = np.repeat(np.arange(len(counts)), counts)
    ends = np.cumsum(counts)
    starts = ends - counts
    cw = np.cumsum(weights)
    offset = np.where(starts > 0, cw[np.maximum(starts - 1, 0)], 0.0)
    within = cw - offset[seg]
    seg_sum = within[np.maximum(ends - 1, 0)]
    frac = within / np.where(seg_sum > 0, seg_sum, 1.0)[seg]
    cum = np.floor(totals[seg] * frac).astype(np.int64)
    nonempty = counts > 0
    cum[ends[nonempty] - 1] = totals[nonempty]
    cum = np.minimum(cum, totals[seg])
    prev = np.empty_like(cum)
    prev[0] = 0
    prev[1:] = cum[:-1]
    prev[starts[nonempty]] = 0
    return cum - prev


def _render_one(open_ms: int, close_ms: int, agg: Agg) -> tuple:
    f = format_units
    return (
        open_ms,
        f(agg[_OPEN]),
        f(agg[_HIGH]),
        f(agg[_LOW]),
        f(agg[_CLOSE]),
        f(agg[_VOL]),
        close_ms,
        f(agg[_QUOTE]),
        agg[_TRADES],
        f(agg[_TAKER]),
        f(agg[_TAKER_QUOTE]),
        "0",
    )


@dataclass(frozen=True, slots=True)
class DayCells:
    """The cells of a day's minutes (see the module docstring); arrays are (CELLS, 1440) int64."""

    #: Price level of each level (LEVELS, 1440), in ticks; and its position along the minute's path.
    level_ticks: np.ndarray
    level_pos: np.ndarray
    aggs: np.ndarray
    trades: np.ndarray
    steps: np.ndarray
    #: Active minutes (listed, not in downtime); None when all 1440 are.
    mask: np.ndarray | None
    #: Trades and aggregate trades before each minute of the day (1441 entries, relative to the day).
    trade_cum: np.ndarray
    agg_cum: np.ndarray


@dataclass(frozen=True, slots=True)
class MinuteTrades:
    """The trades of one minute in time order (numpy arrays, prices/quantities in 1e-8 units).

    Trade ``i`` has id ``first_id + i`` and belongs to aggregate trade ``first_agg_id + agg[i]``.
    ``buy`` is True when the taker bought (``isBuyerMaker`` is ``not buy``).
    """

    first_id: int
    first_agg_id: int
    price: np.ndarray
    qty: np.ndarray
    time: np.ndarray
    buy: np.ndarray
    agg: np.ndarray
    #: price x qty of each trade, exact (1e-8 units).
    quote: np.ndarray
    #: Index of the first trade of each aggregate trade.
    agg_start: np.ndarray

    def __len__(self) -> int:
        return len(self.price)


_NO_TRADES = MinuteTrades(
    0, 0, *(np.zeros(0, dtype=np.int64) for _ in range(3)), np.zeros(0, dtype=bool),
    *(np.zeros(0, dtype=np.int64) for _ in range(3)),
)  # fmt: skip


class Market:
    """The simulated exchange's market: symbols, trades, candles and books, a pure function of its config.

    ``Market(seed)`` serves :data:`DEFAULT_SYMBOLS`; :meth:`from_config` takes a whole
    :class:`~.config.SimulatorConfig`.
    """

    def __init__(
        self,
        seed: int,
        symbols: Sequence[SymbolSpec] | None = None,
        *,
        clusters: Sequence[Cluster] = (),
        lead_lags: Sequence[LeadLag] = (),
        downtime: Sequence[DowntimeWindow] = (),
    ) -> None:
        self.seed = int(seed) % (1 << 64)
        self.symbols: list[SymbolSpec] = list(DEFAULT_SYMBOLS if symbols is None else symbols)
        self._by_name = {s.name: s for s in self.symbols}
        if len(self._by_name) != len(self.symbols):
            raise ValueError("duplicate symbol names")
        self.clusters = tuple(clusters)
        self.lead_lags = tuple(lead_lags)
        self.downtime = tuple(downtime)
        check_structure(
            list(self._by_name),
            SimulatorConfig(seed, clusters=self.clusters, lead_lags=self.lead_lags),
        )
        self._keys = {s.name: _symbol_key(s.name) for s in self.symbols}
        self._cluster_of = {
            s: (_symbol_key(f"cluster:{c.name}"), c.loading) for c in self.clusters for s in c.symbols
        }
        self._leader_of = {ll.follower: ll for ll in self.lead_lags}
        self._down: dict[str, list[tuple[int, int]]] = {
            s.name: _merge([(w.start_ms, w.end_ms) for w in self.downtime if w.applies_to(s.name)])
            for s in self.symbols
        }
        self._block_prefix: dict[str, list[tuple[int, int]]] = {}
        # Per-instance caches (a module-level cache would mix seeds and keep instances alive).
        self._trend = lru_cache(maxsize=None)(self._compute_trend)
        self._anchor = lru_cache(maxsize=4096)(self._compute_anchor)
        self._day_opens = lru_cache(maxsize=4096)(self._compute_day_opens)
        self._factor_shocks = lru_cache(maxsize=512)(self._compute_factor_shocks)
        self._draws = lru_cache(maxsize=_DAYS)(self._compute_draws)
        self._unit_shocks = lru_cache(maxsize=_DAYS)(self._compute_unit_shocks)
        self._day = lru_cache(maxsize=_DAYS)(self._compute_day)
        self._block_counts = lru_cache(maxsize=4096)(self._compute_block_counts)
        self._minute_trades = lru_cache(maxsize=_MINUTE_TRADES)(self._compute_minute_trades)
        self._second_frame = lru_cache(maxsize=_SECOND_FRAMES)(self._compute_second_frame)
        self._day_rows = lru_cache(maxsize=_DAY_ROWS)(self._compute_day_rows)
        self._hour_rows = lru_cache(maxsize=_HOUR_ROWS)(self._compute_hour_rows)
        self._day_agg = lru_cache(maxsize=_DAY_AGGS)(self._compute_day_agg)
        self._long_row = lru_cache(maxsize=_LONG_ROWS)(self._compute_long_row)
        self._day_split = lru_cache(maxsize=_DAY_AGGS)(self._compute_day_split)

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> Market:
        """The market a :class:`~.config.SimulatorConfig` describes."""
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
        specs = [_with_listing(s, config.listings[s.name]) if s.name in config.listings else s for s in specs]
        return cls(
            config.seed,
            specs,
            clusters=config.clusters,
            lead_lags=config.lead_lags,
            downtime=config.downtime,
        )

    # ------------------------------------------------------------------ public API

    def symbol(self, name: str) -> SymbolSpec:
        """The listed symbol ``name``; :class:`UnknownSymbolError` if the exchange has none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownSymbolError(name) from None

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

    def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now_ms: int,
        tz_offset_min: int = 0,
    ) -> list[list]:
        """Kline rows as ``GET /api/v3/klines`` returns them, with Binance's window rules.

        No bounds: the most recent ``limit``; only ``start_ms``: the oldest at/after it; only
        ``end_ms``: the newest at/before it; both: from ``start_ms``, never beyond ``end_ms``.
        Bounds apply to open times. Candles that open after ``now_ms``, close before the listing
        or lie wholly in downtime do not exist; the candle open at ``now_ms`` is returned as it
        stands at ``now_ms``.

        ``tz_offset_min`` is the ``timeZone`` parameter in minutes east of UTC (in
        ``[-720, 840]``): interval boundaries are those of local time (a ``1d`` candle opens at
        local midnight), bounds and open times stay UTC. Candles whose boundaries move are
        aggregated exactly from the minutes of their shifted window; where the offset is a
        multiple of the interval nothing changes.
        """
        spec = self.symbol(symbol)
        check_interval(interval)
        if limit < 1:
            raise ValueError("limit must be positive")
        if tz_offset_min and _shifts(interval, _check_tz(tz_offset_min)):
            return self._shifted_klines(
                spec, interval, start_ms, end_ms, limit, now_ms, tz_offset_min * MINUTE_MS
            )
        opens = self._select(spec, interval, start_ms, end_ms, limit, now_ms)
        if not opens:
            return []
        last = opens[-1]
        if now_ms >= next_open_time(last, interval):
            return self._rows(spec, interval, opens)
        closed = self._rows(spec, interval, opens[:-1]) if len(opens) > 1 else []
        row = self._open_row(spec, interval, last, now_ms)
        if row is not None:
            closed.append(list(row))
        return closed

    def count_klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        end_ms_exclusive: int,
        now_ms: int,
        tz_offset_min: int = 0,
    ) -> int:
        """How many candles the exchange has with an open time in ``[start_ms, end_ms_exclusive)``.

        ``tz_offset_min``: the ``timeZone`` whose local boundaries the candles follow (see
        :meth:`klines`).
        """
        spec = self.symbol(symbol)
        check_interval(interval)
        if tz_offset_min and _shifts(interval, _check_tz(tz_offset_min)):
            return self._count_shifted(
                spec, interval, start_ms, end_ms_exclusive, now_ms, tz_offset_min * MINUTE_MS
            )
        bounds = self._bounds(spec, interval, now_ms)
        if bounds is None:
            return 0
        lo, hi = bounds
        a, b = max(start_ms, lo), min(end_ms_exclusive, hi + 1)
        if a >= b:
            return 0
        return count_open_times(a, b, interval) - self._count_down(spec, interval, a, b)

    def first_open_time(self, symbol: str, interval: str) -> int:
        """Open time of the symbol's first candle of ``interval`` (the one containing the listing)."""
        return floor_open_time(self.symbol(symbol).first_minute_ms, check_interval(interval))

    def minute_trades(self, symbol: str, minute_ms: int) -> MinuteTrades:
        """All trades of the minute opening at ``minute_ms`` (empty before listing / in downtime)."""
        spec = self.symbol(symbol)
        if minute_ms < spec.first_minute_ms:
            return _NO_TRADES
        return self._minute_trades(spec.name, minute_ms // MINUTE_MS)

    def trades_before(self, symbol: str, t_ms: int) -> tuple[int, int]:
        """How many trades and aggregate trades the symbol has had before ``t_ms`` (random access).

        Equivalently: the ids of the first trade and first aggregate trade at or after ``t_ms``.
        """
        spec = self.symbol(symbol)
        if t_ms <= spec.first_minute_ms:
            return 0, 0
        minute = t_ms // MINUTE_MS
        day, i = divmod(minute, MINUTES_PER_DAY)
        cells = self._day(spec.name, day)[1]
        day_t, day_a = self._day_base(spec.name, day)
        mt = self._minute_trades(spec.name, minute)
        j = int(np.searchsorted(mt.time, t_ms, side="left"))
        k = int(np.searchsorted(mt.time[mt.agg_start], t_ms, side="left"))
        return day_t + int(cells.trade_cum[i]) + j, day_a + int(cells.agg_cum[i]) + k

    def trade_id_range(self, symbol: str, start_ms: int, end_ms: int) -> tuple[int, int] | None:
        """Ids of the first and the last trade with a time in ``[start_ms, end_ms)``; None: no trade.

        A kline stream's ``f``/``L`` for the candle ``[open, close + 1)`` (Binance sends -1 for none).
        """
        first = self.trades_before(symbol, start_ms)[0]
        end = self.trades_before(symbol, end_ms)[0]
        return (first, end - 1) if end > first else None

    def trades(
        self, symbol: str, now_ms: int, limit: int = 500, from_id: int | None = None
    ) -> list[dict[str, Any]]:
        """``GET /api/v3/trades`` (``from_id`` None: the most recent) / ``historicalTrades`` rows.

        Only trades with ``time <= now_ms`` exist. With ``from_id``: up to ``limit`` trades with
        ``id >= from_id`` in id order.
        """
        spec = self.symbol(symbol)
        if from_id is None:
            parts = self._backward_trades(spec, now_ms, limit)
        else:
            start = self._locate(spec, from_id, now_ms, aggregate=False)
            parts = [] if start is None else self._forward_trades(spec, start, from_id, now_ms, limit)
        return _render_trades(parts, limit, newest=from_id is None)

    def agg_trades(
        self,
        symbol: str,
        now_ms: int,
        limit: int = 500,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[dict[str, Any]]:
        """``GET /api/v3/aggTrades``: ``from_id`` (aggregate id, inclusive) or the window rule of 1.0.

        No bounds: the most recent ``limit``; only ``start_ms``: the oldest at/after it; only
        ``end_ms``: the newest at/before it; both: from ``start_ms``, never beyond ``end_ms``. Only
        aggregate trades with ``T <= now_ms`` exist.
        """
        spec = self.symbol(symbol)
        upper = now_ms if end_ms is None else min(now_ms, end_ms)
        rows: list[tuple[MinuteTrades, np.ndarray]] = []
        if from_id is not None:
            minute = self._locate(spec, from_id, upper, aggregate=True)
            if minute is not None:
                rows = self._forward_aggs(spec, minute, upper, limit, from_id=from_id)
        elif start_ms is not None:
            first = max(start_ms, spec.first_minute_ms)
            rows = self._forward_aggs(spec, first // MINUTE_MS, upper, limit, from_ms=first)
        else:
            rows = self._backward_aggs(spec, upper, limit)
        return _render_aggs(rows, limit, newest=from_id is None and start_ms is None)

    def depth_snapshot(self, symbol: str, limit: int, now_ms: int) -> book.DepthSnapshot:
        """The order book as ``GET /api/v3/depth`` returns it at ``now_ms`` (see :mod:`.book`).

        It is the book after the last diff event published by ``now_ms`` — that of the 100 ms window
        ``now_ms // 100 - 1`` — and ``last_update_id`` is that event's ``u``; so the first diff event
        a client needs (:meth:`depth_updates` from ``now_ms``) has ``U == last_update_id + 1``.
        ``limit`` levels per side (at most :data:`.book.BOOK_LEVELS`), bids descending, asks ascending,
        spot rendering (8 decimals).
        """
        spec = self.symbol(symbol)
        window = now_ms // book.WINDOW_MS - 1
        levels = self.book_levels(spec.name, window, limit)
        return book.DepthSnapshot.from_levels(levels)

    def depth_updates(self, symbol: str, start_ms: int, end_ms: int) -> list[book.DepthUpdate]:
        """The diff-depth events (``@depth@100ms``) with event time ``E`` in ``[start_ms, end_ms)``.

        Window ``w`` (``[100w, 100w + 100)``) publishes one event at ``E = 100w + 100`` holding every
        level whose quantity differs between the books of windows ``w - 1`` and ``w``, with its new
        absolute quantity (``"0"``: removed). The book changes in every window (the best levels'
        quantities change every 100 ms), so events follow each other with ``U == previous u + 1``.
        ``depth_snapshot(t)`` followed by ``depth_updates(t, t2)`` gives ``depth_snapshot(t2)``
        (over the full :data:`.book.BOOK_LEVELS`; a snapshot of ``limit`` levels agrees on the
        levels it holds). Nothing exists before the symbol's listing.
        """
        spec = self.symbol(symbol)
        first_w = max(-(-start_ms // book.WINDOW_MS) - 1, spec.first_minute_ms // book.WINDOW_MS)
        last_w = -(-end_ms // book.WINDOW_MS) - 2  # E = 100(w+1) < end_ms
        out: list[book.DepthUpdate] = []
        if last_w < first_w:
            return out
        prev = self.book_levels(spec.name, first_w - 1, book.BOOK_LEVELS)
        for w in range(first_w, last_w + 1):
            cur = self.book_levels(spec.name, w, book.BOOK_LEVELS)
            out.append(book.diff(prev, cur, (w + 1) * book.WINDOW_MS))
            prev = cur
        return out

    def book_levels(self, name: str, window: int, limit: int) -> book.BookLevels:
        """The book after the 100 ms window ``window`` (integer units): the ground of the depth APIs."""
        spec = self._by_name[name]
        first_w = spec.first_minute_ms // book.WINDOW_MS
        if window < first_w:
            return book.BookLevels.empty(book.update_id(self.seed, self._keys[name], first_w, first_w - 1))
        price, buy = self._last_price(spec, (window + 1) * book.WINDOW_MS - 1)
        return book.levels(
            seed=self.seed,
            key=self._keys[name],
            window=window,
            first_window=first_w,
            last_price=price,
            taker_buy=buy,
            tick=spec.tick_units,
            step=spec.step_units,
            lot=_book_lot(spec),
            limit=min(limit, book.BOOK_LEVELS),
        )

    # ------------------------------------------------------------------ window selection

    def _bounds(self, spec: SymbolSpec, interval: str, now_ms: int) -> tuple[int, int] | None:
        """Open times of the first and the last candle that can exist at ``now_ms`` (None: none yet)."""
        check_interval(interval)
        if now_ms < spec.first_minute_ms:
            return None
        return floor_open_time(spec.first_minute_ms, interval), floor_open_time(now_ms, interval)

    def _select(
        self,
        spec: SymbolSpec,
        interval: str,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now_ms: int,
    ) -> list[int]:
        bounds = self._bounds(spec, interval, now_ms)
        if bounds is None:
            return []
        lo, hi = bounds
        upper = hi if end_ms is None else min(hi, floor_open_time(end_ms, interval))
        down = self._down[spec.name]
        if start_ms is not None:
            first = max(lo, _ceil_open_time(start_ms, interval))
            if not down:
                return _forward(first, upper, limit, interval)
            out: list[int] = []
            while len(out) < limit and first <= upper:
                batch = _forward(first, upper, limit - len(out), interval)
                out.extend(t for t in batch if not self._candle_down(spec, interval, t))
                first = next_open_time(batch[-1], interval)
            return out
        if not down:
            return _backward(lo, upper, limit, interval)
        rev: list[int] = []
        while len(rev) < limit and upper >= lo:
            batch = _backward(lo, upper, limit - len(rev), interval)
            rev.extend(t for t in reversed(batch) if not self._candle_down(spec, interval, t))
            upper = floor_open_time(batch[0] - 1, interval)
        return rev[::-1]

    def _candle_down(self, spec: SymbolSpec, interval: str, open_ms: int) -> bool:
        """Whether the candle opening at ``open_ms`` has no active minute (wholly in downtime)."""
        a = max(open_ms, spec.first_minute_ms)
        b = open_ms + SECOND_MS if interval == "1s" else next_open_time(open_ms, interval)
        return any(s <= a and b <= e for s, e in self._down[spec.name])

    def _count_down(self, spec: SymbolSpec, interval: str, a: int, b: int) -> int:
        """Candles with open times in ``[a, b)`` that lie wholly in downtime."""
        n = 0
        for s, e in self._down[spec.name]:
            if e <= a or s >= b:
                continue
            step = FIXED_INTERVAL_MS.get(interval)
            first = max(_ceil_open_time(s, interval), a)
            if step is not None:
                last = min(e - step, b - 1)  # last open time whose candle ends by e
                if last >= first:
                    first = _ceil_open_time(first, interval)
                    n += (last - first) // step + 1 if last >= first else 0
                continue
            t = first
            while t < min(e, b):
                n += self._candle_down(spec, interval, t)
                t = next_open_time(t, interval)
        return n

    # ------------------------------------------------------------------ shifted time zones

    def _shifted_klines(
        self,
        spec: SymbolSpec,
        interval: str,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now_ms: int,
        off_ms: int,
    ) -> list[list]:
        """:meth:`klines` for boundaries of local time ``UTC + off_ms`` that differ from UTC's.

        Each candle aggregates the active minutes of its shifted window (whole days from the day
        aggregates, the partial days from the minute frames); candles without an active minute do
        not exist, as in UTC.
        """
        if now_ms < spec.first_minute_ms:
            return []
        zone = _Zone(interval, off_ms)
        lo, hi = zone.floor(spec.first_minute_ms), zone.floor(now_ms)
        upper = hi if end_ms is None else min(hi, zone.floor(end_ms))
        step = FIXED_INTERVAL_MS.get(interval)
        if step is not None and step < DAY_MS and not self._down[spec.name]:
            # Every candle from the listing on has an active minute: select, then aggregate at once.
            if start_ms is not None:
                opens = _forward(max(lo, zone.ceil(start_ms)), upper, limit, interval)
            else:
                opens = _backward(lo, upper, limit, interval)
            if not opens:
                return []
            still_open = now_ms < opens[-1] + step
            out = self._frame_rows(spec, opens[:-1] if still_open else opens, step)
            if still_open:
                row = self._open_row_until(spec, opens[-1], opens[-1] + step - 1, now_ms)
                if row is not None:
                    out.append(list(row))
            return out
        rows: list[list] = []
        if start_ms is not None:
            t = max(lo, zone.ceil(start_ms))
            while t <= upper and len(rows) < limit:
                end = zone.next(t)
                row = self._shifted_row(spec, t, end, now_ms)
                if row is not None:
                    rows.append(row)
                t = end
            return rows
        t = upper
        while t >= lo and len(rows) < limit:
            row = self._shifted_row(spec, t, zone.next(t), now_ms)
            if row is not None:
                rows.append(row)
            t = zone.floor(t - 1)
        rows.reverse()
        return rows

    def _shifted_row(self, spec: SymbolSpec, open_ms: int, end_ms: int, now_ms: int) -> list | None:
        """The candle ``[open_ms, end_ms)`` (minute-aligned) at ``now_ms``; None: no active minute."""
        if now_ms >= end_ms:
            agg = self._agg_shifted(spec, open_ms, end_ms)
            return None if agg is None else list(_render_one(open_ms, end_ms - 1, agg))
        row = self._open_row_until(spec, open_ms, end_ms - 1, now_ms)
        return None if row is None else list(row)

    def _frame_rows(self, spec: SymbolSpec, opens: list[int], step: int) -> list[list]:
        """Closed candles of a sub-day ``step`` opening at ``opens`` (consecutive, minute-aligned).

        The minute frames of the days they span are cut to ``[opens[0], opens[-1] + step)`` and
        aggregated in groups over the active minutes; each candle must have one.
        """
        if not opens:
            return []
        a, b = opens[0], opens[-1] + step
        frames: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        for day in range(a // DAY_MS, (b - 1) // DAY_MS + 1):
            frame, cells = self._day(spec.name, day)
            i = max(a - day * DAY_MS, 0) // MINUTE_MS
            j = min(b - day * DAY_MS, DAY_MS) // MINUTE_MS
            frames.append(frame[:, i:j])
            masks.append(np.ones(j - i, dtype=bool) if cells.mask is None else cells.mask[i:j])
        has, agg = _aggregate_masked(np.concatenate(frames, axis=1), np.concatenate(masks), step // MINUTE_MS)
        assert has.all(), "a selected candle has at least one active minute"
        return [list(r) for r in _render(opens, step, agg)]

    def _agg_shifted(self, spec: SymbolSpec, start_ms: int, end_ms: int) -> Agg | None:
        """:meth:`_agg_range` of a closed shifted candle: day heads and tails from a cache.

        A shifted candle of 1d or longer starts and ends inside UTC days; the aggregates of those
        partial days are cached per split minute (:meth:`_compute_day_split`), so paging through
        years of candles does not recompute the minute frames of every day.
        """
        start_ms = max(start_ms, spec.first_minute_ms)
        parts: list[Agg | None] = []
        t = start_ms
        while t < end_ms:
            day = t // DAY_MS
            day_ms = day * DAY_MS
            stop = min(end_ms, day_ms + DAY_MS)
            i, j = (t - day_ms) // MINUTE_MS, (stop - day_ms) // MINUTE_MS
            if i == 0 and j == MINUTES_PER_DAY:
                parts.append(self._day_agg(spec.name, day))
            elif i == 0:
                parts.append(self._day_split(spec.name, day, j)[0])
            elif j == MINUTES_PER_DAY:
                parts.append(self._day_split(spec.name, day, i)[1])
            else:
                parts.append(self._agg_minutes(spec.name, day, i, j))
            t = stop
        present = [p for p in parts if p is not None]
        return _combine(present) if present else None

    def _compute_day_split(self, name: str, day: int, split: int) -> tuple[Agg | None, Agg | None]:
        """Aggregates of minutes ``[0, split)`` and ``[split, 1440)`` of ``day`` (None: no active one)."""
        spec = self._by_name[name]
        if day * DAY_MS + DAY_MS <= spec.first_minute_ms:
            return None, None
        return self._agg_minutes(name, day, 0, split), self._agg_minutes(name, day, split, MINUTES_PER_DAY)

    def _count_shifted(
        self, spec: SymbolSpec, interval: str, start_ms: int, end_ms_exclusive: int, now_ms: int, off_ms: int
    ) -> int:
        """:meth:`count_klines` for boundaries of local time ``UTC + off_ms``."""
        if now_ms < spec.first_minute_ms:
            return 0
        zone = _Zone(interval, off_ms)
        lo, hi = zone.floor(spec.first_minute_ms), zone.floor(now_ms)
        a, b = max(start_ms, lo), min(end_ms_exclusive, hi + 1)
        if a >= b:
            return 0
        n = count_open_times(a + off_ms, b + off_ms, interval)
        for s, e in self._down[spec.name]:
            if e <= a or s >= b:
                continue
            t = max(zone.floor(s), zone.ceil(a))
            while t < min(e, b):
                end = zone.next(t)
                if s <= max(t, spec.first_minute_ms) and end <= e:
                    n -= 1
                t = end
        return n

    # ------------------------------------------------------------------ rows

    def _rows(self, spec: SymbolSpec, interval: str, opens: list[int]) -> list[list]:
        if interval == "1s":
            return self._chunked_rows(spec, opens, HOUR_MS, self._hour_rows)
        step = FIXED_INTERVAL_MS.get(interval)
        if step is not None and step < DAY_MS:
            return self._chunked_rows(spec, opens, DAY_MS, self._day_rows, interval)
        return [list(self._long_row(spec.name, interval, t)) for t in opens]

    @staticmethod
    def _chunked_rows(
        spec: SymbolSpec,
        opens: list[int],
        chunk_ms: int,
        rows_of: Callable[..., tuple[Sequence[int], list[tuple]]],
        *extra: str,
    ) -> list[list]:
        out: list[list] = []
        first, last = opens[0], opens[-1]
        chunk = first - first % chunk_ms
        while chunk <= last:
            chunk_opens, rows = rows_of(spec.name, *extra, chunk // chunk_ms)
            i = bisect_left(chunk_opens, first)
            j = bisect_right(chunk_opens, last)
            out.extend(list(r) for r in rows[i:j])
            chunk += chunk_ms
        return out

    def _compute_day_rows(self, name: str, interval: str, day: int) -> tuple[Sequence[int], list[tuple]]:
        """Rendered candles of ``interval`` (< 1d) that open on ``day``: (open times, rows)."""
        step = FIXED_INTERVAL_MS[interval]
        k = step // MINUTE_MS
        frame = self._minute_frame(name, day)
        mask = self._day(name, day)[1].mask
        day_ms = day * DAY_MS
        if mask is None:
            agg = _aggregate(frame, k) if k > 1 else frame
            opens: Sequence[int] = range(day_ms, day_ms + DAY_MS, step)
        else:
            has, agg = _aggregate_masked(frame, mask, k)
            opens = (day_ms + np.flatnonzero(has) * step).tolist()
        return opens, _render(opens, step, agg)

    def _compute_hour_rows(self, name: str, hour: int) -> tuple[Sequence[int], list[tuple]]:
        """Rendered 1s candles of ``hour`` (hours since the epoch): (open times, rows)."""
        hour_ms = hour * HOUR_MS
        frame = self._second_frame(name, hour)
        day, h_in_day = divmod(hour, 24)
        mask = self._day(name, day)[1].mask
        if mask is None or mask[h_in_day * 60 : h_in_day * 60 + 60].all():
            opens: Sequence[int] = range(hour_ms, hour_ms + HOUR_MS, SECOND_MS)
        else:
            active = np.repeat(mask[h_in_day * 60 : h_in_day * 60 + 60], 60)
            frame = frame[:, active]
            opens = (hour_ms + np.flatnonzero(active) * SECOND_MS).tolist()
        return opens, _render(opens, SECOND_MS, frame)

    def _compute_long_row(self, name: str, interval: str, open_ms: int) -> tuple:
        """A closed candle of 1d or longer, summed from day aggregates."""
        spec = self._by_name[name]
        end = next_open_time(open_ms, interval)
        agg = self._agg_range(spec, open_ms, end)
        assert agg is not None, "a selected candle has at least one active minute"
        return _render_one(open_ms, end - 1, agg)

    def _open_row(self, spec: SymbolSpec, interval: str, open_ms: int, now_ms: int) -> tuple | None:
        """The candle still open at ``now_ms``, as it stands then (None: no active minute yet)."""
        close_ms = next_open_time(open_ms, interval) - 1
        if interval == "1s":
            return _render_one(open_ms, close_ms, self._agg_seconds(spec, open_ms, open_ms + SECOND_MS))
        return self._open_row_until(spec, open_ms, close_ms, now_ms)

    def _open_row_until(self, spec: SymbolSpec, open_ms: int, close_ms: int, now_ms: int) -> tuple | None:
        """The minute-aligned candle ``[open_ms, close_ms]`` still open at ``now_ms`` (None: empty)."""
        minute = floor_open_time(now_ms, "1m")
        parts = [a for a in (self._agg_range(spec, open_ms, minute),) if a is not None]
        if self._minute_active(spec, minute):
            parts.append(self._agg_seconds(spec, minute, floor_open_time(now_ms, "1s") + SECOND_MS))
        return _render_one(open_ms, close_ms, _combine(parts)) if parts else None

    # ------------------------------------------------------------------ aggregation

    def _agg_range(self, spec: SymbolSpec, start_ms: int, end_ms: int) -> Agg | None:
        """Aggregate of the active minutes in ``[start_ms, end_ms)`` (minute-aligned)."""
        start_ms = max(start_ms, spec.first_minute_ms)
        parts: list[Agg] = []
        t = start_ms
        while t < end_ms:
            day = t // DAY_MS
            day_end = (day + 1) * DAY_MS
            stop = min(end_ms, day_end)
            if t == day * DAY_MS and stop == day_end:
                agg = self._day_agg(spec.name, day)
            else:
                i, j = (t - day * DAY_MS) // MINUTE_MS, (stop - day * DAY_MS) // MINUTE_MS
                agg = self._agg_minutes(spec.name, day, i, j)
            if agg is not None:
                parts.append(agg)
            t = stop
        return _combine(parts) if parts else None

    def _agg_minutes(self, name: str, day: int, i: int, j: int) -> Agg | None:
        frame, cells = self._day(name, day)
        sub = frame[:, i:j] if cells.mask is None else frame[:, i:j][:, cells.mask[i:j]]
        return _agg_one(sub) if sub.shape[1] else None

    def _compute_day_agg(self, name: str, day: int) -> Agg | None:
        spec = self._by_name[name]
        if day * DAY_MS + DAY_MS <= spec.first_minute_ms:
            return None
        return self._agg_minutes(name, day, 0, MINUTES_PER_DAY)

    def _agg_seconds(self, spec: SymbolSpec, start_ms: int, end_ms: int) -> Agg:
        """Aggregate of the 1s candles in ``[start_ms, end_ms)``, inside one hour."""
        hour = start_ms // HOUR_MS
        frame = self._second_frame(spec.name, hour)
        i = (start_ms - hour * HOUR_MS) // SECOND_MS
        j = (end_ms - hour * HOUR_MS) // SECOND_MS
        return _agg_one(frame[:, i:j])

    def _minute_active(self, spec: SymbolSpec, minute_ms: int) -> bool:
        if minute_ms < spec.first_minute_ms:
            return False
        return not any(s <= minute_ms < e for s, e in self._down[spec.name])

    # ------------------------------------------------------------------ activity, counts and ids

    def _active_minutes(self, spec: SymbolSpec, day: int) -> int:
        day_ms = day * DAY_MS
        start = max(day_ms, spec.first_minute_ms)
        if start >= day_ms + DAY_MS:
            return 0
        down = sum(max(0, min(e, day_ms + DAY_MS) - max(s, start)) for s, e in self._down[spec.name])
        return (day_ms + DAY_MS - start - down) // MINUTE_MS

    def _active_mask(self, spec: SymbolSpec, day: int) -> np.ndarray | None:
        day_ms = day * DAY_MS
        skip = max(0, (spec.first_minute_ms - day_ms) // MINUTE_MS)
        windows = [(s, e) for s, e in self._down[spec.name] if s < day_ms + DAY_MS and e > day_ms]
        if not skip and not windows:
            return None
        mask = np.ones(MINUTES_PER_DAY, dtype=bool)
        mask[: min(skip, MINUTES_PER_DAY)] = False
        for s, e in windows:
            mask[max(0, (s - day_ms) // MINUTE_MS) : min(MINUTES_PER_DAY, (e - day_ms) // MINUTE_MS)] = False
        return mask

    def _compute_block_counts(self, name: str, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Trades and aggregate trades of each day of ``block`` (two int64 arrays of BLOCK_DAYS)."""
        spec = self._by_name[name]
        rng = self._rng(self._keys[name], _LEVEL_COUNTS, block)
        z = rng.standard_normal((2, BLOCK_DAYS))
        days = block * BLOCK_DAYS + np.arange(BLOCK_DAYS)
        act = np.array([self._active_minutes(spec, int(d)) for d in days], dtype=np.int64)
        weekend = np.where((days + 3) % 7 >= 5, 0.75, 1.0)  # day 0 was a Thursday
        base = spec.trades_per_minute * np.exp(0.25 * z[0] - 0.03) * weekend * act
        trades = np.maximum(np.rint(base).astype(np.int64), CELLS * act)
        ratio = np.clip(0.45 + 0.08 * z[1], 0.25, 0.7)
        aggs = np.clip(np.rint(trades * ratio).astype(np.int64), CELLS * act, trades)
        return trades, aggs

    def _day_counts(self, name: str, day: int) -> tuple[int, int]:
        block, i = divmod(day, BLOCK_DAYS)
        trades, aggs = self._block_counts(name, block)
        return int(trades[i]), int(aggs[i])

    def _day_base(self, name: str, day: int) -> tuple[int, int]:
        """Ids of the first trade and the first aggregate trade of ``day`` (0 at the listing)."""
        block, i = divmod(day, BLOCK_DAYS)
        t0, a0 = self._block_base(name, block)
        trades, aggs = self._block_counts(name, block)
        return t0 + int(trades[:i].sum()), a0 + int(aggs[:i].sum())

    def _block_base(self, name: str, block: int) -> tuple[int, int]:
        spec = self._by_name[name]
        first = spec.first_minute_ms // DAY_MS // BLOCK_DAYS
        if block <= first:
            return 0, 0
        prefix = self._block_prefix.setdefault(name, [(0, 0)])  # prefix[k]: before block first + k
        while len(prefix) <= block - first:
            trades, aggs = self._block_counts(name, first + len(prefix) - 1)
            t, a = prefix[-1]
            prefix.append((t + int(trades.sum()), a + int(aggs.sum())))
        return prefix[block - first]

    def _locate(self, spec: SymbolSpec, ident: int, now_ms: int, *, aggregate: bool) -> int | None:
        """The minute (since the epoch) holding trade (or aggregate trade) ``ident``; None: none yet."""
        if now_ms < spec.first_minute_ms:
            return None
        first = spec.first_minute_ms // DAY_MS // BLOCK_DAYS
        last = now_ms // DAY_MS // BLOCK_DAYS
        idx = 1 if aggregate else 0
        self._block_base(spec.name, last + 1)
        bases = [p[idx] for p in self._block_prefix[spec.name][: last - first + 2]]
        k = bisect_right(bases, ident) - 1
        if k > last - first:
            return None
        block = first + k
        day_totals = self._block_counts(spec.name, block)[idx]
        cum = bases[k] + np.concatenate(([0], np.cumsum(day_totals)))
        i = int(np.searchsorted(cum, ident, side="right")) - 1
        day = block * BLOCK_DAYS + i
        if day > now_ms // DAY_MS:
            return None
        cells = self._day(spec.name, day)[1]
        rel = ident - int(cum[i])
        within = cells.agg_cum if aggregate else cells.trade_cum
        minute = int(np.searchsorted(within, rel, side="right")) - 1
        return day * MINUTES_PER_DAY + min(minute, MINUTES_PER_DAY - 1)

    # ------------------------------------------------------------------ trades

    def _compute_minute_trades(self, name: str, minute: int) -> MinuteTrades:
        """Draw the trades of ``minute`` (minutes since the epoch) from its cells."""
        spec = self._by_name[name]
        day, i = divmod(minute, MINUTES_PER_DAY)
        frame, cells = self._day(name, day)
        n = int(frame[_TRADES, i])
        if n == 0:
            return _NO_TRADES
        a = cells.aggs[:, i]
        t = cells.trades[:, i]
        q = cells.steps[:, i]
        n_aggs = int(a.sum())
        rng = self._rng(self._keys[name], _LEVEL_TRADES, minute)
        group_trades = 1 + _ragged_split(t - a, a, rng.gamma(0.8, size=n_aggs))
        qty_steps = 1 + _ragged_split(q - t, t, rng.gamma(1.5, size=n))
        group_cell = np.repeat(np.arange(CELLS), a)
        group_level = group_cell // 2
        key = cells.level_pos[group_level, i] + rng.normal(0.0, 0.05, n_aggs)
        key[0] = -1.0  # the first order of cell 0 (open level, taker buy) opens the minute
        key[int(a[: 2 * 3 + 2].sum()) - 1] = 2.0  # the last order of cell 7 (close, taker sell) closes it
        order = np.argsort(key, kind="stable")
        group_start = np.cumsum(group_trades) - group_trades
        lens = group_trades[order]
        offsets = np.cumsum(lens) - lens
        trade_idx = np.repeat(group_start[order] - offsets, lens) + np.arange(n)
        times = np.sort(rng.integers(0, MINUTE_MS - n_aggs + 1, n_aggs)) + np.arange(n_aggs)
        prices = cells.level_ticks[group_level[order], i] * spec.tick_units
        day_t, day_a = self._day_base(name, day)
        return MinuteTrades(
            first_id=day_t + int(cells.trade_cum[i]),
            first_agg_id=day_a + int(cells.agg_cum[i]),
            price=np.repeat(prices, lens),
            qty=qty_steps[trade_idx] * spec.step_units,
            time=minute * MINUTE_MS + np.repeat(times, lens),
            buy=np.repeat(group_cell[order] % 2 == 0, lens),
            agg=np.repeat(np.arange(n_aggs), lens),
            quote=np.repeat(cells.level_ticks[group_level[order], i], lens)
            * qty_steps[trade_idx]
            * (spec.tick_units * spec.step_units // SCALE),
            agg_start=offsets,
        )

    def _forward_trades(
        self, spec: SymbolSpec, minute: int, from_id: int, now_ms: int, limit: int
    ) -> list[MinuteTrades | tuple[MinuteTrades, slice]]:
        out: list[Any] = []
        got = 0
        last_minute = now_ms // MINUTE_MS
        while got < limit and minute <= last_minute:
            mt = self._minute_trades(spec.name, minute)
            if len(mt):
                lo = max(0, from_id - mt.first_id)
                hi = min(len(mt), lo + limit - got, int(np.searchsorted(mt.time, now_ms, side="right")))
                if hi > lo:
                    out.append((mt, slice(lo, hi)))
                    got += hi - lo
            minute += 1
        return out

    def _backward_trades(self, spec: SymbolSpec, now_ms: int, limit: int) -> list[Any]:
        out: list[Any] = []
        got = 0
        minute = now_ms // MINUTE_MS
        first = spec.first_minute_ms // MINUTE_MS
        while got < limit and minute >= first:
            mt = self._minute_trades(spec.name, minute)
            if not len(mt):
                minute -= 1
                continue
            hi = int(np.searchsorted(mt.time, now_ms, side="right"))
            lo = max(0, hi - (limit - got))
            if hi > lo:
                out.append((mt, slice(lo, hi)))
                got += hi - lo
            minute -= 1
        return out[::-1]

    def _forward_aggs(
        self,
        spec: SymbolSpec,
        minute: int,
        upper_ms: int,
        limit: int,
        *,
        from_id: int | None = None,
        from_ms: int | None = None,
    ) -> list[tuple[MinuteTrades, np.ndarray]]:
        """Aggregate trades from ``minute`` on: id ``>= from_id`` or ``T >= from_ms``; ``T <= upper_ms``."""
        out: list[tuple[MinuteTrades, np.ndarray]] = []
        got = 0
        last_minute = upper_ms // MINUTE_MS
        while got < limit and minute <= last_minute:
            mt = self._minute_trades(spec.name, minute)
            if len(mt.agg_start):
                times = mt.time[mt.agg_start]
                if from_id is not None:
                    idx = np.arange(max(0, from_id - mt.first_agg_id), len(times))
                else:
                    idx = np.flatnonzero(times >= (from_ms or 0))
                idx = idx[times[idx] <= upper_ms][: limit - got]
                if len(idx):
                    out.append((mt, idx))
                    got += len(idx)
            minute += 1
        return out

    def _backward_aggs(
        self, spec: SymbolSpec, upper_ms: int, limit: int
    ) -> list[tuple[MinuteTrades, np.ndarray]]:
        out: list[tuple[MinuteTrades, np.ndarray]] = []
        got = 0
        minute = upper_ms // MINUTE_MS
        first = spec.first_minute_ms // MINUTE_MS
        while got < limit and minute >= first:
            mt = self._minute_trades(spec.name, minute)
            if not len(mt):
                minute -= 1
                continue
            idx = np.flatnonzero(mt.time[mt.agg_start] <= upper_ms)
            idx = idx[max(0, len(idx) - (limit - got)) :]
            if len(idx):
                out.append((mt, idx))
                got += len(idx)
            minute -= 1
        return out[::-1]

    def _last_price(self, spec: SymbolSpec, t_ms: int) -> tuple[int, bool]:
        """Price (1e-8 units) and taker side of the last trade at or before ``t_ms``.

        In a minute before its first trade (or a minute in downtime) it is the minute's open.
        """
        minute = t_ms // MINUTE_MS
        day, i = divmod(minute, MINUTES_PER_DAY)
        mt = self._minute_trades(spec.name, minute) if self._minute_active(spec, minute * MINUTE_MS) else None
        if mt is not None and len(mt):
            j = int(np.searchsorted(mt.time, t_ms, side="right")) - 1
            if j >= 0:
                return int(mt.price[j]), bool(mt.buy[j])
        return int(self._minute_frame(spec.name, day)[_OPEN, i]), True

    # ------------------------------------------------------------------ the price model

    def _rng(self, key: int, level: int, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, key, level, index))

    def _compute_trend(self, name: str) -> tuple[float, float, float]:
        """(amplitude, period in days, phase) of the symbol's slow deterministic trend."""
        rng = self._rng(self._keys[name], _LEVEL_TREND, 0)
        amplitude, period, phase = rng.uniform((0.10, 250.0, 0.0), (0.30, 700.0, 2 * math.pi))
        return float(amplitude), float(period), float(phase)

    def _compute_anchor(self, name: str, block: int) -> float:
        """Log price at the start of day ``block * BLOCK_DAYS``."""
        spec = self._by_name[name]
        amplitude, period, phase = self._trend(name)
        day = block * BLOCK_DAYS
        z_sym = self._rng(self._keys[name], _LEVEL_ANCHOR, block).standard_normal()
        z_mkt = self._rng(_MARKET_KEY, _LEVEL_ANCHOR, block).standard_normal()
        z = _mix(spec.market_beta, z_mkt, z_sym)
        spread = spec.daily_volatility * math.sqrt(BLOCK_DAYS) * 0.6
        return (
            math.log(spec.base_price) + amplitude * math.sin(2 * math.pi * day / period + phase) + spread * z
        )

    def _compute_factor_shocks(self, key: int, level: int, index: int, n: int) -> np.ndarray:
        return self._rng(key, level, index).standard_normal(n)

    def _compute_day_opens(self, name: str, block: int) -> np.ndarray:
        """Log prices at the start of each day of ``block`` (``BLOCK_DAYS + 1`` points)."""
        spec = self._by_name[name]
        z_sym = self._rng(self._keys[name], _LEVEL_DAY, block).standard_normal(BLOCK_DAYS)
        z_mkt = self._factor_shocks(_MARKET_KEY, _LEVEL_DAY, block, BLOCK_DAYS)
        z = _mix(spec.market_beta, z_mkt, z_sym)
        var = np.full(BLOCK_DAYS, spec.daily_volatility**2)
        steps = z * spec.daily_volatility
        return _bridge(self._anchor(name, block), self._anchor(name, block + 1), steps, var)

    def _day_open(self, name: str, day: int) -> float:
        block, i = divmod(day, BLOCK_DAYS)
        return float(self._day_opens(name, block)[i])

    def _compute_draws(self, name: str, day: int) -> tuple[np.ndarray, float]:
        """The day's keyed normal draws: (6, 1440) minute draws and the day-volatility draw."""
        rng = self._rng(self._keys[name], _LEVEL_MINUTE, day)
        z = rng.standard_normal((6, MINUTES_PER_DAY))
        return z, float(rng.standard_normal())

    def _compute_unit_shocks(self, name: str, day: int) -> np.ndarray:
        """Unit-variance minute shocks: market, cluster, idiosyncratic and the leader's lagged shocks."""
        spec = self._by_name[name]
        n = MINUTES_PER_DAY
        z = _mix(
            spec.market_beta,
            self._factor_shocks(_MARKET_KEY, _LEVEL_MINUTE, day, n),
            self._draws(name, day)[0][0],
        )
        cluster = self._cluster_of.get(name)
        if cluster is not None:
            key, loading = cluster
            z = loading * self._factor_shocks(key, _LEVEL_CLUSTER, day, n) + math.sqrt(1 - loading**2) * z
        lead = self._leader_of.get(name)
        if lead is not None:
            k = lead.lag_minutes
            leader = np.concatenate(
                [self._unit_shocks(lead.leader, day - j) for j in range(k // n + 1, -1, -1)]
            )
            lagged = leader[len(leader) - n - k : len(leader) - k]
            z = lead.strength * lagged + math.sqrt(1 - lead.strength**2) * z
        return np.asarray(z)

    def _minute_frame(self, name: str, day: int) -> np.ndarray:
        return self._day(name, day)[0]

    def _compute_day(self, name: str, day: int) -> tuple[np.ndarray, DayCells]:
        """The 1440 one-minute candles of ``day`` as a (9, 1440) int64 frame, and the day's cells."""
        spec = self._by_name[name]
        n = MINUTES_PER_DAY
        z, z_vol = self._draws(name, day)
        day_vol = spec.daily_volatility * math.exp(0.3 * z_vol - 0.045)
        sigma = day_vol / math.sqrt(n) * np.sqrt(_PROFILE)
        shocks = self._unit_shocks(name, day) * sigma
        log_path = _bridge(self._day_open(name, day), self._day_open(name, day + 1), shocks, sigma**2)

        tick, step = spec.tick_units, spec.step_units
        price = np.maximum(np.rint(np.exp(log_path) * (SCALE / tick)), 1).astype(np.int64)  # in ticks
        o, c = price[:-1], price[1:]
        ret = np.diff(log_path)
        wick = np.exp(log_path[1:]) * (SCALE / tick) * sigma * 0.6
        h = np.maximum(o, c) + np.floor(np.abs(z[1]) * wick).astype(np.int64)
        lo = np.maximum(np.minimum(o, c) - np.floor(np.abs(z[2]) * wick).astype(np.int64), 1)

        mask = self._active_mask(spec, day)
        active = np.ones(n, dtype=bool) if mask is None else mask
        n_act = int(active.sum())
        day_trades, day_aggs = self._day_counts(name, day)
        activity = np.exp(0.45 * z[3] - 0.1) * _PROFILE * (0.7 + 0.3 * np.abs(ret) / sigma)
        weights = np.where(active, activity, 0.0)
        rng = self._rng(self._keys[name], _LEVEL_CELLS, day)
        base = np.where(active, CELLS, 0).astype(np.int64)
        if n_act:
            p = weights / weights.sum()
            aggs = base + rng.multinomial(day_aggs - CELLS * n_act, p)
            trades = aggs + rng.multinomial(day_trades - day_aggs, p)
        else:
            aggs = trades = np.zeros(n, dtype=np.int64)

        mid = (o + h + lo + c) * (tick / 4.0)  # 1e-8 quote units per whole base unit
        lots = np.rint(spec.quote_volume_per_minute * activity * SCALE / mid * (SCALE / step))
        lots = np.where(active, np.maximum(lots.astype(np.int64), trades), 0)
        taker_frac = np.clip(0.5 + 0.25 * np.tanh(ret / sigma) + 0.05 * z[5], 0.05, 0.95)

        # Levels: open, high, low, close and two intermediate prices on the minute's path.
        u = rng.random((5, n))
        up = u[0] < 0.5  # high before low
        p1, p2 = 0.15 + 0.35 * u[1], 0.5 + 0.35 * u[2]
        e1, e2 = np.where(up, h, lo), np.where(up, lo, h)
        mids = [_path_at(uu, o, e1, e2, c, p1, p2) for uu in (u[3], u[4])]
        level_ticks = np.stack([o, h, lo, c, *(np.clip(m, lo, h) for m in mids)])
        level_pos = np.stack(
            [np.zeros(n), np.where(up, p1, p2), np.where(up, p2, p1), np.ones(n), u[3], u[4]]
        )

        side = np.stack([taker_frac, 1.0 - taker_frac], axis=0)  # (2, n)
        cell_w = (_LEVEL_WEIGHTS[:, None, None] * side[None]).reshape(CELLS, n)
        g = rng.standard_exponential(size=(3, CELLS, n)) + 0.05
        level_w = _LEVEL_WEIGHTS.repeat(2)[:, None]
        per_cell = np.where(active, 1, 0)
        cell_aggs = per_cell + _split_rows(aggs - base, g[0] * level_w)
        cell_trades = cell_aggs + _split_rows(trades - aggs, g[1] * level_w)
        cell_steps = cell_trades + _split_rows(lots - trades, g[2] * cell_w)

        fac = tick * step // SCALE
        qty = cell_steps.reshape(LEVELS, 2, n)
        quote = fac * (level_ticks * qty.sum(axis=1)).sum(axis=0)
        taker_quote = fac * (level_ticks * qty[:, 0]).sum(axis=0)
        frame = np.stack(
            [
                o * tick,
                h * tick,
                lo * tick,
                c * tick,
                lots * step,
                quote,
                trades,
                qty[:, 0].sum(axis=0) * step,
                taker_quote,
            ]
        ).astype(np.int64)
        cells = DayCells(
            level_ticks=level_ticks,
            level_pos=level_pos,
            aggs=cell_aggs,
            trades=cell_trades,
            steps=cell_steps,
            mask=mask,
            trade_cum=np.concatenate(([0], np.cumsum(trades))),
            agg_cum=np.concatenate(([0], np.cumsum(aggs))),
        )
        return frame, cells

    def _compute_second_frame(self, name: str, hour: int) -> np.ndarray:
        """The 3600 one-second candles of ``hour``, aggregated from its trades ((9, 3600) int64)."""
        minutes = [self._minute_trades(name, hour * 60 + m) for m in range(60)]
        price = np.concatenate([m.price for m in minutes])
        qty = np.concatenate([m.qty for m in minutes])
        buy = np.concatenate([m.buy for m in minutes])
        quote = np.concatenate([m.quote for m in minutes])
        sec = (np.concatenate([m.time for m in minutes]) - hour * HOUR_MS) // SECOND_MS
        day, h_in_day = divmod(hour, 24)
        init = int(self._minute_frame(name, day)[_OPEN, h_in_day * 60])
        frame = np.zeros((9, 3600), dtype=np.int64)
        if len(price):
            secs, starts = np.unique(sec, return_index=True)
            ends = np.append(starts[1:], len(price))
            frame[_OPEN, secs] = price[starts]
            frame[_CLOSE, secs] = price[ends - 1]
            frame[_HIGH, secs] = np.maximum.reduceat(price, starts)
            frame[_LOW, secs] = np.minimum.reduceat(price, starts)
            frame[_VOL, secs] = np.add.reduceat(qty, starts)
            frame[_QUOTE, secs] = np.add.reduceat(quote, starts)
            frame[_TRADES, secs] = ends - starts
            frame[_TAKER, secs] = np.add.reduceat(qty * buy, starts)
            frame[_TAKER_QUOTE, secs] = np.add.reduceat(quote * buy, starts)
            has = np.zeros(3600, dtype=bool)
            has[secs] = True
        else:
            has = np.zeros(3600, dtype=bool)
        last = np.maximum.accumulate(np.where(has, np.arange(3600), -1))
        close = np.where(last >= 0, frame[_CLOSE, np.maximum(last, 0)], init)
        frame[_CLOSE] = close
        frame[_OPEN] = np.concatenate(([init], close[:-1]))  # a second opens at the previous close
        frame[_HIGH] = np.where(has, np.maximum(frame[_HIGH], frame[_OPEN]), close)
        frame[_LOW] = np.where(has, np.minimum(frame[_LOW], frame[_OPEN]), close)
        return frame


def _path_at(
    u: np.ndarray,
    o: np.ndarray,
    e1: np.ndarray,
    e2: np.ndarray,
    c: np.ndarray,
    p1: np.ndarray,
    p2: np.ndarray,
) -> np.ndarray:
    """The piecewise-linear minute path open → e1 (at p1) → e2 (at p2) → close at position ``u``."""
    seg0 = o + (e1 - o) * (u / p1)
    seg1 = e1 + (e2 - e1) * ((u - p1) / (p2 - p1))
    seg2 = e2 + (c - e2) * ((u - p2) / (1.0 - p2))
    return np.rint(np.where(u < p1, seg0, np.where(u < p2, seg1, seg2))).astype(np.int64)


def _merge(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(windows):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _with_listing(spec: SymbolSpec, listing_ms: int) -> SymbolSpec:
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


def _book_lot(spec: SymbolSpec) -> int:
    """Typical resting quantity per book level, in lot steps (about 0.3% of a minute's quote volume)."""
    return max(1, round(spec.quote_volume_per_minute * 0.003 / spec.base_price * SCALE / spec.step_units))


def _fmt(values: np.ndarray) -> list[str]:
    whole, frac = np.divmod(values, SCALE)
    return [f"{w}.{f:08d}" for w, f in zip(whole.tolist(), frac.tolist(), strict=True)]


def _render_trades(parts: list[Any], limit: int, *, newest: bool) -> list[dict[str, Any]]:
    """``trades``/``historicalTrades`` elements for (minute trades, slice) parts."""
    if not parts:
        return []
    ids = np.concatenate([mt.first_id + np.arange(len(mt))[s] for mt, s in parts])
    price = np.concatenate([mt.price[s] for mt, s in parts])
    qty = np.concatenate([mt.qty[s] for mt, s in parts])
    time = np.concatenate([mt.time[s] for mt, s in parts])
    buy = np.concatenate([mt.buy[s] for mt, s in parts])
    quote = np.concatenate([mt.quote[s] for mt, s in parts])
    sl = slice(max(0, len(ids) - limit), None) if newest else slice(0, limit)
    ids, price, qty, time, buy, quote = ids[sl], price[sl], qty[sl], time[sl], buy[sl], quote[sl]
    return [
        {"id": i, "price": p, "qty": q, "quoteQty": qq, "time": t, "isBuyerMaker": not b, "isBestMatch": True}
        for i, p, q, qq, t, b in zip(
            ids.tolist(),
            _fmt(price),
            _fmt(qty),
            _fmt(quote),
            time.tolist(),
            buy.tolist(),
            strict=True,
        )
    ]


def _render_aggs(
    parts: list[tuple[MinuteTrades, np.ndarray]], limit: int, *, newest: bool
) -> list[dict[str, Any]]:
    """``aggTrades`` elements for (minute trades, aggregate indices) parts."""
    if not parts:
        return []
    a_ids, price, qty, first, last, time, buy = [], [], [], [], [], [], []
    for mt, idx in parts:
        ends = np.append(mt.agg_start[1:], len(mt))
        start = mt.agg_start[idx]
        a_ids.append(mt.first_agg_id + idx)
        price.append(mt.price[start])
        qty.append(np.add.reduceat(mt.qty, mt.agg_start)[idx])
        first.append(mt.first_id + start)
        last.append(mt.first_id + ends[idx] - 1)
        time.append(mt.time[start])
        buy.append(mt.buy[start])
    cols = [np.concatenate(x) for x in (a_ids, price, qty, first, last, time, buy)]
    n = len(cols[0])
    sl = slice(max(0, n - limit), None) if newest else slice(0, limit)
    a, p, q, f, la, t, b = (col[sl] for col in cols)
    return [
        {"a": ai, "p": pi, "q": qi, "f": fi, "l": li, "T": ti, "m": not bi, "M": True}
        for ai, pi, qi, fi, li, ti, bi in zip(
            a.tolist(), _fmt(p), _fmt(q), f.tolist(), la.tolist(), t.tolist(), b.tolist(), strict=True
        )
    ]


def _mix(beta: float, market: np.ndarray | float, own: np.ndarray | float) -> np.ndarray | float:
    """Unit-variance mix of a market shock and an idiosyncratic shock with correlation ``beta``."""
    return beta * market + math.sqrt(1.0 - beta * beta) * own


#: ``timeZone`` range Binance accepts, in minutes east of UTC: [-12:00, +14:00].
TZ_MIN_OFFSET = -12 * 60
TZ_MAX_OFFSET = 14 * 60


def _check_tz(offset_min: int) -> int:
    """``offset_min`` if it is a valid ``timeZone`` offset, else ``ValueError``."""
    if not TZ_MIN_OFFSET <= offset_min <= TZ_MAX_OFFSET:
        raise ValueError(f"time zone offset {offset_min} min outside [-12:00, +14:00]")
    return offset_min


def _shifts(interval: str, offset_min: int) -> bool:
    """Whether a ``timeZone`` offset moves the boundaries of ``interval`` (not a multiple of it)."""
    if offset_min == 0:
        return False
    if interval == "1M":
        return True
    return (offset_min * MINUTE_MS) % FIXED_INTERVAL_MS[interval] != 0


@dataclass(frozen=True, slots=True)
class _Zone:
    """Boundaries of ``interval`` in the local time ``UTC + off_ms``, as UTC milliseconds."""

    interval: str
    off_ms: int

    def floor(self, ms: int) -> int:
        """Open time of the local candle containing ``ms``."""
        return floor_open_time(ms + self.off_ms, self.interval) - self.off_ms

    def next(self, open_ms: int) -> int:
        """Open time of the local candle after the one opening at ``open_ms``."""
        return next_open_time(open_ms + self.off_ms, self.interval) - self.off_ms

    def ceil(self, ms: int) -> int:
        """The first local open time at or after ``ms``."""
        t = self.floor(ms)
        return t if t == ms else self.next(t)


def _ceil_open_time(ms: int, interval: str) -> int:
    """The first open time at or after ``ms``."""
    t = floor_open_time(ms, interval)
    return t if t == ms else next_open_time(t, interval)


def _forward(first: int, upper: int, limit: int, interval: str) -> list[int]:
    """Up to ``limit`` open times from ``first`` to ``upper`` inclusive."""
    if first > upper:
        return []
    step = FIXED_INTERVAL_MS.get(interval)
    if step is not None:
        last = min(upper, first + (limit - 1) * step)
        return list(range(first, last + 1, step))
    return list(_take(_months_from(first, upper), limit))


def _backward(lo: int, upper: int, limit: int, interval: str) -> list[int]:
    """The last ``limit`` open times from ``lo`` to ``upper`` inclusive."""
    if upper < lo:
        return []
    step = FIXED_INTERVAL_MS.get(interval)
    if step is not None:
        first = max(lo, upper - (limit - 1) * step)
        return list(range(first, upper + 1, step))
    out: list[int] = []
    t = upper
    while t >= lo and len(out) < limit:
        out.append(t)
        t = floor_open_time(t - 1, interval)
    return out[::-1]


def _months_from(first: int, upper: int) -> Iterator[int]:
    t = first
    while t <= upper:
        yield t
        t = next_open_time(t, "1M")


def _take(it: Iterator[int], n: int) -> Iterator[int]:
    for i, t in enumerate(it):
        if i >= n:
            return
        yield t
