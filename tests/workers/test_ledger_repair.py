"""The completeness ledger on the real stack: exchange downtime, targeted repair, the asset check.

A simulator process (with a downtime window, or with REST klines failing), the session broker, the
connector process and a SQLite store; loads through the queue-manager and through Dagster. The days
are fixed (August 2024), long closed on any date: ``auto`` reads them all from the archive.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
import orjson
from simulator_process import simulator_process

from streamforge_pipelines.assets.load_metadata import complete_check
from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.intervals import HOUR_MS, MINUTE_MS, day_start_ms
from streamforge_pipelines.names import COMPLETE_CHECK
from streamforge_pipelines.queue_manager import LoadReport, LoadRequest, LoadRun, load, repair_candles
from streamforge_pipelines.queue_manager.ledger import COMPLETE, DOWNTIME, MISSING
from streamforge_pipelines.runner import run_main_job
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.store import store_from_settings

M5 = 5 * MINUTE_MS
D1, D2 = date(2024, 8, 5), date(2024, 8, 6)


@contextmanager
def _simulator(tmp_path: Path, *, config: dict | None = None, faults: dict | None = None) -> Iterator[str]:
    """``streamforge simulator`` as a child process on a free port; yields its URL."""
    args = ["--seed", "42"]
    if config is not None:
        (tmp_path / "sim.json").write_bytes(orjson.dumps(config))
        args += ["--config", str(tmp_path / "sim.json")]
    if faults is not None:
        (tmp_path / "faults.json").write_bytes(orjson.dumps(faults))
        args += ["--faults", str(tmp_path / "faults.json")]
    with simulator_process(tmp_path, *args) as url:
        yield url


def _spot_requests(url: str) -> int:
    """Spot REST requests the simulator answered 200 (its Prometheus counter counts by route family,
    ``/api/v3``: the run's preflight asks ``exchangeInfo`` once, a REST loader once for its rate
    limit, then klines)."""
    body = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    m = re.search(r'streamforge_simulator_requests_total\{route="/api/v3",status="200"\} ([0-9.e+]+)', body)
    return int(float(m.group(1))) if m else 0


def _delete(settings, symbol: str, interval: str, start: int, end: int) -> int:
    with sqlite3.connect(settings.sqlite_path) as conn:
        cur = conn.execute(
            'DELETE FROM "candles" WHERE symbol = ? AND interval = ? AND open_time >= ? AND open_time < ?',
            (symbol, interval, start, end),
        )
        return cur.rowcount


def test_load_over_exchange_downtime_reports_downtime_not_missing_and_the_check_passes(
    make_settings, tmp_path: Path
) -> None:
    day = D1
    down_start, down_end = day_start_ms(day) + HOUR_MS, day_start_ms(day) + HOUR_MS + 90 * MINUTE_MS
    config = {"seed": 42, "downtime": [{"start": down_start, "end": down_end, "symbols": ["BTCUSDT"]}]}
    with _simulator(tmp_path, config=config) as url:
        settings = make_settings(partitions=2, exchange_url=url)
        request = LoadRequest(
            symbols=("BTCUSDT", "ETHUSDT"), interval="5m", first=day, last=D2, source="auto"
        )
        before = _spot_requests(url)
        summary = run_main_job(settings, request, analytics=False)
        spot_requests = _spot_requests(url) - before

    # 90 minutes of downtime = 18 five-minute candles the exchange does not have.
    assert summary.downtime == 18 and summary.missing == 0 and summary.ok
    assert summary.stored == 4 * 288 - 18 and summary.repaired == 0
    by_day = {(d.symbol, d.day): d for d in summary.days}
    assert by_day[("BTCUSDT", day.isoformat())].downtime == 18
    assert sum(d.downtime for d in summary.days) == 18
    out = summary.to_json()
    assert (out["downtime_candles"], out["repaired_candles"], out["missing_candles"]) == (18, 0, 0)
    assert out["days"][0]["downtime"] == 18 and out["ok"] is True
    # Closed days came from the archive; the gap was asked of REST once (the repair task's one day,
    # counted apart: each symbol-day is counted once under its source), and the exchange confirmed
    # it empty.
    assert out["days_by_source"] == {"archive": 4, "rest": 0, "repair": 1}
    # the preflight's exchangeInfo; the repair's loader reads exchangeInfo (its rate limit) once,
    # then its one klines page
    assert spot_requests == 3

    # The ledger is persisted with the confirmed range: a later check needs no exchange.
    with store_from_settings(settings) as db:
        ledger = db.read_ledger(["BTCUSDT", "ETHUSDT"], "5m", day.isoformat(), D2.isoformat())
    assert [e.status for e in ledger] == [DOWNTIME, COMPLETE, COMPLETE, COMPLETE]
    assert ledger[0].downtime_ranges == [(down_start, down_end)]
    assert ledger[0].missing_ranges == []

    # Dagster recorded the asset check `complete` as passed, with the ledger's figures.
    instance = dg.DagsterInstance.get()
    key = dg.AssetCheckKey(dg.AssetKey("candles_5m"), COMPLETE_CHECK)
    record = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)[0]
    evaluation = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
    assert evaluation.passed is True
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert meta["downtime"] == 18 and meta["missing"] == 0 and meta["expected"] == 4 * 288
    assert meta["stored"] == 4 * 288 - 18 and meta["repaired"] == 0


def test_repair_refetches_only_the_deleted_ranges(make_settings, tmp_path: Path) -> None:
    first, last = D1, D2
    with _simulator(tmp_path) as url:
        settings = make_settings(partitions=2, exchange_url=url)
        with Stack(settings) as stack:
            live = stack.settings
            request = LoadRequest(symbols=("ETHUSDT", "SOLUSDT"), interval="5m", first=first, last=last)
            with store_from_settings(live) as db:
                report = asyncio.run(load(request, live, db))
                assert report.ok and report.repaired == 0 and report.repair_tasks == {}
                assert report.stored == 4 * 288
                # Lose 10:00-12:00 of the first day, and 23:00-01:00 across midnight, of ETHUSDT.
                d0, d1 = day_start_ms(first), day_start_ms(last)
                gone = _delete(live, "ETHUSDT", "5m", d0 + 10 * HOUR_MS, d0 + 12 * HOUR_MS)
                gone += _delete(live, "ETHUSDT", "5m", d1 - HOUR_MS, d1 + HOUR_MS)
                assert gone == 48
                before = _spot_requests(url)
                outcome = asyncio.run(repair_candles(request, LoadRun(live, db)))
                requests = _spot_requests(url) - before
                stored = db.count(CANDLES, ("ETHUSDT", "5m"), d0, d1 + 24 * HOUR_MS)
                ledger = db.read_ledger(["ETHUSDT", "SOLUSDT"], "5m", first.isoformat(), last.isoformat())
    # One repair task (only ETHUSDT), one REST window per missing range: the midnight one is a
    # single range across the day boundary. Exactly the lost candles came back.
    assert list(outcome.tasks.values()) == ["complete"]
    assert requests == 2
    assert outcome.repaired == 48 and outcome.confirmed == 0
    assert stored == 2 * 288
    assert [e.status for e in outcome.entries] == [COMPLETE] * 4
    assert [(e.symbol, e.day, e.repaired) for e in ledger] == [
        ("ETHUSDT", first.isoformat(), 36),
        ("ETHUSDT", last.isoformat(), 12),
        ("SOLUSDT", first.isoformat(), 0),
        ("SOLUSDT", last.isoformat(), 0),
    ]
    assert complete_check(CANDLES, LoadReport(request=request, ledger=outcome.entries)).passed


def test_check_fails_when_candles_are_missing_and_the_repair_cannot_fetch_them(
    make_settings, tmp_path: Path
) -> None:
    """REST klines answer 5xx (the archive works): the load succeeds from the archive, lost candles
    cannot be re-fetched, and the check reports them missing with severity ERROR."""
    day = D1
    faults = {"endpoints": {"/api/v3/klines": {"server_error_rate": 1.0}}}
    with _simulator(tmp_path, faults=faults) as url:
        settings = make_settings(partitions=1, exchange_url=url)
        with Stack(settings) as stack:
            live = stack.settings
            request = LoadRequest(symbols=("BNBUSDT",), interval="15m", first=day, last=day, source="archive")
            with store_from_settings(live) as db:
                report = asyncio.run(load(request, live, db))
                assert report.ok and report.stored == 96
                assert (
                    _delete(
                        live,
                        "BNBUSDT",
                        "15m",
                        day_start_ms(day) + 5 * HOUR_MS,
                        day_start_ms(day) + 6 * HOUR_MS,
                    )
                    == 4
                )
                outcome = asyncio.run(repair_candles(request, LoadRun(live, db)))
                (persisted,) = db.read_ledger(["BNBUSDT"], "15m", day.isoformat(), day.isoformat())
    assert list(outcome.tasks.values()) == ["failed"]
    (entry,) = outcome.entries
    assert (entry.status, entry.missing, entry.downtime, entry.repaired) == (MISSING, 4, 0, 0)
    start = day_start_ms(day) + 5 * HOUR_MS
    assert entry.missing_ranges == [(start, start + HOUR_MS)]
    assert persisted == entry
    check = complete_check(CANDLES, LoadReport(request=request, ledger=outcome.entries))
    assert check.passed is False
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["missing"].value == 4 and check.metadata["stored"].value == 92
    assert check.description is not None and f"BNBUSDT {day.isoformat()} (4)" in check.description
