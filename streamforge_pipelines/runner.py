"""``streamforge run``: the main job on whatever stack the settings describe.

Starts the local stack (embedded broker, simulator, connector — only what is not configured),
materializes ``candles_<interval>`` for the date range × the symbols through Dagster (one run per
stretch of the symbol partitions — one when the symbols were added at once — recorded in the
instance under ``DAGSTER_HOME``, so ``make dev`` shows it afterwards), shows progress from
``queue-events`` while it works, and ends with expected vs stored per symbol and day, with the
candles in confirmed exchange downtime and the candles the step's repair round re-fetched
(completeness ledger, ``streamforge_pipelines.queue_manager.ledger``).

Then, unless ``analytics=False``, the analytics of the same range in the same Dagster instance:
``correlation_graph`` one run over the range (it refuses the range when a day's candles are not
complete) and ``gnn_model`` one run over the whole range (both backfill as a single run),
with the asset's defaults (:data:`MAIN_JOB_GNN`: quick on a CPU). Every run of one
``streamforge run`` carries the tag ``streamforge/main_run`` (filter on it in the UI's run list).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from .instance_config import write_instance_config
from .intervals import interval_ms, now_ms
from .kafka import monitor as broker_monitor
from .names import (
    CORRELATION_GRAPH,
    GNN_JOB,
    GNN_MODEL,
    GRAPH_JOB,
    MAIN_RUN_TAG,
    candles_asset,
    candles_job,
)
from .partitions import ensure_symbols, range_tags
from .preflight import (
    PreflightError,
    check_data_dir,
    check_exchange,
    check_object_store,
    check_simulator_config,
    check_store,
)
from .protocol import Event
from .queue_manager import DayTotals, LoadRequest, expected_counts, measure
from .queue_manager.telemetry import EventFollower
from .queue_manager.tracking import ExchangeTotals, TaskTracker
from .settings import Settings
from .stack import Stack
from .store import StoreError, store_from_settings

#: ``gnn_model`` config of the main job beyond the asset's defaults (window 4, hidden 32, at most 40
#: epochs per fold, 3 walk-forward folds): none. With them, 7 days x 24 hourly snapshots of 10 assets
#: train in ~1 s on 2 CPU cores; the GNN step takes 1.5-7 s (importing torch, the run, saving the model).
MAIN_JOB_GNN: dict[str, Any] = {}
#: The graph of a snapshot needs this many candles in its trailing window (default 240 minutes): the
#: main job runs the analytics only for intervals that fine (1m, 5m); coarser ones skip them.
MIN_WINDOW_CANDLES = 24
GRAPH_WINDOW_MINUTES = 240


@dataclass
class AnalyticsSummary:
    """What the graph and GNN runs of the main job produced (read from their materializations and
    the model's manifest; nothing is recomputed)."""

    #: ``ok``, ``failed`` (``error`` says why in one line) or ``skipped`` (``error`` says why: not
    #: spot, an interval too coarse for the graph, or too few snapshots for the GNN's splits).
    status: str = "ok"
    error: str | None = None
    graph_run_ids: list[str] = field(default_factory=list)
    graph_days: int = 0
    snapshots: int = 0
    #: Snapshot times skipped for a thin window (the first hours of the range: no trailing candles).
    snapshots_skipped: int = 0
    nodes: int = 0
    #: Edges summed over all snapshots of the range.
    edges_total: int = 0
    density_mean: float = 0.0
    gnn_run_id: str | None = None
    model_uri: str | None = None
    #: ``{model: {"accuracy", "mcc", "f1"}}`` over the pooled walk-forward test blocks.
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    mcc_margin: float | None = None
    best_baseline: str | None = None
    #: The GNN's verdict against its baselines (:func:`~.analytics.gnn.edge_verdict`): ``claimed``,
    #: the margin over the best baseline with its bootstrap interval, and ``vs_nograph``.
    edge: dict[str, Any] = field(default_factory=dict)
    #: ``{model: {symbol: {"accuracy", "mcc", "f1", "n"}}}`` over the pooled test blocks.
    per_asset: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    device: str | None = None
    epochs: int = 0
    test_samples: int = 0
    graph_seconds: float = 0.0
    gnn_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def edges_mean(self) -> float:
        return self.edges_total / self.snapshots if self.snapshots else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error": self.error,
            "graph_snapshots_skipped": self.snapshots_skipped,
            "graph_nodes": self.nodes,
            "graph_edges_mean": round(self.edges_mean, 2),
            "graph_density_mean": round(self.density_mean, 4),
            "mcc_margin": None if self.mcc_margin is None else round(self.mcc_margin, 4),
            "best_baseline": self.best_baseline,
            "edge": self.edge,
            "per_asset": self.per_asset,
            "device": self.device,
            "epochs": self.epochs,
            "test_samples": self.test_samples,
            "graph_seconds": round(self.graph_seconds, 3),
            "gnn_seconds": round(self.gnn_seconds, 3),
            "dagster_run_ids": [*self.graph_run_ids, *([self.gnn_run_id] if self.gnn_run_id else [])],
        }


@dataclass
class RunSummary(DayTotals):
    dagster_run_id: str | None = None
    dagster_success: bool = False
    task_seconds: dict[str, float] = field(default_factory=dict)
    exchange: ExchangeTotals = field(default_factory=ExchangeTotals)
    #: Candles the step's repair round stored (completeness ledger).
    repaired: int = 0
    #: Graph and GNN of the range; None with ``analytics=False`` (candles only). ``seconds`` above
    #: is the candles' part; the analytics have their own.
    analytics: AnalyticsSummary | None = None
    #: Why the run failed, in one line (the broker stopped answering, a child process died, the
    #: candles step's cause); None when the candles run succeeded.
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The run succeeded and nothing is missing (candles in confirmed exchange downtime are not),
        and the analytics, when they ran, succeeded."""
        return (
            self.error is None
            and self.dagster_success
            and self.missing == 0
            and (self.analytics is None or self.analytics.ok)
        )

    def to_json(self) -> dict[str, Any]:
        r, a = self.request, self.analytics
        return {
            "ok": self.ok,
            "error": self.error,
            "symbols": list(r.symbols),
            "interval": r.interval,
            "start": r.first.isoformat(),
            "end": r.last.isoformat(),
            "expected_candles": self.expected,
            "stored_candles": self.stored,
            "missing_candles": self.missing,
            "downtime_candles": self.downtime,
            "repaired_candles": self.repaired,
            "duplicate_keys": self.duplicate_keys,
            "seconds": round(self.seconds, 3),
            "candles_per_second": round(self.stored / self.seconds, 1) if self.seconds else 0.0,
            "dagster_run_id": self.dagster_run_id,
            "graph_snapshots": a.snapshots if a else 0,
            "graph_edges": a.edges_total if a else 0,
            "model_uri": a.model_uri if a else None,
            "models": a.models if a else {},
            "analytics": a.to_json() if a else None,
            **self.exchange.to_json(),
            "days_by_source": {"archive": 0, "rest": 0, "repair": 0, **self.exchange.days_by_source},
            "days": [
                {
                    "symbol": d.symbol,
                    "day": d.day,
                    "expected": d.expected,
                    "stored": d.stored,
                    "missing": d.missing,
                    "downtime": d.downtime,
                }
                for d in self.days
            ],
        }


def prepare_dagster_home(settings: Settings) -> Path:
    """``DAGSTER_HOME`` (default: ``<data dir>/dagster``), created, with StreamForge's instance
    settings (:mod:`.instance_config`: the exchange pool, the run queue) and the UI's pop-up dismissed."""
    check_data_dir(settings.data_dir)
    home = Path(os.environ.get("DAGSTER_HOME") or (settings.data_dir / "dagster")).resolve()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PreflightError(f"DAGSTER_HOME: cannot use {home}: {exc.strerror or exc}", exit_code=2) from None
    write_instance_config(home, settings)
    nux = home / ".nux"
    nux.mkdir(exist_ok=True)
    (nux / "nux.yaml").write_text("seen: 1\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


class ProgressWatcher:
    """Follows ``queue-events`` in a thread and draws loaded/stored progress on stderr."""

    def __init__(self, settings: Settings, task_type: str, total: int) -> None:
        self.settings = settings
        self.task_type = task_type
        self.total = total
        self.tracker = TaskTracker()
        self.first_seen: dict[str, float] = {}
        self.done_at: dict[str, float] = {}
        self._since = time.time() - 1.0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._follow())
        except BaseException as exc:  # noqa: BLE001 - progress is cosmetic; the result never depends on it
            self._error = exc
            self._ready.set()

    async def _follow(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        health = broker_monitor(self.settings.kafka_bootstrap_servers or "")
        async with EventFollower(
            self.settings.kafka_bootstrap_servers or "", self.settings.topic_events
        ) as f:
            self._ready.set()
            with Progress(
                TextColumn("{task.description:>8}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=False,
                redirect_stdout=False,
                disable=not sys.stderr.isatty(),
            ) as bar:
                loaded = bar.add_task("loaded", total=self.total)
                stored = bar.add_task("stored", total=self.total)
                last_line, drain_until = 0.0, 0.0
                n_loaded = n_stored = 0
                while True:
                    if self._stop.is_set():  # the run ended: take in its last events, briefly
                        drain_until = drain_until or time.monotonic() + 2.0
                        tasks = self.tracker.tasks.values()
                        if all(t.done for t in tasks) or time.monotonic() > drain_until or health.down:
                            break
                    for e in await f.poll(timeout_ms=300):
                        self._take(e)
                    n_loaded = sum(t.loaded for t in self.tracker.tasks.values())
                    n_stored = sum(t.stored for t in self.tracker.tasks.values())
                    bar.update(loaded, completed=n_loaded)
                    bar.update(stored, completed=n_stored)
                    if not sys.stderr.isatty() and time.monotonic() - last_line > 2:
                        last_line = time.monotonic()
                        self._print_line(n_loaded, n_stored)
                if not sys.stderr.isatty():
                    self._print_line(n_loaded, n_stored)

    def _take(self, e: Event) -> None:
        fresh = isinstance(e.timestamp, int | float) and e.timestamp >= self._since
        if e.queue_id not in self.tracker.tasks and not (fresh and e.type == self.task_type):
            return  # another run's task
        state = self.tracker.apply(e)
        if state is None:
            return
        self.first_seen.setdefault(e.queue_id, time.monotonic())
        if state.complete and e.queue_id not in self.done_at:
            self.done_at[e.queue_id] = time.monotonic()

    def _print_line(self, loaded: int, stored: int) -> None:
        """Progress as a plain line, for logs and CI where no live bar can be drawn."""
        done = sum(1 for t in self.tracker.tasks.values() if t.complete)
        print(  # noqa: T201
            f"progress: loaded {loaded}/{self.total}, stored {stored}/{self.total}, "
            f"tasks complete {done}/{len(self.tracker.tasks)}",
            file=sys.stderr,
            flush=True,
        )

    def seconds_by_symbol(self) -> dict[str, float]:
        out = {}
        for q, t0 in self.first_seen.items():
            state = self.tracker.tasks[q]
            if state.symbol and q in self.done_at:
                out[state.symbol] = self.done_at[q] - t0
        return out


def run_main_job(
    settings: Settings, request: LoadRequest, *, analytics: bool = True, debug: bool = False
) -> RunSummary:
    """Run the candles job for ``request`` on the stack and measure the result in the store; then,
    with ``analytics``, the graph and GNN of the range (:func:`run_analytics`).

    Before any work the services are checked (:mod:`.preflight`: the simulator's config, data
    directory, broker, store, exchange and symbols, object store) and a problem raises
    :class:`~.preflight.PreflightError`, one line. Once the load runs, what breaks (the broker stops
    answering, a child process dies, the step fails) ends it with :attr:`RunSummary.error` set and
    the figures of what arrived. ``debug``: Dagster's console log at DEBUG (else only the summary
    speaks).
    """
    import dagster as dg

    from .definitions import build_definitions
    from .resources import resources_for

    t0 = time.perf_counter()
    tags = {MAIN_RUN_TAG: uuid.uuid4().hex[:12], "streamforge/launched_by": "streamforge run"}
    loggers = _loggers(debug)
    check_simulator_config(settings)  # a bad SIMULATOR_CONFIG is one line before anything is made
    prepare_dagster_home(settings)
    with Stack(settings) as stack:
        live = stack.settings
        check_store(live)
        check_exchange(live, request.symbols, request.market)
        if analytics:
            check_object_store(live)
        defs = build_definitions(resources_for(live))  # the runs see the stack's settings as they are
        total = sum(expected_counts(request, now_ms()).values())
        watcher = ProgressWatcher(live, request.task_type, total)
        watcher.start()
        try:
            # One run per stretch of the symbol partitions (one when the symbols were added at once).
            job = defs.resolve_job_def(candles_job(request.interval))
            # one load step (in process its steps would run one after the other), and no retry: the
            # summary says what failed at once, and running the command again resumes
            config = {"source": request.source, "market": request.market, "max_steps": 1, "retry": False}
            instance = dg.DagsterInstance.get()
            results = []
            for stretch in ensure_symbols(instance, request.symbols):
                results.append(
                    job.execute_in_process(
                        instance=instance,
                        run_config={
                            "ops": {candles_asset(request.interval): {"config": config}},
                            "loggers": loggers,
                        },
                        tags={**range_tags(request.first, request.last, stretch), **tags},
                        raise_on_error=False,
                    )
                )
                if not results[-1].success:
                    break
            result = results[-1]
        finally:
            watcher.stop()
        # The root cause first: a broker or process that died explains the step's failure.
        error = stack.failure()
        asset = candles_asset(request.interval)
        if error is None and not result.success:
            error = f"{asset}: {_failure(result, asset)}"
        if error is not None:
            stack.stop()  # the connector's last write lands before the store is measured
        try:
            with store_from_settings(live) as db:
                days, dups = measure(request, db, now_ms())
        except StoreError as exc:
            days, dups = [], 0
            error = error or f"store: {exc}"
        seconds = time.perf_counter() - t0
        done = None
        if analytics and error is None:
            done = run_analytics(live, request, tags, loggers=loggers)
        elif analytics:
            done = AnalyticsSummary(status="skipped", error="the candles run did not succeed")
    return RunSummary(
        request=request,
        days=days,
        duplicate_keys=dups,
        seconds=seconds,
        dagster_run_id=result.run_id,
        dagster_success=result.success,
        task_seconds=watcher.seconds_by_symbol(),
        exchange=ExchangeTotals.of(watcher.tracker.tasks.values()),
        repaired=sum(_repaired(r, request.interval) for r in results),
        analytics=done,
        error=error,
    )


def _loggers(debug: bool) -> dict[str, Any]:
    """Dagster's console logger of the main job's runs: silent unless ``debug`` (the summary says
    what happened; a step's failure is its cause line there, the stack stays in the run's log)."""
    return {"console": {"config": {"log_level": "DEBUG" if debug else "CRITICAL"}}}


def _note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # noqa: T201


def _failure(result: Any, node: str) -> str:
    """The one-line reason a node of an in-process run failed: a ``dg.Failure``'s description, else
    the first error in the chain that is not Dagster's wrapper, without a StreamForge class name."""
    data = result.failure_data_for_node(node)
    user = getattr(data, "user_failure_data", None)  # a dg.Failure: its own text, without the class
    if getattr(user, "description", None):
        return " ".join(str(user.description).split())
    err = getattr(data, "error", None)
    while err is not None and err.cls_name.startswith("Dagster") and err.cause is not None:
        err = err.cause
    if err is None:
        return "failed"
    first = (err.message.strip().splitlines() or ["failed"])[0]
    kind, sep, text = first.partition(": ")
    if sep and kind.startswith("streamforge_pipelines."):
        first = text  # our errors' text names what and why; the class adds nothing for a user
    return " ".join(first.split())


def _meta(materialization: Any, key: str, default: Any = None) -> Any:
    value = materialization.metadata.get(key)
    return default if value is None else value.value


def run_analytics(
    settings: Settings, request: LoadRequest, tags: dict[str, str], *, loggers: dict[str, Any] | None = None
) -> AnalyticsSummary:
    """``correlation_graph`` over the days of ``request`` (one run), then ``gnn_model`` over the
    range (one run), in the current Dagster instance."""
    import dagster as dg

    from .assets.graph import graph_run_config
    from .definitions import build_definitions
    from .models import from_settings
    from .resources import resources_for

    out = AnalyticsSummary()
    per_window = GRAPH_WINDOW_MINUTES * 60_000 // interval_ms(request.interval)
    if request.market != "spot":
        out.status, out.error = "skipped", f"the graph is built from spot candles, not {request.market}"
        return out
    if per_window < MIN_WINDOW_CANDLES:
        out.status = "skipped"
        out.error = (
            f"{request.interval} candles give {per_window} per {GRAPH_WINDOW_MINUTES}-minute graph window "
            f"(the graph needs >= {MIN_WINDOW_CANDLES}): use 5m or finer for the graph and GNN"
        )
        return out
    instance = dg.DagsterInstance.get()
    loggers = loggers or _loggers(False)
    defs = build_definitions(resources_for(settings))
    graph_job = defs.resolve_job_def(GRAPH_JOB)
    graph_config = graph_run_config(request.interval, list(request.symbols))
    t0 = time.perf_counter()
    n_days = (request.last - request.first).days + 1
    days = f"{request.first}..{request.last}" if n_days > 1 else request.first.isoformat()
    _note(f"graph: {days} ({n_days} days, one run)")
    result = graph_job.execute_in_process(
        instance=instance,
        run_config={"ops": {CORRELATION_GRAPH: {"config": graph_config}}, "loggers": loggers},
        tags={**range_tags(request.first, request.last), **tags},
        raise_on_error=False,
    )
    out.graph_run_ids.append(result.run_id)
    if not result.success:
        out.status, out.error = "failed", f"graph {days}: {_failure(result, CORRELATION_GRAPH)}"
        out.graph_seconds = time.perf_counter() - t0
        return out
    # Every partition of the range carries the run's figures: one materialization is read.
    (m, *_) = result.asset_materializations_for_node(CORRELATION_GRAPH)
    out.graph_days = int(_meta(m, "days", n_days))
    out.snapshots = int(_meta(m, "snapshots", 0))
    out.snapshots_skipped = int(_meta(m, "snapshots_skipped", 0))
    out.edges_total = int(_meta(m, "edges_total", 0))
    out.nodes = int(_meta(m, "nodes", 0))
    out.density_mean = float(_meta(m, "density_mean", 0.0))
    out.graph_seconds = time.perf_counter() - t0

    from .analytics.training import required_snapshots
    from .assets.gnn import GNNTrainConfig

    need = required_snapshots(GNNTrainConfig(interval=request.interval, **MAIN_JOB_GNN).spec().gnn)
    if out.snapshots < need:
        out.status = "skipped"
        out.error = (
            f"gnn: {out.snapshots} graph snapshots, its walk-forward splits need at least {need}: "
            "load a longer range (3 days or more) to train it"
        )
        return out
    _note(f"gnn: training on {out.snapshots} snapshots of {request.first} .. {request.last}")
    t1 = time.perf_counter()
    result = defs.resolve_job_def(GNN_JOB).execute_in_process(
        instance=instance,
        run_config={
            "ops": {GNN_MODEL: {"config": {"interval": request.interval, **MAIN_JOB_GNN}}},
            "loggers": loggers,
        },
        tags={**range_tags(request.first, request.last), **tags},
        raise_on_error=False,
    )
    out.gnn_run_id, out.gnn_seconds = result.run_id, time.perf_counter() - t1
    if not result.success:
        out.status, out.error = "failed", f"gnn: {_failure(result, GNN_MODEL)}"
        return out
    (m, *_) = result.asset_materializations_for_node(GNN_MODEL)
    out.model_uri = str(_meta(m, "model_uri"))
    out.mcc_margin = float(_meta(m, "mcc_margin"))
    out.best_baseline = str(_meta(m, "best_baseline"))
    out.device = str(_meta(m, "device"))
    out.epochs = int(_meta(m, "epochs", 0))
    out.test_samples = int(_meta(m, "test_samples", 0))
    # The test metrics of every model, as the trainer stored them with the model.
    metrics = from_settings(settings).manifest(out.model_uri).metrics
    out.models = dict(metrics["test"])
    out.edge = dict(metrics.get("edge") or {})
    out.per_asset = dict(metrics.get("per_asset") or {})
    return out


def _repaired(result: Any, interval: str) -> int:
    """``repaired_candles`` of one run's materialization (each partition of a range run carries the
    run's figures, so one is read, not summed)."""
    for m in result.asset_materializations_for_node(candles_asset(interval)):
        value = m.metadata.get("repaired_candles")
        if value is not None:
            return int(value.value)
    return 0


def default_range(today: date) -> tuple[date, date]:
    """The 7 days ending yesterday."""
    return today - timedelta(days=7), today - timedelta(days=1)
