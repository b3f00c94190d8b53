"""One loader task, whatever the dataset: :func:`run_loader_task` and the :class:`Loader` it drives.

Every historical loader has the same outer shape, written here once:

1. its **channel** — the producer (the caller's, or its own) and the ``queue-events`` emitter
   (:func:`~.task_io.task_channel`);
2. its **outcome** — a cancellation reported as ``interrupted``, a worker error or a refused value as
   ``error`` with its one-line reason, re-raised (:func:`~.task_io.task_outcome`);
3. **validation** and **resume** — :meth:`Loader.prepare` refuses a command it cannot carry out
   (:class:`~.errors.TaskInvalid`) and finds the task's checkpoint, before ``started`` is reported;
4. the **governor** — the caller's (a step's loaders pool one), else the command's own share, else the
   process-wide one (:func:`governor_for`);
5. the **clients** — :meth:`Loader.clients` opens them (the exchange's REST and archive clients for
   the Binance loaders) and accounts their figures into the result however the load ends;
6. the **stats** — a :class:`LoadResult`, and the ``finished`` event with the records per partition,
   the days per source and the exchange figures.

A loader supplies only what differs: validation, clients, the load itself and its ``finished`` message
(:class:`Loader`). The loaders of the built-in datasets are :data:`.loader_candles.CANDLE_LOADER` and
:data:`.loader_trades.TRADES_LOADER`; :mod:`.dispatch` maps a command's ``type`` to its loader.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from ..datasets import DatasetSpec
from ..intervals import now_ms
from ..kafka import EventEmitter
from ..protocol import Command, PartitionCount
from ..settings import Settings
from .checkpoint import CheckpointStore
from .governor import WeightGovernor, default_governor
from .task_io import task_channel, task_outcome

ARCHIVE, REST = "archive", "rest"


@dataclass
class LoadResult:
    """What one task did."""

    queue_id: str
    records: int = 0
    partitions: dict[int, int] = field(default_factory=dict)
    pages: int = 0
    requests: int = 0
    retries: int = 0
    http_429: int = 0
    http_418: int = 0
    #: Peak share (0-1) of the governor's per-minute budget used.
    weight_budget_used: float = 0.0
    seconds: float = 0.0
    #: Days read from each source: {"archive": n, "rest": m}.
    days_by_source: dict[str, int] = field(default_factory=lambda: {ARCHIVE: 0, REST: 0})
    archive_requests: int = 0
    #: Repair tasks (``command.ranges``): the fetched sub-ranges the exchange returned no candles for.
    empty_ranges: list[tuple[int, int]] | None = None

    def partition_counts(self) -> list[PartitionCount]:
        """Records written per partition, as the ``finished`` event carries them."""
        return [PartitionCount(partition=p, records=n) for p, n in sorted(self.partitions.items())]

    def exchange_fields(self) -> dict[str, Any]:
        """The exchange figures as :class:`~streamforge_pipelines.protocol.Event` fields."""
        return {
            "http_429": self.http_429,
            "http_418": self.http_418,
            "retries": self.retries,
            "weight_used_peak": round(self.weight_budget_used, 4),
        }


def governor_for(command: Command, settings: Settings) -> WeightGovernor:
    """The command's own slice of the limit when it names one, else the process-wide governor.

    Of its market's limit: Binance counts USD-M futures weight (``EXCHANGE_FUTURES_WEIGHT_LIMIT``)
    apart from spot (``EXCHANGE_WEIGHT_LIMIT``), so a usdm task never shares a spot governor.
    """
    market = command.market or "spot"
    limit = settings.weight_limit(market)
    if command.weight_share is not None:
        return WeightGovernor(limit, command.weight_share, pool=market)
    return default_governor(limit, settings.exchange_weight_share, pool=market)


@dataclass
class TaskRun:
    """One task in progress, as :meth:`Loader.load` sees it."""

    command: Command
    settings: Settings
    producer: AIOKafkaProducer
    events: EventEmitter
    topic: str
    result: LoadResult
    clock_ms: Callable[[], int]
    checkpoints: CheckpointStore | None
    #: What :meth:`Loader.prepare` found to resume from (None: from the start).
    resume: Any
    #: What :meth:`Loader.clients` opened.
    clients: Any


class Clients(Protocol):
    """What :meth:`Loader.clients` yields: anything, as long as it can put its figures into the result."""

    def account(self, result: LoadResult, governor: WeightGovernor) -> None:
        """Requests, retries, 429/418 and the peak weight share, into ``result``."""
        ...


class Loader(Protocol):
    """What a dataset's loader supplies to :func:`run_loader_task`."""

    #: The component name in telemetry (``loader-api-candles``).
    worker: str
    #: The command types it carries out (:mod:`.dispatch` routes them here).
    task_types: frozenset[str]

    def dataset(self, command: Command) -> DatasetSpec:
        """The dataset a command's records belong to (its topic when the command names none)."""
        ...

    def prepare(
        self, command: Command, settings: Settings, topic: str, checkpoints: CheckpointStore | None
    ) -> tuple[str, Any]:
        """Refuse a command that cannot be carried out (:class:`~.errors.TaskInvalid`, one line);
        else ``(the started message, the resume point or None)``."""
        ...

    def clients(
        self, command: Command, settings: Settings, governor: WeightGovernor
    ) -> AbstractAsyncContextManager[Clients]:
        """The clients the load uses, closed when it ends."""
        ...

    async def load(self, run: TaskRun) -> None:
        """Produce the task's records to ``run.topic`` and its end markers, counting into ``run.result``."""
        ...

    def finished(self, run: TaskRun) -> tuple[str, dict[str, Any]]:
        """The ``finished`` event's message and its dataset-specific fields."""
        ...


async def run_loader_task(
    loader: Loader,
    command: Command,
    settings: Settings,
    *,
    producer: AIOKafkaProducer | None = None,
    clock_ms: Callable[[], int] = now_ms,
    governor: WeightGovernor | None = None,
    checkpoints: CheckpointStore | None = None,
) -> LoadResult:
    """Carry out one start command with ``loader``. Raises the error it reported.

    Every outcome is reported on ``queue-events``, a command that cannot be carried out included
    (``error`` with the reason), so nobody waits for a task that will never run. With ``checkpoints``
    (the standalone loader's) the task checkpoints as it goes and resumes from its checkpoint.
    """
    topic = command.kafka_topic or loader.dataset(command).topic(settings)
    result = LoadResult(queue_id=command.queue_id)
    t0 = time.perf_counter()
    async with task_channel(
        producer, settings.kafka_bootstrap_servers or "", settings.topic_events, command, loader.worker
    ) as (producer, events):
        async with task_outcome(producer, events, result, loader.worker):
            started, resume = loader.prepare(command, settings, topic, checkpoints)
            await events.emit("started", message=started)
            gov = governor if governor is not None else governor_for(command, settings)
            async with loader.clients(command, settings, gov) as clients:
                run = TaskRun(
                    command, settings, producer, events, topic, result, clock_ms, checkpoints, resume, clients
                )
                try:
                    await loader.load(run)
                finally:
                    clients.account(result, gov)
            message, fields = loader.finished(run)
            await events.emit(
                "finished",
                finished=True,
                records_written=result.records,
                partitions=result.partition_counts(),
                message=message,
                days_by_source=dict(result.days_by_source),
                **fields,
                **result.exchange_fields(),
            )
    result.seconds = time.perf_counter() - t0
    return result
