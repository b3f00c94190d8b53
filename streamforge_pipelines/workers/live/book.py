"""One symbol's local order book, kept by Binance's documented procedure (``BINANCE_API.md`` §5).

Pure: no network, no Kafka, no Dagster. The stream worker feeds it the decoded payloads of a
symbol's ``<s>@depth@100ms`` (or ``@depth``) and ``<s>@bookTicker`` streams and the REST depth
snapshots it asks for; :class:`~.book_keeper.BookKeeper` is the small async owner of a symbol
set's books that fetches those snapshots through an injected ``fetch(symbol)``.

**The procedure.** Diff events are buffered until a snapshot arrives (the first buffered event
answers :data:`NEED_SNAPSHOT`). A snapshot that no buffered or later event can continue is *stale*
and must be fetched again (``stale_snapshot``): on spot ``lastUpdateId + 1 < U`` of the first
buffered event; on USD-M ``lastUpdateId < U`` and ``lastUpdateId != pu`` of that event. (The spot
doc's step 4 also refuses ``lastUpdateId == U - 1``, whose first event its own step 5 accepts: the
event continues the snapshot exactly, so this book takes it instead of paying another fetch.)
Then:

* **spot** (§5.1, with the 2024-12 and 2025-11 corrections): an event with ``u <= local id`` is
  ignored (already in the book); ``U > local id + 1`` is a gap; anything else is applied and the
  local id becomes ``u`` — so the first event after the snapshot may straddle it
  (``U <= lastUpdateId + 1 <= u + 1``) and later ones follow with ``U == previous u + 1``;
* **USD-M** (§5.2): ``u <= local id`` is ignored (the doc drops ``u < lastUpdateId``; the event with
  ``u == lastUpdateId`` is already in the snapshot, so ignoring it leaves the same book); the first
  event applied must satisfy ``U <= lastUpdateId <= u`` or continue it (``pu == lastUpdateId``, the
  same rule as every later event); afterwards ``pu == previous u`` or it is a gap (on futures ``U``
  is generally not ``pu + 1``).

Levels carry absolute quantities; a zero quantity (``"0"``, ``"0.00000000"``, ...) deletes the level
and deleting an absent level is normal. Levels beyond the snapshot's depth are unknown until they
change (§5.1 caveat): compare a book with the truth within the snapshot's price band.

**Resyncs** (per symbol, never silent): a gap, a stale snapshot, the book crossing itself (best bid
>= best ask after an event), a ``bookTicker`` disagreeing with the book at an update id the book
stood at (price and quantity of both best levels; tickers at ids the book never reached are not
compared: with ``@depth`` every 250 ms most ticker ids are between events), and a buffer overflow
(``max_buffer`` events waiting for a snapshot). Each discards only this symbol's book, counts the
reason in :attr:`SymbolBook.resyncs` and answers ``RESYNC[reason]``; the event that revealed it (if
one did) is kept as the first of the new buffer, so the next snapshot can continue from it.

**Outcomes** (:class:`Outcome`, shared constants, no allocation per event): ``applied``,
``ignored``, ``buffered``, ``need_snapshot`` (the first event was buffered: fetch a snapshot),
``synced`` (a snapshot, or the event that completed a held one, made the book live) and
``resync`` with a :class:`Reason`. ``outcome.needs_snapshot`` is true for ``need_snapshot`` and
``resync``.

**Speed.** Prices are never parsed as ``Decimal``: each side is a dict ``price string -> quantity
string`` (an update of an existing level is one dict store, no parsing) beside a sorted list of
float keys with the best price at the *end* (bids ascending, asks negated), so inserts and deletes
near the top move few list slots; ``float(price)`` is computed only when a level enters or leaves,
and the key list changes once per side and event (a bisect per key for a few, one merge or one copy
for many: a price jump that replaces thousands of levels costs no list shift per level). Float keys
order decimal strings exactly (Binance sends at most 8 decimals: far below a double's 15–17
significant digits), and two spellings of one price (``"1.10"``, ``"1.1"``) meet at one float key,
so they stay one level.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, insort
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "APPLIED",
    "BUFFERED",
    "DEFAULT_MAX_BUFFER",
    "IGNORED",
    "MARKETS",
    "NEED_SNAPSHOT",
    "RESYNC",
    "SYNCED",
    "Kind",
    "Outcome",
    "Reason",
    "SymbolBook",
]

log = logging.getLogger(__name__)

#: Markets a book can follow: Binance spot (§5.1) and USD-M futures (§5.2).
MARKETS = ("spot", "usdm")
#: Diff events a book buffers while it waits for a snapshot (100 s of ``@depth@100ms``).
DEFAULT_MAX_BUFFER = 1000
#: Recent update ids whose best levels are kept to compare a ``bookTicker`` that arrives late.
TICKER_MEMORY = 64

#: Every spelling of zero a Binance quantity takes ("0", "0.0", ..., 18 decimals).
_ZEROS = frozenset(["0", *("0." + "0" * k for k in range(1, 19))])

Level = list[str]
Side = list[Level]
Best = tuple[str | None, str | None, str | None, str | None]


class Kind(StrEnum):
    """What a call did to the book (see the module docstring)."""

    APPLIED = "applied"
    IGNORED = "ignored"
    BUFFERED = "buffered"
    NEED_SNAPSHOT = "need_snapshot"
    SYNCED = "synced"
    RESYNC = "resync"


class Reason(StrEnum):
    """Why a symbol must be synchronised again from a new snapshot."""

    GAP = "gap"
    STALE_SNAPSHOT = "stale_snapshot"
    CROSSED = "crossed"
    TICKER_MISMATCH = "ticker_mismatch"
    BUFFER_OVERFLOW = "buffer_overflow"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer of one call: its kind and, for ``resync``, the reason."""

    kind: Kind
    reason: Reason | None = None

    @property
    def needs_snapshot(self) -> bool:
        """Whether the caller should fetch a snapshot now (``need_snapshot`` or ``resync``)."""
        return self.kind is Kind.NEED_SNAPSHOT or self.kind is Kind.RESYNC

    def __str__(self) -> str:
        return self.kind.value if self.reason is None else f"{self.kind.value}:{self.reason.value}"


APPLIED = Outcome(Kind.APPLIED)
IGNORED = Outcome(Kind.IGNORED)
BUFFERED = Outcome(Kind.BUFFERED)
NEED_SNAPSHOT = Outcome(Kind.NEED_SNAPSHOT)
SYNCED = Outcome(Kind.SYNCED)
#: ``RESYNC[reason]``: the outcome of each resync reason.
RESYNC: dict[Reason, Outcome] = {r: Outcome(Kind.RESYNC, r) for r in Reason}


# ---------------------------------------------------------------------- the sides of a book


def _apply_side(
    levels: Iterable[Level], qty: dict[str, str], keys: list[float], names: dict[float, str], neg: bool
) -> list[float]:
    """Set each ``[price, qty]`` of an event on one side (absolute quantities; zero deletes).

    ``qty``: price string -> quantity string; ``keys``: the sorted float keys (best last; asks
    negated); ``names``: float key -> the price string held in ``qty``. Returns the side's keys
    (``keys`` itself, or a new list when many changed). A level that only changes quantity costs a
    dict store; ``float`` is parsed only for a level that enters or leaves, and the key list is
    changed once per event (:func:`_remove_keys`, :func:`_insert_keys`).
    """
    zeros = _ZEROS
    gone = _GONE
    new = _NEW
    for p, q in levels:
        if p in qty:
            if q in zeros:
                del qty[p]
                k = -float(p) if neg else float(p)
                del names[k]
                gone.append(k)
            else:
                qty[p] = q
            continue
        k = -float(p) if neg else float(p)
        old = names.get(k)  # None: a new price; else the same price spelled another way
        if q in zeros:
            if old is not None:
                del qty[old], names[k]
                gone.append(k)
            continue
        if old is None:
            new.append(k)
        else:
            del qty[old]
        names[k] = p
        qty[p] = q
    if gone:
        keys = _remove_keys(keys, gone)
        gone.clear()
    if new:
        keys = _insert_keys(keys, new)
        new.clear()
        if len(keys) != len(names):  # a price repeated within one event: rebuild from the truth
            keys = sorted(names)
    return keys


#: Scratch lists of :func:`_apply_side` (books are used from one thread; emptied after each side).
_GONE: list[float] = []
_NEW: list[float] = []
#: Up to this many keys are inserted / removed one by one (bisect); more go through one pass.
_FEW = 16


def _remove_keys(keys: list[float], ks: list[float]) -> list[float]:
    """``keys`` without ``ks`` (each removed once where present)."""
    if len(ks) <= _FEW:
        for k in ks:
            i = bisect_left(keys, k)
            if i < len(keys) and keys[i] == k:
                del keys[i]
        return keys
    ks.sort()
    out: list[float] = []
    lo, n = 0, len(keys)
    for k in ks:  # one copy of the kept runs instead of a list shift per key
        i = bisect_left(keys, k, lo)
        if i < n and keys[i] == k:
            if i > lo:
                out += keys[lo:i]
            lo = i + 1
    out += keys[lo:]
    return out


def _insert_keys(keys: list[float], ks: list[float]) -> list[float]:
    """``keys`` with ``ks`` added, sorted."""
    if len(ks) <= _FEW:
        for k in ks:
            insort(keys, k)
        return keys
    keys += ks
    keys.sort()  # two sorted runs (the prices of one side come ordered): a merge
    return keys


def _load_side(levels: Iterable[Level], neg: bool) -> tuple[dict[str, str], list[float], dict[float, str]]:
    """One side of a snapshot as (qty, sorted keys, names); zero levels are skipped."""
    qty: dict[str, str] = {}
    names: dict[float, str] = {}
    for p, q in levels:
        if q in _ZEROS:
            continue
        k = -float(p) if neg else float(p)
        old = names.get(k)
        if old is not None:
            del qty[old]
        names[k] = p
        qty[p] = q
    return qty, sorted(names), names


def _ticker_matches(t: dict[str, Any], best: Best) -> bool:
    """Whether a ``bookTicker`` payload shows these best levels (compared as numbers)."""
    bp, bq, ap, aq = best
    if bp is None or bq is None or ap is None or aq is None:
        return False
    return (
        float(t["b"]) == float(bp)
        and float(t["B"]) == float(bq)
        and float(t["a"]) == float(ap)
        and float(t["A"]) == float(aq)
    )


# ---------------------------------------------------------------------- one symbol


class SymbolBook:
    """One symbol's local order book (``market``: ``"spot"`` or ``"usdm"``), see the module docstring.

    Feed it :meth:`on_diff` (depth events), :meth:`on_snapshot` (REST depth snapshots) and
    :meth:`on_book_ticker`; read :meth:`top`, :meth:`best`, :attr:`last_update_id`,
    :attr:`event_time_ms` and :attr:`synced`. Counters for metrics: :attr:`resyncs` (per reason),
    :attr:`gaps`, :attr:`applied`, :attr:`ignored`, :attr:`snapshots` (snapshots that made the book
    live), :attr:`tickers_checked`.
    """

    __slots__ = (
        "_ak",
        "_an",
        "_aq",
        "_bk",
        "_bn",
        "_bq",
        "_buffer",
        "_first",
        "_held",
        "_hist",
        "_pending",
        "_spot",
        "_tickers_on",
        "applied",
        "event_time_ms",
        "gaps",
        "ignored",
        "last_reason",
        "last_update_id",
        "market",
        "max_buffer",
        "resyncs",
        "snapshots",
        "symbol",
        "synced",
        "ticker_memory",
        "tickers_checked",
    )

    def __init__(
        self,
        symbol: str,
        market: str = "spot",
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        ticker_memory: int = TICKER_MEMORY,
    ) -> None:
        if market not in MARKETS:
            raise ValueError(f"market must be one of {', '.join(MARKETS)}, got {market!r}")
        if max_buffer < 1 or ticker_memory < 1:
            raise ValueError("max_buffer and ticker_memory must be at least 1")
        self.symbol = symbol
        self.market = market
        self.max_buffer = max_buffer
        self.ticker_memory = ticker_memory
        self._spot = market == "spot"
        self._bq: dict[str, str] = {}
        self._bk: list[float] = []
        self._bn: dict[float, str] = {}
        self._aq: dict[str, str] = {}
        self._ak: list[float] = []
        self._an: dict[float, str] = {}
        #: The book's update id: the snapshot's ``lastUpdateId``, then each applied event's ``u``.
        self.last_update_id = 0
        #: ``E`` of the last event the book holds (as sent: ms, or µs with ``timeUnit=MICROSECOND``);
        #: 0 until one is known.
        self.event_time_ms = 0
        #: Whether the book is live (a snapshot loaded and no resync since).
        self.synced = False
        self._first = False  # USD-M: no event applied since the snapshot yet
        self._buffer: list[dict[str, Any]] = []
        self._held: dict[str, Any] | None = None  # a snapshot that came before any event
        self._tickers_on = False
        self._hist: dict[int, Best] = {}  # update id -> best levels there (once tickers are seen)
        self._pending: dict[int, dict[str, Any]] = {}  # tickers ahead of the book, by update id
        self.resyncs: dict[str, int] = {r.value: 0 for r in Reason}
        self.last_reason: Reason | None = None
        self.gaps = 0
        self.applied = 0
        self.ignored = 0
        self.snapshots = 0
        self.tickers_checked = 0

    # -- reading

    def top(self, n: int) -> tuple[Side, Side]:
        """The ``n`` best levels per side as ``[price, qty]`` strings, best first (as received)."""
        if n <= 0:
            return [], []
        bq, bn, aq, an = self._bq, self._bn, self._aq, self._an
        bids = [[p, bq[p]] for p in map(bn.__getitem__, reversed(self._bk[-n:]))]
        asks = [[p, aq[p]] for p in map(an.__getitem__, reversed(self._ak[-n:]))]
        return bids, asks

    def best(self) -> Best:
        """(best bid price, its qty, best ask price, its qty); ``None`` for an empty side."""
        bp = self._bn[self._bk[-1]] if self._bk else None
        ap = self._an[self._ak[-1]] if self._ak else None
        return (
            bp,
            None if bp is None else self._bq[bp],
            ap,
            None if ap is None else self._aq[ap],
        )

    @property
    def depth(self) -> tuple[int, int]:
        """Levels held per side (bids, asks)."""
        return len(self._bk), len(self._ak)

    @property
    def buffered(self) -> int:
        """Diff events waiting for a snapshot."""
        return len(self._buffer)

    @property
    def wants_snapshot(self) -> bool:
        """Whether the book needs a snapshot now: not live and none held."""
        return not self.synced and self._held is None

    @property
    def resync_count(self) -> int:
        """Resyncs of every reason."""
        return sum(self.resyncs.values())

    # -- diff events

    def on_diff(self, ev: dict[str, Any]) -> Outcome:
        """A decoded ``depthUpdate`` payload of this symbol (``U``, ``u``, [``pu``], ``b``, ``a``, ``E``)."""
        if not self.synced:
            return self._buffer_event(ev)
        u = ev["u"]
        last = self.last_update_id
        if u <= last:
            self.ignored += 1
            return IGNORED
        if self._spot:
            if ev["U"] > last + 1:
                return self._resync(Reason.GAP, ev)
        elif ev["pu"] != last and not (self._first and ev["U"] <= last):
            return self._resync(Reason.GAP, ev)
        self._bk = _apply_side(ev["b"], self._bq, self._bk, self._bn, False)
        self._ak = _apply_side(ev["a"], self._aq, self._ak, self._an, True)
        self.last_update_id = u
        self.event_time_ms = ev["E"]
        self._first = False
        self.applied += 1
        bk, ak = self._bk, self._ak
        if bk and ak and bk[-1] >= -ak[-1]:
            return self._resync(Reason.CROSSED, ev)
        if self._tickers_on:
            return self._reached(u, ev)
        return APPLIED

    def _buffer_event(self, ev: dict[str, Any]) -> Outcome:
        buf = self._buffer
        if not buf:
            buf.append(ev)
            if self._held is not None:
                return self._sync(self._held)
            return NEED_SNAPSHOT
        prev = buf[-1]
        if ev["u"] <= prev["u"]:
            self.ignored += 1
            return IGNORED
        if ev["U"] > prev["u"] + 1 if self._spot else ev["pu"] != prev["u"]:
            # the buffered events before the gap can never be used: start again from this one
            self.gaps += 1
            return self._restart(Reason.GAP, ev)
        if len(buf) >= self.max_buffer:
            return self._restart(Reason.BUFFER_OVERFLOW, ev)
        buf.append(ev)
        return BUFFERED

    # -- snapshots

    def on_snapshot(self, snap: dict[str, Any]) -> Outcome:
        """A REST depth snapshot (``lastUpdateId``, ``bids``, ``asks``; USD-M also ``E``, ``T``).

        ``synced``: the book is live (buffered events replayed); ``buffered``: no event yet, the
        snapshot is held until the first one; ``ignored``: the book is live already;
        ``resync(stale_snapshot)``: too old for the buffered events, fetch another; another
        ``resync`` when the replay itself finds a gap, a crossed book or a disagreeing ticker.
        """
        if self.synced:
            self.ignored += 1
            return IGNORED
        if not self._buffer:
            self._held = snap
            return BUFFERED
        return self._sync(snap)

    def _sync(self, snap: dict[str, Any]) -> Outcome:
        self._held = None
        last = snap["lastUpdateId"]
        first = self._buffer[0]
        if (last + 1 < first["U"]) if self._spot else (last < first["U"] and last != first["pu"]):
            self._count(Reason.STALE_SNAPSHOT)
            return RESYNC[Reason.STALE_SNAPSHOT]
        events, self._buffer = self._buffer, []
        self._bq, self._bk, self._bn = _load_side(snap["bids"], False)
        self._aq, self._ak, self._an = _load_side(snap["asks"], True)
        self.last_update_id = last
        self.event_time_ms = snap.get("T", 0)
        self.synced = True
        self._first = True
        if self._tickers_on:
            self._drop_pending_before(last)
            outcome = self._reached(last, None)
            if outcome is not APPLIED:
                self._rebuffer(events)
                return outcome
        for i, ev in enumerate(events):
            if ev["u"] <= last:
                self.event_time_ms = ev["E"]  # in the snapshot already
                continue
            outcome = self.on_diff(ev)
            if outcome.kind is Kind.RESYNC:
                self._rebuffer(events[i + 1 :])  # they follow the event now first in the buffer
                return outcome
        bk, ak = self._bk, self._ak
        if bk and ak and bk[-1] >= -ak[-1]:
            self._resync(Reason.CROSSED, None)
            self._rebuffer(events)
            return RESYNC[Reason.CROSSED]
        self.snapshots += 1
        return SYNCED

    def _rebuffer(self, events: list[dict[str, Any]]) -> None:
        """Buffer events again after a resync found during a replay (they stay good for the next snapshot)."""
        for ev in events:
            self._buffer_event(ev)

    # -- tickers

    def on_book_ticker(self, t: dict[str, Any]) -> Outcome:
        """One ``bookTicker`` payload (``u``, ``b``, ``B``, ``a``, ``A``): compared at a shared update id.

        ``applied``: compared and equal; ``resync(ticker_mismatch)``: it disagreed; ``buffered``:
        its id is ahead of the book (compared when the book gets there); ``ignored``: an id the book
        never stood at, or too far back.
        """
        self._tickers_on = True
        u = t["u"]
        if self.synced:
            last = self.last_update_id
            if u == last:
                return self._compare(t, self.best(), None)
            if u < last:
                best = self._hist.get(u)
                if best is None:
                    self.ignored += 1
                    return IGNORED
                return self._compare(t, best, None)
        pend = self._pending
        if len(pend) >= self.ticker_memory:
            del pend[min(pend)]
        pend[u] = t
        return BUFFERED

    def _reached(self, u: int, ev: dict[str, Any] | None) -> Outcome:
        """The book stands at ``u``: remember its best levels; compare a ticker waiting for ``u``."""
        best = self.best()
        hist = self._hist
        hist[u] = best
        if len(hist) > self.ticker_memory:
            del hist[next(iter(hist))]  # insertion order = update-id order
        pend = self._pending
        if pend:
            t = pend.pop(u, None)
            self._drop_pending_before(u)
            if t is not None:
                return self._compare(t, best, ev)
        return APPLIED

    def _drop_pending_before(self, u: int) -> None:
        pend = self._pending
        for k in [k for k in pend if k < u]:
            del pend[k]

    def _compare(self, t: dict[str, Any], best: Best, ev: dict[str, Any] | None) -> Outcome:
        self.tickers_checked += 1
        if _ticker_matches(t, best):
            return APPLIED
        log.warning(
            "%s %s: bookTicker at update id %s shows %s/%s %s/%s, the book %s",
            self.market, self.symbol, t["u"], t["b"], t["B"], t["a"], t["A"], best,
        )  # fmt: skip
        return self._resync(Reason.TICKER_MISMATCH, ev)

    # -- resyncs

    def _count(self, reason: Reason) -> None:
        self.resyncs[reason.value] += 1
        self.last_reason = reason

    def _resync(self, reason: Reason, ev: dict[str, Any] | None) -> Outcome:
        """Discard the book; buffer from ``ev`` (the event that showed the problem) when given."""
        if reason is Reason.GAP:
            self.gaps += 1
        self._count(reason)
        self.synced = False
        self._first = False
        self._bq, self._bk, self._bn = {}, [], {}
        self._aq, self._ak, self._an = {}, [], {}
        self._hist.clear()
        self._held = None
        self._buffer = [] if ev is None else [ev]
        return RESYNC[reason]

    def _restart(self, reason: Reason, ev: dict[str, Any]) -> Outcome:
        """While waiting for a snapshot: buffer from ``ev`` only; a snapshot must be newer than it."""
        self._count(reason)
        self._held = None
        self._buffer = [ev]
        return RESYNC[reason]


# ---------------------------------------------------------------------- a symbol set
