"""The archive's layout: periods, the intervals as paths spell them, and the path of every file.

``data/<spot|futures/um>/<daily|monthly>/<klines|trades|aggTrades>/<SYMBOL>/[<interval>/]<file>``
(see :mod:`streamforge_pipelines.simulator.archive`): :class:`ArchiveFile` names one zip or its
``.CHECKSUM``, :func:`archive_path` builds a path, :func:`parse_archive_path` reads one.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date

from streamforge_pipelines.intervals import DAY_MS, day_start_ms

__all__ = [
    "DAILY_INTERVALS",
    "DATA_TYPES",
    "MARKET_TYPES",
    "MICROS_FROM_MS",
    "PATH_INTERVALS",
    "ArchiveFile",
    "archive_path",
    "check_market_type",
    "parse_archive_path",
    "period_bounds",
    "rest_interval",
    "uses_micros",
]

#: Interval as spelled in archive paths → REST interval name.
PATH_INTERVALS: dict[str, str] = {
    **{i: i for i in ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")},
    "3d": "3d",
    "1w": "1w",
    "1mo": "1M",
}
_REST_TO_PATH = {rest: path for path, rest in PATH_INTERVALS.items()}
#: Intervals with daily kline files (the official download script's DAILY_INTERVALS).
DAILY_INTERVALS: tuple[str, ...] = tuple(PATH_INTERVALS)[:13]
#: Spot files for periods starting at or after this instant (2025-01-01 UTC) use microseconds.
MICROS_FROM_MS = day_start_ms(date(2025, 1, 1))
#: Market types served: spot and USD-M futures (COIN-M is not modelled).
MARKET_TYPES = ("spot", "um")
DATA_TYPES = ("klines", "trades", "aggTrades")

_DAY_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
_PATH_RE = re.compile(
    r"^data/(?P<market>spot|futures/um|futures/cm)/(?P<freq>daily|monthly)/(?P<dtype>klines|trades|aggTrades)"
    r"/(?P<symbol>[A-Z0-9]{1,20})/(?:(?P<interval>[0-9a-z]{2,3})/)?(?P<file>[A-Za-z0-9.-]+)$"
)


# ---------------------------------------------------------------------------------------- periods


def period_bounds(day_or_month: str) -> tuple[int, int]:
    """``[start, end)`` in ms of a ``YYYY-MM-DD`` day or a ``YYYY-MM`` month (UTC); ValueError otherwise."""
    m = _DAY_RE.match(day_or_month)
    if m:
        d = date(int(m[1]), int(m[2]), int(m[3]))
        start = day_start_ms(d)
        return start, start + DAY_MS
    m = _MONTH_RE.match(day_or_month)
    if m:
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise ValueError(f"invalid month {day_or_month!r}")
        start = day_start_ms(date(year, month, 1))
        return start, start + calendar.monthrange(year, month)[1] * DAY_MS
    raise ValueError(f"period must be YYYY-MM-DD or YYYY-MM, got {day_or_month!r}")


def _is_daily(day_or_month: str) -> bool:
    return _DAY_RE.match(day_or_month) is not None


def rest_interval(interval: str) -> str:
    """Accept the path spelling (``1mo``) or the REST one (``1M``); return the REST name."""
    if interval in PATH_INTERVALS:
        return PATH_INTERVALS[interval]
    if interval in _REST_TO_PATH:
        return interval
    raise ValueError(f"unknown archive interval {interval!r}")


def uses_micros(market_type: str, start_ms: int) -> bool:
    return market_type == "spot" and start_ms >= MICROS_FROM_MS


def check_market_type(market_type: str) -> None:
    if market_type not in MARKET_TYPES:
        raise ValueError(f"market type {market_type!r} is not modelled (served: {', '.join(MARKET_TYPES)})")


# ------------------------------------------------------------------------------------------ paths


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    """One archive zip (``checksum``: its ``.CHECKSUM`` sibling) as named by its path."""

    market_type: str
    daily: bool
    data_type: str
    symbol: str
    #: REST interval name (``1M`` for the path's ``1mo``); None for trades and aggTrades.
    interval: str | None
    period: str
    checksum: bool = False

    @property
    def base_name(self) -> str:
        """File name without extension, e.g. ``BTCUSDT-1h-2023-10-27``."""
        kind = _REST_TO_PATH[self.interval] if self.interval is not None else self.data_type
        return f"{self.symbol}-{kind}-{self.period}"

    @property
    def zip_name(self) -> str:
        return f"{self.base_name}.zip"

    @property
    def path(self) -> str:
        """The path below the site root, ``data/...`` (with ``.CHECKSUM`` for checksum files)."""
        market = "spot" if self.market_type == "spot" else f"futures/{self.market_type}"
        freq = "daily" if self.daily else "monthly"
        parts = ["data", market, freq, self.data_type, self.symbol]
        if self.interval is not None:
            parts.append(_REST_TO_PATH[self.interval])
        parts.append(self.zip_name + (".CHECKSUM" if self.checksum else ""))
        return "/".join(parts)

    @property
    def zip_file(self) -> ArchiveFile:
        """The zip this file is (or whose checksum it is)."""
        if not self.checksum:
            return self
        return ArchiveFile(
            self.market_type, self.daily, self.data_type, self.symbol, self.interval, self.period
        )


def archive_path(
    symbol: str,
    day_or_month: str,
    data_type: str = "klines",
    interval: str | None = None,
    *,
    market_type: str = "spot",
    checksum: bool = False,
) -> str:
    """The ``data/...`` path of a file, e.g. ``archive_path("BTCUSDT", "2023-10-27", "klines", "1h")``."""
    if (data_type == "klines") != (interval is not None):
        raise ValueError("klines files need an interval, trades and aggTrades files none")
    rest = None if interval is None else rest_interval(interval)
    period_bounds(day_or_month)
    return ArchiveFile(
        market_type, _is_daily(day_or_month), data_type, symbol, rest, day_or_month, checksum
    ).path


def parse_archive_path(path: str) -> ArchiveFile | None:
    """The file a ``data/...`` path names, or None when the path is not a well-formed archive path.

    Checks the layout only (directory and file names agree, daily files only for ``1s`` .. ``1d``),
    not whether the symbol exists or the period is available.
    """
    m = _PATH_RE.match(path.lstrip("/"))
    if m is None:
        return None
    market = m["market"].removeprefix("futures/")
    daily = m["freq"] == "daily"
    dtype, symbol, path_interval, file = m["dtype"], m["symbol"], m["interval"], m["file"]
    checksum = file.endswith(".zip.CHECKSUM")
    base = file.removesuffix(".CHECKSUM").removesuffix(".zip")
    if not file.endswith((".zip", ".zip.CHECKSUM")):
        return None
    if (dtype == "klines") != (path_interval is not None):
        return None
    kind = path_interval if path_interval is not None else dtype
    prefix = f"{symbol}-{kind}-"
    if not base.startswith(prefix):
        return None
    period = base[len(prefix) :]
    if not (_DAY_RE if daily else _MONTH_RE).match(period):
        return None
    try:
        period_bounds(period)
    except ValueError:
        return None
    interval = None
    if path_interval is not None:
        if path_interval not in PATH_INTERVALS or (daily and path_interval not in DAILY_INTERVALS):
            return None
        if market == "um" and path_interval == "1s":
            return None
        interval = PATH_INTERVALS[path_interval]
    return ArchiveFile(market, daily, dtype, symbol, interval, period, checksum)
