"""The local order book engine (``workers/live/book.py``): Binance's §5 procedure, per symbol.

Two kinds of tests:

* **rules**, with hand-built events (and the real NKNUSDT capture): the straddling first event, a
  stale snapshot, a gap, a ``pu`` break, a crossed book, a ticker mismatch, a buffer overflow,
  deletions, and a seeded random walk against a plain ``Decimal`` reference book;
* **against the simulator**, served in-process on loopback (``build_app``: REST depth and the
  WebSocket routes share one clock running ``SPEEDUP`` times real time from ``T0``), spot and USD-M,
  several symbols on one combined connection, with seeded depth gaps, stale REST snapshots and
  server-side disconnects. Each symbol's book is compared with the simulator's true book
  (``Market.depth_snapshot`` / ``book_levels``) at checkpoints: the first event applied after
  every sync, then every 5th. Spot compares the **whole** book: the snapshot (``limit=5000``)
  holds every level of the simulated book (``BOOK_LEVELS``), so every later level is known. USD-M
  compares the **top 100**: ``/fapi/v1/depth`` gives at most 1000 of the 5000 simulated levels, so
  deeper levels are unknown until they change (Binance's caveat), while the simulator re-sends
  every level that enters the top 100 (``book.TOUCH_LEVELS``), so the top 100 are always known.
  Independence of symbols: every ``gap`` resync of a symbol comes at a break in *its own* received
  sequence (counted here from the frames), every break where its book stood at the previous event
  resyncs it, and no event of one symbol changes another symbol's book (their state is compared
  around every event), while gaps happen beside live books of the other symbols.

Waits are bounded (``asyncio.timeout``); nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType, web

from streamforge_pipelines.intervals import HOUR_MS
from streamforge_pipelines.simulator import book as sim_book
from streamforge_pipelines.simulator.app import build_app
from streamforge_pipelines.simulator.faults import FaultConfig
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.simulator.rest import StaleSnapshots
from streamforge_pipelines.simulator.usdm import contract
from streamforge_pipelines.simulator.ws import WsConfig
from streamforge_pipelines.workers.backoff import Backoff
from streamforge_pipelines.workers.live.book import (
    APPLIED,
    BUFFERED,
    IGNORED,
    NEED_SNAPSHOT,
    RESYNC,
    SYNCED,
    Kind,
    Outcome,
    Reason,
    SymbolBook,
)
from streamforge_pipelines.workers.live.book_keeper import BookKeeper

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "binance"
SEED = 20240801
MARKET = Market(SEED)
DAY0 = 1_722_556_800_000  # 2024-08-02 00:00 UTC
T0 = DAY0 + 5 * HOUR_MS + 57_000
SPEEDUP = 10.0


# ====================================================================== rules, hand-built events


def spot(
    U: int, u: int, bids: list[list[str]] | None = None, asks: list[list[str]] | None = None
) -> dict[str, Any]:
    return {"e": "depthUpdate", "E": u * 100, "s": "TST", "U": U, "u": u, "b": bids or [], "a": asks or []}


def fut(
    U: int, u: int, pu: int, bids: list[list[str]] | None = None, asks: list[list[str]] | None = None
) -> dict[str, Any]:
    ev = spot(U, u, bids, asks)
    ev.update(T=u * 100, pu=pu)
    return ev


def snap(last: int, bids: list[list[str]], asks: list[list[str]]) -> dict[str, Any]:
    return {"lastUpdateId": last, "bids": bids, "asks": asks}


BIDS = [["99.00", "1.0"], ["98.00", "2.0"]]
ASKS = [["101.00", "1.5"], ["102.00", "2.5"]]


def test_spot_first_event_may_straddle_the_snapshot() -> None:
    b = SymbolBook("TST", "spot")
    assert b.on_diff(spot(90, 95, [["99.00", "7.0"]])) is NEED_SNAPSHOT
    assert b.on_diff(spot(96, 102, [["98.00", "0"]])) is BUFFERED  # straddles 100: U <= 101 <= u + 1
    assert b.on_diff(spot(103, 105, asks=[["100.50", "3.0"]])) is BUFFERED
    assert b.on_snapshot(snap(100, BIDS, ASKS)) is SYNCED
    # the first event (u <= 100) is in the snapshot already: its 7.0 is not applied
    assert b.top(5) == ([["99.00", "1.0"]], [["100.50", "3.0"], ["101.00", "1.5"], ["102.00", "2.5"]])
    assert (b.last_update_id, b.synced, b.event_time_ms) == (105, True, 10500)
    assert b.on_diff(spot(104, 105)) is IGNORED  # already applied
    assert b.on_diff(spot(106, 106, [["99.50", "1"]])) is APPLIED
    assert b.resync_count == 0


def test_spot_stale_snapshot_is_refused_and_the_next_one_syncs() -> None:
    b = SymbolBook("TST", "spot")
    b.on_diff(spot(100, 104, [["99.00", "3.0"]]))
    assert b.on_snapshot(snap(98, BIDS, ASKS)) is RESYNC[Reason.STALE_SNAPSHOT]  # 99 < U = 100
    assert not b.synced and b.buffered == 1 and b.wants_snapshot
    assert b.resyncs == {
        "gap": 0,
        "stale_snapshot": 1,
        "crossed": 0,
        "ticker_mismatch": 0,
        "buffer_overflow": 0,
    }
    # lastUpdateId == U - 1: the first event continues the snapshot exactly (the doc's step 5 accepts it)
    assert b.on_snapshot(snap(99, BIDS, ASKS)) is SYNCED
    assert b.top(1) == ([["99.00", "3.0"]], [["101.00", "1.5"]]) and b.last_update_id == 104


def test_spot_gap_discards_the_book_and_buffers_from_the_gap_event() -> None:
    b = SymbolBook("TST", "spot")
    b.on_diff(spot(100, 101))
    assert b.on_snapshot(snap(100, BIDS, ASKS)) is SYNCED
    assert b.on_diff(spot(102, 103)) is APPLIED
    gap_event = spot(106, 107, [["99.00", "5.0"]])  # 104..105 missed
    assert b.on_diff(gap_event) is RESYNC[Reason.GAP]
    assert not b.synced and b.top(5) == ([], []) and b.buffered == 1 and b.gaps == 1
    assert b.on_diff(spot(108, 108)) is BUFFERED
    assert b.on_snapshot(snap(104, BIDS, ASKS)) is RESYNC[Reason.STALE_SNAPSHOT]  # cannot reach U = 106
    assert b.on_snapshot(snap(106, BIDS, ASKS)) is SYNCED  # straddled by 106..107
    assert b.top(1)[0] == [["99.00", "5.0"]] and b.last_update_id == 108
    assert b.resyncs["gap"] == 1 and b.resyncs["stale_snapshot"] == 1 and b.snapshots == 2


def test_a_gap_while_buffering_drops_the_events_before_it() -> None:
    b = SymbolBook("TST", "spot")
    b.on_diff(spot(10, 12))
    b.on_diff(spot(13, 14))
    assert b.on_diff(spot(20, 21)) is RESYNC[Reason.GAP]
    assert b.buffered == 1
    assert b.on_snapshot(snap(14, BIDS, ASKS)) is RESYNC[Reason.STALE_SNAPSHOT]  # 15..19 are lost
    assert b.on_snapshot(snap(19, BIDS, ASKS)) is SYNCED


def test_usdm_first_event_rule_and_pu_chain() -> None:
    b = SymbolBook("TST", "usdm")
    assert b.on_diff(fut(80, 90, 70)) is NEED_SNAPSHOT
    assert b.on_diff(fut(93, 99, 90, [["99.00", "4.0"]])) is BUFFERED  # U is not pu + 1 on futures
    assert b.on_diff(fut(104, 110, 99, asks=[["101.00", "0"]])) is BUFFERED
    # snapshot 95: the first event kept must satisfy U <= 95 <= u (93 <= 95 <= 99)
    assert b.on_snapshot(snap(95, BIDS, ASKS)) is SYNCED
    assert b.top(1) == ([["99.00", "4.0"]], [["102.00", "2.5"]]) and b.last_update_id == 110
    assert b.on_diff(fut(115, 120, 110)) is APPLIED
    assert b.on_diff(fut(125, 130, 121)) is RESYNC[Reason.GAP]  # pu 121 != 120
    assert b.gaps == 1 and not b.synced
    # a snapshot at the gap event's pu continues into it (the same rule as every later event)
    assert b.on_snapshot(snap(121, BIDS, ASKS)) is SYNCED
    assert b.last_update_id == 130


def test_usdm_stale_snapshot_and_a_snapshot_past_the_buffer() -> None:
    b = SymbolBook("TST", "usdm")
    b.on_diff(fut(93, 99, 90))
    assert b.on_snapshot(snap(91, BIDS, ASKS)) is RESYNC[Reason.STALE_SNAPSHOT]  # 91 < U, != pu
    assert b.on_snapshot(snap(105, BIDS, ASKS)) is SYNCED  # newer than every buffered event
    assert b.last_update_id == 105
    assert b.on_diff(fut(100, 104, 99)) is IGNORED
    assert b.on_diff(fut(103, 108, 104)) is APPLIED  # the first live event straddles 105
    b2 = SymbolBook("TST", "usdm")
    b2.on_diff(fut(93, 99, 90))
    b2.on_snapshot(snap(105, BIDS, ASKS))
    assert b2.on_diff(fut(107, 109, 106)) is RESYNC[Reason.GAP]  # neither straddles nor continues


def test_crossed_book_is_a_resync() -> None:
    b = SymbolBook("TST", "spot")
    b.on_diff(spot(1, 1))
    b.on_snapshot(snap(1, BIDS, ASKS))
    crossing = spot(2, 2, [["101.00", "1.0"]])  # a bid at the best ask, ask not removed
    assert b.on_diff(crossing) is RESYNC[Reason.CROSSED]
    assert b.resyncs["crossed"] == 1 and not b.synced and b.buffered == 1
    assert b.on_snapshot(snap(2, [["100.00", "1"]], ASKS)) is SYNCED  # the crossing event is in it
    assert b.on_diff(spot(3, 3, [["101.00", "1.0"]], [["101.00", "0"]])) is APPLIED  # moved: not crossed


def test_book_ticker_compared_at_shared_update_ids_only() -> None:
    b = SymbolBook("TST", "usdm")
    b.on_diff(fut(1, 10, 0))
    b.on_snapshot(snap(10, BIDS, ASKS))
    ticker = {"e": "bookTicker", "s": "TST", "b": "99.0", "B": "1.00", "a": "101", "A": "1.5"}
    assert b.on_book_ticker({**ticker, "u": 10}) is APPLIED  # numbers compared: "99.0" == "99.00"
    assert b.on_book_ticker({**ticker, "u": 12, "B": "9"}) is BUFFERED  # ahead of the book
    assert b.on_book_ticker({**ticker, "u": 15}) is BUFFERED
    assert b.on_diff(fut(11, 15, 10, [["99.00", "2.0"]])) is RESYNC[Reason.TICKER_MISMATCH]  # 15: 1.0 != 2.0
    assert b.tickers_checked == 2  # 12 was never a state of the book: not compared
    assert b.resyncs["ticker_mismatch"] == 1 and not b.synced
    assert b.on_snapshot(snap(15, [["99.00", "2.0"]], ASKS)) is SYNCED
    assert b.on_diff(fut(16, 17, 15)) is APPLIED
    assert b.on_book_ticker({**ticker, "u": 17, "B": "2"}) is APPLIED
    # a ticker arriving after the book moved on: compared with the levels the book had at its id
    b.on_diff(fut(18, 20, 17, asks=[["101.00", "0"]]))
    assert b.on_book_ticker({**ticker, "u": 17, "B": "2"}) is APPLIED
    assert b.on_book_ticker({**ticker, "u": 19}) is IGNORED  # between two events
    late = b.on_book_ticker({**ticker, "u": 17, "A": "7"})
    assert late is RESYNC[Reason.TICKER_MISMATCH] and b.resyncs["ticker_mismatch"] == 2
    assert b.wants_snapshot and b.buffered == 0


def test_buffer_overflow_is_a_resync_that_keeps_the_newest_event() -> None:
    b = SymbolBook("TST", "spot", max_buffer=3)
    assert [b.on_diff(spot(i, i)) for i in (1, 2, 3)] == [NEED_SNAPSHOT, BUFFERED, BUFFERED]
    assert b.on_diff(spot(4, 4)) is RESYNC[Reason.BUFFER_OVERFLOW]
    assert b.buffered == 1 and b.resyncs["buffer_overflow"] == 1
    assert b.on_snapshot(snap(2, BIDS, ASKS)) is RESYNC[Reason.STALE_SNAPSHOT]  # 3 went with the buffer
    assert b.on_snapshot(snap(3, BIDS, ASKS)) is SYNCED


def test_snapshot_before_any_event_is_held_for_the_first_one() -> None:
    b = SymbolBook("TST", "spot")
    assert b.on_snapshot(snap(50, BIDS, ASKS)) is BUFFERED and not b.wants_snapshot
    assert b.on_diff(spot(51, 52, [["99.00", "0"]])) is SYNCED
    assert b.top(1)[0] == [["98.00", "2.0"]]
    b2 = SymbolBook("TST", "spot")
    b2.on_snapshot(snap(50, BIDS, ASKS))
    assert b2.on_diff(spot(60, 61)) is RESYNC[Reason.STALE_SNAPSHOT] and b2.wants_snapshot
    assert b.on_snapshot(snap(60, BIDS, ASKS)) is IGNORED  # live already


def test_levels_absolute_zero_deletes_absent_deletes_and_spellings() -> None:
    b = SymbolBook("TST", "spot")
    b.on_diff(spot(1, 1))
    b.on_snapshot(snap(1, [["99.00000000", "1.00000000"], ["98.00000000", "2.00000000"]], ASKS))
    b.on_diff(spot(2, 2, [["99.00000000", "0.00000000"], ["97.00000000", "0"], ["98.00000000", "5.0"]]))
    assert b.top(5)[0] == [["98.00000000", "5.0"]]
    b.on_diff(spot(3, 3, [["98.0", "6"]]))  # the same price spelled differently is the same level
    assert b.top(5)[0] == [["98.0", "6"]] and b.depth == (1, 2)
    b.on_diff(spot(4, 4, [["98.000", "0"]]))
    assert b.top(5)[0] == [] and b.best() == (None, None, "101.00", "1.5")


def test_random_walk_equals_a_decimal_reference_book() -> None:
    """Seeded random events (small and bulk, inserts, updates, deletes, absent deletes) vs a plain book."""
    rng = random.Random(12)
    b = SymbolBook("TST", "spot")
    ref: dict[str, dict[Decimal, Decimal]] = {"b": {}, "a": {}}
    b.on_diff(spot(1, 1))
    b.on_snapshot(snap(1, [], []))
    for u in range(2, 250):
        ev = spot(u, u)
        for side, lo in (("b", 1000), ("a", 3001)):
            n = rng.choice((1, 3, 8, 40, 300))  # > 16 changes take the one-pass path
            prices = rng.sample(range(lo, lo + 2000), n)
            zeros = rng.choice((0.4, 0.0, 1.0))  # mixed, only entering/updated, only leaving
            for p in prices:
                q = "0" if rng.random() < zeros else f"{rng.randint(1, 999) / 100:.2f}"
                text = f"{p / 100:.2f}" if rng.random() < 0.9 else f"{p / 100:.4f}"  # another spelling
                ev[side].append([text, q])
                if Decimal(q):
                    ref[side][Decimal(text)] = Decimal(q)
                else:
                    ref[side].pop(Decimal(text), None)
        assert b.on_diff(ev) is APPLIED
        bids, asks = b.top(10_000)
        want_b = sorted(ref["b"].items(), reverse=True)
        want_a = sorted(ref["a"].items())
        assert [(Decimal(p), Decimal(q)) for p, q in bids] == want_b, u
        assert [(Decimal(p), Decimal(q)) for p, q in asks] == want_a, u


def test_real_capture_syncs_and_matches_its_book_ticker() -> None:
    """The real NKNUSDT capture (snapshot 499869752, 15 diff frames, bookTickers by receive time)."""

    def rows(name: str) -> list[tuple[float, dict[str, Any]]]:
        lines = (FIXTURES / name).read_text().splitlines()
        return [(float(a), json.loads(b)) for a, b in (x.split("\t", 1) for x in lines if x and x[0] != "#")]

    frames = rows("spot_ws_depth100ms_NKNUSDT_combined.jsonl") + [
        r
        for r in rows("spot_ws_kline_aggTrade_bookTicker_combined.jsonl")
        if r[1]["stream"].endswith("@bookTicker")
    ]
    snapshot = json.loads((FIXTURES / "spot_rest_depth_snapshot_NKNUSDT_limit1000.json").read_text())[
        "response"
    ]
    b = SymbolBook("NKNUSDT", "spot")
    outcomes = []
    for _, frame in sorted(frames, key=lambda r: r[0]):
        data = frame["data"]
        if frame["stream"].endswith("@bookTicker"):
            outcomes.append(b.on_book_ticker(data))
        elif b.on_diff(data) is NEED_SNAPSHOT:
            assert b.on_snapshot(snapshot) is SYNCED  # the first event straddles: [U; u] holds 499869752
    assert b.resync_count == 0 and b.applied == 14 and b.last_update_id == 499869788
    assert b.tickers_checked == 1  # u 499869769 is a diff event's u; 768 and 778 fall inside events


# ====================================================================== BookKeeper


def test_keeper_resyncs_one_symbol_without_touching_the_others() -> None:
    symbols = ("AAA", "BBB", "CCC")
    calls: dict[str, int] = dict.fromkeys(symbols, 0)
    snapshots: dict[str, list[dict[str, Any]]] = {
        "AAA": [snap(3, BIDS, ASKS), snap(1, BIDS, ASKS), snap(20, BIDS, ASKS)],  # 2nd: stale
        "BBB": [snap(3, BIDS, ASKS)],
        "CCC": [snap(3, BIDS, ASKS)],
    }
    failed_once: set[str] = set()

    async def fetch(symbol: str) -> dict[str, Any]:
        calls[symbol] += 1
        if symbol == "CCC" and symbol not in failed_once:
            failed_once.add(symbol)
            raise aiohttp.ClientConnectionError("refused")  # a failed fetch is retried
        return snapshots[symbol].pop(0)

    def ev(symbol: str, U: int, u: int) -> dict[str, Any]:
        return {**spot(U, u), "s": symbol}

    async def settle(keeper: BookKeeper) -> None:
        async with asyncio.timeout(5):
            await keeper.idle()
        assert not keeper.fetching

    async def body() -> BookKeeper:
        keeper = BookKeeper(
            "spot", symbols, fetch, backoff=Backoff(base_s=0.001, cap_s=0.01, rng=random.Random(1))
        )
        for s in symbols:
            assert keeper.on_diff(ev(s, 1, 2)) is NEED_SNAPSHOT
        await settle(keeper)
        for s in symbols:
            assert keeper.on_diff(ev(s, 3, 4)) is APPLIED
        assert keeper.on_diff(ev("AAA", 9, 10)) is RESYNC[Reason.GAP]  # 5..8 missed on AAA only
        for u in (11, 12):
            for s in symbols:
                keeper.on_diff(ev(s, u - 6 if s != "AAA" else u, u - 6 if s != "AAA" else u))
        await settle(keeper)
        assert keeper.on_diff(ev("XYZ", 1, 1)) is IGNORED  # not followed
        await keeper.close()
        return keeper

    keeper = asyncio.run(body())
    books = keeper.books
    assert calls == {"AAA": 3, "BBB": 1, "CCC": 2}
    assert books["AAA"].resyncs["gap"] == 1 and books["AAA"].resyncs["stale_snapshot"] == 1
    assert books["AAA"].synced and books["AAA"].last_update_id == 20
    for s in ("BBB", "CCC"):
        assert books[s].resync_count == 0 and books[s].snapshots == 1 and books[s].last_update_id == 6
    assert keeper.fetch_errors == 1


# ====================================================================== against the simulator


class RunningClock:
    """Epoch ms running ``speedup`` times real time from ``start_ms`` (REST and streams share it)."""

    def __init__(self, start_ms: int, speedup: float) -> None:
        self.start_ms, self.speedup, self.t0 = start_ms, speedup, time.monotonic()

    def __call__(self) -> int:
        return self.start_ms + int((time.monotonic() - self.t0) * 1000 * self.speedup)


def run(coro: Callable[[], Coroutine[Any, Any, Any]], limit_s: float) -> Any:
    async def main() -> Any:
        async with asyncio.timeout(limit_s):
            return await coro()

    return asyncio.run(main())


@contextlib.asynccontextmanager
async def serve(ws: WsConfig, faults: FaultConfig, fault_seed: int) -> AsyncIterator[str]:
    app = build_app(MARKET, clock=RunningClock(T0, ws.speedup), ws=ws, faults=faults, fault_seed=fault_seed)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def spot_truth(symbol: str, data: dict[str, Any]) -> tuple[int, list[list[str]], list[list[str]]]:
    """The whole true book after the event's 100 ms window (``lastUpdateId`` is the event's ``u``)."""
    s = MARKET.depth_snapshot(symbol, sim_book.BOOK_LEVELS, data["E"])
    return s.last_update_id, s.bids, s.asks


USDM_TOP = sim_book.TOUCH_LEVELS


def usdm_truth(symbol: str, data: dict[str, Any]) -> tuple[int, list[list[str]], list[list[str]]]:
    """The top 100 of the true futures book after the event's last window (``T`` is its publish time)."""
    c = contract(MARKET.symbol(symbol))
    levels = MARKET.book_levels(symbol, data["T"] // sim_book.WINDOW_MS - 1, USDM_TOP)
    s = sim_book.DepthSnapshot.from_levels(levels, c.price_decimals, c.qty_decimals, c.basis_units)
    return s.last_update_id, s.bids, s.asks


@dataclass
class Tally:
    """What the test saw of one symbol: its sequence (from the frames) and its book's outcomes."""

    last_u: int | None = None
    breaks: int = 0
    gap_outcomes: int = 0
    gaps_beside_live_books: int = 0
    applied_since_sync: int = 0
    checkpoints: int = 0
    checkpoints_after_resync: int = 0
    syncs: list[int] = field(default_factory=list)


SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT")


def state(book: SymbolBook) -> tuple[bool, int, int]:
    return book.synced, book.last_update_id, book.resync_count


async def live_books(
    market: str,
    ws: WsConfig,
    faults: FaultConfig,
    fault_seed: int,
    *,
    min_checkpoints: int,
    min_gaps: int,
    min_connections: int,
) -> tuple[BookKeeper, dict[str, Tally], int]:
    """Follow SYMBOLS' books over one combined connection (reopened when the server drops it)."""
    spot_market = market == "spot"
    depth = "@depth@100ms" if spot_market else "@depth"
    streams = "/".join(f"{s.lower()}{kind}" for s in SYMBOLS for kind in (depth, "@bookTicker"))
    tallies = {s: Tally() for s in SYMBOLS}
    truth = spot_truth if spot_market else usdm_truth
    top = sim_book.BOOK_LEVELS if spot_market else USDM_TOP
    connections = 0

    def on_outcome(book: SymbolBook, outcome: Outcome) -> None:
        if outcome.kind is Kind.SYNCED:
            tallies[book.symbol].syncs.append(book.last_update_id)
            tallies[book.symbol].applied_since_sync = 0

    def checkpoint(symbol: str, book: SymbolBook, data: dict[str, Any]) -> None:
        tally = tallies[symbol]
        tally.applied_since_sync += 1
        if tally.applied_since_sync % 5 != 1:
            return
        uid, bids, asks = truth(symbol, data)
        assert book.last_update_id == uid, (symbol, book.last_update_id, uid)
        got_bids, got_asks = book.top(top)
        assert got_bids == bids, f"{market} {symbol}: bids differ from the true book at {uid}"
        assert got_asks == asks, f"{market} {symbol}: asks differ from the true book at {uid}"
        tally.checkpoints += 1
        if book.snapshots > 1:
            tally.checkpoints_after_resync += 1

    def done(keeper: BookKeeper) -> bool:
        gaps = sum(b.resyncs["gap"] for b in keeper.books.values())
        return (
            gaps >= min_gaps
            and connections >= min_connections
            and all(t.checkpoints >= min_checkpoints and t.applied_since_sync >= 5 for t in tallies.values())
        )

    async with serve(ws, faults, fault_seed) as host, aiohttp.ClientSession() as session:
        path = "/api/v3/depth?limit=5000" if spot_market else "/fapi/v1/depth?limit=1000"

        async def fetch(symbol: str) -> dict[str, Any]:
            async with session.get(f"http://{host}{path}&symbol={symbol}") as resp:
                assert resp.status == 200, await resp.text()
                return orjson.loads(await resp.read())

        keeper = BookKeeper(
            market,
            SYMBOLS,
            fetch,
            backoff=Backoff(base_s=0.02, cap_s=0.2, rng=random.Random(3)),
            on_outcome=on_outcome,
        )
        prefix = "" if spot_market else "/fapi-ws/public"
        url = f"ws://{host}{prefix}/stream?streams={streams}"
        try:
            while not done(keeper):
                connections += 1
                assert connections <= 300, "the server kept dropping the connection: too many reconnections"
                async with session.ws_connect(url, autoping=True) as conn:
                    async for msg in conn:
                        if msg.type != WSMsgType.TEXT:
                            break
                        frame = orjson.loads(msg.data)
                        data = frame["data"]
                        if frame["stream"].endswith("@bookTicker"):
                            keeper.on_book_ticker(data)
                            continue
                        symbol, tally = data["s"], tallies[data["s"]]
                        book = keeper.books[symbol]
                        broke = (
                            tally.last_u is not None
                            and data["u"] > tally.last_u
                            and not (
                                data["U"] == tally.last_u + 1 if spot_market else data["pu"] == tally.last_u
                            )
                        )
                        stood_at_previous = book.synced and book.last_update_id == tally.last_u
                        others = {t: state(b) for t, b in keeper.books.items() if t != symbol}
                        outcome = keeper.on_diff(data)
                        tally.last_u = max(tally.last_u or 0, data["u"])
                        tally.breaks += broke
                        # the other symbols' books are untouched by this symbol's event, whatever it did
                        assert others == {t: state(b) for t, b in keeper.books.items() if t != symbol}
                        if outcome is RESYNC[Reason.GAP]:
                            assert broke, (symbol, data["U"], data["u"], tally.last_u)
                            tally.gap_outcomes += 1
                            tally.gaps_beside_live_books += any(live for live, _, _ in others.values())
                        elif broke and stood_at_previous:
                            raise AssertionError(
                                f"{symbol}: a break at {data['U']} did not resync: {outcome}"
                            )
                        if outcome is APPLIED:
                            checkpoint(symbol, book, data)
                        if done(keeper):
                            break
        finally:
            await keeper.close()
    return keeper, tallies, connections


def _stale_first_seed(rate: float) -> int:
    """A fault seed whose first depth snapshot is stale (the simulator's seeded decision)."""
    return next(s for s in range(100) if StaleSnapshots(rate, s).age_ms() > 0)


@pytest.mark.parametrize("market", ["spot", "usdm"])
def test_books_equal_the_true_book_per_symbol_under_gaps_stale_snapshots_and_disconnects(market: str) -> None:
    fault_seed = _stale_first_seed(0.4)
    ws = WsConfig(
        speedup=SPEEDUP,
        depth_gap_rate=0.03,
        disconnect_rate=1.0,  # every connection is dropped within 2 s: the client opens another
        disconnect_within_s=2.0,
        fault_seed=fault_seed,
    )
    faults = FaultConfig(stale_snapshot_rate=0.4)
    keeper, tallies, connections = run(
        lambda: live_books(market, ws, faults, fault_seed, min_checkpoints=10, min_gaps=3, min_connections=3),
        limit_s=150,
    )
    books = keeper.books
    for s, tally in tallies.items():
        b = books[s]
        # every gap resync of a symbol came from a break in its own sequence (checked per event above)
        assert b.resyncs["gap"] == tally.gap_outcomes <= tally.breaks, (s, b.resyncs, tally)
        assert b.resyncs["crossed"] == b.resyncs["ticker_mismatch"] == b.resyncs["buffer_overflow"] == 0, (
            b.resyncs
        )
        assert 1 <= b.snapshots == len(tally.syncs) <= 1 + b.resyncs["gap"]
        assert tally.checkpoints >= 6 and b.tickers_checked > 0, (s, tally, b.tickers_checked)
    total = {r.value: sum(b.resyncs[r.value] for b in books.values()) for r in Reason}
    assert total["gap"] >= 3 and total["stale_snapshot"] >= 1, total
    resynced = [s for s in SYMBOLS if books[s].snapshots > 1]
    assert resynced and all(tallies[s].checkpoints_after_resync > 0 for s in resynced), tallies
    # and a gap did happen while another symbol's book was live (which stayed so: checked per event)
    assert sum(t.gaps_beside_live_books for t in tallies.values()) >= 1
    assert connections >= 3
