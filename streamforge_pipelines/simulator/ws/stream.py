"""What every stream shares: the base class, the silent stream, and the state of one route set.

A :class:`Stream` emits the payloads whose event time falls in ``(cursor, now]`` as the
connection's simulated clock passes them; each stream kind (:mod:`.klines`, :mod:`.trades`,
:mod:`.depth`, :mod:`.usdm`) says what its payload at an event time is. The connections of one
route set share a :class:`Shared`: the market, the clock, the config, one :class:`DepthCache` and
the seeded fault decisions.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .. import book
from ..clock import Clock
from ..market import Market
from .config import WsConfig
from .names import StreamSpec

__all__ = ["MAX_CATCH_UP_MS", "DepthCache", "Shared", "SilentStream", "Stream"]

_DEPTH_CACHE = 20_000
#: Simulated time one depth stream computes per pump round (the model needs ~1 ms per 100 ms window).
MAX_CATCH_UP_MS = 2_000


class DepthCache:
    """Diff events per (symbol, 100 ms window), shared by the connections of one route set."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self._events: OrderedDict[tuple[str, int], book.DepthUpdate | None] = OrderedDict()

    def events(self, symbol: str, after_ms: int, upto_ms: int) -> list[book.DepthUpdate]:
        """Diff events with ``after_ms < E <= upto_ms`` (window ``w`` publishes at ``E = 100 (w + 1)``)."""
        w_lo, w_hi = after_ms // book.WINDOW_MS, upto_ms // book.WINDOW_MS - 1
        out: list[book.DepthUpdate] = []
        w = w_lo
        while w <= w_hi:
            key = (symbol, w)
            if key in self._events:
                self._events.move_to_end(key)
                ev = self._events[key]
                if ev is not None:
                    out.append(ev)
                w += 1
                continue
            run_end = w
            while run_end < w_hi and (symbol, run_end + 1) not in self._events:
                run_end += 1
            got = {
                e.event_ms: e
                for e in self.market.depth_updates(
                    symbol, (w + 1) * book.WINDOW_MS, (run_end + 1) * book.WINDOW_MS + 1
                )
            }
            for v in range(w, run_end + 1):
                ev = got.get((v + 1) * book.WINDOW_MS)
                self._events[(symbol, v)] = ev
                if ev is not None:
                    out.append(ev)
            w = run_end + 1
        while len(self._events) > _DEPTH_CACHE:
            self._events.popitem(last=False)
        return out


@dataclass(slots=True)
class Shared:
    market: Market
    clock: Clock
    config: WsConfig
    depth: DepthCache
    rng: random.Random


class Stream:
    """One subscribed stream: emits the payloads with event time in ``(cursor, now]``."""

    def __init__(self, spec: StreamSpec, shared: Shared, start_ms: int, time_mult: int) -> None:
        self.spec = spec
        self.shared = shared
        self.cursor = start_ms
        self.mult = time_mult
        self.name_bytes = spec.name.encode()

    def next_due(self) -> int:
        """Simulated time of the next possible event."""
        p = self.spec.period_ms
        return (self.cursor // p + 1) * p

    def collect(self, now_ms: int) -> list[tuple[int, dict[str, Any]]]:
        """(E, payload) of the events in ``(cursor, now_ms]``; advances the cursor."""
        out: list[tuple[int, dict[str, Any]]] = []
        p = self.spec.period_ms
        e = (self.cursor // p + 1) * p
        while e <= now_ms:
            payload = self.at(e)
            if payload is not None:
                out.append((e, payload))
            e += p
        self.cursor = max(self.cursor, now_ms)
        return out

    def at(self, e: int) -> dict[str, Any] | None:  # pragma: no cover - overridden
        raise NotImplementedError


class SilentStream(Stream):
    """A well-formed stream of a symbol the exchange does not list: accepted, never sends (as on Binance).

    Only that case: a stream of the other USD-M route is refused instead (:mod:`.connection`).
    """

    def next_due(self) -> int:
        return 1 << 62

    def collect(self, now_ms: int) -> list[tuple[int, dict[str, Any]]]:
        return []
