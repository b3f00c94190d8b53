"""Serving the archive: deterministic zips and checksums, a byte-budgeted cache, the ``/data/`` routes.

A file exists once its period has ended and its last candle has closed, plus a configurable delay
(:func:`available_from_ms`); anything else is S3's 404 XML (see
:mod:`streamforge_pipelines.simulator.archive`).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import zipfile
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from threading import Lock
from xml.sax.saxutils import escape

from aiohttp import web

from streamforge_pipelines.intervals import floor_open_time

from ..clock import Clock
from ..market import Market
from ..symbols import UnknownSymbolError
from .content import closed_ms, csv_chunks, csv_header
from .paths import MARKET_TYPES, ArchiveFile, parse_archive_path, period_bounds

__all__ = [
    "ZIP_DATE_TIME",
    "ZIP_LEVEL",
    "ZIP_MODE",
    "ArchiveCache",
    "add_archive_routes",
    "archive_routes",
    "available_from_ms",
    "build_zip",
    "checksum_line",
    "zip_bytes",
]

#: Fixed zip metadata: the same CSV always gives the same zip bytes.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_MODE = 0o644
ZIP_LEVEL = 6


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
        ready = closed_ms(file.interval, end_ms)
    else:
        if end_ms <= spec.first_minute_ms:
            return None
        ready = end_ms
    return ready + (daily_delay_ms if file.daily else monthly_delay_ms)


def build_zip(market: Market, file: ArchiveFile) -> bytes | None:
    """The zip bytes of ``file`` (None when its CSV would be empty: no file exists).

    Monthly trades and aggTrades zips use ZIP64 size fields (they can exceed 2 GiB of CSV).
    """
    chunks = iter(csv_chunks(market, file.zip_file))
    first = b""
    for chunk in chunks:  # skip leading empty days (before the listing)
        if chunk:
            first = chunk
            break
    if not first:
        return None
    zip64 = file.data_type != "klines" and not file.daily
    head = csv_header(file.market_type, file.data_type)  # UM trades / aggTrades: one header row
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
