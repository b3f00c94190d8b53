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

**Size limit** (``ARCHIVE_MAX_MEMBER_BYTES``, default :data:`MAX_MEMBER_BYTES`): a file is held in
memory whole, so neither its download nor its zip member may exceed the limit: a ``Content-Length``
or a body over it, a member whose declared uncompressed size is over it, or one that inflates past
it (a zip bomb: zipfile stops at the declared size, and the read is capped too) is
:class:`ArchiveTooLarge`: final for that file (never retried), and like any other archive error a
day that ``auto`` then reads from REST, while an ``archive``-only task fails with its one line.
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

from ..intervals import DAILY_INTERVALS
from .backoff import Backoff
from .errors import ExchangeError, ExchangeRejected, ExchangeUnavailable

log = logging.getLogger(__name__)

#: A timestamp at least this large is in microseconds.
MICROS_THRESHOLD = 10**15
#: Downloads of a file whose checksum does not match before giving up on it (a re-issued archive or
#: a torn download heals on the second try; a wrong file does not).
CHECKSUM_ATTEMPTS = 2
#: Largest archive file and zip member read (uncompressed bytes), unless ``ARCHIVE_MAX_MEMBER_BYTES``
#: says otherwise. Sized from the largest real files: a kline line is about 160 bytes, so the biggest
#: kline member, a monthly 1s file (2,678,400 rows), is about 450 MB (a monthly 1m file about 7 MB);
#: a trade line is about 80 bytes, and the busiest BTCUSDT days (tens of millions of trades in the
#: 2022-23 zero-fee months) make daily trades files of one to two GB. 4 GiB leaves a margin over
#: those and still stops a bogus or hostile file before it takes the machine's memory.
MAX_MEMBER_BYTES = 4 * 1024**3
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


class ArchiveTooLarge(ExchangeError):
    """A file or zip member over the size limit (:data:`MAX_MEMBER_BYTES`): final, not retried."""


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


def unzip_single(blob: bytes, max_bytes: int = MAX_MEMBER_BYTES) -> bytes:
    """The one member of an archive zip; :class:`ArchiveTooLarge` when its declared or its actual
    uncompressed size is over ``max_bytes`` (checked before and while inflating, so a zip bomb never
    takes more than ``max_bytes`` of memory)."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            infos = zf.infolist()
            if len(infos) != 1:
                raise ExchangeUnavailable(f"archive zip: expected one member, got {len(infos)}")
            info = infos[0]
            if info.file_size > max_bytes:
                raise _too_large(f"zip member {info.filename[:80]!r} declares", info.file_size, max_bytes)
            with zf.open(info) as member:
                data = member.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise _too_large(f"zip member {info.filename[:80]!r} inflates to over", max_bytes, max_bytes)
            return data
    except zipfile.BadZipFile as exc:
        raise ExchangeUnavailable(f"archive zip: {exc}") from None


def _too_large(what: str, size: int, limit: int) -> ArchiveTooLarge:
    return ArchiveTooLarge(f"{what} {size} bytes, over the {limit}-byte limit (ARCHIVE_MAX_MEMBER_BYTES)")


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
        max_member_bytes: int = MAX_MEMBER_BYTES,
    ) -> None:
        #: The market of the files read when a call names none: ``spot`` or ``usdm``.
        self.market = market
        #: Largest download and zip member (uncompressed) read: :class:`ArchiveTooLarge` beyond.
        self.max_member_bytes = max_member_bytes
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
                try:
                    data = unzip_single(blob, self.max_member_bytes)
                except ArchiveTooLarge as exc:
                    raise ArchiveTooLarge(f"archive {path}: {exc}") from None
                return (parse or parse_klines_csv)(data)
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
                body = await self._read_capped(resp, path) if status < 400 else b""
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

    async def _read_capped(self, resp: aiohttp.ClientResponse, path: str) -> bytes:
        """The body, or :class:`ArchiveTooLarge` as soon as it is over :attr:`max_member_bytes` (by its
        ``Content-Length``, or while it streams in): a compressed file is smaller than its member."""
        limit = self.max_member_bytes
        if resp.content_length is not None and resp.content_length > limit:
            raise _too_large(f"archive {path}: the file is", resp.content_length, limit)
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(1 << 20):
            size += len(chunk)
            if size > limit:
                raise _too_large(f"archive {path}: the file is over", limit, limit)
            chunks.append(chunk)
        return b"".join(chunks)
