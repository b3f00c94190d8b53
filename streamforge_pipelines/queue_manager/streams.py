"""Live streams, the queue-manager's side: start and stop them, and keep what is wanted.

A live stream is a stream task (``ws_agg_trades``, ``ws_trades``, ``ws_candles_<interval>``,
``ws_orderbook``) that a stream worker (``streamforge worker streams``) runs until it is stopped. It
is addressed by its ``queue_id``; :func:`default_queue_id` makes one from the type and the market
(``live-ws_agg_trades-spot``), so a later stop, a second start (new symbols: the worker subscribes
and unsubscribes live) and the streams sensor's restarts all address the same stream.

* :func:`stream_request` checks what a user asked for (one line naming the field when it is wrong);
  :func:`stream_commands` makes it the ``queue-control`` commands: ``start`` followed by a ``ping``
  (the task then answers with a heartbeat at once, also when it was already running), or ``stop``;
* :func:`want` records the **desired state**, before the command is sent: a stream task record in
  the store's ``tasks`` collection (one per ``queue_id``). Its ``status`` is :data:`RUNNING` or
  :data:`STOPPED`, ``symbol`` the symbols joined by commas, ``time_range`` empty (a stream has
  none), ``run_id`` the Dagster run that set it, and ``message`` the start command as JSON: what the
  streams sensor sends again when the stream's worker died. The ``live_streams`` job is the one
  writer of these records (the sensor reads them);
* :func:`command_and_wait` publishes the commands and waits, bounded, for the worker's answer on
  ``queue-events``: ``started`` (or a heartbeat with the requested symbols) for a start, ``finished``
  for a stop, ``error`` is a failure with the worker's own line.

No Dagster here: the ``live_streams`` job (``assets/live.py``) and the streams sensor call it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..kafka import make_producer, stop_within
from ..protocol import (
    BOOK_MARKETS,
    Command,
    Event,
    ProtocolError,
    decode_command,
    excerpt,
    is_stream_type,
    stream_target,
    ws_task_types,
)
from ..settings import Settings
from ..store import Store, TaskRecord
from .telemetry import EventFollower

__all__ = [
    "RUNNING",
    "STOPPED",
    "NoAnswer",
    "StreamFailed",
    "StreamRequest",
    "WantedStream",
    "command_and_wait",
    "default_queue_id",
    "known_queue_id",
    "send_commands",
    "stream_commands",
    "stream_request",
    "want",
    "wanted_streams",
]

#: Desired states of a stream task record.
RUNNING = "running"
STOPPED = "stopped"

Action = Literal["start", "stop"]


class NoAnswer(RuntimeError):
    """No stream worker answered a command within the wait (one line)."""


class StreamFailed(RuntimeError):
    """The stream worker reported the task's ``error`` (one line, the worker's)."""


def default_queue_id(task_type: str, market: str) -> str:
    """The queue_id of the stream of ``task_type`` on ``market``: ``live-ws_agg_trades-spot``."""
    return f"live-{task_type}-{market}"


@dataclass(frozen=True)
class StreamRequest:
    """A checked start or stop of one stream."""

    action: Action
    queue_id: str
    type: str
    market: str
    symbols: tuple[str, ...]

    @property
    def target(self) -> str:
        return stream_target(self.type)


def stream_request(
    action: str,
    task_type: str,
    symbols: Sequence[str],
    market: str,
    queue_id: str,
    *,
    universe: Sequence[str],
    known: TaskRecord | None = None,
) -> StreamRequest:
    """What a user asked for, checked: a :class:`ValueError` (one line naming the field) if wrong.

    ``symbols`` empty = ``universe`` (for a stop: the symbols on record); ``queue_id`` empty =
    :func:`default_queue_id`. ``known``: the record of the stream (:func:`known_queue_id` names it);
    a stop may name only the ``queue_id`` of a stream on record: its type comes from the record."""
    if action not in ("start", "stop"):
        raise ValueError(f"action: expected start or stop, got {excerpt(action)}")
    if market not in BOOK_MARKETS:
        raise ValueError(f"market: expected one of {', '.join(BOOK_MARKETS)}, got {excerpt(market)}")
    if not task_type and action == "stop" and known is not None and is_stream_type(known.type):
        task_type = known.type
    if task_type not in ws_task_types():
        raise ValueError(
            "type: expected ws_agg_trades, ws_trades, ws_candles_<interval> or ws_orderbook, "
            f"got {excerpt(task_type)}"
        )
    wanted = tuple(s.strip().upper() for s in symbols if s.strip())
    if not wanted and action == "stop" and known is not None and known.symbol:
        wanted = tuple(known.symbol.split(","))
    wanted = wanted or tuple(universe)
    request = StreamRequest(
        action=action,  # type: ignore[arg-type]  # checked above
        queue_id=queue_id.strip() or default_queue_id(task_type, market),
        type=task_type,
        market=market,
        symbols=wanted,
    )
    stream_commands(request)  # the command validator's verdict, before anything is recorded
    return request


def known_queue_id(task_type: str, market: str, queue_id: str) -> str:
    """The queue_id a request addresses, for looking its record up ('' when it cannot tell)."""
    if queue_id.strip():
        return queue_id.strip()
    return default_queue_id(task_type, market) if task_type else ""


def stream_commands(request: StreamRequest) -> list[Command]:
    """The ``queue-control`` commands of a request; :class:`ValueError` (one line) if the command
    validator refuses them (a bad symbol, USD-M trades, ...)."""
    base = {"queue_id": request.queue_id, "target": request.target, "timestamp": time.time()}
    try:
        if request.action == "stop":
            return [decode_command({"command": "stop", **base})]
        start = decode_command(
            {
                "command": "start",
                **base,
                "type": request.type,
                "symbols": list(request.symbols),
                "market": request.market,
            }
        )
        return [start, decode_command({"command": "ping", **base})]
    except ProtocolError as exc:
        raise ValueError(str(exc)) from None


# ---- the desired state ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WantedStream:
    """A stream task record read back: what the ``live_streams`` job last asked of a stream."""

    queue_id: str
    type: str
    market: str
    symbols: tuple[str, ...]
    running: bool
    #: When the job last set it (epoch seconds): a sign of life for the watch's grace period.
    since: float
    created_at: float
    #: The start command a restart sends again (None when the record holds none).
    start: Command | None

    @classmethod
    def of(cls, record: TaskRecord) -> WantedStream | None:
        """The stream a task record describes, or None for a load's task record."""
        if not is_stream_type(record.type) or record.status not in (RUNNING, STOPPED):
            return None
        start: Command | None = None
        if record.message:
            try:
                start = decode_command(record.message)
            except ProtocolError:
                start = None
        return cls(
            queue_id=record.queue_id,
            type=record.type,
            market=(start.market if start is not None else None) or "spot",
            symbols=tuple(s for s in record.symbol.split(",") if s),
            running=record.status == RUNNING,
            since=record.updated_at,
            created_at=record.created_at,
            start=start,
        )


def want(store: Store, request: StreamRequest, commands: Sequence[Command], run_id: str | None) -> TaskRecord:
    """Record the desired state of the request's stream (before its commands are sent), keeping the
    record's creation time and, for a stop, the start command a later restart would need."""
    known = store.get_task(request.queue_id)
    start = next((c for c in commands if c.command == "start"), None)
    message = start.encode().decode() if start is not None else (known.message if known else None)
    record = TaskRecord(
        queue_id=request.queue_id,
        symbol=",".join(request.symbols),
        type=request.type,
        time_range="",
        status=RUNNING if request.action == "start" else STOPPED,
        run_id=run_id,
        message=message,
    )
    if known is not None:
        record.created_at = known.created_at
    store.put_task(record)
    return record


def wanted_streams(store: Store) -> list[WantedStream]:
    """Every stream on record, running or stopped (two indexed queries, not every task record)."""
    records = [*store.list_tasks(status=RUNNING), *store.list_tasks(status=STOPPED)]
    return [w for r in records if (w := WantedStream.of(r)) is not None]


# ---- sending and waiting --------------------------------------------------------------------------


async def send_commands(settings: Settings, commands: Sequence[Command]) -> None:
    """Publish ``commands`` on ``queue-control`` (keyed by queue_id) and wait for the acks."""
    producer = make_producer(settings.kafka_bootstrap_servers or "")
    await producer.start()
    try:
        sent = [
            await producer.send(settings.topic_control, c.encode(), key=c.queue_id.encode()) for c in commands
        ]
        await asyncio.gather(*sent)
    finally:
        await stop_within(producer.stop(), 2.0)


def answered(request: StreamRequest) -> Callable[[Event], bool]:
    """Whether an event answers the request: ``started`` or a heartbeat carrying the requested
    symbols (a start), ``finished`` (a stop); :class:`StreamFailed` on the task's ``error``."""

    def check(event: Event) -> bool:
        if event.queue_id != request.queue_id:
            return False
        if event.status == "error":
            why = event.message or (event.error.detail if event.error else "no reason given")
            raise StreamFailed(f"stream {request.queue_id} failed on {event.producer}: {why}")
        if request.action == "stop":
            return event.status == "finished"
        if event.status == "started":
            return True
        stats = event.stream
        return event.status == "streaming" and stats is not None and tuple(stats.symbols) == request.symbols

    return check


async def command_and_wait(
    settings: Settings, request: StreamRequest, commands: Sequence[Command], wait_s: float
) -> Event:
    """Publish the commands and wait up to ``wait_s`` for the worker's answer (:func:`answered`):
    the event, or :class:`NoAnswer` / :class:`StreamFailed` with one line."""
    is_answer = answered(request)
    deadline = time.monotonic() + wait_s
    async with EventFollower(settings.kafka_bootstrap_servers or "", settings.topic_events) as follower:
        await send_commands(settings, commands)
        while time.monotonic() < deadline:
            for event in await follower.poll(timeout_ms=300):
                if is_answer(event):
                    return event
    if request.action == "start":
        raise NoAnswer(
            f"no stream worker answered the start of {request.queue_id} within {wait_s:.0f}s: is one "
            f"running for {request.target} (`streamforge worker streams`)? The stream stays wanted: "
            "a worker that comes up carries it out, and the streams sensor sends the start again"
        )
    raise NoAnswer(
        f"no stream worker reported {request.queue_id} stopped within {wait_s:.0f}s (was it running?); "
        "it is recorded as stopped"
    )


def describe(event: Event) -> str:
    """One line about a worker's answer, for the run's log."""
    stats = event.stream
    figures = "" if stats is None else f": {len(stats.symbols)} symbols, {stats.records} records"
    return f"{event.queue_id} {event.status} on {event.producer}{figures}"
