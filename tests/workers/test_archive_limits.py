"""The archive client's size limit (``ARCHIVE_MAX_MEMBER_BYTES``): a file or zip member over it is
refused in one line before it takes the memory, never retried, read from REST instead in ``auto``
and the task's error in ``archive``.

Zips are written by the test and served by a loopback aiohttp server (a 10 MB member of zeros that
compresses to a few KB: the shape of a zip bomb); the loader cases read the simulator's real
archive with a limit between the day's compressed and uncompressed sizes (measured here, not
assumed).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date

import aiohttp
import pytest
from aiohttp import web

from streamforge_pipelines.protocol import Command, format_time_range
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.workers import run_task
from streamforge_pipelines.workers.archive_client import (
    MAX_MEMBER_BYTES,
    ArchiveClient,
    ArchiveTooLarge,
    daily_klines_path,
    unzip_single,
)

DAY = date(2024, 6, 3)
BOMB_BYTES = 10 * 1024 * 1024


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, data)
    return buf.getvalue()


def test_the_default_limit_is_above_the_largest_real_files() -> None:
    # a monthly 1s kline file: 31 days x 86,400 rows of about 160 bytes
    assert MAX_MEMBER_BYTES > 31 * 86_400 * 160
    assert MAX_MEMBER_BYTES == 4 * 1024**3


def test_a_member_over_the_limit_is_refused_by_its_declared_size() -> None:
    bomb = _zip("bomb.csv", b"0" * BOMB_BYTES)
    assert len(bomb) < 100_000  # a few KB that would inflate to 10 MB
    with pytest.raises(ArchiveTooLarge, match=rf"declares {BOMB_BYTES} bytes, over the 1048576-byte limit"):
        unzip_single(bomb, max_bytes=1024 * 1024)
    exact = _zip("exact.csv", b"1" * 1000)
    assert unzip_single(exact, max_bytes=1000) == b"1" * 1000
    with pytest.raises(ArchiveTooLarge, match="ARCHIVE_MAX_MEMBER_BYTES"):
        unzip_single(exact, max_bytes=999)


@asynccontextmanager
async def _serve(files: dict[str, bytes]) -> AsyncIterator[str]:
    """A loopback HTTP server of ``files`` (path -> body), each with its ``.CHECKSUM``."""
    routes = {**files}
    for path, body in files.items():
        routes[path + ".CHECKSUM"] = (
            f"{hashlib.sha256(body).hexdigest()}  {path.rsplit('/', 1)[-1]}\n".encode()
        )
    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        path = request.path.lstrip("/")
        hits.append(path)
        if path not in routes:
            return web.Response(status=404)
        return web.Response(body=routes[path])

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_the_client_refuses_a_bomb_and_a_large_download_once_without_retrying() -> None:
    bomb_path = daily_klines_path("BTCUSDT", "1m", DAY)
    bomb = _zip("BTCUSDT-1m-2024-06-03.csv", b"0" * BOMB_BYTES)

    async def main() -> tuple[str, int, str, int]:
        async with _serve({bomb_path: bomb}) as url:
            async with ArchiveClient(url, max_member_bytes=1024 * 1024, backoff_base_s=0.01) as archive:
                with pytest.raises(ArchiveTooLarge) as member:
                    await archive.daily_klines("BTCUSDT", "1m", DAY)
                member_requests = archive.requests
            async with ArchiveClient(url, max_member_bytes=len(bomb) - 1, backoff_base_s=0.01) as archive:
                with pytest.raises(ArchiveTooLarge) as download:
                    await archive.daily_klines("BTCUSDT", "1m", DAY)
                return str(member.value), member_requests, str(download.value), archive.requests

    member, member_requests, download, download_requests = asyncio.run(main())
    assert member.startswith(f"archive {bomb_path}: zip member 'BTCUSDT-1m-2024-06-03.csv' declares 10485760")
    assert "\n" not in member and "ARCHIVE_MAX_MEMBER_BYTES" in member
    assert member_requests == 2  # the zip and its CHECKSUM, once: final, not retried
    assert download == (
        f"archive {bomb_path}: the file is {len(bomb)} bytes, over the {len(bomb) - 1}-byte limit "
        "(ARCHIVE_MAX_MEMBER_BYTES)"
    )
    assert download_requests == 2


def _command(source: str) -> Command:
    return Command(
        command="start",
        queue_id=f"wf-btcusdt-api_candles_1m-20240603-{source[:4]}{uuid.uuid4().hex[:6]}",
        target="loader-producer",
        symbol="BTCUSDT",
        type="api_candles_1m",
        time_range=format_time_range(DAY, DAY),
        source=source,  # type: ignore[arg-type]
    )


def test_a_day_over_the_limit_is_read_from_rest_in_auto_and_fails_an_archive_task(make_settings) -> None:
    async def sizes(url: str) -> tuple[int, int]:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/{daily_klines_path('BTCUSDT', '1m', DAY)}") as resp:
                blob = await resp.read()
        return len(blob), zipfile.ZipFile(io.BytesIO(blob)).infolist()[0].file_size

    async def main():
        async with SimulatorServer(seed=42) as sim:
            compressed, member = await sizes(sim.base_url)
            assert compressed < member
            limit = (compressed + member) // 2  # the download passes, its member does not
            settings = make_settings(partitions=1, exchange_url=sim.base_url, archive_max_member_bytes=limit)
            auto = await run_task(_command("auto"), settings)
            with pytest.raises(ArchiveTooLarge) as archive_only:
                await run_task(_command("archive"), settings)
            return auto, str(archive_only.value), limit, member

    auto, refused, limit, member = asyncio.run(main())
    assert auto.days_by_source == {"archive": 0, "rest": 1}  # the day came from REST instead
    assert auto.records == 1440 and auto.archive_requests == 2
    path = daily_klines_path("BTCUSDT", "1m", DAY)
    assert refused == (
        f"archive {path}: zip member 'BTCUSDT-1m-2024-06-03.csv' declares {member} bytes, "
        f"over the {limit}-byte limit (ARCHIVE_MAX_MEMBER_BYTES)"
    )
