"""loader-producer: the universal entry point for start commands.

:func:`.dispatcher.run_task` (the one dispatcher, which the queue-manager's in-process path uses too)
maps a command's ``type`` to its loader (``api_candles_<interval>`` → loader-api-candles,
``api_agg_trades`` / ``api_trades`` → loader-api-trades). ``serve_loader``
is the standalone worker: a consumer-group member on ``queue-control`` that carries out the start
commands addressed to it, several at a time, and commits a command's offset only once it and every
command before it have ended (at-least-once: a crash re-runs the unfinished tasks, whose records
are idempotent). It reads the checkpoint topic (``KAFKA_TOPIC_CHECKPOINTS``, :mod:`.checkpoint`)
at start and catches up before each task, so a re-run task continues from its checkpoint instead
of refetching what was done; once a command's offset is committed, its task's checkpoint is deleted.

Every message is checked by :class:`~streamforge_pipelines.protocol.Command`, the one validator of
commands (what it accepts, a loader can run); a refused message is logged in one line and, when it
is a start command addressed to a loader with a usable ``queue_id``, reported as that task's
``error`` event (:func:`refused_start`), so nobody waits for a task that will never run.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ..kafka import EventEmitter, ensure_topics, make_producer, probe, stop_within
from ..kafka import monitor as broker_monitor
from ..protocol import (
    LOADER_CANDLES,
    LOADER_PRODUCER,
    LOADER_TRADES,
    MAX_ID_CHARS,
    Command,
    ErrorInfo,
    ProtocolError,
    decode_command,
    make_producer_id,
    queue_id_suffix,
    task_types,
)
from ..settings import Settings
from .checkpoint import CheckpointStore
from .dispatcher import run_task
from .errors import TaskInvalid
from .observability import ERRORS

log = logging.getLogger(__name__)

TARGETS = frozenset({LOADER_PRODUCER, LOADER_CANDLES, LOADER_TRADES})


def refused_start(raw: bytes) -> tuple[str, str | None, str | None] | None:
    """``(queue_id, symbol, type)`` of a refused message that is nevertheless a start command addressed
    to a loader with a usable ``queue_id``, so the refusal can be reported as that task's ``error``
    event; None for anything else (not JSON, another worker's, no queue_id): those are only logged."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("command") != "start" or value.get("target") not in TARGETS:
        return None
    queue_id, symbol, task_type = value.get("queue_id"), value.get("symbol"), value.get("type")
    if not isinstance(queue_id, str) or not 0 < len(queue_id) <= MAX_ID_CHARS:
        return None
    symbol = symbol if isinstance(symbol, str) and symbol.isalnum() and len(symbol) <= 20 else None
    return queue_id, symbol, task_type if task_type in task_types() else None


async def report_refused(
    producer: AIOKafkaProducer, settings: Settings, task: tuple[str, str | None, str | None], reason: str
) -> None:
    """The ``error`` event of a start command the validator refused (see :func:`refused_start`)."""
    queue_id, symbol, task_type = task
    try:
        await EventEmitter(
            producer,
            settings.topic_events,
            queue_id=queue_id,
            producer_id=make_producer_id(LOADER_PRODUCER, queue_id_suffix(queue_id)),
            symbol=symbol,
            task_type=task_type,
        ).emit("error", message=reason, error=ErrorInfo(type="CommandInvalid", detail=reason))
    except Exception as exc:  # noqa: BLE001 - the refusal is logged already; the worker goes on
        log.warning("reporting the refused command %s: %s", queue_id, exc)


async def serve_loader(settings: Settings, *, parallel: int = 4, stop: asyncio.Event | None = None) -> None:
    """Consume ``queue-control`` until SIGTERM/SIGINT (or ``stop``); running tasks report ``interrupted``."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bootstrap = settings.kafka_bootstrap_servers or ""
    health = broker_monitor(bootstrap, down_after_s=settings.kafka_unavailable_s)
    probe(bootstrap)  # a broker that is not there is one line now, not a client's retries
    consumer = AIOKafkaConsumer(
        settings.topic_control,
        bootstrap_servers=bootstrap,
        group_id=LOADER_PRODUCER,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    # The checkpoint topic, compacted, if nobody created it yet; then its checkpoints (resume).
    await ensure_topics(bootstrap, {settings.topic_checkpoints: 1}, configs=settings.topic_configs())
    checkpoints = await CheckpointStore.load(bootstrap, settings.topic_checkpoints)
    producer = make_producer(bootstrap)
    await producer.start()
    await producer.partitions_for(settings.topic_checkpoints)  # its metadata now, not at the 1st put
    await consumer.start()
    log.info("loader-producer serving %s (group %s)", settings.topic_control, LOADER_PRODUCER)
    gate = asyncio.Semaphore(parallel)
    running: dict[tuple[TopicPartition, int], asyncio.Task[None]] = {}
    queue_ids: dict[tuple[TopicPartition, int], str] = {}

    async def forget(queue_id: str | None) -> None:
        """Its command is committed, so the task never runs again: drop its checkpoint (tombstone)."""
        if queue_id is not None and checkpoints.get(queue_id) is not None:
            try:
                await checkpoints.delete(producer, queue_id)
            except Exception as exc:  # noqa: BLE001 - a stale checkpoint costs only space
                log.warning("deleting the checkpoint of %s: %s", queue_id, exc)

    async def carry_out(command: Command) -> None:
        async with gate:
            try:  # checkpoints a replica wrote since (a task taken over from one that died)
                await checkpoints.refresh(poll_ms=200)
            except Exception as exc:  # noqa: BLE001 - resuming saves work; without it the task still runs
                log.warning("reading checkpoints before %s: %s", command.queue_id, exc)
            try:
                await run_task(command, settings, producer=producer, checkpoints=checkpoints)
            except TaskInvalid as exc:  # no loader took it: say so, or the task waits forever
                log.error("%s", exc, extra={"queue_id": command.queue_id})
                await EventEmitter(
                    producer,
                    settings.topic_events,
                    queue_id=command.queue_id,
                    producer_id=make_producer_id(LOADER_PRODUCER, queue_id_suffix(command.queue_id)),
                    symbol=command.symbol,
                    task_type=command.type,
                ).emit("error", message=str(exc), error=ErrorInfo(type="TaskInvalid", detail=str(exc)))
            except Exception as exc:  # noqa: BLE001 - the loader reported it on queue-events
                log.warning("task %s ended with %s", command.queue_id, exc)

    async def commit_done() -> None:
        for tp in {tp for tp, _ in running}:
            offsets = sorted(o for p, o in running if p == tp)
            done = [o for o in offsets if running[(tp, o)].done()]
            first_open = next((o for o in offsets if not running[(tp, o)].done()), None)
            if done:
                upto = first_open if first_open is not None else done[-1] + 1
                await consumer.commit({tp: upto})
                for o in done:
                    if o < upto:
                        del running[(tp, o)]
                        await forget(queue_ids.pop((tp, o), None))

    try:
        while not stop.is_set():
            health.check()  # the broker gone: stop with one line (commands stay uncommitted)
            batch = await consumer.getmany(timeout_ms=300)
            for tp, records in batch.items():
                for rec in records:
                    try:
                        command = decode_command(rec.value or b"")
                    except ProtocolError as exc:
                        ERRORS.labels(LOADER_PRODUCER, "bad_command").inc()
                        log.error(
                            "rejected command at %s[%s]@%s: %s", tp.topic, tp.partition, rec.offset, exc
                        )
                        refused = refused_start(rec.value or b"")
                        running[(tp, rec.offset)] = asyncio.create_task(
                            asyncio.sleep(0)
                            if refused is None
                            else report_refused(producer, settings, refused, str(exc))
                        )
                        continue
                    if command.target not in TARGETS or command.command != "start":
                        running[(tp, rec.offset)] = asyncio.create_task(asyncio.sleep(0))
                        continue
                    running[(tp, rec.offset)] = asyncio.create_task(carry_out(command))
                    queue_ids[(tp, rec.offset)] = command.queue_id
            await commit_done()
    finally:
        for task in running.values():
            task.cancel()
        if health.down:  # nothing can be flushed, reported or handed back to a broker that is gone
            if running:
                await asyncio.wait(running.values(), timeout=0.5)
            await stop_within(consumer.stop(), 0.5)
            await stop_within(producer.stop(), 0.5)
        else:
            await asyncio.gather(*running.values(), return_exceptions=True)
            await consumer.stop()
            await producer.stop()
