"""A shallow snapshot plus the diffs rebuilds the top of the book, even after the price travelled.

Binance's caveat (reference section 5.1): levels beyond the snapshot's depth are unknown until they
change. Levels that enter the top of the book are sent again in the diff (as levels near the top
trade on a real book), so a 1000-level snapshot plus diffs always matches the top 100 levels.
"""

from __future__ import annotations

import random

from streamforge_pipelines.simulator.market import Market

NOW = 1_795_600_000_000


def _rebuild(market: Market, symbol: str, t0: int, t1: int) -> tuple[int, list, list]:
    snap = market.depth_snapshot(symbol, 1000, t0)
    bids = dict(map(tuple, snap.bids))
    asks = dict(map(tuple, snap.asks))
    last = snap.last_update_id
    target = market.depth_snapshot(symbol, 1000, t1).last_update_id
    for ev in market.depth_updates(symbol, t0 - 5_000, t1 + 1):
        if ev.last_update_id <= last:
            continue
        assert ev.first_update_id <= last + 1, "gap in the diff stream"
        for side, levels in ((bids, ev.bids), (asks, ev.asks)):
            for price, qty in levels:
                if float(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        last = ev.last_update_id
        if last >= target:
            break
    top_bids = sorted(bids.items(), key=lambda kv: -float(kv[0]))[:100]
    top_asks = sorted(asks.items(), key=lambda kv: float(kv[0]))[:100]
    return last, top_bids, top_asks


def test_snapshot_plus_diffs_matches_the_top_100_levels() -> None:
    market = Market(0)
    rng = random.Random(3)
    for _ in range(40):
        t0 = NOW - rng.randrange(0, 10_000_000)
        t1 = t0 + rng.randrange(1, 3_000)
        last, bids, asks = _rebuild(market, "BTCUSDT", t0, t1)
        truth = market.depth_snapshot("BTCUSDT", 1000, t1)
        assert last == truth.last_update_id
        assert bids == [tuple(level) for level in truth.bids[:100]]
        assert asks == [tuple(level) for level in truth.asks[:100]]
