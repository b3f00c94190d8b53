"""``graph_trigger_sensor``: builds a day's correlation graph once its candles are complete.

Each tick reads the ``candles_<STREAMFORGE_INTERVAL>`` materializations recorded since its cursor
(an event-log storage id, so nothing is read twice and nothing is skipped across restarts; the
candles are partitioned day × symbol, the graph by day: a symbol-day's materialization touches its
day) and
requests ``correlation_graph_job`` for the days they touched that are ready - one run per stretch
of consecutive ready days (the asset backfills a range as a single run) - a day being ready when

* the day has no ``correlation_graph`` materialization newer than the candles one (``make run``
  builds its graphs itself, right after its candles: the sensor then has nothing to do), and
* the completeness ledger, computed from the store, shows every symbol of the universe
  (``STREAMFORGE_UNIVERSE``) complete for that day and without gaps in the trailing window before
  it (:func:`~streamforge_pipelines.queue_manager.ledger.window_gaps`, the asset's own check; candles
  absent in confirmed exchange downtime are not gaps); otherwise the day waits, and the next candles
  materialization of that day (a repair, a reload) brings it back.

The run key names the stretch and its newest candles materialization's storage id, so a day is
requested at most once per load. With the daily schedule on (``daily_candles_5m``), yesterday's
candles are followed by yesterday's graph without anyone launching it.
"""

from dataclasses import dataclass
from datetime import date

import dagster as dg

from ..assets.graph import GraphConfig, graph_run_config
from ..intervals import MINUTE_MS, now_ms
from ..names import CORRELATION_GRAPH, GRAPH_JOB, GRAPH_TRIGGER_SENSOR, TRIGGER_TAG, candles_asset
from ..partitions import range_tags, split_key
from ..queue_manager.ledger import window_gaps
from ..settings import Settings
from ..store import Store

#: Materializations read per tick (the rest on the next one).
BATCH = 500


@dataclass
class TriggerTick:
    requests: list[dg.RunRequest]
    cursor: int
    waiting: dict[str, list[str]]  # day -> "SYMBOL (why)" of each symbol whose candles are not complete
    already_built: list[str]


def graph_requests(
    instance: dg.DagsterInstance, settings: Settings, db: Store, cursor: int | None
) -> TriggerTick:
    """One evaluation as a plain function: run requests, the new cursor, and what waits and why."""
    interval = settings.interval
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(candles_asset(interval)), after_storage_id=cursor),
        limit=BATCH,
        ascending=True,
    )
    latest: dict[str, int] = {}  # day -> storage id of its newest candles materialization
    for record in result.records:
        if record.partition_key:
            day = split_key(record.partition_key)[0].isoformat()
            latest[day] = max(latest.get(day, 0), record.storage_id)
    new_cursor = max((r.storage_id for r in result.records), default=cursor or 0)
    symbols = sorted(settings.universe)
    config = graph_run_config(interval, symbols)
    window_ms = GraphConfig(**config).window_minutes * MINUTE_MS
    tick = TriggerTick([], new_cursor, {}, [])
    graph_key = dg.AssetKey(CORRELATION_GRAPH)
    ready: list[tuple[date, int]] = []
    for day, storage_id in sorted(latest.items()):
        built = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=graph_key, asset_partitions=[day], after_storage_id=storage_id),
            limit=1,
        )
        if built.records:
            tick.already_built.append(day)
            continue
        gaps = window_gaps(db, symbols, interval, date.fromisoformat(day), window_ms, now_ms())
        if gaps:
            tick.waiting[day] = [f"{s} ({why})" for s, why in sorted(gaps.items())]
            continue
        ready.append((date.fromisoformat(day), storage_id))
    run_config = {"ops": {CORRELATION_GRAPH: {"config": config}}}
    for stretch in _stretches(ready):
        first, last = stretch[0][0].isoformat(), stretch[-1][0].isoformat()
        newest = max(storage_id for _, storage_id in stretch)
        tags = {TRIGGER_TAG: "candles_complete"}
        if first == last:
            request = dg.RunRequest(
                run_key=f"graph:{interval}:{first}:{newest}",
                job_name=GRAPH_JOB,
                partition_key=first,
                run_config=run_config,
                tags=tags,
            )
        else:
            tags |= range_tags(stretch[0][0], stretch[-1][0])
            request = dg.RunRequest(
                run_key=f"graph:{interval}:{first}..{last}:{newest}",
                job_name=GRAPH_JOB,
                run_config=run_config,
                tags=tags,
            )
        tick.requests.append(request)
    return tick


def _stretches(days: list[tuple[date, int]]) -> list[list[tuple[date, int]]]:
    """Runs of consecutive days (input sorted by day)."""
    out: list[list[tuple[date, int]]] = []
    for item in days:
        if out and (item[0] - out[-1][-1][0]).days == 1:
            out[-1].append(item)
        else:
            out.append([item])
    return out


@dg.sensor(
    name=GRAPH_TRIGGER_SENSOR,
    job_name=GRAPH_JOB,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a day's correlation_graph once candles_<STREAMFORGE_INTERVAL> of that day "
    "are materialized and complete for every symbol of the universe.",
)
def graph_trigger_sensor(
    context: dg.SensorEvaluationContext, settings: dg.ResourceParam[Settings], store: dg.ResourceParam[Store]
):
    cursor = int(context.cursor) if context.cursor else None
    tick = graph_requests(context.instance, settings, store, cursor)
    for day, missing in tick.waiting.items():
        incomplete = ", ".join(missing)
        context.log.info(f"graph {day} waits: {candles_asset(settings.interval)} incomplete for {incomplete}")
    return dg.SensorResult(run_requests=tick.requests, cursor=str(tick.cursor))
