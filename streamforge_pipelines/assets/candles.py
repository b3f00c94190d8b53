"""``candles_<interval>``: daily-partitioned candles for the symbol universe.

The step is the queue-manager for its partitions: it writes the task records, commands the
loaders, and returns only when the connector has stored every task's records. It therefore owns
the partition's materialization (recorded once, here, with the load's figures); the
``queue_events_sensor`` only updates task records, flags stalls and requests downstream work.
A date-range backfill is one run (``BackfillPolicy.single_run``): one task per symbol covers the
whole range, never one run per symbol-day.

After the load the step builds the completeness ledger (``streamforge_pipelines.queue_manager.ledger``)
with one round of targeted repair, and reports it as the asset check ``complete``: passed when no candle is
missing (candles absent in confirmed exchange downtime are not missing), severity ERROR otherwise,
with expected / stored / downtime / missing / repaired as metadata.
"""

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

import dagster as dg
from pydantic import Field

from ..partitions import CANDLE_INTERVALS, DAILY
from ..queue_manager import LoadReport, LoadRequest, load_candles
from ..queue_manager.ledger import check_summary
from ..queue_manager.tracking import TaskTracker
from ..resources import ExchangeResource, KafkaResource, LoaderResource, StoreResource, resolve_settings

GROUP = "market_data"
#: The candles assets' asset check: nothing missing per the completeness ledger.
COMPLETE_CHECK = "complete"


class CandlesConfig(dg.Config):
    symbols: list[str] = Field(
        default_factory=list,
        description="Symbols to load; empty = the configured universe (STREAMFORGE_UNIVERSE)",
    )
    source: Literal["auto", "rest", "archive"] = Field(
        default="auto",
        description="auto: closed days from the bulk archive, the recent tail from REST; rest; archive",
    )
    market: Literal["spot", "usdm"] = Field(
        default="spot",
        description="spot, or usdm (USD-M futures: their own topic and collection, candles_usdm)",
    )


class ProgressLog:
    """Logs a load's progress to the run's log at most every ``every_s`` seconds."""

    def __init__(self, log: Callable[[str], None], tasks: int, every_s: float = 5.0) -> None:
        self._log, self._tasks, self._every = log, tasks, every_s
        self._last = 0.0

    def __call__(self, tracker: TaskTracker) -> None:
        now = time.monotonic()
        if now - self._last < self._every:
            return
        self._last = now
        states = tracker.tasks.values()
        done = sum(1 for t in states if t.complete)
        loaded, stored = sum(t.loaded for t in states), sum(t.stored for t in states)
        self._log(f"progress: {done}/{self._tasks} tasks stored; {loaded} candles loaded, {stored} stored")


def report_metadata(report: LoadReport) -> dict[str, dg.MetadataValue]:
    rows = ["| symbol | day | expected | stored | downtime | missing |", "|---|---|---:|---:|---:|---:|"]
    rows += [
        f"| {d.symbol} | {d.day} | {d.expected} | {d.stored} | {d.downtime} | {d.missing} |"
        for d in report.days
    ]
    rate = report.stored / report.seconds if report.seconds else 0.0
    return {
        "expected_candles": dg.MetadataValue.int(report.expected),
        "stored_candles": dg.MetadataValue.int(report.stored),
        "missing_candles": dg.MetadataValue.int(report.missing),
        "downtime_candles": dg.MetadataValue.int(report.downtime),
        "repaired_candles": dg.MetadataValue.int(report.repaired),
        "duplicate_keys": dg.MetadataValue.int(report.duplicate_keys),
        "loaded_records": dg.MetadataValue.int(report.loaded),
        "tasks": dg.MetadataValue.int(len(report.tasks)),
        "symbols": dg.MetadataValue.text(",".join(report.request.symbols)),
        "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
        "candles_per_second": dg.MetadataValue.float(round(rate, 1)),
        "http_429": dg.MetadataValue.int(report.exchange.http_429),
        "http_418": dg.MetadataValue.int(report.exchange.http_418),
        "retries": dg.MetadataValue.int(report.exchange.retries),
        "weight_budget_used": dg.MetadataValue.float(round(report.exchange.weight_budget_used, 4)),
        "days_from_archive": dg.MetadataValue.int(report.exchange.days_by_source.get("archive", 0)),
        "days_from_rest": dg.MetadataValue.int(report.exchange.days_by_source.get("rest", 0)),
        "days_repaired": dg.MetadataValue.int(report.exchange.days_by_source.get("repair", 0)),
        "per_symbol_day": dg.MetadataValue.md("\n".join(rows)),
    }


def complete_check_result(report: LoadReport) -> dg.AssetCheckResult:
    """The ``complete`` check of a load: passed iff its ledger has nothing missing."""
    verdict = check_summary(report.ledger)
    return dg.AssetCheckResult(
        check_name=COMPLETE_CHECK,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=verdict.description,
        metadata={k: dg.MetadataValue.int(v) for k, v in verdict.metadata.items()},
    )


def build_candles_asset(interval: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"candles_{interval}",
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        kinds={"kafka", "python"},
        description=f"{interval} candles of the symbol universe, one partition per UTC day.",
        metadata={"interval": interval},
        check_specs=[
            dg.AssetCheckSpec(
                COMPLETE_CHECK,
                asset=f"candles_{interval}",
                description="No candle missing per the completeness ledger (confirmed exchange "
                "downtime is not missing); one round of targeted repair runs first.",
            )
        ],
    )
    def candles(
        context: dg.AssetExecutionContext,
        config: CandlesConfig,
        kafka: KafkaResource,
        store: StoreResource,
        exchange: ExchangeResource,
        loaders: LoaderResource,
    ) -> dg.MaterializeResult:
        settings = resolve_settings(kafka, store, exchange)
        window = context.partition_time_window
        keys = context.partition_key_range
        request = LoadRequest(
            symbols=tuple(s.upper() for s in config.symbols) or settings.universe,
            interval=interval,
            first=window.start.date(),
            last=(window.end - timedelta(days=1)).date(),
            run_id=context.run.run_id,
            partition_key=keys.start if keys.start == keys.end else f"{keys.start}..{keys.end}",
            source=config.source,
            market=config.market,
        )
        context.log.info(f"loading {request}")
        with store.open(settings) as db:
            report = asyncio.run(
                load_candles(
                    request,
                    settings,
                    db,
                    launch=loaders.launch,
                    max_parallel_tasks=loaders.max_parallel_tasks,
                    on_progress=ProgressLog(context.log.info, len(request.symbols)),
                )
            )
        metadata = report_metadata(report)
        if report.failed:
            raise dg.Failure(
                description=f"{len(report.failed)} task(s) failed: "
                + "; ".join(f"{q}: {report.errors.get(q, report.tasks[q])}" for q in report.failed),
                metadata=metadata,
            )
        context.log.info(
            f"stored {report.stored}/{report.expected} candles in {report.seconds:.1f}s; "
            f"{report.downtime} in exchange downtime, {report.repaired} repaired, {report.missing} missing"
        )
        return dg.MaterializeResult(metadata=metadata, check_results=[complete_check_result(report)])

    return candles


CANDLE_ASSETS = [build_candles_asset(i) for i in CANDLE_INTERVALS]
