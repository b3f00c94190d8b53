"""``candle_coverage``: per (symbol, day) candles expected vs stored, downstream of the candles.

Requested by the ``queue_events_sensor`` once every task of a load is complete; also launchable
and backfillable from the UI. A first cut of the completeness ledger.
"""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from ..partitions import CANDLE_INTERVALS, DAILY
from ..queue_manager import LoadReport, LoadRequest, measure
from ..resources import StoreResource, resolve_settings
from ..workers.loader_candles import now_ms
from .candles import GROUP, report_metadata


class CoverageConfig(dg.Config):
    interval: str = Field(default="5m", description=f"One of {', '.join(CANDLE_INTERVALS)}")
    symbols: list[str] = Field(default_factory=list, description="Empty = the configured universe")


@dg.asset(
    name="candle_coverage",
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    deps=[dg.AssetKey(f"candles_{i}") for i in CANDLE_INTERVALS],
    description="Candles expected vs stored per symbol and day.",
)
def candle_coverage(context: dg.AssetExecutionContext, config: CoverageConfig, store: StoreResource):
    if config.interval not in CANDLE_INTERVALS:
        raise dg.Failure(
            f"interval {config.interval!r} has no candles asset; choose one of {CANDLE_INTERVALS}"
        )
    settings = resolve_settings(store)
    window = context.partition_time_window
    request = LoadRequest(
        symbols=tuple(s.upper() for s in config.symbols) or settings.universe,
        interval=config.interval,
        first=window.start.date(),
        last=(window.end - timedelta(days=1)).date(),
    )
    with store.open(settings) as db:
        report = LoadReport(request=request)
        report.days, report.duplicate_keys = measure(request, db, now_ms())
    meta = report_metadata(report)
    for k in ("loaded_records", "tasks", "seconds", "candles_per_second"):
        meta.pop(k)
    return dg.MaterializeResult(metadata=meta)
