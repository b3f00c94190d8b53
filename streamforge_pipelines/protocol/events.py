"""``queue-events`` telemetry: :class:`Event`, one worker's news about one task.

Unlike a command, an event ignores unknown fields (:class:`~.messages.Message`), so an older reader
keeps reading a newer writer's events.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from .ids import SCHEMA_VERSION
from .messages import Message, decode_message

#: ``streaming``: a stream task's heartbeat (it runs until stopped; its counts are in ``stream``).
Status = Literal["pending", "started", "loading", "streaming", "finished", "error", "interrupted"]


class PartitionCount(Message):
    """Records a producer wrote to (or a consumer stored from) one partition of a data topic."""

    partition: int = Field(ge=0)
    records: int = Field(ge=0)
    offset: int | None = None


class StreamStats(Message):
    """A stream task's figures in its heartbeat: totals since the task started on this worker."""

    #: Exchange messages received (every stream of the task, every connection).
    messages: int = 0
    #: Records produced (trades, closed candles, book snapshots).
    records: int = 0
    #: Sequence gaps seen (book diffs whose ids jump; trade ids missed between connections).
    gaps: int = 0
    #: Books resynced (a new snapshot for one symbol).
    resyncs: int = 0
    #: Connections lost and opened again (planned rotations not counted).
    reconnects: int = 0
    #: Ids or candles fetched from REST to fill what a connection missed.
    repaired: int = 0
    #: Symbols of the task from which nothing arrived within the silence limit.
    silent_symbols: list[str] = Field(default_factory=list)
    #: Symbols of the task (its subscription).
    symbols: list[str] = Field(default_factory=list)


class ErrorInfo(Message):
    type: str
    detail: str


class Event(Message):
    """A ``queue-events`` telemetry event: one worker's news about one task."""

    queue_id: str = Field(min_length=1)
    producer: str = Field(min_length=1)
    status: Status
    symbol: str | None = None
    type: str | None = None
    message: str | None = None
    records_written: int = 0
    finished: bool = False
    timestamp: float | str | None = None
    schema_version: int = SCHEMA_VERSION
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    partitions: list[PartitionCount] | None = None
    error: ErrorInfo | None = None
    #: Exchange figures of a loader's ``finished`` / ``error`` event (docs/rate-limits.md).
    http_429: int | None = None
    http_418: int | None = None
    #: REST requests and archive downloads tried again after a transient failure.
    retries: int | None = None
    weight_used_peak: float | None = None
    #: Days a candle loader read from each source, e.g. ``{"archive": 28, "rest": 2}``.
    days_by_source: dict[str, int] | None = None
    #: A repair task's (``Command.ranges``) sub-ranges ``[start_ms, end_ms)`` for which the exchange
    #: returned no candles: the evidence of exchange downtime in the completeness ledger.
    empty_ranges: list[tuple[int, int]] | None = None
    #: A stream task's heartbeat figures (status ``streaming``, and its last ``finished``/``error``).
    stream: StreamStats | None = None

    @property
    def component(self) -> str:
        """``loader-api-candles`` for producer ``loader-api-candles__a1b2c3``."""
        return self.producer.split("__", 1)[0]


def decode_event(raw: bytes | str | Mapping[str, Any]) -> Event:
    """Parse a ``queue-events`` message; raises :class:`~.errors.ProtocolError` naming the bad field."""
    return decode_message("event", Event, raw)
