"""The book streams: diff depth, partial depth and the book ticker.

* ``<s>@depth@100ms`` / ``<s>@depth`` (1000 ms): the model's diff events (``Market.depth_updates``);
  ``@depth`` merges the ten 100 ms events of its second (``U`` of the first, ``u`` of the last,
  later quantities win). Only windows in which the book changed are sent; ``depth_gap_rate`` of
  :class:`~.config.WsConfig` drops a seeded share of them (the next ``U`` jumps past ``u + 1``).
* ``<s>@depth<5|10|20>[@100ms]``: ``{"lastUpdateId", "bids", "asks"}`` every 1000 (100) ms.
* ``<s>@bookTicker``: the best levels after each 100 ms window in which they changed; ``u`` is the
  window's update id, the same sequence as the diff events' ``u``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from .. import book
from .names import StreamSpec
from .stream import MAX_CATCH_UP_MS, Shared, Stream

__all__ = ["BookTickerStream", "DepthStream", "PartialDepthStream", "merge_events", "merge_side"]


def merge_side(updates: Iterable[list[list[str]]], descending: bool) -> list[list[str]]:
    levels: dict[str, str] = {}
    for side in updates:
        for p, q in side:
            levels[p] = q
    return [[p, levels[p]] for p in sorted(levels, key=Decimal, reverse=descending)]


def merge_events(group: list[book.DepthUpdate]) -> book.DepthUpdate:
    """Consecutive diff events as one: ``U`` of the first, ``u`` of the last, later quantities win."""
    if len(group) == 1:
        return group[0]
    return book.DepthUpdate(
        event_ms=group[-1].event_ms,
        first_update_id=group[0].first_update_id,
        last_update_id=group[-1].last_update_id,
        bids=merge_side((g.bids for g in group), descending=True),
        asks=merge_side((g.asks for g in group), descending=False),
    )


class DepthStream(Stream):
    """Diff depth: the model's 100 ms events, or their merge per second; gaps as configured."""

    def collect(self, now_ms: int) -> list[tuple[int, dict[str, Any]]]:
        shared, spec, p = self.shared, self.spec, self.spec.period_ms
        now_ms = min(now_ms, self.cursor + MAX_CATCH_UP_MS)  # a lagging stream catches up in steps
        if p == book.WINDOW_MS:
            merged = shared.depth.events(spec.symbol, self.cursor, now_ms)
            self.cursor = max(self.cursor, now_ms)
        else:  # whole seconds (E - 1000, E] only, the first one included when subscribed mid-second
            base, end = self.cursor // p * p, now_ms // p * p
            if end <= base:
                return []
            groups: dict[int, list[book.DepthUpdate]] = {}
            for ev in shared.depth.events(spec.symbol, base, end):
                groups.setdefault(-(-ev.event_ms // p) * p, []).append(ev)
            merged = [merge_events(g) for _, g in sorted(groups.items())]
            self.cursor = end
        rate = shared.config.depth_gap_rate
        out = []
        for ev in merged:
            if not (ev.bids or ev.asks) or (rate and shared.rng.random() < rate):
                continue
            payload = ev.to_event(spec.symbol)
            payload["E"] *= self.mult
            out.append((ev.event_ms, payload))
        return out


class PartialDepthStream(Stream):
    def at(self, e: int) -> dict[str, Any] | None:
        return self.shared.market.depth_snapshot(self.spec.symbol, self.spec.levels, e).to_json()


class BookTickerStream(Stream):
    def __init__(self, spec: StreamSpec, shared: Shared, start_ms: int, time_mult: int) -> None:
        super().__init__(spec, shared, start_ms, time_mult)
        self._last: tuple[str, ...] = ()

    def at(self, e: int) -> dict[str, Any] | None:
        snap = self.shared.market.depth_snapshot(self.spec.symbol, 1, e)
        if not snap.bids or not snap.asks:
            return None
        best = (*snap.bids[0], *snap.asks[0])
        if best == self._last:
            return None
        self._last = best
        b, bq, a, aq = best
        return {"u": snap.last_update_id, "s": self.spec.symbol, "b": b, "B": bq, "a": a, "A": aq}
