"""End-to-end candles/s (exchange → loader → Kafka → connector → SQLite) beside the raw broker rate.

One run, one broker. The benchmark starts what the settings leave unset (the embedded Tansu broker
and the exchange simulator, as ``streamforge run`` does), in a fresh temporary data directory, and
measures three things on that same broker:

1. **raw broker** — :func:`bench.broker_raw.measure_raw`: ``N`` keyed messages the size of one encoded
   candle record (measured, ~330 B) produced to a fresh topic, then consumed back. ``N`` defaults to
   the workload's candle count. The *raw pipeline ceiling* is ``N / (produce_s + consume_s)``: the
   rate of a pipeline that only produced every record and read it back, one after the other, with
   no exchange, no decoding and no store. (The real pipeline overlaps the two halves, so it could in
   principle beat that figure; in practice it is the yardstick.)
2. **end to end, loaders in-process** — :func:`~streamforge_pipelines.queue_manager.load_candles`
   with ``launch="inprocess"`` (the default), the connector a separate process as in production.
   The clock runs from the call until every task is stored (the connector acknowledged every end
   marker) and the store was counted: ``LoadReport.seconds``; the rate is ``stored / seconds``.
   A one-symbol, one-day warm-up load (the day before the range) goes first, so the connector has
   joined its consumer group before the clock starts; its time is shown as the connector's cold
   start.
3. **end to end through Dagster** — :func:`~streamforge_pipelines.runner.run_main_job` (the code
   path of ``streamforge run``) for the same workload into another fresh data directory. Its clock
   includes starting a fresh connector (and its group join) and the Dagster run around the step,
   so the difference to (2) is the orchestration overhead; the step's own ``load_candles`` time is
   read from the materialization it recorded.

Reading the figures: ``e2e / ceiling`` is the share of the raw broker rate the whole pipeline keeps.
The breakdown shows where the end-to-end time goes, in seconds since the load started: the first
candle stored (start-up latency), all loaders finished (everything is on the broker), every end
marker acknowledged (the connector caught up: the gap to the previous figure is the connector's
backlog), the report written (counting the store). ``connector busy`` is the time the connector
spent handling batches (decode, upsert, commit) as a share of the load's wall time: near 100% means
the connector is the bottleneck, well below means it waited for the loaders.

A benchmark that loses data has failed: the run exits 1 unless, in every phase, stored == expected,
nothing is missing, no key is duplicated and no task failed.

``python -m bench.e2e_candles [--symbols 10] [--days 7] [--interval 1m] [--no-dagster]`` (``make
bench``) prints a small table and, last, one JSON line with every figure. On a 2-core machine the
default workload (10 symbols × 1m × 7 days = 100,800 candles) takes about a minute in all.
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
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.broker_raw import measure_raw
from streamforge_pipelines.protocol import candle_from_kline, encode_record
from streamforge_pipelines.queue_manager import LoadReport, LoadRequest, expected_counts, load_candles
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.store import store_from_settings
from streamforge_pipelines.tracking import TaskTracker
from streamforge_pipelines.workers.loader_candles import now_ms
from streamforge_pipelines.workers.observability import LATENCY
from streamforge_pipelines.workers.simulator.market import DEFAULT_SYMBOLS

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The candles steps run their loaders on a plain asyncio loop (``asyncio.run`` in the asset).
_LOADER_WORKER = "loader-api-candles"
_CONNECTOR_WORKER = "arango-connector"


# ---- figures -------------------------------------------------------------------------------------


@dataclass
class Milestones:
    """Seconds since the load started at which the telemetry showed each stage (None = not seen)."""

    t0: float = field(default_factory=time.perf_counter)
    first_loaded: float | None = None
    first_stored: float | None = None
    loaders_finished: float | None = None
    all_complete: float | None = None

    def observe(self, tracker: TaskTracker) -> None:
        now = time.perf_counter() - self.t0
        tasks = list(tracker.tasks.values())
        if self.first_loaded is None and any(t.loaded > 0 for t in tasks):
            self.first_loaded = now
        if self.first_stored is None and any(t.stored > 0 for t in tasks):
            self.first_stored = now
        if self.loaders_finished is None and tasks and all(t.loader_status == "finished" for t in tasks):
            self.loaders_finished = now
        if self.all_complete is None and tasks and all(t.complete for t in tasks):
            self.all_complete = now

    def to_json(self) -> dict[str, float | None]:
        return {
            "first_loaded_s": _r(self.first_loaded),
            "first_stored_s": _r(self.first_stored),
            "loaders_finished_s": _r(self.loaders_finished),
            "all_acked_s": _r(self.all_complete),
        }


@dataclass
class ConnectorFigures:
    """Deltas of the connector's Prometheus counters over one load."""

    batches: int = 0
    busy_s: float = 0.0
    stored: int = 0

    def __sub__(self, other: ConnectorFigures) -> ConnectorFigures:
        return ConnectorFigures(
            self.batches - other.batches, self.busy_s - other.busy_s, self.stored - other.stored
        )


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def scrape_connector(url: str | None) -> ConnectorFigures | None:
    """The connector's cumulative batch count, batch seconds and stored records, from /metrics."""
    if url is None:
        return None
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError as exc:
        log.warning("cannot read connector metrics at %s: %s", url, exc)
        return None
    out = ConnectorFigures()
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
    """HTTP pages fetched by the in-process loaders so far, and their summed latency (s)."""
    count = total = 0.0
    for metric in LATENCY.collect():
        for s in metric.samples:
            if s.labels.get("worker") != _LOADER_WORKER or s.labels.get("stage") != "http_page":
                continue
            if s.name.endswith("_count"):
                count = s.value
            elif s.name.endswith("_sum"):
                total = s.value
    return int(count), total


def candle_payload_size(symbol: str, interval: str) -> int:
    """Bytes of one encoded candle record as the loader produces it (a typical kline row)."""
    row = [
        1722470400000,
        "64321.57000000",
        "64380.01000000",
        "64290.00000000",
        "64350.12000000",
        "18.53422000",
        1722470459999,
        "1192745.91228341",
        652,
        "9.12770000",
        "587352.48201102",
        "0",
    ]
    queue_id = f"wf-{symbol.lower()}-api_candles_{interval}-20240801-a1b2c3"
    return len(encode_record(candle_from_kline(row, symbol, interval, "binance-rest", queue_id)))


def phase_settings(base: Settings, data_dir: Path, run: str, phase: str) -> Settings:
    """``base`` with its own data dir, topics and consumer group: every phase starts from nothing."""
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


def check(report_ok: bool, stored: int, expected: int, missing: int, duplicates: int) -> list[str]:
    problems = []
    if stored != expected:
        problems.append(f"stored {stored} != expected {expected}")
    if missing:
        problems.append(f"{missing} missing")
    if duplicates:
        problems.append(f"{duplicates} duplicate keys")
    if not report_ok and not problems:
        problems.append("a task failed or stalled")
    return problems


def run_loop(factory: Callable[[], Awaitable[T]], use_uvloop: bool) -> T:
    async def main() -> T:
        return await factory()

    if use_uvloop:
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


@contextlib.contextmanager
def captured_stderr() -> Iterator[io.StringIO]:
    """Keep the Dagster path's progress lines off the output; shown only if the run fails."""
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        yield buf


# ---- phases --------------------------------------------------------------------------------------


async def raw_phase(bootstrap: str, n: int, payload: int, partitions: int) -> dict[str, Any]:
    raw = await measure_raw(bootstrap, n, payload, partitions)
    raw["ceiling_msgs_per_s"] = round(n / (raw["produce_s"] + raw["consume_s"]))
    return raw


async def e2e_phase(
    settings: Settings, request: LoadRequest, warmup: LoadRequest, metrics_url: str | None
) -> dict[str, Any]:
    with store_from_settings(settings) as store:
        warm = await load_candles(warmup, settings, store)
        warm_problems = check(warm.ok, warm.stored, warm.expected, warm.missing, warm.duplicate_keys)
        if warm_problems:
            raise RuntimeError(f"warm-up load failed: {'; '.join(warm_problems)}")
        before = scrape_connector(metrics_url)
        pages_before, page_s_before = loader_pages()
        marks = Milestones()
        report = await load_candles(request, settings, store, on_progress=marks.observe)
        after = scrape_connector(metrics_url)
    pages_after, page_s_after = loader_pages()
    conn = after - before if after is not None and before is not None else None
    out = _report_json(report)
    out.update(
        {
            "connector_cold_start_s": round(warm.seconds, 3),
            "breakdown": {**marks.to_json(), "report_s": round(report.seconds, 3)},
            "loader_pages": pages_after - pages_before,
            "loader_page_latency_ms": round(
                1000 * (page_s_after - page_s_before) / max(1, pages_after - pages_before), 1
            ),
        }
    )
    if conn is not None:
        out["connector"] = {
            "batches": conn.batches,
            "records_upserted": conn.stored,
            "mean_batch": round(conn.stored / conn.batches) if conn.batches else 0,
            "busy_s": round(conn.busy_s, 3),
            "busy_share": round(conn.busy_s / report.seconds, 3) if report.seconds else 0.0,
            "candles_per_busy_s": round(conn.stored / conn.busy_s) if conn.busy_s else 0,
        }
    return out


def _report_json(report: LoadReport) -> dict[str, Any]:
    return {
        "expected": report.expected,
        "stored": report.stored,
        "missing": report.missing,
        "duplicate_keys": report.duplicate_keys,
        "loaded": report.loaded,
        "failed_tasks": len(report.failed),
        "ok": report.ok,
        "seconds": round(report.seconds, 3),
        "candles_per_s": round(report.stored / report.seconds) if report.seconds else 0,
    }


def dagster_phase(settings: Settings, request: LoadRequest) -> dict[str, Any]:
    import dagster as dg

    from streamforge_pipelines.runner import run_main_job

    os.environ["DAGSTER_HOME"] = str(settings.data_dir / "dagster")
    with captured_stderr() as err:
        summary = run_main_job(settings, request)
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
    }
    if not summary.ok:
        out["stderr_tail"] = err.getvalue()[-4000:]
    if summary.dagster_run_id is not None:
        instance = dg.DagsterInstance.get()
        step_s: float | None = None
        started: float | None = None
        ended: float | None = None
        for entry in instance.all_logs(summary.dagster_run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                started = entry.timestamp
            elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                ended = entry.timestamp
            elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and step_s is None:
                mat = event.event_specific_data.materialization  # type: ignore[union-attr]
                value = mat.metadata.get("seconds")
                step_s = float(value.value) if value is not None else None
        out["step_load_s"] = _r(step_s)
        out["step_wall_s"] = _r(ended - started if started is not None and ended is not None else None)
        if step_s is not None:
            out["outside_load_s"] = round(summary.seconds - step_s, 3)
    return out


# ---- command line --------------------------------------------------------------------------------


def _fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_table(result: dict[str, Any]) -> None:
    raw, e2e, dag = result["raw"], result["e2e"], result.get("dagster")
    w = result["workload"]
    ceiling = raw["ceiling_msgs_per_s"]
    print(
        f"StreamForge e2e candles: {w['symbols']} symbols x {w['interval']} x {w['days']} days "
        f"({w['first']} .. {w['last']}) = {w['expected']:,} candles"
    )
    print(
        f"  broker {result['bootstrap']} ({result['broker']}), {raw['partitions']} partitions, "
        f"{result['loop']} loop, python {result['python']}, {result['cpus']} CPUs"
    )
    print()
    print(f"  {'':44} {'msgs/s':>9} {'seconds':>8} {'/ceiling':>8}")
    rows: list[tuple[str, float | None, float | None, float | None]] = [
        (f"raw produce ({raw['messages']:,} x {raw['payload_bytes']} B)", raw["produce_msgs_per_s"],
         raw["produce_s"], None),
        ("raw consume", raw["consume_msgs_per_s"], raw["consume_s"], None),
        ("raw pipeline ceiling (produce, then consume)", ceiling, raw["produce_s"] + raw["consume_s"], 1.0),
        ("e2e: in-process loaders -> connector -> SQLite", e2e["candles_per_s"], e2e["seconds"],
         e2e["candles_per_s"] / ceiling),
    ]  # fmt: skip
    if dag is not None:
        rows.append(
            ("e2e: through Dagster (streamforge run path)", dag["candles_per_s"], dag["seconds"],
             dag["candles_per_s"] / ceiling)
        )  # fmt: skip
    for label, rate, secs, ratio in rows:
        share = "" if ratio is None else f"{ratio:.1%}"
        print(f"  {label:44} {_fmt_rate(rate):>9} {_fmt_s(secs):>8} {share:>8}")
    print()
    b = e2e["breakdown"]
    print(
        "  e2e breakdown (s since load start): "
        f"first candle stored {_fmt_s(b['first_stored_s'])}, loaders finished "
        f"{_fmt_s(b['loaders_finished_s'])}, last end marker acked {_fmt_s(b['all_acked_s'])}, "
        f"report {_fmt_s(b['report_s'])}"
    )
    print(
        f"  loaders: {e2e['loader_pages']} pages of klines, mean page latency "
        f"{e2e['loader_page_latency_ms']} ms; connector cold start (warm-up load) "
        f"{e2e['connector_cold_start_s']:.2f} s"
    )
    c = e2e.get("connector")
    if c is not None:
        print(
            f"  connector: {c['batches']} batches, mean {c['mean_batch']:,} records, busy "
            f"{c['busy_s']:.2f} s = {c['busy_share']:.0%} of the load "
            f"({c['candles_per_busy_s']:,} candles per busy second), "
            f"{c['records_upserted']:,} records upserted"
        )
    if dag is not None:
        print(
            f"  dagster: step load_candles {_fmt_s(dag.get('step_load_s'))} s, step wall "
            f"{_fmt_s(dag.get('step_wall_s'))} s, outside the load (stack start, run, measure) "
            f"{_fmt_s(dag.get('outside_load_s'))} s"
        )
    print()
    for name, phase in (("e2e", e2e), ("dagster", dag)):
        if phase is None:
            continue
        verdict = "OK" if not phase["problems"] else "FAILED: " + "; ".join(phase["problems"])
        print(
            f"  check {name}: stored {phase['stored']:,}/{phase['expected']:,}, missing "
            f"{phase['missing']}, duplicate keys {phase['duplicate_keys']} -> {verdict}"
        )
        if phase.get("stderr_tail"):
            print(phase["stderr_tail"], file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e_candles", description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10, help=f"1..{len(DEFAULT_SYMBOLS)} (default 10)")
    parser.add_argument("--days", type=int, default=7, help="days ending yesterday (UTC), default 7")
    parser.add_argument("--interval", default="1m", help="candle interval (default 1m)")
    parser.add_argument("--raw-messages", type=int, default=0, help="raw messages (default: the workload)")
    parser.add_argument("--no-dagster", action="store_true", help="skip the Dagster path")
    parser.add_argument("--uvloop", action="store_true", help="uvloop (default: asyncio, as the step runs)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args(argv)
    if not 1 <= args.symbols <= len(DEFAULT_SYMBOLS):
        parser.error(f"--symbols must be 1..{len(DEFAULT_SYMBOLS)}")
    if args.days < 1:
        parser.error("--days must be >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    # The benchmark measures the SQLite store in a fresh directory, never a configured ArangoDB.
    os.environ.pop("ARANGO_URL", None)
    symbols = tuple(s.name for s in DEFAULT_SYMBOLS[: args.symbols])
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=args.days), today - timedelta(days=1)
    request = LoadRequest(symbols=symbols, interval=args.interval, first=first, last=last)
    warm_day: date = first - timedelta(days=1)
    warmup = LoadRequest(symbols=symbols[:1], interval=args.interval, first=warm_day, last=warm_day)
    run = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="streamforge-bench-"))
    base = Settings.from_env(data_dir=tmp / "stack")
    payload = candle_payload_size(symbols[0], args.interval)
    problems: list[str] = []

    result: dict[str, Any] = {
        "bench": "e2e_candles",
        "loop": "uvloop" if args.uvloop else "asyncio",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        with Stack(base, connector=False) as shared:
            live = shared.settings
            bootstrap = live.kafka_bootstrap_servers or ""
            result["bootstrap"] = bootstrap
            result["broker"] = "embedded tansu" if shared.broker is not None else "external"
            e2e_settings = phase_settings(live, tmp / "e2e", run, "e2e")
            n_raw = args.raw_messages or sum(expected_counts(request, now_ms()).values())
            with Stack(e2e_settings, connector=True) as stack:
                metrics_url = stack.connector_metrics_url

                # One loop for both: the raw figures come from the same loop kind as the loaders.
                async def measured() -> tuple[dict[str, Any], dict[str, Any]]:
                    raw = await raw_phase(bootstrap, n_raw, payload, live.data_partitions)
                    e2e = await e2e_phase(stack.settings, request, warmup, metrics_url)
                    return raw, e2e

                raw, e2e = run_loop(measured, args.uvloop)
                stack.check()
            result["raw"], result["e2e"] = raw, e2e
            e2e["problems"] = check(
                e2e["ok"], e2e["stored"], e2e["expected"], e2e["missing"], e2e["duplicate_keys"]
            )
            problems += [f"e2e: {p}" for p in e2e["problems"]]
            if not args.no_dagster:
                dag = dagster_phase(phase_settings(live, tmp / "dagster", run, "dagster"), request)
                dag["problems"] = check(
                    dag["ok"], dag["stored"], dag["expected"], dag["missing"], dag["duplicate_keys"]
                )
                if not dag["dagster_success"]:
                    dag["problems"].append("the Dagster run failed")
                problems += [f"dagster: {p}" for p in dag["problems"]]
                result["dagster"] = dag
    finally:
        if args.keep:
            print(f"data kept in {tmp}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)

    result["workload"] = {
        "symbols": len(symbols),
        "interval": args.interval,
        "days": args.days,
        "first": first.isoformat(),
        "last": last.isoformat(),
        "expected": result["e2e"]["expected"],
    }
    ceiling = result["raw"]["ceiling_msgs_per_s"]
    result["e2e_over_ceiling"] = round(result["e2e"]["candles_per_s"] / ceiling, 4)
    if "dagster" in result:
        result["dagster_over_ceiling"] = round(result["dagster"]["candles_per_s"] / ceiling, 4)
    result["ok"] = not problems
    print_table(result)
    print(json.dumps(result, sort_keys=True))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
