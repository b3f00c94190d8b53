"""The source planner: closed days from the bulk archive, the recent tail from REST, identical records.

Runs the candle loader against the real simulator (which serves the archive under ``/data``) and the
session broker, and reads back what it produced. The days are fixed (August 2024); where the plan
depends on "now" (``auto``), the loader is given a fixed clock, so the same days go to the same
source on any date.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import date, timedelta

import pytest
from aiohttp import web

from streamforge_pipelines.intervals import DAY_MS, HOUR_MS, day_range_ms, day_start_ms, open_times
from streamforge_pipelines.protocol import Command, format_time_range
from streamforge_pipelines.queue_manager import LoadRequest, build_commands, load
from streamforge_pipelines.queue_manager.telemetry import read_events
from streamforge_pipelines.queue_manager.tracking import ExchangeTotals, TaskState
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.store import store_from_settings
from streamforge_pipelines.workers import run_task
from streamforge_pipelines.workers.archive_client import (
    ArchiveChecksumMismatch,
    ArchiveNotAvailable,
    parse_klines_csv,
    verify_checksum,
)
from streamforge_pipelines.workers.errors import TaskInvalid
from streamforge_pipelines.workers.governor import WeightGovernor
from streamforge_pipelines.workers.loader_candles import (
    month_published_ms,
    plan_sources,
    whole_months,
)

SYMBOL = "BTCUSDT"
#: The fixed days of the loads below: Aug 1 .. Aug 4, 2024.
D1, D2, D3, D4 = (date(2024, 8, d) for d in range(1, 5))


def _clock_at(day: date) -> int:
    """06:00 UTC on ``day``: "now" for ``auto``, which then reads every day up to two days before
    from the archive and the day before ("yesterday") from REST."""
    return day_start_ms(day) + 6 * HOUR_MS


def _command(first: date, last: date, interval: str, source: str | None, topic: str | None = None) -> Command:
    return Command(
        command="start",
        queue_id=f"wf-{SYMBOL.lower()}-api_candles_{interval}-{first:%Y%m%d}-{source or 'none'}1",
        target="loader-producer",
        symbol=SYMBOL,
        type=f"api_candles_{interval}",
        time_range=format_time_range(first, last),
        kafka_topic=topic,
        source=source,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------------------------ plan


def test_plan_sources_rules() -> None:
    days = [date(2026, 11, d) for d in range(20, 26)]  # 20 .. 25
    now = day_start_ms(date(2026, 11, 25)) + 3_600_000  # 01:00 on the 25th
    plan = dict(plan_sources(days, "1m", now, "auto"))
    # a day is archived once it ended at least a day ago: up to the 23rd; the 24th and today are REST
    assert [plan[d] for d in days] == ["archive"] * 4 + ["rest"] * 2
    assert {w for _, w in plan_sources(days, "1m", now, "rest")} == {"rest"}
    assert {w for _, w in plan_sources(days, "1m", now, "archive")} == {"archive"}
    # no daily archive files for 3d / 1w / 1M: auto reads them from REST, archive-only refuses
    assert {w for _, w in plan_sources(days, "1w", now, "auto")} == {"rest"}
    with pytest.raises(TaskInvalid, match="no daily 1w files"):
        plan_sources(days, "1w", now, "archive")
    with pytest.raises(TaskInvalid, match=r"command\.source"):
        plan_sources(days, "1m", now, "ftp")
    assert plan_sources([], "1m", now) == []
    # edge: a day that ended exactly one day ago is archived
    assert (
        plan_sources([date(2026, 11, 23)], "1m", day_start_ms(date(2026, 11, 24)) + DAY_MS)[0][1] == "archive"
    )


def test_csv_parsing_micros_header_and_checksum() -> None:
    ms_row = b"1735516800000,1.10000000,1.2,1.0,1.1,5.0,1735516859999,5.5,7,2.0,2.2,0"
    us_row = b"1735689600000000,1.10000000,1.2,1.0,1.1,5.0,1735689659999999,5.5,7,2.0,2.2,0"
    header = b"open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,x,ignore"
    rows = parse_klines_csv(header + b"\r\n" + ms_row + b"\r\n" + us_row + b"\n")
    assert rows == [
        [1735516800000, "1.10000000", "1.2", "1.0", "1.1", "5.0", 1735516859999, "5.5", 7, "2.0", "2.2"],
        [1735689600000, "1.10000000", "1.2", "1.0", "1.1", "5.0", 1735689659999, "5.5", 7, "2.0", "2.2"],
    ]
    blob = b"zip bytes"
    verify_checksum(blob, f"{hashlib.sha256(blob).hexdigest()}  X.zip\n", "X.zip")
    with pytest.raises(ArchiveChecksumMismatch):
        verify_checksum(blob, "0" * 64 + "  X.zip\n", "X.zip")


# ------------------------------------------------------------------------------ on the simulator


def test_archive_and_rest_records_are_identical_except_source_ms_and_micros_files(
    make_settings, read_docs
) -> None:
    """2024-12-31 is a millisecond file, 2025-01-01 a microsecond one: both reconcile with REST."""
    first, last = date(2024, 12, 31), date(2025, 1, 1)
    s_archive, s_rest = make_settings(partitions=2), make_settings(partitions=2)
    bootstrap = s_archive.kafka_bootstrap_servers or ""

    async def main():
        async with SimulatorServer(seed=42) as sim:
            out = []
            for settings, source in ((s_archive, "archive"), (s_rest, "rest")):
                live = settings.model_copy(update={"exchange_url": sim.base_url})
                cmd = _command(first, last, "1m", source, topic=settings.topic_candles)
                result = await run_task(cmd, live, governor=WeightGovernor(100_000))
                out.append((result, await read_docs(bootstrap, settings.topic_candles)))
            return out

    (r_archive, archive), (r_rest, rest) = asyncio.run(main())
    assert r_archive.days_by_source == {"archive": 2, "rest": 0}
    assert r_rest.days_by_source == {"archive": 0, "rest": 2}
    assert r_archive.requests == 0  # no REST request, so no weight spent
    # one Kafka message per <= 1000 candles: 1000 + 440 per archive day, 1000 + 1000 + 880 over REST pages
    assert (r_archive.pages, r_rest.pages) == (4, 3)
    assert len(archive) == len(rest) == 2 * 1440
    assert [r["open_time"] for r in archive] == open_times(*day_range_ms(first, last), "1m")
    assert {r["source"] for r in archive} == {"binance-archive"}
    assert {r["source"] for r in rest} == {"binance-rest"}
    strip = [{k: v for k, v in r.items() if k not in ("source", "queue_id")} for r in archive]
    assert strip == [{k: v for k, v in r.items() if k not in ("source", "queue_id")} for r in rest]
    # and the page message count: one per <= 1000 candles
    assert len(archive) == 2 * 1440
    # the microsecond file's times came back as milliseconds
    jan1 = [r for r in archive if r["open_time"] >= day_start_ms(last)]
    assert (
        jan1[0]["open_time"] == day_start_ms(last)
        and jan1[-1]["close_time"] == day_start_ms(last) + DAY_MS - 1
    )


def test_auto_reads_old_days_from_archive_and_the_tail_from_rest(make_settings, read_docs) -> None:
    settings0 = make_settings(partitions=2)
    first, last = D1, D4
    now = _clock_at(D4 + timedelta(days=1))  # Aug 5: Aug 1..3 archived, Aug 4 ("yesterday") from REST

    async def main():
        async with SimulatorServer(seed=42) as sim:
            live = settings0.model_copy(update={"exchange_url": sim.base_url})
            return await run_task(_command(first, last, "5m", "auto"), live, clock_ms=lambda: now)

    result = asyncio.run(main())
    assert result.days_by_source == {"archive": 3, "rest": 1}
    assert result.records == 4 * 288
    assert result.requests == 1 + 1  # the published rate limit (exchangeInfo), then yesterday's page
    events, _ = asyncio.run(read_events(settings0.kafka_bootstrap_servers or "", settings0.topic_events, {}))
    (finished,) = [e for e in events if e.status == "finished"]
    assert finished.days_by_source == {"archive": 3, "rest": 1}
    records = asyncio.run(read_docs(settings0.kafka_bootstrap_servers or "", settings0.topic_candles))
    assert [r["open_time"] for r in records] == open_times(*day_range_ms(first, last), "5m")  # in time order
    assert [r["source"] for r in records] == ["binance-archive"] * 3 * 288 + ["binance-rest"] * 288


def test_archive_404_falls_back_to_rest_in_auto_and_fails_in_archive_mode(make_settings) -> None:
    settings0 = make_settings(partitions=2)
    first, last = D1, D2
    now = _clock_at(D4)  # both days are old enough for the archive

    async def main():
        async with SimulatorServer(seed=42) as sim:
            live = settings0.model_copy(
                update={"exchange_url": sim.base_url, "exchange_archive_url": sim.base_url + "/nothing"}
            )
            auto = await run_task(_command(first, last, "15m", "auto"), live, clock_ms=lambda: now)
            with pytest.raises(ArchiveNotAvailable) as err:
                await run_task(_command(first, last, "15m", "archive"), live)
            return auto, err.value

    auto, err = asyncio.run(main())
    assert auto.days_by_source == {"archive": 0, "rest": 2}
    assert auto.records == 2 * 96
    assert "404" in str(err) and f"BTCUSDT-15m-{first.isoformat()}.zip" in str(err)
    events, _ = asyncio.run(read_events(settings0.kafka_bootstrap_servers or "", settings0.topic_events, {}))
    (error,) = [e for e in events if e.status == "error"]
    assert error.error is not None and error.error.type == "ArchiveNotAvailable"
    assert f"BTCUSDT-15m-{first.isoformat()}.zip" in error.error.detail


def test_checksum_mismatch_falls_back_to_rest(make_settings, read_docs) -> None:
    settings0 = make_settings(partitions=2)
    day = D2
    now = _clock_at(D4)  # the day is old enough for the archive
    served: list[str] = []

    async def bad_archive(request: web.Request) -> web.Response:
        served.append(request.path)
        if request.path.endswith(".CHECKSUM"):
            return web.Response(body=b"0" * 64 + b"  file.zip\n")
        return web.Response(body=b"PK not really a zip")

    async def main():
        app = web.Application()
        app.router.add_get("/{tail:.*}", bad_archive)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with SimulatorServer(seed=42) as sim:
                live = settings0.model_copy(
                    update={"exchange_url": sim.base_url, "exchange_archive_url": f"http://127.0.0.1:{port}"}
                )
                auto = await run_task(_command(day, day, "1h", "auto"), live, clock_ms=lambda: now)
                with pytest.raises(ArchiveChecksumMismatch):
                    await run_task(_command(day, day, "1h", "archive"), live)
                return auto
        finally:
            await runner.cleanup()

    auto = asyncio.run(main())
    assert auto.days_by_source == {"archive": 0, "rest": 1}
    assert auto.records == 24
    assert len([p for p in served if p.endswith(".zip")]) == 4  # downloaded twice per task, then gave up
    assert auto.retries == 1  # the archive's second try counts (the REST day after it needed none)
    records = asyncio.run(read_docs(settings0.kafka_bootstrap_servers or "", settings0.topic_candles))
    assert [r["source"] for r in records] == ["binance-rest"] * 24


def test_queue_manager_passes_source_and_sums_days_by_source(make_settings) -> None:
    request = LoadRequest(symbols=("ETHUSDT", "SOLUSDT"), interval="30m", first=D1, last=D3, source="auto")
    settings = make_settings(partitions=2)
    assert {c.source for c in build_commands(request, settings)} == {"auto"}
    now = _clock_at(D4)  # Aug 1, 2 from the archive; Aug 3 ("yesterday") from REST
    with Stack(settings) as stack:
        live = stack.settings
        with store_from_settings(live) as db:
            report = asyncio.run(load(request, live, db, clock_ms=lambda: now))
    assert report.ok, report
    # 2 symbols x (2 archived days + 1 REST day)
    assert report.exchange.days_by_source == {"archive": 4, "rest": 2}
    totals = ExchangeTotals.of(
        [
            TaskState(queue_id="a", days_by_source={"archive": 2}),
            TaskState(queue_id="b", days_by_source={"rest": 1}),
        ]
    )
    assert totals.days_by_source == {"archive": 2, "rest": 1}
    assert "days_by_source" not in totals.to_json()  # the exchange figures stay as they were


def test_run_json_and_cli_carry_the_source() -> None:
    from click.testing import CliRunner

    from streamforge_pipelines.cli import main
    from streamforge_pipelines.runner import RunSummary

    request = LoadRequest(symbols=(SYMBOL,), interval="1m", first=D1, last=D3, source="auto")
    summary = RunSummary(request=request, exchange=ExchangeTotals(days_by_source={"archive": 2}))
    assert summary.to_json()["days_by_source"] == {"archive": 2, "rest": 0, "repair": 0}
    bad = CliRunner().invoke(main, ["run", "--source", "ftp"])
    assert bad.exit_code == 2 and "'ftp' is not one of" in bad.output
    assert "--source [auto|rest|archive]" in CliRunner().invoke(main, ["run", "--help"]).output


# ------------------------------------------------------------------------------ monthly files


def test_whole_published_months_are_planned_as_monthly_files() -> None:
    # February 2024's file appears on the first Monday of March (the 4th); trusted a day later
    assert month_published_ms(2024, 2) == day_start_ms(date(2024, 3, 5))
    assert month_published_ms(2024, 12) == day_start_ms(date(2025, 1, 7))  # Jan 6 2025 is a Monday
    days = [date(2024, 1, 30) + timedelta(days=i) for i in range(33)]  # Jan 30 .. Mar 2
    plan = [(d, "archive") for d in days]
    later = day_start_ms(date(2024, 6, 1))
    assert whole_months(plan, later) == {2: 29}  # index of Feb 1, 29 days; Jan and Mar are partial
    assert whole_months(plan, month_published_ms(2024, 2) - 1) == {}  # not published yet
    holed = [(d, "rest" if d == date(2024, 2, 10) else w) for d, w in plan]
    assert whole_months(holed, later) == {}  # a REST day inside: daily files


async def _proxy_without_monthly(target: str) -> tuple[web.AppRunner, str, list[str]]:
    """An archive host that forwards to ``target`` but has no monthly files (404)."""
    import aiohttp

    seen: list[str] = []
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        seen.append(request.path)
        if "/monthly/" in request.path:
            return web.Response(status=404)
        async with session.get(target + request.path) as resp:
            return web.Response(status=resp.status, body=await resp.read())

    async def close(_app: web.Application) -> None:
        await session.close()

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    app.on_cleanup.append(close)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}", seen


def test_monthly_file_reads_a_whole_month_and_falls_back_to_daily_files(make_settings, read_docs) -> None:
    first, last = date(2024, 1, 30), date(2024, 3, 2)
    settings = [make_settings(partitions=1) for _ in range(3)]

    async def main():
        async with SimulatorServer(seed=7) as sim:
            out = []
            runner, proxy, seen = await _proxy_without_monthly(sim.base_url)
            try:
                for s, source, archive_url in (
                    (settings[0], "archive", sim.base_url),
                    (settings[1], "archive", proxy),
                    (settings[2], "rest", sim.base_url),
                ):
                    live = s.model_copy(
                        update={"exchange_url": sim.base_url, "exchange_archive_url": archive_url}
                    )
                    cmd = _command(first, last, "1h", source, topic=s.topic_candles)
                    result = await run_task(cmd, live, governor=WeightGovernor(100_000))
                    out.append((result, await read_docs(s.kafka_bootstrap_servers or "", s.topic_candles)))
            finally:
                await runner.cleanup()
            return out, seen

    ((monthly, m_rows), (daily, d_rows), (rest, r_rows)), seen = asyncio.run(main())
    assert monthly.days_by_source == daily.days_by_source == {"archive": 33, "rest": 0}
    assert rest.days_by_source == {"archive": 0, "rest": 33}
    # February from one monthly zip (+ CHECKSUM), the 4 edge days from daily files
    assert monthly.archive_requests == 2 + 4 * 2
    # the host without monthly files: one 404 per month file, then February's 29 daily files
    assert sum("/monthly/" in p for p in seen) >= 1 and daily.archive_requests >= 2 + 33 * 2
    strip = [
        [{k: v for k, v in r.items() if k not in ("source", "queue_id")} for r in rows]
        for rows in (m_rows, d_rows, r_rows)
    ]
    assert len(m_rows) == 33 * 24 and strip[0] == strip[1] == strip[2]
    assert [r["open_time"] for r in m_rows] == open_times(*day_range_ms(first, last), "1h")
