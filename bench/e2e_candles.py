"""End-to-end candles/s (exchange → loader → Kafka → connector → SQLite) beside the raw broker rate.

One run, one broker. The benchmark starts what the settings leave unset (the embedded Tansu broker
and the exchange simulator, as ``streamforge run`` does) and measures, on that same broker:

1. **raw broker** — :func:`bench.broker_raw.measure_raw`: ``N`` keyed messages the size of one
   encoded candle page of 1000 candles (the loaders' message granularity, measured on the
   exchange's klines, ~150 kB) produced to a fresh topic, then consumed back. ``N`` defaults to
   the workload's page count. Rates are shown in candles (1000 per message). The **raw pipeline
   ceiling** is ``1000 N / (produce_s + consume_s)``: the rate of a pipeline that did nothing but
   produce every page and read it back, one after the other — no exchange, no decoding, no store.
   (The real pipeline overlaps the two halves, so it may come close to or even beat that figure.)
2. **end to end, loaders in-process** —
   :func:`~streamforge_pipelines.queue_manager.load` with ``launch="inprocess"`` (the
   default), the connector a separate process as in production, into an empty SQLite store. The
   clock runs from the call until every task is stored (the connector acknowledged every end
   marker) and the store has been counted: ``LoadReport.seconds``; the rate is ``stored / seconds``.
   A one-symbol, one-day warm-up load (the day before the range) goes first, so the connector has
   joined its consumer group before the clock starts; its time is shown as the connector's cold
   start.
3. **end to end through Dagster** — :func:`~streamforge_pipelines.runner.run_main_job` (the code
   path of ``streamforge run``), same workload, fresh data directory, once. Its clock includes
   starting a fresh connector (and its group join) and the Dagster run around the step; the step's
   own ``load`` time is read from the materialization it recorded.

Phases 1 and 2 run ``--rounds`` times (default 5), each round with a fresh data directory, fresh
topics, a fresh connector and consumer group; the table shows the median round and the range,
the JSON line has every round. A load of 100k candles lasts about two seconds on a small machine,
so one round alone is noisy. Before the first round every kline page of the range is fetched once
from the simulator (only when the benchmark started it): the simulator computes a day on first
request and caches it, so without this the first round alone would also time the market model.
The figures are StreamForge's, with an exchange that answers in a few milliseconds.

How to read the figures:

* ``/ceil`` is the share of the raw pipeline ceiling the pipeline keeps (median over median).
* **timeline** (median round), seconds since the load started. *Seen* is when the queue-manager
  read the event on ``queue-events`` (what ``load`` waits for); the other figures are the
  timestamps the workers put on their events, so the gap is telemetry latency (a stamp is exact
  when its event is read on its own, as in any load that lasts more than a moment). First loader
  started (the set-up before it: task records, producer, follower, commands); first candle stored
  (first kline pages fetched, produced, consumed, upserted); all loaders finished (every candle is
  on the broker); last end marker acknowledged (the connector caught up: its distance to the
  previous figure is the connector's backlog); store counted (``load`` returns).
* **CPU s** per process during the load beside what the machine's cores offered in that time: a
  total near the capacity means the run is CPU-bound and the processes compete (the bench process
  runs the loaders and the queue-manager). A process near one CPU second per second is bound by
  its own single thread.
* **connector busy** is the time the connector spent in batches (decode, upsert, commit) as a
  share of the load: near 100% means the connector is the bottleneck; well below means it waited
  for the loaders (or for fetches).
* **dagster**: the ``load`` time inside the step includes the fresh connector's group
  join (about the *connector cold start* figure); the rest is starting the stack, the Dagster run
  around the step and counting the store.

A benchmark that loses data has failed: the run exits 1 unless, in every load, stored == expected,
nothing is missing, no key is duplicated and no task failed.

``python -m bench.e2e_candles [--symbols 10] [--days 7] [--interval 1m] [--rounds 5] [--no-dagster]``
(``make bench``) prints a table and, last, one JSON line with every figure. Exit status 0 when every
load stored exactly what it should, 1 otherwise. On a 2-core machine the default workload (10
symbols × 1m × 7 days = 100,800 candles, 5 rounds, one Dagster run) takes under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench.broker_raw import measure_raw
from streamforge_pipelines.intervals import day_range_ms, floor_open_time, now_ms
from streamforge_pipelines.protocol import candle_page, encode_record
from streamforge_pipelines.queue_manager import LoadRequest, expected_counts, load
from streamforge_pipelines.queue_manager.tracking import TaskTracker
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.symbols import DEFAULT_SYMBOLS
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.store import store_from_settings
from streamforge_pipelines.workers.exchange_client import BinanceRestClient
from streamforge_pipelines.workers.loader_candles import plan_windows
from streamforge_pipelines.workers.observability import LATENCY

log = logging.getLogger(__name__)

T = TypeVar("T")

_LOADER_WORKER = "loader-api-candles"
#: Candles per Kafka message: the loaders send one message per page of at most 1000 candles.
PAGE = 1000
_CONNECTOR_WORKER = "arango-connector"


# ---- helpers -------------------------------------------------------------------------------------


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def run_loop(factory: Callable[[], Awaitable[T]], use_uvloop: bool) -> T:
    """Run one coroutine on a fresh loop (asyncio, as the candles step runs its loaders, or uvloop)."""

    async def main() -> T:
        return await factory()

    if use_uvloop:
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


def page_payload_size(exchange_url: str, symbols: tuple[str, ...], interval: str) -> int:
    """Mean bytes of one candle-page message of ``PAGE`` candles as the loader encodes it."""
    sizes: list[int] = []
    for symbol in symbols:
        query = urllib.parse.urlencode({"symbol": symbol, "interval": interval, "limit": PAGE})
        with urllib.request.urlopen(f"{exchange_url.rstrip('/')}/api/v3/klines?{query}", timeout=10) as resp:
            rows = orjson.loads(resp.read())
        queue_id = f"wf-{symbol.lower()}-api_candles_{interval}-20240801-a1b2c3"  # the real id's length
        page = encode_record(candle_page(rows, symbol, interval, "binance-rest", queue_id))
        sizes.append(round(len(page) * PAGE / max(1, len(rows))))
    return round(statistics.fmean(sizes))


def phase_settings(base: Settings, data_dir: Path, run: str, phase: str) -> Settings:
    """``base`` with its own data dir, topics and consumer group: the phase starts from nothing."""
    prefix = f"bench.{run}.{phase}"
    return base.model_copy(
        update={
            "data_dir": data_dir,
            "topic_control": f"{prefix}.control",
            "topic_events": f"{prefix}.events",
            "topic_candles": f"{prefix}.candles",
            "consumer_group": f"bench-{run}-{phase}",
        }
    )


def problems_of(figures: dict[str, Any]) -> list[str]:
    """Why a load's figures fail the benchmark (empty: it stored exactly what it should)."""
    out = []
    if figures["stored"] != figures["expected"]:
        out.append(f"stored {figures['stored']} != expected {figures['expected']}")
    if figures["missing"]:
        out.append(f"{figures['missing']} missing")
    if figures["duplicate_keys"]:
        out.append(f"{figures['duplicate_keys']} duplicate keys")
    if not figures["ok"] and not out:
        out.append("a task failed or stalled")
    return out


class Milestones:
    """When each stage of a load happened, in seconds since the load started.

    ``*_seen`` is when the queue-manager saw it on ``queue-events`` (what ``load`` waits
    for); ``*_stamped`` is the timestamp the worker put on the event when it sent it. The gap is
    telemetry latency. Wall-clock times: the workers are processes on the same host.
    """

    def __init__(self) -> None:
        self.t0 = time.time()
        self.started_stamped: float | None = None
        self.started_seen: float | None = None
        self.stored_seen: float | None = None
        self.finished_seen: float | None = None
        self.acked_stamped: float | None = None
        self.acked_seen: float | None = None

    def observe(self, tracker: TaskTracker) -> None:
        now = time.time() - self.t0
        tasks = list(tracker.tasks.values())
        started = [t.last_seen for t in tasks if t.loader_status != "pending" and t.last_seen]
        if self.started_seen is None and started:
            self.started_seen, self.started_stamped = now, min(started) - self.t0
        if self.stored_seen is None and any(t.stored > 0 for t in tasks):
            self.stored_seen = now
        if self.finished_seen is None and tasks and all(t.loader_status == "finished" for t in tasks):
            self.finished_seen = now
        if self.acked_seen is None and tasks and all(t.complete for t in tasks):
            # The event that completed the last task is the latest event of all.
            self.acked_seen, self.acked_stamped = now, max(t.last_seen for t in tasks) - self.t0

    def to_json(self) -> dict[str, float | None]:
        return {
            "first_started_stamped_s": _r(self.started_stamped),
            "first_started_seen_s": _r(self.started_seen),
            "first_stored_seen_s": _r(self.stored_seen),
            "loaders_finished_seen_s": _r(self.finished_seen),
            "last_ack_stamped_s": _r(self.acked_stamped),
            "last_ack_seen_s": _r(self.acked_seen),
        }


class CpuMeter:
    """CPU seconds (user + system) of named processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        try:
            import psutil  # installed with Dagster; without it the CPU figures are left out
        except ImportError:
            self.procs: dict[str, Any] = {}
        else:
            self.procs = {name: psutil.Process(pid) for name, pid in pids.items() if pid is not None}
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        out = {}
        for name, proc in self.procs.items():
            try:
                t = proc.cpu_times()
            except Exception:  # noqa: BLE001 - a process that is gone has no figure
                continue
            out[name] = t.user + t.system
        return out

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> dict[str, float]:
        end = self._now()
        return {n: round(end[n] - self._start[n], 3) for n in end if n in self._start}


@dataclass
class ConnectorCounters:
    batches: int = 0
    busy_s: float = 0.0
    stored: int = 0


def scrape_connector(url: str | None) -> ConnectorCounters | None:
    """The connector's cumulative batches, batch seconds and stored records, from its /metrics."""
    if url is None:
        return None
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError as exc:
        log.warning("cannot read connector metrics at %s: %s", url, exc)
        return None
    out = ConnectorCounters()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("worker") != _CONNECTOR_WORKER:
                continue
            if s.name == "streamforge_batch_seconds_sum" and s.labels.get("stage") == "batch":
                out.busy_s = float(s.value)
            elif s.name == "streamforge_batch_seconds_count" and s.labels.get("stage") == "batch":
                out.batches = int(s.value)
            elif s.name == "streamforge_records_total" and s.labels.get("outcome") == "stored":
                out.stored = int(s.value)
    return out


def loader_pages() -> tuple[int, float]:
    """Kline pages fetched by the in-process loaders so far, and their summed latency (s)."""
    count = total = 0.0
    for metric in LATENCY.collect():
        for s in metric.samples:
            if s.labels.get("worker") == _LOADER_WORKER and s.labels.get("stage") == "http_page":
                if s.name.endswith("_count"):
                    count = s.value
                elif s.name.endswith("_sum"):
                    total = s.value
    return int(count), total


async def prime_exchange(exchange_url: str, request: LoadRequest) -> float:
    """Fetch every kline page of ``request`` once; returns the seconds it took.

    The simulator computes a day of candles on first request and caches it: without this, the first
    round would also time the simulator's market model and later rounds would not.
    """
    t0 = time.perf_counter()
    start, end = day_range_ms(request.first, request.last)
    windows = plan_windows(start, min(end, floor_open_time(now_ms(), request.interval)), request.interval)
    gate = asyncio.Semaphore(8)
    async with BinanceRestClient(exchange_url) as client:

        async def one(symbol: str, window: tuple[int, int]) -> None:
            async with gate:
                await client.klines(symbol, request.interval, window[0], window[1])

        await asyncio.gather(*(one(s, w) for s in request.symbols for w in windows))
    return time.perf_counter() - t0


# ---- phases --------------------------------------------------------------------------------------


async def raw_round(bootstrap: str, n: int, payload: int, partitions: int) -> dict[str, Any]:
    """``n`` page-sized messages produced then consumed; rates in candles (``PAGE`` per message)."""
    raw = await measure_raw(bootstrap, n, payload, partitions)
    raw["ceiling_msgs_per_s"] = round(n / (raw["produce_s"] + raw["consume_s"]))
    for what in ("produce", "consume", "ceiling"):
        raw[f"{what}_candles_per_s"] = round(raw[f"{what}_msgs_per_s"] * PAGE)
    return raw


async def e2e_round(
    settings: Settings,
    request: LoadRequest,
    warmup: LoadRequest,
    metrics_url: str | None,
    cpu: CpuMeter,
) -> dict[str, Any]:
    """Warm-up load, then the measured load, into the (empty) store of ``settings``."""
    with store_from_settings(settings) as store:
        warm = await load(warmup, settings, store)
        if not warm.ok or warm.missing:
            raise RuntimeError(f"warm-up load failed: {warm.tasks} {warm.errors}")
        before = scrape_connector(metrics_url)
        pages_before, page_s_before = loader_pages()
        marks = Milestones()
        cpu.start()
        report = await load(request, settings, store, on_progress=marks.observe)
        cpu_s = cpu.stop()
        after = scrape_connector(metrics_url)
    pages, page_s = loader_pages()
    pages, page_s = pages - pages_before, page_s - page_s_before
    out: dict[str, Any] = {
        "expected": report.expected,
        "stored": report.stored,
        "missing": report.missing,
        "duplicate_keys": report.duplicate_keys,
        "loaded": report.loaded,
        "failed_tasks": len(report.failed),
        "ok": report.ok,
        "seconds": round(report.seconds, 3),
        "candles_per_s": round(report.stored / report.seconds) if report.seconds else 0,
        "connector_cold_start_s": round(warm.seconds, 3),
        "timeline": {**marks.to_json(), "counted_s": round(report.seconds, 3)},
        "cpu_s": cpu_s,
        "loader_pages": pages,
        "loader_page_ms": round(1000 * page_s / pages, 1) if pages else None,
    }
    if before is not None and after is not None:
        batches, busy = after.batches - before.batches, after.busy_s - before.busy_s
        upserted = after.stored - before.stored
        out["connector"] = {
            "batches": batches,
            "records_upserted": upserted,
            "mean_batch": round(upserted / batches) if batches else 0,
            "busy_s": round(busy, 3),
            "busy_share": round(busy / report.seconds, 3) if report.seconds else 0.0,
            "candles_per_busy_s": round(upserted / busy) if busy else 0,
        }
    out["problems"] = problems_of(out)
    return out


def dagster_run(settings: Settings, request: LoadRequest) -> dict[str, Any]:
    """The workload through ``run_main_job`` (``streamforge run``), with the step's own timing."""
    import dagster as dg

    from streamforge_pipelines.runner import run_main_job

    os.environ["DAGSTER_HOME"] = str((settings.data_dir / "dagster").resolve())
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # progress lines; shown only if the run fails
        summary = run_main_job(settings, request, analytics=False)  # candles only: the figure is candles/s
    out: dict[str, Any] = {
        "expected": summary.expected,
        "stored": summary.stored,
        "missing": summary.missing,
        "duplicate_keys": summary.duplicate_keys,
        "ok": summary.ok,
        "dagster_success": summary.dagster_success,
        "seconds": round(summary.seconds, 3),
        "candles_per_s": round(summary.stored / summary.seconds) if summary.seconds else 0,
        "run_id": summary.dagster_run_id,
        "step_load_s": None,
        "step_wall_s": None,
    }
    if summary.dagster_run_id is not None:
        started = ended = None
        for entry in dg.DagsterInstance.get().all_logs(summary.dagster_run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                started = entry.timestamp
            elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                ended = entry.timestamp
            elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and out["step_load_s"] is None:
                seconds = event.event_specific_data.materialization.metadata.get("seconds")  # type: ignore[union-attr]
                out["step_load_s"] = _r(float(seconds.value)) if seconds is not None else None
        if started is not None and ended is not None:
            out["step_wall_s"] = round(ended - started, 3)
    out["problems"] = problems_of(out)
    if not summary.dagster_success:
        out["problems"].append("the Dagster run failed")
    if out["problems"]:
        out["stderr_tail"] = err.getvalue()[-4000:]
    return out


# ---- output --------------------------------------------------------------------------------------


def _median_round(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    ordered = sorted(rounds, key=lambda r: r[key])
    return ordered[(len(ordered) - 1) // 2]


def summarize(raws: list[dict[str, Any]], e2es: list[dict[str, Any]]) -> dict[str, Any]:
    def spread(values: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(values)), "min": min(values), "max": max(values)}

    ceiling = spread([r["ceiling_candles_per_s"] for r in raws])
    e2e = spread([e["candles_per_s"] for e in e2es])
    return {
        "raw_produce_candles_per_s": spread([r["produce_candles_per_s"] for r in raws]),
        "raw_consume_candles_per_s": spread([r["consume_candles_per_s"] for r in raws]),
        "raw_ceiling_candles_per_s": ceiling,
        "e2e_candles_per_s": e2e,
        "e2e_over_ceiling": round(e2e["median"] / ceiling["median"], 3),
        "e2e_over_ceiling_by_round": [
            round(e["candles_per_s"] / r["ceiling_candles_per_s"], 3) for r, e in zip(raws, e2es, strict=True)
        ],
    }


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_report(result: dict[str, Any]) -> None:
    w, s = result["workload"], result["summary"]
    raws, e2es, dag = result["raw_rounds"], result["e2e_rounds"], result.get("dagster")
    med_raw = _median_round(raws, "ceiling_candles_per_s")
    med = _median_round(e2es, "candles_per_s")
    ceiling = s["raw_ceiling_candles_per_s"]["median"]
    print(
        f"StreamForge end to end: {w['symbols']} symbols x {w['interval']} x {w['days']} days "
        f"({w['first']} .. {w['last']}) = {w['expected']:,} candles, {len(e2es)} rounds"
    )
    print(
        f"broker {result['bootstrap']} ({result['broker']}), {w['partitions']} data partitions; "
        f"{result['loop']} loop, Python {result['python']}, {result['cpus']} CPUs"
    )
    print()
    print(
        f"  {'candles per second (median of rounds, min..max)':48} {'median':>8} {'range':>17} {'s':>6} "
        f"{'/ceil':>6}"
    )
    rows: list[tuple[str, dict[str, float] | None, float | None, float | None]] = [
        (f"raw produce ({w['raw_messages']:,} pages x {w['payload_bytes']:,} B)",
         s["raw_produce_candles_per_s"], med_raw["produce_s"], None),
        ("raw consume", s["raw_consume_candles_per_s"], med_raw["consume_s"], None),
        ("raw pipeline ceiling: n/(produce_s+consume_s)", s["raw_ceiling_candles_per_s"],
         med_raw["produce_s"] + med_raw["consume_s"], 1.0),
        ("e2e: in-process loaders > connector > SQLite", s["e2e_candles_per_s"], med["seconds"],
         s["e2e_over_ceiling"]),
    ]  # fmt: skip
    if dag is not None:
        rate = float(dag["candles_per_s"])
        rows.append(
            ("e2e: through Dagster (run_main_job, 1 run)", {"median": rate, "min": rate, "max": rate},
             dag["seconds"], rate / ceiling)
        )  # fmt: skip
    for label, fig, secs, ratio in rows:
        assert fig is not None
        rng = f"{_n(fig['min'])}..{_n(fig['max'])}"
        share = "" if ratio is None else f"{ratio:.0%}"
        print(f"  {label:48} {_n(fig['median']):>8} {rng:>17} {_s(secs):>6} {share:>6}")
    print()
    t = med["timeline"]
    print("  where the time goes (median e2e round):")
    print("    timeline, s since the load started (seen: when the queue-manager read it on queue-events):")
    print(
        f"      first loader started {_s(t['first_started_stamped_s'])} (seen "
        f"{_s(t['first_started_seen_s'])}) | first candle stored, seen {_s(t['first_stored_seen_s'])} "
        f"| all loaders finished, seen {_s(t['loaders_finished_seen_s'])}"
    )
    print(
        f"      last end marker acked {_s(t['last_ack_stamped_s'])} (seen {_s(t['last_ack_seen_s'])}) "
        f"| store counted, load returned {_s(t['counted_s'])}"
    )
    cpu = med["cpu_s"]
    if cpu:
        capacity = (result["cpus"] or 1) * med["seconds"]
        parts = ", ".join(f"{name} {sec:.2f}" for name, sec in sorted(cpu.items(), key=lambda kv: -kv[1]))
        print(
            f"    CPU s during the load: {parts}; total {sum(cpu.values()):.2f} of {capacity:.2f} "
            f"available ({sum(cpu.values()) / capacity:.0%})"
        )
    c = med.get("connector")
    if c is not None:
        print(
            f"    connector: {c['batches']} batches of {c['mean_batch']:,} records, busy {c['busy_s']:.2f} s "
            f"= {c['busy_share']:.0%} of the load ({c['candles_per_busy_s']:,} candles per busy s), "
            f"{c['records_upserted']:,} records upserted"
        )
    print(
        f"    loaders: {med['loader_pages']} kline pages, {med['loader_page_ms']} ms each on average; "
        f"connector cold start (warm-up load of 1 symbol-day) {med['connector_cold_start_s']:.2f} s"
    )
    if dag is not None:
        outside = dag["seconds"] - dag["step_load_s"] if dag["step_load_s"] is not None else None
        print(
            f"    dagster: load in the step {_s(dag['step_load_s'])} s (cold connector included), "
            f"step {_s(dag['step_wall_s'])} s, outside the load (stack start, run, count) {_s(outside)} s"
        )
    print()
    loads = [(f"e2e round {i + 1}", e) for i, e in enumerate(e2es)]
    if dag is not None:
        loads.append(("dagster", dag))
    bad = [(name, f) for name, f in loads if f["problems"]]
    stored = [f["stored"] for _, f in loads]
    if not bad:
        print(
            f"  check: {len(loads)} loads, each stored {min(stored):,}/{w['expected']:,}, "
            "0 missing, 0 duplicate keys -> OK"
        )
    for name, f in bad:
        print(f"  check {name}: FAILED: {'; '.join(f['problems'])}")
        if f.get("stderr_tail"):
            print(f["stderr_tail"], file=sys.stderr)


# ---- command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e_candles", description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10, help=f"1..{len(DEFAULT_SYMBOLS)} (default 10)")
    parser.add_argument("--days", type=int, default=7, help="days ending yesterday, UTC (default 7)")
    parser.add_argument("--interval", default="1m", help="candle interval (default 1m)")
    parser.add_argument("--rounds", type=int, default=5, help="raw + e2e rounds (default 5)")
    parser.add_argument("--raw-messages", type=int, default=0, help="raw messages (default: the workload)")
    parser.add_argument("--no-dagster", action="store_true", help="skip the Dagster path")
    parser.add_argument("--uvloop", action="store_true", help="uvloop (default: asyncio, as the step runs)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    args = parser.parse_args(argv)
    if not 1 <= args.symbols <= len(DEFAULT_SYMBOLS):
        parser.error(f"--symbols must be 1..{len(DEFAULT_SYMBOLS)}")
    if args.days < 1 or args.rounds < 1:
        parser.error("--days and --rounds must be >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    # The benchmark measures the embedded SQLite store in fresh directories, never an ArangoDB.
    os.environ.pop("ARANGO_URL", None)
    symbols = tuple(s.name for s in DEFAULT_SYMBOLS[: args.symbols])
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=args.days), today - timedelta(days=1)
    request = LoadRequest(symbols=symbols, interval=args.interval, first=first, last=last)
    warm_day = first - timedelta(days=1)
    warmup = LoadRequest(symbols=symbols[:1], interval=args.interval, first=warm_day, last=warm_day)
    expected = sum(expected_counts(request, now_ms()).values())
    n_raw = args.raw_messages or -(-expected // PAGE)
    run = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="streamforge-bench-"))

    result: dict[str, Any] = {
        "bench": "e2e_candles",
        "loop": "uvloop" if args.uvloop else "asyncio",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    raws: list[dict[str, Any]] = []
    e2es: list[dict[str, Any]] = []
    try:
        with Stack(Settings.from_env(data_dir=tmp / "stack"), connector=False) as shared:
            live = shared.settings
            bootstrap = live.kafka_bootstrap_servers or ""
            payload = page_payload_size(live.exchange_url or "", symbols, args.interval)
            result["bootstrap"] = bootstrap
            result["broker"] = "embedded tansu" if shared.broker is not None else "external"
            result["workload"] = {
                "symbols": len(symbols),
                "interval": args.interval,
                "days": args.days,
                "first": first.isoformat(),
                "last": last.isoformat(),
                "expected": expected,
                "raw_messages": n_raw,
                "payload_bytes": payload,
                "partitions": live.data_partitions,
            }
            sim = shared.procs.get("simulator")
            if sim is not None:  # never prime a real exchange: that would double its request weight
                result["simulator_prime_s"] = round(
                    run_loop(lambda: prime_exchange(live.exchange_url or "", request), args.uvloop), 3
                )
            for i in range(args.rounds):
                raws.append(
                    run_loop(lambda: raw_round(bootstrap, n_raw, payload, live.data_partitions), args.uvloop)
                )
                settings = phase_settings(live, tmp / f"e2e{i}", run, f"e2e{i}")
                with Stack(settings, connector=True) as stack:
                    cpu = CpuMeter(
                        {
                            "bench (loaders)": os.getpid(),
                            "connector": stack.procs["connector"][0].pid,
                            "simulator": sim[0].pid if sim is not None else None,
                            "tansu": shared.broker.pid if shared.broker is not None else None,
                        }
                    )
                    url = stack.connector_metrics_url
                    e2es.append(
                        run_loop(
                            lambda s=stack.settings, u=url, c=cpu: e2e_round(s, request, warmup, u, c),
                            args.uvloop,
                        )
                    )
                    stack.check()
            if not args.no_dagster:
                result["dagster"] = dagster_run(
                    phase_settings(live, tmp / "dagster", run, "dagster"), request
                )
    finally:
        if args.keep:
            print(f"data kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    result["raw_rounds"], result["e2e_rounds"] = raws, e2es
    result["summary"] = summarize(raws, e2es)
    loads = [*e2es, *([result["dagster"]] if "dagster" in result else [])]
    result["ok"] = not any(f["problems"] for f in loads)
    print_report(result)
    print(json.dumps(result, sort_keys=True))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
