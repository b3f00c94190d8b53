"""Klines ``timeZone`` (local interval boundaries) and the stale depth snapshot fault.

``timeZone`` (reference §1.3): boundaries are those of local time, bounds and open times stay UTC;
every shifted candle must equal the exact aggregate of the 1m candles of its window. Stale
snapshots (:attr:`FaultConfig.stale_snapshot_rate`): a seeded share of ``/api/v3/depth`` and
``/fapi/v1/depth`` answers is an older book, which a client detects with §5.1 step 4. Fixed seed,
injected clock, no sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streamforge_pipelines.intervals import DAY_MS, HOUR_MS, MINUTE_MS
from streamforge_pipelines.simulator import book
from streamforge_pipelines.simulator.app import build_app
from streamforge_pipelines.simulator.config import DowntimeWindow, SimulatorConfig
from streamforge_pipelines.simulator.faults import FaultConfig
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.simulator.rest import STALE_MAX_WINDOWS, STALE_MIN_WINDOWS, StaleSnapshots
from streamforge_pipelines.simulator.spot import parse_time_zone

SEED = 20240801
SYMBOL = "BTCUSDT"
#: 2024-08-02 05:00:12.345 UTC: mid-minute, so the newest candles are still open.
NOW_MS = 1_722_556_800_000 + 5 * HOUR_MS + 12_345
MARKET = Market(SEED)  # shared: a pure function of SEED, its caches keep the suite fast

Row = list[Any]


def _units(text: str) -> int:
    """Spot strings have exactly 8 decimals."""
    return int(text.replace(".", ""))


def _minutes(market: Market, start_ms: int, end_ms: int, now_ms: int = NOW_MS) -> list[Row]:
    """Every 1m candle (UTC) opening in ``[start_ms, end_ms)``, paged as a client would."""
    out: list[Row] = []
    t = start_ms
    while t < end_ms:
        page = market.klines(SYMBOL, "1m", t, end_ms - 1, 1000, now_ms)
        if not page:
            break
        out.extend(page)
        t = page[-1][0] + MINUTE_MS
    return out


def _aggregate(rows: list[Row]) -> tuple[int, ...]:
    """o/h/l/c/volume/quote/trades/taker base/taker quote of consecutive candles, in 1e-8 units."""
    return (
        _units(rows[0][1]),
        max(_units(r[2]) for r in rows),
        min(_units(r[3]) for r in rows),
        _units(rows[-1][4]),
        sum(_units(r[5]) for r in rows),
        sum(_units(r[7]) for r in rows),
        sum(int(r[8]) for r in rows),
        sum(_units(r[9]) for r in rows),
        sum(_units(r[10]) for r in rows),
    )


def _values(row: Row) -> tuple[int, ...]:
    return (*(_units(row[i]) for i in (1, 2, 3, 4, 5, 7)), int(row[8]), _units(row[9]), _units(row[10]))


def _check_exact(market: Market, rows: list[Row], step_ms: int | None, now_ms: int = NOW_MS) -> None:
    """Each row aggregates exactly the 1m candles of its window (``step_ms`` None: next row's open)."""
    for k, row in enumerate(rows):
        open_ms = row[0]
        if step_ms is not None:
            end = open_ms + step_ms
        else:
            end = rows[k + 1][0] if k + 1 < len(rows) else row[6] + 1
        assert row[6] == end - 1
        minutes = _minutes(market, open_ms, min(end, now_ms + 1), now_ms)
        assert minutes, "a candle exists only with at least one minute"
        assert _values(row) == _aggregate(minutes), f"candle {open_ms} differs from its minutes"
        assert row[11] == "0"


# ---------------------------------------------------------------------- the model


def test_plus_8_daily_candles_open_at_16_utc_and_aggregate_their_minutes() -> None:
    start = NOW_MS - 4 * DAY_MS
    rows = MARKET.klines(SYMBOL, "1d", start, None, 10, NOW_MS, tz_offset_min=480)
    assert len(rows) == 4  # three closed local days and the one still open at NOW
    assert all(r[0] % DAY_MS == 16 * HOUR_MS for r in rows)
    assert rows[0][0] >= start and rows[-1][0] <= NOW_MS < rows[-1][6] + 1
    _check_exact(MARKET, rows, DAY_MS)
    # The UTC candles differ: different windows.
    utc = MARKET.klines(SYMBOL, "1d", start, None, 10, NOW_MS)
    assert [r[0] for r in utc] != [r[0] for r in rows]


def test_minus_5_four_hour_candles() -> None:
    rows = MARKET.klines(SYMBOL, "4h", None, NOW_MS - DAY_MS, 7, NOW_MS, tz_offset_min=-300)
    assert len(rows) == 7
    assert all((r[0] - 5 * HOUR_MS) % (4 * HOUR_MS) == 0 for r in rows)  # local 00/04/08/... hours
    assert rows[-1][0] <= NOW_MS - DAY_MS < rows[-1][0] + 4 * HOUR_MS
    _check_exact(MARKET, rows, 4 * HOUR_MS)


def test_plus_05_45_moves_30m_and_1h_but_not_15m() -> None:
    # 5:45 is 23 quarter hours: 15m boundaries are the same in UTC; 30m and 1h open at :15 / :45.
    start = NOW_MS - 6 * HOUR_MS
    q_local = MARKET.klines(SYMBOL, "15m", start, None, 30, NOW_MS, tz_offset_min=345)
    assert q_local == MARKET.klines(SYMBOL, "15m", start, None, 30, NOW_MS)
    hours = MARKET.klines(SYMBOL, "1h", start, None, 10, NOW_MS, tz_offset_min=345)
    assert len(hours) == 6 and all(r[0] % HOUR_MS == 15 * MINUTE_MS for r in hours)
    _check_exact(MARKET, hours, HOUR_MS)
    halves = MARKET.klines(SYMBOL, "30m", start, None, 20, NOW_MS, tz_offset_min=345)
    assert all(r[0] % (30 * MINUTE_MS) == 15 * MINUTE_MS for r in halves)
    _check_exact(MARKET, halves, 30 * MINUTE_MS)


def test_plus_8_months_follow_local_month_boundaries() -> None:
    rows = MARKET.klines(SYMBOL, "1M", None, None, 3, NOW_MS, tz_offset_min=480)
    # 2024-06-01, 07-01 and 08-01 00:00 at +08:00 (the last still open).
    assert [r[0] for r in rows] == [1_717_171_200_000, 1_719_763_200_000, 1_722_441_600_000]
    assert [r[6] for r in rows] == [1_719_763_199_999, 1_722_441_599_999, 1_725_120_000_000 - 1]
    for row in rows:
        days = MARKET.klines(SYMBOL, "1d", row[0], row[6], 40, NOW_MS, tz_offset_min=480)
        assert _values(row) == _aggregate(days)
    _check_exact(MARKET, rows[-1:], None)  # the open month against its minutes


@pytest.mark.parametrize(("interval", "offset"), [("1m", 480), ("5m", -300), ("1m", 840), ("1h", 60)])
def test_whole_hour_offsets_leave_short_intervals_unchanged(interval: str, offset: int) -> None:
    start = NOW_MS - DAY_MS
    local = MARKET.klines(SYMBOL, interval, start, None, 1000, NOW_MS, tz_offset_min=offset)
    assert local == MARKET.klines(SYMBOL, interval, start, None, 1000, NOW_MS)
    assert MARKET.count_klines(SYMBOL, interval, start, NOW_MS, NOW_MS, offset) == MARKET.count_klines(
        SYMBOL, interval, start, NOW_MS, NOW_MS
    )


def test_end_time_only_and_both_bounds_stay_utc() -> None:
    end = NOW_MS - 2 * DAY_MS
    newest = MARKET.klines(SYMBOL, "1d", None, end, 2, NOW_MS, tz_offset_min=480)
    assert newest[-1][0] <= end < newest[-1][6] + 1 and len(newest) == 2
    both = MARKET.klines(SYMBOL, "1d", newest[0][0] + 1, end, 5, NOW_MS, tz_offset_min=480)
    assert both == newest[1:]


def test_count_klines_matches_served_candles_with_downtime_and_listing() -> None:
    down = DowntimeWindow(NOW_MS - 30 * HOUR_MS, NOW_MS - 21 * HOUR_MS)
    listed = NOW_MS - 3 * DAY_MS
    market = Market.from_config(
        SimulatorConfig(SEED, symbols=(SYMBOL,), listings={SYMBOL: listed}, downtime=(down,))
    )
    for interval, offset in (("4h", -300), ("1d", 480), ("1h", 345), ("3d", 60), ("1w", -720)):
        served = market.klines(SYMBOL, interval, 0, None, 1000, NOW_MS, tz_offset_min=offset)
        assert market.count_klines(SYMBOL, interval, 0, NOW_MS + 1, NOW_MS, offset) == len(served)
        assert served and served[0][0] <= listed
        for row in served:  # no candle lies wholly in the downtime, and each is exact
            assert not (down.start_ms <= row[0] and row[6] < down.end_ms)
    four = market.klines(SYMBOL, "4h", 0, None, 1000, NOW_MS, tz_offset_min=-300)
    wholly_down = (NOW_MS - 27 * HOUR_MS) - (NOW_MS - 27 * HOUR_MS) % HOUR_MS  # opens 01:00 local+4h
    assert not any(r[0] == wholly_down for r in four)
    _check_exact(market, four, 4 * HOUR_MS, NOW_MS)


def test_model_rejects_out_of_range_offsets() -> None:
    with pytest.raises(ValueError):
        MARKET.klines(SYMBOL, "1d", None, None, 1, NOW_MS, tz_offset_min=841)
    with pytest.raises(ValueError):
        MARKET.count_klines(SYMBOL, "1d", 0, NOW_MS, NOW_MS, -721)


# ---------------------------------------------------------------------- REST


def _serve(app: web.Application, body: Callable[[TestClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with TestClient(TestServer(app)) as client:
            return await body(client)

    return asyncio.run(main())


async def _get(client: TestClient, path: str, params: dict[str, str]) -> tuple[int, Any]:
    resp = await client.get(path, params=params)
    return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("0", 0), ("8", 480), ("+8", 480), ("-1:00", -60), ("05:45", 345), ("14:00", 840), ("-12:00", -720),
     ("-0", 0), ("+00:00", 0), ("-5:30", -330)],
)  # fmt: skip
def test_parse_time_zone_accepts_binance_forms(text: str, minutes: int) -> None:
    assert parse_time_zone(text) == minutes


def test_rest_klines_and_ui_klines_serve_local_boundaries_and_reject_bad_zones() -> None:
    bad = ["14:01", "-12:01", "15", "-13", "abc", "8:60", "+8:5", "08:000", "", "1.5", "8:", "++8", " 8"]

    async def body(client: TestClient) -> tuple[list[Any], list[Any], list[tuple[int, Any]]]:
        params = {"symbol": SYMBOL, "interval": "1d", "limit": "3", "timeZone": "8"}
        _, kl = await _get(client, "/api/v3/klines", params)
        _, ui = await _get(client, "/api/v3/uiKlines", params)
        errors = [await _get(client, "/api/v3/klines", {**params, "timeZone": z}) for z in bad]
        errors.append(await _get(client, "/api/v3/uiKlines", {**params, "timeZone": "14:30"}))
        return kl, ui, errors

    kl, ui, errors = _serve(build_app(MARKET, clock=lambda: NOW_MS), body)
    assert kl == ui == MARKET.klines(SYMBOL, "1d", None, None, 3, NOW_MS, tz_offset_min=480)
    assert all(r[0] % DAY_MS == 16 * HOUR_MS for r in kl)
    invalid = {"code": -1130, "msg": "Data sent for parameter 'timeZone' is not valid."}
    assert errors == [(400, invalid)] * (len(bad) + 1)


# ---------------------------------------------------------------------- stale snapshots


def _depth_ids(
    faults: FaultConfig | None, seed: int, n: int, path: str = "/api/v3/depth", limit: str = "5"
) -> list[dict[str, Any]]:
    async def body(client: TestClient) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):  # sequential: one request at a time
            status, payload = await _get(client, path, {"symbol": SYMBOL, "limit": limit})
            assert status == 200
            out.append(payload)
        return out

    return _serve(build_app(MARKET, clock=lambda: NOW_MS, faults=faults, fault_seed=seed), body)


def _current_id(now_ms: int = NOW_MS) -> int:
    return MARKET.depth_snapshot(SYMBOL, 5, now_ms).last_update_id


def test_stale_rate_one_serves_older_snapshots_that_step_4_rejects() -> None:
    snaps = _depth_ids(FaultConfig(stale_snapshot_rate=1.0), seed=3, n=12)
    current = _current_id()
    ages = {
        _current_id(NOW_MS - w * book.WINDOW_MS): w for w in range(STALE_MIN_WINDOWS, STALE_MAX_WINDOWS + 1)
    }
    first_u = MARKET.depth_updates(SYMBOL, NOW_MS, NOW_MS + 1_000)[0].first_update_id
    assert first_u == current + 1
    for snap in snaps:
        assert snap["lastUpdateId"] < current
        assert snap["lastUpdateId"] in ages  # the book of 1 to 5 s earlier
        assert snap == MARKET.depth_snapshot(SYMBOL, 5, NOW_MS - ages[snap["lastUpdateId"]] * 100).to_json()
        assert snap["lastUpdateId"] < first_u - 1  # §5.1 step 4: too old, the client repeats
    assert len({s["lastUpdateId"] for s in snaps}) > 1


def test_stale_rate_zero_or_no_faults_serve_the_current_snapshot() -> None:
    for faults in (
        FaultConfig(stale_snapshot_rate=0.0),
        None,
        FaultConfig(stale_snapshot_rate=1.0, enabled=False),
    ):
        snaps = _depth_ids(faults, seed=3, n=5)
        assert [s["lastUpdateId"] for s in snaps] == [_current_id()] * 5


def test_futures_depth_is_stale_too() -> None:
    snaps = _depth_ids(FaultConfig(stale_snapshot_rate=1.0), seed=5, n=4, path="/fapi/v1/depth")
    fresh = _depth_ids(None, seed=5, n=1, path="/fapi/v1/depth")[0]
    assert fresh["lastUpdateId"] == _current_id()
    for snap in snaps:
        assert snap["lastUpdateId"] < fresh["lastUpdateId"]
        assert snap["E"] == NOW_MS and snap["T"] < fresh["T"]


def test_same_seed_same_sequence_of_stale_snapshots() -> None:
    faults = FaultConfig(stale_snapshot_rate=0.5)
    first = [s["lastUpdateId"] for s in _depth_ids(faults, seed=11, n=16)]
    again = [s["lastUpdateId"] for s in _depth_ids(faults, seed=11, n=16)]
    other = [s["lastUpdateId"] for s in _depth_ids(faults, seed=12, n=16)]
    assert first == again
    assert first != other
    current = _current_id()
    assert current in first and any(i < current for i in first)  # both kinds at rate 0.5
    a, b = StaleSnapshots(0.5, 99), StaleSnapshots(0.5, 99)
    ages = [a.age_ms() for _ in range(50)]
    assert ages == [b.age_ms() for _ in range(50)]
    # current (0) or 1-5 s old in whole 100 ms windows; at rate 0.5 over 50 draws, both occur
    assert all(a == 0 or (1_000 <= a <= 5_000 and a % 100 == 0) for a in ages)
    assert 0 in ages and any(a > 0 for a in ages)


def test_stale_snapshot_and_aiohttp_client_session_agree() -> None:
    """A plain aiohttp session sees the same seeded sequence as the test client."""
    faults = FaultConfig(stale_snapshot_rate=0.5)

    async def main() -> list[int]:
        server = TestServer(build_app(MARKET, clock=lambda: NOW_MS, faults=faults, fault_seed=11))
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as http:
                out = []
                for _ in range(16):
                    async with http.get(server.make_url("/api/v3/depth"), params={"symbol": SYMBOL}) as r:
                        out.append((await r.json())["lastUpdateId"])
                return out
        finally:
            await server.close()

    ids = asyncio.run(main())
    assert ids == [s["lastUpdateId"] for s in _depth_ids(faults, seed=11, n=16)]


@pytest.mark.parametrize(("interval", "offset", "step"), [("4h", -300, 4 * HOUR_MS), ("1h", 345, HOUR_MS)])
def test_sub_day_candles_from_the_listing_on_without_downtime(interval: str, offset: int, step: int) -> None:
    listed = NOW_MS - 2 * DAY_MS - 17 * MINUTE_MS
    market = Market.from_config(SimulatorConfig(SEED, symbols=(SYMBOL,), listings={SYMBOL: listed}))
    served = market.klines(SYMBOL, interval, 0, None, 1000, NOW_MS, tz_offset_min=offset)
    assert served[0][0] <= listed < served[0][0] + step
    assert market.count_klines(SYMBOL, interval, 0, NOW_MS + 1, NOW_MS, offset) == len(served)
    newest = market.klines(SYMBOL, interval, None, None, 5, NOW_MS, tz_offset_min=offset)
    assert newest == served[-5:]
    _check_exact(market, served, step, NOW_MS)
