"""Open times of candles: the grid of an interval in UTC and in a local time, and window selection.

Binance's ``klines`` select candles by open time: up to ``limit`` from a first open time forwards
(:func:`forward`) or the last ``limit`` up to a bound (:func:`backward`). A ``timeZone`` moves the
boundaries of an interval to those of a local time ``UTC + offset`` (:class:`Zone`) unless the
offset is a multiple of the interval (:func:`shifts`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from streamforge_pipelines.intervals import FIXED_INTERVAL_MS, MINUTE_MS, floor_open_time, next_open_time

__all__ = [
    "TZ_MAX_OFFSET",
    "TZ_MIN_OFFSET",
    "Zone",
    "backward",
    "ceil_open_time",
    "check_tz",
    "forward",
    "shifts",
]

#: ``timeZone`` range Binance accepts, in minutes east of UTC: [-12:00, +14:00].
TZ_MIN_OFFSET = -12 * 60
TZ_MAX_OFFSET = 14 * 60


def check_tz(offset_min: int) -> int:
    """``offset_min`` if it is a valid ``timeZone`` offset, else ``ValueError``."""
    if not TZ_MIN_OFFSET <= offset_min <= TZ_MAX_OFFSET:
        raise ValueError(f"time zone offset {offset_min} min outside [-12:00, +14:00]")
    return offset_min


def shifts(interval: str, offset_min: int) -> bool:
    """Whether a ``timeZone`` offset moves the boundaries of ``interval`` (not a multiple of it)."""
    if offset_min == 0:
        return False
    if interval == "1M":
        return True
    return (offset_min * MINUTE_MS) % FIXED_INTERVAL_MS[interval] != 0


@dataclass(frozen=True, slots=True)
class Zone:
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


def ceil_open_time(ms: int, interval: str) -> int:
    """The first open time at or after ``ms``."""
    t = floor_open_time(ms, interval)
    return t if t == ms else next_open_time(t, interval)


def forward(first: int, upper: int, limit: int, interval: str) -> list[int]:
    """Up to ``limit`` open times from ``first`` to ``upper`` inclusive."""
    if first > upper:
        return []
    step = FIXED_INTERVAL_MS.get(interval)
    if step is not None:
        last = min(upper, first + (limit - 1) * step)
        return list(range(first, last + 1, step))
    return list(_take(_months_from(first, upper), limit))


def backward(lo: int, upper: int, limit: int, interval: str) -> list[int]:
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
