"""``agg_trades``: daily-partitioned aggregate trades (``/api/v3/aggTrades``) of the symbol universe.

Like ``candles_<interval>``, the step is the queue-manager of its partitions
(:func:`~streamforge_pipelines.queue_manager.load_trades`): one ``api_agg_trades`` task per symbol
for the whole range (a backfill is one run), loaders in the step or standalone, completion by the
connector's end-marker acknowledgements. Then the trades ledger (ids are consecutive, so a day is
complete when every id of its span is stored) with one round of ``id_ranges`` repair, reported as
the asset check ``complete``.
"""

import asyncio
from datetime import timedelta
from typing import Literal

import dagster as dg
from pydantic import Field

from ..partitions import DAILY
from ..queue_manager import TradesReport, TradesRequest, load_trades
from ..resources import ExchangeResource, KafkaResource, LoaderResource, StoreResource, resolve_settings

GROUP = "market_data"
COMPLETE_CHECK = "complete"


class TradesConfig(dg.Config):
    symbols: list[str] = Field(
        default_factory=list,
        description="Symbols to load; empty = the configured universe (STREAMFORGE_UNIVERSE)",
    )
    source: Literal["auto", "rest", "archive"] = Field(
        default="auto",
        description="auto: closed days from the bulk archive, the recent tail from REST; rest; archive",
    )


def trades_metadata(report: TradesReport) -> dict[str, dg.MetadataValue]:
    rows = [
        "| symbol | day | first id | last id | expected | stored | missing |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    rows += [
        f"| {e.symbol} | {e.day} | {e.first_id} | {e.last_id} | {e.expected} | {e.stored} | {e.missing} |"
        for e in report.ledger
    ]
    return {
        "expected_trades": dg.MetadataValue.int(report.expected),
        "stored_trades": dg.MetadataValue.int(report.stored),
        "missing_trades": dg.MetadataValue.int(report.missing),
        "repaired_trades": dg.MetadataValue.int(report.repaired),
        "loaded_records": dg.MetadataValue.int(report.loaded),
        "tasks": dg.MetadataValue.int(len(report.tasks)),
        "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
        "http_429": dg.MetadataValue.int(report.exchange.http_429),
        "http_418": dg.MetadataValue.int(report.exchange.http_418),
        "retries": dg.MetadataValue.int(report.exchange.retries),
        "weight_budget_used": dg.MetadataValue.float(round(report.exchange.weight_budget_used, 4)),
        "days_from_archive": dg.MetadataValue.int(report.exchange.days_by_source.get("archive", 0)),
        "days_from_rest": dg.MetadataValue.int(report.exchange.days_by_source.get("rest", 0)),
        "per_symbol_day": dg.MetadataValue.md("\n".join(rows)),
    }


@dg.asset(
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"kafka", "python"},
    description="Aggregate trades (aggTrades) of the symbol universe, one partition per UTC day; "
    "store collection `trades`, keys `SYMBOL:agg:<id>`.",
    check_specs=[
        dg.AssetCheckSpec(
            COMPLETE_CHECK,
            asset="agg_trades",
            description="Every aggregate-trade id of each day's span is stored (one round of repair first).",
        )
    ],
)
def agg_trades(
    context: dg.AssetExecutionContext,
    config: TradesConfig,
    kafka: KafkaResource,
    store: StoreResource,
    exchange: ExchangeResource,
    loaders: LoaderResource,
) -> dg.MaterializeResult:
    settings = resolve_settings(kafka, store, exchange)
    window = context.partition_time_window
    keys = context.partition_key_range
    request = TradesRequest(
        symbols=tuple(s.upper() for s in config.symbols) or settings.universe,
        kind="agg",
        first=window.start.date(),
        last=(window.end - timedelta(days=1)).date(),
        run_id=context.run.run_id,
        partition_key=keys.start if keys.start == keys.end else f"{keys.start}..{keys.end}",
        source=config.source,
    )
    context.log.info(f"loading {request}")
    with store.open(settings) as db:
        report = asyncio.run(
            load_trades(
                request, settings, db, launch=loaders.launch, max_parallel_tasks=loaders.max_parallel_tasks
            )
        )
    metadata = trades_metadata(report)
    if report.failed:
        raise dg.Failure(
            description=f"{len(report.failed)} task(s) failed: "
            + "; ".join(f"{q}: {report.errors.get(q, report.tasks[q])}" for q in report.failed),
            metadata=metadata,
        )
    context.log.info(f"stored {report.stored}/{report.expected} aggregate trades in {report.seconds:.1f}s")
    check = dg.AssetCheckResult(
        check_name=COMPLETE_CHECK,
        passed=report.missing == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{report.missing} of {report.expected} aggregate trades missing",
        metadata={
            "expected": dg.MetadataValue.int(report.expected),
            "stored": dg.MetadataValue.int(report.stored),
            "missing": dg.MetadataValue.int(report.missing),
            "repaired": dg.MetadataValue.int(report.repaired),
        },
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
