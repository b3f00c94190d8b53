"""Running a load's tasks to the end: task records, commands on ``queue-control``, the loaders
(in this process, or standalone ones listening on ``queue-control``), and following
``queue-events`` until every task is stored, has failed, or has stalled.

**Cancellation** (a Dagster run cancelled: :func:`run_stoppable` turns the step's interrupt into a
cancellation of the load): :func:`run_tasks` stops every task that has not ended — in process by
its :class:`~streamforge_pipelines.workers.TaskControl`, standalone by a ``stop`` command on
``queue-control`` — so each loader finishes the page in flight, flushes and reports
``interrupted``; it follows ``queue-events`` for at most :data:`STOP_WAIT_S` until every one has,
writes the task records (``interrupted``; ``complete`` / ``failed`` for those that ended before;
``stalled`` for one that did not answer), and lets the cancellation go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from aiokafka import AIOKafkaProducer

from ..intervals import now_ms
from ..kafka import make_producer, stop_within
from ..kafka import monitor as broker_monitor
from ..protocol import Command, now_s
from ..settings import Settings
from ..store import Store, TaskRecord
from ..workers import TaskControl, TaskStopped, WeightGovernor, run_task
from .commands import DatasetRequest
from .telemetry import EventFollower
from .tracking import STALLED, ExchangeTotals, TaskTracker

#: Seconds a cancelled load waits for its tasks' ``interrupted`` (the standalone loader's stop grace,
#: ``STOP_GRACE_S`` 15 s, and the report).
STOP_WAIT_S = 20.0
#: Status of a task record whose loader stopped when its run was cancelled.
INTERRUPTED = "interrupted"
#: The ``message`` of such a record: its ``interrupted`` is final (nobody resumes the task).
CANCELLED_MESSAGE = "stopped: its run was cancelled"

log = logging.getLogger(__name__)

#: How a load's loaders run: as tasks of this process, or standalone (``streamforge worker loader``).
Launch = Literal["inprocess", "external"]


@dataclass
class TasksOutcome:
    """The final status of each task (queue_id -> status), their errors, records loaded, exchange figures."""

    tasks: dict[str, str]
    errors: dict[str, str]
    loaded: int
    exchange: ExchangeTotals


async def run_tasks(
    commands: list[Command],
    request: DatasetRequest,
    settings: Settings,
    store: Store,
    launch: Launch,
    max_parallel_tasks: int,
    on_progress: Callable[[TaskTracker], None] | None,
    *,
    empty_ranges: dict[str, list[tuple[int, int]]] | None = None,
    clock_ms: Callable[[], int] = now_ms,
) -> TasksOutcome:
    """Task records, commands, loaders, completion: until every task is stored, failed or stalled."""
    bootstrap = settings.kafka_bootstrap_servers or ""
    queue_ids = [c.queue_id for c in commands]
    for c in commands:
        store.put_task(
            TaskRecord(
                queue_id=c.queue_id,
                symbol=c.symbol or "",
                type=c.type or "",
                time_range=c.time_range or "",
                status="pending",
                run_id=request.run_id,
                partition_key=request.partition_key,
            )
        )
    tracker = TaskTracker()
    tracker.watch(queue_ids)
    health = broker_monitor(bootstrap, down_after_s=settings.kafka_unavailable_s)
    health.check()
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        async with EventFollower(bootstrap, settings.topic_events) as follower:
            await _publish(producer, settings.topic_control, commands)
            controls = {c.queue_id: TaskControl() for c in commands}
            loaders = _launch(commands, settings, producer, launch, max_parallel_tasks, clock_ms, controls)
            try:
                await _follow(follower, tracker, queue_ids, store, settings, on_progress, empty_ranges)
            except asyncio.CancelledError:  # the run was cancelled: the loaders hear it
                if not health.down:
                    stopping = tracker.pending(queue_ids)
                    log.warning("cancelled: stopping %d running task(s)", len(stopping))
                    if launch == "external":
                        await _publish(producer, settings.topic_control, _stops(commands, stopping))
                    await _stop_in_process(loaders, [controls[q] for q in stopping])
                    await _await_interrupted(follower, tracker, stopping, store, settings)
                _final(tracker, queue_ids, store, stopped=True)
                raise
            finally:
                for t in loaders:
                    t.cancel()
                if health.down and loaders:  # they would wait on the broker to report `interrupted`
                    await asyncio.wait(loaders, timeout=0.5)
                else:
                    await asyncio.gather(*loaders, return_exceptions=True)
    finally:
        # A producer flushes what it holds before it stops: with the broker gone, not for long.
        await stop_within(producer.stop(), 0.5 if health.down else None)
    return _final(tracker, queue_ids, store, stopped=False)


def _final(tracker: TaskTracker, queue_ids: list[str], store: Store, *, stopped: bool) -> TasksOutcome:
    """Each task's final status into its record: ``complete`` / ``failed`` when it ended, when the
    run was cancelled (``stopped``) ``interrupted`` when its loader said so, else ``stalled``."""
    out = TasksOutcome(tasks={}, errors={}, loaded=0, exchange=ExchangeTotals())
    for q in queue_ids:
        state = tracker.tasks[q]
        if state.done:
            out.tasks[q] = state.status
        elif stopped and state.loader_status == INTERRUPTED:
            out.tasks[q] = INTERRUPTED
        else:
            out.tasks[q] = STALLED
        out.loaded += state.loaded
        if state.error:
            out.errors[q] = state.error
        fields = state.record_fields()
        fields["status"] = out.tasks[q]
        if out.tasks[q] == INTERRUPTED:  # final here, unlike a SIGTERM'd loader's (resumed by the next)
            fields["message"] = CANCELLED_MESSAGE
        store.update_task(q, **fields)
    out.exchange = ExchangeTotals.of(tracker.tasks[q] for q in queue_ids)
    return out


async def _publish(producer: AIOKafkaProducer, topic: str, commands: Sequence[Command]) -> None:
    futures = [await producer.send(topic, c.encode(), key=c.queue_id.encode()) for c in commands]
    await asyncio.gather(*futures)


def _stops(commands: Sequence[Command], queue_ids: Sequence[str]) -> list[Command]:
    """The ``stop`` commands of ``queue_ids``' tasks, addressed as their starts were."""
    wanted = set(queue_ids)
    return [
        Command(command="stop", queue_id=c.queue_id, target=c.target, run_id=c.run_id, timestamp=now_s())
        for c in commands
        if c.queue_id in wanted
    ]


async def _stop_in_process(loaders: Sequence[asyncio.Task[None]], controls: Sequence[TaskControl]) -> None:
    """Stop the in-process loaders at their next page boundary; cancel those that have not ended
    within :data:`STOP_WAIT_S` (a cancelled loader reports ``interrupted`` too)."""
    for control in controls:
        control.stop()
    if loaders:
        _, late = await asyncio.wait(loaders, timeout=STOP_WAIT_S)
        for t in late:
            t.cancel()
        await asyncio.gather(*loaders, return_exceptions=True)


async def _await_interrupted(
    follower: EventFollower, tracker: TaskTracker, queue_ids: list[str], store: Store, settings: Settings
) -> None:
    """Follow ``queue-events`` until each of ``queue_ids`` has ended or reported ``interrupted``, for
    at most :data:`STOP_WAIT_S`; records follow their status as in :func:`_follow`."""
    watched = set(queue_ids)
    deadline = time.monotonic() + STOP_WAIT_S

    def waiting() -> list[str]:
        return [q for q in tracker.pending(queue_ids) if tracker.tasks[q].loader_status != INTERRUPTED]

    while waiting() and time.monotonic() < deadline:
        for event in await follower.poll(timeout_ms=300):
            if event.queue_id not in watched:
                continue
            before = tracker.tasks[event.queue_id].status
            state = tracker.apply(event)
            if state is not None and state.status != before:
                store.update_task(event.queue_id, **state.record_fields())
    if waiting():
        log.warning("no interrupted from %s within %.0fs", waiting(), STOP_WAIT_S)


def _launch(
    commands: Sequence[Command],
    settings: Settings,
    producer: AIOKafkaProducer,
    launch: Launch,
    parallel: int,
    clock_ms: Callable[[], int] = now_ms,
    controls: dict[str, TaskControl] | None = None,
) -> list[asyncio.Task[None]]:
    if launch == "external":
        return []  # standalone loaders listening on queue-control carry the commands out
    gate = asyncio.Semaphore(parallel)
    # The step's loaders pool their shares: one governor for the step's whole share of the limit,
    # one per market (Binance counts spot and USD-M futures weight apart).
    governors: dict[str, WeightGovernor] = {}
    for c in commands:
        market = c.market or "spot"
        if market not in governors:
            limit = settings.weight_limit(market)
            governors[market] = WeightGovernor(limit, settings.exchange_weight_share, pool=market)

    async def one(command: Command) -> None:
        control = (controls or {}).get(command.queue_id)
        async with gate:
            try:
                governor = governors[command.market or "spot"]
                options = {"producer": producer, "governor": governor, "clock_ms": clock_ms}
                await run_task(command, settings, control=control, **options)
            except TaskStopped:
                log.info("task %s stopped", command.queue_id)
            except Exception as exc:  # noqa: BLE001 - reported on queue-events by the loader
                log.warning("task %s failed: %s", command.queue_id, exc)

    return [asyncio.create_task(one(c)) for c in commands]


async def _follow(
    follower: EventFollower,
    tracker: TaskTracker,
    queue_ids: list[str],
    store: Store,
    settings: Settings,
    on_progress: Callable[[TaskTracker], None] | None,
    empty_ranges: dict[str, list[tuple[int, int]]] | None = None,
) -> None:
    watched = set(queue_ids)
    started = last_event = time.monotonic()
    health = broker_monitor(settings.kafka_bootstrap_servers or "", down_after_s=settings.kafka_unavailable_s)
    while tracker.pending(queue_ids):
        health.check()  # a dead broker is one line within seconds, not a stall after TASK_STALL_S
        events = [e for e in await follower.poll(timeout_ms=300) if e.queue_id in watched]
        now = time.monotonic()
        for event in events:
            before = tracker.tasks[event.queue_id].status
            state = tracker.apply(event)
            if empty_ranges is not None and event.empty_ranges is not None:
                empty_ranges[event.queue_id] = [(int(a), int(b)) for a, b in event.empty_ranges]
            if state is not None and state.status != before:
                store.update_task(event.queue_id, **state.record_fields())
        if events:
            last_event = now
            if on_progress is not None:
                on_progress(tracker)
        if now - last_event > settings.task_stall_s:
            log.error("no telemetry for %.0fs: giving up on %s", now - last_event, tracker.pending(queue_ids))
            return
        if settings.task_timeout_s and now - started > settings.task_timeout_s:
            log.error("tasks not stored after %.0fs: %s", settings.task_timeout_s, tracker.pending(queue_ids))
            return
