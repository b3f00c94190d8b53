from __future__ import annotations

from datetime import date

import pytest

from streamforge_pipelines import intervals as iv


def test_day_range_and_counts() -> None:
    start, end = iv.day_range_ms(date(2024, 8, 1), date(2024, 8, 1))
    assert start == 1722470400000 and end - start == iv.DAY_MS
    assert iv.count_open_times(start, end, "5m") == 288
    assert iv.count_open_times(start, end, "1m") == 1440
    assert iv.count_open_times(start + 1, end, "1h") == 23
    assert iv.count_open_times(start, start, "1m") == 0


@pytest.mark.parametrize("interval", ["1s", "1m", "3m", "15m", "2h", "1d", "1w", "1M"])
def test_count_matches_enumeration(interval: str) -> None:
    start, end = iv.day_range_ms(date(2024, 1, 3), date(2024, 3, 5))
    assert iv.count_open_times(start + 7, end - 3, interval) == len(
        iv.open_times(start + 7, end - 3, interval)
    )


def test_week_opens_monday_and_month_boundaries() -> None:
    monday = iv.day_range_ms(date(2024, 7, 29), date(2024, 7, 29))[0]
    assert iv.floor_open_time(monday + 3 * iv.DAY_MS, "1w") == monday
    feb = iv.day_range_ms(date(2024, 2, 1), date(2024, 2, 1))[0]
    assert iv.close_time(feb, "1M") == iv.day_range_ms(date(2024, 3, 1), date(2024, 3, 1))[0] - 1


def test_unknown_interval() -> None:
    with pytest.raises(iv.IntervalError, match="unknown interval '7m'"):
        iv.interval_ms("7m")
