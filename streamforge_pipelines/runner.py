"""``streamforge run``: the main job on whatever stack the settings describe.

Starts the local stack (embedded broker, simulator, connector — only what is not configured),
materializes ``candles_<interval>`` for the date range through Dagster (one run, recorded in the
instance under ``DAGSTER_HOME``, so ``make dev`` shows it afterwards), shows progress from
``queue-events`` while it works, and ends with expected vs stored per symbol and day, with the
candles in confirmed exchange downtime and the candles the step's repair round re-fetched
(completeness ledger, ``streamforge_pipelines.ledger``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from .protocol import Event
from .queue_manager import DayTotals, LoadRequest, expected_counts, measure
from .settings import Settings
from .stack import Stack
from .store import store_from_settings
from .telemetry import EventFollower
from .tracking import ExchangeTotals, TaskTracker
from .workers.loader_candles import now_ms


@dataclass
class RunSummary(DayTotals):
    dagster_run_id: str | None = None
    dagster_success: bool = False
    task_seconds: dict[str, float] = field(default_factory=dict)
    exchange: ExchangeTotals = field(default_factory=ExchangeTotals)
    #: Candles the step's repair round stored (completeness ledger).
    repaired: int = 0

    @property
    def ok(self) -> bool:
        """The run succeeded and nothing is missing (candles in confirmed exchange downtime are not)."""
        return self.dagster_success and self.missing == 0

    def to_json(self) -> dict[str, Any]:
        r = self.request
        return {
            "ok": self.ok,
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
            **self.exchange.to_json(),
            "days_by_source": {"archive": 0, "rest": 0, **self.exchange.days_by_source},
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
    """``DAGSTER_HOME`` (default: ``<data dir>/dagster``), created, with the UI's pop-up dismissed."""
    home = Path(os.environ.get("DAGSTER_HOME") or (settings.data_dir / "dagster")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
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
        except Exception as exc:  # noqa: BLE001 - progress is cosmetic; the result never depends on it
            self._error = exc
            self._ready.set()

    async def _follow(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
                        if all(t.done for t in tasks) or time.monotonic() > drain_until:
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


def run_main_job(settings: Settings, request: LoadRequest) -> RunSummary:
    """Run the candles job for ``request`` on the stack and measure the result in the store."""
    import dagster as dg

    from .definitions import defs

    t0 = time.perf_counter()
    prepare_dagster_home(settings)
    with Stack(settings) as stack:
        live = stack.settings
        os.environ.update(live.to_env())  # the Dagster resources read the same settings
        total = sum(expected_counts(request, now_ms()).values())
        watcher = ProgressWatcher(live, request.task_type, total)
        watcher.start()
        try:
            job = defs.resolve_job_def(f"candles_{request.interval}_job")
            result = job.execute_in_process(
                instance=dg.DagsterInstance.get(),
                run_config={
                    "ops": {
                        f"candles_{request.interval}": {
                            "config": {
                                "symbols": list(request.symbols),
                                "source": request.source,
                                "market": request.market,
                            }
                        }
                    },
                    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                },
                tags={
                    "dagster/asset_partition_range_start": request.first.isoformat(),
                    "dagster/asset_partition_range_end": request.last.isoformat(),
                    "streamforge/launched_by": "streamforge run",
                },
                raise_on_error=False,
            )
        finally:
            watcher.stop()
        stack.check()
        with store_from_settings(live) as db:
            days, dups = measure(request, db, now_ms())
    return RunSummary(
        request=request,
        days=days,
        duplicate_keys=dups,
        seconds=time.perf_counter() - t0,
        dagster_run_id=result.run_id,
        dagster_success=result.success,
        task_seconds=watcher.seconds_by_symbol(),
        exchange=ExchangeTotals.of(watcher.tracker.tasks.values()),
        repaired=_repaired(result, request.interval),
    )


def _repaired(result: Any, interval: str) -> int:
    """``repaired_candles`` of the run's materialization (each partition of a range run carries the
    run's figures, so one is read, not summed)."""
    for m in result.asset_materializations_for_node(f"candles_{interval}"):
        value = m.metadata.get("repaired_candles")
        if value is not None:
            return int(value.value)
    return 0


def default_range(today: date) -> tuple[date, date]:
    """The 7 days ending yesterday."""
    from datetime import timedelta

    return today - timedelta(days=7), today - timedelta(days=1)
