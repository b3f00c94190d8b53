"""The simulator's bulk archive: ``data.binance.vision`` files built from the market model.

``reference/BINANCE_API.md`` section 6 describes the real archive; this module serves the same paths,
file names, zip layout, checksum files and CSV columns, computed on demand from a
:class:`~.market.Market` (so two simulators with the same seed serve byte-identical zips).

Paths (``<period>`` is ``YYYY-MM-DD`` for daily files, ``YYYY-MM`` for monthly ones)::

    data/spot/<daily|monthly>/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<period>.zip
    data/spot/<daily|monthly>/trades/<SYMBOL>/<SYMBOL>-trades-<period>.zip
    data/spot/<daily|monthly>/aggTrades/<SYMBOL>/<SYMBOL>-aggTrades-<period>.zip

each with a sibling ``<file>.zip.CHECKSUM`` holding the ``sha256sum`` line of the zip. The month
interval is spelled ``1mo`` in paths (the REST name is ``1M``); daily kline files exist for ``1s`` ..
``1d`` only, ``3d``/``1w``/``1mo`` are monthly only. Each zip holds one CSV with the zip's base name.

CSV contents:

* klines: the REST kline rows of the candles that open in the period, in REST order, no header;
  every candle is final (see availability below).
* trades: ``id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch``; aggTrades:
  ``aggTradeId,price,qty,firstTradeId,lastTradeId,timestamp,isBuyerMaker,isBestMatch``; spot
  booleans are written ``True``/``False``.
* Spot files whose period starts on or after 2025-01-01 carry MICROSECOND timestamps (kline open
  time ``x 1000``, close time ``x 1000 + 999``, trade times ``x 1000``); earlier files milliseconds.

USD-M futures (``data/futures/um/<daily|monthly>/<klines|trades|aggTrades>/...``, same layout as
spot), always in milliseconds, each CSV after one header row:

* klines: the ``/fapi/v1/klines`` rows of the contract :mod:`.futures` models (the spot candle plus
  a constant basis, contract precision) after :data:`FUTURES_KLINES_HEADER`; no ``1s`` files.
* trades: :data:`FUTURES_TRADES_HEADER` (``id,price,qty,quote_qty,time,is_buyer_maker``) then
  the spot trades (same ids and times) with the price shifted by the basis, price and quantity at
  the contract's precision (:meth:`.futures.Contract.price` / :meth:`~.futures.Contract.qty`,
  the helpers ``/fapi/v1/klines`` and the futures ``@aggTrade`` stream use) and ``quote_qty`` =
  price x qty exactly, at 8 decimals (as the futures kline quote volume).
* aggTrades: :data:`FUTURES_AGG_TRADES_HEADER` (``agg_trade_id,price,quantity,first_trade_id,``
  ``last_trade_id,transact_time,is_buyer_maker``), the rows the futures ``@aggTrade`` stream
  sends (same ids, prices, quantities, times), no ``isBestMatch`` column.
* booleans ``true``/``false``.

So the trades of a minute aggregate exactly to that minute's ``/fapi/v1/klines`` candle (open,
high, low, close, volume, quote volume, count, taker buy volumes). The header spellings are those
of the real ``data.binance.vision`` UM files (snake_case, e.g. ``quote_qty``, ``transact_time``),
not the camelCase column names of ``reference/BINANCE_API.md`` section 6, which lists the columns
without their header text. COIN-M files are not served.

Availability (``archive_routes``): a file exists once its period has ended *and* the last candle it
holds has closed (a monthly ``1w``/``3d`` file waits for the week/3-day candle that opens in the
month's last days), plus a configurable delay (default 0). Real Binance publishes daily files the
next day after a delay of several hours (freqtrade assumes up to 2 days) and monthly files on the
first Monday of the following month; pass ``daily_delay_ms``/``monthly_delay_ms`` to model that.
A file whose symbol or interval is unknown, whose period is not yet available, or that would be empty
(before the symbol's listing, wholly in downtime) is an HTTP 404 with an S3-style XML body, as
``data.binance.vision`` (S3 behind CloudFront) answers.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import io
import itertools
import re
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from threading import Lock
from xml.sax.saxutils import escape

import numpy as np
from aiohttp import web

from streamforge_pipelines.intervals import (
    DAY_MS,
    MINUTE_MS,
    count_open_times,
    day_start_ms,
    floor_open_time,
    next_open_time,
)

from .market import SCALE, Market, MinuteTrades, UnknownSymbolError

__all__ = [
    "DAILY_INTERVALS",
    "FUTURES_AGG_TRADES_HEADER",
    "FUTURES_KLINES_HEADER",
    "FUTURES_TRADES_HEADER",
    "MICROS_FROM_MS",
    "PATH_INTERVALS",
    "ArchiveCache",
    "ArchiveFile",
    "add_archive_routes",
    "agg_trades_csv",
    "archive_path",
    "archive_routes",
    "available_from_ms",
    "build_csv",
    "build_zip",
    "checksum_line",
    "klines_csv",
    "parse_archive_path",
    "period_bounds",
    "trades_csv",
    "zip_bytes",
]

Clock = Callable[[], int]

#: Interval as spelled in archive paths → REST interval name.
PATH_INTERVALS: dict[str, str] = {
    **{i: i for i in ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")},
    "3d": "3d",
    "1w": "1w",
    "1mo": "1M",
}
_REST_TO_PATH = {rest: path for path, rest in PATH_INTERVALS.items()}
#: Intervals with daily kline files (the official download script's DAILY_INTERVALS).
DAILY_INTERVALS: tuple[str, ...] = tuple(PATH_INTERVALS)[:13]
#: Spot files for periods starting at or after this instant (2025-01-01 UTC) use microseconds.
MICROS_FROM_MS = day_start_ms(date(2025, 1, 1))
#: Header row of USD-M futures kline files (spot files have none).
FUTURES_KLINES_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)
#: Header rows of USD-M futures trades and aggTrades files (as the real UM files spell them).
FUTURES_TRADES_HEADER = "id,price,qty,quote_qty,time,is_buyer_maker"
FUTURES_AGG_TRADES_HEADER = (
    "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
)
#: Market types served: spot and USD-M futures (COIN-M is not modelled).
MARKET_TYPES = ("spot", "um")
DATA_TYPES = ("klines", "trades", "aggTrades")
#: Fixed zip metadata: the same CSV always gives the same zip bytes.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_MODE = 0o644
ZIP_LEVEL = 6

_DAY_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
_PATH_RE = re.compile(
    r"^data/(?P<market>spot|futures/um|futures/cm)/(?P<freq>daily|monthly)/(?P<dtype>klines|trades|aggTrades)"
    r"/(?P<symbol>[A-Z0-9]{1,20})/(?:(?P<interval>[0-9a-z]{2,3})/)?(?P<file>[A-Za-z0-9.-]+)$"
)


# ---------------------------------------------------------------------------------------- periods


def period_bounds(day_or_month: str) -> tuple[int, int]:
    """``[start, end)`` in ms of a ``YYYY-MM-DD`` day or a ``YYYY-MM`` month (UTC); ValueError otherwise."""
    m = _DAY_RE.match(day_or_month)
    if m:
        d = date(int(m[1]), int(m[2]), int(m[3]))
        start = day_start_ms(d)
        return start, start + DAY_MS
    m = _MONTH_RE.match(day_or_month)
    if m:
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise ValueError(f"invalid month {day_or_month!r}")
        start = day_start_ms(date(year, month, 1))
        return start, start + calendar.monthrange(year, month)[1] * DAY_MS
    raise ValueError(f"period must be YYYY-MM-DD or YYYY-MM, got {day_or_month!r}")


def _is_daily(day_or_month: str) -> bool:
    return _DAY_RE.match(day_or_month) is not None


def _rest_interval(interval: str) -> str:
    """Accept the path spelling (``1mo``) or the REST one (``1M``); return the REST name."""
    if interval in PATH_INTERVALS:
        return PATH_INTERVALS[interval]
    if interval in _REST_TO_PATH:
        return interval
    raise ValueError(f"unknown archive interval {interval!r}")


def _micros(market_type: str, start_ms: int) -> bool:
    return market_type == "spot" and start_ms >= MICROS_FROM_MS


def _check_market_type(market_type: str) -> None:
    if market_type not in MARKET_TYPES:
        raise ValueError(f"market type {market_type!r} is not modelled (served: {', '.join(MARKET_TYPES)})")


# ------------------------------------------------------------------------------------------- CSVs


def _closed_ms(interval: str, end_ms: int) -> int:
    """The instant at which every candle that opens before ``end_ms`` has closed."""
    return max(end_ms, next_open_time(floor_open_time(end_ms - 1, interval), interval))


def _futures_rows(market: Market, symbol: str, rows: list[list]) -> list[list]:
    """Spot kline rows → the USD-M contract's rows (:mod:`.futures`: basis, contract precision)."""
    from .futures import contract, futures_row  # late: .futures imports the REST app

    c = contract(market.symbol(symbol))
    return [futures_row(c, r) for r in rows]


def klines_csv(
    market: Market, symbol: str, interval: str, day_or_month: str, *, market_type: str = "spot"
) -> bytes:
    """The kline CSV of ``symbol``/``interval`` for a day (``YYYY-MM-DD``) or a month (``YYYY-MM``).

    Rows are the final REST kline rows of every candle that opens in the period (none before the
    listing or in downtime), ``\n`` line ends. ``interval`` may be spelled as in paths (``1mo``) or
    as in REST (``1M``). Spot: no header, microsecond timestamps for periods from 2025-01-01 on.
    ``market_type="um"``: the USD-M rows of ``/fapi/v1/klines`` (contract precision, no ``1s``)
    after the :data:`FUTURES_KLINES_HEADER` row, milliseconds.
    """
    _check_market_type(market_type)
    rest = _rest_interval(interval)
    if market_type == "um" and rest == "1s":
        raise ValueError("USD-M futures have no 1s klines")
    start_ms, end_ms = period_bounds(day_or_month)
    n = count_open_times(start_ms, end_ms, rest)
    rows = market.klines(symbol, rest, start_ms, end_ms - 1, n, _closed_ms(rest, end_ms)) if n else []
    out = io.StringIO()
    if market_type == "um":
        rows = _futures_rows(market, symbol, rows)
        out.write(FUTURES_KLINES_HEADER + "\n")
    micros = _micros(market_type, start_ms)
    for row in rows:
        if micros:
            row = [row[0] * 1000, *row[1:6], row[6] * 1000 + 999, *row[7:]]
        out.write(",".join(map(str, row)))
        out.write("\n")
    return out.getvalue().encode()


def _fmt(values: np.ndarray) -> list[str]:
    whole, frac = np.divmod(values, SCALE)
    return [f"{w}.{f:08d}" for w, f in zip(whole.tolist(), frac.tolist(), strict=True)]


def _minutes(market: Market, symbol: str, start_ms: int, end_ms: int) -> Iterator[MinuteTrades]:
    first = max(start_ms, market.symbol(symbol).first_minute_ms)
    for minute in range(first - first % MINUTE_MS, end_ms, MINUTE_MS):
        mt = market.minute_trades(symbol, minute)
        if len(mt):
            yield mt


def _days(start_ms: int, end_ms: int) -> Iterator[tuple[int, int]]:
    for day in range(start_ms, end_ms, DAY_MS):
        yield day, min(day + DAY_MS, end_ms)


def _bools(values: np.ndarray, market_type: str) -> list[str]:
    true, false = ("True", "False") if market_type == "spot" else ("true", "false")
    return [true if v else false for v in values.tolist()]


def _each(render: Callable[[int], str], values: np.ndarray) -> list[str]:
    """``render`` of every value, called once per distinct value (prices repeat a lot)."""
    uniq, inverse = np.unique(values, return_inverse=True)
    text = [render(v) for v in uniq.tolist()]
    return [text[i] for i in inverse.tolist()]


class _UmRender:
    """USD-M rendering of spot trades: :func:`.futures.contract` prices (basis added) and quantities.

    The same :class:`~.futures.Contract` helpers render ``/fapi/v1/klines`` and the futures
    ``@aggTrade`` stream, so the three agree character for character.
    """

    def __init__(self, market: Market, symbol: str) -> None:
        from .futures import contract  # late: .futures imports the REST app

        spec = market.symbol(symbol)
        self.contract = contract(spec)
        # basis x qty / 1e-8, exact and without int64 overflow: basis is whole ticks, qty whole
        # steps, and tick x step is a multiple of 1e-8 (SymbolSpec checks it).
        self._basis_ticks = self.contract.basis_units // spec.tick_units
        self._step_units = spec.step_units
        self._tick_step = spec.tick_units * spec.step_units // SCALE

    def price(self, spot: np.ndarray) -> list[str]:
        return _each(self.contract.price, spot)

    def qty(self, qty: np.ndarray) -> list[str]:
        return _each(self.contract.qty, qty)

    def quote(self, spot_quote: np.ndarray, qty: np.ndarray) -> list[str]:
        """price x qty at the futures price, 8 decimals (spot quote + basis x qty, exact)."""
        return _fmt(spot_quote + self._basis_ticks * (qty // self._step_units) * self._tick_step)


def _trades_chunks(market: Market, symbol: str, day_or_month: str, market_type: str) -> Iterator[bytes]:
    """The trades rows of a period, one chunk per day (a month of a busy symbol is ~2 GB of text).

    No header (see :func:`_header`).
    """
    _check_market_type(market_type)
    start_ms, end_ms = period_bounds(day_or_month)
    scale = 1000 if _micros(market_type, start_ms) else 1
    um = _UmRender(market, symbol) if market_type == "um" else None
    for day_start, day_end in _days(start_ms, end_ms):
        out = io.StringIO()
        for mt in _minutes(market, symbol, day_start, day_end):
            ids = (mt.first_id + np.arange(len(mt))).tolist()
            times = (mt.time * scale).tolist()
            maker = _bools(~mt.buy, market_type)
            if um is None:
                for row in zip(ids, _fmt(mt.price), _fmt(mt.qty), _fmt(mt.quote), times, maker, strict=True):
                    out.write("%d,%s,%s,%s,%d,%s,True\n" % row)  # noqa: UP031 (fastest for millions of rows)
            else:
                price, qty, quote = um.price(mt.price), um.qty(mt.qty), um.quote(mt.quote, mt.qty)
                for row in zip(ids, price, qty, quote, times, maker, strict=True):
                    out.write("%d,%s,%s,%s,%d,%s\n" % row)  # noqa: UP031
        yield out.getvalue().encode()


def _agg_trades_chunks(market: Market, symbol: str, day_or_month: str, market_type: str) -> Iterator[bytes]:
    """The aggTrades rows of a period, one chunk per day (no header)."""
    _check_market_type(market_type)
    start_ms, end_ms = period_bounds(day_or_month)
    scale = 1000 if _micros(market_type, start_ms) else 1
    um = _UmRender(market, symbol) if market_type == "um" else None
    for day_start, day_end in _days(start_ms, end_ms):
        out = io.StringIO()
        for mt in _minutes(market, symbol, day_start, day_end):
            starts = mt.agg_start
            ends = np.append(starts[1:], len(mt))
            ids = (mt.first_agg_id + np.arange(len(starts))).tolist()
            qty = np.add.reduceat(mt.qty, starts)
            first = (mt.first_id + starts).tolist()
            last = (mt.first_id + ends - 1).tolist()
            times = (mt.time[starts] * scale).tolist()
            maker = _bools(~mt.buy[starts], market_type)
            if um is None:
                for row in zip(
                    ids, _fmt(mt.price[starts]), _fmt(qty), first, last, times, maker, strict=True
                ):
                    out.write("%d,%s,%s,%d,%d,%d,%s,True\n" % row)  # noqa: UP031
            else:
                for row in zip(
                    ids, um.price(mt.price[starts]), um.qty(qty), first, last, times, maker, strict=True
                ):
                    out.write("%d,%s,%s,%d,%d,%d,%s\n" % row)  # noqa: UP031
        yield out.getvalue().encode()


def _header(market_type: str, data_type: str) -> bytes:
    """The header line of a trades / aggTrades file: UM files have one, spot files none."""
    if market_type != "um" or data_type == "klines":
        return b""
    header = FUTURES_TRADES_HEADER if data_type == "trades" else FUTURES_AGG_TRADES_HEADER
    return header.encode() + b"\n"


def trades_csv(market: Market, symbol: str, day_or_month: str, *, market_type: str = "spot") -> bytes:
    """The trades CSV of a day or month, trades in id order.

    Spot: ``id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch``, no header, booleans
    ``True``/``False``. ``market_type="um"``: the :data:`FUTURES_TRADES_HEADER` row, then
    ``id,price,qty,quote_qty,time,is_buyer_maker`` at contract precision, ``true``/``false``,
    milliseconds. A day of a busy symbol is ~1M rows (~1.5 s); a month is ~30x that (the server
    streams it into the zip day by day).
    """
    return _header(market_type, "trades") + b"".join(
        _trades_chunks(market, symbol, day_or_month, market_type)
    )


def agg_trades_csv(market: Market, symbol: str, day_or_month: str, *, market_type: str = "spot") -> bytes:
    """The aggTrades CSV of a day or month.

    Spot: ``aggTradeId,price,qty,firstTradeId,lastTradeId,timestamp,isBuyerMaker,isBestMatch``, no
    header. ``market_type="um"``: the :data:`FUTURES_AGG_TRADES_HEADER` row, then the same columns
    without ``isBestMatch``, at contract precision, ``true``/``false``, milliseconds.
    """
    chunks = _agg_trades_chunks(market, symbol, day_or_month, market_type)
    return _header(market_type, "aggTrades") + b"".join(chunks)


# --------------------------------------------------------------------------------- zips, checksums


def zip_bytes(name: str, csv_bytes: bytes, *, zip64: bool = False) -> bytes:
    """A deterministic zip holding one member ``name`` (``.csv`` appended when missing).

    Fixed timestamp (1980-01-01), permissions (0644), ``ZIP_DEFLATED`` at level 6: the same CSV
    always gives byte-identical zips. ``zip64`` forces ZIP64 size fields (needed above 2 GiB; the
    server uses it for monthly trades/aggTrades files, whose size is not known in advance).
    """
    return _zip_chunks(name, [csv_bytes], zip64=zip64)


def _zip_chunks(name: str, chunks: Iterable[bytes], *, zip64: bool) -> bytes:
    """:func:`zip_bytes` of the concatenated ``chunks``, compressed as they come (same bytes)."""
    member = name if name.endswith(".csv") else f"{name}.csv"
    info = zipfile.ZipInfo(member, date_time=ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix, so the permissions below are meaningful
    info.external_attr = (0o100000 | ZIP_MODE) << 16
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as zf,
        zf.open(info, "w", force_zip64=zip64) as member_file,
    ):
        for chunk in chunks:
            member_file.write(chunk)
    return buf.getvalue()


def checksum_line(zip_name: str, zip_data: bytes) -> str:
    """The ``.CHECKSUM`` file content: ``"<sha256 hex>  <name>.zip\\n"`` (``sha256sum`` format)."""
    name = zip_name if zip_name.endswith(".zip") else f"{zip_name}.zip"
    return f"{hashlib.sha256(zip_data).hexdigest()}  {name}\n"


# ------------------------------------------------------------------------------------------ paths


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    """One archive zip (``checksum``: its ``.CHECKSUM`` sibling) as named by its path."""

    market_type: str
    daily: bool
    data_type: str
    symbol: str
    #: REST interval name (``1M`` for the path's ``1mo``); None for trades and aggTrades.
    interval: str | None
    period: str
    checksum: bool = False

    @property
    def base_name(self) -> str:
        """File name without extension, e.g. ``BTCUSDT-1h-2023-10-27``."""
        kind = _REST_TO_PATH[self.interval] if self.interval is not None else self.data_type
        return f"{self.symbol}-{kind}-{self.period}"

    @property
    def zip_name(self) -> str:
        return f"{self.base_name}.zip"

    @property
    def path(self) -> str:
        """The path below the site root, ``data/...`` (with ``.CHECKSUM`` for checksum files)."""
        market = "spot" if self.market_type == "spot" else f"futures/{self.market_type}"
        freq = "daily" if self.daily else "monthly"
        parts = ["data", market, freq, self.data_type, self.symbol]
        if self.interval is not None:
            parts.append(_REST_TO_PATH[self.interval])
        parts.append(self.zip_name + (".CHECKSUM" if self.checksum else ""))
        return "/".join(parts)

    @property
    def zip_file(self) -> ArchiveFile:
        """The zip this file is (or whose checksum it is)."""
        if not self.checksum:
            return self
        return ArchiveFile(
            self.market_type, self.daily, self.data_type, self.symbol, self.interval, self.period
        )


def archive_path(
    symbol: str,
    day_or_month: str,
    data_type: str = "klines",
    interval: str | None = None,
    *,
    market_type: str = "spot",
    checksum: bool = False,
) -> str:
    """The ``data/...`` path of a file, e.g. ``archive_path("BTCUSDT", "2023-10-27", "klines", "1h")``."""
    if (data_type == "klines") != (interval is not None):
        raise ValueError("klines files need an interval, trades and aggTrades files none")
    rest = None if interval is None else _rest_interval(interval)
    period_bounds(day_or_month)
    return ArchiveFile(
        market_type, _is_daily(day_or_month), data_type, symbol, rest, day_or_month, checksum
    ).path


def parse_archive_path(path: str) -> ArchiveFile | None:
    """The file a ``data/...`` path names, or None when the path is not a well-formed archive path.

    Checks the layout only (directory and file names agree, daily files only for ``1s`` .. ``1d``),
    not whether the symbol exists or the period is available.
    """
    m = _PATH_RE.match(path.lstrip("/"))
    if m is None:
        return None
    market = m["market"].removeprefix("futures/")
    daily = m["freq"] == "daily"
    dtype, symbol, path_interval, file = m["dtype"], m["symbol"], m["interval"], m["file"]
    checksum = file.endswith(".zip.CHECKSUM")
    base = file.removesuffix(".CHECKSUM").removesuffix(".zip")
    if not file.endswith((".zip", ".zip.CHECKSUM")):
        return None
    if (dtype == "klines") != (path_interval is not None):
        return None
    kind = path_interval if path_interval is not None else dtype
    prefix = f"{symbol}-{kind}-"
    if not base.startswith(prefix):
        return None
    period = base[len(prefix) :]
    if not (_DAY_RE if daily else _MONTH_RE).match(period):
        return None
    try:
        period_bounds(period)
    except ValueError:
        return None
    interval = None
    if path_interval is not None:
        if path_interval not in PATH_INTERVALS or (daily and path_interval not in DAILY_INTERVALS):
            return None
        if market == "um" and path_interval == "1s":
            return None
        interval = PATH_INTERVALS[path_interval]
    return ArchiveFile(market, daily, dtype, symbol, interval, period, checksum)


# ---------------------------------------------------------------------------------------- serving


def available_from_ms(
    market: Market, file: ArchiveFile, *, daily_delay_ms: int = 0, monthly_delay_ms: int = 0
) -> int | None:
    """When ``file`` appears (ms), or None when it never does (unknown symbol, unmodelled market,
    period wholly before the listing)."""
    if file.market_type not in MARKET_TYPES:
        return None
    try:
        spec = market.symbol(file.symbol)
    except UnknownSymbolError:
        return None
    end_ms = period_bounds(file.period)[1]
    if file.interval is not None:
        if floor_open_time(end_ms - 1, file.interval) < floor_open_time(spec.first_minute_ms, file.interval):
            return None
        ready = _closed_ms(file.interval, end_ms)
    else:
        if end_ms <= spec.first_minute_ms:
            return None
        ready = end_ms
    return ready + (daily_delay_ms if file.daily else monthly_delay_ms)


def _csv_chunks(market: Market, file: ArchiveFile) -> Iterable[bytes]:
    if file.data_type == "klines":
        assert file.interval is not None
        data = klines_csv(market, file.symbol, file.interval, file.period, market_type=file.market_type)
        header = len(FUTURES_KLINES_HEADER) + 1 if file.market_type == "um" else 0
        return [data] if len(data) > header else []  # no candles: no file
    if file.data_type == "trades":
        return _trades_chunks(market, file.symbol, file.period, file.market_type)
    return _agg_trades_chunks(market, file.symbol, file.period, file.market_type)


def build_csv(market: Market, file: ArchiveFile) -> bytes:
    """The CSV inside ``file``'s zip (whatever the clock)."""
    return _header(file.market_type, file.data_type) + b"".join(_csv_chunks(market, file.zip_file))


def build_zip(market: Market, file: ArchiveFile) -> bytes | None:
    """The zip bytes of ``file`` (None when its CSV would be empty: no file exists).

    Monthly trades and aggTrades zips use ZIP64 size fields (they can exceed 2 GiB of CSV).
    """
    chunks = iter(_csv_chunks(market, file.zip_file))
    first = b""
    for chunk in chunks:  # skip leading empty days (before the listing)
        if chunk:
            first = chunk
            break
    if not first:
        return None
    zip64 = file.data_type != "klines" and not file.daily
    head = _header(file.market_type, file.data_type)  # UM trades / aggTrades: one header row
    return _zip_chunks(file.base_name, itertools.chain([head, first], chunks), zip64=zip64)


class ArchiveCache:
    """A byte-budgeted LRU of built zips (a monthly ``1m`` zip is ~44k rows, a few MB), thread safe."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes | None] = OrderedDict()
        self._size = 0
        self._lock = Lock()
        self.hits = 0
        self.misses = 0

    def get(self, market: Market, file: ArchiveFile) -> bytes | None:
        """The zip of ``file`` (its zip path is the key), built on a miss."""
        key = file.zip_file.path
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
        data = build_zip(market, file.zip_file)
        with self._lock:
            if key not in self._items and len(data or b"") <= self.max_bytes:
                self._items[key] = data
                self._size += len(data or b"")
            while self._size > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._size -= len(old or b"")
        return data


def _not_found(path: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message>"
        f"<Key>{escape(path)}</Key></Error>"
    )
    return web.Response(status=404, text=body, content_type="application/xml")


def archive_routes(
    market: Market,
    *,
    clock: Clock,
    daily_delay_ms: int = 0,
    monthly_delay_ms: int = 0,
    cache: ArchiveCache | None = None,
) -> list[web.RouteDef]:
    """``GET /data/{path}`` (and HEAD): the archive zips and their ``.CHECKSUM`` files.

    ``clock`` returns the current time in ms (files appear when their period is over, plus the
    delays). Builds run on one worker thread so the event loop stays responsive and concurrent
    requests for the same file build it once. Wire with ``app.add_routes(archive_routes(...))``,
    or use :func:`add_archive_routes`, which also stops the worker thread on app cleanup.
    """
    return _routes(market, clock, daily_delay_ms, monthly_delay_ms, cache)[0]


def add_archive_routes(
    app: web.Application,
    market: Market,
    clock: Clock,
    *,
    daily_delay_ms: int = 0,
    monthly_delay_ms: int = 0,
    cache: ArchiveCache | None = None,
) -> None:
    """Add :func:`archive_routes` to ``app`` and shut their build thread down on ``app`` cleanup."""
    routes, executor = _routes(market, clock, daily_delay_ms, monthly_delay_ms, cache)
    app.add_routes(routes)

    async def stop(_: web.Application) -> None:
        executor.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(stop)


def _routes(
    market: Market,
    clock: Clock,
    daily_delay_ms: int,
    monthly_delay_ms: int,
    cache: ArchiveCache | None,
) -> tuple[list[web.RouteDef], ThreadPoolExecutor]:
    store = cache if cache is not None else ArchiveCache()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-archive")

    async def handle(request: web.Request) -> web.StreamResponse:
        path = "data/" + request.match_info["path"]
        file = parse_archive_path(path)
        if file is None:
            return _not_found(path)
        ready = available_from_ms(
            market, file, daily_delay_ms=daily_delay_ms, monthly_delay_ms=monthly_delay_ms
        )
        if ready is None or clock() < ready:
            return _not_found(path)
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(executor, store.get, market, file)
        if data is None:
            return _not_found(path)
        if file.checksum:
            return web.Response(
                body=checksum_line(file.zip_name, data).encode(), content_type="text/plain", charset="utf-8"
            )
        return web.Response(body=data, content_type="application/zip")

    return [web.get("/data/{path:.*}", handle)], executor
