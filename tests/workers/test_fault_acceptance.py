"""Acceptance: a 30-day x 10-symbol 1m load survives an exchange that misbehaves, with nothing lost.

The simulator runs with Binance's real rate limits (6000 weight per minute) and seeded fault
injection on every REST and archive path: latency, 5xx (empty and Binance-like bodies), bodies
truncated mid-transfer, 200s with a body cut mid-JSON (malformed), connections dropped without an
answer, and on REST the WAF's 403 (CloudFront's HTML page; every request pauses
``EXCHANGE_WAF_PAUSE_S``, 0.2 s here, then it is tried again). The load goes through the real
pipeline: ``queue_manager.load`` (in-process loaders, one governor) -> the session's
embedded broker -> the connector process -> SQLite.

Each run asserts: 432,000 candles stored (every closed 1m candle of 30 days x 10 symbols), no
duplicate keys, nothing left for the ledger's repair round, every task complete, zero 418s, and
that the faults really fired (the simulator's ``streamforge_simulator_faults_total`` on
``/metrics``) and were survived by retrying (``retries`` > 0), not avoided.

The range is fixed (August 2024) and so is the load's clock (:data:`NOW_MS`, noon the day after
it): the same days are archived or read from REST on any date. The seconds a load took are printed,
not asserted (a busy machine is slower, not wrong); ``bench/e2e_candles.py`` measures throughput.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import date
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.intervals import HOUR_MS, day_range_ms, day_start_ms
from streamforge_pipelines.queue_manager import LoadReport, LoadRequest, load
from streamforge_pipelines.queue_manager.tracking import COMPLETE
from streamforge_pipelines.simulator.faults import FaultConfig
from streamforge_pipelines.simulator.limits import LimitsConfig
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.store import store_from_settings

SYMBOLS = (
    "BTCUSDT",
    "ETHUSDT",
    "BNBUSDT",
    "SOLUSDT",
    "XRPUSDT",
    "ADAUSDT",
    "DOGEUSDT",
    "AVAXUSDT",
    "DOTUSDT",
    "LINKUSDT",
)
DAYS = 30
FIRST, LAST = date(2024, 8, 2), date(2024, 8, 31)  # 30 days, no whole calendar month (no monthly file)
#: "Now" for the load: 12:00 on the day after the range, so ``auto`` reads Aug 2..30 from the archive
#: (ended at least a day ago) and Aug 31 ("yesterday") from REST.
NOW_MS = day_start_ms(date(2024, 9, 1)) + 12 * HOUR_MS
EXPECTED = DAYS * 1440 * len(SYMBOLS)  # 432,000

#: Every kind at a few percent: over the ~450 klines requests of a load each fires 10-15 times,
#: and a page fails six attempts in a row (the client's limit) with probability 0.13^6 ~ 5e-6.
REST_FAULTS: dict[str, Any] = {
    "default": {
        "latency_ms": 5,
        "jitter_ms": 45,
        "latency_rate": 0.6,
        "server_error_rate": 0.03,
        "truncated_rate": 0.03,
        "malformed_rate": 0.03,
        "drop_rate": 0.03,
        "waf_block_rate": 0.03,
    },
}
#: The archive too: 5xx and cut zips (a malformed zip or CHECKSUM is a checksum mismatch).
ARCHIVE_FAULTS: dict[str, Any] = {
    **REST_FAULTS,
    "endpoints": {
        "/data/": {
            "server_error_rate": 0.06,
            "truncated_rate": 0.03,
            "malformed_rate": 0.15,
            "drop_rate": 0.03,
        }
    },
}
ARCHIVE_KINDS = ("server_error", "truncated", "malformed", "drop", "delayed")
REST_KINDS = (*ARCHIVE_KINDS, "waf_block")


async def _scrape(url: str) -> Counter[tuple[str, str, str]]:
    """``(metric, route, kind|status)`` -> value of the simulator's request and fault counters."""
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        text = await resp.text()
    out: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "streamforge_simulator_faults_total":
                out[("faults", s.labels["route"], s.labels["kind"])] += s.value
            elif s.name == "streamforge_simulator_requests_total":
                out[("requests", s.labels["route"], s.labels["status"])] += s.value
    return out


def _load(make_settings, source: str, faults: dict[str, Any]) -> tuple[LoadReport, Counter, float, int]:
    """One load through the pipeline; returns the report, the simulator's counter deltas, the
    seconds, and the candles counted in the store directly."""
    # The exchange is the test's own simulator (with faults); the Stack only starts the connector.
    settings = make_settings(partitions=4, exchange_url="http://127.0.0.1:9", exchange_waf_pause_s=0.2)
    request = LoadRequest(symbols=SYMBOLS, interval="1m", first=FIRST, last=LAST, source=source)
    assert (LAST - FIRST).days + 1 == DAYS

    async def main(live_base) -> tuple[LoadReport, Counter, float]:
        config = FaultConfig.from_dict(faults)
        async with SimulatorServer(seed=settings.simulator_seed, limits=LimitsConfig(), faults=config) as sim:
            live = live_base.model_copy(update={"exchange_url": sim.base_url})
            before = await _scrape(sim.base_url)
            t0 = time.monotonic()
            with store_from_settings(live) as db:
                report = await load(request, live, db, clock_ms=lambda: NOW_MS)
            seconds = time.monotonic() - t0
            after = await _scrape(sim.base_url)
        return report, after - before, seconds

    with Stack(settings) as stack:
        report, deltas, seconds = asyncio.run(main(stack.settings))
        with store_from_settings(stack.settings) as db:
            start, end = day_range_ms(request.first, request.last)
            stored = sum(db.counts_by_day(CANDLES, list(SYMBOLS), ("1m",), start, end).values())
    return report, deltas, seconds, stored


def _assert_complete(report: LoadReport, stored: int) -> None:
    assert report.tasks and set(report.tasks.values()) == {COMPLETE}, (report.tasks, report.errors)
    assert stored == EXPECTED
    assert report.stored == EXPECTED and report.missing == 0
    assert report.duplicate_keys == 0
    assert report.repaired == 0 and not report.repair_tasks  # the loaders got it all, not the repair
    assert report.ok
    assert report.exchange.http_418 == 0 and report.exchange.http_429 == 0


def _fired(deltas: Counter, route: str, kinds: tuple[str, ...]) -> dict[str, float]:
    return {kind: deltas[("faults", route, kind)] for kind in kinds}


def test_rest_load_with_faults_loses_nothing(make_settings) -> None:
    report, deltas, seconds, stored = _load(make_settings, "rest", REST_FAULTS)
    _assert_complete(report, stored)
    fired = _fired(deltas, "/api/v3", REST_KINDS)
    assert all(n >= 3 for n in fired.values()), fired  # every kind really fired, several times
    # survived by retrying (a WAF 403 is retried after the pause, like a 5xx)
    assert report.exchange.retries >= fired["server_error"] + fired["malformed"] + fired["waf_block"]
    days = report.exchange.days_by_source
    assert (days.get("rest"), days.get("archive", 0)) == (DAYS * len(SYMBOLS), 0)
    print(f"\nrest: {seconds:.1f}s, retries {report.exchange.retries}, faults {fired}")


def test_auto_load_with_archive_faults_falls_back_and_loses_nothing(make_settings) -> None:
    report, deltas, seconds, stored = _load(make_settings, "auto", ARCHIVE_FAULTS)
    _assert_complete(report, stored)
    fired = _fired(deltas, "/data/spot", ARCHIVE_KINDS)
    assert all(n >= 3 for n in fired.values()), fired
    archive_requests = sum(
        v for (m, route, _), v in deltas.items() if m == "requests" and route == "/data/spot"
    )
    days = report.exchange.days_by_source
    archive_days, rest_days = days.get("archive", 0), days.get("rest", 0)
    assert archive_days + rest_days == DAYS * len(SYMBOLS)
    # yesterday (Aug 31) is read from REST; the days whose archive files kept failing fell back too
    assert rest_days > len(SYMBOLS), days
    assert archive_days > DAYS * len(SYMBOLS) // 2, days
    # archive retries: more downloads than files (a zip and its CHECKSUM per archive day)
    assert archive_requests > 2 * (DAYS - 1) * len(SYMBOLS)
    assert report.exchange.retries > 0  # the REST pages (yesterday, the fallbacks) met faults too
    print(
        f"\nauto: {seconds:.1f}s, days {days}, retries {report.exchange.retries}, "
        f"archive requests {archive_requests:.0f}, archive faults {fired}"
    )
