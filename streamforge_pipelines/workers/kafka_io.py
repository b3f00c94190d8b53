"""Kafka plumbing shared by the workers: producer settings and the telemetry emitter."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaProducer

from ..protocol import Event, ProtocolError, Status, now_s

log = logging.getLogger(__name__)


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
