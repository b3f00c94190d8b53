"""Splitting a load run into steps (queue_manager.fanout): groups sized from the range, shares of
the budget, and one report from the steps' reports."""

from __future__ import annotations

from datetime import date

import pytest

from streamforge_pipelines.queue_manager import LoadReport, LoadRequest, TradesReport, TradesRequest
from streamforge_pipelines.queue_manager.fanout import merge_reports, step_settings, step_share, symbol_groups
from streamforge_pipelines.queue_manager.requests import DayFigure
from streamforge_pipelines.queue_manager.tracking import ExchangeTotals
from streamforge_pipelines.settings import Settings

SYMBOLS = ("ADAUSDT", "BNBUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT")
DAY = date(2024, 8, 1)


def test_a_small_run_is_one_step_and_a_large_one_splits_evenly() -> None:
    # 7 symbols × 2 days = 14 symbol-days: under one step's share of the work
    assert symbol_groups(SYMBOLS, 2, max_steps=4, symbol_days_per_step=90) == [SYMBOLS]
    # 7 × 30 = 210 symbol-days: 3 steps of whole symbols, contiguous, sizes 3/2/2
    groups = symbol_groups(SYMBOLS, 30, max_steps=4, symbol_days_per_step=90)
    assert groups == [SYMBOLS[:3], SYMBOLS[3:5], SYMBOLS[5:]]
    # a year: capped by max_steps; every symbol in exactly one group
    year = symbol_groups(SYMBOLS, 365, max_steps=4, symbol_days_per_step=90)
    assert len(year) == 4 and [s for g in year for s in g] == list(SYMBOLS)
    assert max(map(len, year)) - min(map(len, year)) <= 1
    # never more steps than symbols; one symbol over ten years is one step
    assert symbol_groups(SYMBOLS[:2], 3650, max_steps=8, symbol_days_per_step=1) == [
        (s,) for s in SYMBOLS[:2]
    ]
    assert symbol_groups(SYMBOLS[:1], 3650, max_steps=8, symbol_days_per_step=1) == [SYMBOLS[:1]]
    assert symbol_groups((), 10, max_steps=4, symbol_days_per_step=90) == []


def test_each_step_gets_its_share_of_what_runs() -> None:
    settings = Settings(exchange_weight_share=0.8)
    assert step_share(settings, groups=1, runs=1) == pytest.approx(0.8)
    assert step_share(settings, groups=4, runs=2) == pytest.approx(0.1)
    assert step_share(settings, groups=0, runs=0) == pytest.approx(0.8)  # at least this run, one step
    assert step_settings(settings, 0.1).exchange_weight_share == pytest.approx(0.1)
    assert settings.exchange_weight_share == pytest.approx(0.8)  # a copy, not changed


def _candles(symbols: tuple[str, ...], stored: int, http_429: int, peak: float, seconds: float) -> LoadReport:
    report = LoadReport(request=LoadRequest(symbols=symbols, interval="5m", first=DAY, last=DAY))
    report.days = [DayFigure(s, DAY.isoformat(), 288, stored) for s in symbols]
    report.tasks = {f"q-{s}": "complete" for s in symbols}
    report.loaded, report.seconds, report.duplicate_keys = stored * len(symbols), seconds, 1
    report.exchange = ExchangeTotals(http_429=http_429, weight_budget_used=peak, days_by_source={"rest": 1})
    return report


def test_the_steps_reports_make_one_report() -> None:
    a = _candles(("BTCUSDT", "ETHUSDT"), 288, 0, 0.5, 10.0)
    b = _candles(("SOLUSDT",), 280, 1, 0.9, 12.5)
    merged = merge_reports([a, b])
    assert merged.request.symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert (merged.request.interval, merged.request.first) == ("5m", DAY)
    assert merged.expected == 3 * 288 and merged.stored == 2 * 288 + 280 and merged.missing == 8
    assert set(merged.tasks) == {"q-BTCUSDT", "q-ETHUSDT", "q-SOLUSDT"} and merged.loaded == 856
    assert merged.seconds == 12.5 and merged.duplicate_keys == 2  # side by side; counts add up
    assert merged.exchange.http_429 == 1 and merged.exchange.weight_budget_used == 0.9
    assert merged.exchange.days_by_source == {"rest": 2}
    assert merge_reports([a]) is a
    with pytest.raises(ValueError):
        merge_reports([])


def test_trades_reports_merge_too() -> None:
    def one(symbol: str, loaded: int, repaired: int) -> TradesReport:
        request = TradesRequest(symbols=(symbol,), kind="agg", first=DAY, last=DAY)
        return TradesReport(request=request, tasks={symbol: "complete"}, loaded=loaded, repaired=repaired)

    merged = merge_reports([one("BTCUSDT", 10, 1), one("ETHUSDT", 5, 2)])
    assert merged.request.symbols == ("BTCUSDT", "ETHUSDT") and merged.request.kind == "agg"
    assert (merged.loaded, merged.repaired, len(merged.tasks)) == (15, 3, 2)
