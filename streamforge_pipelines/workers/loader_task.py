"""One loader task, whatever the dataset: :func:`run_loader_task` and the :class:`Loader` it drives.

Every historical loader has the same outer shape, written here once:

1. its **channel** — the producer (the caller's, or its own) and the ``queue-events`` emitter
   (:func:`~.task_io.task_channel`);
2. its **outcome** — a cancellation or a stop reported as ``interrupted``, a worker error or a refused
   value as ``error`` with its one-line reason, re-raised (:func:`~.task_io.task_outcome`);
3. **validation** and **resume** — :meth:`Loader.prepare` refuses a command it cannot carry out
   (:class:`~.errors.TaskInvalid`) and finds the task's checkpoint, before ``started`` is reported;
4. the **governor** — the caller's (a step's loaders pool one), else the command's own share, else the
   process-wide one (:func:`governor_for`);
5. the **clients** — :meth:`Loader.clients` opens them (the exchange's REST and archive clients for
   the Binance loaders) and accounts their figures into the result however the load ends;
6. the **stats** — a :class:`LoadResult`, and the ``finished`` event with the records per partition,
   the days per source and the exchange figures.

**Stopping** (:class:`TaskControl`, the worker's handle on a running task): a ``stop`` asks the task
to end at its next page boundary. A loader reports progress after every page it produced
(:meth:`TaskRun.report_progress`); there a stopped task raises :class:`~.errors.TaskStopped`, so the
page in flight is finished and sent, what was sent is flushed and ``interrupted`` reported with the
records so far. Its last checkpoint (at most about a second old) stays, so the same command run
again resumes from it. The worker answers a ``ping`` from the control: the status and records so far.

A loader supplies only what differs: validation, clients, the load itself and its ``finished`` message
(:class:`Loader`). The loaders of the built-in datasets are :data:`.loader_candles.CANDLE_LOADER` and
:data:`.loader_trades.TRADES_LOADER`; :mod:`.dispatcher` maps a command's ``type`` to its loader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from ..datasets import DatasetSpec
from ..intervals import now_ms
from ..kafka import EventEmitter
from ..protocol import Command, PartitionCount, encode_record, end_marker, make_producer_id, queue_id_suffix
from ..settings import Settings
from .checkpoint import CheckpointStore
from .errors import TaskStopped
from .governor import WeightGovernor, default_governor
from .observability import BATCHES, RECORDS
from .task_io import task_channel, task_outcome

log = logging.getLogger(__name__)

ARCHIVE, REST = "archive", "rest"
R = TypeVar("R")


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


def task_fingerprint(command: Command, topic: str) -> dict[str, Any]:
    """What a checkpoint must match to be resumed from (a queue_id reused for another task: not)."""
    return {
        "symbol": command.symbol,
        "type": command.type,
        "time_range": command.time_range,
        "source": command.source or REST,
        "market": command.market or "spot",
        "topic": topic,
    }


@dataclass(kw_only=True)
class ResumeCounts:
    """What a task's checkpoint carries over: its counts so far, all acknowledged by Kafka."""

    records: int
    pages: int
    partitions: dict[int, int]
    days_by_source: dict[str, int]


def resume_counts(value: dict[str, Any]) -> dict[str, Any]:
    """The :class:`ResumeCounts` fields of a checkpoint value (KeyError, TypeError or ValueError when
    it is malformed)."""
    return {
        "records": int(value["records"]),
        "pages": int(value["pages"]),
        "partitions": {int(p): int(n) for p, n in dict(value["partitions"]).items()},
        "days_by_source": {str(w): int(n) for w, n in dict(value["days_by_source"]).items()},
    }


def resume_from(
    command: Command, topic: str, checkpoints: CheckpointStore | None, make: Callable[[dict[str, Any]], R]
) -> R | None:
    """Where the command's task resumes: ``make`` of its checkpoint in ``checkpoints``, else None.

    None without checkpoints, for a repair (``ranges`` / ``id_ranges``: short, never resumed), without
    a checkpoint, for a checkpoint of another task under the same queue_id
    (:func:`task_fingerprint`), or for a malformed one (``make`` raising KeyError, TypeError or
    ValueError): the task then loads from the start, saying why in the log.
    """
    if checkpoints is None or command.ranges is not None or command.id_ranges is not None:
        return None
    value = checkpoints.get(command.queue_id)
    if value is None:
        return None
    where = {"queue_id": command.queue_id}
    if value.get("task") != task_fingerprint(command, topic):
        log.warning(
            "checkpoint of %s is for another task (%s): loading from the start",
            command.queue_id,
            value.get("task"),
            extra=where,
        )
        return None
    try:
        return make(value)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning(
            "malformed checkpoint of %s (%r): loading from the start", command.queue_id, exc, extra=where
        )
        return None


@dataclass
class TaskControl:
    """A worker's handle on one task it runs: ask it to stop, read how far it is (for a ``ping``).

    Built by the worker before the task starts (a stop may come while it waits for a free slot);
    :func:`run_loader_task` fills in :attr:`result` and :attr:`status` as the task goes."""

    #: Set by :meth:`stop`; the task ends at its next page boundary (:class:`~.errors.TaskStopped`).
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: ``pending`` (not started), ``loading`` (running), then its end: ``finished``, ``interrupted``,
    #: ``error``.
    status: str = "pending"
    #: The task's figures so far (None before it started).
    result: LoadResult | None = None

    def stop(self) -> None:
        """Ask the task to end at its next page boundary (at once, if it has not started)."""
        self.stopping.set()

    @property
    def stopped(self) -> bool:
        return self.stopping.is_set()

    @property
    def records(self) -> int:
        """Records produced so far (a resumed task counts from its checkpoint's)."""
        return 0 if self.result is None else self.result.records


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
    resume: Any = None
    #: What :meth:`Loader.clients` opened (set once they are open).
    clients: Any = None
    #: The worker's handle (stop, ping); None when nobody can stop the task but by cancelling it.
    control: TaskControl | None = None

    @property
    def symbol(self) -> str:
        """The command's symbol (a loader's :meth:`Loader.prepare` refuses a command without one)."""
        assert self.command.symbol is not None
        return self.command.symbol

    @property
    def key(self) -> bytes:
        """The Kafka key of every record of the task: its symbol, so they share one partition, in order."""
        return self.symbol.encode()

    async def partition(self) -> int:
        """The partition of the task's records: the one Kafka's default partitioner (murmur2) picks for
        :attr:`key`, exactly as a keyed ``send()`` would; sending there explicitly saves hashing each page."""
        partitions = sorted(await self.producer.partitions_for(self.topic))
        partition: int = DefaultPartitioner()(self.key, partitions, partitions)
        return partition

    def sent_page(self, partition: int, records: int, worker: str) -> None:
        """Count a page of ``records`` sent to ``partition`` (the result and the workers' metrics)."""
        result = self.result
        result.partitions[partition] = result.partitions.get(partition, 0) + records
        result.pages += 1
        result.records += records
        BATCHES.labels(worker).inc()
        RECORDS.labels(worker, "produced").inc(records)

    async def report_progress(self, every: Every) -> None:
        """A ``loading`` event with the records so far, when ``every`` is due. Loaders call it after
        every page they produced: the page boundary where a stopped task ends
        (:class:`~.errors.TaskStopped`)."""
        if self.control is not None and self.control.stopped:
            raise TaskStopped(f"task {self.command.queue_id} stopped")
        if every.due():
            every.reset()
            await self.events.emit("loading", records_written=self.result.records)


class Every:
    """Due once ``seconds`` have passed since the last :meth:`reset` (monotonic clock): how often a
    loader reports progress and writes checkpoints."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.seconds

    def reset(self) -> None:
        self.last = time.monotonic()


async def send_end_markers(run: TaskRun, worker: str, key: bytes) -> None:
    """After a task's last record: an end marker to every partition it wrote to, with that
    partition's count (the connector acknowledges each on ``queue-events`` once stored), all
    acknowledged by Kafka on return."""
    queue_id = run.command.queue_id
    producer_id = make_producer_id(worker, queue_id_suffix(queue_id))
    markers = [
        await run.producer.send(
            run.topic, encode_record(end_marker(queue_id, producer_id, p, n)), key=key, partition=p
        )
        for p, n in sorted(run.result.partitions.items())
    ]
    await asyncio.gather(*markers)


class Clients(Protocol):
    """What :meth:`Loader.clients` yields: anything, as long as it can put its figures into the result."""

    def account(self, result: LoadResult, governor: WeightGovernor) -> None:
        """Requests, retries, 429/418 and the peak weight share, into ``result``."""
        ...


class Loader(Protocol):
    """What a dataset's loader supplies to :func:`run_loader_task`."""

    #: The component name in telemetry (``loader-api-candles``).
    worker: str
    #: The command types it carries out (:mod:`.dispatcher` routes them here).
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
    control: TaskControl | None = None,
) -> LoadResult:
    """Carry out one start command with ``loader``. Raises the error it reported
    (:class:`~.errors.TaskStopped` when ``control`` stopped it: reported as ``interrupted``).

    Every outcome is reported on ``queue-events``, a command that cannot be carried out included
    (``error`` with the reason), so nobody waits for a task that will never run. With ``checkpoints``
    (the standalone loader's) the task checkpoints as it goes and resumes from its checkpoint.
    """
    topic = command.kafka_topic or loader.dataset(command).topic(settings)
    result = LoadResult(queue_id=command.queue_id)
    control = control if control is not None else TaskControl()
    control.result = result
    t0 = time.perf_counter()
    async with task_channel(
        producer, settings.kafka_bootstrap_servers or "", settings.topic_events, command, loader.worker
    ) as (producer, events):
        try:
            async with task_outcome(producer, events, result, loader.worker):
                if control.stopped:  # stopped while it waited for a slot: nothing was done
                    raise TaskStopped(f"task {command.queue_id} stopped before it started")
                control.status = "loading"
                gov = governor if governor is not None else governor_for(command, settings)
                run = TaskRun(command, settings, producer, events, topic, result, clock_ms, checkpoints)
                run.control = control
                await _carry_out(loader, run, gov)
        except BaseException as exc:
            stopped = isinstance(exc, TaskStopped | asyncio.CancelledError)
            control.status = "interrupted" if stopped else "error"
            raise
        control.status = "finished"
    result.seconds = time.perf_counter() - t0
    return result


async def _carry_out(loader: Loader, run: TaskRun, governor: WeightGovernor) -> None:
    """The task inside its channel and outcome: prepare (the resume point), ``started``, its clients,
    the load, ``finished``."""
    command, settings, result = run.command, run.settings, run.result
    started, run.resume = loader.prepare(command, settings, run.topic, run.checkpoints)
    await run.events.emit("started", message=started)
    async with loader.clients(command, settings, governor) as clients:
        run.clients = clients
        try:
            await loader.load(run)
        finally:
            clients.account(result, governor)
    message, fields = loader.finished(run)
    await run.events.emit(
        "finished",
        finished=True,
        records_written=result.records,
        partitions=result.partition_counts(),
        message=message,
        days_by_source=dict(result.days_by_source),
        **fields,
        **result.exchange_fields(),
    )
