"""How a loader task talks to Kafka: its producer and telemetry emitter (:func:`task_channel`), and
how a task that does not finish reports its end (:func:`task_outcome`).

Worker plumbing over the Kafka client helpers of :mod:`streamforge_pipelines.kafka.io`: it counts
failures in the workers' metrics (:data:`~.observability.ERRORS`) and knows the workers' error tree
(:class:`~.errors.WorkerError`), so it stays in ``workers/`` and the ``kafka`` package stays below.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from ..kafka.io import INTERRUPT_REPORT_S, EventEmitter, make_producer
from ..protocol import Command, ErrorInfo, make_producer_id, queue_id_suffix
from .errors import TaskStopped, WorkerError
from .observability import ERRORS

log = logging.getLogger(__name__)


class TaskFigures(Protocol):
    """What :func:`task_outcome` reads of a loader's result."""

    records: int
    requests: int

    def exchange_fields(self) -> dict[str, Any]: ...


@asynccontextmanager
async def task_outcome(
    producer: AIOKafkaProducer, events: EventEmitter, result: TaskFigures, worker: str
) -> AsyncIterator[None]:
    """Around a loader task: a cancellation (SIGTERM) or a stop (:class:`~.errors.TaskStopped`, at a
    page boundary) is reported as ``interrupted`` after the records already sent are flushed; a
    :class:`~.errors.WorkerError` or ``ValueError`` as ``error`` with its type and one-line reason
    (and the exchange figures once a request was made). Each is re-raised, so nobody waits for a
    task that will never finish."""
    try:
        yield
    except (asyncio.CancelledError, TaskStopped) as exc:
        why = "stopped by a stop command" if isinstance(exc, TaskStopped) else "stopped before the end"

        async def interrupted() -> None:
            try:
                async with asyncio.timeout(INTERRUPT_REPORT_S):
                    await producer.flush()
                    await events.emit("interrupted", records_written=result.records, message=why)
            except TimeoutError:  # the broker is not taking anything: nobody would read the report
                log.warning("could not report the task interrupted within %.0fs", INTERRUPT_REPORT_S)

        await asyncio.shield(interrupted())
        raise
    except (WorkerError, ValueError) as exc:
        ERRORS.labels(worker, type(exc).__name__).inc()
        await events.emit(
            "error",
            records_written=result.records,
            message=str(exc),
            error=ErrorInfo(type=type(exc).__name__, detail=str(exc)),
            **(result.exchange_fields() if result.requests else {}),
        )
        raise


@asynccontextmanager
async def task_channel(
    producer: AIOKafkaProducer | None,
    bootstrap_servers: str,
    events_topic: str,
    command: Command,
    worker: str,
) -> AsyncIterator[tuple[AIOKafkaProducer, EventEmitter]]:
    """A loader task's producer (the one given, else its own, stopped at the end) and its telemetry
    emitter, whose ``producer`` id is ``<worker>__<the queue_id's suffix>``."""
    own = producer is None
    if producer is None:
        producer = make_producer(bootstrap_servers)
        await producer.start()
    events = EventEmitter(
        producer,
        events_topic,
        queue_id=command.queue_id,
        producer_id=make_producer_id(worker, queue_id_suffix(command.queue_id)),
        symbol=command.symbol,
        task_type=command.type,
    )
    try:
        yield producer, events
    finally:
        if own:
            await producer.stop()
