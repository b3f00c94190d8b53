"""A client for the bulk archive in the ``data.binance.vision`` layout (aiohttp).

Daily spot kline files ``data/spot/daily/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM-DD>.zip``,
monthly ones ``data/spot/monthly/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM>.zip``, and
their ``.zip.CHECKSUM`` siblings (one ``sha256sum`` line). :meth:`ArchiveClient.daily_klines` (and
:meth:`~ArchiveClient.monthly_klines`) fetches both, verifies the sha256, unzips in memory and
returns the kline rows the REST API returns (without the unused 12th field): ints for the open/close
times and the trade count, the decimals as the strings of the file, in file order. Timestamps of 1e15 or more
are microseconds (spot files from 2025-01-01 on) and are converted to milliseconds; a header row
(USD-M futures files) is detected by its first byte not being a digit and skipped.

Trades files (``data/spot/<daily|monthly>/<dtype>/<SYMBOL>/<SYMBOL>-<dtype>-<period>.zip``, ``dtype``
``aggTrades`` or ``trades``):
:meth:`ArchiveClient.daily_trades` / :meth:`~ArchiveClient.monthly_trades` return the trades loader's
rows (:func:`parse_trades_csv`: ``True``/``False`` booleans, microseconds to milliseconds).

``market="usdm"`` reads the USD-M futures files under ``data/futures/um/...`` instead of
``data/spot/...`` (same layout, header rows, milliseconds, contract precision; no ``1s`` files).

Errors (:mod:`.errors`): a 404 is :class:`ArchiveNotAvailable` (the file is not published, or not
yet); a checksum mismatch is :class:`ArchiveChecksumMismatch` (retriable: archives are re-issued,
and a torn download looks the same); 5xx, timeouts and dropped connections are retried with the
same capped, jittered exponential backoff as :class:`~.exchange_client.BinanceRestClient`, then
raised as :class:`~.errors.ExchangeUnavailable`. The archive host is not weight-limited: no
governor is charged. Workers never import the simulator; the paths are built here.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import random
import zipfile
from collections.abc import Callable
from datetime import date
from typing import Any

import aiohttp

from .backoff import Backoff
from .errors import ExchangeError, ExchangeRejected, ExchangeUnavailable

log = logging.getLogger(__name__)

#: Intervals with daily kline files (the official download script's DAILY_INTERVALS).
DAILY_INTERVALS = frozenset(("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d"))
#: A timestamp at least this large is in microseconds.
MICROS_THRESHOLD = 10**15
#: Downloads of a file whose checksum does not match before giving up on it (a re-issued archive or
#: a torn download heals on the second try; a wrong file does not).
CHECKSUM_ATTEMPTS = 2
#: The archive's path segment of each market: ``usdm`` (USD-M futures) files live under ``futures/um``.
ARCHIVE_MARKETS: dict[str, str] = {"spot": "spot", "usdm": "futures/um"}


def archive_market(market: str) -> str:
    """The path segment of ``market`` (``spot`` or ``usdm``; a segment itself passes unchanged)."""
    if market in ARCHIVE_MARKETS.values():
        return market
    segment = ARCHIVE_MARKETS.get(market)
    if segment is None:
        raise ValueError(f"the archive has no market {market!r}; choose one of {', '.join(ARCHIVE_MARKETS)}")
    return segment


class ArchiveNotAvailable(ExchangeError):
    """The archive has no such file (HTTP 404): not published, or not yet."""


class ArchiveChecksumMismatch(ExchangeError):
    """The zip's sha256 differs from its ``.CHECKSUM`` line."""

    retriable = True


def daily_klines_path(symbol: str, interval: str, day: date, market: str = "spot") -> str:
    """``data/<market>/daily/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM-DD>.zip``.

    ``market``: ``spot``, or ``usdm`` for USD-M futures (``futures/um``, no ``1s`` files).
    """
    segment = archive_market(market)
    if interval not in DAILY_INTERVALS or (segment != "spot" and interval == "1s"):
        raise ValueError(f"the {market} archive has no daily {interval} kline files")
    return f"data/{segment}/daily/klines/{symbol}/{interval}/{symbol}-{interval}-{day.isoformat()}.zip"


def monthly_klines_path(symbol: str, interval: str, year: int, month: int, market: str = "spot") -> str:
    """``data/<market>/monthly/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM>.zip`` (``1M`` is
    spelled ``1mo`` in archive paths)."""
    name = "1mo" if interval == "1M" else interval
    segment = archive_market(market)
    return f"data/{segment}/monthly/klines/{symbol}/{name}/{symbol}-{name}-{year:04d}-{month:02d}.zip"


def _ms(value: bytes) -> int:
    n = int(value)
    return n // 1000 if n >= MICROS_THRESHOLD else n


def parse_klines_csv(data: bytes) -> list[list[Any]]:
    """Kline rows of an archive CSV as REST returns them (times in ms, decimals as the file's
    strings), without the unused 12th column: the 11 fields a candle page carries.

    The hot loop of an archive load (a monthly 1m file is 44,640 rows): the text is decoded once
    and split as ``str``, about 1 µs per row here.
    """
    rows: list[list[Any]] = []
    append = rows.append
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ExchangeUnavailable(f"archive CSV: not ASCII text ({exc})") from None
    for line in text.splitlines():
        if not line or not line[0].isdigit():  # blank, or a header row (USD-M futures files)
            continue
        f = line.split(",")
        if len(f) < 12:
            raise ExchangeUnavailable(f"archive CSV: expected 12 columns, got {len(f)}: {line[:80]!r}")
        try:
            t, ct = int(f[0]), int(f[6])
            if t >= MICROS_THRESHOLD:
                t, ct = t // 1000, ct // 1000
            append([t, f[1], f[2], f[3], f[4], f[5], ct, f[7], int(f[8]), f[9], f[10]])
        except ValueError:
            raise ExchangeUnavailable(f"archive CSV: not a kline row: {line[:80]!r}") from None
    return rows


#: Trade kind -> the archive's data type.
TRADE_DATA_TYPES: dict[str, str] = {"agg": "aggTrades", "trade": "trades"}


def trades_path(symbol: str, kind: str, period: str, market: str = "spot") -> str:
    """``data/<market>/<daily|monthly>/<aggTrades|trades>/<SYMBOL>/<SYMBOL>-<aggTrades|trades>-<period>.zip``;
    ``period`` is ``YYYY-MM-DD`` (daily file) or ``YYYY-MM`` (monthly)."""
    dtype = TRADE_DATA_TYPES.get(kind)
    if dtype is None:
        raise ValueError(f"unknown trade kind {kind!r}; choose one of {', '.join(TRADE_DATA_TYPES)}")
    freq = "daily" if len(period) == 10 else "monthly"
    return f"data/{archive_market(market)}/{freq}/{dtype}/{symbol}/{symbol}-{dtype}-{period}.zip"


def _flag(value: bytes) -> bool:
    v = value.strip().lower()
    if v not in (b"true", b"false"):
        raise ExchangeUnavailable(f"archive CSV: expected true/false, got {value[:20]!r}")
    return v == b"true"


def parse_trades_csv(data: bytes, kind: str) -> list[list[Any]]:
    """Rows of an aggTrades (``kind="agg"``) or trades (``"trade"``) archive CSV, as the trades loader
    sends them: agg ``[agg_id, price, qty, first_trade_id, last_trade_id, time_ms, is_buyer_maker]``,
    trade ``[id, price, qty, quote_qty, time_ms, is_buyer_maker]`` (decimals as the file's strings,
    microseconds to milliseconds, ``True``/``true`` booleans, header rows and ``isBestMatch`` skipped)."""
    rows: list[list[Any]] = []
    agg = kind == "agg"
    need = 7 if agg else 6
    for line in data.splitlines():
        if not line or not line[:1].isdigit():  # blank or a header row (USD-M files)
            continue
        f = line.split(b",")
        if len(f) < need:
            raise ExchangeUnavailable(f"archive CSV: expected {need} columns, got {len(f)}: {line[:80]!r}")
        if agg:
            rows.append(
                [int(f[0]), f[1].decode(), f[2].decode(), int(f[3]), int(f[4]), _ms(f[5]), _flag(f[6])]
            )
        else:
            rows.append([int(f[0]), f[1].decode(), f[2].decode(), f[3].decode(), _ms(f[4]), _flag(f[5])])
    return rows


def unzip_single(blob: bytes) -> bytes:
    """The one member of an archive zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            names = zf.namelist()
            if len(names) != 1:
                raise ExchangeUnavailable(f"archive zip: expected one member, got {len(names)}")
            return zf.read(names[0])
    except zipfile.BadZipFile as exc:
        raise ExchangeUnavailable(f"archive zip: {exc}") from None


def verify_checksum(blob: bytes, checksum_text: str, name: str) -> None:
    """Raise :class:`ArchiveChecksumMismatch` unless the sha256 of ``blob`` is the CHECKSUM line's."""
    expected = checksum_text.strip().split()[0].lower() if checksum_text.strip() else ""
    actual = hashlib.sha256(blob).hexdigest()
    if expected != actual:
        raise ArchiveChecksumMismatch(
            f"{name}: sha256 {actual} differs from CHECKSUM {expected or '(empty)'}"
        )


class ArchiveClient:
    """``async with ArchiveClient(url, market="spot") as archive: rows = await archive.daily_klines(...)``."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        max_attempts: int = 6,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 10.0,
        rng: random.Random | None = None,
        market: str = "spot",
    ) -> None:
        #: The market of the files read when a call names none: ``spot`` or ``usdm``.
        self.market = market
        archive_market(market)
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._backoff = Backoff(max_attempts, backoff_base_s, backoff_cap_s, rng or random.Random())
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.retries = 0
        self.bytes = 0

    async def __aenter__(self) -> ArchiveClient:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=32, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def daily_klines(
        self, symbol: str, interval: str, day: date, market: str | None = None
    ) -> list[list[Any]]:
        """The kline rows of one day's file, checksum verified (see the module docstring)."""
        return await self.klines_file(daily_klines_path(symbol, interval, day, market or self.market))

    async def monthly_klines(
        self, symbol: str, interval: str, year: int, month: int, market: str | None = None
    ) -> list[list[Any]]:
        """The kline rows of one calendar month's file, checksum verified."""
        path = monthly_klines_path(symbol, interval, year, month, market or self.market)
        return await self.klines_file(path)

    async def klines_file(
        self, path: str, parse: Callable[[bytes], list[list[Any]]] | None = None
    ) -> list[list[Any]]:
        """The kline rows of the zip at ``path`` (and its ``.CHECKSUM``), retried as described above.

        ``parse`` turns the CSV into rows (default :func:`parse_klines_csv`; trades files pass theirs).
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                blob, checksum_bytes = await asyncio.gather(self._get(path), self._get(path + ".CHECKSUM"))
                checksum = checksum_bytes.decode(errors="replace")
                verify_checksum(blob, checksum, path.rsplit("/", 1)[-1])
                return (parse or parse_klines_csv)(unzip_single(blob))
            except ExchangeError as exc:
                if not exc.retriable or self._backoff.gives_up(attempt):
                    raise
                if isinstance(exc, ArchiveChecksumMismatch) and attempt >= CHECKSUM_ATTEMPTS:
                    raise
                self.retries += 1
                delay = self._backoff.delay(attempt)
                log.warning(
                    "retrying archive %s after %s (attempt %s, %.2fs)",
                    path,
                    exc,
                    attempt,
                    delay,
                    extra={"path": path, "attempt": attempt},
                )
                await asyncio.sleep(delay)

    async def daily_trades(self, symbol: str, kind: str, day: date) -> list[list[Any]]:
        """The rows of one day's aggTrades (``kind="agg"``) or trades (``"trade"``) file, in id order,
        as :func:`parse_trades_csv` makes them; checksum verified."""
        path = trades_path(symbol, kind, day.isoformat(), self.market)
        return await self.klines_file(path, parse=lambda data: parse_trades_csv(data, kind))

    async def monthly_trades(self, symbol: str, kind: str, year: int, month: int) -> list[list[Any]]:
        """The rows of one calendar month's aggTrades / trades file (see :meth:`daily_trades`)."""
        path = trades_path(symbol, kind, f"{year:04d}-{month:02d}", self.market)
        return await self.klines_file(path, parse=lambda data: parse_trades_csv(data, kind))

    async def _get(self, path: str) -> bytes:
        assert self._session is not None, "client not started: use 'async with'"
        self.requests += 1
        try:
            async with self._session.get(f"{self.base_url}/{path}") as resp:
                status = resp.status
                body = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ExchangeUnavailable(f"archive {path}: {type(exc).__name__}: {exc}") from exc
        if status == 404:
            raise ArchiveNotAvailable(f"archive {path}: HTTP 404 (not available)", status=404)
        if status >= 500:
            raise ExchangeUnavailable(f"archive {path}: HTTP {status}", status=status)
        if status >= 400:
            raise ExchangeRejected(f"archive {path}: HTTP {status}", status=status)
        self.bytes += len(body)
        return body
