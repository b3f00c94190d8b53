"""The simulator's ``data.binance.vision`` archive, served for real on loopback and read with aiohttp.

Every test runs against a fixed seed and an injected clock (no sleeps). Files are checked the way a
client of the real archive checks them: the zip against its ``.CHECKSUM`` (the ``sha256sum -c``
rule), one CSV member with the zip's base name, rows equal to the REST klines of the same range
(``Market.klines`` paged with ``limit=1000``, the REST maximum), and the row shape of a real archive
excerpt (``reference/binance-samples/vision_spot_klines_BTCUSDT-1h-2023-10-27.csv``, copied below).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import hashlib
import io
import itertools
import json
import re
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from streamforge_pipelines.intervals import DAY_MS, HOUR_MS, MINUTE_MS, day_start_ms, next_open_time
from streamforge_pipelines.simulator.app import build_app
from streamforge_pipelines.simulator.archive import (
    FUTURES_AGG_TRADES_HEADER,
    FUTURES_KLINES_HEADER,
    FUTURES_TRADES_HEADER,
    ArchiveCache,
    ArchiveFile,
    add_archive_routes,
    agg_trades_csv,
    archive_path,
    archive_routes,
    build_zip,
    checksum_line,
    klines_csv,
    parse_archive_path,
    trades_csv,
    zip_bytes,
)
from streamforge_pipelines.simulator.config import SimulatorConfig
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.simulator.usdm import contract
from streamforge_pipelines.simulator.ws import WsConfig

SEED = 20240801
#: 2025-03-10 12:00 UTC: every 2024 and February 2025 file exists, 2025-03-10's daily file does not.
NOW_MS = day_start_ms(date(2025, 3, 10)) + 12 * HOUR_MS
MARKET = Market(SEED)  # shared: its caches make the suite fast; it is a pure function of SEED

#: First rows of the real archive file BTCUSDT-1h-2023-10-27.csv (data.binance.vision).
REAL_ROWS = """\
1698364800000,34151.66000000,34171.28000000,33972.39000000,34015.27000000,908.27901000,1698368399999,30937869.62302600,41459,416.48838000,14187002.70550060,0
1698368400000,34015.27000000,34054.48000000,33780.00000000,33848.47000000,1439.61708000,1698371999999,48834748.13159950,63969,583.65349000,19801364.63410430,0
"""
EIGHT_DP = re.compile(r"^[0-9]+\.[0-9]{8}$")
CHECKSUM_LINE = re.compile(r"^([0-9a-f]{64})  (\S+\.zip)\n$")


class Reply:
    """One HTTP answer: status, headers and raw body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def fetch(
    *paths: str,
    market: Market = MARKET,
    clock: Callable[[], int] = lambda: NOW_MS,
    cache: ArchiveCache | None = None,
    **options: Any,
) -> list[Reply]:
    """Serve ``archive_routes`` on a loopback port, GET each path in order, stop the server."""

    async def main() -> list[Reply]:
        app = web.Application()
        app.add_routes(archive_routes(market, clock=clock, cache=cache, **options))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                out = []
                for path in paths:
                    async with http.get("/" + path) as resp:
                        out.append(Reply(resp.status, dict(resp.headers), await resp.read()))
                return out
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def verified_csv(zip_reply: Reply, checksum_reply: Reply, path: str) -> bytes:
    """Check a zip against its .CHECKSUM (``sha256sum -c``) and return its single CSV member."""
    assert zip_reply.status == 200 and checksum_reply.status == 200
    assert zip_reply.headers["Content-Type"] == "application/zip"
    assert checksum_reply.headers["Content-Type"].startswith("text/plain")
    zip_name = path.rsplit("/", 1)[1]
    m = CHECKSUM_LINE.match(checksum_reply.body.decode())
    assert m is not None, checksum_reply.body
    assert m[2] == zip_name
    assert hashlib.sha256(zip_reply.body).hexdigest() == m[1]
    with zipfile.ZipFile(io.BytesIO(zip_reply.body)) as zf:
        assert zf.namelist() == [zip_name.removesuffix(".zip") + ".csv"]
        assert zf.testzip() is None
        return zf.read(zf.namelist()[0])


def download(path: str, **kwargs: Any) -> bytes:
    """GET a zip and its checksum, verify, return the CSV."""
    zip_reply, checksum_reply = fetch(path, path + ".CHECKSUM", **kwargs)
    return verified_csv(zip_reply, checksum_reply, path)


def parse(csv_bytes: bytes) -> list[list[Any]]:
    """Kline CSV rows typed as REST returns them: times and count as ints, the rest strings."""
    rows = csv.reader(io.StringIO(csv_bytes.decode()))
    return [[int(v) if i in (0, 6, 8) else v for i, v in enumerate(row)] for row in rows]


def rest_klines(symbol: str, interval: str, start_ms: int, end_ms: int) -> list[list]:
    """Every kline opening in ``[start_ms, end_ms)`` the REST API returns at NOW_MS (pages of 1000)."""
    out: list[list] = []
    start = start_ms
    while True:
        page = MARKET.klines(symbol, interval, start, end_ms - 1, 1000, NOW_MS)
        out.extend(page)
        if len(page) < 1000:
            return out
        start = next_open_time(page[-1][0], interval)


def to_ms(rows: list[list]) -> list[list]:
    """Microsecond kline rows (2025+ spot files) back in milliseconds."""
    for row in rows:
        assert len(str(row[0])) == 16 and str(row[6]).endswith("999999")
    return [[r[0] // 1000, *r[1:6], r[6] // 1000, *r[7:]] for r in rows]


def assert_kline_shape(row: list[Any], digits: int) -> None:
    assert len(row) == 12
    assert isinstance(row[0], int) and isinstance(row[6], int) and isinstance(row[8], int)
    assert len(str(row[0])) == len(str(row[6])) == digits
    assert all(EIGHT_DP.match(row[i]) for i in (1, 2, 3, 4, 5, 7, 9, 10)), row
    assert row[11] == "0"


# ---------------------------------------------------------------------------------------- klines


def test_daily_klines_verify_and_equal_rest() -> None:
    path = "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-03-05.zip"
    rows = parse(download(path))
    start = day_start_ms(date(2024, 3, 5))
    assert rows == rest_klines("BTCUSDT", "1h", start, start + DAY_MS)
    assert len(rows) == 24 and rows[0][0] == start and rows[-1][6] == start + DAY_MS - 1
    assert_kline_shape(rows[0], 13)


def test_first_row_shape_matches_real_archive() -> None:
    real = parse(REAL_ROWS.encode())
    assert_kline_shape(real[0], 13)  # the checks themselves hold for the real file
    ours = parse(klines_csv(MARKET, "BTCUSDT", "1h", "2023-10-27"))
    assert_kline_shape(ours[0], 13)
    assert [type(v) for v in ours[0]] == [type(v) for v in real[0]]
    assert ours[0][0] == real[0][0] and ours[0][6] == real[0][6]  # same candle boundaries
    assert klines_csv(MARKET, "BTCUSDT", "1h", "2023-10-27").endswith(b",0\n")


def test_monthly_1m_equals_rest_and_daily_concatenation() -> None:
    path = "data/spot/monthly/klines/ETHUSDT/1m/ETHUSDT-1m-2024-02.zip"
    monthly = download(path)
    start, end = day_start_ms(date(2024, 2, 1)), day_start_ms(date(2024, 3, 1))
    assert parse(monthly) == rest_klines("ETHUSDT", "1m", start, end)
    assert monthly.count(b"\n") == 29 * 1440
    days = [str(date(2024, 2, 1) + timedelta(days=i)) for i in range(29)]
    daily_paths = [archive_path("ETHUSDT", d, "klines", "1m") for d in days]
    replies = fetch(*daily_paths)
    assert all(r.status == 200 for r in replies)
    concatenated = b"".join(
        zipfile.ZipFile(io.BytesIO(r.body)).read(f"ETHUSDT-1m-{d}.csv")
        for r, d in zip(replies, days, strict=True)
    )
    assert concatenated == monthly


def test_2024_spot_files_in_ms_2025_in_microseconds() -> None:
    old = parse(download("data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-12-31.zip"))
    new = parse(download("data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-01-01.zip"))
    assert_kline_shape(old[0], 13)
    assert_kline_shape(new[0], 16)
    assert str(new[0][6]).endswith("999999") and new[0][0] == day_start_ms(date(2025, 1, 1)) * 1000
    start = day_start_ms(date(2025, 1, 1))
    assert to_ms(new) == rest_klines("BTCUSDT", "1m", start, start + DAY_MS)
    assert old == rest_klines("BTCUSDT", "1m", start - DAY_MS, start)
    monthly = parse(download("data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2025-02.zip"))
    assert_kline_shape(monthly[0], 16)
    feb = day_start_ms(date(2025, 2, 1))
    assert to_ms(monthly) == rest_klines("BTCUSDT", "1h", feb, day_start_ms(date(2025, 3, 1)))


def test_monthly_only_intervals() -> None:
    rows = parse(download("data/spot/monthly/klines/SOLUSDT/1mo/SOLUSDT-1mo-2024-06.zip"))
    june = day_start_ms(date(2024, 6, 1))
    assert rows == rest_klines("SOLUSDT", "1M", june, june + 30 * DAY_MS) and len(rows) == 1
    weeks = parse(download("data/spot/monthly/klines/SOLUSDT/1w/SOLUSDT-1w-2024-06.zip"))
    # Weeks open on Mondays: 3, 10, 17, 24 June; the last one closes on 30 June.
    assert [r[0] for r in weeks] == [june + d * DAY_MS for d in (2, 9, 16, 23)]
    assert weeks == rest_klines("SOLUSDT", "1w", june, june + 30 * DAY_MS)
    three = parse(download("data/spot/monthly/klines/SOLUSDT/3d/SOLUSDT-3d-2024-06.zip"))
    assert three == rest_klines("SOLUSDT", "3d", june, june + 30 * DAY_MS)


def test_same_seed_byte_identical_zips() -> None:
    path = "data/spot/daily/klines/BNBUSDT/5m/BNBUSDT-5m-2024-05-05.zip"
    first = fetch(path)[0].body
    second = fetch(path, market=Market(SEED))[0].body
    assert first == second
    assert build_zip(Market(SEED), parse_archive_path(path)) == first  # type: ignore[arg-type]
    assert fetch(path, market=Market(SEED + 1))[0].body != first
    csv_bytes = klines_csv(MARKET, "BNBUSDT", "5m", "2024-05-05")
    assert zip_bytes("BNBUSDT-5m-2024-05-05", csv_bytes) == first
    info = zipfile.ZipFile(io.BytesIO(first)).infolist()[0]
    assert info.compress_type == zipfile.ZIP_DEFLATED and info.date_time == (1980, 1, 1, 0, 0, 0)
    assert checksum_line("BNBUSDT-5m-2024-05-05.zip", first) == (
        f"{hashlib.sha256(first).hexdigest()}  BNBUSDT-5m-2024-05-05.zip\n"
    )


def test_futures_klines_header_precision_and_ms() -> None:
    from streamforge_pipelines.simulator.usdm import contract, futures_row

    c = contract(MARKET.symbol("XRPUSDT"))
    start = day_start_ms(date(2025, 2, 1))
    daily = []
    for day in range(3):
        path = archive_path("XRPUSDT", str(date(2025, 2, 1 + day)), "klines", "1h", market_type="um")
        assert path.startswith("data/futures/um/daily/klines/XRPUSDT/1h/")
        header, body = download(path).split(b"\n", 1)
        assert header.decode() == FUTURES_KLINES_HEADER
        rows = parse(body)
        day_start = start + day * DAY_MS
        spot = rest_klines("XRPUSDT", "1h", day_start, day_start + DAY_MS)
        assert rows == [futures_row(c, r) for r in spot]  # the /fapi/v1/klines rows
        assert len(str(rows[0][0])) == 13  # futures stay in milliseconds in 2025
        assert re.fullmatch(r"[0-9]+\.[0-9]{%d}" % c.price_decimals, rows[0][1])  # noqa: UP031
        daily.append(body)
    monthly = download(archive_path("XRPUSDT", "2025-02", "klines", "1h", market_type="um"))
    assert monthly.startswith(FUTURES_KLINES_HEADER.encode() + b"\n" + daily[0] + daily[1] + daily[2])
    assert monthly.count(b"\n") == 1 + 28 * 24


# ---------------------------------------------------------------------------------------- trades


def test_daily_trades_and_agg_trades_equal_rest() -> None:
    day = "2024-04-02"
    start = day_start_ms(date(2024, 4, 2))
    trades = list(
        csv.reader(
            io.StringIO(download(f"data/spot/daily/trades/ATOMUSDT/ATOMUSDT-trades-{day}.zip").decode())
        )
    )
    first_id = int(trades[0][0])
    rest = MARKET.trades("ATOMUSDT", NOW_MS, limit=1000, from_id=first_id)
    expected = [
        [str(t["id"]), t["price"], t["qty"], t["quoteQty"], str(t["time"]), str(t["isBuyerMaker"]), "True"]
        for t in rest
    ]
    assert trades[:1000] == expected
    assert start <= int(trades[0][4]) and int(trades[-1][4]) < start + DAY_MS
    assert [int(t[0]) for t in trades] == list(range(first_id, first_id + len(trades)))
    assert {t[5] for t in trades} == {"True", "False"}
    # The next trade after the file is the next day's.
    after = MARKET.trades("ATOMUSDT", NOW_MS, limit=1, from_id=first_id + len(trades))
    assert after[0]["time"] >= start + DAY_MS

    aggs = list(
        csv.reader(
            io.StringIO(download(f"data/spot/daily/aggTrades/ATOMUSDT/ATOMUSDT-aggTrades-{day}.zip").decode())
        )
    )
    rest_aggs = MARKET.agg_trades("ATOMUSDT", NOW_MS, limit=1000, start_ms=start)
    expected_aggs = [
        [str(a["a"]), a["p"], a["q"], str(a["f"]), str(a["l"]), str(a["T"]), str(a["m"]), str(a["M"])]
        for a in rest_aggs
    ]
    assert aggs[:1000] == expected_aggs
    assert int(aggs[0][3]) == first_id and int(aggs[-1][4]) == first_id + len(trades) - 1
    # Each aggregate trade's quantity is the sum of its trades.
    qty = {int(t[0]): int(t[2].replace(".", "")) for t in trades}
    for a in aggs[:200]:
        assert int(a[2].replace(".", "")) == sum(qty[i] for i in range(int(a[3]), int(a[4]) + 1))


def test_2025_trades_in_microseconds() -> None:
    day = day_start_ms(date(2025, 2, 3))
    trades = trades_csv(MARKET, "TRXUSDT", "2025-02-03").split(b"\n", 1)[0].split(b",")
    aggs = agg_trades_csv(MARKET, "TRXUSDT", "2025-02-03").split(b"\n", 1)[0].split(b",")
    assert len(trades) == 7 and len(aggs) == 8
    assert len(trades[4]) == 16 and day * 1000 <= int(trades[4]) < (day + MINUTE_MS) * 1000
    assert aggs[5] == trades[4] and aggs[0] != b"" and trades[5] in (b"True", b"False")


def test_late_listing_monthly_trades_equal_daily_concatenation() -> None:
    listing = day_start_ms(date(2024, 2, 28)) + 13 * HOUR_MS + 30 * MINUTE_MS + 5_000
    market = Market.from_config(SimulatorConfig(SEED, symbols=("ATOMUSDT",), listings={"ATOMUSDT": listing}))
    days = ["2024-02-28", "2024-02-29"]
    for dtype in ("trades", "aggTrades"):
        monthly_path = archive_path("ATOMUSDT", "2024-02", dtype)
        daily = [download(archive_path("ATOMUSDT", d, dtype), market=market) for d in days]
        assert b"".join(daily) == download(monthly_path, market=market)
        assert daily[0].startswith(b"0,")  # ids start at 0 at the listing
        assert fetch(archive_path("ATOMUSDT", "2024-02-27", dtype), market=market)[0].status == 404
        assert fetch(archive_path("ATOMUSDT", "2024-01", dtype), market=market)[0].status == 404
    first_trade_ms = int(daily[0].split(b",", 6)[5])
    assert listing - listing % MINUTE_MS <= first_trade_ms
    # Kline files of the listing day start at the listing minute, as REST does.
    rows = parse(download(archive_path("ATOMUSDT", "2024-02-28", "klines", "1h"), market=market))
    assert rows[0][0] == day_start_ms(date(2024, 2, 28)) + 13 * HOUR_MS and len(rows) == 11
    monthly = parse(download(archive_path("ATOMUSDT", "2024-02", "klines", "1d"), market=market))
    assert [r[0] for r in monthly] == [day_start_ms(date(2024, 2, d)) for d in (28, 29)]
    assert fetch(archive_path("ATOMUSDT", "2024-01", "klines", "1d"), market=market)[0].status == 404


# ------------------------------------------------------------------------- USD-M trades, aggTrades

#: The UM day the futures trades tests read (ATOMUSDT: ~57k trades, ~27k aggregate trades).
UM_SYM, UM_DAY = "ATOMUSDT", "2024-08-02"
UM_START = day_start_ms(date(2024, 8, 2))
UM_CONTRACT = contract(MARKET.symbol(UM_SYM))
BASIS = Decimal(UM_CONTRACT.basis_units) / 10**8


def at_precision(text: str, decimals: int) -> bool:
    pattern = r"[0-9]+" if decimals == 0 else r"[0-9]+\.[0-9]{%d}" % decimals  # noqa: UP031
    return re.fullmatch(pattern, text) is not None


def split_header(csv_bytes: bytes, header: str) -> list[list[str]]:
    """Rows of a UM trades / aggTrades CSV after checking its single header line."""
    first, body = csv_bytes.split(b"\n", 1)
    assert first.decode() == header
    assert header.encode() not in body
    return list(csv.reader(io.StringIO(body.decode())))


@functools.cache
def um_day(dtype: str) -> bytes:
    """The verified CSV of the UM ``dtype`` file of UM_SYM / UM_DAY (downloaded once)."""
    return download(archive_path(UM_SYM, UM_DAY, dtype, market_type="um"))


@contextlib.asynccontextmanager
async def serve_app(clock: Callable[[], int], ws: WsConfig | None = None) -> AsyncIterator[str]:
    """The whole simulator app (REST, WebSocket, archive) on a free loopback port."""
    app = build_app(MARKET, clock=clock, ws=ws)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def fapi_klines(interval: str, limit: int) -> list[list[Any]]:
    """``GET /fapi/v1/klines`` of UM_SYM from UM_DAY 00:00, served by the app at NOW_MS."""

    async def main() -> list[list[Any]]:
        async with serve_app(lambda: NOW_MS) as base, aiohttp.ClientSession() as http:
            query = f"symbol={UM_SYM}&interval={interval}&startTime={UM_START}&limit={limit}"
            async with http.get(f"{base}/fapi/v1/klines?{query}") as resp:
                assert resp.status == 200
                return await resp.json()

    return asyncio.run(main())


def test_um_daily_trades_shape_and_spot_basis() -> None:
    trades = split_header(um_day("trades"), FUTURES_TRADES_HEADER)
    pd, qd = UM_CONTRACT.price_decimals, UM_CONTRACT.qty_decimals
    assert (pd, qd) == (3, 2)
    for t in trades:
        assert len(t) == 6 and at_precision(t[1], pd) and at_precision(t[2], qd) and EIGHT_DP.match(t[3])
        assert Decimal(t[3]) == Decimal(t[1]) * Decimal(t[2])  # quote_qty = price x qty, exactly
    assert {t[5] for t in trades} == {"true", "false"}
    times = [int(t[4]) for t in trades]
    assert all(len(t[4]) == 13 for t in trades) and UM_START <= times[0] and times[-1] < UM_START + DAY_MS
    assert times == sorted(times)
    # The spot trades of the same day: same ids, times, quantities and sides, prices + the basis.
    spot = list(csv.reader(io.StringIO(trades_csv(MARKET, UM_SYM, UM_DAY).decode())))
    assert len(spot) == len(trades)
    for f, s in zip(trades, spot, strict=True):
        assert (f[0], f[4], f[5]) == (s[0], s[4], s[5].lower())
        assert Decimal(f[1]) == Decimal(s[1]) + BASIS and Decimal(f[2]) == Decimal(s[2])
    # Futures files stay in milliseconds in 2025, and other precisions render as the contract's.
    for sym in ("DOGEUSDT", "BCHUSDT"):
        c = contract(MARKET.symbol(sym))
        row = split_header(
            trades_csv(MARKET, sym, "2025-02-03", market_type="um")[:4096], FUTURES_TRADES_HEADER
        )[0]
        assert at_precision(row[1], c.price_decimals) and at_precision(row[2], c.qty_decimals)
        assert len(row[4]) == 13 and row[5] in ("true", "false")
    assert (
        contract(MARKET.symbol("DOGEUSDT")).qty_decimals,
        contract(MARKET.symbol("BCHUSDT")).price_decimals,
    ) == (0, 1)


def test_um_trades_aggregate_to_fapi_klines() -> None:
    trades = split_header(um_day("trades"), FUTURES_TRADES_HEADER)
    minutes: dict[int, list[list[str]]] = {}
    for t in trades:
        minutes.setdefault(int(t[4]) // MINUTE_MS * MINUTE_MS, []).append(t)
    klines = fapi_klines("1m", 1500)
    klines = [k for k in klines if k[0] < UM_START + DAY_MS]
    assert [k[0] for k in klines if k[8]] == sorted(minutes) and len(klines) == 1440
    for k in klines:
        group = minutes.get(k[0], [])
        if not group:
            assert Decimal(k[5]) == 0
            continue
        prices = [Decimal(t[1]) for t in group]
        taker = [t for t in group if t[5] == "false"]  # the buyer was the taker
        assert (k[1], k[4]) == (group[0][1], group[-1][1])  # open, close: same strings
        assert (Decimal(k[2]), Decimal(k[3])) == (max(prices), min(prices))
        assert Decimal(k[5]) == sum(Decimal(t[2]) for t in group) and k[8] == len(group)
        assert Decimal(k[7]) == sum(Decimal(t[3]) for t in group)
        assert Decimal(k[9]) == sum(Decimal(t[2]) for t in taker)
        assert Decimal(k[10]) == sum(Decimal(t[3]) for t in taker)
    (day,) = fapi_klines("1d", 1)
    prices = [Decimal(t[1]) for t in trades]
    assert (day[1], day[4]) == (trades[0][1], trades[-1][1])
    assert (Decimal(day[2]), Decimal(day[3])) == (max(prices), min(prices))
    assert Decimal(day[5]) == sum(Decimal(t[2]) for t in trades) and day[8] == len(trades)


def test_um_agg_trades_regroup_the_trades() -> None:
    trades = split_header(um_day("trades"), FUTURES_TRADES_HEADER)
    aggs = split_header(um_day("aggTrades"), FUTURES_AGG_TRADES_HEADER)
    by_id = {int(t[0]): t for t in trades}
    assert all(len(a) == 7 for a in aggs)  # no isBestMatch
    assert [int(a[0]) for a in aggs] == list(range(int(aggs[0][0]), int(aggs[0][0]) + len(aggs)))
    assert int(aggs[0][3]) == int(trades[0][0]) and int(aggs[-1][4]) == int(trades[-1][0])
    for a, b in itertools.pairwise(aggs):
        assert int(b[3]) == int(a[4]) + 1  # consecutive, no gap, no overlap
    for a in aggs:
        group = [by_id[i] for i in range(int(a[3]), int(a[4]) + 1)]
        assert {t[1] for t in group} == {a[1]} and {t[5] for t in group} == {a[6]}
        assert a[5] == group[0][4] and at_precision(a[2], UM_CONTRACT.qty_decimals)
        assert Decimal(a[2]) == sum(Decimal(t[2]) for t in group)
    assert {a[6] for a in aggs} == {"true", "false"}


def test_um_agg_trades_equal_futures_ws_frames() -> None:
    """Futures ``@aggTrade`` frames of UM_DAY are rows of the UM aggTrades file, character for character."""
    start = UM_START + 7 * HOUR_MS + 30 * MINUTE_MS
    speedup = 30.0
    t0 = time.monotonic()

    def clock() -> int:
        return start + int((time.monotonic() - t0) * 1000 * speedup)

    async def main() -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(30), serve_app(clock, WsConfig(speedup=speedup)) as base:
            url = base.replace("http", "ws") + f"/fapi-ws/market/ws/{UM_SYM.lower()}@aggTrade"
            async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
                while len(frames) < 8:
                    frames.append(json.loads((await ws.receive()).data))
        return frames

    frames = asyncio.run(main())
    rows = {int(a[0]): a for a in split_header(um_day("aggTrades"), FUTURES_AGG_TRADES_HEADER)}
    for f in frames:
        assert f["e"] == "aggTrade" and f["s"] == UM_SYM
        rendered = [str(f["a"]), f["p"], f["q"], str(f["f"]), str(f["l"]), str(f["T"]), json.dumps(f["m"])]
        assert rows[f["a"]] == rendered


def test_um_monthly_trades_equal_daily_concatenation_with_one_header() -> None:
    listing = day_start_ms(date(2024, 2, 28)) + 13 * HOUR_MS + 30 * MINUTE_MS + 5_000
    market = Market.from_config(SimulatorConfig(SEED, symbols=("ATOMUSDT",), listings={"ATOMUSDT": listing}))
    days = ["2024-02-28", "2024-02-29"]
    for dtype, header in (("trades", FUTURES_TRADES_HEADER), ("aggTrades", FUTURES_AGG_TRADES_HEADER)):
        head = header.encode() + b"\n"
        daily = [download(archive_path("ATOMUSDT", d, dtype, market_type="um"), market=market) for d in days]
        assert all(d.startswith(head) and d.count(head) == 1 for d in daily)
        monthly_path = archive_path("ATOMUSDT", "2024-02", dtype, market_type="um")
        assert monthly_path == f"data/futures/um/monthly/{dtype}/ATOMUSDT/ATOMUSDT-{dtype}-2024-02.zip"
        monthly = download(monthly_path, market=market)
        assert monthly == head + b"".join(d.removeprefix(head) for d in daily)
        assert monthly.startswith(head + b"0,")  # ids start at 0 at the listing
        spot = download(archive_path("ATOMUSDT", "2024-02", dtype), market=market)
        assert monthly.count(b"\n") == spot.count(b"\n") + 1
        for missing in ("2024-02-27", "2024-01"):
            reply = fetch(archive_path("ATOMUSDT", missing, dtype, market_type="um"), market=market)[0]
            assert reply.status == 404


def test_um_trades_same_seed_byte_identical_zips() -> None:
    for dtype, build in (("trades", trades_csv), ("aggTrades", agg_trades_csv)):
        path = archive_path(UM_SYM, UM_DAY, dtype, market_type="um")
        first = fetch(path)[0].body
        fresh = Market(SEED)
        assert build_zip(fresh, parse_archive_path(path)) == first  # type: ignore[arg-type]
        csv_bytes = build(fresh, UM_SYM, UM_DAY, market_type="um")
        assert zip_bytes(f"{UM_SYM}-{dtype}-{UM_DAY}", csv_bytes) == first
        assert csv_bytes == um_day(dtype)
        other = Market(SEED + 1)
        assert build(other, UM_SYM, UM_DAY, market_type="um") != csv_bytes


# --------------------------------------------------------------------------------- availability


@pytest.mark.parametrize(
    "path",
    [
        # today (2025-03-10) has not ended; nor has March 2025
        "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-03-10.zip",
        "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-03-10.zip.CHECKSUM",
        "data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2025-03.zip",
        "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-03-11.zip",
        # unknown symbol, unknown interval, 3d/1w/1mo daily files, bad names
        "data/spot/daily/klines/NOPEUSDT/1m/NOPEUSDT-1m-2024-03-05.zip",
        "data/spot/daily/klines/BTCUSDT/7m/BTCUSDT-7m-2024-03-05.zip",
        "data/spot/daily/klines/BTCUSDT/3d/BTCUSDT-3d-2024-03-05.zip",
        "data/spot/daily/klines/BTCUSDT/1w/BTCUSDT-1w-2024-03-05.zip",
        "data/spot/daily/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-03-05.zip",
        "data/spot/monthly/klines/BTCUSDT/1M/BTCUSDT-1M-2024-03.zip",
        "data/spot/daily/klines/BTCUSDT/1h/ETHUSDT-1h-2024-03-05.zip",
        "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-03.zip",
        "data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-03-05.zip",
        "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-02-30.zip",
        "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-03-05.csv",
        "data/spot/daily/trades/BTCUSDT/1h/BTCUSDT-trades-2024-03-05.zip",
        "data/spot/daily",
        # before the listing (BTCUSDT: 2017-08-17)
        "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2017-08-16.zip",
        "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2017-08-16.zip",
        "data/spot/monthly/klines/BTCUSDT/1d/BTCUSDT-1d-2017-07.zip",
        # futures: no 1s klines, no COIN-M, UM trades not before the day ends nor before the listing
        "data/futures/um/daily/klines/BTCUSDT/1s/BTCUSDT-1s-2024-03-05.zip",
        "data/futures/cm/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-03-05.zip",
        "data/futures/cm/daily/trades/BTCUSDT/BTCUSDT-trades-2024-03-05.zip",
        "data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2025-03-10.zip",
        "data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2025-03-10.zip.CHECKSUM",
        "data/futures/um/monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2025-03.zip",
        "data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2017-08-16.zip",
        "data/futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2025-03-10.zip",
    ],
)
def test_missing_files_are_404(path: str) -> None:
    reply = fetch(path)[0]
    assert reply.status == 404
    assert reply.headers["Content-Type"].startswith("application/xml")
    assert b"<Code>NoSuchKey</Code>" in reply.body


def test_listing_day_and_day_boundaries() -> None:
    listing = parse(download("data/spot/daily/klines/BTCUSDT/1d/BTCUSDT-1d-2017-08-17.zip"))
    assert listing == rest_klines(
        "BTCUSDT", "1d", day_start_ms(date(2017, 8, 17)), day_start_ms(date(2017, 8, 18))
    )
    assert len(listing) == 1
    # Yesterday's file exists from 00:00 today, with a delay when one is configured.
    path = archive_path("BTCUSDT", "2025-03-09", "klines", "1m")
    midnight = day_start_ms(date(2025, 3, 10))
    now = [midnight - 1]
    replies = fetch(path, clock=lambda: now[0])
    assert replies[0].status == 404
    now[0] = midnight
    assert fetch(path, clock=lambda: now[0])[0].status == 200
    delayed = fetch(path, clock=lambda: now[0], daily_delay_ms=6 * HOUR_MS)[0]
    assert delayed.status == 404
    now[0] = midnight + 6 * HOUR_MS
    assert fetch(path, clock=lambda: now[0], daily_delay_ms=6 * HOUR_MS)[0].status == 200
    # A monthly 1w file waits for the week that opens in the month's last days to close.
    weekly = archive_path("BTCUSDT", "2024-01", "klines", "1w")  # last week: Jan 29 .. Feb 4
    feb5 = day_start_ms(date(2024, 2, 5))
    assert fetch(weekly, clock=lambda: feb5 - 1)[0].status == 404
    assert fetch(weekly, clock=lambda: feb5)[0].status == 200


def test_cache_serves_repeated_requests() -> None:
    cache = ArchiveCache(max_bytes=1 << 20)
    path = archive_path("LTCUSDT", "2024-07-01", "klines", "15m")
    replies = fetch(path, path + ".CHECKSUM", path, cache=cache)
    assert [r.status for r in replies] == [200, 200, 200]
    assert replies[0].body == replies[2].body
    assert (cache.misses, cache.hits) == (1, 2)
    # A tiny budget keeps only the newest entry.
    small = ArchiveCache(max_bytes=1)
    other = archive_path("LTCUSDT", "2024-07-02", "klines", "15m")
    fetch(path, other, path, cache=small)
    assert (small.misses, small.hits) == (3, 0)


def test_add_archive_routes_and_head() -> None:
    path = archive_path("DOGEUSDT", "2024-07-01", "klines", "1d")

    async def main() -> tuple[int, int, bytes, str]:
        app = web.Application()
        add_archive_routes(app, MARKET, lambda: NOW_MS)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.head(base + path) as head:
                    length = int(head.headers["Content-Length"])
                    head_body = await head.read()
                async with http.get(base + path) as resp:
                    body = await resp.read()
                    return head.status, length, head_body, str(len(body))
        finally:
            await runner.cleanup()

    status, length, head_body, body_length = asyncio.run(main())
    assert (status, head_body, str(length)) == (200, b"", body_length)


# ----------------------------------------------------------------------------------------- paths


def test_paths_round_trip() -> None:
    cases = {
        (
            "BTCUSDT",
            "2023-10-27",
            "klines",
            "1h",
        ): "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2023-10-27.zip",
        (
            "BTCUSDT",
            "2020-08",
            "klines",
            "1M",
        ): "data/spot/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2020-08.zip",
        (
            "BTCUSDT",
            "2020-08",
            "klines",
            "1mo",
        ): "data/spot/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2020-08.zip",
        (
            "ETHUSDT",
            "2024-01-02",
            "trades",
            None,
        ): "data/spot/daily/trades/ETHUSDT/ETHUSDT-trades-2024-01-02.zip",
        (
            "ETHUSDT",
            "2024-01",
            "aggTrades",
            None,
        ): "data/spot/monthly/aggTrades/ETHUSDT/ETHUSDT-aggTrades-2024-01.zip",
    }
    for (symbol, period, dtype, interval), expected in cases.items():
        assert archive_path(symbol, period, dtype, interval) == expected
        parsed = parse_archive_path(expected)
        assert parsed is not None and parsed.path == expected and parsed.symbol == symbol
        checksum = parse_archive_path(expected + ".CHECKSUM")
        assert checksum is not None and checksum.checksum and checksum.zip_file == parsed
    assert archive_path("BTCUSDT", "2024-01", "klines", "1h", checksum=True).endswith(".zip.CHECKSUM")
    with pytest.raises(ValueError):
        archive_path("BTCUSDT", "2024-01", "klines")
    futures = "data/futures/um/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-01.zip"
    assert archive_path("BTCUSDT", "2024-01", "klines", "1M", market_type="um") == futures
    assert parse_archive_path(futures) is not None
    with pytest.raises(ValueError):
        klines_csv(MARKET, "BTCUSDT", "1s", "2024-01-01", market_type="um")
    with pytest.raises(ValueError):
        trades_csv(MARKET, "BTCUSDT", "2024-01-01", market_type="cm")
    um = "data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-02.zip"
    assert archive_path("BTCUSDT", "2024-01-02", "aggTrades", market_type="um") == um
    assert parse_archive_path(um) == ArchiveFile("um", True, "aggTrades", "BTCUSDT", None, "2024-01-02")
    with pytest.raises(ValueError):
        klines_csv(MARKET, "BTCUSDT", "1h", "2024-01-01", market_type="cm")
