"""Klines in a local time zone: candles whose boundaries a ``timeZone`` moves.

**Time zones** (``timeZone`` of ``klines``): interval boundaries may be those of a local time
``UTC + offset``; a candle whose window is shifted aggregates the active minutes of that window
exactly (the 1m candles are the same in every zone). Where the offset is a multiple of the interval
nothing moves and :mod:`.klines` serves the UTC candles.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from streamforge_pipelines.intervals import DAY_MS, FIXED_INTERVAL_MS, MINUTE_MS, count_open_times

from ..symbols import SymbolSpec
from .base import MINUTES_PER_DAY
from .candles import CandleModel
from .frames import Agg, aggregate_masked, combine, render, render_one
from .opens import Zone, backward, forward

__all__ = ["ZonedModel"]

#: Cached partial-day aggregates (entries).
_DAY_SPLITS = 1 << 16


class ZonedModel(CandleModel):
    """Klines and candle counts on the boundaries of a local time ``UTC + offset``."""

    def _install_caches(self) -> None:
        super()._install_caches()
        self._day_split = lru_cache(maxsize=_DAY_SPLITS)(self._compute_day_split)

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
        zone = Zone(interval, off_ms)
        lo, hi = zone.floor(spec.first_minute_ms), zone.floor(now_ms)
        upper = hi if end_ms is None else min(hi, zone.floor(end_ms))
        step = FIXED_INTERVAL_MS.get(interval)
        if step is not None and step < DAY_MS and not self._down[spec.name]:
            # Every candle from the listing on has an active minute: select, then aggregate at once.
            if start_ms is not None:
                opens = forward(max(lo, zone.ceil(start_ms)), upper, limit, interval)
            else:
                opens = backward(lo, upper, limit, interval)
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
            return None if agg is None else list(render_one(open_ms, end_ms - 1, agg))
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
        has, agg = aggregate_masked(np.concatenate(frames, axis=1), np.concatenate(masks), step // MINUTE_MS)
        assert has.all(), "a selected candle has at least one active minute"
        return [list(r) for r in render(opens, step, agg)]

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
        return combine(present) if present else None

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
        zone = Zone(interval, off_ms)
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
