"""``queue_events_sensor``: follows ``queue-events`` with Kafka offsets as its cursor, and only reads.

Each tick reads a bounded slice of new events (never blocking the daemon for long) and the task
records, and

* reports the tasks that went **silent** — a task record still active (``started``, ``loading``,
  ``finished``, ``interrupted``) with no telemetry for ``TASK_STALL_S``: one warning per task in the
  tick's log, and their ids in the cursor (both shown with the sensor in the UI);
* requests the downstream ``candle_coverage`` run for every Dagster run whose candle tasks are all
  ``complete``, over the run's days × its symbols (one request per stretch of the symbol order the
  caller passes, the instance's symbol partitions; run key ``coverage:<run_id>:<interval>[:<first>]``:
  each is requested once).

It writes no task record and records no materialization: the step that runs a load is the one
writer of its task records and owns its materialization (``docs/materialization.md`` says why).
A task's last sign of life is the newer of its record's ``updated_at`` and the newest event the
sensor read for it; the step writes a record only when its status changes, so the event times are
kept in the cursor (for active tasks only) between ticks.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import dagster as dg
import orjson

from ..names import CANDLE_COVERAGE, COVERAGE_JOB, QUEUE_EVENTS_SENSOR, SOURCE_RUN_TAG, SYMBOL_PARTITIONS
from ..partitions import range_tags, symbol_stretches
from ..protocol import Event
from ..queue_manager.telemetry import read_events
from ..queue_manager.tracking import COMPLETE, FINAL_STATUSES, STALLED
from ..settings import Settings
from ..store import Store, TaskRecord

#: Statuses of tasks still expected to report (an interrupted one is resumed by the next loader).
ACTIVE = ("started", "loading", "finished", "interrupted")


@dataclass
class Cursor:
    """The sensor's state between ticks: Kafka offsets, the time of the last tick, the last sign of
    life of each active task seen in events, and the silent tasks already reported."""

    offsets: dict[int, int] = field(default_factory=dict)
    since: float = 0.0
    seen: dict[str, float] = field(default_factory=dict)
    silent: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, raw: str | None) -> Cursor:
        if not raw:
            return cls()
        data = orjson.loads(raw)
        return cls(
            offsets={int(p): int(o) for p, o in data.get("offsets", {}).items()},
            since=float(data.get("since", 0.0)),
            seen={q: float(t) for q, t in data.get("seen", {}).items()},
            silent=[str(q) for q in data.get("silent", [])],
        )

    def dump(self) -> str:
        offsets = {str(p): o for p, o in self.offsets.items()}
        data = {"offsets": offsets, "since": self.since, "seen": self.seen, "silent": self.silent}
        return orjson.dumps(data).decode()


@dataclass
class QueueTick:
    """One evaluation: run requests, the new cursor, events read, and the silent tasks (queue_id ->
    why), of which ``newly_silent`` were not reported before."""

    requests: list[dg.RunRequest]
    cursor: str
    events: int
    silent: dict[str, str]
    newly_silent: list[str]

    @property
    def counts(self) -> dict[str, int]:
        return {"events": self.events, "silent": len(self.silent), "requested": len(self.requests)}


def process_tick(
    settings: Settings,
    db: Store,
    cursor: str | None,
    *,
    symbol_order: Sequence[str] = (),
    now: float | None = None,
) -> QueueTick:
    """One sensor evaluation as a plain function; reads the store and ``queue-events``, writes nothing.
    ``symbol_order``: the instance's symbol partitions (the coverage runs' partitions are stretches of it)."""
    now = time.time() if now is None else now
    state = Cursor.load(cursor)
    events, state.offsets = asyncio.run(
        read_events(settings.kafka_bootstrap_servers or "", settings.topic_events, state.offsets)
    )
    for event in events:
        state.seen[event.queue_id] = max(state.seen.get(event.queue_id, 0.0), _event_time(event, now))
    records = db.list_tasks()
    silent = _silent([r for r in records if r.status in ACTIVE], state.seen, now, settings.task_stall_s)
    newly = [q for q in silent if q not in state.silent]
    # (pending tasks too: their first events may come before the step records `started`)
    live = {r.queue_id for r in records if r.status not in FINAL_STATUSES and r.status != STALLED}
    state.seen = {q: t for q, t in state.seen.items() if q in live and q not in silent}
    state.silent = sorted(silent)
    requests = _downstream_requests(db, state.since, symbol_order)
    state.since = now
    return QueueTick(requests, state.dump(), len(events), silent, newly)


def _event_time(event: Event, now: float) -> float:
    """When the event was emitted (its own timestamp, epoch seconds), else when it was read."""
    return float(event.timestamp) if isinstance(event.timestamp, int | float) else now


def _silent(active: list[TaskRecord], seen: dict[str, float], now: float, stall_s: float) -> dict[str, str]:
    """The active tasks without a sign of life for ``stall_s`` (record update or event)."""
    out: dict[str, str] = {}
    for r in active:
        quiet = now - max(r.updated_at, seen.get(r.queue_id, 0.0))
        if quiet > stall_s:
            out[r.queue_id] = (
                f"{r.symbol} {r.type} {r.status}: no telemetry for {quiet:.0f}s (run {r.run_id})"
            )
    return out


def _downstream_requests(db: Store, since: float, order: Sequence[str]) -> list[dg.RunRequest]:
    fresh_runs = {r.run_id for r in db.list_tasks(status=COMPLETE) if r.updated_at >= since and r.run_id}
    requests = []
    for run_id in sorted(fresh_runs):
        tasks = db.list_tasks(run_id=run_id)
        if not tasks or any(t.status != COMPLETE for t in tasks):
            continue
        by_type: dict[str, list[str]] = defaultdict(list)
        for t in tasks:
            if t.type.startswith("api_candles_"):
                by_type[t.type].append(t.symbol)
        first, last = (date.fromisoformat(d) for d in tasks[0].time_range.split(":"))
        for task_type, symbols in sorted(by_type.items()):
            interval = task_type.removeprefix("api_candles_")
            stretches = symbol_stretches(order, [s for s in symbols if s in set(order)])
            for stretch in stretches:
                key = f"coverage:{run_id}:{interval}" + (f":{stretch[0]}" if len(stretches) > 1 else "")
                requests.append(
                    dg.RunRequest(
                        run_key=key,
                        job_name=COVERAGE_JOB,
                        run_config={"ops": {CANDLE_COVERAGE: {"config": {"interval": interval}}}},
                        tags={**range_tags(first, last, stretch), SOURCE_RUN_TAG: run_id},
                    )
                )
    return requests


@dg.sensor(
    name=QUEUE_EVENTS_SENSOR,
    job_name=COVERAGE_JOB,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Follows queue-events (reads only): reports silent tasks, requests the coverage run "
    "after a load whose tasks are all complete.",
)
def queue_events_sensor(
    context: dg.SensorEvaluationContext, settings: dg.ResourceParam[Settings], store: dg.ResourceParam[Store]
):
    if settings.kafka_bootstrap_servers is None:
        return dg.SkipReason("KAFKA_BOOTSTRAP_SERVERS is not set: no queue-events to follow")
    order = context.instance.get_dynamic_partitions(SYMBOL_PARTITIONS)
    tick = process_tick(settings, store, context.cursor, symbol_order=order)
    for queue_id in tick.newly_silent:
        context.log.warning(f"task {queue_id} is silent: {tick.silent[queue_id]}")
    context.log.info(f"queue-events: {tick.counts}")
    return dg.SensorResult(run_requests=tick.requests, cursor=tick.cursor)
