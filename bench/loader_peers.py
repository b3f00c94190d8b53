"""StreamForge's exchange HTTP layer beside ccxt and python-binance, under Binance's real limits.

Issue #4's acceptance benchmark. Each (scenario, client) pair gets a **fresh** exchange simulator
process (``streamforge simulator --limits --weight-limit 6000``: REQUEST_WEIGHT 6000 per clock
minute per client address, 429 + ``Retry-After``, then escalating 418 bans), so limits and bans do
not carry over. Every client loads the same 1m ranges — each symbol from ``--years`` (2) years ago
to the last UTC midnight, far more than any client can finish within ``--seconds`` — and is stopped
after ``--seconds``. The clients:

* **streamforge** — the HTTP layer of the candle loader: ``BinanceRestClient`` + ``WeightGovernor``
  (limit 6000; share 1.0 alone, 0.25 per process in the four-process scenario, as the queue-manager
  would assign), paging the windows of ``plan_windows`` (1000 candles) for all symbols concurrently,
  ``--lanes`` (4) windows in flight per symbol alone, ``--four-lanes`` (2) in each of the four
  processes (80 in flight on the IP; at 160, the one-process simulator on a 2-core machine answers
  the window-start burst of cold pages so slowly that about 120 requests a run pass the client's
  10 s timeout: charged by the exchange, never answered, retried). Kafka is **not** part of this
  comparison (the peers do not produce anywhere): ``bench/e2e_candles.py`` measures the whole path.
* **ccxt** — ``ccxt.async_support.binance`` (``enableRateLimit`` at its default, True) with every API
  URL on the simulator; per symbol a ``fetch_ohlcv(symbol, '1m', since, limit=1000)`` loop, all
  symbols concurrently on one exchange object. ccxt raises on rate-limit answers
  (``DDoSProtection`` / ``RateLimitExceeded``); the script does what a user's loop does: count the
  error and ask for the same page again (ccxt's own throttle paces the retry; no extra sleep).
* **python-binance** — ``Client`` with ``API_URL`` on the simulator; ``get_historical_klines`` for
  one symbol after the other in one thread (a user's ``for symbol in symbols`` script: no symbol
  finishes within the run, so in effect the first one loads); it sleeps 1 s after every third page,
  as it does. It raises ``BinanceAPIException`` on a 429/418 and the whole call is lost; the script
  counts a failed load and calls it again from the candle after the last one received.

Scenarios: ``single`` — one process of each client alone; ``four`` — four processes of the same
client at once on one address (one IP budget), each loading all ``--symbols`` (four pods each
loading the universe; the ranges are the same, so the simulator serves warm pages at least as
fast). Workers are subprocesses of this script; they set up (imports, ``load_markets``, plans) and
then all start at the same clock-minute boundary, so ``--seconds`` that is a multiple of 60 covers
whole exchange windows.

Figures per (scenario, client), summed over its processes: candles received and candles/s, requests,
HTTP 429 and 418 answers (counted from the status codes of every response; the streamforge client
also exposes ``http_429``/``http_418``, which must agree), rate-limit errors raised to the script,
loads completed / failed, and the share of the IP's weight budget used: **sustained** = weight of
the admitted requests answered within the run / (windows × 6000), the run spanning
``ceil(seconds / 60)`` whole clock minutes and the **peak window** = the
highest ``X-MBX-USED-WEIGHT-1M`` seen in one clock minute / 6000 (the header is the IP's count, so
it covers all four processes). Targets for streamforge (issue 13): ≥ 99 % sustained and zero 429s
alone; ≥ 98 % together with zero 429s and 418s.

``python -m bench.loader_peers [--scenario single|four|both] [--seconds 180] [--symbols 10]``
prints a table and one JSON line; exit 1 if streamforge met any 418.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from streamforge_pipelines.settings import DEFAULT_UNIVERSE
from streamforge_pipelines.stack import free_port

WEIGHT_LIMIT = 6000
MINUTE_MS = 60_000
DAY_MS = 86_400_000
PAGE = 1000
CLIENTS = ("streamforge", "ccxt", "python-binance")
TARGETS = {
    "single": {"sustained_min": 0.99, "http_429": 0},
    "four": {"sustained_min": 0.98, "http_429": 0, "http_418": 0},
}
#: Weights of the spot routes the clients call (the simulator's table: the bench may import it).
ROUTE_WEIGHTS = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/klines": 2,
}
SIMULATOR = [sys.executable, "-m", "streamforge_pipelines.cli", "simulator"]
SETUP_S = 10.0  # how long workers get to import and set up before the common start


# ---------------------------------------------------------------------------------- the recorder


class Recorder:
    """What one worker process saw within ``[start, deadline)``; thread-safe."""

    def __init__(self, start: float, deadline: float) -> None:
        self.start, self.deadline = start, deadline
        self._lock = threading.Lock()
        self.candles = 0
        self.requests = 0
        self.status: dict[str, int] = {}
        self.weight = 0  # weight of the admitted requests (not 429/418: those are not charged)
        self.peaks: dict[str, int] = {}  # clock-minute window -> highest X-MBX-USED-WEIGHT-1M
        self.rate_limit_errors = 0
        self.other_errors = 0
        self.loads_completed = 0
        self.loads_failed = 0
        self.errors: list[str] = []

    def live(self) -> bool:
        return self.start <= time.time() < self.deadline

    def response(self, status: int, path: str, used_weight: str | int | None) -> None:
        """A response (any status) with its ``X-MBX-USED-WEIGHT-1M`` header."""
        if status in (429, 418):
            if self.live():
                self.limited(status, 1)
        else:
            self.ok(path, status)
        self.peak(used_weight)

    def ok(self, path: str, status: int = 200) -> None:
        """An admitted request (charged its weight) was answered within the run."""
        if self.live():
            with self._lock:
                self.requests += 1
                self.status[str(status)] = self.status.get(str(status), 0) + 1
                self.weight += ROUTE_WEIGHTS.get(path, 1)

    def limited(self, status: int, n: int) -> None:
        """``n`` answers 429/418 (not charged by the exchange)."""
        if n:
            with self._lock:
                self.requests += n
                self.status[str(status)] = self.status.get(str(status), 0) + n

    def peak(self, used_weight: str | int | None) -> None:
        now = time.time()
        if used_weight is None or not str(used_weight).isdigit() or not self.start <= now < self.deadline:
            return
        window = str(int(now * 1000) // MINUTE_MS)
        with self._lock:
            self.peaks[window] = max(self.peaks.get(window, 0), int(used_weight))

    def got(self, candles: int) -> None:
        if self.live():
            with self._lock:
                self.candles += candles

    def error(self, exc: BaseException, *, rate_limited: bool) -> None:
        if not self.live():
            return
        with self._lock:
            if rate_limited:
                self.rate_limit_errors += 1
            else:
                self.other_errors += 1
            if len(self.errors) < 5:
                self.errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")

    def load_done(self, *, failed: bool) -> None:
        if self.live():
            with self._lock:
                if failed:
                    self.loads_failed += 1
                else:
                    self.loads_completed += 1

    def report(self, **extra: Any) -> dict[str, Any]:
        with self._lock:
            return {
                "candles": self.candles,
                "requests": self.requests,
                "status": dict(self.status),
                "weight": self.weight,
                "peaks": dict(self.peaks),
                "rate_limit_errors": self.rate_limit_errors,
                "other_errors": self.other_errors,
                "loads_completed": self.loads_completed,
                "loads_failed": self.loads_failed,
                "errors": list(self.errors),
                **extra,
            }


def _sleep_until(ts: float) -> None:
    delay = ts - time.time()
    if delay > 0:
        time.sleep(delay)


# ---------------------------------------------------------------------------------- the workers


def _worker_streamforge(args: argparse.Namespace, rec: Recorder) -> dict[str, Any]:
    from streamforge_pipelines.workers.errors import ExchangeError, RateLimited
    from streamforge_pipelines.workers.exchange_client import BinanceRestClient
    from streamforge_pipelines.workers.governor import WeightGovernor
    from streamforge_pipelines.workers.loader_candles import plan_windows

    class RecordingGovernor(WeightGovernor):
        """The loader's governor; records the weight header of every response it reconciles."""

        def observe(self, used_weight: int | None, now: float | None = None, *, weight: int = 0) -> None:
            super().observe(used_weight, now, weight=weight)
            rec.peak(used_weight)

    plans = {s: plan_windows(args.range_start, args.range_end, "1m") for s in args.symbol_list}
    governor = RecordingGovernor(WEIGHT_LIMIT, args.share)
    client_box: dict[str, Any] = {}

    async def main() -> None:
        _sleep_until(rec.start)
        async with BinanceRestClient(args.url, governor=governor) as client:
            client_box["client"] = client

            async def load(symbol: str) -> None:
                windows = iter(plans[symbol])

                async def lane() -> None:
                    for first, last in windows:  # the lanes of a symbol share one iterator
                        rows = await client.klines(symbol, "1m", first, last, PAGE)
                        rec.ok("/api/v3/klines")  # 429/418 answers raise inside the client: counted below
                        rec.got(len(rows))

                try:
                    await asyncio.gather(*(lane() for _ in range(args.lanes)))
                except ExchangeError as exc:
                    rec.error(exc, rate_limited=isinstance(exc, RateLimited))
                    rec.load_done(failed=True)
                else:
                    rec.load_done(failed=False)

            tasks = [asyncio.ensure_future(load(s)) for s in args.symbol_list]
            await asyncio.wait(tasks, timeout=max(0.0, rec.deadline - time.time()))
            for t in tasks:  # stopped at the time limit, before the session closes
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(_until_deadline(main(), rec))
    client = client_box["client"]
    stats = governor.stats()
    # A 429/418 answer never leaves the client (it blocks the governor and retries): its counters
    # are the status counts (the run starts fresh, so they count only this run).
    rec.limited(429, client.http_429)
    rec.limited(418, client.http_418)
    return {
        "client_http_429": client.http_429,
        "client_http_418": client.http_418,
        "retries": client.retries,
        "governor": {
            "weight_budget_used": stats.weight_budget_used,
            "ip_weight_used_peak": stats.ip_weight_used_peak,
            "total_weight": stats.total_weight,
            "requests": stats.requests,
            "waits": stats.waits,
            "seconds_waited": stats.seconds_waited,
        },
    }


async def _until_deadline(coro: Any, rec: Recorder) -> None:
    try:
        await asyncio.wait_for(coro, timeout=max(1.0, rec.deadline - time.time() + 2))
    except TimeoutError:
        pass


def _header(headers: Any, name: str = "x-mbx-used-weight-1m") -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _worker_ccxt(args: argparse.Namespace, rec: Recorder) -> dict[str, Any]:
    import re

    import ccxt
    import ccxt.async_support as ccxt_async

    class RecordingBinance(ccxt_async.binance):
        def on_rest_response(self, code, reason, url, method, response_headers, response_body, *rest):
            rec.response(int(code), urlsplit(url).path, _header(response_headers))
            return super().on_rest_response(code, reason, url, method, response_headers, response_body, *rest)

    options = {
        "options": {
            "fetchMarkets": {"types": ["spot"]},
            "fetchMargins": False,
            "fetchCurrencies": False,
            "defaultType": "spot",
        },
    }

    async def main() -> dict[str, Any]:
        exchange = RecordingBinance(options)
        exchange.urls["api"] = {
            k: re.sub(r"^https?://[^/]+", args.url, v) for k, v in exchange.urls["api"].items()
        }
        try:
            markets = await exchange.load_markets()  # before the start: not part of the run
            symbols = [next(m for m, v in markets.items() if v["id"] == s) for s in args.symbol_list]
            await asyncio.sleep(max(0.0, rec.start - time.time()))

            async def load(symbol: str) -> None:
                since = args.range_start
                while since < args.range_end:
                    try:
                        rows = await exchange.fetch_ohlcv(symbol, "1m", since, limit=PAGE)
                    except ccxt.DDoSProtection as exc:  # RateLimitExceeded is a DDoSProtection
                        rec.error(exc, rate_limited=True)
                        continue  # a user's loop: ask for the same page again
                    except ccxt.NetworkError as exc:
                        rec.error(exc, rate_limited=False)
                        continue
                    if not rows:
                        break
                    rec.got(len([r for r in rows if r[0] < args.range_end]))
                    since = rows[-1][0] + MINUTE_MS
                rec.load_done(failed=False)

            tasks = [asyncio.ensure_future(load(s)) for s in symbols]
            await asyncio.wait(tasks, timeout=max(0.0, rec.deadline - time.time()))
            for t in tasks:
                t.cancel()
            return {"rate_limit_ms": exchange.rateLimit, "enable_rate_limit": exchange.enableRateLimit}
        finally:
            await exchange.close()

    return asyncio.run(main())


def _worker_python_binance(args: argparse.Namespace, rec: Recorder) -> dict[str, Any]:
    from binance.client import Client
    from binance.exceptions import BinanceAPIException, BinanceRequestException

    class RecordingClient(Client):
        API_URL = args.url + "/api"

        def __init__(self) -> None:
            self.last_open: int | None = None
            super().__init__()  # pings (before the start: not part of the run)

        def _handle_response(self, response: Any) -> Any:  # type: ignore[override]
            rec.response(
                response.status_code,
                urlsplit(response.url).path,
                response.headers.get("X-MBX-USED-WEIGHT-1M"),
            )
            return Client._handle_response(response)

        def _klines(self, *a: Any, **kw: Any) -> Any:
            rows = super()._klines(*a, **kw)
            if isinstance(rows, list) and rows and kw.get("limit") != 1:  # not the earliest-candle probe
                rec.got(len(rows))
                self.last_open = rows[-1][0]
            return rows

    clients = dict.fromkeys(args.symbol_list, RecordingClient())

    def load(symbol: str) -> None:
        client = clients[symbol]
        _sleep_until(rec.start)
        start = args.range_start
        while time.time() < rec.deadline:
            try:
                client.get_historical_klines(symbol, "1m", start_str=start, end_str=args.range_end - 1)
            except BinanceAPIException as exc:
                rec.error(exc, rate_limited=exc.status_code in (429, 418))
                rec.load_done(failed=True)
                if client.last_open is not None:  # a user's script: resume after the last candle
                    start = client.last_open + MINUTE_MS
                continue
            except (BinanceRequestException, OSError) as exc:
                rec.error(exc, rate_limited=False)
                rec.load_done(failed=True)
                continue
            rec.load_done(failed=False)
            return

    def load_all() -> None:  # a user's script: for symbol in symbols: get_historical_klines(...)
        for symbol in args.symbol_list:
            load(symbol)

    thread = threading.Thread(target=load_all, daemon=True)
    thread.start()
    _sleep_until(rec.deadline)
    return {"threads": 1}


WORKERS = {
    "streamforge": _worker_streamforge,
    "ccxt": _worker_ccxt,
    "python-binance": _worker_python_binance,
}


def run_worker(args: argparse.Namespace) -> None:
    """One client process: set up, start at ``--start-at``, stop at ``--start-at + --seconds``."""
    args.symbol_list = args.worker_symbols.split(",")
    rec = Recorder(args.start_at, args.start_at + args.seconds)
    extra: dict[str, Any] = {}
    try:
        extra = WORKERS[args.worker](args, rec)
    except BaseException as exc:  # noqa: BLE001 - the report says what broke the worker
        extra = {"crashed": f"{type(exc).__name__}: {exc}"}
    Path(args.out).write_bytes(orjson.dumps(rec.report(**extra, seconds=args.seconds)))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # threads of python-binance and requests in flight are simply abandoned


# ---------------------------------------------------------------------------------- orchestration


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"simulator exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_case(scenario: str, client: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """A fresh simulator, ``procs`` worker processes of ``client``, their merged figures."""
    procs = 1 if scenario == "single" else 4
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sim = subprocess.Popen(
        [*SIMULATOR, "--port", str(port), "--limits", "--weight-limit", str(WEIGHT_LIMIT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        _wait_http(url + "/health", sim)
        # Start at a clock-minute boundary at least SETUP_S away: runs cover whole exchange windows.
        now_ms = int(time.time() * 1000) + int(SETUP_S * 1000)
        start_at = (now_ms // MINUTE_MS + 1) * MINUTE_MS / 1000
        outs = [tmp / f"{scenario}-{client}-{i}.json" for i in range(procs)]
        for out in outs:
            cmd = [sys.executable, "-m", "bench.loader_peers", "--worker", client, "--url", url]
            cmd += ["--worker-symbols", ",".join(args.symbol_names), "--start-at", str(start_at)]
            lanes = args.lanes if procs == 1 else args.four_lanes
            cmd += ["--seconds", str(args.seconds), "--share", str(1.0 / procs), "--lanes", str(lanes)]
            cmd += [
                "--range-start",
                str(args.range_start),
                "--range-end",
                str(args.range_end),
                "--out",
                str(out),
            ]
            workers.append(subprocess.Popen(cmd))
        for w in workers:
            try:
                w.wait(max(1.0, start_at + args.seconds + 60 - time.time()))
            except subprocess.TimeoutExpired:
                _stop(w)
        reports = [orjson.loads(o.read_bytes()) if o.exists() else {"crashed": "no report"} for o in outs]
    finally:
        for w in workers:
            _stop(w)
        _stop(sim)
    return merge(scenario, client, procs, args.seconds, reports)


def merge(
    scenario: str, client: str, procs: int, seconds: float, reports: list[dict[str, Any]]
) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(r.get(key, 0)) for r in reports)

    status: dict[str, int] = {}
    peaks: dict[str, int] = {}
    for r in reports:
        for k, v in r.get("status", {}).items():
            status[k] = status.get(k, 0) + v
        for k, v in r.get("peaks", {}).items():
            peaks[k] = max(peaks.get(k, 0), v)  # the header is the IP's count: max, not sum
    weight = total("weight")
    candles = total("candles")
    return {
        "scenario": scenario,
        "client": client,
        "processes": procs,
        "seconds": seconds,
        "candles": candles,
        "candles_per_s": round(candles / seconds, 1),
        "requests": total("requests"),
        "http_429": status.get("429", 0),
        "http_418": status.get("418", 0),
        "status": status,
        "rate_limit_errors": total("rate_limit_errors"),
        "other_errors": total("other_errors"),
        "loads_completed": total("loads_completed"),
        "loads_failed": total("loads_failed"),
        "weight": weight,
        # Runs start at a clock-minute boundary: they span ceil(seconds / 60) exchange windows.
        "budget_sustained": round(weight / (math.ceil(seconds / 60) * WEIGHT_LIMIT), 4),
        "budget_peak_window": round(max(peaks.values(), default=0) / WEIGHT_LIMIT, 4),
        "window_peaks": [peaks[k] for k in sorted(peaks)],
        "per_process": [
            {
                k: r.get(k)
                for k in ("candles", "status", "weight", "client_http_429", "client_http_418", "retries")
            }
            | ({"governor": r["governor"]} if "governor" in r else {})
            | ({"crashed": r["crashed"]} if "crashed" in r else {})
            | ({"errors": r["errors"][:2]} if r.get("errors") else {})
            for r in reports
        ],
    }


def _verdict(row: dict[str, Any]) -> str:
    if row["client"] != "streamforge":
        return ""
    target = TARGETS[row["scenario"]]
    ok = row["budget_sustained"] >= target["sustained_min"] and row["http_429"] <= target["http_429"]
    if "http_418" in target:
        ok = ok and row["http_418"] <= target["http_418"]
    return "met" if ok else "MISSED"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'scenario':<8} {'client':<15} {'procs':>5} {'candles':>10} {'candles/s':>10} {'requests':>8} "
        f"{'429':>6} {'418':>6} {'rl-err':>6} {'ok/fail':>8} {'sustained':>9} {'peak win':>8}  target"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['scenario']:<8} {r['client']:<15} {r['processes']:>5} {r['candles']:>10} "
            f"{r['candles_per_s']:>10.0f} {r['requests']:>8} {r['http_429']:>6} {r['http_418']:>6} "
            f"{r['rate_limit_errors']:>6} {str(r['loads_completed']) + '/' + str(r['loads_failed']):>8} "
            f"{r['budget_sustained']:>9.1%} {r['budget_peak_window']:>8.1%}  {_verdict(r)}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loader_peers", description=__doc__.split("\n")[0])
    p.add_argument("--scenario", choices=("single", "four", "both"), default="both")
    p.add_argument("--seconds", type=float, default=180.0, help="per client and scenario (multiples of 60)")
    p.add_argument("--symbols", type=int, default=10)
    p.add_argument("--years", type=float, default=2.0, help="each symbol's range starts this long ago")
    p.add_argument("--lanes", type=int, default=4, help="streamforge: windows in flight per symbol")
    p.add_argument(
        "--four-lanes", type=int, default=2, help="streamforge: windows in flight per symbol, four processes"
    )
    p.add_argument("--clients", default=",".join(CLIENTS), help="subset, comma-separated")
    # worker mode (internal)
    p.add_argument("--worker", choices=CLIENTS, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--worker-symbols", help=argparse.SUPPRESS)
    p.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    p.add_argument("--share", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--range-start", type=int, help=argparse.SUPPRESS)
    p.add_argument("--range-end", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0

    args.symbol_names = list(DEFAULT_UNIVERSE[: args.symbols])
    now_ms = int(time.time() * 1000)
    args.range_end = now_ms - now_ms % DAY_MS  # last UTC midnight: every candle closed
    start = args.range_end - int(args.years * 365 * DAY_MS)
    args.range_start = start - start % MINUTE_MS
    scenarios = ("single", "four") if args.scenario == "both" else (args.scenario,)
    clients = [c for c in args.clients.split(",") if c]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="loader-peers-") as tmp:
        for scenario in scenarios:
            for client in clients:
                print(f"# {scenario}: {client} for {args.seconds:.0f}s ...", file=sys.stderr, flush=True)
                rows.append(run_case(scenario, client, args, Path(tmp)))
    print_table(rows)
    sf_418 = sum(r["http_418"] for r in rows if r["client"] == "streamforge")
    summary = {
        "bench": "loader_peers",
        "seconds": args.seconds,
        "symbols": args.symbol_names,
        "range_start_ms": args.range_start,
        "range_end_ms": args.range_end,
        "weight_limit": WEIGHT_LIMIT,
        "targets": TARGETS,
        "results": rows,
        "streamforge_met_418": sf_418 > 0,
    }
    print(orjson.dumps(summary).decode())
    return 1 if sf_418 else 0


if __name__ == "__main__":
    sys.exit(main())
