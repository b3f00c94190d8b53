"""A year × 20 symbols of 5m candles backfilled by the Dagster daemon, beside a second backfill.

Issue 13's acceptance benchmark for the control plane. One run starts, in a temporary directory:

* the stack of ``streamforge dev`` (:class:`~streamforge_pipelines.stack.Stack`: the embedded Tansu
  broker, the exchange simulator and the connector as child processes), the simulator listing its
  16 default pairs plus :data:`EXTRA_SYMBOLS` (a config file written here), so that 20 symbols and a
  second backfill's other symbols exist;
* ``dagster dev`` (webserver and daemon) over the real code location, with a fresh ``DAGSTER_HOME``
  written by :func:`~streamforge_pipelines.runner.prepare_dagster_home` (the project's
  ``dagster.yaml``: the queued run coordinator, the pool ``binance`` limited to
  ``EXCHANGE_LOAD_SLOTS`` runs).

Before the clock starts, the symbols are added to the instance's symbol partitions
(:func:`~streamforge_pipelines.partitions.ensure_symbols`, what the ``symbol_partitions_sensor``
does within a minute), the sensors that launch follow-on runs (``graph_trigger_sensor``: a
correlation graph over the whole year; ``queue_events_sensor``: a ``candle_coverage`` run per load
run) are stopped unless ``--keep-sensors``, and every archive file and REST page of both ranges is
fetched once from the simulator (it builds a file on first request; data.binance.vision serves
files that exist). Then, through the webserver's GraphQL API (``launchPartitionBackfill``, what the
UI's launch dialog sends, with every symbol-day key), the **main backfill** — ``candles_5m`` ×
``--days`` (365) days ending yesterday × ``--symbols`` (20) symbols — and, unless ``--alone``, the
**second backfill** at the same moment — ``--second`` (``candles_1h``) × ``--second-days`` (90) ×
``--second-symbols`` (4) other symbols — both with ``source: --source`` (``auto``: closed days from
the bulk archive, the recent tail from REST). The daemon turns each into runs
(``BackfillPolicy.single_run``: one run per symbol or per day, whichever is fewer) that queue for
the exchange pool. The benchmark polls both backfills until they end (bounded by ``--timeout``).

Figures of the main backfill:

* **runs** — the runs the daemon launched for it (target ≤ 24);
* **wall** — from the submission to the end of its last run;
* **busy** — the loaders' and connector's own time: the union over the backfill's load tasks (the
  task records its runs wrote, ``run_id`` = the run) of the interval from the task's first to its
  last ``queue-events`` event, read back from the topic after the backfill. Those events are
  stamped by the workers themselves: the first is the loader's ``started``, the last the
  connector's acknowledgement of the task's last end marker (every candle stored). So the union is
  exactly when some loader was fetching or producing, or the connector was storing, for the
  backfill. (The task records' ``created_at`` .. ``updated_at`` would also count the queue-manager's
  set-up and its final write; it is shown beside, as is the union of the runs' steps, from their
  ``STEP_START`` .. ``STEP_SUCCESS`` events.)
* **orchestration overhead** = (wall − busy) / wall (target ≤ 10 %): what the daemon, the run
  queue, run processes, the steps around the load and the completeness ledger add;
* **candles** stored vs expected, read from the store (each symbol's 5m candles in the range; the
  simulator has no downtime here, so every open time of every day is expected);
* **429 / 418** — the ``http_429`` / ``http_418`` materialization metadata of both backfills' runs,
  summed once per run (a run records the same figures on each of its symbol-days; target 0 each).

The second backfill's runs, candles and 429/418 are shown too. Exit status 0 when both backfills
succeeded, every candle of the main one is stored and no 429 or 418 was met; 1 otherwise; 2 for a
bad option. Timings are targets to read, not pass/fail.

``python -m bench.backfill_daemon [--days 365] [--symbols 20] [--source auto|archive|rest]
[--second candles_1h|agg_trades] [--second-days 90] [--second-symbols 4] [--alone] [--keep-sensors]
[--timeout 3600] [--keep]``; ``--days 30 --symbols 4`` is a smoke run of about two minutes. Prints a
table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
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
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.intervals import count_open_times, day_range_ms, days_between, now_ms
from streamforge_pipelines.names import (
    AGG_TRADES,
    GRAPH_TRIGGER_SENSOR,
    QUEUE_EVENTS_SENSOR,
    candles_asset,
)
from streamforge_pipelines.preflight import PreflightError
from streamforge_pipelines.queue_manager.telemetry import read_events
from streamforge_pipelines.settings import Settings, SettingsError
from streamforge_pipelines.simulator.symbols import DEFAULT_SYMBOLS
from streamforge_pipelines.stack import Stack, StackError, free_port
from streamforge_pipelines.store import store_from_settings

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCATION = "streamforge_pipelines.definitions"
REPOSITORY = "__repository__"
MAIN_INTERVAL = "5m"
TARGETS = {"runs_max": 24, "overhead_max": 0.10, "http_429": 0, "http_418": 0}
#: Pairs the simulator lists beside its defaults (a config file written by the benchmark), so that
#: 20 symbols and a second backfill's other symbols exist. Listed before any range loaded here.
EXTRA_SYMBOLS: tuple[dict[str, Any], ...] = tuple(
    {"name": f"{base}USDT", "base_price": price, "tick_size": "0.001", "step_size": "0.01",
     "listing": "2018-06-01"}
    for base, price in (
        ("NEAR", 5.0), ("FIL", 5.5), ("APT", 9.0), ("ARB", 0.8),
        ("OP", 1.9), ("INJ", 22.0), ("SUI", 1.1), ("XLM", 0.1),
    )
)  # fmt: skip
ALL_SYMBOLS: tuple[str, ...] = (*(s.name for s in DEFAULT_SYMBOLS), *(e["name"] for e in EXTRA_SYMBOLS))
SECOND_DATASETS = ("candles_1h", AGG_TRADES)
SENSORS_STOPPED = (GRAPH_TRIGGER_SENSOR, QUEUE_EVENTS_SENSOR)

SERVER_START_S = 180.0
POLL_S = 2.0
#: What ``partitionBackfillOrError.status`` ends as (asset backfills end ``COMPLETED_SUCCESS``).
BACKFILL_ENDED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
BACKFILL_OK = {"COMPLETED", "COMPLETED_SUCCESS"}

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on Error { message }
  }
}"""
BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions error { message } }
    ... on Error { message }
  }
}"""
SENSOR = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { jobOriginId sensorState { selectorId status } }
    ... on Error { message }
  }
}"""
STOP_SENSOR = """
mutation Stop($origin: String!, $selector: String!) {
  stopSensor(jobOriginId: $origin, jobSelectorId: $selector) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on Error { message }
  }
}"""


class BenchError(RuntimeError):
    """Something the benchmark needs did not happen; the message is one line saying what."""


# ---- intervals -------------------------------------------------------------------------------------


def union_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of ``[start, end]`` intervals (overlaps counted once)."""
    total, cur_start, cur_end = 0.0, None, None
    for start, end in sorted(i for i in intervals if i[1] >= i[0]):
        if cur_end is None or start > cur_end:
            if cur_end is not None and cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None and cur_start is not None:
        total += cur_end - cur_start
    return total


# ---- the workload ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backfill:
    """One backfill of the benchmark: an asset × days × symbols, and what came of it."""

    role: str
    asset: str
    first: date
    last: date
    symbols: tuple[str, ...]

    @property
    def keys(self) -> list[str]:
        from streamforge_pipelines.partitions import day_symbol_key

        return [day_symbol_key(d, s) for d in days_between(self.first, self.last) for s in self.symbols]

    @property
    def interval(self) -> str | None:
        return self.asset.removeprefix("candles_") if self.asset.startswith("candles_") else None


@dataclass
class Outcome:
    """What the instance and the store say about one backfill after it ended."""

    backfill_id: str
    status: str
    submitted: float
    runs: list[Any] = field(default_factory=list)  # dagster RunRecord
    failed_runs: list[str] = field(default_factory=list)
    http_429: int = 0
    http_418: int = 0
    expected: int | None = None
    stored: int | None = None


def simulator_config(path: Path) -> Path:
    """A simulator config listing the default pairs and :data:`EXTRA_SYMBOLS`."""
    body = {"symbols": [*(s.name for s in DEFAULT_SYMBOLS), *EXTRA_SYMBOLS]}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


async def warm_simulator(url: str, backfill: Backfill, source: str) -> int:
    """Fetch every archive file and REST page ``backfill``'s loaders will ask for once; files fetched.

    The simulator builds an archive file (and a day of REST candles) on first request and caches it;
    the exchange serves files that exist, so the benchmark does not time the simulator's model."""
    from streamforge_pipelines.workers.archive_client import ArchiveClient
    from streamforge_pipelines.workers.exchange_client import BinanceRestClient
    from streamforge_pipelines.workers.loader_candles import plan_sources, plan_windows, whole_months

    interval = backfill.interval
    if interval is None:  # trades: the archive's daily/monthly trade files are built on request too
        return await _warm_trades(url, backfill, source)
    days = days_between(backfill.first, backfill.last)
    clock = now_ms()
    plan = plan_sources(days, interval, clock, source)
    months = whole_months(plan, clock)
    gate = asyncio.Semaphore(4)
    fetched = 0
    async with ArchiveClient(url) as archive, BinanceRestClient(url) as rest:

        async def one(symbol: str, kind: str, arg: Any) -> None:
            nonlocal fetched
            async with gate:
                if kind == "month":
                    await archive.monthly_klines(symbol, interval, arg.year, arg.month)
                elif kind == "day":
                    await archive.daily_klines(symbol, interval, arg)
                else:
                    await rest.klines(symbol, interval, arg[0], arg[1])
                fetched += 1

        jobs = []
        for symbol in backfill.symbols:
            i = 0
            while i < len(plan):
                day, where = plan[i]
                if i in months:
                    jobs.append(one(symbol, "month", day))
                    i += months[i]
                    continue
                if where == "archive":
                    jobs.append(one(symbol, "day", day))
                else:
                    for w in plan_windows(*day_range_ms(day, day), interval):
                        jobs.append(one(symbol, "rest", w))
                i += 1
        await asyncio.gather(*jobs)
    return fetched


async def _warm_trades(url: str, backfill: Backfill, source: str) -> int:
    from streamforge_pipelines.workers.archive_client import ArchiveClient

    if source == "rest":
        return 0
    async with ArchiveClient(url) as archive:
        for symbol in backfill.symbols:
            for day in days_between(backfill.first, backfill.last):
                await archive.daily_trades(symbol, "agg", day)
    return len(backfill.symbols) * len(days_between(backfill.first, backfill.last))


# ---- dagster dev -----------------------------------------------------------------------------------


class DagsterDev:
    """``dagster dev`` (webserver and daemon) in a session of its own; :meth:`stop` ends its group."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-m",
            LOCATION,
        ]
        with log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_up(self, timeout_s: float = SERVER_START_S) -> float:
        """Seconds until the webserver answered; :class:`BenchError` if it exits or does not answer."""
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"dagster dev exited with {self.proc.returncode} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(f"{self.base}/server_info", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - t0 > timeout_s:
                raise BenchError(
                    f"dagster webserver not up on {self.base} in {timeout_s:.0f}s (log: {self.log_path})"
                )
            time.sleep(0.5)

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.base}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.load(response)
        if answer.get("errors"):
            raise BenchError(f"GraphQL error: {answer['errors'][0].get('message')}")
        return dict(answer["data"])

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM to the group this started (webserver, daemon, code servers, runs), then SIGKILL."""
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
            if not self._group_alive():
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while self._group_alive() and time.monotonic() < deadline:
                time.sleep(0.2)
        if self.proc.poll() is None:
            self.proc.wait(10)


def stop_sensor(dev: DagsterDev, name: str) -> None:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}
    sensor = dev.graphql(SENSOR, {"selector": selector})["sensorOrError"]
    if sensor["__typename"] != "Sensor":
        raise BenchError(f"sensor {name}: {sensor.get('message', sensor['__typename'])}")
    variables = {"origin": sensor["jobOriginId"], "selector": sensor["sensorState"]["selectorId"]}
    stopped = dev.graphql(STOP_SENSOR, variables)["stopSensor"]
    if stopped["__typename"] != "StopSensorMutationResult":
        raise BenchError(f"cannot stop sensor {name}: {stopped.get('message', stopped['__typename'])}")


def launch(dev: DagsterDev, backfill: Backfill, source: str) -> tuple[str, float]:
    """Submit ``backfill`` (every symbol-day key, as the UI's launch dialog does); its id and when."""
    params = {
        "assetSelection": [{"path": [backfill.asset]}],
        "partitionNames": backfill.keys,
        "title": f"bench.backfill_daemon: {backfill.role}",
        "runConfigData": {"ops": {backfill.asset: {"config": {"source": source}}}},
    }
    submitted = time.time()
    answer = dev.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise BenchError(f"{backfill.role} backfill refused: {answer.get('message', answer['__typename'])}")
    return answer["backfillId"], submitted


def wait_ended(dev: DagsterDev, ids: dict[str, str], timeout_s: float, instance: Any) -> dict[str, str]:
    """Poll every backfill until it ended; its final status. :class:`BenchError` after ``timeout_s``."""
    import dagster as dg

    deadline = time.monotonic() + timeout_s
    status: dict[str, str] = {}
    last_line = ""
    while True:
        for role, backfill_id in ids.items():
            if status.get(role) in BACKFILL_ENDED:
                continue
            got = dev.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            if got["__typename"] != "PartitionBackfill":
                raise BenchError(f"{role} backfill {backfill_id}: {got.get('message', got['__typename'])}")
            status[role] = got["status"]
        parts = []
        for role, backfill_id in ids.items():
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            done = sum(1 for r in runs if r.is_finished)
            parts.append(f"{role} {status[role]} {done}/{len(runs)} runs ended")
        line = "; ".join(parts)
        if line != last_line:
            print(f"# {time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)
            last_line = line
        if all(s in BACKFILL_ENDED for s in status.values()):
            return status
        if dev.proc.poll() is not None:
            raise BenchError(f"dagster dev exited with {dev.proc.returncode} (log: {dev.log_path})")
        if time.monotonic() > deadline:
            raise BenchError(f"backfills not ended within {timeout_s:.0f}s: {line} (log: {dev.log_path})")
        time.sleep(POLL_S)


# ---- what came of it -------------------------------------------------------------------------------


def collect(instance: Any, backfill: Backfill, backfill_id: str, status: str, submitted: float) -> Outcome:
    """The backfill's runs, failures and 429/418 (once per run) from the instance."""
    import dagster as dg

    out = Outcome(backfill_id=backfill_id, status=status, submitted=submitted)
    out.runs = list(instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id})))
    out.failed_runs = [
        r.dagster_run.run_id for r in out.runs if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS
    ]
    for r in out.runs:  # every symbol-day of a run carries the run's figures: count them once
        first = instance.get_records_for_run(
            r.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1
        ).records
        if not first or first[0].asset_materialization is None:
            continue
        meta = first[0].asset_materialization.metadata
        out.http_429 += int(meta["http_429"].value) if "http_429" in meta else 0
        out.http_418 += int(meta["http_418"].value) if "http_418" in meta else 0
    return out


def count_store(settings: Settings, backfill: Backfill, outcome: Outcome) -> None:
    """Candles of ``backfill`` stored vs expected (every open time of every day: no downtime here)."""
    interval = backfill.interval
    if interval is None:
        return
    start, end = day_range_ms(backfill.first, backfill.last)
    outcome.expected = count_open_times(start, end, interval) * len(backfill.symbols)
    with store_from_settings(settings) as store:
        outcome.stored = sum(store.count(CANDLES, (s, interval), start, end) for s in backfill.symbols)


def task_ids(settings: Settings, runs: list[Any]) -> dict[str, tuple[float, float]]:
    """Queue id -> (created_at, updated_at) of the task records the runs wrote."""
    out: dict[str, tuple[float, float]] = {}
    with store_from_settings(settings) as store:
        for r in runs:
            for task in store.list_tasks(run_id=r.dagster_run.run_id):
                out[task.queue_id] = (task.created_at, task.updated_at)
    return out


def event_spans(settings: Settings, queue_ids: set[str]) -> dict[str, tuple[float, float]]:
    """Queue id -> (first, last) worker timestamp of its ``queue-events`` events."""
    events, _ = asyncio.run(
        read_events(
            settings.kafka_bootstrap_servers or "", settings.topic_events, {}, max_records=10_000_000,
            timeout_s=300.0,
        )
    )  # fmt: skip
    spans: dict[str, tuple[float, float]] = {}
    for e in events:
        if e.queue_id not in queue_ids or not isinstance(e.timestamp, int | float):
            continue
        ts = float(e.timestamp)
        lo, hi = spans.get(e.queue_id, (ts, ts))
        spans[e.queue_id] = (min(lo, ts), max(hi, ts))
    return spans


def step_spans(instance: Any, runs: list[Any]) -> list[tuple[float, float]]:
    """(start, end) of every step of the runs, from their ``STEP_START`` .. success/failure events."""
    import dagster as dg

    ends = (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE)
    out = []
    for r in runs:
        started: dict[str, float] = {}
        for entry in instance.all_logs(r.dagster_run.run_id):
            event = entry.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                started[event.step_key] = entry.timestamp
            elif event.event_type in ends and event.step_key in started:
                out.append((started.pop(event.step_key), entry.timestamp))
    return out


def figures(settings: Settings, instance: Any, main: Backfill, o: Outcome) -> dict[str, Any]:
    """Wall, busy (telemetry), the steps' and task records' spans and the overhead of the main backfill."""
    run_spans = [(r.start_time, r.end_time) for r in o.runs if r.start_time and r.end_time]
    last_end = max((e for _, e in run_spans), default=None)
    wall = last_end - o.submitted if last_end is not None else None
    records = task_ids(settings, o.runs)
    spans = event_spans(settings, set(records))
    busy = union_seconds(spans.values())
    steps = union_seconds(step_spans(instance, o.runs))
    out: dict[str, Any] = {
        "runs": len(o.runs),
        "wall_s": _r(wall),
        "in_runs_s": _r(union_seconds(run_spans)),
        "in_steps_s": _r(steps),
        "task_records_s": _r(union_seconds(records.values())),
        "busy_s": _r(busy),
        "tasks": len(records),
        "tasks_with_events": len(spans),
        "first_run_start_s": _r(min((s for s, _ in run_spans), default=o.submitted) - o.submitted),
        "first_task_event_s": _r(min((s for s, _ in spans.values()), default=o.submitted) - o.submitted),
    }
    out["overhead_s"] = _r(wall - busy) if wall is not None else None
    out["overhead_share"] = round((wall - busy) / wall, 4) if wall else None
    return out


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# ---- output ----------------------------------------------------------------------------------------


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def print_report(result: dict[str, Any]) -> None:
    w, m = result["workload"], result["main"]
    f = m["figures"]
    print(
        f"StreamForge backfill under the Dagster daemon: {w['main_asset']} x {w['days']} days "
        f"({w['first']} .. {w['last']}) x {w['symbols']} symbols, source {w['source']}"
    )
    second = result.get("second")
    if second is not None:
        print(
            f"beside it: {w['second_asset']} x {w['second_days']} days x {w['second_symbols']} other symbols "
            "submitted at the same moment"
        )
    else:
        print("alone (--alone)")
    print(
        f"dagster dev (webserver + daemon), pool binance = {w['exchange_load_slots']} run(s); "
        f"sensors stopped: {', '.join(w['sensors_stopped']) or 'none'}; "
        f"Python {result['python']}, {result['cpus']} CPUs"
    )
    print(f"simulator warm-up {result['warm_s']:.1f} s ({result['warm_files']} files/pages, not timed)")
    print()
    print(f"  {'main backfill':56} {'figure':>12}  target")
    runs_ok = f["runs"] <= TARGETS["runs_max"]
    rows = [
        ("runs launched by the daemon", f"{f['runs']}", f"<= {TARGETS['runs_max']}  {_mark(runs_ok)}"),
        ("wall: submission -> last run ended, s", _s(f["wall_s"]), ""),
        ("  first run started after submission, s", _s(f["first_run_start_s"]), ""),
        ("  in runs (union of run start..end), s", _s(f["in_runs_s"]), ""),
        ("  in steps (union of step start..end), s", _s(f["in_steps_s"]), ""),
        ("  task records (union of created..last update), s", _s(f["task_records_s"]), ""),
        (f"busy: loaders + connector (queue-events, {f['tasks_with_events']} tasks), s", _s(f["busy_s"]), ""),
    ]
    share = f["overhead_share"]
    over_ok = share is not None and share <= TARGETS["overhead_max"]
    rows.append(
        ("orchestration overhead: wall - busy, s (share of wall)",
         f"{_s(f['overhead_s'])} ({share:.1%})" if share is not None else "-",
         f"<= {TARGETS['overhead_max']:.0%}  {_mark(over_ok)}")
    )  # fmt: skip
    stored_ok = m["stored"] == m["expected"]
    rows.append(
        ("candles stored / expected", f"{m['stored']:,} / {m['expected']:,}", "all  " + _mark(stored_ok))
    )
    for label, value, target in rows:
        print(f"  {label:56} {value:>12}  {target}")
    total_429 = m["http_429"] + (second["http_429"] if second else 0)
    total_418 = m["http_418"] + (second["http_418"] if second else 0)
    print(
        f"  {'HTTP 429 / 418, both backfills (materialization metadata)':56} "
        f"{f'{total_429} / {total_418}':>12}  0 / 0  {_mark(total_429 == 0 and total_418 == 0)}"
    )
    print(f"  {'main backfill status':56} {m['status']:>12}")
    if second is not None:
        stored = "-" if second["stored"] is None else f"{second['stored']:,} / {second['expected']:,}"
        print(
            f"  second backfill: {second['status']}, {second['runs']} runs, wall {_s(second['wall_s'])} s, "
            f"stored/expected {stored}, 429/418 {second['http_429']}/{second['http_418']}"
        )
    for problem in result["problems"]:
        print(f"  FAILED: {problem}")


# ---- command line ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.backfill_daemon", description=__doc__.splitlines()[0])
    p.add_argument(
        "--days", type=int, default=365, help="days of 5m candles ending yesterday, UTC (default 365)"
    )
    p.add_argument("--symbols", type=int, default=20, help="symbols of the main backfill, 1..20 (default 20)")
    p.add_argument("--source", choices=("auto", "archive", "rest"), default="auto", help="loaders' source")
    p.add_argument(
        "--second", choices=SECOND_DATASETS, default="candles_1h", help="the second backfill's asset"
    )
    p.add_argument("--second-days", type=int, default=90, help="days of the second backfill (default 90)")
    p.add_argument("--second-symbols", type=int, default=4, help="other symbols of the second backfill (4)")
    p.add_argument("--alone", action="store_true", help="no second backfill")
    p.add_argument("--keep-sensors", action="store_true", help="leave the follow-on-run sensors running")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds the backfills may take (3600)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    if not 1 <= args.symbols <= 20:
        p.error("--symbols must be 1..20")
    if args.days < 1 or args.second_days < 1 or args.timeout <= 0:
        p.error("--days, --second-days and --timeout must be positive")
    room = len(ALL_SYMBOLS) - args.symbols
    if not args.alone and not 1 <= args.second_symbols <= room:
        p.error(f"--second-symbols must be 1..{room} with --symbols {args.symbols}")
    return args


def workload(args: argparse.Namespace) -> tuple[Backfill, Backfill | None]:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    main = Backfill(
        "main", candles_asset(MAIN_INTERVAL), yesterday - timedelta(days=args.days - 1), yesterday,
        ALL_SYMBOLS[: args.symbols],
    )  # fmt: skip
    if args.alone:
        return main, None
    others = ALL_SYMBOLS[args.symbols : args.symbols + args.second_symbols]
    second = Backfill(
        "second", args.second, yesterday - timedelta(days=args.second_days - 1), yesterday, others
    )
    return main, second


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import dagster as dg

    from streamforge_pipelines.partitions import ensure_symbols
    from streamforge_pipelines.runner import prepare_dagster_home

    main, second = workload(args)
    backfills = [b for b in (main, second) if b is not None]
    os.environ.pop("ARANGO_URL", None)  # the embedded store in the temporary directory
    os.environ["DAGSTER_HOME"] = str(tmp / "dagster")
    settings = Settings.from_env(
        data_dir=tmp / "data",
        universe=main.symbols,
        simulator_config=simulator_config(tmp / "simulator.yaml"),
    )
    home = prepare_dagster_home(settings)
    result: dict[str, Any] = {
        "bench": "backfill_daemon",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "targets": TARGETS,
        "workload": {
            "main_asset": main.asset, "days": args.days, "first": main.first.isoformat(),
            "last": main.last.isoformat(), "symbols": len(main.symbols), "symbol_names": list(main.symbols),
            "source": args.source, "exchange_load_slots": settings.exchange_load_slots,
            "second_asset": second.asset if second else None,
            "second_days": args.second_days if second else 0,
            "second_symbols": len(second.symbols) if second else 0,
            "sensors_stopped": [] if args.keep_sensors else list(SENSORS_STOPPED),
        },
    }  # fmt: skip
    instance = dg.DagsterInstance.get()
    try:
        for b in backfills:  # the symbol partitions, as the symbol_partitions_sensor adds them
            ensure_symbols(instance, b.symbols)
        with Stack(settings, connector=True, log_dir=tmp / "logs") as stack:
            live = stack.settings
            t0 = time.monotonic()
            result["warm_files"] = sum(
                asyncio.run(warm_simulator(live.exchange_url or "", b, args.source)) for b in backfills
            )
            result["warm_s"] = round(time.monotonic() - t0, 1)
            env = {**os.environ, **live.to_env(), "DAGSTER_HOME": str(home)}
            dev = DagsterDev(env, tmp / "dagster-dev.log")
            try:
                result["webserver_start_s"] = round(dev.wait_up(), 1)
                if not args.keep_sensors:
                    for name in SENSORS_STOPPED:
                        stop_sensor(dev, name)
                launched = {b.role: launch(dev, b, args.source) for b in backfills}
                status = wait_ended(dev, {r: bid for r, (bid, _) in launched.items()}, args.timeout, instance)
                stack.check()
                outcomes = {
                    b.role: collect(instance, b, launched[b.role][0], status[b.role], launched[b.role][1])
                    for b in backfills
                }
                for b in backfills:
                    count_store(live, b, outcomes[b.role])
                result["main"] = outcome_json(outcomes["main"])
                result["main"]["figures"] = figures(live, instance, main, outcomes["main"])
                if second is not None:
                    result["second"] = outcome_json(outcomes["second"])
            except BenchError as exc:
                raise BenchError(f"{exc}\n{dev.tail()}") from None
            finally:
                dev.stop()
    finally:
        instance.dispose()
    result["problems"] = problems(result)
    return result


def outcome_json(o: Outcome) -> dict[str, Any]:
    ends = [r.end_time for r in o.runs if r.end_time]
    return {
        "backfill_id": o.backfill_id,
        "status": o.status,
        "runs": len(o.runs),
        "failed_runs": o.failed_runs,
        "wall_s": _r(max(ends) - o.submitted) if ends else None,
        "http_429": o.http_429,
        "http_418": o.http_418,
        "expected": o.expected,
        "stored": o.stored,
    }


def problems(result: dict[str, Any]) -> list[str]:
    out = []
    for role in ("main", "second"):
        o = result.get(role)
        if o is None:
            continue
        if o["status"] not in BACKFILL_OK:
            out.append(f"{role} backfill ended {o['status']}")
        if o["failed_runs"]:
            out.append(f"{role} backfill: {len(o['failed_runs'])} run(s) did not succeed: {o['failed_runs']}")
        if o["expected"] is not None and o["stored"] != o["expected"]:
            out.append(f"{role} backfill: stored {o['stored']} != expected {o['expected']}")
        if o["http_429"] or o["http_418"]:
            out.append(f"{role} backfill met {o['http_429']} x 429 and {o['http_418']} x 418")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tmp = Path(tempfile.mkdtemp(prefix="streamforge-backfill-"))
    saved_home = os.environ.get("DAGSTER_HOME")
    try:
        result = run(args, tmp)
    except (BenchError, SettingsError, PreflightError, StackError) as exc:
        print(f"bench.backfill_daemon: {exc}", file=sys.stderr)
        return 1
    finally:
        if saved_home is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved_home
        if args.keep:
            print(f"data kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print_report(result)
    print(json.dumps(result, sort_keys=True, default=str))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
