"""The market's price model: a keyed random walk, its day frames and the cells of every minute.

Everything is a pure function of the configuration (:class:`~..config.SimulatorConfig`: seed,
symbols, listings, clusters, lead-lag relations, downtime): nothing is simulated from the beginning
of time, so any window can be served directly and two processes with the same seed serve the same
bytes.

**Prices** (log space, per symbol):

1. *Anchors* every :data:`BLOCK_DAYS` days: the base price, a slow sinusoidal trend and a keyed
   random deviation (part shared with the market factor, part idiosyncratic).
2. *Day opens*: a Brownian bridge between two anchors, daily steps.
3. *Minute closes*: a Brownian bridge between two day opens. The minute shocks are unit-variance
   mixes of the market factor, the symbol's cluster factor (``Cluster.loading`` is the correlation
   with it) and an idiosyncratic part; a follower of a :class:`~..config.LeadLag` mixes in its
   leader's shock of ``lag_minutes`` earlier (correlation ``strength``).

**The day frame** (:meth:`PriceModel._compute_day`): the 1440 one-minute candles of a day and its
:class:`DayCells`. Each minute has 6 price levels — open, high, low, close and two intermediate
prices on the path open → first extreme → second extreme → close — and 12 *cells* (level × taker
side). The frame fixes, per minute and cell, the number of aggregate trades (taker orders), trades
and base quantity (in lot steps, every trade at least one step). Day totals of trades and aggregate
trades come from a per-block generator (so ids are random access: the id of the first trade of a
day is a sum of day totals since the listing, cached per 32-day block) and are split over the
minutes by an activity profile. The trades themselves are drawn from the cells (:mod:`.trades`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from streamforge_pipelines.intervals import DAY_MS

from ..symbols import SCALE
from .base import MINUTES_PER_DAY, MarketBase

__all__ = ["BLOCK_DAYS", "CELLS", "LEVELS", "LEVEL_TRADES", "DayCells", "PriceModel"]

BLOCK_DAYS = 32
#: Price levels per minute (open, high, low, close, two intermediates) and cells (level x side).
LEVELS = 6
CELLS = 2 * LEVELS
_LEVEL_WEIGHTS = np.array([1.0, 0.6, 0.6, 1.0, 1.6, 1.6])

# Levels of keyed randomness.
_LEVEL_TREND, _LEVEL_ANCHOR, _LEVEL_DAY, _LEVEL_MINUTE = 1, 2, 3, 4
_LEVEL_COUNTS, _LEVEL_CELLS, LEVEL_TRADES, _LEVEL_CLUSTER = 6, 7, 8, 9
_MARKET_KEY = 0

#: Cached days (entries): a day (frame + cells) is ~250 kB.
_DAYS = 512


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


def _split_rows(totals: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split each ``totals[j]`` over column ``weights[:, j]`` (positive) into exact integers."""
    cw = np.cumsum(weights, axis=0)
    cum = np.floor(totals * (cw / cw[-1])).astype(np.int64)
    cum[-1] = totals
    return np.diff(cum, axis=0, prepend=0)


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


def _mix(beta: float, market: np.ndarray | float, own: np.ndarray | float) -> np.ndarray | float:
    """Unit-variance mix of a market shock and an idiosyncratic shock with correlation ``beta``."""
    return beta * market + math.sqrt(1.0 - beta * beta) * own


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


class PriceModel(MarketBase):
    """The keyed random walk of every symbol, its day frames and cells, and the day totals of trades."""

    def _install_caches(self) -> None:
        super()._install_caches()
        self._block_prefix: dict[str, list[tuple[int, int]]] = {}
        self._trend = lru_cache(maxsize=None)(self._compute_trend)
        self._anchor = lru_cache(maxsize=4096)(self._compute_anchor)
        self._day_opens = lru_cache(maxsize=4096)(self._compute_day_opens)
        self._factor_shocks = lru_cache(maxsize=512)(self._compute_factor_shocks)
        self._draws = lru_cache(maxsize=_DAYS)(self._compute_draws)
        self._unit_shocks = lru_cache(maxsize=_DAYS)(self._compute_unit_shocks)
        self._day = lru_cache(maxsize=_DAYS)(self._compute_day)
        self._block_counts = lru_cache(maxsize=4096)(self._compute_block_counts)

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

    # ------------------------------------------------------------------ day totals and first ids

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
