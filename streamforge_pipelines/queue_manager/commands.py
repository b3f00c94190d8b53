"""The one command builder: the start commands the queue-manager publishes on ``queue-control``.

Every load — a dataset's whole range, a candles repair of open-time ranges, a trades repair of id
ranges — is a list of :class:`TaskPlan` (a symbol, its days, its source, what to re-fetch), and
:func:`build_commands` turns it into commands for the request's dataset: the dataset's topic and
collection (:class:`~streamforge_pipelines.datasets.DatasetSpec`), the request's task type, run and
partition, and each task's share of the exchange's weight budget. Nothing here knows candles from
trades; the plans do (:func:`whole_range`, :func:`range_repairs` and
:func:`.trades_ledger.repair_plan`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from ..datasets import DatasetSpec
from ..intervals import ms_to_day
from ..protocol import (
    LOADER_PRODUCER,
    Command,
    format_time_range,
    make_producer_id,
    make_queue_id,
    new_suffix,
    now_s,
)
from ..settings import Settings


class DatasetRequest(Protocol):
    """What :func:`build_commands` reads of a request (:class:`.requests.LoadRequest`,
    :class:`.requests.TradesRequest`)."""

    @property
    def symbols(self) -> tuple[str, ...]: ...
    @property
    def first(self) -> date: ...
    @property
    def last(self) -> date: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def partition_key(self) -> str | None: ...
    @property
    def source(self) -> str: ...
    @property
    def task_type(self) -> str: ...
    @property
    def spec(self) -> DatasetSpec: ...
    def series(self, symbol: str) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class TaskPlan:
    """One loader task: a symbol over the days ``first`` .. ``last`` from ``source``; a repair names
    the open-time ``ranges`` or the ``id_ranges`` (half-open) it re-fetches."""

    symbol: str
    first: date
    last: date
    source: str
    ranges: tuple[tuple[int, int], ...] | None = None
    id_ranges: tuple[tuple[int, int], ...] | None = None


def weight_share(settings: Settings, tasks: int, parallel: int) -> float:
    """Each loader task's share of the exchange's per-IP weight limit: the deployment's share
    (``EXCHANGE_WEIGHT_SHARE``) split evenly over the tasks that run at the same time."""
    at_once = max(1, min(tasks, parallel))
    return settings.exchange_weight_share / at_once


def whole_range(request: DatasetRequest) -> list[TaskPlan]:
    """One task per symbol for the request's whole range, from the request's source."""
    return [TaskPlan(symbol, request.first, request.last, request.source) for symbol in request.symbols]


def range_repairs(ranges: Mapping[str, Sequence[tuple[int, int]]]) -> list[TaskPlan]:
    """One REST task per symbol that re-fetches only ``ranges[symbol]`` (open-time ranges, from the
    completeness ledger), over the days those ranges span."""
    return [
        TaskPlan(
            symbol,
            ms_to_day(rs[0][0]),
            ms_to_day(rs[-1][1] - 1),
            "rest",
            ranges=tuple((a, b) for a, b in rs),
        )
        for symbol, rs in sorted(ranges.items())
        if rs
    ]


def build_commands(
    request: DatasetRequest,
    settings: Settings,
    *,
    plans: Sequence[TaskPlan] | None = None,
    parallel: int = 4,
    target: str = LOADER_PRODUCER,
) -> list[Command]:
    """The start commands of ``plans`` (default: :func:`whole_range`) for the request's dataset."""
    plans = whole_range(request) if plans is None else plans
    spec = request.spec
    share = weight_share(settings, len(plans), parallel)
    commands = []
    for plan in plans:
        suffix = new_suffix()
        commands.append(
            Command(
                command="start",
                queue_id=make_queue_id(plan.symbol, request.task_type, plan.first, suffix),
                target=target,
                symbol=plan.symbol,
                type=request.task_type,
                time_range=format_time_range(plan.first, plan.last),
                kafka_topic=spec.topic(settings),
                collection_name=spec.collection,
                market=spec.market,  # type: ignore[arg-type]
                telemetry_id=make_producer_id(target, suffix),
                timestamp=now_s(),
                run_id=request.run_id,
                partition_key=request.partition_key,
                weight_share=share,
                source=plan.source,  # type: ignore[arg-type]
                ranges=None if plan.ranges is None else list(plan.ranges),
                id_ranges=None if plan.id_ranges is None else list(plan.id_ranges),
            )
        )
    return commands
