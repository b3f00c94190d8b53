"""impersonate: ``queue-events`` telemetry as a named worker would send it, by script.

The events go through :class:`~streamforge_pipelines.kafka.io.EventEmitter`, the emitter the
real loaders use, with the producer id a real worker would have (``<worker>__<the queue_id's 6
hex>``), so :class:`~streamforge_pipelines.queue_manager.tracking.TaskTracker`, the asset step and the
``queue_events_sensor`` treat them exactly as real ones. Behaviours:

* ``progress`` — ``started``, ``loading`` x ``steps`` with growing ``records_written``, ``finished``
  with the count per partition;
* ``finish`` — ``started`` then ``finished`` straight away;
* ``error`` — ``started``, one ``loading``, then ``error`` with an ``ErrorInfo`` (type, detail);
* ``silent`` — ``started``, one ``loading``, then nothing (for stall detection; ``hold_s`` keeps
  the process alive and quiet that long);
* ``interrupt`` — ``started``, one ``loading``, then ``interrupted``.

A loader's ``finished`` does not complete a task: the connector must also acknowledge the end
marker of every partition. With ``connector_acks`` (the default) ``progress`` and ``finish`` also
send those acknowledgements, as ``arango-connector__<6 hex>``, so the task becomes complete without
data; without it the task stays ``finished`` until a real connector acknowledges real markers.
A stop (SIGTERM) during the script ends it with ``interrupted``, as a real loader does; except in
the silent phase of ``silent``, which stays silent (it plays a worker that vanished).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ...kafka import EventEmitter, ensure_topics, make_producer
from ...protocol import (
    CONNECTOR,
    LOADER_CANDLES,
    ErrorInfo,
    PartitionCount,
    Status,
    make_producer_id,
    make_queue_id,
    queue_id_suffix,
)
from ...settings import Settings
from ..observability import RECORDS
from .health import DUMMY, ModeStatus, bootstrap_of, run_mode

log = logging.getLogger(__name__)

MODE = "impersonate"
Behaviour = Literal["progress", "finish", "error", "silent", "interrupt"]
BEHAVIOURS: tuple[str, ...] = ("progress", "finish", "error", "silent", "interrupt")


@dataclass
class ImpersonateReport:
    """The task impersonated and the statuses sent, in order (connector acks as ``ack:<p>``)."""

    behaviour: str
    queue_id: str
    producer: str
    sent: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return True

    def as_dict(self) -> dict[str, Any]:
        return {
            "behaviour": self.behaviour,
            "queue_id": self.queue_id,
            "producer": self.producer,
            "events": len(self.sent),
            "sent": self.sent,
            "interrupted": self.interrupted,
        }


def split_records(records: int, partitions: int) -> list[PartitionCount]:
    """``records`` spread over ``partitions`` as a keyed producer would roughly spread them."""
    base, extra = divmod(records, partitions)
    return [PartitionCount(partition=p, records=base + (1 if p < extra else 0)) for p in range(partitions)]


async def impersonate_worker(
    settings: Settings,
    behaviour: Behaviour,
    *,
    queue_id: str | None = None,
    symbol: str = "BTCUSDT",
    task_type: str | None = None,
    worker: str = LOADER_CANDLES,
    records: int = 1_000,
    partitions: int | None = None,
    steps: int = 3,
    step_s: float = 0.0,
    hold_s: float = 0.0,
    connector_acks: bool = True,
    error_type: str = "ExchangeUnavailable",
    error_detail: str = "dummy-service: simulated failure",
    stop: asyncio.Event | None = None,
    status: ModeStatus | None = None,
) -> ImpersonateReport:
    """Send ``behaviour``'s events for one task to ``queue-events``; returns what was sent."""
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r} (expected one of {', '.join(BEHAVIOURS)})")
    if records < 0 or steps < 0 or step_s < 0 or hold_s < 0:
        raise ValueError("records, steps, step_s and hold_s must be >= 0")
    bootstrap = bootstrap_of(settings)
    symbol = symbol.upper()
    task_type = task_type or f"api_candles_{settings.interval}"
    queue_id = queue_id or make_queue_id(symbol, task_type, datetime.now(UTC).date())
    suffix = queue_id_suffix(queue_id)
    counts = split_records(records, partitions or settings.data_partitions)
    stop = stop or asyncio.Event()
    status = status or ModeStatus(MODE)
    report = ImpersonateReport(behaviour, queue_id, make_producer_id(worker, suffix))

    await ensure_topics(bootstrap, {settings.topic_events: 1})
    producer = make_producer(bootstrap, linger_ms=0)
    await producer.start()
    loader = EventEmitter(
        producer,
        settings.topic_events,
        queue_id=queue_id,
        producer_id=report.producer,
        symbol=symbol,
        task_type=task_type,
    )

    async def emit(emitter: EventEmitter, status_: Status, label: str | None = None, **fields: Any) -> None:
        await emitter.emit(status_, **fields)
        report.sent.append(label or status_)
        status.count(f"events_{status_}")
        RECORDS.labels(DUMMY, "impersonated_event").inc()

    async def pause(seconds: float) -> bool:
        """Wait ``seconds`` (0 = not at all); True if stopped meanwhile."""
        if seconds > 0:
            try:
                await asyncio.wait_for(stop.wait(), seconds)
            except TimeoutError:
                pass
        return stop.is_set()

    async def loading(n_steps: int) -> bool:
        for i in range(1, n_steps + 1):
            if await pause(step_s):
                return True
            await emit(loader, "loading", records_written=records * i // (n_steps + 1))
        return await pause(step_s)

    try:
        await emit(loader, "started", message=f"dummy-service impersonating {worker}")
        n_steps = steps if behaviour == "progress" else (0 if behaviour == "finish" else 1)
        if await loading(n_steps):
            report.interrupted = True
        elif behaviour in ("progress", "finish"):
            await emit(loader, "finished", records_written=records, finished=True, partitions=counts)
            if connector_acks:
                connector = EventEmitter(
                    producer,
                    settings.topic_events,
                    queue_id=queue_id,
                    producer_id=make_producer_id(CONNECTOR, suffix),
                    symbol=symbol,
                    task_type=task_type,
                )
                for part in counts:
                    await emit(
                        connector,
                        "finished",
                        f"ack:{part.partition}",
                        records_written=records,
                        finished=True,
                        partitions=[part],
                        message=f"end marker stored on partition {part.partition} (impersonated)",
                    )
        elif behaviour == "error":
            await emit(
                loader,
                "error",
                records_written=records // (n_steps + 1),
                message=error_detail,
                error=ErrorInfo(type=error_type, detail=error_detail),
            )
        elif behaviour == "interrupt":
            await emit(loader, "interrupted", message="stopped before the end (impersonated)")
        elif behaviour == "silent":
            log.info("impersonate: %s goes silent", queue_id)
            status.status = "silent"
            await pause(hold_s)
        if report.interrupted:
            await emit(loader, "interrupted", message="dummy-service stopped")
    finally:
        await producer.stop()
    log.info("impersonate done: %s", report.as_dict())
    return report


def main(
    settings: Settings,
    behaviour: Behaviour,
    *,
    queue_id: str | None = None,
    symbol: str = "BTCUSDT",
    task_type: str | None = None,
    worker: str = LOADER_CANDLES,
    records: int = 1_000,
    partitions: int | None = None,
    steps: int = 3,
    step_s: float = 0.5,
    hold_s: float = 0.0,
    connector_acks: bool = True,
    host: str = "127.0.0.1",
    port: int = 0,
) -> int:
    """``streamforge dummy impersonate BEHAVIOUR``: prints what was sent; exit 0."""
    bootstrap_of(settings)

    async def run(stop: asyncio.Event, status: ModeStatus) -> ImpersonateReport:
        return await impersonate_worker(
            settings,
            behaviour,
            queue_id=queue_id,
            symbol=symbol,
            task_type=task_type,
            worker=worker,
            records=records,
            partitions=partitions,
            steps=steps,
            step_s=step_s,
            hold_s=hold_s,
            connector_acks=connector_acks,
            stop=stop,
            status=status,
        )

    return run_mode(MODE, run, host=host, port=port, log_level=settings.log_level)
