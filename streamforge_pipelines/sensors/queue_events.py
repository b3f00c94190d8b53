"""``queue_events_sensor``: follows ``queue-events`` with Kafka offsets as its cursor.

Each tick reads a bounded slice of new events (never blocking the daemon for long), updates the
task records, marks tasks whose workers went silent as ``stalled``, and requests the downstream
coverage run for every Dagster run whose tasks are all ``complete``. It records no
materialization: the candles step owns that (see ``docs/materialization.md``).
"""

import asyncio
import time
from collections import defaultdict

import dagster as dg
import orjson

from ..queue_manager.telemetry import read_events
from ..queue_manager.tracking import COMPLETE, STALLED, record_update
from ..resources import KafkaResource, StoreResource, resolve_settings
from ..settings import Settings
from ..store import Store

COVERAGE_JOB = "candle_coverage_job"
#: Statuses of tasks still expected to report (an interrupted one is resumed by the next loader).
ACTIVE = ("started", "loading", "finished", "interrupted")


def _load_cursor(raw: str | None) -> tuple[dict[int, int], float]:
    if not raw:
        return {}, 0.0
    data = orjson.loads(raw)
    return {int(p): int(o) for p, o in data.get("offsets", {}).items()}, float(data.get("since", 0.0))


def _dump_cursor(offsets: dict[int, int], since: float) -> str:
    return orjson.dumps({"offsets": {str(p): o for p, o in offsets.items()}, "since": since}).decode()


def process_tick(
    settings: Settings, db: Store, cursor: str | None, *, now: float | None = None
) -> tuple[list[dg.RunRequest], str, dict[str, int]]:
    """One sensor evaluation as a plain function: (run requests, new cursor, counts)."""
    now = time.time() if now is None else now
    offsets, since = _load_cursor(cursor)
    events, offsets = asyncio.run(
        read_events(settings.kafka_bootstrap_servers or "", settings.topic_events, offsets)
    )
    counts = {"events": len(events), "updated": 0, "stalled": 0, "requested": 0}
    for event in events:
        record = db.get_task(event.queue_id)
        if record is None:
            continue  # a task this instance did not create (another deployment, a dummy)
        fields = record_update(record.status, event)
        if fields:
            db.update_task(event.queue_id, **fields)
            counts["updated"] += 1
    for record in db.list_tasks():
        if record.status in ACTIVE and now - record.updated_at > settings.task_stall_s:
            db.update_task(
                record.queue_id, status=STALLED, message=f"no telemetry for {settings.task_stall_s:.0f}s"
            )
            counts["stalled"] += 1
    requests = _downstream_requests(db, since)
    counts["requested"] = len(requests)
    return requests, _dump_cursor(offsets, now), counts


def _downstream_requests(db: Store, since: float) -> list[dg.RunRequest]:
    fresh_runs = {r.run_id for r in db.list_tasks(status=COMPLETE) if r.updated_at >= since and r.run_id}
    requests = []
    for run_id in sorted(fresh_runs):
        tasks = db.list_tasks(run_id=run_id)
        if not tasks or any(t.status != COMPLETE for t in tasks):
            continue
        by_type: dict[str, list[str]] = defaultdict(list)
        for t in tasks:
            by_type[t.type].append(t.symbol)
        first, last = tasks[0].time_range.split(":")
        for task_type, symbols in sorted(by_type.items()):
            interval = task_type.removeprefix("api_candles_")
            requests.append(
                dg.RunRequest(
                    run_key=f"coverage:{run_id}:{interval}",
                    job_name=COVERAGE_JOB,
                    run_config={
                        "ops": {
                            "candle_coverage": {"config": {"interval": interval, "symbols": sorted(symbols)}}
                        }
                    },
                    tags={
                        "dagster/asset_partition_range_start": first,
                        "dagster/asset_partition_range_end": last,
                        "streamforge/source_run": run_id,
                    },
                )
            )
    return requests


@dg.sensor(
    name="queue_events_sensor",
    job_name=COVERAGE_JOB,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Follows queue-events: task records, stalled tasks, downstream coverage runs.",
)
def queue_events_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource, store: StoreResource):
    settings = resolve_settings(kafka, store)
    if settings.kafka_bootstrap_servers is None:
        return dg.SkipReason("KAFKA_BOOTSTRAP_SERVERS is not set: no queue-events to follow")
    with store.open(settings) as db:
        requests, cursor, counts = process_tick(settings, db, context.cursor)
    context.log.info(f"queue-events: {counts}")
    return dg.SensorResult(run_requests=requests, cursor=cursor)
