"""The live datasets as assets, their ``fresh`` check, and the ``live_streams`` job that starts and
stops the streams feeding them.

**Assets** (group ``live``): ``live_agg_trades`` (``ws_agg_trades``), ``live_trades`` (``ws_trades``),
``live_candles`` (``ws_candles_<interval>``, closed klines) and ``live_book`` (``ws_orderbook``,
top-N book snapshots). They are external assets: no run materializes them; what the stream workers
land is recorded by the ``streams_sensor`` (``sensors/streams.py``) as runless events: a
materialization when a stream's heartbeats say records landed since the last tick, an observation
when the streams were heard but landed nothing, both with the streams' figures.

**Check** ``fresh`` on each: every stream feeding the asset that is wanted (started by the job and
not stopped) is heard from within ``LIVE_DEAD_AFTER_BEATS`` heartbeats and reports no silent
symbol. The sensor evaluates it every tick (runless check evaluations, so the UI shows it current
without a run); executed by hand, the check judges the same way from what the sensor recorded last
(:func:`~streamforge_pipelines.queue_manager.stream_watch.judge` on the heartbeat times in the
asset's latest event). Dagster's own ``FreshnessPolicy`` is not used: it judges by the age of the
last materialization alone, which cannot tell a quiet market (a 1d kline stream closes one candle a
day) from a dead stream; heartbeats can.

**Job** ``live_streams`` (op ``stream_command``), launchable from the UI's launchpad: ``action``
``start`` or ``stop``, ``type``, ``symbols`` (empty = ``STREAMFORGE_UNIVERSE``), ``market``,
``queue_id`` (empty = ``live-<type>-<market>``), ``wait_s``. It records the desired state, sends the
command on ``queue-control`` and waits (bounded) for the worker's answer; a stream worker that does
not answer, or reports the task's ``error``, fails the run with one line
(:mod:`streamforge_pipelines.queue_manager.streams` does the work).

No ``from __future__ import annotations`` here: Dagster reads the op's config annotation as an object.
"""

import asyncio
import time
from dataclasses import asdict
from typing import Any, Literal

import dagster as dg
import orjson
from pydantic import Field

from ..names import (
    FRESH_CHECK,
    LIVE_AGG_TRADES,
    LIVE_BOOK,
    LIVE_CANDLES,
    LIVE_GROUP,
    LIVE_STREAMS_JOB,
    LIVE_STREAMS_OP,
    LIVE_TRADES,
    live_asset,
)
from ..queue_manager import streams
from ..queue_manager.stream_watch import Heard, StreamView, judge
from ..settings import Settings
from ..store import Store

#: Asset -> its description (the stream task types it is fed by are in the text).
LIVE_DESCRIPTIONS: dict[str, str] = {
    LIVE_AGG_TRADES: "Aggregate trades streamed live (`ws_agg_trades`: `<symbol>@aggTrade`) into the "
    "`trades` collection with the loaded ones' keys (`SYMBOL:agg:<id>`); ids a connection missed are "
    "fetched from REST by the stream itself.",
    LIVE_TRADES: "Trades streamed live (`ws_trades`: `<symbol>@trade`) into the `trades` collection "
    "(`SYMBOL:trade:<id>`).",
    LIVE_CANDLES: "Closed klines streamed live (`ws_candles_<interval>`: `<symbol>@kline_<interval>`, "
    "x = true) into the candle collection with the loaded candles' keys: the completeness ledger counts "
    "them, and a day the streams complete is recorded as that day's `candles_<interval>` partition.",
    LIVE_BOOK: "Order books kept live (`ws_orderbook`: REST snapshot + depth diffs, checked against "
    "bookTicker), as top-N snapshots in the `book_snapshots` collection.",
}

FRESH_DESCRIPTION = (
    "Every wanted stream feeding this asset is heard from within LIVE_DEAD_AFTER_BEATS heartbeats and "
    "reports no silent symbol (evaluated by the streams_sensor each tick)."
)


def live_spec(name: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=name,
        description=LIVE_DESCRIPTIONS[name],
        group_name=LIVE_GROUP,
        kinds={"kafka", "python"},
    )


LIVE_SPECS: list[dg.AssetSpec] = [live_spec(name) for name in LIVE_DESCRIPTIONS]


# ---- what the sensor records, and the check ---------------------------------------------------------


def heard_metadata(views: list[StreamView]) -> str:
    """The heartbeat state of the streams in an asset event's metadata (JSON), for the check."""
    return orjson.dumps({v.stream.queue_id: asdict(v.heard) for v in views if v.heard is not None}).decode()


def fresh_verdict(views: list[StreamView]) -> tuple[bool, str, dict[str, Any]]:
    """The ``fresh`` check's outcome over one asset's streams: passed iff every wanted one is fresh."""
    running = [v for v in views if v.stream.running]
    stale = [v for v in running if not v.fresh]
    if not running:
        text = "no stream of this dataset is wanted"
    elif stale:
        text = "; ".join(f"{v.stream.queue_id} {v.state}: {v.why}" for v in stale)
    else:
        text = f"{len(running)} stream(s) fresh"
    meta: dict[str, Any] = {
        "wanted_streams": len(running),
        "stale_streams": ", ".join(v.stream.queue_id for v in stale) or "none",
    }
    return not stale, text, meta


def check_evaluation(asset: str, views: list[StreamView]) -> dg.AssetCheckEvaluation:
    """The ``fresh`` check's evaluation as the sensor reports it (runless)."""
    passed, text, meta = fresh_verdict(views)
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(asset),
        check_name=FRESH_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=text,
        metadata={
            k: dg.MetadataValue.int(v) if isinstance(v, int) else dg.MetadataValue.text(v)
            for k, v in meta.items()
        },
    )


def _last_heard(instance: dg.DagsterInstance, asset: str) -> dict[str, Heard]:
    """What the sensor last recorded of the asset's streams (its newest materialization or observation)."""
    key = dg.AssetKey(asset)
    newest: Any = None
    for fetch in (instance.fetch_materializations, instance.fetch_observations):
        records = fetch(key, limit=1, ascending=False).records
        if records and (newest is None or records[0].timestamp > newest.timestamp):
            newest = records[0]
    if newest is None:
        return {}
    event = newest.asset_materialization or newest.asset_observation
    raw = event.metadata.get("heard") if event is not None else None
    if raw is None:
        return {}
    data = raw.value if isinstance(raw.value, dict) else orjson.loads(str(raw.value))
    return {q: Heard(**h) for q, h in data.items()}


def _fresh_check(asset: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=FRESH_CHECK, description=FRESH_DESCRIPTION)
    def fresh(
        context: dg.AssetCheckExecutionContext,
        settings: dg.ResourceParam[Settings],
        store: dg.ResourceParam[Store],
    ) -> dg.AssetCheckResult:
        now = time.time()
        dead_after_s = settings.live_dead_after_beats * settings.live_heartbeat_s
        heard = _last_heard(context.instance, asset)
        views = []
        for stream in streams.wanted_streams(store):
            if live_asset(stream.type) == asset:
                state, why = judge(stream, heard.get(stream.queue_id), now, dead_after_s)
                views.append(StreamView(stream, heard.get(stream.queue_id), state, why))
        passed, text, meta = fresh_verdict(views)
        return dg.AssetCheckResult(
            passed=passed, severity=dg.AssetCheckSeverity.ERROR, description=text, metadata=meta
        )

    return fresh


LIVE_CHECKS: list[dg.AssetChecksDefinition] = [_fresh_check(name) for name in LIVE_DESCRIPTIONS]


# ---- the job ----------------------------------------------------------------------------------------


class LiveStreamsConfig(dg.Config):
    """The run config of ``live_streams``."""

    action: Literal["start", "stop"] = Field(default="start", description="start or stop the stream")
    type: str = Field(
        default="",
        description="ws_agg_trades, ws_trades, ws_candles_<interval> (closed klines) or ws_orderbook; "
        "a stop may give only the queue_id of a stream on record instead",
    )
    symbols: list[str] = Field(
        default_factory=list,
        description="Symbols to stream; empty = the configured universe (STREAMFORGE_UNIVERSE). A start "
        "of a running stream with other symbols changes its subscription live",
    )
    market: Literal["spot", "usdm"] = Field(default="spot", description="spot, or usdm (USD-M futures)")
    queue_id: str = Field(
        default="",
        description="The stream's id; empty = live-<type>-<market> (what stop and restarts address)",
    )
    wait_s: float = Field(
        default=60.0, gt=0, le=600, description="Seconds to wait for the stream worker's answer"
    )


@dg.op(
    name=LIVE_STREAMS_OP,
    description="Record the stream's desired state, send its start or stop on queue-control and wait "
    "for the stream worker's answer on queue-events.",
)
def stream_command(
    context: dg.OpExecutionContext,
    config: LiveStreamsConfig,
    settings: dg.ResourceParam[Settings],
    store: dg.ResourceParam[Store],
) -> None:
    if settings.kafka_bootstrap_servers is None:
        raise dg.Failure(description="live_streams: KAFKA_BOOTSTRAP_SERVERS is not set: no queue-control")
    queue_id = streams.known_queue_id(config.type, config.market, config.queue_id)
    known = store.get_task(queue_id) if queue_id else None
    try:
        request = streams.stream_request(
            config.action,
            config.type,
            config.symbols,
            config.market,
            config.queue_id,
            universe=settings.universe,
            known=known,
        )
    except ValueError as exc:
        raise dg.Failure(description=f"live_streams: {exc}") from None
    commands = streams.stream_commands(request)
    streams.want(store, request, commands, context.run_id)
    context.log.info(
        f"{request.action} {request.queue_id}: {request.type} {request.market}, "
        f"{len(request.symbols)} symbols, sent to {request.target}"
    )
    try:
        event = asyncio.run(streams.command_and_wait(settings, request, commands, config.wait_s))
    except (streams.NoAnswer, streams.StreamFailed) as exc:
        raise dg.Failure(description=str(exc)) from None
    context.log.info(streams.describe(event))


@dg.job(
    name=LIVE_STREAMS_JOB,
    description="Start or stop a live stream (config: action, type, symbols, market, queue_id); waits "
    "for the stream worker's answer.",
)
def live_streams() -> None:
    stream_command()
