"""The completeness ledger's arithmetic: ranges, expected counts at day edges and today, statuses.

Pure functions plus :func:`build_ledger` over a real SQLite store file.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.intervals import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    clip_ranges,
    day_start_ms,
    merge_ranges,
)
from streamforge_pipelines.protocol import candle_key
from streamforge_pipelines.queue_manager.ledger import (
    COMPLETE,
    DOWNTIME,
    MISSING,
    build_ledger,
    check_summary,
    entry,
    repair_ranges,
    runs,
    save_ledger,
)
from streamforge_pipelines.store import SqliteStore

DAY = date(2024, 8, 1)
D0 = day_start_ms(DAY)
M5 = 5 * MINUTE_MS
LATER = D0 + 10 * DAY_MS  # a clock long after the test days


def _candle(symbol: str, open_time: int, interval: str = "5m", step: int = M5) -> dict[str, Any]:
    return {
        "key": candle_key(symbol, interval, open_time),
        "symbol": symbol,
        "interval": interval,
        "open_time": open_time,
        "open": "1.0",
        "high": "1.0",
        "low": "1.0",
        "close": "1.0",
        "volume": "1.0",
        "close_time": open_time + step - 1,
        "quote_volume": "1.0",
        "trades": 1,
        "taker_buy_base": "0.5",
        "taker_buy_quote": "0.5",
        "source": "test",
        "queue_id": "q",
    }


def test_merge_ranges_sorts_merges_overlaps_and_touching_and_drops_empty() -> None:
    assert merge_ranges([]) == []
    assert merge_ranges([(30, 40), (0, 10), (10, 20), (35, 50), (60, 60), (70, 65)]) == [(0, 20), (30, 50)]
    assert merge_ranges([[5, 6], [1, 2]]) == [(1, 2), (5, 6)]  # JSON lists too
    assert clip_ranges([(-5, 5), (8, 30)], 0, 10) == [(0, 5), (8, 10)]
    assert clip_ranges([(20, 30)], 0, 10) == []


def test_runs_groups_consecutive_open_times() -> None:
    times = [D0, D0 + M5, D0 + 2 * M5, D0 + 10 * M5, D0 + 12 * M5]
    assert runs(times, "5m") == [
        (D0, D0 + 3 * M5),
        (D0 + 10 * M5, D0 + 11 * M5),
        (D0 + 12 * M5, D0 + 13 * M5),
    ]
    assert runs([], "1h") == []


@pytest.mark.parametrize(
    ("interval", "expected"), [("1m", 1440), ("5m", 288), ("15m", 96), ("1h", 24), ("4h", 6), ("1d", 1)]
)
def test_expected_counts_of_a_whole_closed_day(interval: str, expected: int) -> None:
    e = entry("BTCUSDT", interval, DAY, LATER, None, expected)
    assert (e.expected, e.stored, e.missing, e.downtime, e.status) == (expected, expected, 0, 0, COMPLETE)


def test_day_edges_and_partial_today() -> None:
    # The day ends at 24:00 exclusive: a clock at exactly the next midnight has every candle closed.
    assert entry("BTCUSDT", "5m", DAY, D0 + DAY_MS, None, 288).expected == 288
    # One millisecond earlier the 23:55 candle is still open.
    assert entry("BTCUSDT", "5m", DAY, D0 + DAY_MS - 1, [], 0).expected == 287
    # Today at 10:07: closed 5m candles open at 00:00 .. 10:00 -> 121; the 1d candle is not closed.
    now = D0 + 10 * HOUR_MS + 7 * MINUTE_MS
    today = entry("BTCUSDT", "5m", DAY, now, [D0 + i * M5 for i in range(121)], 121)
    assert (today.expected, today.stored, today.status) == (121, 121, COMPLETE)
    assert entry("BTCUSDT", "1d", DAY, now, [], 0).expected == 0
    # A day that has not begun expects nothing and is complete.
    future = entry("BTCUSDT", "5m", date(2024, 8, 2), now, [], 0)
    assert (future.expected, future.missing, future.status) == (0, 0, COMPLETE)
    # Missing at the edges: the first and the last candle of the day.
    times = [D0 + i * M5 for i in range(1, 287)]
    edge = entry("BTCUSDT", "5m", DAY, LATER, times, len(times))
    assert edge.missing_ranges == [(D0, D0 + M5), (D0 + DAY_MS - M5, D0 + DAY_MS)]
    assert (edge.expected, edge.stored, edge.missing, edge.status) == (288, 286, 2, MISSING)


def test_downtime_is_only_absent_candles_inside_confirmed_ranges() -> None:
    # Stored: everything but 01:00-02:00 (12 candles) and 05:00-05:15 (3 candles).
    gap1 = set(range(12, 24))
    gap2 = {60, 61, 62}
    times = [D0 + i * M5 for i in range(288) if i not in gap1 | gap2]
    # The exchange confirmed 00:30-02:00 empty (6 of those candles are stored: not downtime) and a
    # range on the previous day (clipped away).
    confirmed = [(D0 + 30 * MINUTE_MS, D0 + 2 * HOUR_MS), (D0 - HOUR_MS, D0)]
    e = entry("BTCUSDT", "5m", DAY, LATER, times, len(times), confirmed)
    assert (e.expected, e.stored, e.downtime, e.missing) == (288, 273, 12, 3)
    assert e.expected == e.stored + e.downtime + e.missing
    assert e.status == MISSING and e.missing_ranges == [(D0 + 60 * M5, D0 + 63 * M5)]
    assert e.downtime_ranges == [(D0 + 30 * MINUTE_MS, D0 + 2 * HOUR_MS)]
    only_down = entry(
        "BTCUSDT", "5m", DAY, LATER, times, len(times), [*confirmed, (D0 + 5 * HOUR_MS, D0 + 6 * HOUR_MS)]
    )
    assert (only_down.status, only_down.missing, only_down.downtime) == (DOWNTIME, 0, 15)


def test_build_ledger_reads_the_store_and_remembers_confirmed_downtime(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.sqlite") as store:
        full = [_candle("ETHUSDT", D0 + i * M5) for i in range(2 * 288)]  # two whole days
        holey = [_candle("BTCUSDT", D0 + i * M5) for i in range(2 * 288) if not 100 <= i < 110]
        store.upsert(CANDLES, full + holey)
        second = date(2024, 8, 2)
        entries = build_ledger(store, ["ETHUSDT", "BTCUSDT"], "5m", DAY, second, LATER)
        assert [(e.symbol, e.day, e.status) for e in entries] == [
            ("BTCUSDT", "2024-08-01", MISSING),
            ("BTCUSDT", "2024-08-02", COMPLETE),
            ("ETHUSDT", "2024-08-01", COMPLETE),
            ("ETHUSDT", "2024-08-02", COMPLETE),
        ]
        gap = (D0 + 100 * M5, D0 + 110 * M5)
        assert entries[0].missing_ranges == [gap] and entries[0].missing == 10
        assert repair_ranges(entries) == {"BTCUSDT": [gap]}
        # The exchange confirms the gap empty: downtime, persisted, and remembered by later builds.
        confirmed = build_ledger(store, ["BTCUSDT"], "5m", DAY, DAY, LATER, confirmed={"BTCUSDT": [gap]})
        assert (confirmed[0].status, confirmed[0].downtime, confirmed[0].missing) == (DOWNTIME, 10, 0)
        save_ledger(store, confirmed)
        again = build_ledger(store, ["BTCUSDT", "ETHUSDT"], "5m", DAY, second, LATER)
        assert [e.status for e in again] == [DOWNTIME, COMPLETE, COMPLETE, COMPLETE]
        assert repair_ranges(again) == {}
        # Should the exchange deliver those candles after all, they count as stored, not downtime.
        store.upsert(CANDLES, [_candle("BTCUSDT", D0 + i * M5) for i in range(100, 110)])
        (back,) = build_ledger(store, ["BTCUSDT"], "5m", DAY, DAY, LATER)
        assert (back.status, back.stored, back.downtime) == (COMPLETE, 288, 0)


def test_check_summary_passes_only_when_nothing_is_missing() -> None:
    full = entry("BTCUSDT", "5m", DAY, LATER, None, 288)
    down = entry(
        "ETHUSDT", "5m", DAY, LATER, [D0 + i * M5 for i in range(280)], 280, [(D0 + 280 * M5, D0 + DAY_MS)]
    )
    holey = entry("SOLUSDT", "5m", DAY, LATER, [D0 + i * M5 for i in range(284)], 284)
    ok = check_summary([full, down])
    assert ok.passed and "8 candles absent in confirmed exchange downtime" in ok.description
    assert ok.metadata == {
        "expected": 576,
        "stored": 568,
        "downtime": 8,
        "missing": 0,
        "repaired": 0,
        "days_missing": 0,
        "days_downtime": 1,
    }
    bad = check_summary([full, down, holey])
    assert not bad.passed
    assert bad.description == "4 candles missing: SOLUSDT 2024-08-01 (4)"
    assert bad.metadata["missing"] == 4 and bad.metadata["days_missing"] == 1


def test_protocol_carries_ranges_and_empty_ranges_and_old_messages_still_parse() -> None:
    from streamforge_pipelines.protocol import decode_command, decode_event

    base = {
        "command": "start",
        "queue_id": "q",
        "target": "loader-producer",
        "symbol": "SOLUSDT",
        "type": "api_candles_5m",
        "time_range": f"{DAY}:{DAY}",
    }
    assert decode_command(base).ranges is None
    cmd = decode_command({**base, "ranges": [[D0, D0 + M5], [D0 + HOUR_MS, D0 + 2 * HOUR_MS]]})
    assert cmd.ranges == [(D0, D0 + M5), (D0 + HOUR_MS, D0 + 2 * HOUR_MS)]
    assert decode_command(cmd.encode()) == cmd
    event = {"queue_id": "q", "producer": "loader-api-candles__abcdef", "status": "finished"}
    assert decode_event(event).empty_ranges is None
    done = decode_event({**event, "empty_ranges": [[D0, D0 + M5]]})
    assert done.empty_ranges == [(D0, D0 + M5)] and decode_event(done.encode()) == done
    assert b"empty_ranges" not in decode_event(event).encode()


def test_run_summary_json_and_table_show_downtime_and_repaired() -> None:
    from rich.console import Console

    from streamforge_pipelines.queue_manager import DayFigure, LoadRequest
    from streamforge_pipelines.report import print_summary
    from streamforge_pipelines.runner import RunSummary

    request = LoadRequest(symbols=("BTCUSDT",), interval="5m", first=DAY, last=date(2024, 8, 2))
    days = [
        DayFigure(symbol="BTCUSDT", day="2024-08-01", expected=288, stored=270, downtime=18),
        DayFigure(symbol="BTCUSDT", day="2024-08-02", expected=288, stored=288),
    ]
    summary = RunSummary(request=request, days=days, dagster_success=True, repaired=5)
    out = summary.to_json()
    assert out["ok"] is True  # downtime is not missing
    assert (out["missing_candles"], out["downtime_candles"], out["repaired_candles"]) == (0, 18, 5)
    assert [d["downtime"] for d in out["days"]] == [18, 0]
    console = Console(record=True, width=120)
    print_summary(summary, console)
    text = console.export_text()
    assert "downtime" in text and "18 in exchange downtime, 5 repaired, 0 missing" in text
    holey = RunSummary(
        request=request, days=[DayFigure("BTCUSDT", "2024-08-01", 288, 270, 10)], dagster_success=True
    )
    assert holey.missing == 8 and not holey.ok
