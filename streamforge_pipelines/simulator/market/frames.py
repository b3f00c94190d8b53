"""Candle frames: a (9, n) int64 array, one column per candle, and their exact aggregation and rendering.

A frame's rows are :data:`OPEN`, :data:`HIGH`, :data:`LOW`, :data:`CLOSE` and the sums :data:`SUMS`
(base volume, quote volume, trades, taker-buy base and quote volume), all integers in 1e-8 units
(trades: a count). Groups of candles aggregate exactly (first open, max high, min low, last close,
summed sums); :func:`render` turns a frame into Binance's 12-field kline rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np

from ..symbols import SCALE, format_units

__all__ = [
    "CLOSE",
    "HIGH",
    "LOW",
    "OPEN",
    "QUOTE",
    "SUMS",
    "TAKER",
    "TAKER_QUOTE",
    "TRADES",
    "VOL",
    "Agg",
    "agg_one",
    "aggregate",
    "aggregate_masked",
    "combine",
    "render",
    "render_one",
]

# Rows of a frame: a (9, n) int64 array, one column per candle.
OPEN, HIGH, LOW, CLOSE, VOL, QUOTE, TRADES, TAKER, TAKER_QUOTE = range(9)
SUMS = [VOL, QUOTE, TRADES, TAKER, TAKER_QUOTE]

#: One candle's aggregate as Python ints, in frame row order.
Agg = tuple[int, int, int, int, int, int, int, int, int]


def aggregate(frame: np.ndarray, k: int) -> np.ndarray:
    """Aggregate consecutive groups of ``k`` candles of a frame whose length is a multiple of ``k``."""
    g = frame.reshape(9, -1, k)
    out = np.empty((9, g.shape[1]), dtype=np.int64)
    out[OPEN] = g[OPEN, :, 0]
    out[HIGH] = g[HIGH].max(axis=1)
    out[LOW] = g[LOW].min(axis=1)
    out[CLOSE] = g[CLOSE, :, -1]
    out[SUMS] = g[SUMS].sum(axis=2)
    return out


def agg_one(frame: np.ndarray) -> Agg:
    """One aggregate (Python ints) over all candles of a non-empty frame."""
    sums = frame[SUMS].sum(axis=1).tolist()
    return (
        int(frame[OPEN, 0]),
        int(frame[HIGH].max()),
        int(frame[LOW].min()),
        int(frame[CLOSE, -1]),
        *sums,
    )  # type: ignore[return-value]


def combine(parts: Sequence[Agg]) -> Agg:
    """Aggregate consecutive aggregates into one."""
    first, last = parts[0], parts[-1]
    return (
        first[OPEN],
        max(p[HIGH] for p in parts),
        min(p[LOW] for p in parts),
        last[CLOSE],
        *(sum(p[i] for p in parts) for i in SUMS),
    )  # type: ignore[return-value]


def render(open_times: Sequence[int], step_ms: int, frame: np.ndarray) -> list[tuple]:
    """Binance's 12-field kline rows for the columns of an aggregated frame."""
    whole, frac = np.divmod(frame, SCALE)
    o, h, lo, c, v, q, tb, tq = (
        [f"{w}.{f:08d}" for w, f in zip(whole[i].tolist(), frac[i].tolist(), strict=True)]
        for i in (OPEN, HIGH, LOW, CLOSE, VOL, QUOTE, TAKER, TAKER_QUOTE)
    )
    if isinstance(open_times, range):
        close_times: Sequence[int] = range(
            open_times.start + step_ms - 1, open_times.stop + step_ms - 1, step_ms
        )
    else:
        close_times = [t + step_ms - 1 for t in open_times]
    trades = frame[TRADES].tolist()
    return list(zip(open_times, o, h, lo, c, v, close_times, q, trades, tb, tq, repeat("0")))


def aggregate_masked(frame: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`aggregate` over the active (``mask``) columns only: (groups with any, aggregate)."""
    g = frame.reshape(9, -1, k)
    m = mask.reshape(-1, k)
    has = m.any(axis=1)
    first = np.argmax(m, axis=1)
    last = k - 1 - np.argmax(m[:, ::-1], axis=1)
    rows = np.arange(m.shape[0])
    out = np.empty((9, m.shape[0]), dtype=np.int64)
    out[OPEN] = g[OPEN, rows, first]
    out[CLOSE] = g[CLOSE, rows, last]
    out[HIGH] = np.where(m, g[HIGH], np.iinfo(np.int64).min).max(axis=1)
    out[LOW] = np.where(m, g[LOW], np.iinfo(np.int64).max).min(axis=1)
    out[SUMS] = np.where(m[None], g[SUMS], 0).sum(axis=2)
    return has, out[:, has]


def render_one(open_ms: int, close_ms: int, agg: Agg) -> tuple:
    f = format_units
    return (
        open_ms,
        f(agg[OPEN]),
        f(agg[HIGH]),
        f(agg[LOW]),
        f(agg[CLOSE]),
        f(agg[VOL]),
        close_ms,
        f(agg[QUOTE]),
        agg[TRADES],
        f(agg[TAKER]),
        f(agg[TAKER_QUOTE]),
        "0",
    )
