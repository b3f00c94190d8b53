"""The asset factory of the loaded datasets: one day × symbol partitioned asset per dataset (and
interval), built from its :class:`~streamforge_pipelines.datasets.DatasetSpec` and one queue-manager call.

A run covers a range of days × a stretch of symbols (``BackfillPolicy.single_run``: a backfill is one
run per symbol stretch, or per symbol when Dagster groups it so). The asset is a graph of three
steps, so that one run can spread over processes (the multiprocess executor) or pods (the Kubernetes
job executor):

* ``<asset>_plan`` splits the run's symbols into groups (:func:`~..queue_manager.fanout.symbol_groups`:
  one per ``LOAD_STEP_SYMBOL_DAYS`` symbol-days, at most ``LOAD_MAX_STEPS``) and gives each its share
  of the exchange budget (the deployment's share over the load runs running now × the groups);
* ``<asset>_load[g<i>]``, one per group, in parallel, in the Dagster pool :data:`EXCHANGE_POOL`: the
  queue-manager of its symbols — it writes their task records (the one writer), commands the loaders,
  returns only when the connector has stored every task's records, then builds the group's
  completeness ledger with one round of targeted repair. A failed group is retried
  (:data:`LOAD_RETRY`) and resumes: a time-grid dataset loads only the days the store lacks;
* ``<asset>_finish`` merges the groups' reports and records the materialization of every symbol-day
  of the run, once, with the load's figures, and the asset check ``complete`` (severity ERROR when
  anything is missing). The ``queue_events_sensor`` only reads (``docs/materialization.md``).

Each load step shows its tasks' lifecycle on the asset and run pages as observations of the asset
(:class:`StepProgress`: one per task status change — queued, started, loading, finished, complete,
failed, stalled, interrupted) and logs progress every few seconds.

What the factory takes from the spec: the noun of the metadata keys and the ledger kind
(:mod:`.load_metadata`). What is the dataset's own: its queue-manager request (:data:`Request`),
built from the run's config and span. Config, partitions, resources, steps, progress, failure
handling, metadata and the check are the same for every dataset.

No ``from __future__ import annotations`` here: Dagster reads the op functions' config annotation
(the factory's ``config`` class) as an object, not as a string it would resolve in this module.
"""

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import dagster as dg
from pydantic import Field

from .. import queue_manager
from ..datasets import DatasetSpec
from ..names import COMPLETE_CHECK, LOAD_JOBS, MARKET_DATA_GROUP
from ..partitions import DAY_SYMBOL, PartitionSpan, partition_span
from ..queue_manager import Launch
from ..queue_manager.fanout import merge_reports, step_settings, step_share, symbol_groups
from ..queue_manager.tracking import TaskTracker
from ..resources import LoaderResource
from ..settings import Settings
from ..store import Store
from .load_metadata import LEDGER_VIEWS, LoadOutcome, complete_check, load_failure, load_metadata

#: The Dagster pool of every load step: one exchange (one IP's weight budget) for all of them.
EXCHANGE_POOL = "binance"


class LoadConfig(dg.Config):
    """The run config every loaded dataset's asset takes (the symbols are its partitions)."""

    source: Literal["auto", "rest", "archive"] = Field(
        default="auto",
        description="auto: closed days from the bulk archive, the recent tail from REST; rest; archive",
    )
    max_steps: int = Field(
        default=0,
        ge=0,
        description="Most load steps (symbol groups in parallel); 0 = LOAD_MAX_STEPS",
    )
    retry: bool = Field(
        default=True,
        description="Retry a failed load step (it resumes); false: fail at once (streamforge run)",
    )


C = TypeVar("C", bound=LoadConfig)


@dataclass(frozen=True)
class LoadCall(Generic[C]):
    """Everything a queue-manager call needs from the run: its config, the days of its partitions,
    the symbols of its partitions, the live settings and store, and how to run loaders."""

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


class StepProgress:
    """A load step's ``on_progress``: an observation of the asset per task status change (the task's
    lifecycle on the asset and run pages, from the step that writes the task records) and a progress
    line in the run's log every few seconds (:class:`ProgressLog`)."""

    def __init__(self, context: dg.OpExecutionContext, asset: str, tasks: int, noun: str) -> None:
        self._context, self._asset = context, asset
        self._log = ProgressLog(context.log.info, tasks, noun)
        self._seen: dict[str, str] = {}

    def __call__(self, tracker: TaskTracker) -> None:
        for queue_id, state in tracker.tasks.items():
            if self._seen.get(queue_id) == state.status:
                continue
            self._seen[queue_id] = state.status
            self._context.log_event(task_observation(self._asset, queue_id, state))
        self._log(tracker)


def task_observation(asset: str, queue_id: str, state: Any) -> dg.AssetObservation:
    """One task's status as an observation of ``asset`` (``task_status`` and its figures)."""
    meta: dict[str, Any] = {
        "task": dg.MetadataValue.text(queue_id),
        "task_status": dg.MetadataValue.text(state.status),
        "symbol": dg.MetadataValue.text(state.symbol or ""),
        "loaded_records": dg.MetadataValue.int(state.loaded),
        "stored_records": dg.MetadataValue.int(state.stored),
    }
    if state.error:
        meta["error"] = dg.MetadataValue.text(state.error)
    return dg.AssetObservation(asset_key=asset, metadata=meta, description=f"task {queue_id}: {state.status}")


@dataclass(frozen=True)
class LoadGroup:
    """What the plan hands one load step: the run's config and span, the group's symbols and the
    step's share of the exchange limit."""

    config: dict[str, Any]
    span: PartitionSpan
    symbols: tuple[str, ...]
    share: float


#: A failed load step is tried again (it resumes: a time-grid dataset loads only what the store lacks).
LOAD_RETRY = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def load_runs_now(instance: dg.DagsterInstance) -> int:
    """The load runs the instance has started (this one among them): they share the exchange."""
    started = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=200)
    load_keys = {dg.AssetKey(job.removesuffix("_job")) for job in LOAD_JOBS}
    loads = [r for r in started if r.job_name in LOAD_JOBS or (r.asset_selection or set()) & load_keys]
    return max(1, len(loads))


def raise_unless_preempted(context: dg.OpExecutionContext) -> None:
    """After an interrupt: a run being cancelled ends the step for good (Dagster would otherwise
    schedule a retry the cancelled run never runs); any other interrupt (a pod evicted, a node
    drained) is re-raised by the caller, and the retry policy runs the step again to resume."""
    run = context.instance.get_run_by_id(context.run_id)
    if run is not None and run.status in (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED):
        raise dg.Failure(
            description="cancelled: the step's loaders stopped at a page boundary, tasks interrupted",
            allow_retries=False,
        ) from None


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
    """The day × symbol partitioned asset ``name`` that loads ``spec``'s records: the run's ``request``
    per symbol group, carried out by :func:`streamforge_pipelines.queue_manager.load`."""
    noun, view = spec.name, LEDGER_VIEWS[spec.ledger]
    check = dg.AssetCheckSpec(COMPLETE_CHECK, asset=name, description=check_description)

    @dg.op(name=f"{name}_plan", out=dg.DynamicOut(LoadGroup))
    def plan(
        context: dg.OpExecutionContext, config: config_type, settings: dg.ResourceParam[Settings]
    ) -> Iterator[dg.DynamicOutput]:
        span = partition_span(context)
        max_steps = config.max_steps or settings.load_max_steps
        groups = symbol_groups(
            span.symbols,
            len(span.days),
            max_steps=max_steps,
            symbol_days_per_step=settings.load_step_symbol_days,
        )
        runs = load_runs_now(context.instance)
        share = step_share(settings, len(groups), runs)
        context.log.info(
            f"loading {name} of {span.label}: {len(span.symbols)} symbols in {len(groups)} step(s), "
            f"each with {share:.3f} of the exchange limit ({runs} load run(s) now), config {config}"
        )
        for i, group in enumerate(groups):
            load_group = LoadGroup(config.model_dump(), span, group, share)
            yield dg.DynamicOutput(load_group, mapping_key=f"g{i}")

    @dg.op(name=f"{name}_load", retry_policy=LOAD_RETRY, pool=EXCHANGE_POOL)
    def load(
        context: dg.OpExecutionContext,
        group: LoadGroup,
        settings: dg.ResourceParam[Settings],
        store: dg.ResourceParam[Store],
        loaders: LoaderResource,
    ) -> Any:
        mine = step_settings(settings, group.share)
        if context.retry_number:
            context.log.info(f"attempt {context.retry_number + 1}: loading only what the store lacks")
        call = LoadCall(
            config=config_type(**group.config),
            span=group.span,
            symbols=group.symbols,
            run_id=context.run.run_id,
            settings=mine,
            store=store,
            launch=loaders.launch,
            max_parallel_tasks=loaders.max_parallel_tasks,
            on_progress=StepProgress(context, name, len(group.symbols), noun),
        )
        # A cancelled run interrupts the step: its loaders are stopped and its task records say
        # `interrupted` before Dagster sees the interrupt (queue_manager.interrupts).
        try:
            report: LoadOutcome = queue_manager.run_stoppable(
                queue_manager.load(
                    request(call),
                    mine,
                    store,
                    launch=call.launch,
                    max_parallel_tasks=call.max_parallel_tasks,
                    on_progress=call.on_progress,
                )
            )
        except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
            raise_unless_preempted(context)
            raise
        except Exception as exc:
            if group.config.get("retry", True):
                raise
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        if report.failed:
            failure = load_failure(report, load_metadata(spec, report))
            failure.allow_retries = failure.allow_retries and group.config.get("retry", True)
            raise failure
        context.log.info(
            f"{', '.join(group.symbols)}: stored {report.stored}/{report.expected} {noun} in "
            f"{report.seconds:.1f}s{view.summary(report)}"
        )
        return report

    check_output = f"{name}_{COMPLETE_CHECK}"

    @dg.op(name=f"{name}_finish", out={"result": dg.Out(dg.Nothing), check_output: dg.Out(dg.Nothing)})
    def finish(context: dg.OpExecutionContext, reports: list[Any]) -> Iterator[Any]:
        report: Any = merge_reports(reports)
        context.log.info(
            f"stored {report.stored}/{report.expected} {noun} in {report.seconds:.1f}s over "
            f"{len(reports)} step(s){view.summary(report)}"
        )
        yield dg.Output(None, "result", metadata=load_metadata(spec, report))
        yield complete_check(spec, report, name)

    def mapping(config: dict[str, Any]) -> dict[str, Any]:
        return {plan.name: {"config": config}}

    @dg.graph_asset(
        name=name,
        partitions_def=DAY_SYMBOL,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=MARKET_DATA_GROUP,
        kinds={"kafka", "python"},
        description=description,
        metadata=dict(metadata or {}),
        check_specs=[check],
        config=dg.ConfigMapping(config_fn=mapping, config_schema=config_type.to_config_schema()),
    )
    def dataset() -> Any:
        return finish(plan().map(load).collect())

    return dataset
