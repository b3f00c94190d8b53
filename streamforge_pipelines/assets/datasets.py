"""The asset factory of the loaded datasets: one daily-partitioned asset per dataset (and interval),
built from its :class:`~streamforge_pipelines.datasets.DatasetSpec` and one queue-manager call.

Every loaded dataset's step is the queue-manager of its partitions: it writes the task records,
commands the loaders, and returns only when the connector has stored every task's records. It
therefore owns the partition's materialization (recorded once, here, with the load's figures); the
``queue_events_sensor`` only reads (see ``docs/materialization.md``). A date-range backfill is one run
(``BackfillPolicy.single_run``): one task per symbol covers the whole range, never one run per
symbol-day. After the load the step builds the dataset's completeness ledger with one round of
targeted repair and reports it as the asset check ``complete`` (severity ERROR when anything is
missing).

What the factory takes from the spec: the noun of the metadata keys (``expected_candles``,
``stored_trades``: the spec's name) and the ledger kind, which decides the figures the ledger adds
and how ``complete`` is judged (:data:`LEDGER_VIEWS`: a time grid knows confirmed exchange downtime
and duplicate keys, id ranges know each day's id span). What is the dataset's own: its
queue-manager request (:data:`Request`), built from the run's config and span
(:func:`streamforge_pipelines.queue_manager.load` carries out any of them). Config, partitions,
resources, progress, failure handling, metadata and the check are the same for every dataset.

No ``from __future__ import annotations`` here: Dagster reads the asset function's config annotation
(the factory's ``config`` class) as an object, not as a string it would resolve in this module.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

import dagster as dg
from pydantic import Field

from .. import queue_manager
from ..datasets import DatasetSpec, LedgerKind
from ..names import COMPLETE_CHECK, MARKET_DATA_GROUP
from ..partitions import DAILY, PartitionSpan, partition_span
from ..queue_manager import Launch, LoadReport, TradesReport
from ..queue_manager.ledger import CheckSummary, check_summary
from ..queue_manager.tracking import ExchangeTotals, TaskTracker
from ..resources import LoaderResource
from ..settings import Settings
from ..store import Store


class LoadConfig(dg.Config):
    """The run config every loaded dataset's asset takes."""

    symbols: list[str] = Field(
        default_factory=list,
        description="Symbols to load; empty = the configured universe (STREAMFORGE_UNIVERSE)",
    )
    source: Literal["auto", "rest", "archive"] = Field(
        default="auto",
        description="auto: closed days from the bulk archive, the recent tail from REST; rest; archive",
    )


C = TypeVar("C", bound=LoadConfig)


class LoadOutcome(Protocol):
    """What a queue-manager load reports (:class:`~..queue_manager.LoadReport`, ``TradesReport``)."""

    @property
    def expected(self) -> int: ...
    @property
    def stored(self) -> int: ...
    @property
    def missing(self) -> int: ...
    @property
    def repaired(self) -> int: ...
    @property
    def loaded(self) -> int: ...
    @property
    def seconds(self) -> float: ...
    @property
    def tasks(self) -> dict[str, str]: ...
    @property
    def errors(self) -> dict[str, str]: ...
    @property
    def exchange(self) -> ExchangeTotals: ...
    @property
    def failed(self) -> list[str]: ...


@dataclass(frozen=True)
class LoadCall(Generic[C]):
    """Everything a queue-manager call needs from the run: its config, the days of its partitions,
    the symbols (config or the universe), the live settings and store, and how to run loaders."""

    config: C
    span: PartitionSpan
    symbols: tuple[str, ...]
    run_id: str
    settings: Settings
    store: Store
    launch: Launch
    max_parallel_tasks: int
    on_progress: Callable[[TaskTracker], None]

    def request_fields(self) -> dict[str, Any]:
        """What every dataset's request takes from the run: symbols, days, run, partition, source."""
        return {
            "symbols": self.symbols,
            "first": self.span.first,
            "last": self.span.last,
            "run_id": self.run_id,
            "partition_key": self.span.label,
            "source": self.config.source,
        }


#: The dataset's own part of its asset: its queue-manager request for a run.
Request = Callable[[LoadCall[C]], queue_manager.LoadRequest | queue_manager.TradesRequest]


class ProgressLog:
    """Logs a load's progress to the run's log at most every ``every_s`` seconds."""

    def __init__(self, log: Callable[[str], None], tasks: int, noun: str, every_s: float = 5.0) -> None:
        self._log, self._tasks, self._noun, self._every = log, tasks, noun, every_s
        self._last = 0.0

    def __call__(self, tracker: TaskTracker) -> None:
        now = time.monotonic()
        if now - self._last < self._every:
            return
        self._last = now
        states = tracker.tasks.values()
        done = sum(1 for t in states if t.complete)
        loaded, stored = sum(t.loaded for t in states), sum(t.stored for t in states)
        self._log(
            f"progress: {done}/{self._tasks} tasks stored; {loaded} {self._noun} loaded, {stored} stored"
        )


# ---- what each ledger kind adds --------------------------------------------------------------------


class LedgerView(Protocol):
    """What a ledger kind adds to a load's metadata and how it judges ``complete``."""

    def figures(self, noun: str, report: Any) -> dict[str, dg.MetadataValue]:
        """Metadata beyond the figures every load has."""
        ...

    def table(self, report: Any) -> list[str]:
        """The per (symbol, day) table, as markdown lines."""
        ...

    def verdict(self, report: Any) -> CheckSummary:
        """The ``complete`` check's outcome."""
        ...

    def summary(self, report: Any) -> str:
        """What the final log line says beyond stored/expected."""
        ...


class TimeGridView:
    """A fixed grid of times per day (candles): absent records split into confirmed exchange downtime
    and missing, duplicate keys counted. The candles' metadata has always carried the symbols, the
    rate and the days repaired too; they stay here so that no asset's metadata keys change."""

    def figures(self, noun: str, report: LoadReport) -> dict[str, dg.MetadataValue]:
        rate = report.stored / report.seconds if report.seconds else 0.0
        return {
            f"downtime_{noun}": dg.MetadataValue.int(report.downtime),
            "duplicate_keys": dg.MetadataValue.int(report.duplicate_keys),
            "symbols": dg.MetadataValue.text(",".join(report.request.symbols)),
            f"{noun}_per_second": dg.MetadataValue.float(round(rate, 1)),
            "days_repaired": dg.MetadataValue.int(report.exchange.days_by_source.get("repair", 0)),
        }

    def table(self, report: LoadReport) -> list[str]:
        rows = ["| symbol | day | expected | stored | downtime | missing |", "|---|---|---:|---:|---:|---:|"]
        return rows + [
            f"| {d.symbol} | {d.day} | {d.expected} | {d.stored} | {d.downtime} | {d.missing} |"
            for d in report.days
        ]

    def verdict(self, report: LoadReport) -> CheckSummary:
        return check_summary(report.ledger)

    def summary(self, report: LoadReport) -> str:
        return (
            f"; {report.downtime} in exchange downtime, {report.repaired} repaired, {report.missing} missing"
        )


class IdRangesView:
    """Consecutive ids per day (trades): a day is complete when every id of its span is stored."""

    def figures(self, noun: str, report: TradesReport) -> dict[str, dg.MetadataValue]:
        return {}

    def table(self, report: TradesReport) -> list[str]:
        rows = [
            "| symbol | day | first id | last id | expected | stored | missing |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        return rows + [
            f"| {e.symbol} | {e.day} | {e.first_id} | {e.last_id} | {e.expected} | {e.stored} | {e.missing} |"
            for e in report.ledger
        ]

    def verdict(self, report: TradesReport) -> CheckSummary:
        what = "aggregate trades" if report.request.kind == "agg" else "trades"
        return CheckSummary(
            passed=report.missing == 0,
            description=f"{report.missing} of {report.expected} {what} missing",
            metadata={
                "expected": report.expected,
                "stored": report.stored,
                "missing": report.missing,
                "repaired": report.repaired,
            },
        )

    def summary(self, report: TradesReport) -> str:
        return ""


LEDGER_VIEWS: Mapping[LedgerKind, LedgerView] = {"time_grid": TimeGridView(), "id_ranges": IdRangesView()}


# ---- metadata and the check -----------------------------------------------------------------------


def load_metadata(spec: DatasetSpec, report: Any) -> dict[str, dg.MetadataValue]:
    """A load's materialization metadata: the figures every load has (``expected_<noun>`` ...), the
    ledger kind's own, the exchange figures and the per (symbol, day) table."""
    noun, view, ex = spec.name, LEDGER_VIEWS[spec.ledger], report.exchange
    return {
        f"expected_{noun}": dg.MetadataValue.int(report.expected),
        f"stored_{noun}": dg.MetadataValue.int(report.stored),
        f"missing_{noun}": dg.MetadataValue.int(report.missing),
        f"repaired_{noun}": dg.MetadataValue.int(report.repaired),
        "loaded_records": dg.MetadataValue.int(report.loaded),
        "tasks": dg.MetadataValue.int(len(report.tasks)),
        "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
        "http_429": dg.MetadataValue.int(ex.http_429),
        "http_418": dg.MetadataValue.int(ex.http_418),
        "retries": dg.MetadataValue.int(ex.retries),
        "weight_budget_used": dg.MetadataValue.float(round(ex.weight_budget_used, 4)),
        "days_from_archive": dg.MetadataValue.int(ex.days_by_source.get("archive", 0)),
        "days_from_rest": dg.MetadataValue.int(ex.days_by_source.get("rest", 0)),
        **view.figures(noun, report),
        "per_symbol_day": dg.MetadataValue.md("\n".join(view.table(report))),
    }


def complete_check(spec: DatasetSpec, report: Any) -> dg.AssetCheckResult:
    """The ``complete`` check of a load: passed iff its ledger has nothing missing."""
    verdict = LEDGER_VIEWS[spec.ledger].verdict(report)
    return dg.AssetCheckResult(
        check_name=COMPLETE_CHECK,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=verdict.description,
        metadata={k: dg.MetadataValue.int(v) for k, v in verdict.metadata.items()},
    )


def _failure(report: LoadOutcome, metadata: dict[str, dg.MetadataValue]) -> dg.Failure:
    """A failed or stalled task fails the step: no materialization for data that is not stored."""
    causes = "; ".join(f"{q}: {report.errors.get(q, report.tasks[q])}" for q in report.failed)
    return dg.Failure(description=f"{len(report.failed)} task(s) failed: {causes}", metadata=metadata)


# ---- the factory ----------------------------------------------------------------------------------


def dataset_asset(
    spec: DatasetSpec,
    *,
    name: str,
    description: str,
    check_description: str,
    config_type: type[C],
    request: Request[C],
    metadata: Mapping[str, Any] | None = None,
) -> dg.AssetsDefinition:
    """The daily-partitioned asset ``name`` that loads ``spec``'s records: the run's ``request``,
    carried out by :func:`streamforge_pipelines.queue_manager.load`."""
    noun, view = spec.name, LEDGER_VIEWS[spec.ledger]

    @dg.asset(
        name=name,
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=MARKET_DATA_GROUP,
        kinds={"kafka", "python"},
        description=description,
        metadata=dict(metadata or {}),
        check_specs=[dg.AssetCheckSpec(COMPLETE_CHECK, asset=name, description=check_description)],
    )
    def dataset(
        context: dg.AssetExecutionContext,
        config: config_type,
        settings: dg.ResourceParam[Settings],
        store: dg.ResourceParam[Store],
        loaders: LoaderResource,
    ) -> dg.MaterializeResult:
        span = partition_span(context)
        symbols = tuple(s.upper() for s in config.symbols) or settings.universe
        context.log.info(f"loading {name} of {span.label}: {len(symbols)} symbols, config {config}")
        call = LoadCall(
            config=config,
            span=span,
            symbols=symbols,
            run_id=context.run.run_id,
            settings=settings,
            store=store,
            launch=loaders.launch,
            max_parallel_tasks=loaders.max_parallel_tasks,
            on_progress=ProgressLog(context.log.info, len(symbols), noun),
        )
        # A cancelled run interrupts the step: its loaders are stopped and its task records say
        # `interrupted` before Dagster sees the interrupt (queue_manager.interrupts).
        report: LoadOutcome = queue_manager.run_stoppable(
            queue_manager.load(
                request(call),
                settings,
                store,
                launch=call.launch,
                max_parallel_tasks=call.max_parallel_tasks,
                on_progress=call.on_progress,
            )
        )
        meta = load_metadata(spec, report)
        if report.failed:
            raise _failure(report, meta)
        context.log.info(
            f"stored {report.stored}/{report.expected} {noun} in {report.seconds:.1f}s{view.summary(report)}"
        )
        return dg.MaterializeResult(metadata=meta, check_results=[complete_check(spec, report)])

    return dataset
