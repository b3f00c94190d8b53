"""loader-ws-orderbook end to end: books kept per symbol through gaps, stale snapshots and dropped
connections, their top-N snapshots on the book topic equal to the simulator's true book.

A ``ws_orderbook`` :class:`StreamTask` streams three symbols (one connection: depth diffs and
book tickers) through the session broker; the simulator drops diff events (``depth_gap_rate``),
answers some depth snapshots stale (``stale_snapshot_rate``) and drops every connection within two
seconds. Every ``book`` row produced must equal the true book at the row's update id — the whole
top ``LIVE_BOOK_LEVELS`` of both sides — on spot and on USD-M (``/public`` route, ``pu`` chain).
The engine's rule-by-rule tests are in ``test_live_book.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from live_support import SEED, stream_for

from streamforge_pipelines.protocol import Command
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator import book as sim_book
from streamforge_pipelines.simulator.faults import FaultConfig
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.simulator.usdm import contract
from streamforge_pipelines.simulator.ws import WsConfig

T0 = 1_722_556_800_000 + 5 * 3_600_000  # 2024-08-02 05:00 UTC
SYMBOLS = ["BTCUSDT", "ETHUSDT", "XRPUSDT"]
LEVELS = 20
MARKET = Market(SEED)


def _truth(market: str, symbol: str, row: dict[str, Any]) -> tuple[int, list[list[str]], list[list[str]]]:
    """The true book after the 100 ms window whose event the row's book applied last."""
    window = row["time"] // sim_book.WINDOW_MS - 1
    levels = MARKET.book_levels(symbol, window, LEVELS)
    if market == "spot":
        snap = sim_book.DepthSnapshot.from_levels(levels)
    else:
        c = contract(MARKET.symbol(symbol))
        snap = sim_book.DepthSnapshot.from_levels(levels, c.price_decimals, c.qty_decimals, c.basis_units)
    return snap.last_update_id, snap.bids, snap.asks


@pytest.mark.parametrize("market", ["spot", "usdm"])
def test_book_snapshots_equal_the_true_book_through_gaps_and_stale_snapshots(
    market: str,
    make_settings: Callable[..., Settings],
    read_docs: Callable[[str, str], Awaitable[list[dict[str, Any]]]],
) -> None:
    settings = make_settings(partitions=2, live_book_levels=LEVELS, live_book_every_ms=100)
    command = Command(
        command="start",
        queue_id=f"ws-book-{market}-{uuid.uuid4().hex[:6]}",
        target="loader-ws-orderbook",
        type="ws_orderbook",
        symbols=SYMBOLS,
        market=market,
    )
    ws = WsConfig(
        speedup=10.0, depth_gap_rate=0.03, disconnect_rate=1.0, disconnect_within_s=2.0, fault_seed=4
    )
    faults = FaultConfig(stale_snapshot_rate=0.4)

    async def main() -> tuple[Any, list[dict[str, Any]]]:
        task, _, _ = await stream_for(settings, command, 6.0, config=None, ws=ws, faults=faults, start_ms=T0)
        return task, await read_docs(settings.kafka_bootstrap_servers or "", settings.topic_book)

    task, docs = asyncio.run(main())
    assert task.counts.reconnects >= 2 and task.counts.resyncs >= 2, task.stats
    per_symbol = Counter(d["symbol"] for d in docs)
    assert set(per_symbol) == set(SYMBOLS) and min(per_symbol.values()) >= 5, per_symbol
    for d in docs:
        update_id, bids, asks = _truth(market, d["symbol"], d)
        assert d["market"] == market and d["update_id"] == update_id, (d["symbol"], d["update_id"], update_id)
        assert orjson.loads(d["bids"]) == bids, f"{d['symbol']} bids at {update_id}"
        assert orjson.loads(d["asks"]) == asks, f"{d['symbol']} asks at {update_id}"
    keys = Counter(d["key"] for d in docs)
    assert max(keys.values()) == 1, "a snapshot produced twice"


def test_applied_diffs_follow_the_exchange_events_in_order(
    make_settings: Callable[..., Settings],
    read_docs: Callable[[str, str], Awaitable[list[dict[str, Any]]]],
) -> None:
    """``LIVE_BOOK_DIFFS``: every diff row is the exchange's event with that update id, and a symbol's
    rows follow each other without a hole except where its book resynced."""
    settings = make_settings(
        partitions=2, live_book_diffs=True, topic_book_diffs=f"sf.book-diffs.{uuid.uuid4().hex[:8]}"
    )
    command = Command(
        command="start",
        queue_id=f"ws-book-diffs-{uuid.uuid4().hex[:6]}",
        target="loader-ws-orderbook",
        type="ws_orderbook",
        symbols=SYMBOLS[:2],
    )
    ws = WsConfig(speedup=10.0, depth_gap_rate=0.05, fault_seed=6)

    async def main() -> tuple[Any, list[dict[str, Any]]]:
        task, _, _ = await stream_for(settings, command, 4.0, config=None, ws=ws, start_ms=T0)
        return task, await read_docs(settings.kafka_bootstrap_servers or "", settings.topic_book_diffs)

    task, docs = asyncio.run(main())
    assert docs, "no diff rows"
    holes = 0
    for symbol in SYMBOLS[:2]:
        rows = sorted((d for d in docs if d["symbol"] == symbol), key=lambda d: d["update_id"])
        assert len(rows) >= 20, (symbol, len(rows))
        for prev, d in itertools.pairwise(rows):
            holes += d["first_update_id"] != prev["update_id"] + 1
        for d in rows:
            (event,) = MARKET.depth_updates(symbol, d["time"], d["time"] + 1)
            assert (d["first_update_id"], d["update_id"]) == (event.first_update_id, event.last_update_id)
            assert orjson.loads(d["bids"]) == event.bids and orjson.loads(d["asks"]) == event.asks
    assert 0 < holes <= task.counts.resyncs, (holes, task.stats)
