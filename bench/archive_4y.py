"""Four years of 1m candles for one symbol from the bulk archive into the store, through Kafka.

The issue's target: 4 years of 1m candles (2,103,840) for one symbol from the exchange's archive
(``data.binance.vision`` layout, here the simulator's) into the store, end to end through Kafka,
in at most 12 s on a 2-core machine (freqtrade needs 12 s for the same volume into local files).

One run starts the embedded broker, the simulator and the connector (a separate process, as in
production) and then:

1. **simulator warm-up** (not timed against StreamForge): every monthly zip of the range is fetched
   once, because the simulator builds a file on first request and caches it; data.binance.vision
   serves files that already exist.
2. **baseline, archive only**: the same files downloaded, checksum-verified and parsed into kline
   rows by :class:`~streamforge_pipelines.workers.archive_client.ArchiveClient` with the loader's
   concurrency, nothing produced: the floor any archive loader pays here before it writes anything.
3. **end to end**: :func:`~streamforge_pipelines.queue_manager.load` with
   ``source="archive"`` (one task; the loader reads the 48 monthly files, produces one Kafka message
   per page of 1000 candles, the connector upserts into an empty SQLite store); the clock runs until
   the connector acknowledged the end marker and the store was counted. ``--rounds`` times (fresh
   data directory, topics and consumer group each), median reported.

``python -m bench.archive_4y [--symbol BTCUSDT] [--years 4] [--rounds 3] [--profile]`` prints a table
and, last, one JSON line. ``--profile`` records the connector (the bottleneck) with py-spy during
the last round and prints where its samples fall. Exit 1 when a load stored anything but every candle.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e_candles import CpuMeter, phase_settings, problems_of, scrape_connector
from streamforge_pipelines.queue_manager import LoadRequest, load
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.store import store_from_settings
from streamforge_pipelines.workers.archive_client import ArchiveClient

log = logging.getLogger(__name__)


def months_of(first: date, years: int) -> list[tuple[int, int]]:
    return [
        (first.year + (first.month - 1 + k) // 12, (first.month - 1 + k) % 12 + 1) for k in range(12 * years)
    ]


async def fetch_months(
    url: str, symbol: str, months: list[tuple[int, int]], concurrency: int
) -> tuple[int, float]:
    """Download, verify and parse every monthly 1m file; (rows, seconds)."""
    gate = asyncio.Semaphore(concurrency)
    t0 = time.perf_counter()
    async with ArchiveClient(url) as archive:

        async def one(year: int, month: int) -> int:
            async with gate:
                return len(await archive.monthly_klines(symbol, "1m", year, month))

        rows = sum(await asyncio.gather(*(one(y, m) for y, m in months)))
    return rows, time.perf_counter() - t0


async def e2e_round(
    settings: Settings, request: LoadRequest, warmup: LoadRequest, metrics_url: str | None, cpu: CpuMeter
) -> dict[str, Any]:
    """A one-day warm-up load (the connector joins its group), then the measured load."""
    with store_from_settings(settings) as store:
        warm = await load(warmup, settings, store)
        if not warm.ok:
            raise RuntimeError(f"warm-up load failed: {warm.tasks} {warm.errors}")
        before = scrape_connector(metrics_url)
        cpu.start()
        report = await load(request, settings, store)
        cpu_s = cpu.stop()
        after = scrape_connector(metrics_url)
    out: dict[str, Any] = {
        "expected": report.expected,
        "stored": report.stored,
        "missing": report.missing,
        "duplicate_keys": report.duplicate_keys,
        "ok": report.ok,
        "seconds": round(report.seconds, 3),
        "candles_per_s": round(report.stored / report.seconds) if report.seconds else 0,
        "days_by_source": dict(report.exchange.days_by_source),
        "cpu_s": cpu_s,
    }
    if before is not None and after is not None:
        busy = after.busy_s - before.busy_s
        out["connector_busy_s"] = round(busy, 3)
        out["connector_batches"] = after.batches - before.batches
    out["problems"] = problems_of(out)
    return out


def py_spy_top(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        log.warning("py-spy not found: no profile")
        return None
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--duration", str(int(seconds) + 1), "--format", "raw",
         "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def top_frames(raw: Path, n: int = 12) -> list[tuple[str, float]]:
    """Self time per leaf frame of a py-spy ``raw`` (collapsed stacks) file, as shares."""
    counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, num = line.rpartition(" ")
        if not stack:
            continue
        leaf = stack.split(";")[-1]
        counts[leaf] = counts.get(leaf, 0) + int(num)
        total += int(num)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    return [(frame, c / total) for frame, c in ranked] if total else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.archive_4y", description=__doc__.splitlines()[0])
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--years", type=int, default=4, help="whole years from --first (default 4)")
    parser.add_argument(
        "--first", default="2021-01-01", help="first day, a month's first (default 2021-01-01)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="py-spy the connector during the last round")
    args = parser.parse_args(argv)
    first = date.fromisoformat(args.first)
    if first.day != 1 or args.years < 1 or args.rounds < 1:
        parser.error("--first must be a month's first day; --years and --rounds >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.pop("ARANGO_URL", None)
    months = months_of(first, args.years)
    last_y, last_m = months[-1]
    last = date(last_y, last_m, calendar.monthrange(last_y, last_m)[1])
    request = LoadRequest(symbols=(args.symbol,), interval="1m", first=first, last=last, source="archive")
    tmp = Path(tempfile.mkdtemp(prefix="streamforge-bench4y-"))
    run = uuid.uuid4().hex[:8]
    result: dict[str, Any] = {
        "bench": "archive_4y",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    rounds: list[dict[str, Any]] = []
    try:
        with Stack(Settings.from_env(data_dir=tmp / "stack"), connector=False) as shared:
            live = shared.settings
            url = live.archive_url or live.exchange_url or ""
            _, warm_s = asyncio.run(fetch_months(url, args.symbol, months, 4))
            base_rows, base_s = asyncio.run(fetch_months(url, args.symbol, months, live.loader_concurrency))
            result["simulator_build_s"] = round(warm_s, 2)
            result["baseline_fetch_parse"] = {"rows": base_rows, "seconds": round(base_s, 3)}
            warm_day = date.fromordinal(first.toordinal() - 1)
            warmup = LoadRequest(
                symbols=(args.symbol,), interval="1m", first=warm_day, last=warm_day, source="archive"
            )
            for i in range(args.rounds):
                settings = phase_settings(live, tmp / f"round{i}", run, f"r{i}")
                with Stack(settings, connector=True) as stack:
                    procs = {n: p.pid for n, (p, _) in {**shared.procs, **stack.procs}.items()}
                    if shared.broker is not None:
                        procs["tansu"] = shared.broker.pid
                    cpu = CpuMeter({"bench (loader)": os.getpid(), **procs})
                    profile = raw = None
                    if args.profile and i == args.rounds - 1:
                        raw = tmp / "loader.pyspy"
                        profile = py_spy_top(stack.procs["connector"][0].pid, 120, raw)
                    rounds.append(
                        asyncio.run(
                            e2e_round(stack.settings, request, warmup, stack.connector_metrics_url, cpu)
                        )
                    )
                    if profile is not None and raw is not None:
                        profile.send_signal(signal.SIGINT)  # py-spy writes what it has on Ctrl-C
                        profile.wait(timeout=30)
                        if raw.exists():
                            result["connector_profile"] = [(f, round(s, 3)) for f, s in top_frames(raw)]
                    stack.check()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = sorted(rounds, key=lambda r: r["seconds"])[(len(rounds) - 1) // 2]
    result.update(
        {
            "symbol": args.symbol,
            "first": first.isoformat(),
            "last": last.isoformat(),
            "candles": med["expected"],
            "rounds": rounds,
            "median_seconds": med["seconds"],
            "median_candles_per_s": med["candles_per_s"],
            "target_seconds": 12.0,
            "over_baseline": round(med["seconds"] / result["baseline_fetch_parse"]["seconds"], 2),
        }
    )
    n = med["expected"]
    print(
        f"StreamForge archive -> Kafka -> SQLite: {args.symbol} 1m {first} .. {last} = {n:,} candles "
        f"({len(months)} monthly files), {len(rounds)} rounds, {result['cpus']} CPUs, "
        f"Python {result['python']}"
    )
    print(f"  simulator builds the files once (not StreamForge's time): {result['simulator_build_s']:.2f} s")
    print(f"  baseline, download + verify + parse only: {base_s:.2f} s ({base_rows / base_s:,.0f} rows/s)")
    secs = [r["seconds"] for r in rounds]
    verdict = "met" if med["seconds"] <= 12 else "NOT met"
    print(
        f"  end to end, median: {med['seconds']:.2f} s ({med['candles_per_s']:,} candles/s), "
        f"range {min(secs):.2f}..{max(secs):.2f} s; target <= 12 s: {verdict}; "
        f"{result['over_baseline']}x the baseline"
    )
    if med.get("cpu_s"):
        parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(med["cpu_s"].items(), key=lambda kv: -kv[1]))
        available = med["seconds"] * (result["cpus"] or 1)
        print(f"  CPU s during the median load: {parts} (of {available:.2f} available)")
    if "connector_busy_s" in med:
        print(f"  connector busy {med['connector_busy_s']:.2f} s in {med['connector_batches']} batches")
    if result.get("connector_profile"):
        print("  connector profile (py-spy, share of samples by innermost frame):")
    for frame, share in result.get("connector_profile", []):
        print(f"    {share:6.1%}  {frame}")
    bad = [r for r in rounds if r["problems"]]
    for r in bad:
        print(f"  FAILED: {'; '.join(r['problems'])}")
    if not bad:
        print(f"  check: every round stored {n:,}/{n:,}, 0 missing, 0 duplicate keys")
    print(json.dumps(result))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
