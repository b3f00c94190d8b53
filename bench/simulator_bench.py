"""How fast the exchange simulator serves: it must never be the bottleneck of a loader benchmark.

Runs in one go, on this machine:

1. **baseline** — a bare aiohttp server in its own process returning one pre-encoded 1000-candle
   body for every request: the HTTP ceiling of this machine with this client;
2. **simulator REST** — ``streamforge simulator`` in its own process serving ``/api/v3/klines``
   1000-candle 1m pages over seeded random windows of the last year (warm: each window asked
   twice, so the first pass fills the model's cache; cold: fresh windows only);
3. **simulator WebSocket** — one client connection on the combined stream of 8 ``@trade`` streams,
   the market replayed 2000× faster than real time; messages/s received (the push ceiling).

It prints requests/s and candles/s beside the baseline and their ratio, and one JSON line.
``python -m bench.simulator_bench [--seconds 8] [--concurrency 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
import urllib.request
from typing import Any

import aiohttp
import orjson

from streamforge_pipelines.stack import free_port

MINUTE_MS = 60_000
PAGE = 1000

# The WebSocket replay starts 30 days back so that 2000x replay stays in the past for the whole run.
_WS_SERVER = """
import asyncio, sys, time
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.simulator.ws import WsConfig
def clock():
    return int(time.time() * 1000) - 30 * 86_400_000
async def main():
    async with SimulatorServer(seed=7, port=int(sys.argv[1]), clock=clock, ws=WsConfig(speedup=2000)):
        await asyncio.Event().wait()
asyncio.run(main())
"""

_BASELINE = """
import sys
from aiohttp import web
body = open(sys.argv[2], "rb").read()
async def handler(request):
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/api/v3/klines", handler)
app.router.add_get("/api/v3/ping", lambda r: web.json_response({}))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


def _start(args: list[str], url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_http(url, proc)
    return proc


async def _hammer(base: str, paths: list[str], seconds: float, concurrency: int) -> dict[str, Any]:
    done = candles = errors = 0
    it = iter(paths)
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def worker() -> None:
            nonlocal done, candles, errors
            while time.perf_counter() < deadline:
                path = next(it, None)
                if path is None:
                    return
                async with http.get(base + path) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        errors += 1
                        continue
                done += 1
                candles += len(orjson.loads(body))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {
        "requests": done,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(done / elapsed, 1),
        "candles_per_s": round(candles / elapsed),
    }


def _paths(rng: random.Random, n: int, now_ms: int, symbols: list[str], repeat: bool) -> list[str]:
    out = []
    for _ in range(n):
        start = now_ms - rng.randrange(2 * PAGE, 365 * 1440) * MINUTE_MS
        start -= start % MINUTE_MS
        path = f"/api/v3/klines?symbol={rng.choice(symbols)}&interval=1m&startTime={start}&limit={PAGE}"
        out += [path, path] if repeat else [path]
    return out


async def _ws_rate(base: str, streams: int, seconds: float, kind: str = "trade") -> dict[str, Any] | None:
    symbols = ["btcusdt", "ethusdt", "bnbusdt", "solusdt", "xrpusdt", "adausdt", "dogeusdt", "avaxusdt"]
    names = "/".join(f"{s}@{kind}" for s in symbols[:streams])
    url = base.replace("http://", "ws://") + f"/stream?streams={names}"
    received = 0
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url)
        except aiohttp.WSServerHandshakeError:
            return None
        async with ws:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                msg = await ws.receive(timeout=5)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                received += 1
            elapsed = time.perf_counter() - t0
    return {
        "streams": f"{streams} x @{kind}",
        "messages": received,
        "messages_per_s": round(received / elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    rng = random.Random(7)
    now = int(time.time() * 1000)
    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT"]

    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = _start(
        [
            sys.executable,
            "-m",
            "streamforge_pipelines.cli",
            "simulator",
            "--port",
            str(sim_port),
            "--seed",
            "7",
        ],
        sim_url + "/api/v3/ping",
    )
    try:
        sample = urllib.request.urlopen(sim_url + _paths(rng, 1, now, symbols, False)[0], timeout=10).read()
        body_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"sf-bench-body-{os.getpid()}.json")
        with open(body_file, "wb") as f:
            f.write(sample)
        base_port = free_port()
        base_url = f"http://127.0.0.1:{base_port}"
        baseline_proc = _start(
            [sys.executable, "-c", _BASELINE, str(base_port), body_file], base_url + "/api/v3/ping"
        )
        try:
            baseline = asyncio.run(
                _hammer(base_url, _paths(rng, 200_000, now, symbols, False), args.seconds, args.concurrency)
            )
        finally:
            baseline_proc.terminate()
            baseline_proc.wait(10)
            os.unlink(body_file)
        cold = asyncio.run(
            _hammer(sim_url, _paths(rng, 200_000, now, symbols, False), args.seconds, args.concurrency)
        )
        warm_paths = _paths(rng, 40, now, symbols, False)  # ~80 symbol-days: fits the model's cache
        asyncio.run(_hammer(sim_url, warm_paths, 60, args.concurrency))  # fill the cache
        warm = asyncio.run(_hammer(sim_url, warm_paths * 500, args.seconds, args.concurrency))
    finally:
        sim.terminate()
        sim.wait(10)
    ws_port = free_port()
    ws_proc = _start(
        [sys.executable, "-c", _WS_SERVER, str(ws_port)], f"http://127.0.0.1:{ws_port}/api/v3/ping"
    )
    try:
        ws = asyncio.run(_ws_rate(f"http://127.0.0.1:{ws_port}", 8, min(args.seconds, 5.0)))
    finally:
        ws_proc.terminate()
        ws_proc.wait(10)

    def ratio(x: dict[str, Any]) -> float:
        return round(x["requests_per_s"] / baseline["requests_per_s"], 3)

    print(
        f"simulator REST, 1000-candle 1m klines pages, {args.concurrency} requests in flight, "
        f"{args.seconds:.0f} s each"
    )
    print(f"  {'':34}{'req/s':>10}{'candles/s':>14}{'/baseline':>11}")
    for name, r in (
        ("baseline (bare aiohttp, same body)", baseline),
        ("simulator, warm cache", warm),
        ("simulator, cold windows", cold),
    ):
        print(f"  {name:34}{r['requests_per_s']:>10,.0f}{r['candles_per_s']:>14,}{ratio(r):>11.2f}")
    if ws is None:
        print("  WebSocket: not served by this simulator build")
    else:
        rate, streams = ws["messages_per_s"], ws["streams"]
        print(f"  WebSocket: {rate:,.0f} messages/s on one connection ({streams} streams, 2000x replay)")
    report = {
        "bench": "simulator",
        "baseline": baseline,
        "warm": warm,
        "cold": cold,
        "websocket": ws,
        "warm_over_baseline": ratio(warm),
        "cold_over_baseline": ratio(cold),
    }
    print(orjson.dumps(report).decode())
    errors = baseline["errors"] + warm["errors"] + cold["errors"]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
