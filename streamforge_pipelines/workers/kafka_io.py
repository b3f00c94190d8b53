"""Kafka plumbing shared by the workers: producer settings, the telemetry emitter, and how a
loader task that does not finish reports its end (:func:`task_outcome`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaProducer

from ..kafka_health import BrokerMonitor, BrokerUnavailable
from ..protocol import (
    Command,
    ErrorInfo,
    Event,
    ProtocolError,
    Status,
    make_producer_id,
    now_s,
    queue_id_suffix,
)
from .errors import WorkerError
from .observability import ERRORS

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Seconds a cancelled loader task may spend flushing its records and reporting ``interrupted``.
INTERRUPT_REPORT_S = 10.0


def make_producer(bootstrap_servers: str, **overrides: Any) -> AIOKafkaProducer:
    """A producer tuned for throughput; nothing is acknowledged before the broker has it."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "acks": "all",
        "linger_ms": 5,
        "max_batch_size": 1 << 20,
        "max_request_size": 4 << 20,
        "request_timeout_ms": 30_000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def stop_within(stopping: Awaitable[None], timeout_s: float | None) -> None:
    """Await a Kafka client's ``stop()``; with ``timeout_s``, at most that long.

    A producer's stop first delivers what it holds, and a consumer's leaves its group: against a
    broker that is gone both wait for their request timeouts (30 s and more). Callers that know the
    broker is down pass a bound: what is left could not be delivered anyway, and the records it
    belonged to are re-sent by whoever runs the task again (the store upserts by key).
    """
    if timeout_s is None:
        await stopping
        return
    try:
        await asyncio.wait_for(stopping, timeout_s)
    except TimeoutError:
        log.warning("a Kafka client did not stop within %.0fs (the broker is not answering)", timeout_s)


async def unless_broker_dies(work: Awaitable[_T], monitor: BrokerMonitor) -> _T:
    """Await ``work``, unless the broker stops answering first: then cancel it (briefly waiting for
    it to wind down) and raise :class:`~streamforge_pipelines.kafka_health.BrokerUnavailable`.

    For a one-shot task: its producer would otherwise wait out its request timeouts in silence."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()
            monitor.check()
    except BrokerUnavailable:
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        raise
    except asyncio.CancelledError:  # SIGTERM: the task reports `interrupted` (bounded) before we go
        task.cancel()
        await asyncio.wait({task}, timeout=INTERRUPT_REPORT_S + 1.0)
        raise
    finally:
        if not task.done():
            task.cancel()


class EventEmitter:
    """Sends one task's telemetry to ``queue-events``, keyed by ``queue_id`` (one ordered stream)."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        *,
        queue_id: str,
        producer_id: str,
        symbol: str | None = None,
        task_type: str | None = None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._base = {"queue_id": queue_id, "producer": producer_id, "symbol": symbol, "type": task_type}

    async def emit(self, status: Status, **fields: Any) -> Event:
        try:
            event = Event(status=status, timestamp=now_s(), **self._base, **fields)
        except ValueError as exc:  # a bug in the caller, never user input
            raise ProtocolError(f"event: {exc}") from exc
        await self._producer.send_and_wait(self._topic, event.encode(), key=event.queue_id.encode())
        log.info(
            "task %s %s",
            event.queue_id,
            status,
            extra={"queue_id": event.queue_id, "status": status, "records": event.records_written},
        )
        return event


class TaskFigures(Protocol):
    """What :func:`task_outcome` reads of a loader's result."""

    records: int
    requests: int

    def exchange_fields(self) -> dict[str, Any]: ...


@asynccontextmanager
async def task_outcome(
    producer: AIOKafkaProducer, events: EventEmitter, result: TaskFigures, worker: str
) -> AsyncIterator[None]:
    """Around a loader task: a cancellation (SIGTERM) is reported as ``interrupted`` after the
    records already sent are flushed; a :class:`~.errors.WorkerError` or ``ValueError`` as
    ``error`` with its type and one-line reason (and the exchange figures once a request was made).
    Either is re-raised, so nobody waits for a task that will never finish."""
    try:
        yield
    except asyncio.CancelledError:

        async def interrupted() -> None:
            try:
                async with asyncio.timeout(INTERRUPT_REPORT_S):
                    await producer.flush()
                    await events.emit(
                        "interrupted", records_written=result.records, message="stopped before the end"
                    )
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
