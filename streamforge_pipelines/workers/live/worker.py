"""The stream worker (``loader-ws-trades`` / ``loader-ws-candles`` / ``loader-ws-orderbook``): it
follows ``queue-control`` and runs the stream tasks addressed to it until they are stopped.

* ``start`` (a stream type, its ``symbols``): starts the task, or — same ``queue_id`` already
  running — changes its symbols live (SUBSCRIBE / UNSUBSCRIBE on the open connections);
* ``stop``: ends the task with that ``queue_id``: what is waiting is produced, the checkpoint
  written, ``finished`` reported; nothing is left running;
* ``ping``: the task answers with a heartbeat at once.

The worker is a member of the consumer group ``loader-ws``: replicas stand by and one of them takes
over the commands when the active one dies. A new group reads ``queue-control`` from its beginning
(a start sent before the worker joined is not lost; a start later stopped ends at once). Offsets are
committed as commands are read: a stream task is long-running, and what should run is reconciled by
the queue-manager's streams sensor, which sends ``start`` again for a task whose heartbeats stopped
(a worker killed); the restarted task resumes from its checkpoint and repairs the gap from REST.
SIGTERM/SIGINT stop every task cleanly (``finished``), then the worker exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer

from ...kafka import ensure_topics, make_producer, probe, stop_within
from ...kafka import monitor as broker_monitor
from ...protocol import LOADER_WS_TARGETS, Command, ProtocolError, decode_command, is_stream_type
from ...settings import Settings
from ..checkpoint import CheckpointStore
from ..observability import ERRORS
from .task import StreamTask

__all__ = ["STREAM_GROUP", "serve_streams"]

log = logging.getLogger(__name__)

#: Consumer group of the stream workers on ``queue-control``.
STREAM_GROUP = "loader-ws"
#: The group's session timeout: how long a replica that died keeps the commands from the others.
STREAM_SESSION_TIMEOUT_MS = 6000


async def serve_streams(
    settings: Settings,
    *,
    targets: Iterable[str] = LOADER_WS_TARGETS,
    stop: asyncio.Event | None = None,
    install_signals: bool = True,
) -> None:
    """Carry out the stream commands addressed to ``targets`` until SIGTERM/SIGINT (or ``stop``)."""
    stop = stop or asyncio.Event()
    wanted = frozenset(targets)
    if install_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    bootstrap = settings.kafka_bootstrap_servers or ""
    health = broker_monitor(bootstrap, down_after_s=settings.kafka_unavailable_s)
    probe(bootstrap)
    await ensure_topics(bootstrap, settings.topics(), configs=settings.topic_configs())
    checkpoints = await CheckpointStore.load(bootstrap, settings.topic_checkpoints)
    producer = make_producer(bootstrap)
    await producer.start()
    consumer = AIOKafkaConsumer(
        settings.topic_control,
        bootstrap_servers=bootstrap,
        group_id=STREAM_GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # a replica that died is noticed after 6 s, not aiokafka's 10: its commands (a restart of
        # the streams it ran) reach the replica that takes over sooner
        session_timeout_ms=STREAM_SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=STREAM_SESSION_TIMEOUT_MS // 4,
    )
    await consumer.start()
    log.info("stream worker on %s for %s (group %s)", settings.topic_control, sorted(wanted), STREAM_GROUP)
    tasks: dict[str, StreamTask] = {}
    running: dict[str, asyncio.Task[None]] = {}

    async def carry_out(command: Command) -> None:
        qid = command.queue_id
        if command.command == "stop":
            task = tasks.get(qid)
            if task is not None:
                task.stop()
            return
        if command.command == "ping":
            task = tasks.get(qid)
            if task is not None:
                await task.beat()
            return
        if qid in tasks and not running[qid].done():
            await tasks[qid].update(command)
            return
        try:  # a task taken over from a worker that died resumes from that worker's checkpoint
            await checkpoints.refresh(poll_ms=200)
        except Exception as exc:  # noqa: BLE001 - without it the task still runs, from the live edge
            log.warning("reading checkpoints before %s: %s", qid, exc)
        task = StreamTask(command, settings, producer, checkpoints=checkpoints)
        tasks[qid] = task
        running[qid] = asyncio.create_task(_guarded(task))

    try:
        while not stop.is_set():
            health.check()
            batch = await consumer.getmany(timeout_ms=300)
            for tp, records in batch.items():
                for rec in records:
                    try:
                        command = decode_command(rec.value or b"")
                    except ProtocolError as exc:
                        ERRORS.labels("loader-ws", "bad_command").inc()
                        log.error("rejected command at %s@%s: %s", tp.topic, rec.offset, exc)
                        continue
                    if command.target not in wanted:
                        continue
                    if command.command == "start" and not is_stream_type(command.type):
                        continue
                    await carry_out(command)
                if records:
                    await consumer.commit({tp: records[-1].offset + 1})
            for qid in [q for q, t in running.items() if t.done()]:
                del running[qid], tasks[qid]
    finally:
        for task in tasks.values():
            task.stop()
        if health.down:
            await stop_within(asyncio.gather(*running.values(), return_exceptions=True), 1.0)
            await stop_within(consumer.stop(), 0.5)
            await stop_within(producer.stop(), 0.5)
        else:
            await asyncio.gather(*running.values(), return_exceptions=True)
            await consumer.stop()
            await producer.stop()


async def _guarded(task: StreamTask) -> None:
    """Run a task; a failure is reported as its ``error`` event (one line), never lost."""
    try:
        await task.run()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("stream %s failed", task.queue_id)
        try:
            await task.events.emit("error", message=f"{type(exc).__name__}: {exc}", stream=task.stats)
        except Exception:  # noqa: BLE001 - the broker is gone too: the log line stands
            pass
