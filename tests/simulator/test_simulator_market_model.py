"""The market model's ground: trades, aggregate trades, candles, books, listing, downtime, structure.

Everything runs on :class:`Market` directly with fixed seeds and explicit ``now_ms`` (no server, no
sleeps). Amounts are compared as integers of 1e-8 units parsed from the rendered strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamforge_pipelines.intervals import DAY_MS, HOUR_MS, MINUTE_MS, floor_open_time
from streamforge_pipelines.simulator import (
    DEFAULT_SYMBOLS,
    Cluster,
    DowntimeWindow,
    LeadLag,
    Market,
    SimulatorConfig,
    load_config,
)

SEED = 20240801
#: 2024-08-02 05:00:12.345 UTC.
NOW_MS = 1_722_556_800_000 + 5 * HOUR_MS + 12_345
MARKET = Market(SEED)


def units(text: str) -> int:
    whole, frac = text.split(".")
    return int(whole) * 100_000_000 + int(frac.ljust(8, "0"))


def minute_trades(market: Market, symbol: str, start_ms: int, minutes: int) -> list[dict[str, Any]]:
    """All trades of ``minutes`` minutes from ``start_ms`` via historicalTrades (fromId pages)."""
    first = market.minute_trades(symbol, start_ms).first_id
    last_mt = market.minute_trades(symbol, start_ms + (minutes - 1) * MINUTE_MS)
    last = last_mt.first_id + len(last_mt) - 1
    out: list[dict[str, Any]] = []
    while first <= last:
        page = market.trades(symbol, NOW_MS, 1000, from_id=first)
        out.extend(t for t in page if t["id"] <= last)
        first = page[-1]["id"] + 1
    return out


def candle_of(trades: list[dict[str, Any]]) -> tuple[int, ...]:
    """(open, high, low, close, volume, quote, count, taker base, taker quote) of some trades."""
    px = [units(t["price"]) for t in trades]
    taker = [t for t in trades if not t["isBuyerMaker"]]
    return (
        px[0],
        max(px),
        min(px),
        px[-1],
        sum(units(t["qty"]) for t in trades),
        sum(units(t["quoteQty"]) for t in trades),
        len(trades),
        sum(units(t["qty"]) for t in taker),
        sum(units(t["quoteQty"]) for t in taker),
    )


def kline_tuple(row: list) -> tuple[int, ...]:
    return (*(units(row[i]) for i in (1, 2, 3, 4, 5, 7)), row[8], units(row[9]), units(row[10]))


# ---------------------------------------------------------------------- trades are the ground


@pytest.mark.parametrize("symbol", ["BTCUSDT", "XRPUSDT", "DOGEUSDT"])
def test_trades_aggregate_exactly_to_1m_and_1h_klines(symbol: str) -> None:
    hour = floor_open_time(NOW_MS - 3 * HOUR_MS, "1h")
    trades = minute_trades(MARKET, symbol, hour, 60)
    assert [t["id"] for t in trades] == list(range(trades[0]["id"], trades[0]["id"] + len(trades)))
    assert all(u["time"] >= t["time"] for t, u in pairwise(trades))
    assert all(units(t["quoteQty"]) * 10**8 == units(t["price"]) * units(t["qty"]) for t in trades)
    minutes = MARKET.klines(symbol, "1m", hour, hour + HOUR_MS - 1, 1000, NOW_MS)
    assert len(minutes) == 60
    for row in minutes:
        of_minute = [t for t in trades if row[0] <= t["time"] <= row[6]]
        assert candle_of(of_minute) == kline_tuple(row)
    (h,) = MARKET.klines(symbol, "1h", hour, hour, 1, NOW_MS)
    assert candle_of(trades) == kline_tuple(h)


def test_1s_klines_are_the_trades_of_each_second() -> None:
    minute = floor_open_time(NOW_MS - 30 * MINUTE_MS, "1m")
    trades = minute_trades(MARKET, "LINKUSDT", minute, 1)
    seconds = MARKET.klines("LINKUSDT", "1s", minute, minute + MINUTE_MS - 1, 1000, NOW_MS)
    assert len(seconds) == 60
    previous_close = units(seconds[0][1])
    for row in seconds:
        of_second = [t for t in trades if row[0] <= t["time"] <= row[6]]
        k = kline_tuple(row)
        assert k[0] == previous_close  # a second opens at the previous close (module docstring)
        if of_second:
            c = candle_of(of_second)
            assert k[3:] == c[3:]  # close, volume, quote, count, taker base, taker quote
            assert k[1] == max(c[1], k[0]) and k[2] == min(c[2], k[0])
        else:
            assert k[1:4] == (k[0],) * 3 and k[4:] == (0,) * 5
        previous_close = k[3]


def test_trade_id_ranges_match_the_klines() -> None:
    hour = floor_open_time(NOW_MS - 5 * HOUR_MS, "1h")
    (h,) = MARKET.klines("BNBUSDT", "1h", hour, hour, 1, NOW_MS)
    first, last = MARKET.trade_id_range("BNBUSDT", hour, hour + HOUR_MS) or (0, -1)
    assert last - first + 1 == h[8]
    assert MARKET.trades("BNBUSDT", NOW_MS, 1, from_id=first)[0]["time"] >= hour
    assert MARKET.trades("BNBUSDT", NOW_MS, 1, from_id=first - 1)[0]["time"] < hour
    assert MARKET.trades("BNBUSDT", NOW_MS, 1, from_id=last + 1)[0]["time"] >= hour + HOUR_MS
    t, a = MARKET.trades_before("BNBUSDT", NOW_MS - 30_000)
    assert MARKET.agg_trades("BNBUSDT", NOW_MS, 1, from_id=a)[0]["T"] >= NOW_MS - 30_000
    assert MARKET.agg_trades("BNBUSDT", NOW_MS, 1, from_id=a - 1)[0]["T"] < NOW_MS - 30_000
    assert MARKET.agg_trades("BNBUSDT", NOW_MS, 1, from_id=a)[0]["f"] == t
    assert MARKET.trades_before("BNBUSDT", 0) == (0, 0)


def test_agg_trades_regroup_exactly_to_the_trades() -> None:
    start = floor_open_time(NOW_MS - 2 * HOUR_MS, "1m")
    trades = minute_trades(MARKET, "ETHUSDT", start, 5)
    by_id = {t["id"]: t for t in trades}
    aggs = MARKET.agg_trades("ETHUSDT", NOW_MS, 1000, start_ms=start, end_ms=start + 5 * MINUTE_MS - 1)
    assert aggs[0]["f"] == trades[0]["id"] and aggs[-1]["l"] == trades[-1]["id"]
    for a, b in pairwise(aggs):
        assert b["a"] == a["a"] + 1 and b["f"] == a["l"] + 1
        # maximal runs: neighbours differ in price, side or millisecond
        assert (a["p"], a["m"], a["T"]) != (b["p"], b["m"], b["T"])
    for agg in aggs:
        members = [by_id[i] for i in range(agg["f"], agg["l"] + 1)]
        assert {(t["price"], t["isBuyerMaker"], t["time"]) for t in members} == {
            (agg["p"], agg["m"], agg["T"])
        }
        assert sum(units(t["qty"]) for t in members) == units(agg["q"])
        assert agg["M"] is True
    assert len(aggs) < len(trades)  # taker orders that fill several makers exist


def _pages(fetch: Any, key: str, first: int, pages: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(pages):
        page = fetch(first)
        out.extend(page)
        first = page[-1][key] + 1
    return out


def test_from_id_pagination_has_no_gaps_or_duplicates_across_midnight() -> None:
    midnight = floor_open_time(NOW_MS, "1d")
    first_agg = MARKET.agg_trades("SOLUSDT", NOW_MS, 1, start_ms=midnight - 3 * MINUTE_MS)[0]["a"]
    aggs = _pages(lambda i: MARKET.agg_trades("SOLUSDT", NOW_MS, 1000, from_id=i), "a", first_agg, 4)
    assert [a["a"] for a in aggs] == list(range(first_agg, first_agg + 4000))
    assert all(b["f"] == a["l"] + 1 for a, b in pairwise(aggs))
    assert aggs[0]["T"] < midnight < aggs[-1]["T"]
    trades = _pages(lambda i: MARKET.trades("SOLUSDT", NOW_MS, 1000, from_id=i), "id", aggs[0]["f"], 5)
    assert [t["id"] for t in trades] == list(range(aggs[0]["f"], aggs[0]["f"] + 5000))
    assert all(u["time"] >= t["time"] for t, u in pairwise(trades))


def test_most_recent_and_window_rules() -> None:
    recent = MARKET.trades("BNBUSDT", NOW_MS, 50)
    assert len(recent) == 50 and recent[-1]["time"] <= NOW_MS
    newer = MARKET.trades("BNBUSDT", NOW_MS, 5, from_id=recent[-1]["id"] + 1)
    assert all(t["time"] <= NOW_MS for t in newer)
    later = MARKET.trades("BNBUSDT", NOW_MS + MINUTE_MS, 1, from_id=recent[-1]["id"] + 1)
    assert later[0]["time"] > NOW_MS  # the next trade happens after now
    aggs = MARKET.agg_trades("BNBUSDT", NOW_MS, 20)
    assert len(aggs) == 20 and aggs[-1]["T"] <= NOW_MS and aggs[-1]["l"] == recent[-1]["id"]
    end = NOW_MS - HOUR_MS
    before = MARKET.agg_trades("BNBUSDT", NOW_MS, 7, end_ms=end)
    after = MARKET.agg_trades("BNBUSDT", NOW_MS, 1, start_ms=end + 1)
    assert len(before) == 7 and before[-1]["T"] <= end < after[0]["T"]
    assert after[0]["a"] == before[-1]["a"] + 1
    both = MARKET.agg_trades("BNBUSDT", NOW_MS, 1000, start_ms=end - 2_000, end_ms=end)
    assert both and both[0]["T"] >= end - 2_000 and both[-1]["a"] == before[-1]["a"]


def test_same_seed_same_trades_and_books() -> None:
    a, b = Market(7), Market(7)
    assert a.trades("LTCUSDT", NOW_MS, 300) == b.trades("LTCUSDT", NOW_MS, 300)
    assert a.depth_snapshot("LTCUSDT", 50, NOW_MS) == b.depth_snapshot("LTCUSDT", 50, NOW_MS)
    assert a.trades("LTCUSDT", NOW_MS, 300) != Market(8).trades("LTCUSDT", NOW_MS, 300)


# ---------------------------------------------------------------------- order book


def apply(book: dict[str, str], levels: Iterable[list[str]]) -> None:
    for price, qty in levels:
        if units(qty) == 0:
            book.pop(price, None)
        else:
            book[price] = qty


@pytest.mark.parametrize("symbol", ["BTCUSDT", "DOGEUSDT"])
def test_depth_snapshot_plus_diffs_rebuilds_the_later_snapshot(symbol: str) -> None:
    """Binance's local-book procedure (reference section 5.1) over 30 s of events."""
    t_stream, t_snap, t_end = NOW_MS - 1_234, NOW_MS - 537, NOW_MS + 30_000
    events = MARKET.depth_updates(symbol, t_stream, t_end)  # buffered from the stream's start
    assert all(b.first_update_id == a.last_update_id + 1 for a, b in pairwise(events))
    assert all(b.event_ms - a.event_ms == 100 for a, b in pairwise(events))
    first_u = events[0].first_update_id
    snap = MARKET.depth_snapshot(symbol, 5000, t_snap)
    assert snap.last_update_id >= first_u  # step 4: the snapshot is recent enough
    pending = [e for e in events if e.last_update_id > snap.last_update_id]  # step 5
    assert pending[0].first_update_id <= snap.last_update_id + 1 <= pending[0].last_update_id + 1
    bids, asks = dict(snap.bids), dict(snap.asks)
    local = snap.last_update_id
    for e in pending:  # step 7
        assert e.first_update_id <= local + 1
        apply(bids, e.bids)
        apply(asks, e.asks)
        local = e.last_update_id
    later = MARKET.depth_snapshot(symbol, 5000, t_end)
    assert local == later.last_update_id
    assert sorted(bids.items(), key=lambda kv: -units(kv[0])) == [tuple(x) for x in later.bids]
    assert sorted(asks.items(), key=lambda kv: units(kv[0])) == [tuple(x) for x in later.asks]
    moved = {e.bids[0][0] for e in pending if e.bids} | {e.asks[0][0] for e in pending if e.asks}
    assert len(moved) > 1


def test_depth_snapshot_order_limits_and_events() -> None:
    snap = MARKET.depth_snapshot("ETHUSDT", 20, NOW_MS)
    bids = [units(p) for p, _ in snap.bids]
    asks = [units(p) for p, _ in snap.asks]
    assert len(bids) == len(asks) == 20
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    assert all(units(q) > 0 for _, q in snap.bids + snap.asks)
    deep = MARKET.depth_snapshot("ETHUSDT", 5000, NOW_MS)
    assert deep.bids[:20] == snap.bids and deep.last_update_id == snap.last_update_id
    (event,) = MARKET.depth_updates("ETHUSDT", NOW_MS, NOW_MS + 100)
    assert event.first_update_id == snap.last_update_id + 1
    payload = event.to_event("ETHUSDT")
    assert list(payload) == ["e", "E", "s", "U", "u", "b", "a"] and payload["e"] == "depthUpdate"
    assert payload["E"] % 100 == 0 and NOW_MS <= payload["E"] < NOW_MS + 100


# ---------------------------------------------------------------------- listing and downtime


def test_listing_date_is_respected_for_klines_trades_and_books() -> None:
    listing = NOW_MS - DAY_MS - 37 * MINUTE_MS - 4_321
    config = SimulatorConfig(seed=SEED, symbols=("BTCUSDT", "ETHUSDT"), listings={"ETHUSDT": listing})
    market = Market.from_config(config)
    first_minute = floor_open_time(listing, "1m")
    assert market.klines("ETHUSDT", "1m", 0, None, 1, NOW_MS)[0][0] == first_minute
    assert market.klines("ETHUSDT", "1m", None, first_minute - 1, 10, NOW_MS) == []
    first_agg = market.agg_trades("ETHUSDT", NOW_MS, 3, start_ms=0)
    assert first_agg[0]["a"] == 0 and first_agg[0]["f"] == 0 and first_agg[0]["T"] >= first_minute
    assert market.trades("ETHUSDT", NOW_MS, 1, from_id=0)[0]["time"] == first_agg[0]["T"]
    assert market.agg_trades("ETHUSDT", listing - HOUR_MS, 10) == []
    assert market.depth_snapshot("ETHUSDT", 5, first_minute - 1_000).bids == []
    assert market.count_klines("ETHUSDT", "1m", 0, first_minute, NOW_MS) == 0


def test_downtime_has_no_candles_no_trades_and_count_klines_agrees() -> None:
    start = floor_open_time(NOW_MS - 10 * HOUR_MS, "1h") + 20 * MINUTE_MS  # hh:20
    end = start + 100 * MINUTE_MS  # (hh+1):60 = hh+2:00 exactly
    window = DowntimeWindow(start, end)
    market = Market(SEED, DEFAULT_SYMBOLS[:2], downtime=[window])
    lo, hi = start - 20 * MINUTE_MS - 3 * HOUR_MS, end + 2 * HOUR_MS  # whole hours
    minutes = market.klines("BTCUSDT", "1m", lo, hi - 1, 1000, NOW_MS)
    assert not [r for r in minutes if start <= r[0] < end]
    assert len(minutes) == (hi - lo - (end - start)) // MINUTE_MS
    assert market.count_klines("BTCUSDT", "1m", lo, hi, NOW_MS) == len(minutes)
    hours = market.klines("BTCUSDT", "1h", lo, hi - 1, 1000, NOW_MS)
    assert [r[0] for r in hours] == [
        t for t in range(lo, hi, HOUR_MS) if t != start - 20 * MINUTE_MS + HOUR_MS
    ]
    assert market.count_klines("BTCUSDT", "1h", lo, hi, NOW_MS) == len(hours)
    partial = next(r for r in hours if r[0] == start - 20 * MINUTE_MS)
    first_20 = [r for r in minutes if partial[0] <= r[0] < start]
    assert partial[8] == sum(r[8] for r in first_20) and partial[4] == first_20[-1][4]
    # no trades in the window; ids continue across it
    before = market.agg_trades("BTCUSDT", NOW_MS, 1, end_ms=start - 1)[0]
    after = market.agg_trades("BTCUSDT", NOW_MS, 1, start_ms=start)[0]
    assert after["T"] >= end and after["a"] == before["a"] + 1 and after["f"] == before["l"] + 1
    assert len(market.minute_trades("BTCUSDT", start + 5 * MINUTE_MS)) == 0
    # paging backwards with endTime inside the window skips it too
    tail = market.klines("BTCUSDT", "1m", None, end - 1, 5, NOW_MS)
    assert [r[0] for r in tail] == [start - (5 - i) * MINUTE_MS for i in range(5)]
    # a per-symbol window leaves the other symbols alone
    only_eth = Market(SEED, DEFAULT_SYMBOLS[:2], downtime=[DowntimeWindow(start, end, ("ETHUSDT",))])
    assert only_eth.count_klines("BTCUSDT", "1m", lo, hi, NOW_MS) == (hi - lo) // MINUTE_MS


# ---------------------------------------------------------------------- configuration and truth


def _returns(market: Market, symbol: str, start: int, days: int) -> np.ndarray:
    closes: list[float] = []
    t = start
    while t < start + days * DAY_MS:
        rows = market.klines(symbol, "1m", t, None, 1000, NOW_MS)
        closes.extend(float(r[4]) for r in rows)
        t = rows[-1][0] + MINUTE_MS
    return np.diff(np.log(np.array(closes[: days * 1440])))


def test_clusters_and_lead_lag_shape_the_returns() -> None:
    names = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT")
    config = SimulatorConfig(
        seed=3,
        symbols=names,
        clusters=(Cluster("memes", ("XRPUSDT", "DOGEUSDT"), 0.8),),
        lead_lags=(LeadLag("SOLUSDT", "ETHUSDT", 3, 0.7),),
    )
    market = Market.from_config(config)
    start = floor_open_time(NOW_MS - 4 * DAY_MS, "1d")
    r = {s: _returns(market, s, start, 3) for s in names}

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a, b)[0, 1])

    in_cluster = corr(r["XRPUSDT"], r["DOGEUSDT"])
    assert in_cluster > corr(r["XRPUSDT"], r["SOLUSDT"]) + 0.2
    lagged = corr(r["ETHUSDT"][3:], r["SOLUSDT"][:-3])
    assert lagged > 0.3 and lagged > corr(r["ETHUSDT"][2:], r["SOLUSDT"][:-2]) + 0.2
    truth = market.truth()
    assert truth["seed"] == 3
    assert truth["clusters"] == [{"name": "memes", "symbols": ["XRPUSDT", "DOGEUSDT"], "loading": 0.8}]
    assert truth["leadLags"] == [
        {"leader": "SOLUSDT", "follower": "ETHUSDT", "lagMinutes": 3, "strength": 0.7}
    ]
    assert [s["symbol"] for s in truth["symbols"]] == list(names)


def test_load_config_from_yaml_and_json(tmp_path: Path) -> None:
    text = """
seed: 42
symbols:
  - BTCUSDT
  - {name: NEWUSDT, base_price: 2.5, tick_size: "0.0001", step_size: "0.1", listing: "2024-06-01"}
listings: {BTCUSDT: "2020-01-01T00:00:00Z"}
clusters: [{name: c1, symbols: [BTCUSDT, NEWUSDT], loading: 0.4}]
lead_lags: [{leader: BTCUSDT, follower: NEWUSDT, lag_minutes: 2}]
downtime: [{start: "2024-07-01T02:00:00Z", end: "2024-07-01T03:30:00Z"}]
"""
    (tmp_path / "sim.yaml").write_text(text)
    config = load_config(tmp_path / "sim.yaml")
    market = Market.from_config(config)
    assert market.seed == 42 and [s.name for s in market.symbols] == ["BTCUSDT", "NEWUSDT"]
    assert market.symbol("BTCUSDT").listing_ms == 1_577_836_800_000
    assert market.symbol("NEWUSDT").listing_ms == 1_717_200_000_000
    truth = market.truth()
    assert truth["downtime"] == [
        {"startTime": 1_719_799_200_000, "endTime": 1_719_804_600_000, "symbols": None}
    ]
    (tmp_path / "sim.json").write_text(json.dumps({"seed": 42, "symbols": ["BTCUSDT"], "lead_lags": []}))
    assert load_config(tmp_path / "sim.json") == SimulatorConfig(seed=42, symbols=("BTCUSDT",))
    with pytest.raises(ValueError, match="cycle"):
        Market(
            1,
            DEFAULT_SYMBOLS[:2],
            lead_lags=[LeadLag("BTCUSDT", "ETHUSDT", 1), LeadLag("ETHUSDT", "BTCUSDT", 1)],
        )
