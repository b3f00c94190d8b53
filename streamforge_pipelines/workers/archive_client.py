"""A client for the bulk archive in the ``data.binance.vision`` layout (aiohttp).

Daily spot kline files ``data/spot/daily/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM-DD>.zip``
and their ``.zip.CHECKSUM`` siblings (one ``sha256sum`` line). :meth:`ArchiveClient.daily_klines`
fetches both, verifies the sha256, unzips in memory and returns the same 12-field kline rows the REST
API returns: ints for the open/close times and the trade count, the decimals as the strings of the
file, in file order. Timestamps of 1e15 or more are microseconds (spot files from 2025-01-01 on)
and are converted to milliseconds; a header row (USD-M futures files) is detected by its first byte
not being a digit and skipped.

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


class ArchiveNotAvailable(ExchangeError):
    """The archive has no such file (HTTP 404): not published, or not yet."""


class ArchiveChecksumMismatch(ExchangeError):
    """The zip's sha256 differs from its ``.CHECKSUM`` line."""

    retriable = True


def daily_klines_path(symbol: str, interval: str, day: date, market: str = "spot") -> str:
    """``data/<market>/daily/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM-DD>.zip``."""
    if interval not in DAILY_INTERVALS:
        raise ValueError(f"the archive has no daily {interval} kline files")
    return f"data/{market}/daily/klines/{symbol}/{interval}/{symbol}-{interval}-{day.isoformat()}.zip"


def _ms(value: bytes) -> int:
    n = int(value)
    return n // 1000 if n >= MICROS_THRESHOLD else n


def parse_klines_csv(data: bytes) -> list[list[Any]]:
    """Kline rows of an archive CSV, as REST returns them (times in ms, decimals as strings)."""
    rows: list[list[Any]] = []
    for line in data.splitlines():
        if not line:
            continue
        if not line[:1].isdigit():  # a header row (USD-M futures files)
            continue
        f = line.split(b",")
        if len(f) < 12:
            raise ExchangeUnavailable(f"archive CSV: expected 12 columns, got {len(f)}: {line[:80]!r}")
        rows.append(
            [
                _ms(f[0]),
                f[1].decode(),
                f[2].decode(),
                f[3].decode(),
                f[4].decode(),
                f[5].decode(),
                _ms(f[6]),
                f[7].decode(),
                int(f[8]),
                f[9].decode(),
                f[10].decode(),
                f[11].decode().strip(),
            ]
        )
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
    """``async with ArchiveClient(url) as archive: rows = await archive.daily_klines(...)``."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        max_attempts: int = 6,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
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
        self, symbol: str, interval: str, day: date, market: str = "spot"
    ) -> list[list[Any]]:
        """The kline rows of one day's file, checksum verified (see the module docstring)."""
        path = daily_klines_path(symbol, interval, day, market)
        attempt = 0
        while True:
            attempt += 1
            try:
                blob, checksum_bytes = await asyncio.gather(self._get(path), self._get(path + ".CHECKSUM"))
                checksum = checksum_bytes.decode(errors="replace")
                verify_checksum(blob, checksum, path.rsplit("/", 1)[-1])
                return parse_klines_csv(unzip_single(blob))
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
