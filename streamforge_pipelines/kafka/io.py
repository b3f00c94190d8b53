"""Kafka client plumbing: producer settings, bounded stops, a one-shot task raced against the
broker's health, and the telemetry emitter that writes ``queue-events``.

Below the workers: loaders, the connector, the dummy-service modes and the queue-manager use these;
this module imports only the kernel (:mod:`~streamforge_pipelines.protocol`) and its sibling
:mod:`.health`. How a *loader task* reports its end (``task_outcome``, ``task_channel``) is worker
plumbing and lives in :mod:`streamforge_pipelines.workers.task_io`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer

from ..protocol import Event, ProtocolError, Status, now_s
from .health import BrokerMonitor, BrokerUnavailable

__all__ = [
    "INTERRUPT_REPORT_S",
    "EventEmitter",
    "make_producer",
    "stop_within",
    "unless_broker_dies",
]

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
    it to wind down) and raise :class:`~streamforge_pipelines.kafka.health.BrokerUnavailable`.

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
