"""The simulated order book: a pure function of (seed, symbol, 100 ms window), and its diff events.

**The book after window ``w``** (``[100w, 100w + 100)`` ms) is built around the last trade at or
before the window's end (:meth:`~.market.Market.book_levels`): after a taker buy the trade price is
the best ask and the best bid is one tick below; after a taker sell it is the best bid and the
best ask is one tick above. Each side holds :data:`BOOK_LEVELS` consecutive tick levels. The
quantity of a level is a keyed hash of ``(seed, symbol, price)`` and of the level's *epoch*: every
price has its own refresh period (30 s – 1 h) and phase, so a resting level keeps its quantity
until its epoch turns. The two best levels are re-quoted every window (their quantity's parity
follows the window's), so **every window changes the book** — that is what the update ids rely on.

**Update ids**: ``u(w) = 1 + (w - first_window + 1) * UPDATE_STRIDE + hash(w) % UPDATE_STRIDE``
— strictly increasing by 1 … 31 per window, random access. The diff event of window ``w`` has
``U = u(w - 1) + 1`` and ``u = u(w)``; a snapshot of the book after window ``w`` has
``lastUpdateId = u(w)``.

**Diff events** (:func:`diff`): every level whose quantity differs between the books of windows
``w - 1`` and ``w``, with its absolute new quantity, ``"0"`` for a level that left the book; bids in
descending, asks in ascending price order; event time ``E = 100 (w + 1)``. Applying the events after
a snapshot (Binance's procedure, ``reference/BINANCE_API.md`` §5) reproduces every later book.

For a WebSocket ``<symbol>@depth@100ms`` stream: ``Market.depth_updates(symbol, t0, t1)`` returns the
events published in ``[t0, t1)``, ``DepthUpdate.to_event(symbol)`` renders one; ``@depth`` (1000 ms)
is the merge of ten consecutive events (``U`` of the first, ``u`` of the last, later quantities
win); partial-depth ``@depth<N>`` payloads are ``Market.depth_snapshot(symbol, N, t).to_json()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BOOK_LEVELS",
    "UPDATE_STRIDE",
    "WINDOW_MS",
    "BookLevels",
    "DepthSnapshot",
    "DepthUpdate",
    "diff",
    "levels",
    "render_units",
    "update_id",
]

WINDOW_MS = 100
#: Levels per side of the full book (the spot snapshot maximum).
BOOK_LEVELS = 5000
UPDATE_STRIDE = 16
_SCALE = 100_000_000
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def _hash(*parts: int | np.ndarray) -> np.ndarray:
    h = np.zeros(1, dtype=np.uint64)
    for p in parts:
        h = _mix64(h ^ np.asarray(p).astype(np.uint64))
    return h


def render_units(values: np.ndarray, decimals: int = 8) -> list[str]:
    """Render 1e-8 units with ``decimals`` decimals (exact when the values are multiples)."""
    whole, frac = np.divmod(np.asarray(values, dtype=np.int64), _SCALE)
    if decimals <= 0:
        return [str(w) for w in whole.tolist()]
    frac = frac // 10 ** (8 - decimals)
    return [f"{w}.{f:0{decimals}d}" for w, f in zip(whole.tolist(), frac.tolist(), strict=True)]


def update_id(seed: int, key: int, first_window: int, window: int) -> int:
    """``u`` of window ``window`` (the last update id once that window's changes are applied)."""
    jitter = int(_hash(seed, key, 0x5EED, window)[0] % np.uint64(UPDATE_STRIDE))
    return 1 + (window - first_window + 1) * UPDATE_STRIDE + jitter


@dataclass(frozen=True, slots=True)
class BookLevels:
    """A book in integer 1e-8 units: bids best (highest) first, asks best (lowest) first."""

    last_update_id: int
    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray

    @classmethod
    def empty(cls, last_update_id: int) -> BookLevels:
        z = np.zeros(0, dtype=np.int64)
        return cls(last_update_id, z, z, z, z)


def _quantities(seed: int, key: int, ticks: np.ndarray, window: int, lot: int, step: int) -> np.ndarray:
    h = _hash(seed, key, ticks)
    period = (np.uint64(300) + h % np.uint64(35_700)).astype(np.int64)
    phase = ((h >> np.uint64(17)) % period.astype(np.uint64)).astype(np.int64)
    epoch = (window + phase) // period
    r = _mix64(h ^ epoch.astype(np.uint64))
    steps = (np.uint64(1) + r % np.uint64(4 * lot)).astype(np.int64)
    if len(steps):
        steps[0] = 2 * (steps[0] // 2 + 1) + (window & 1)  # the best level is re-quoted every window
    return steps * step


def levels(
    *,
    seed: int,
    key: int,
    window: int,
    first_window: int,
    last_price: int,
    taker_buy: bool,
    tick: int,
    step: int,
    lot: int,
    limit: int,
) -> BookLevels:
    """The ``limit`` best levels per side of the book after ``window`` (see the module docstring)."""
    p = last_price // tick
    best_bid, best_ask = (p - 1, p) if taker_buy else (p, p + 1)
    idx = np.arange(limit, dtype=np.int64)
    bid_ticks = best_bid - idx
    bid_ticks = bid_ticks[bid_ticks >= 1]
    ask_ticks = best_ask + idx
    return BookLevels(
        last_update_id=update_id(seed, key, first_window, window),
        bid_px=bid_ticks * tick,
        bid_qty=_quantities(seed, key, bid_ticks, window, lot, step),
        ask_px=ask_ticks * tick,
        ask_qty=_quantities(seed, key ^ 0xA5A5, ask_ticks, window, lot, step),
    )


#: Levels that enter this many best levels of a side are always (re)sent in the diff, as levels
#: near the top trade on a real book: a client whose snapshot is shallower than the distance the
#: price travelled still learns every level near the top (Binance's caveat in section 5.1).
TOUCH_LEVELS = 100


def _side_diff(
    old_px: np.ndarray, old_qty: np.ndarray, new_px: np.ndarray, new_qty: np.ndarray, *, descending: bool
) -> list[list[str]]:
    _, i_old, i_new = np.intersect1d(old_px, new_px, assume_unique=True, return_indices=True)
    keep_new = np.ones(len(new_px), dtype=bool)
    keep_new[i_new] = False
    keep_new[i_new[new_qty[i_new] != old_qty[i_old]]] = True
    # levels are sorted best first: a level in the new top that was outside the old top is sent
    entering = ~np.isin(new_px[:TOUCH_LEVELS], old_px[:TOUCH_LEVELS], assume_unique=True)
    keep_new[: len(entering)] |= entering
    gone = np.ones(len(old_px), dtype=bool)
    gone[i_old] = False
    px = np.concatenate([new_px[keep_new], old_px[gone]])
    qty = np.concatenate([new_qty[keep_new], np.zeros(int(gone.sum()), dtype=np.int64)])
    order = np.argsort(-px if descending else px, kind="stable")
    return [list(pair) for pair in zip(render_units(px[order]), render_units(qty[order]), strict=True)]


@dataclass(frozen=True, slots=True)
class DepthUpdate:
    """One diff-depth event: ``E``, ``U``, ``u``, ``b`` and ``a`` of a ``depthUpdate`` payload."""

    event_ms: int
    first_update_id: int
    last_update_id: int
    bids: list[list[str]]
    asks: list[list[str]]

    def to_event(self, symbol: str) -> dict[str, Any]:
        """The spot ``<symbol>@depth@100ms`` payload, keys in Binance's order."""
        return {
            "e": "depthUpdate",
            "E": self.event_ms,
            "s": symbol,
            "U": self.first_update_id,
            "u": self.last_update_id,
            "b": self.bids,
            "a": self.asks,
        }


def diff(old: BookLevels, new: BookLevels, event_ms: int) -> DepthUpdate:
    """The event that turns book ``old`` into book ``new`` (consecutive windows)."""
    return DepthUpdate(
        event_ms=event_ms,
        first_update_id=old.last_update_id + 1,
        last_update_id=new.last_update_id,
        bids=_side_diff(old.bid_px, old.bid_qty, new.bid_px, new.bid_qty, descending=True),
        asks=_side_diff(old.ask_px, old.ask_qty, new.ask_px, new.ask_qty, descending=False),
    )


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    """A rendered book: ``GET /api/v3/depth`` (``to_json``) or a partial-depth stream payload."""

    last_update_id: int
    bids: list[list[str]]
    asks: list[list[str]]

    @classmethod
    def from_levels(
        cls, levels: BookLevels, price_decimals: int = 8, qty_decimals: int = 8, price_offset: int = 0
    ) -> DepthSnapshot:
        def side(px: np.ndarray, qty: np.ndarray) -> list[list[str]]:
            return [
                list(pair)
                for pair in zip(
                    render_units(px + price_offset, price_decimals),
                    render_units(qty, qty_decimals),
                    strict=True,
                )
            ]

        return cls(
            levels.last_update_id,
            side(levels.bid_px, levels.bid_qty),
            side(levels.ask_px, levels.ask_qty),
        )

    def to_json(self) -> dict[str, Any]:
        """``{"lastUpdateId", "bids", "asks"}`` in the capture's key order."""
        return {"lastUpdateId": self.last_update_id, "bids": self.bids, "asks": self.asks}
