"""``candle_coverage``: the completeness ledger of its partitions, refreshed from the store.

Requested by the ``queue_events_sensor`` once every task of a load is complete; also launchable
and backfillable from the UI. For every (symbol, day) of its partitions it rebuilds the ledger
entry (``streamforge_pipelines.queue_manager.ledger``) from the stored candles and the downtime the exchange
already confirmed (persisted with the ledger: nothing is asked of the exchange here), persists it,
and records expected / stored / downtime / missing with the per symbol-day table.
"""

from typing import Literal

import dagster as dg
from pydantic import Field

from ..datasets import CANDLES
from ..intervals import now_ms
from ..names import CANDLE_COVERAGE, MARKET_DATA_GROUP, candles_asset
from ..partitions import CANDLE_INTERVALS, DAY_SYMBOL, partition_span
from ..queue_manager import LoadReport, LoadRequest, figures, ledger_of
from ..store import Store
from .load_metadata import load_metadata


class CoverageConfig(dg.Config):
    interval: str = Field(default="5m", description=f"One of {', '.join(CANDLE_INTERVALS)}")
    market: Literal["spot", "usdm"] = Field(default="spot", description="spot or usdm (USD-M futures)")


@dg.asset(
    name=CANDLE_COVERAGE,
    partitions_def=DAY_SYMBOL,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=MARKET_DATA_GROUP,
    deps=[dg.AssetKey(candles_asset(i)) for i in CANDLE_INTERVALS],
    description="The completeness ledger: candles expected, stored, in exchange downtime and missing "
    "per symbol and day.",
)
def candle_coverage(
    context: dg.AssetExecutionContext,
    config: CoverageConfig,
    store: dg.ResourceParam[Store],
):
    if config.interval not in CANDLE_INTERVALS:
        raise dg.Failure(
            f"interval {config.interval!r} has no candles asset; choose one of {CANDLE_INTERVALS}"
        )
    span = partition_span(context)
    request = LoadRequest(
        symbols=span.symbols,
        interval=config.interval,
        first=span.first,
        last=span.last,
        market=config.market,
    )
    report = LoadReport(request=request)
    report.ledger, report.duplicate_keys = ledger_of(request, store, now_ms(), save=True)
    report.days = figures(report.ledger)
    meta = load_metadata(CANDLES, report)
    for k in ("loaded_records", "tasks", "seconds", "candles_per_second", "repaired_candles"):
        meta.pop(k)
    statuses = [e.status for e in report.ledger]
    for status in ("complete", "downtime", "missing"):
        meta[f"days_{status}"] = dg.MetadataValue.int(statuses.count(status))
    context.log.info(
        f"ledger: {report.stored}/{report.expected} stored, "
        f"{report.downtime} in exchange downtime, {report.missing} missing"
    )
    return dg.MaterializeResult(metadata=meta)
