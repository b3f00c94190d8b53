"""loader-producer: the universal entry point for start commands.

:func:`.dispatcher.run_task` (the one dispatcher, which the queue-manager's in-process path uses too)
maps a command's ``type`` to its loader (``api_candles_<interval>`` → loader-api-candles,
``api_agg_trades`` / ``api_trades`` → loader-api-trades). ``serve_loader``
is the standalone worker: a consumer-group member on ``queue-control`` (group ``KAFKA_LOADER_GROUP``,
``loader-producer`` unless set) that carries out the start commands addressed to it, several at a
time, and commits a command's offset only once it and every command before it have ended
(at-least-once: a crash re-runs the unfinished tasks, whose records are idempotent). It reads the
checkpoint topic (``KAFKA_TOPIC_CHECKPOINTS``, :mod:`.checkpoint`) at start and catches up before
each task, so a re-run task continues from its checkpoint instead of refetching what was done; once
a command's offset is committed, its task's checkpoint is deleted.

**stop** and **ping** (the same consumer group, so they reach the replica that has the task: a
command is keyed by its ``queue_id``, and a task's start and stop share one partition):

* ``stop`` for a task this replica runs ends it at its next page boundary
  (:class:`~.loader_task.TaskControl`): the page in flight is produced, what was sent is flushed,
  ``interrupted`` is reported with the records so far, and the start command's offset is
  committed as done (no replica takes the task up again), but its checkpoint is kept, so the same
  command sent again resumes from it.
  A task still waiting for a free slot ends at once (``interrupted``, 0 records). A task that does
  not end within :data:`STOP_GRACE_S` (a page fetch that does not return) is cancelled, which
  reports ``interrupted`` too.
* ``ping`` for a task this replica runs or holds is answered at once by a ``queue-events`` event of
  the task with ``message="pong"``: status ``pending`` (waiting for a slot) or ``loading`` (running),
  ``records_written`` so far. A ping for a task this replica does not hold gets no answer (another
  replica may hold it; a finished task already said so on ``queue-events``).
* Either, addressed to the loaders for a task no replica knows, is committed and forgotten.

Every message is checked by :class:`~streamforge_pipelines.protocol.Command`, the one validator of
commands (what it accepts, a loader can run); a refused message is logged in one line and, when it
is a start command addressed to a loader with a usable ``queue_id``, reported as that task's
``error`` event (:func:`refused_start`), so nobody waits for a task that will never run.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

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
from .errors import TaskInvalid, TaskStopped
from .loader_task import TaskControl
from .observability import ERRORS

log = logging.getLogger(__name__)

TARGETS = frozenset({LOADER_PRODUCER, LOADER_CANDLES, LOADER_TRADES})
#: Seconds a stopped task may take to reach its next page boundary before it is cancelled.
STOP_GRACE_S = 15.0
#: The ``message`` of the event that answers a ``ping``.
PONG = "pong"


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


def task_emitter(producer: AIOKafkaProducer, settings: Settings, command: Command) -> EventEmitter:
    """The loader-producer's own ``queue-events`` emitter for the task of ``command`` (the events it
    sends for a task it did not hand to a loader: a refusal, a pong)."""
    return EventEmitter(
        producer,
        settings.topic_events,
        queue_id=command.queue_id,
        producer_id=make_producer_id(LOADER_PRODUCER, queue_id_suffix(command.queue_id)),
        symbol=command.symbol,
        task_type=command.type,
    )


async def answer_ping(
    producer: AIOKafkaProducer, settings: Settings, start: Command, control: TaskControl
) -> None:
    """The answer to a ``ping`` for a task this replica holds: its status and records so far."""
    status = "pending" if control.status == "pending" else "loading"
    try:
        await task_emitter(producer, settings, start).emit(
            status, message=PONG, records_written=control.records
        )
    except Exception as exc:  # noqa: BLE001 - a ping unanswered is the pinger's to notice
        log.warning("answering the ping of %s: %s", start.queue_id, exc)


async def take_slot(gate: asyncio.Semaphore, control: TaskControl) -> bool:
    """Wait for a free slot of ``gate``, or for the task to be stopped (reporting that takes no
    slot). True when a slot was taken: the caller releases it."""
    if control.stopped:
        return False
    acquire = asyncio.ensure_future(gate.acquire())
    stopping = asyncio.ensure_future(control.stopping.wait())
    try:
        await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        if acquire.done() and not acquire.cancelled():
            gate.release()
        acquire.cancel()
        raise
    finally:
        stopping.cancel()
    if acquire.done():
        return True
    acquire.cancel()
    return False


async def serve_loader(settings: Settings, *, parallel: int = 4, stop: asyncio.Event | None = None) -> None:
    """Consume ``queue-control`` until SIGTERM/SIGINT (or ``stop``); running tasks report ``interrupted``."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bootstrap = settings.kafka_bootstrap_servers or ""
    health = broker_monitor(bootstrap, down_after_s=settings.kafka_unavailable_s)
    probe(bootstrap)  # a broker that is not there is one line now, not a client's retries
    session_ms = int(settings.loader_session_timeout_s * 1000)
    consumer = AIOKafkaConsumer(
        settings.topic_control,
        bootstrap_servers=bootstrap,
        # KAFKA_LOADER_GROUP: a group shared with loaders of other control topics (another deployment
        # on the broker) would make every join wait for all of them to rejoin
        group_id=settings.loader_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # LOADER_SESSION_TIMEOUT_S: how soon a replica that died (SIGKILL, a lost pod) gives its
        # commands to the others; a join also waits about half of it for the members to gather
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=session_ms // 4,
    )
    # The checkpoint topic, compacted, if nobody created it yet; then its checkpoints (resume).
    await ensure_topics(bootstrap, {settings.topic_checkpoints: 1}, configs=settings.topic_configs())
    checkpoints = await CheckpointStore.load(bootstrap, settings.topic_checkpoints)
    producer = make_producer(bootstrap)
    await producer.start()
    await producer.partitions_for(settings.topic_checkpoints)  # its metadata now, not at the 1st put
    await consumer.start()
    log.info("loader-producer serving %s (group %s)", settings.topic_control, settings.loader_group)
    gate = asyncio.Semaphore(parallel)
    running: dict[tuple[TopicPartition, int], asyncio.Task[None]] = {}
    queue_ids: dict[tuple[TopicPartition, int], str] = {}
    #: The tasks this replica holds (running or waiting for a slot): their start and control.
    held: dict[str, tuple[Command, TaskControl, asyncio.Task[None]]] = {}
    #: Stopped tasks not ended yet -> when they are cancelled instead (monotonic seconds).
    stop_deadlines: dict[str, float] = {}
    #: Tasks ended by a stop: their checkpoint stays when their command is committed.
    stopped: set[str] = set()

    async def forget(queue_id: str | None) -> None:
        """Its command is committed, so the task never runs again: drop its checkpoint (tombstone);
        a stopped task's stays, so the same command sent again resumes from it."""
        if queue_id is not None and queue_id in stopped:
            stopped.discard(queue_id)
            return
        if queue_id is not None and checkpoints.get(queue_id) is not None:
            try:
                await checkpoints.delete(producer, queue_id)
            except Exception as exc:  # noqa: BLE001 - a stale checkpoint costs only space
                log.warning("deleting the checkpoint of %s: %s", queue_id, exc)

    async def carry_out(command: Command, control: TaskControl) -> None:
        try:
            slot = await take_slot(gate, control)
            try:
                await run_held(command, control)
            finally:
                if slot:
                    gate.release()
        finally:
            if command.queue_id in held and held[command.queue_id][1] is control:
                del held[command.queue_id]
                stop_deadlines.pop(command.queue_id, None)

    async def run_held(command: Command, control: TaskControl) -> None:
        if not control.stopped:
            try:  # checkpoints a replica wrote since (a task taken over from one that died)
                await checkpoints.refresh(poll_ms=200)
            except Exception as exc:  # noqa: BLE001 - resuming saves work; without it the task still runs
                log.warning("reading checkpoints before %s: %s", command.queue_id, exc)
        try:
            await run_task(command, settings, producer=producer, checkpoints=checkpoints, control=control)
        except TaskStopped:
            stopped.add(command.queue_id)
            log.info("task %s stopped after %d records", command.queue_id, control.records)
        except asyncio.CancelledError:
            if command.queue_id not in stop_deadlines:
                raise  # SIGTERM: the command stays uncommitted, the next loader resumes it
            stopped.add(command.queue_id)  # stopped, then cancelled after the grace: done, too
            log.warning("task %s stopped by cancellation after %.0fs", command.queue_id, STOP_GRACE_S)
        except TaskInvalid as exc:  # no loader took it: say so, or the task waits forever
            log.error("%s", exc, extra={"queue_id": command.queue_id})
            await task_emitter(producer, settings, command).emit(
                "error", message=str(exc), error=ErrorInfo(type="TaskInvalid", detail=str(exc))
            )
        except Exception as exc:  # noqa: BLE001 - the loader reported it on queue-events
            log.warning("task %s ended with %s", command.queue_id, exc)

    async def control_task(command: Command) -> None:
        """A ``stop`` or ``ping`` for one of the tasks this replica holds (else: not ours, ignored)."""
        entry = held.get(command.queue_id)
        if entry is None:
            return
        start, control, _ = entry
        if command.command == "ping":
            await answer_ping(producer, settings, start, control)
        elif not control.stopped:
            log.info("stop for %s (%s)", command.queue_id, control.status)
            control.stop()
            stop_deadlines[command.queue_id] = time.monotonic() + STOP_GRACE_S

    def cancel_overdue() -> None:
        now = time.monotonic()
        for queue_id, deadline in list(stop_deadlines.items()):
            entry = held.get(queue_id)
            if entry is not None and now >= deadline and not entry[2].done():
                entry[2].cancel()

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
                        if command.target in TARGETS:  # stop, ping: at once, in order with the starts
                            await control_task(command)
                        running[(tp, rec.offset)] = asyncio.create_task(asyncio.sleep(0))
                        continue
                    control = TaskControl()
                    task = asyncio.create_task(carry_out(command, control))
                    held[command.queue_id] = (command, control, task)
                    running[(tp, rec.offset)] = task
                    queue_ids[(tp, rec.offset)] = command.queue_id
            cancel_overdue()
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
