"""A deterministic, random-access market model for the exchange simulator.

Every candle is a pure function of ``(seed, symbol, time)``: nothing is simulated from the beginning
of time, so any window can be served directly and two processes with the same seed serve the same
bytes.

How the prices are made (all in log-price space, per symbol):

1. **Anchors** every :data:`BLOCK_DAYS` days: the base price, times a slow sinusoidal trend, times a
   keyed-random deviation (part shared with a market factor, part idiosyncratic).
2. **Day opens** inside a block: a Brownian bridge between the two anchors, daily steps.
3. **Minute closes** inside a day: a Brownian bridge between the two day opens, minute steps with an
   intraday volatility profile and a per-day volatility level. Shocks are again a mix of a shared
   market factor and an idiosyncratic part, so returns of different symbols are correlated (the
   graph builder downstream needs that).

Each level draws from ``numpy.random.default_rng((seed, symbol key, level, index))``, so a day needs
one generator for the symbol and one for the market factor, whatever came before it.

Prices are rounded to the symbol's tick before candles are cut, so ``open(t) == close(t - 1)``
holds exactly, across day boundaries too. All quantities are integers in units of 1e-8
(Binance's 8-decimal rendering), which makes aggregation exact:

* ``1m`` candles are the base. Larger intervals up to ``1d`` are reshapes of a day's minutes;
  ``3d``/``1w``/``1M`` are sums of day aggregates (Python ints, no overflow).
* ``1s`` candles are cut from each minute: trades, volumes and notional are split exactly over
  the seconds, the price path runs from the minute's open to its close inside its high/low and
  touches both, so 60 seconds aggregate exactly to their minute (taker quote volume excepted,
  whose split is exact in sum but not bounded per second by the quote volume).
* The still-open candle at ``now_ms`` is aggregated from the closed minutes and the seconds of
  the current minute opened so far, so it converges to the final candle. For ``1s`` the current
  second is returned whole.

Extension points for later issues: per-symbol downtime windows (gaps) and zero-trade candles
belong in :meth:`Market._minute_frame`; trades/aggTrades and order books can hang off the same
keyed generators.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import lru_cache
from itertools import repeat

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

__all__ = [
    "DEFAULT_SYMBOLS",
    "SCALE",
    "Market",
    "SymbolSpec",
    "UnknownSymbolError",
    "format_units",
]

#: Quantities are integers in units of 1e-8 (Binance renders 8 decimals on spot).
SCALE = 100_000_000
SECOND_MS = 1_000
MINUTES_PER_DAY = DAY_MS // MINUTE_MS
BLOCK_DAYS = 32

# Rows of a frame: a (9, n) int64 array, one column per candle.
_OPEN, _HIGH, _LOW, _CLOSE, _VOL, _QUOTE, _TRADES, _TAKER, _TAKER_QUOTE = range(9)
_SUMS = [_VOL, _QUOTE, _TRADES, _TAKER, _TAKER_QUOTE]

# Levels of keyed randomness.
_LEVEL_TREND, _LEVEL_ANCHOR, _LEVEL_DAY, _LEVEL_MINUTE, _LEVEL_SECOND = 1, 2, 3, 4, 5
_MARKET_KEY = 0

# Cache sizes (entries). A minute frame is ~100 kB, a second frame ~260 kB, a day of rendered 1m
# rows ~1 MB, so the worst case stays in the low hundreds of MB.
_MINUTE_FRAMES = 512
_SECOND_FRAMES = 64
_DAY_ROWS = 128
_HOUR_ROWS = 16
_DAY_AGGS = 1 << 16
_LONG_ROWS = 1 << 14

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


def _split(totals: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split each integer ``totals[i]`` over row ``weights[i]`` into integers that sum exactly."""
    cum_w = np.cumsum(weights, axis=1)
    w_sum = cum_w[:, -1:]
    shares = np.divide(cum_w, w_sum, out=np.ones_like(cum_w), where=w_sum > 0)
    cum = np.floor(totals[:, None] * shares).astype(np.int64)
    cum[:, -1] = totals
    cum = np.maximum.accumulate(np.clip(cum, 0, totals[:, None]), axis=1)
    return np.diff(cum, axis=1, prepend=0)


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


def _render(open_times: range, step_ms: int, frame: np.ndarray) -> list[tuple]:
    """Binance's 12-field kline rows for the columns of an aggregated frame."""
    whole, frac = np.divmod(frame, SCALE)
    o, h, lo, c, v, q, tb, tq = (
        [f"{w}.{f:08d}" for w, f in zip(whole[i].tolist(), frac[i].tolist(), strict=True)]
        for i in (_OPEN, _HIGH, _LOW, _CLOSE, _VOL, _QUOTE, _TAKER, _TAKER_QUOTE)
    )
    close_times = range(open_times.start + step_ms - 1, open_times.stop + step_ms - 1, step_ms)
    trades = frame[_TRADES].tolist()
    return list(zip(open_times, o, h, lo, c, v, close_times, q, trades, tb, tq, repeat("0")))


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


class Market:
    """The simulated exchange's market: symbols and their candles, a pure function of ``seed``."""

    def __init__(self, seed: int, symbols: Sequence[SymbolSpec] | None = None) -> None:
        self.seed = int(seed) % (1 << 64)
        self.symbols: list[SymbolSpec] = list(DEFAULT_SYMBOLS if symbols is None else symbols)
        self._by_name = {s.name: s for s in self.symbols}
        if len(self._by_name) != len(self.symbols):
            raise ValueError("duplicate symbol names")
        self._keys = {s.name: _symbol_key(s.name) for s in self.symbols}
        # Per-instance caches (a module-level cache would mix seeds and keep instances alive).
        self._trend = lru_cache(maxsize=None)(self._compute_trend)
        self._anchor = lru_cache(maxsize=4096)(self._compute_anchor)
        self._day_opens = lru_cache(maxsize=4096)(self._compute_day_opens)
        self._market_shocks = lru_cache(maxsize=256)(self._compute_market_shocks)
        self._minute_frame = lru_cache(maxsize=_MINUTE_FRAMES)(self._compute_minute_frame)
        self._second_frame = lru_cache(maxsize=_SECOND_FRAMES)(self._compute_second_frame)
        self._day_rows = lru_cache(maxsize=_DAY_ROWS)(self._compute_day_rows)
        self._hour_rows = lru_cache(maxsize=_HOUR_ROWS)(self._compute_hour_rows)
        self._day_agg = lru_cache(maxsize=_DAY_AGGS)(self._compute_day_agg)
        self._long_row = lru_cache(maxsize=_LONG_ROWS)(self._compute_long_row)

    # ------------------------------------------------------------------ public API

    def symbol(self, name: str) -> SymbolSpec:
        """The listed symbol ``name``; :class:`UnknownSymbolError` if the exchange has none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownSymbolError(name) from None

    def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now_ms: int,
    ) -> list[list]:
        """Kline rows as ``GET /api/v3/klines`` returns them, with Binance's window rules.

        No bounds: the most recent ``limit``; only ``start_ms``: the oldest at/after it; only
        ``end_ms``: the newest at/before it; both: from ``start_ms``, never beyond ``end_ms``.
        Bounds apply to open times. Candles that open after ``now_ms`` or close before the listing
        do not exist; the candle open at ``now_ms`` is returned as it stands at ``now_ms``.
        """
        spec = self.symbol(symbol)
        check_interval(interval)
        if limit < 1:
            raise ValueError("limit must be positive")
        opens = self._select(spec, interval, start_ms, end_ms, limit, now_ms)
        if not opens:
            return []
        last = opens[-1]
        if now_ms >= next_open_time(last, interval):
            return self._rows(spec, interval, opens)
        closed = self._rows(spec, interval, opens[:-1]) if len(opens) > 1 else []
        closed.append(list(self._open_row(spec, interval, last, now_ms)))
        return closed

    def count_klines(
        self, symbol: str, interval: str, start_ms: int, end_ms_exclusive: int, now_ms: int
    ) -> int:
        """How many candles the exchange has with an open time in ``[start_ms, end_ms_exclusive)``."""
        bounds = self._bounds(self.symbol(symbol), interval, now_ms)
        if bounds is None:
            return 0
        lo, hi = bounds
        a, b = max(start_ms, lo), min(end_ms_exclusive, hi + 1)
        return count_open_times(a, b, interval) if a < b else 0

    def first_open_time(self, symbol: str, interval: str) -> int:
        """Open time of the symbol's first candle of ``interval`` (the one containing the listing)."""
        return floor_open_time(self.symbol(symbol).first_minute_ms, check_interval(interval))

    # ------------------------------------------------------------------ window selection

    def _bounds(self, spec: SymbolSpec, interval: str, now_ms: int) -> tuple[int, int] | None:
        """Open times of the first and the last candle that exist at ``now_ms`` (None: none yet)."""
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
        if start_ms is not None:
            first = max(lo, _ceil_open_time(start_ms, interval))
            return _forward(first, upper, limit, interval)
        return _backward(lo, upper, limit, interval)

    # ------------------------------------------------------------------ rows

    def _rows(self, spec: SymbolSpec, interval: str, opens: list[int]) -> list[list]:
        if interval == "1s":
            return self._chunked_rows(spec, opens, HOUR_MS, SECOND_MS, self._hour_rows)
        step = FIXED_INTERVAL_MS.get(interval)
        if step is not None and step < DAY_MS:
            return self._chunked_rows(spec, opens, DAY_MS, step, self._day_rows, interval)
        return [list(self._long_row(spec.name, interval, t)) for t in opens]

    @staticmethod
    def _chunked_rows(
        spec: SymbolSpec,
        opens: list[int],
        chunk_ms: int,
        step_ms: int,
        rows_of: Callable[..., tuple[int, list[tuple]]],
        *extra: str,
    ) -> list[list]:
        out: list[list] = []
        first, last = opens[0], opens[-1]
        chunk = first - first % chunk_ms
        while chunk <= last:
            chunk_first, rows = rows_of(spec.name, *extra, chunk // chunk_ms)
            i = max(0, (first - chunk_first) // step_ms)
            j = (min(last, chunk + chunk_ms - 1) - chunk_first) // step_ms + 1
            out.extend(list(r) for r in rows[i:j])
            chunk += chunk_ms
        return out

    def _compute_day_rows(self, name: str, interval: str, day: int) -> tuple[int, list[tuple]]:
        """Rendered candles of ``interval`` (< 1d) that open on ``day``: (first open time, rows)."""
        spec = self._by_name[name]
        step = FIXED_INTERVAL_MS[interval]
        k = step // MINUTE_MS
        frame = self._minute_frame(name, day)
        day_ms = day * DAY_MS
        skip = max(0, (spec.first_minute_ms - day_ms) // MINUTE_MS)  # listing day: minutes before
        g0 = skip // k
        agg = _aggregate(frame, k) if k > 1 else frame
        agg = agg[:, g0:].copy()
        if skip % k:
            agg[:, 0] = _agg_one(frame[:, skip : (g0 + 1) * k])
        first = day_ms + g0 * step
        return first, _render(range(first, day_ms + DAY_MS, step), step, agg)

    def _compute_hour_rows(self, name: str, hour: int) -> tuple[int, list[tuple]]:
        """Rendered 1s candles of ``hour`` (hours since the epoch): (first open time, rows)."""
        spec = self._by_name[name]
        hour_ms = hour * HOUR_MS
        skip = max(0, (spec.first_minute_ms - hour_ms) // SECOND_MS)
        frame = self._second_frame(name, hour)[:, skip:]
        first = hour_ms + skip * SECOND_MS
        return first, _render(range(first, hour_ms + HOUR_MS, SECOND_MS), SECOND_MS, frame)

    def _compute_long_row(self, name: str, interval: str, open_ms: int) -> tuple:
        """A closed candle of 1d or longer, summed from day aggregates."""
        spec = self._by_name[name]
        end = next_open_time(open_ms, interval)
        agg = self._agg_range(spec, open_ms, end)
        assert agg is not None, "a selected candle has at least one minute"
        return _render_one(open_ms, end - 1, agg)

    def _open_row(self, spec: SymbolSpec, interval: str, open_ms: int, now_ms: int) -> tuple:
        """The candle still open at ``now_ms``, as it stands then."""
        close_ms = next_open_time(open_ms, interval) - 1
        if interval == "1s":
            return self._render_seconds(spec, open_ms, close_ms)
        minute = floor_open_time(now_ms, "1m")
        parts = [a for a in (self._agg_range(spec, open_ms, minute),) if a is not None]
        parts.append(self._agg_seconds(spec, minute, floor_open_time(now_ms, "1s") + SECOND_MS))
        return _render_one(open_ms, close_ms, _combine(parts))

    def _render_seconds(self, spec: SymbolSpec, open_ms: int, close_ms: int) -> tuple:
        return _render_one(open_ms, close_ms, self._agg_seconds(spec, open_ms, open_ms + SECOND_MS))

    # ------------------------------------------------------------------ aggregation

    def _agg_range(self, spec: SymbolSpec, start_ms: int, end_ms: int) -> Agg | None:
        """Aggregate of the minutes in ``[start_ms, end_ms)`` (minute-aligned) after the listing."""
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
                frame = self._minute_frame(spec.name, day)
                i, j = (t - day * DAY_MS) // MINUTE_MS, (stop - day * DAY_MS) // MINUTE_MS
                agg = _agg_one(frame[:, i:j])
            if agg is not None:
                parts.append(agg)
            t = stop
        return _combine(parts) if parts else None

    def _compute_day_agg(self, name: str, day: int) -> Agg | None:
        spec = self._by_name[name]
        day_ms = day * DAY_MS
        if day_ms + DAY_MS <= spec.first_minute_ms:
            return None
        skip = max(0, (spec.first_minute_ms - day_ms) // MINUTE_MS)
        return _agg_one(self._minute_frame(name, day)[:, skip:])

    def _agg_seconds(self, spec: SymbolSpec, start_ms: int, end_ms: int) -> Agg:
        """Aggregate of the 1s candles in ``[start_ms, end_ms)``, inside one hour."""
        hour = start_ms // HOUR_MS
        frame = self._second_frame(spec.name, hour)
        i = (start_ms - hour * HOUR_MS) // SECOND_MS
        j = (end_ms - hour * HOUR_MS) // SECOND_MS
        return _agg_one(frame[:, i:j])

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

    def _compute_market_shocks(self, level: int, index: int, n: int) -> np.ndarray:
        return self._rng(_MARKET_KEY, level, index).standard_normal(n)

    def _compute_day_opens(self, name: str, block: int) -> np.ndarray:
        """Log prices at the start of each day of ``block`` (``BLOCK_DAYS + 1`` points)."""
        spec = self._by_name[name]
        z_sym = self._rng(self._keys[name], _LEVEL_DAY, block).standard_normal(BLOCK_DAYS)
        z = _mix(spec.market_beta, self._market_shocks(_LEVEL_DAY, block, BLOCK_DAYS), z_sym)
        var = np.full(BLOCK_DAYS, spec.daily_volatility**2)
        steps = z * spec.daily_volatility
        return _bridge(self._anchor(name, block), self._anchor(name, block + 1), steps, var)

    def _day_open(self, name: str, day: int) -> float:
        block, i = divmod(day, BLOCK_DAYS)
        return float(self._day_opens(name, block)[i])

    def _compute_minute_frame(self, name: str, day: int) -> np.ndarray:
        """The 1440 one-minute candles of ``day`` (days since the epoch) as a (9, 1440) int64 frame."""
        spec = self._by_name[name]
        n = MINUTES_PER_DAY
        rng = self._rng(self._keys[name], _LEVEL_MINUTE, day)
        z = rng.standard_normal((6, n))
        day_vol = spec.daily_volatility * math.exp(0.3 * rng.standard_normal() - 0.045)
        sigma = day_vol / math.sqrt(n) * np.sqrt(_PROFILE)
        shocks = _mix(spec.market_beta, self._market_shocks(_LEVEL_MINUTE, day, n), z[0]) * sigma
        log_path = _bridge(self._day_open(name, day), self._day_open(name, day + 1), shocks, sigma**2)

        tick = spec.tick_units
        price = np.maximum(np.rint(np.exp(log_path) * (SCALE / tick)), 1).astype(np.int64)  # in ticks
        o, c = price[:-1], price[1:]
        ret = np.diff(log_path)
        wick = np.exp(log_path[1:]) * (SCALE / tick) * sigma * 0.6
        h = np.maximum(o, c) + np.floor(np.abs(z[1]) * wick).astype(np.int64)
        lo = np.maximum(np.minimum(o, c) - np.floor(np.abs(z[2]) * wick).astype(np.int64), 1)

        weekend = 0.75 if ((day + 3) % 7) >= 5 else 1.0  # day 0 was a Thursday
        activity = np.exp(0.45 * z[3] - 0.1) * _PROFILE * weekend * (0.7 + 0.3 * np.abs(ret) / sigma)
        trades = np.maximum(np.rint(spec.trades_per_minute * activity * np.exp(0.15 * z[4])), 1).astype(
            np.int64
        )
        mid = (o + h + lo + c) * (tick / 4.0)  # 1e-8 quote units per whole base unit
        steps = np.rint(spec.quote_volume_per_minute * activity * SCALE / mid * (SCALE / spec.step_units))
        steps = np.maximum(steps, trades).astype(np.int64)  # at least one step per trade
        volume = steps * spec.step_units
        quote = np.rint(volume * mid / SCALE).astype(np.int64)
        taker_frac = np.clip(0.5 + 0.25 * np.tanh(ret / sigma) + 0.05 * z[5], 0.05, 0.95)
        taker = np.floor(steps * taker_frac).astype(np.int64) * spec.step_units
        taker_quote = np.rint(taker * mid / SCALE).astype(np.int64)
        return np.stack(
            [o * tick, h * tick, lo * tick, c * tick, volume, quote, trades, taker, taker_quote]
        ).astype(np.int64)

    def _compute_second_frame(self, name: str, hour: int) -> np.ndarray:
        """The 3600 one-second candles of ``hour``, cut from its minutes (a (9, 3600) int64 frame)."""
        spec = self._by_name[name]
        day, h_in_day = divmod(hour, 24)
        m = self._minute_frame(name, day)[:, h_in_day * 60 : h_in_day * 60 + 60]
        rng = self._rng(self._keys[name], _LEVEL_SECOND, hour)
        tick, step = spec.tick_units, spec.step_units

        weights = rng.gamma(0.7, size=(60, 60))
        trades = rng.multinomial(m[_TRADES], weights / weights.sum(axis=1, keepdims=True)).astype(np.int64)
        active = trades > 0

        o, hi, lo, c = (m[i] // tick for i in (_OPEN, _HIGH, _LOW, _CLOSE))
        z = rng.standard_normal((3, 60, 60))
        sd = (hi - lo) / (3.0 * np.sqrt(active.sum(axis=1))) + 0.3
        walk = np.cumsum(z[0] * active, axis=1)
        cum = np.cumsum(active, axis=1)
        frac = cum / cum[:, -1:]
        path = o[:, None] + (c - o)[:, None] * frac + sd[:, None] * (walk - frac * walk[:, -1:])
        close = np.clip(np.rint(path).astype(np.int64), lo[:, None], hi[:, None])
        close[:, -1] = c
        open_ = np.concatenate([o[:, None], close[:, :-1]], axis=1)

        bump = np.floor(np.abs(z[1:]) * sd[None, :, None] * 0.5).astype(np.int64) * active
        s_hi = np.minimum(np.maximum(open_, close) + bump[0], hi[:, None])
        s_lo = np.maximum(np.minimum(open_, close) - bump[1], lo[:, None])
        rows = np.arange(60)
        s_hi[rows, np.argmax(np.where(active, s_hi, -1), axis=1)] = hi
        s_lo[rows, np.argmin(np.where(active, s_lo, np.iinfo(np.int64).max), axis=1)] = lo

        extra = _split(m[_VOL] // step - m[_TRADES], trades * rng.gamma(2.0, size=(60, 60)))
        vol_steps = trades + extra
        mid = (open_ + close + s_hi + s_lo).astype(np.float64)
        quote = _split(m[_QUOTE], vol_steps * mid)
        taker = np.minimum(_split(m[_TAKER] // step, vol_steps.astype(np.float64)), vol_steps)
        taker_quote = _split(m[_TAKER_QUOTE], taker * mid)
        frame = np.stack(
            [
                open_ * tick,
                s_hi * tick,
                s_lo * tick,
                close * tick,
                vol_steps * step,
                quote,
                trades,
                taker * step,
                taker_quote,
            ]
        )
        return frame.reshape(9, 3600).astype(np.int64)


def _mix(beta: float, market: np.ndarray | float, own: np.ndarray | float) -> np.ndarray | float:
    """Unit-variance mix of a market shock and an idiosyncratic shock with correlation ``beta``."""
    return beta * market + math.sqrt(1.0 - beta * beta) * own


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
