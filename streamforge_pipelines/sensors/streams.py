"""``streams_sensor``: shows the running live streams, flags silent ones, restarts dead ones, and
records the days streams completed.

Each tick (:func:`streams_tick`):

1. :func:`~streamforge_pipelines.queue_manager.stream_watch.watch` reads the new ``queue-events``
   (Kafka offsets in the cursor) and the desired state the ``live_streams`` job recorded, and judges
   every stream: streaming, silent, starting, dead, ended, stopped, unstopped;
2. a dead or ended stream that is wanted gets its ``start`` again (same ``queue_id``: the worker
   that takes it resumes from the task's checkpoint and repairs the gap), at most once per
   ``LIVE_RESTART_EVERY_S``; one still heard after its stop gets its ``stop`` again;
3. the tick's log has one line per stream, and a warning when a stream turns silent, dead or ended;
   each live asset with a wanted stream gets a runless materialization (records landed since the last
   tick) or observation (heard, nothing landed) with the streams' figures, and its ``fresh`` check's
   evaluation;
4. **days completed outside any run**: for a spot kline stream (``ws_candles_<i>``, ``i`` an
   interval with a candles asset) and an aggregate-trades stream, each closed day it may have
   covered (at most 7 back) that has no materialization of the historical asset (``candles_<i>``,
   ``agg_trades``) and no load under way for it (a run owns those) is checked, symbol by symbol,
   against the dataset's ledger; a complete symbol-day is recorded as that partition's runless
   materialization with its figures, so the ``graph_trigger_sensor`` takes it from there. One
   owner per fact: a partition a run materialized, or is loading, is the run's; the sensor records
   only days no run owns
   (``docs/materialization.md``).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import orjson

from ..assets.live import check_evaluation, heard_metadata
from ..intervals import now_ms
from ..names import AGG_TRADES, LIVE_ASSETS, STREAMS_SENSOR, candles_asset, live_asset
from ..partitions import CANDLE_INTERVALS, day_symbol_key, ensure_symbols
from ..protocol import ws_candle_interval
from ..queue_manager import streams
from ..queue_manager.stream_watch import (
    DEAD,
    ENDED,
    SILENT,
    STOPPED_STATE,
    STREAMING,
    UNSTOPPED,
    StreamView,
    candidate_days,
    complete_days,
    historical_type,
    loading_days,
    watch,
)
from ..settings import Settings
from ..store import Store

#: States worth a warning when a stream enters them.
_WARN = frozenset({SILENT, DEAD, ENDED, UNSTOPPED})


@dataclass
class StreamsTick:
    """One evaluation: the asset events for the sensor result, the log lines, the commands sent, the
    partitions recorded (asset, ``day|symbol``), and the new cursor."""

    cursor: str
    events: list[Any] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    recorded: list[tuple[str, str]] = field(default_factory=list)
    views: list[StreamView] = field(default_factory=list)


@dataclass
class SensorCursor:
    """The sensor's cursor: the watch's (offsets, what was heard), the live assets whose check was
    evaluated last tick, and the days reported as waiting (each is logged once)."""

    watch: str | None = None
    checked: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, raw: str | None) -> SensorCursor:
        data = orjson.loads(raw) if raw else {}
        return cls(data.get("watch"), list(data.get("checked", [])), list(data.get("waiting", [])))

    def dump(self) -> str:
        return orjson.dumps({"watch": self.watch, "checked": self.checked, "waiting": self.waiting}).decode()


def streams_tick(
    instance: dg.DagsterInstance,
    settings: Settings,
    store: Store,
    cursor: str | None,
    *,
    now: float | None = None,
) -> StreamsTick:
    """One tick as a plain function (the sensor's body): judge, restart, record."""
    now = time.time() if now is None else now
    state = SensorCursor.load(cursor)
    tick = watch(settings, store, state.watch, now=now)
    if tick.commands:
        asyncio.run(streams.send_commands(settings, tick.commands))
    out = StreamsTick(cursor="", views=tick.views)
    states = {v.stream.queue_id: v.state for v in tick.views}
    for view in tick.views:
        if view.stream.running or view.state != STOPPED_STATE:
            out.info.append(view.line(now))
    for view in tick.changed:
        if view.state in _WARN:
            out.warnings.append(f"stream {view.stream.queue_id} is {view.state}: {view.why}")
        elif view.state == STREAMING:
            out.info.append(f"stream {view.stream.queue_id} is streaming")
    for command in tick.commands:
        out.sent.append(f"{command.command} {command.queue_id}")
        out.warnings.append(
            f"sent {command.command} {command.queue_id} again (the stream is {states[command.queue_id]})"
        )
    state.checked = _asset_events(out, tick.views, state.checked)
    waiting = _record_live_days(out, instance, store, tick.views, now)
    out.info += [line for key, line in waiting.items() if key not in state.waiting]
    state.watch, state.waiting = tick.cursor.dump(), sorted(waiting)
    out.cursor = state.dump()
    return out


def _asset_events(out: StreamsTick, views: list[StreamView], checked: list[str]) -> list[str]:
    """Per live asset with a wanted stream (or one that had one last tick): its runless event and the
    ``fresh`` evaluation. Returns the assets evaluated (the cursor's ``checked``)."""
    by_asset: dict[str, list[StreamView]] = defaultdict(list)
    for v in views:
        asset = live_asset(v.stream.type)
        if asset is not None:
            by_asset[asset].append(v)
    evaluated: list[str] = []
    for asset in LIVE_ASSETS:
        mine = by_asset.get(asset, [])
        running = [v for v in mine if v.stream.running]
        if not running and asset not in checked:
            continue
        if running:
            evaluated.append(asset)
            meta = _figures(running)
            landed = sum(v.new_records for v in running)
            if landed:
                out.events.append(dg.AssetMaterialization(asset_key=asset, metadata=meta))
            else:
                out.events.append(dg.AssetObservation(asset_key=asset, metadata=meta))
        out.events.append(check_evaluation(asset, mine))
    return evaluated


def _figures(views: list[StreamView]) -> dict[str, Any]:
    """An asset event's metadata: the streams as a table, totals, and their heartbeat state."""
    rows = [
        "| stream | type | market | symbols | state | records | gaps | resyncs | reconnects | repaired |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    totals = defaultdict(int)
    for v in views:
        st = v.heard.stream if v.heard is not None and v.heard.stats else None
        figures = [0] * 5 if st is None else [st.records, st.gaps, st.resyncs, st.reconnects, st.repaired]
        for name, value in zip(
            ("records", "gaps", "resyncs", "reconnects", "repaired"), figures, strict=True
        ):
            totals[name] += value
        s = v.stream
        rows.append(
            f"| {s.queue_id} | {s.type} | {s.market} | {len(s.symbols)} | {v.state} | "
            + " | ".join(str(f) for f in figures)
            + " |"
        )
    return {
        "streams": dg.MetadataValue.md("\n".join(rows)),
        "new_records": dg.MetadataValue.int(sum(v.new_records for v in views)),
        **{name: dg.MetadataValue.int(value) for name, value in totals.items()},
        "silent_symbols": dg.MetadataValue.text(
            ", ".join(
                sorted(
                    {sym for v in views if v.heard and v.heard.stats for sym in v.heard.stream.silent_symbols}
                )
            )
            or "none"
        ),
        "heard": dg.MetadataValue.json(orjson.loads(heard_metadata(views))),
    }


def _historical_asset(view: StreamView) -> str | None:
    task_type = historical_type(view.stream)
    if task_type is None:
        return None
    interval = ws_candle_interval(view.stream.type)
    if interval is None:
        return AGG_TRADES
    return candles_asset(interval) if interval in CANDLE_INTERVALS else None


def _record_live_days(
    out: StreamsTick, instance: dg.DagsterInstance, store: Store, views: list[StreamView], now: float
) -> dict[str, str]:
    """Record the symbol-days streams completed that no run owns (``docs/materialization.md``);
    returns the symbol-days that wait (``asset day symbol stream`` -> the line saying why)."""
    waiting: dict[str, str] = {}
    today = datetime.fromtimestamp(now, UTC).date()
    done: dict[str, set[str]] = {}
    owned: dict[str, set[date]] = {}
    clock = now_ms()
    for view in views:
        asset = _historical_asset(view)
        task_type = historical_type(view.stream)
        if asset is None or task_type is None:
            continue
        if asset not in done:
            done[asset] = set(instance.get_materialized_partitions(dg.AssetKey(asset)))
        if task_type not in owned:
            owned[task_type] = loading_days(store, task_type)
        days = [d for d in candidate_days(view.stream, today) if d not in owned[task_type]]
        ensure_symbols(instance, view.stream.symbols)
        for symbol in view.stream.symbols:
            todo = [d for d in days if day_symbol_key(d, symbol) not in done[asset]]
            one = replace(view.stream, symbols=(symbol,))
            for verdict in complete_days(store, one, todo, clock):
                key = day_symbol_key(verdict.day, symbol)
                where = f"{asset} {verdict.day} {symbol} (stream {view.stream.queue_id})"
                if not verdict.complete:
                    line = f"{where} waits: {verdict.why}"
                    waiting[f"{asset} {key} {view.stream.queue_id} {verdict.why}"] = line
                    continue
                metadata = {name: dg.MetadataValue.int(v) for name, v in verdict.figures.items()}
                metadata |= {
                    "stream": dg.MetadataValue.text(view.stream.queue_id),
                    "source": dg.MetadataValue.text("live stream (no run): the store holds the day complete"),
                }
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(asset_key=asset, partition=key, metadata=metadata)
                )
                done[asset].add(key)
                out.recorded.append((asset, key))
                out.info.append(f"{where}: complete, recorded")
    return waiting


@dg.sensor(
    name=STREAMS_SENSOR,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Shows the live streams (figures on the live_* assets, their fresh checks), flags silent "
    "ones, starts a wanted stream again when its worker died, and records the days streams completed "
    "that no run owns.",
)
def streams_sensor(
    context: dg.SensorEvaluationContext, settings: dg.ResourceParam[Settings], store: dg.ResourceParam[Store]
):
    if settings.kafka_bootstrap_servers is None:
        return dg.SkipReason("KAFKA_BOOTSTRAP_SERVERS is not set: no streams to watch")
    tick = streams_tick(context.instance, settings, store, context.cursor)
    for line in tick.warnings:
        context.log.warning(line)
    for line in tick.info:
        context.log.info(line)
    return dg.SensorResult(asset_events=tick.events, cursor=tick.cursor)
