"""What the market is a function of, and when each symbol trades: listing and downtime.

:class:`MarketBase` holds the configuration of a market (seed, symbols, clusters, lead-lag
relations, downtime windows) and the per-symbol keys of its randomness; every layer of the model
(:mod:`.prices`, :mod:`.trades`, :mod:`.candles`, :mod:`.zones`, :mod:`.klines`, :mod:`.depth`)
builds on it.

**Listing and downtime**: minutes before the listing minute and minutes inside a
:class:`~..config.DowntimeWindow` have no trades and no candles; a candle of a larger interval
exists when at least one of its minutes is active and aggregates the active ones.

Each layer keeps per-instance caches of its pure ``_compute_*`` methods (a module-level cache would
mix seeds and keep instances alive); :meth:`MarketBase._install_caches` is the hook each layer
extends to add its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from streamforge_pipelines.intervals import DAY_MS, MINUTE_MS

from ..config import Cluster, DowntimeWindow, LeadLag, SimulatorConfig, check_structure
from ..symbols import DEFAULT_SYMBOLS, SymbolSpec, UnknownSymbolError

__all__ = ["MINUTES_PER_DAY", "SECOND_MS", "MarketBase", "symbol_key"]

SECOND_MS = 1_000
MINUTES_PER_DAY = DAY_MS // MINUTE_MS


def symbol_key(name: str) -> int:
    """A stable 64-bit key per symbol (``hash()`` is salted per process, this is not)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") | 1


def _merge(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching ``[start, end)`` windows merged, in time order."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(windows):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


class MarketBase:
    """A market's configuration, symbol lookup and trading calendar (listing, downtime)."""

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
        self._keys = {s.name: symbol_key(s.name) for s in self.symbols}
        self._cluster_of = {
            s: (symbol_key(f"cluster:{c.name}"), c.loading) for c in self.clusters for s in c.symbols
        }
        self._leader_of = {ll.follower: ll for ll in self.lead_lags}
        self._down: dict[str, list[tuple[int, int]]] = {
            s.name: _merge([(w.start_ms, w.end_ms) for w in self.downtime if w.applies_to(s.name)])
            for s in self.symbols
        }
        self._install_caches()

    def _install_caches(self) -> None:
        """Wrap this layer's pure ``_compute_*`` methods in per-instance caches (extended by each layer)."""

    def symbol(self, name: str) -> SymbolSpec:
        """The listed symbol ``name``; :class:`UnknownSymbolError` if the exchange has none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownSymbolError(name) from None

    # ------------------------------------------------------------------ listing and downtime

    def _minute_active(self, spec: SymbolSpec, minute_ms: int) -> bool:
        """Whether the minute opening at ``minute_ms`` trades (listed, not in downtime)."""
        if minute_ms < spec.first_minute_ms:
            return False
        return not any(s <= minute_ms < e for s, e in self._down[spec.name])

    def _active_minutes(self, spec: SymbolSpec, day: int) -> int:
        """How many minutes of ``day`` (days since the epoch) trade."""
        day_ms = day * DAY_MS
        start = max(day_ms, spec.first_minute_ms)
        if start >= day_ms + DAY_MS:
            return 0
        down = sum(max(0, min(e, day_ms + DAY_MS) - max(s, start)) for s, e in self._down[spec.name])
        return (day_ms + DAY_MS - start - down) // MINUTE_MS

    def _active_mask(self, spec: SymbolSpec, day: int) -> np.ndarray | None:
        """The trading minutes of ``day`` as a 1440-long mask; None when all of them trade."""
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
