"""graph-builder: candles of N assets -> correlation-graph snapshots (:class:`GraphSnapshot`).

Plain numpy, vectorised over assets (500 assets x 240 minutes take a few milliseconds a snapshot).

**Series.** Candles (the store's documents: decimal strings) are aligned on a regular grid of open
times. A missing candle is *no trade, no price change*: the close is forward-filled, so its log
return is 0 and the move across a gap lands on the first candle after it; its volume is 0. Before a
symbol's first candle in the loaded range the price is that candle's open (returns 0 there too).
The log return of grid step ``k`` is ``log close[k] - log close[k-1]``, i.e. the return of the candle
that opens at ``k`` (known once it closes, at ``k + interval``).

**Snapshots** at times ``t`` (every ``cadence_minutes``, e.g. hourly) use only the candles with
``open_time`` in the trailing window ``[t - window_minutes, t)``, all of them closed at ``t``:

* the relation matrix: Pearson correlation of the window's log returns, or Spearman's (Pearson of
  average ranks, ties averaged, computed with argsort);
* correlation edges (undirected, both directions in ``edge_index``, ``edge_lag`` 0): pairs with
  ``|rho| >= threshold``; with ``top_k > 0`` only pairs among the ``top_k`` strongest of either end
  (and still over the threshold; ``threshold=0`` gives a pure top-k graph);
* lead-lag edges (directed leader -> follower, ``edge_lag`` = lag in candles): the strongest
  lagged correlation ``corr(r_i[s - lag], r_j[s])`` over ``lag = 1..max_lag`` when it is at least
  ``max(lead_threshold, 4 / sqrt(n))`` (n returns: keeps chance out at small windows) and stronger
  than the reverse direction;
* node features (:data:`FEATURE_NAMES`): window return, realised volatility, the return and
  volatility of the last period (``cadence_minutes``), mean and standard deviation of
  ``log1p(quote volume)``, and the share of the window's candles present;
* the target ``next_return``: the log return over ``[t, t + cadence)``, kept apart from the
  features; ``None`` when that period is not wholly inside the loaded data.

A snapshot whose window has less than ``min_coverage`` of its candles for some symbol is skipped
(e.g. the first hours of a range with no earlier day loaded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np

from ..intervals import MINUTE_MS, interval_ms
from .snapshot import FloatArray, GraphSnapshot, IntArray

Measure = Literal["pearson", "spearman"]
MEASURES: tuple[str, ...] = ("pearson", "spearman")

#: Node feature columns, in order.
FEATURE_NAMES: tuple[str, ...] = (
    "ret_window",
    "vol_window",
    "ret_period",
    "vol_period",
    "log_volume_mean",
    "log_volume_std",
    "coverage",
)

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class GraphParams:
    """How snapshots are built (also stored with each snapshot)."""

    interval: str = "1m"
    cadence_minutes: int = 60
    window_minutes: int = 240
    measure: str = "pearson"
    threshold: float = 0.5
    top_k: int = 0
    max_lag: int = 5
    lead_threshold: float = 0.4
    min_coverage: float = 0.5

    def __post_init__(self) -> None:
        step = interval_ms(self.interval)
        if self.measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, not {self.measure!r}")
        for name in ("cadence_minutes", "window_minutes"):
            value = getattr(self, name)
            if value <= 0 or (value * MINUTE_MS) % step:
                raise ValueError(
                    f"{name}={value} must be a positive multiple of the interval {self.interval}"
                )
        if DAY_MS % (self.cadence_minutes * MINUTE_MS):
            raise ValueError("cadence_minutes must divide a day")
        if self.window_minutes * MINUTE_MS // step < 3:
            raise ValueError("the window must hold at least 3 candles")
        if not 0.0 <= self.threshold <= 1.0 or not 0.0 <= self.lead_threshold <= 1.0:
            raise ValueError("thresholds must be in [0, 1]")
        if self.top_k < 0 or self.max_lag < 0:
            raise ValueError("top_k and max_lag must be >= 0")
        if not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError("min_coverage must be in [0, 1]")

    @property
    def step_ms(self) -> int:
        return interval_ms(self.interval)

    @property
    def window_steps(self) -> int:
        return self.window_minutes * MINUTE_MS // self.step_ms

    @property
    def cadence_steps(self) -> int:
        return self.cadence_minutes * MINUTE_MS // self.step_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- series ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class AlignedSeries:
    """Candles of ``symbols`` on the grid ``start_ms + k * step_ms``, ``k < T``."""

    symbols: list[str]
    start_ms: int
    step_ms: int
    #: ``[N, T]`` log return of the candle opening at grid step k (0 where absent).
    returns: FloatArray
    #: ``[N, T]`` ``log1p(quote_volume)`` (0 where absent).
    log_volume: FloatArray
    #: ``[N, T]`` whether the candle exists.
    present: np.ndarray
    #: Grid index just after the last candle of any symbol (data end).
    data_end: int

    @property
    def length(self) -> int:
        return int(self.returns.shape[1])

    def index(self, t_ms: int) -> int:
        return (t_ms - self.start_ms) // self.step_ms


def align_candles(
    candles: Mapping[str, Sequence[Mapping[str, Any]]],
    symbols: Sequence[str],
    interval: str,
    start_ms: int,
    end_ms: int,
) -> AlignedSeries:
    """Candle documents per symbol (``open_time``, ``open``, ``close``, ``quote_volume`` as decimal
    strings or numbers) on the grid ``[start_ms, end_ms)``; candles outside it are ignored."""
    step = interval_ms(interval)
    n, t_len = len(symbols), max(0, -(-(end_ms - start_ms) // step))
    close = np.full((n, t_len), np.nan)
    first_open = np.full(n, np.nan)
    qvol = np.zeros((n, t_len))
    present = np.zeros((n, t_len), dtype=bool)
    for i, symbol in enumerate(symbols):
        docs = candles.get(symbol, ())
        if not docs:
            continue
        times = np.fromiter((d["open_time"] for d in docs), dtype=np.int64, count=len(docs))
        keep = (times >= start_ms) & (times < end_ms) & ((times - start_ms) % step == 0)
        if not keep.any():
            continue
        pos = np.flatnonzero(keep)
        idx = (times[pos] - start_ms) // step
        close[i, idx] = [float(docs[j]["close"]) for j in pos]
        qvol[i, idx] = [float(docs[j]["quote_volume"]) for j in pos]
        present[i, idx] = True
        first_open[i] = float(docs[pos[int(np.argmin(idx))]]["open"])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_close = np.log(close)
        log_open = np.log(first_open)
    # Forward fill along time; before the first candle, the first candle's open.
    cols = np.where(present, np.arange(t_len)[None, :], 0)
    np.maximum.accumulate(cols, axis=1, out=cols)
    filled = np.take_along_axis(log_close, cols, axis=1)
    seen = np.maximum.accumulate(present, axis=1) if t_len else present
    filled = np.where(seen, filled, log_open[:, None])
    filled = np.where(np.isfinite(filled), filled, 0.0)  # a symbol without candles: flat
    prev = np.concatenate([np.where(np.isfinite(log_open), log_open, 0.0)[:, None], filled[:, :-1]], axis=1)
    returns = filled - prev if t_len else filled
    last = np.flatnonzero(present.any(axis=0))
    return AlignedSeries(
        symbols=list(symbols),
        start_ms=start_ms,
        step_ms=step,
        returns=returns,
        log_volume=np.log1p(qvol),
        present=present,
        data_end=int(last[-1]) + 1 if last.size else 0,
    )


# -- relations -------------------------------------------------------------------------------------


def average_ranks(x: FloatArray) -> FloatArray:
    """Ranks (0-based) of each column of ``x`` ``[T, N]``, ties getting the average of their ranks."""
    t_len = x.shape[0]
    order = np.argsort(x, axis=0, kind="stable")
    sorted_x = np.take_along_axis(x, order, axis=0)
    pos = np.arange(t_len)[:, None]
    new = np.ones_like(sorted_x, dtype=bool)
    new[1:] = sorted_x[1:] != sorted_x[:-1]
    # First position of each tie run (forward max), last position (backward min).
    first = np.maximum.accumulate(np.where(new, pos, 0), axis=0)
    end = np.ones_like(new)
    end[:-1] = new[1:]
    last = np.flip(np.minimum.accumulate(np.flip(np.where(end, pos, t_len), axis=0), axis=0), axis=0)
    ranks = np.empty_like(x, dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0, axis=0)
    return ranks


def _standardise(x: FloatArray) -> FloatArray:
    """Columns centred and scaled to unit norm (a constant column becomes 0)."""
    xc = x - x.mean(axis=0, keepdims=True)
    norm = np.sqrt((xc * xc).sum(axis=0, keepdims=True))
    return np.divide(xc, norm, out=np.zeros_like(xc), where=norm > 0)


def transform(returns: FloatArray, measure: str) -> FloatArray:
    """What the correlation is taken of: the returns (Pearson) or their average ranks (Spearman)."""
    if measure == "pearson":
        return returns
    if measure == "spearman":
        return average_ranks(returns)
    raise ValueError(f"unknown measure {measure!r}")


def relation_matrix(returns: FloatArray, measure: str = "pearson") -> FloatArray:
    """``[N, N]`` correlation of the columns of ``returns`` ``[T, N]``; 0 where a column is constant."""
    z = _standardise(transform(returns, measure))
    rho = z.T @ z
    np.clip(rho, -1.0, 1.0, out=rho)
    return rho


def lead_lag_matrix(
    returns: FloatArray, max_lag: int, measure: str = "pearson"
) -> tuple[FloatArray, IntArray]:
    """``(rho, lag)``: ``rho[i, j]`` the strongest (by absolute value) ``corr(x_i[s - lag], x_j[s])``
    over ``lag = 1..max_lag`` and ``lag[i, j]`` where it is (0 when ``max_lag`` is 0)."""
    n = returns.shape[1]
    best = np.zeros((n, n))
    best_lag = np.zeros((n, n), dtype=np.int64)
    x = transform(returns, measure)
    for lag in range(1, min(max_lag, x.shape[0] - 3) + 1):
        rho = _standardise(x[:-lag]).T @ _standardise(x[lag:])
        better = np.abs(rho) > np.abs(best)
        best = np.where(better, rho, best)
        best_lag = np.where(better, lag, best_lag)
    np.fill_diagonal(best, 0.0)
    np.fill_diagonal(best_lag, 0)
    return best, best_lag


def correlation_edges(rho: FloatArray, threshold: float, top_k: int = 0) -> tuple[IntArray, FloatArray]:
    """Undirected edges of ``|rho| >= threshold`` (and, with ``top_k``, among the ``top_k`` strongest
    of either end), as both directions: ``([2, E], [E])`` ordered by (source, target)."""
    n = rho.shape[0]
    strength = np.abs(rho)
    np.fill_diagonal(strength, -1.0)
    keep = strength >= threshold
    if top_k > 0 and n > 1:
        k = min(top_k, n - 1)
        top = np.argpartition(-strength, k - 1, axis=1)[:, :k]
        chosen = np.zeros((n, n), dtype=bool)
        np.put_along_axis(chosen, top, True, axis=1)
        keep &= chosen | chosen.T
    np.fill_diagonal(keep, False)
    src, dst = np.nonzero(keep)
    return np.stack([src, dst]).astype(np.int64), rho[src, dst].astype(np.float64)


def lead_lag_edges(
    best: FloatArray, lag: IntArray, threshold: float
) -> tuple[IntArray, FloatArray, IntArray]:
    """Directed edges leader -> follower where ``|best[i, j]| >= threshold`` and beats ``best[j, i]``."""
    strength = np.abs(best)
    keep = (strength >= threshold) & (strength > strength.T) & (lag > 0)
    src, dst = np.nonzero(keep)
    return np.stack([src, dst]).astype(np.int64), best[src, dst].astype(np.float64), lag[src, dst]


# -- snapshots -------------------------------------------------------------------------------------


def snapshot_prefix(interval: str, measure: str) -> str:
    """The id prefix shared by all snapshots of an interval and a measure."""
    return f"corr:{interval}:{measure}:"


def snapshot_id(params: GraphParams, as_of_ms: int) -> str:
    """``corr:<interval>:<measure>:YYYYMMDDTHHMMZ`` (sorts in time order within a prefix)."""
    return snapshot_prefix(params.interval, params.measure) + format_stamp(as_of_ms)


def format_stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%dT%H%MZ")


def day_snapshot_times(day: date, params: GraphParams) -> list[int]:
    """The snapshot times of a daily partition: ``day 00:00`` and every cadence after it in the day
    (their targets lie in the day; their windows may reach into the day before)."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    return list(range(start, start + DAY_MS, params.cadence_minutes * MINUTE_MS))


def build_snapshot(series: AlignedSeries, as_of_ms: int, params: GraphParams) -> GraphSnapshot | None:
    """The snapshot at ``as_of_ms`` from ``series`` (None if its window lacks data, see module doc)."""
    if (as_of_ms - series.start_ms) % series.step_ms:
        raise ValueError("as_of_ms must lie on the candle grid")
    k = series.index(as_of_ms)
    w, c = params.window_steps, params.cadence_steps
    if k - w < 0 or k > series.length:
        return None
    present = series.present[:, k - w : k]
    coverage = present.mean(axis=1)
    if series.returns.shape[0] == 0 or coverage.min() < params.min_coverage:
        return None
    window = series.returns[:, k - w : k]  # [N, W]
    x = window.T  # [W, N]
    rho = relation_matrix(x, params.measure)
    ei, ew = correlation_edges(rho, params.threshold, params.top_k)
    lags = np.zeros(ew.shape[0], dtype=np.int64)
    if params.max_lag > 0:
        best, best_lag = lead_lag_matrix(x, params.max_lag, params.measure)
        lead_thr = max(params.lead_threshold, 4.0 / math.sqrt(w))
        li, lw, ll = lead_lag_edges(best, best_lag, lead_thr)
        ei = np.concatenate([ei, li], axis=1)
        ew = np.concatenate([ew, lw])
        lags = np.concatenate([lags, ll])
    order = np.lexsort((lags, ei[1], ei[0]))
    ei, ew, lags = ei[:, order], ew[order], lags[order]

    last = window[:, w - c :] if c <= w else window
    volume = series.log_volume[:, k - w : k]
    n_present = np.maximum(present.sum(axis=1), 1)
    vol_mean = (volume * present).sum(axis=1) / n_present
    vol_var = (((volume - vol_mean[:, None]) * present) ** 2).sum(axis=1) / n_present
    features = np.stack(
        [
            window.sum(axis=1),
            np.sqrt((window * window).sum(axis=1)),
            last.sum(axis=1),
            np.sqrt((last * last).sum(axis=1)),
            vol_mean,
            np.sqrt(vol_var),
            coverage,
        ],
        axis=1,
    ).astype(np.float64)
    next_return = None
    if k + c <= min(series.length, series.data_end):
        next_return = series.returns[:, k : k + c].sum(axis=1).astype(np.float64)
    return GraphSnapshot(
        snapshot_id=snapshot_id(params, as_of_ms),
        as_of_ms=as_of_ms,
        symbols=list(series.symbols),
        features=features,
        feature_names=list(FEATURE_NAMES),
        edge_index=ei,
        edge_weight=ew,
        next_return=next_return,
        params=params.to_dict(),
        edge_lag=lags,
    )


def build_snapshots(
    candles: Mapping[str, Sequence[Mapping[str, Any]]],
    times_ms: Sequence[int],
    params: GraphParams,
    symbols: Sequence[str] | None = None,
) -> tuple[list[GraphSnapshot], list[int]]:
    """Snapshots at ``times_ms`` from candle documents per symbol (nodes in sorted symbol order).

    The candles may cover more than needed; the grid spans the first window to the last target.
    Returns ``(snapshots, skipped times)``.
    """
    names = sorted(symbols if symbols is not None else candles)
    if not times_ms:
        return [], []
    start = min(times_ms) - params.window_minutes * MINUTE_MS
    end = max(times_ms) + params.cadence_minutes * MINUTE_MS
    series = align_candles(candles, names, params.interval, start, end)
    built: list[GraphSnapshot] = []
    skipped: list[int] = []
    for t in times_ms:
        snap = build_snapshot(series, t, params)
        if snap is None:
            skipped.append(t)
        else:
            built.append(snap)
    return built, skipped


def candle_range(times_ms: Sequence[int], params: GraphParams) -> tuple[int, int]:
    """The open-time range ``[start, end)`` of the candles :func:`build_snapshots` needs."""
    return (
        min(times_ms) - params.window_minutes * MINUTE_MS,
        max(times_ms) + params.cadence_minutes * MINUTE_MS,
    )
