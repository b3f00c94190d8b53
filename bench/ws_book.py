"""Depth-diff messages per second per core, book maintenance included: our book beside cryptofeed's.

Issue #12's book benchmark. One run:

1. **capture** — the exchange simulator (its own process: ``SimulatorServer`` with a clock running
   ``--speedup`` times real time from a fixed instant, REST and streams alike) serves the combined
   stream ``<s>@depth@100ms`` of ``--symbols`` symbols of the default universe on one connection;
   ``--frames`` raw text frames are kept in memory, and for each symbol the REST snapshot
   ``/api/v3/depth?symbol=S&limit=1000`` (cryptofeed's own URL and depth) is fetched as soon as its
   first frame arrives, as the documented procedure does;
2. **replay**, each engine on the same frames and snapshots, one thread, ``time.process_time()``
   around the whole loop (CPU seconds of one core; the simulator is stopped first):

   * **streamforge** — per frame ``orjson.loads``, route by ``data["s"]``,
     :meth:`SymbolBook.on_diff` (its first event asks for the snapshot: ``on_snapshot`` of the
     decoded body); the crossed-book check runs on every event;
   * **streamforge (engine only)** — the same with the frames decoded beforehand;
   * **cryptofeed** — ``cryptofeed.exchanges.Binance`` subclassed with its REST and WebSocket
     addresses on the simulator, in its default configuration and with ``cross_check=True`` (its
     crossed-book check after every event, as ours does); every frame goes through its own
     ``message_handler`` (yapic JSON with ``Decimal``, ``_check_update_id``, the ``order_book`` C
     sorted dicts, ``book_callback``); its snapshot request is answered with the body recorded from
     the simulator at that same URL (so both engines start from the same snapshot).

   ``--rounds`` rounds, the engines alternating; the best round of each is reported.
3. **check** — at the end every symbol's top 10 levels must be the same in both books and equal to
   the simulator's true book at the last update id (``Market.depth_snapshot``); exit 1 otherwise.

Prints messages/s and price levels/s per core for each engine and the ratios to cryptofeed: the
target (>= 1.5x) is judged against its default, the faster of its two configurations although it
checks less than ours; and one JSON line. Figures are never asserted in tests.
cryptofeed is a benchmark dependency only: ``pip install -e '.[bench]'``.

``python -m bench.ws_book [--symbols 8] [--frames 50000] [--rounds 3] [--speedup 20]
[--save FILE | --load FILE]`` (``--save`` keeps the capture as JSON lines, ``--load`` replays one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from streamforge_pipelines.settings import DEFAULT_UNIVERSE
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.stack import free_port
from streamforge_pipelines.workers.live.book import NEED_SNAPSHOT, SymbolBook

SEED = 20240801
#: 2024-08-02 05:00 UTC: a fixed instant, so every run replays the same market.
T0_MS = 1_722_574_800_000
SNAPSHOT_LIMIT = 1000  # cryptofeed's default depth (max_depth=0)
TOP = 10
TARGET = 1.5
CF_DEFAULT = "cryptofeed"
CF_CHECKED = "cryptofeed (cross_check)"
ENGINES = ("streamforge", "streamforge (engine only)", CF_DEFAULT, CF_CHECKED)

_SIMULATOR = """
import asyncio, sys, time
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.simulator.ws import WsConfig
start, speedup, t0 = int(sys.argv[2]), float(sys.argv[3]), time.monotonic()
def clock():
    return start + int((time.monotonic() - t0) * 1000 * speedup)
async def main():
    async with SimulatorServer(seed=int(sys.argv[4]), port=int(sys.argv[1]), clock=clock,
                               ws=WsConfig(speedup=speedup)):
        await asyncio.Event().wait()
asyncio.run(main())
"""


# ---------------------------------------------------------------------- the simulator and the capture


@contextlib.contextmanager
def simulator(speedup: float) -> Iterator[str]:
    """The simulator in its own process; yields its base URL (``http://127.0.0.1:<port>``)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SIMULATOR, str(port), str(T0_MS), str(speedup), str(SEED)],
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("error: the simulator did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def snapshot_url(base: str, symbol: str) -> str:
    """cryptofeed's snapshot URL (``Binance.rest_endpoints`` route ``l2book``) on ``base``."""
    return f"{base}/api/v3/depth?symbol={symbol}&limit={SNAPSHOT_LIMIT}"


async def capture(base: str, symbols: list[str], frames: int) -> tuple[list[str], dict[str, str]]:
    """``frames`` combined-stream depth frames, and each symbol's snapshot body fetched after its first."""
    streams = "/".join(f"{s.lower()}@depth@100ms" for s in symbols)
    url = f"{base.replace('http', 'ws', 1)}/stream?streams={streams}"
    out: list[str] = []
    bodies: dict[str, str] = {}
    tasks: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession() as session:

        async def fetch(symbol: str) -> None:
            async with session.get(snapshot_url(base, symbol)) as resp:
                resp.raise_for_status()
                bodies[snapshot_url(base, symbol)] = await resp.text()

        seen: set[str] = set()
        async with session.ws_connect(url, max_msg_size=0) as ws:
            while len(out) < frames:
                msg = await ws.receive(timeout=60)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise SystemExit(f"error: the stream ended after {len(out)} frames ({msg.type.name})")
                out.append(msg.data)
                if len(seen) < len(symbols):
                    symbol = msg.data[msg.data.index('"s":"') + 5 :].split('"', 1)[0]
                    if symbol not in seen:
                        seen.add(symbol)
                        tasks.append(asyncio.create_task(fetch(symbol)))
                if len(out) % 10_000 == 0:
                    print(f"  captured {len(out):,} frames", file=sys.stderr)
        await asyncio.gather(*tasks)
    return out, bodies


# ---------------------------------------------------------------------- the engines


def run_streamforge(frames: list[str], snapshots: dict[str, bytes]) -> tuple[float, dict[str, SymbolBook]]:
    """CPU seconds to decode, route and apply every frame with our books."""
    books: dict[str, SymbolBook] = {}
    loads = orjson.loads
    t = time.process_time()
    for frame in frames:
        data = loads(frame)["data"]
        book = books.get(data["s"])
        if book is None:
            book = books[data["s"]] = SymbolBook(data["s"], "spot")
        if book.on_diff(data) is NEED_SNAPSHOT:
            book.on_snapshot(loads(snapshots[data["s"]]))
    return time.process_time() - t, books


def run_streamforge_engine(frames: list[dict[str, Any]], snapshots: dict[str, bytes]) -> float:
    """CPU seconds of the book work alone (frames decoded beforehand)."""
    books: dict[str, SymbolBook] = {}
    t = time.process_time()
    for msg in frames:
        data = msg["data"]
        book = books.get(data["s"])
        if book is None:
            book = books[data["s"]] = SymbolBook(data["s"], "spot")
        if book.on_diff(data) is NEED_SNAPSHOT:
            book.on_snapshot(orjson.loads(snapshots[data["s"]]))
    return time.process_time() - t


class RecordedHttp:
    """cryptofeed's ``http_conn`` answering ``read(url)`` with the body recorded from the simulator."""

    def __init__(self, bodies: dict[str, str]) -> None:
        self.bodies = bodies

    async def read(self, address: str, **_: Any) -> str:
        return self.bodies[address]

    async def close(self) -> None:
        return None


def cryptofeed_feed(base: str) -> Any:
    """cryptofeed's ``Binance`` with its REST and WebSocket addresses on the simulator."""
    from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
    from cryptofeed.exchanges import Binance

    class SimulatorBinance(Binance):
        websocket_endpoints = [WebsocketEndpoint(base.replace("http", "ws", 1))]
        rest_endpoints = [
            RestEndpoint(
                base,
                routes=Routes("/api/v3/exchangeInfo", l2book="/api/v3/depth?symbol={}&limit={}"),
            )
        ]

    return SimulatorBinance


async def _replay_cryptofeed(feed: Any, frames: list[str]) -> float:
    handler = feed.message_handler
    t = time.process_time()
    for frame in frames:
        await handler(frame, None, 0.0)
    return time.process_time() - t


def run_cryptofeed(
    feed_cls: Any, symbols: list[str], frames: list[str], bodies: dict[str, str], cross_check: bool
) -> tuple[float, Any]:
    """CPU seconds of cryptofeed's own handler over every frame (a fresh feed)."""
    from cryptofeed.defines import L2_BOOK

    std = [f"{s[:-4]}-{s[-4:]}" for s in symbols]  # BTCUSDT -> BTC-USDT
    feed = feed_cls(symbols=std, channels=[L2_BOOK], cross_check=cross_check)
    feed.http_conn = RecordedHttp(bodies)
    return asyncio.run(_replay_cryptofeed(feed, frames)), feed


# ---------------------------------------------------------------------- the check


def truth_top(market: Market, symbol: str, event_ms: int) -> tuple[int, list[list[str]], list[list[str]]]:
    snap = market.depth_snapshot(symbol, TOP, event_ms)
    return snap.last_update_id, snap.bids, snap.asks


def check(symbols: list[str], frames: list[str], books: dict[str, SymbolBook], feed: Any) -> list[str]:
    """Problems: a top of book that differs between the engines or from the simulator's truth."""
    market = Market(SEED)
    last_e: dict[str, int] = {}
    for frame in frames:
        data = orjson.loads(frame)["data"]
        last_e[data["s"]] = data["E"]
    problems = []
    for s in symbols:
        book = books[s]
        bids, asks = book.top(TOP)
        uid, tb, ta = truth_top(market, s, last_e[s])
        if (book.last_update_id, bids, asks) != (uid, tb, ta):
            problems.append(f"{s}: streamforge's top {TOP} differs from the simulator's book at {uid}")
        cf = feed._l2_book[f"{s[:-4]}-{s[-4:]}"].book
        cf_bids = [[Decimal(p), Decimal(q)] for p, q in (cf.bids.index(i) for i in range(TOP))]
        cf_asks = [[Decimal(p), Decimal(q)] for p, q in (cf.asks.index(i) for i in range(TOP))]
        ours = ([[Decimal(p), Decimal(q)] for p, q in bids], [[Decimal(p), Decimal(q)] for p, q in asks])
        if ours != (cf_bids, cf_asks):
            problems.append(f"{s}: cryptofeed's top {TOP} differs from streamforge's")
        if book.resync_count:
            problems.append(f"{s}: {book.resync_count} resyncs on a stream without faults")
    return problems


# ---------------------------------------------------------------------- main


def save(path: Path, symbols: list[str], bodies: dict[str, str], frames: list[str], base: str) -> None:
    with path.open("wb") as f:
        header = {"symbols": symbols, "base": base, "bodies": bodies}
        f.write(orjson.dumps(header) + b"\n")
        for frame in frames:
            f.write(frame.encode() + b"\n")


def load(path: Path) -> tuple[list[str], dict[str, str], list[str], str]:
    with path.open("rb") as f:
        header = orjson.loads(f.readline())
        frames = [line.rstrip(b"\n").decode() for line in f]
    return header["symbols"], header["bodies"], frames, header["base"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=8, help="symbols on the connection (default 8)")
    parser.add_argument("--frames", type=int, default=50_000, help="depth frames captured (default 50000)")
    parser.add_argument("--rounds", type=int, default=3, help="replays per engine; the best counts")
    parser.add_argument("--speedup", type=float, default=20.0, help="simulated seconds per real second")
    parser.add_argument("--save", type=Path, help="keep the capture in this file (JSON lines)")
    parser.add_argument("--load", type=Path, help="replay a capture saved by --save")
    args = parser.parse_args(argv)
    try:
        import cryptofeed  # noqa: F401
    except ImportError:
        print("error: cryptofeed is not installed (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    if not 1 <= args.symbols <= len(DEFAULT_UNIVERSE):
        parser.error(f"--symbols must be in [1, {len(DEFAULT_UNIVERSE)}]")

    with simulator(args.speedup) as base:
        feed_cls = cryptofeed_feed(base)
        feed_cls.symbol_mapping()  # exchangeInfo from the simulator (cryptofeed reads it at start)
        if args.load:
            symbols, recorded, frames, old_base = load(args.load)
            bodies = {url.replace(old_base, base, 1): body for url, body in recorded.items()}
        else:
            symbols = list(DEFAULT_UNIVERSE[: args.symbols])
            started = time.monotonic()
            frames, bodies = asyncio.run(capture(base, symbols, args.frames))
            print(f"  capture: {len(frames):,} frames in {time.monotonic() - started:.0f} s", file=sys.stderr)
            if args.save:
                save(args.save, symbols, bodies, frames, base)
    # the simulator is stopped: only the replays use the CPU from here
    snapshots = {s: bodies[snapshot_url(base, s)].encode() for s in symbols}
    decoded = [orjson.loads(f) for f in frames]
    levels = sum(len(m["data"]["b"]) + len(m["data"]["a"]) for m in decoded)

    best: dict[str, float] = {}
    books: dict[str, SymbolBook] = {}
    feed: Any = None
    for _ in range(args.rounds):
        for name in ENGINES:
            gc.collect()
            if name == "streamforge":
                cpu, books = run_streamforge(frames, snapshots)
            elif name == "streamforge (engine only)":
                cpu = run_streamforge_engine(decoded, snapshots)
            else:
                cpu, f = run_cryptofeed(feed_cls, symbols, frames, bodies, cross_check=name == CF_CHECKED)
                feed = f if name == CF_CHECKED else feed
            best[name] = min(best.get(name, float("inf")), cpu)

    problems = check(symbols, frames, books, feed)
    n = len(frames)
    base_rate = n / best[CF_DEFAULT]
    print(
        f"Depth-diff messages per core, book maintained: {n:,} @depth@100ms frames of {len(symbols)} "
        f"symbols ({levels:,} price levels, {levels / n:.0f} per frame), best of {args.rounds} rounds"
    )
    print(f"  {'':30}{'msgs/s':>12}{'levels/s':>14}{'us/msg':>9}{'/ cryptofeed':>14}")
    report: dict[str, Any] = {"frames": n, "symbols": symbols, "levels": levels, "rounds": args.rounds}
    for name, cpu in best.items():
        rate = n / cpu
        print(
            f"  {name:30}{rate:>12,.0f}{levels / cpu:>14,.0f}{cpu / n * 1e6:>9.1f}{rate / base_rate:>13.2f}x"
        )
        report[name] = {"msgs_per_s": round(rate), "levels_per_s": round(levels / cpu), "cpu_s": cpu}
    ratio = best[CF_DEFAULT] / best["streamforge"]
    ratio_checked = best[CF_CHECKED] / best["streamforge"]
    met = "met" if ratio >= TARGET else "MISSED"
    print(
        f"  streamforge / cryptofeed: {ratio:.2f}x against its default, {ratio_checked:.2f}x against "
        f"cross_check=True (our checks); target >= {TARGET}x: {met}"
    )
    agree = "yes" if not problems else "NO"
    print(f"  top {TOP} of every book equal in both engines and to the simulator: {agree}")
    for p in problems:
        print(f"  ! {p}")
    report.update(
        ratio=round(ratio, 3),
        ratio_cross_check=round(ratio_checked, 3),
        target=TARGET,
        books_agree=not problems,
    )
    print(orjson.dumps(report).decode())
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
