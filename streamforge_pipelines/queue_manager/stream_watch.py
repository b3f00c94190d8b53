"""Watching live streams: heartbeats into each stream's state, restarts, and the days streams completed.

The streams sensor calls :func:`watch` once per tick. It reads the new ``queue-events`` (a bounded
read from the Kafka offsets in its cursor, as the ``queue_events`` sensor does), folds the stream
tasks' events into what was last **heard** of each stream (:class:`Heard`: the newest event's time,
status and :class:`~streamforge_pipelines.protocol.StreamStats`), reads the desired state
(:func:`~.streams.wanted_streams`) and judges every stream on record (:func:`judge`):

=========== ==================================================================================
state       when
=========== ==================================================================================
streaming   wanted, heard within ``LIVE_DEAD_AFTER_BEATS`` x ``LIVE_HEARTBEAT_S``, no silent symbol
silent      wanted and heard from, but its heartbeat names ``silent_symbols`` (the exchange sends
            nothing on those streams: the worker's own watchdog, ``LIVE_STREAM_SILENCE_S``)
starting    wanted, not heard from since it was (re)started, still within the dead window
dead        wanted, and nothing heard for ``LIVE_DEAD_AFTER_BEATS`` heartbeats: its worker died
ended       wanted, but its task reported ``finished`` (a worker stopped by SIGTERM) or ``error``
stopped     not wanted
unstopped   not wanted, yet heartbeats keep coming a dead window after the stop was recorded
=========== ==================================================================================

A dead or ended stream is started again: its start command (from the record) is sent once more with
the same ``queue_id`` — at most once per ``LIVE_RESTART_EVERY_S`` per stream — and the worker that
takes it resumes the task from its checkpoint and repairs the gap. An unstopped one gets its stop
again. Nothing is sent while the read of ``queue-events`` is catching up (a tick that read its whole
batch): a stream's heartbeats may simply not have been read yet.

:func:`complete_days` is the other half of what streams land outside any run: the closed UTC days a
stream covered whose data the store holds complete by the dataset's ledger (candles: the time grid,
downtime not missing; aggregate trades: every id between the last one stored before the day and the
first one after it), for the sensor to record as the historical asset's partitions.

No Dagster here; nothing is written (the job owns the records, the sensor records in Dagster).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from ..datasets import CANDLES, TRADES
from ..intervals import DAY_MS, day_start_ms, days_between
from ..protocol import (
    Command,
    Event,
    StreamStats,
    is_stream_type,
    parse_time_range,
    stream_target,
    ws_candle_interval,
)
from ..settings import Settings
from ..store import Store
from .ledger import MISSING, LedgerTotals, build_ledger
from .streams import WantedStream, wanted_streams
from .telemetry import read_events
from .trades_ledger import check_id_day

__all__ = [
    "DEAD",
    "ENDED",
    "LIVE_DAYS_BACK",
    "SILENT",
    "STARTING",
    "STOPPED_STATE",
    "STREAMING",
    "UNSTOPPED",
    "DayVerdict",
    "Heard",
    "StreamView",
    "WatchCursor",
    "WatchTick",
    "candidate_days",
    "complete_days",
    "historical_type",
    "judge",
    "watch",
]

STREAMING = "streaming"
SILENT = "silent"
STARTING = "starting"
DEAD = "dead"
ENDED = "ended"
STOPPED_STATE = "stopped"
UNSTOPPED = "unstopped"
#: States in which a wanted stream is started again.
RESTART = frozenset({DEAD, ENDED})

#: Closed days before today a stream's days are looked at (older ones are left to loads).
LIVE_DAYS_BACK = 7
#: Events read per tick at most (the rest on the next tick).
MAX_EVENTS = 20_000
#: Task statuses of a load still under way: its step owns the days it covers.
_LOADING = ("pending", "started", "loading", "finished", "interrupted")


@dataclass
class Heard:
    """What was last heard of one stream on ``queue-events``."""

    at: float = 0.0
    status: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    producer: str = ""
    message: str | None = None

    @property
    def stream(self) -> StreamStats:
        return StreamStats.model_validate(self.stats)


@dataclass
class WatchCursor:
    """The streams sensor's state between ticks (JSON): Kafka offsets, what was heard of each stream,
    when a command was last sent to it, its last state (to report changes once), and the records total
    of its last heartbeat (to count what landed since)."""

    offsets: dict[int, int] = field(default_factory=dict)
    heard: dict[str, Heard] = field(default_factory=dict)
    sent: dict[str, float] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: str | None) -> WatchCursor:
        if not raw:
            return cls()
        data = orjson.loads(raw)
        return cls(
            offsets={int(p): int(o) for p, o in data.get("offsets", {}).items()},
            heard={q: Heard(**h) for q, h in data.get("heard", {}).items()},
            sent={q: float(t) for q, t in data.get("sent", {}).items()},
            states={q: str(s) for q, s in data.get("states", {}).items()},
            records={q: int(n) for q, n in data.get("records", {}).items()},
        )

    def dump(self) -> str:
        return orjson.dumps(
            {
                "offsets": {str(p): o for p, o in self.offsets.items()},
                "heard": {q: asdict(h) for q, h in self.heard.items()},
                "sent": self.sent,
                "states": self.states,
                "records": self.records,
            }
        ).decode()


@dataclass(frozen=True)
class StreamView:
    """One stream as the tick sees it: what is wanted, what was heard, the verdict and why."""

    stream: WantedStream
    heard: Heard | None
    state: str
    why: str
    #: Records the stream landed since the previous tick (its heartbeats' totals, restart-aware).
    new_records: int = 0

    @property
    def fresh(self) -> bool:
        """Wanted and healthy (what the live assets' ``fresh`` check asks of each running stream)."""
        return self.state in (STREAMING, STARTING)

    def line(self, now: float) -> str:
        """One line for the tick's log."""
        s = self.stream
        head = f"{s.queue_id} ({s.type} {s.market}, {len(s.symbols)} symbols): {self.state}"
        if self.heard is None or not self.heard.stats:
            return f"{head}; {self.why}"
        st = self.heard.stream
        return (
            f"{head}, heard {now - self.heard.at:.0f}s ago; {st.records} records, {st.messages} messages, "
            f"{st.gaps} gaps, {st.resyncs} resyncs, {st.reconnects} reconnects, {st.repaired} repaired"
            + (f"; {self.why}" if self.state != STREAMING else "")
        )


@dataclass
class WatchTick:
    """One evaluation: every stream's view, the commands to send, the streams whose state changed,
    the events read, and the new cursor."""

    views: list[StreamView]
    commands: list[Command]
    changed: list[StreamView]
    events: int
    caught_up: bool
    cursor: WatchCursor


def _event_time(event: Event, now: float) -> float:
    return float(event.timestamp) if isinstance(event.timestamp, int | float) else now


def hear(heard: dict[str, Heard], events: Iterable[Event], now: float) -> None:
    """Fold the stream tasks' events into ``heard`` (newest event wins; a newer task's zeroed counts
    replace an older one's, as a restarted task starts counting again)."""
    for e in events:
        if not is_stream_type(e.type):
            continue
        at = _event_time(e, now)
        h = heard.setdefault(e.queue_id, Heard())
        if at < h.at:
            continue
        h.at, h.status, h.producer, h.message = at, e.status, e.producer, e.message
        if e.stream is not None:
            h.stats = e.stream.model_dump()


def judge(stream: WantedStream, heard: Heard | None, now: float, dead_after_s: float) -> tuple[str, str]:
    """The state of one stream and why (see the module docstring)."""
    news = heard if heard is not None and heard.at >= stream.since else None
    if not stream.running:
        if (
            news is not None
            and news.status in ("started", "streaming")
            and news.at > stream.since + dead_after_s
        ):
            return UNSTOPPED, f"stopped {now - stream.since:.0f}s ago but still heard ({news.producer})"
        return STOPPED_STATE, "stopped"
    if news is not None and news.status in ("finished", "error"):
        return ENDED, f"its task reported {news.status} on {news.producer}" + (
            f": {news.message}" if news.message else ""
        )
    quiet = now - max(stream.since, news.at if news is not None else 0.0)
    if quiet > dead_after_s:
        what = "no heartbeat" if news is not None else "not heard from since it was started"
        return DEAD, f"{what} for {quiet:.0f}s (a worker carries it out within {dead_after_s:.0f}s)"
    if news is None or news.status not in ("started", "streaming"):
        return STARTING, "waiting for its first heartbeat"
    silent = news.stream.silent_symbols
    if silent:
        return SILENT, f"nothing from the exchange for {', '.join(silent)}"
    return STREAMING, "streaming"


def _new_records(cursor: WatchCursor, queue_id: str, heard: Heard | None) -> int:
    """Records landed since the last tick from the heartbeats' running total (which starts again at 0
    when the task is started again)."""
    if heard is None or not heard.stats:
        return 0
    total = int(heard.stats.get("records", 0))
    before = cursor.records.get(queue_id, 0)
    cursor.records[queue_id] = total
    return total - before if total >= before else total


def watch(settings: Settings, store: Store, raw_cursor: str | None, *, now: float | None = None) -> WatchTick:
    """One tick of the streams sensor as a plain function: reads ``queue-events`` and the records,
    judges every stream, and says what to send (nothing is sent or written here)."""
    now = time.time() if now is None else now
    cursor = WatchCursor.load(raw_cursor)
    events, cursor.offsets = asyncio.run(
        read_events(
            settings.kafka_bootstrap_servers or "",
            settings.topic_events,
            cursor.offsets,
            max_records=MAX_EVENTS,
        )
    )
    hear(cursor.heard, events, now)
    caught_up = len(events) < MAX_EVENTS
    dead_after_s = settings.live_dead_after_beats * settings.live_heartbeat_s
    views: list[StreamView] = []
    commands: list[Command] = []
    changed: list[StreamView] = []
    streams = wanted_streams(store)
    for stream in streams:
        heard = cursor.heard.get(stream.queue_id)
        state, why = judge(stream, heard, now, dead_after_s)
        view = StreamView(stream, heard, state, why, _new_records(cursor, stream.queue_id, heard))
        views.append(view)
        if cursor.states.get(stream.queue_id) != state:
            changed.append(view)
        cursor.states[stream.queue_id] = state
        command = _resend(stream, state)
        if command is None or not caught_up:
            continue
        if now - cursor.sent.get(stream.queue_id, 0.0) >= settings.live_restart_every_s:
            commands.append(command)
            cursor.sent[stream.queue_id] = now
    known = {s.queue_id for s in streams}
    for table in (cursor.heard, cursor.sent, cursor.states, cursor.records):
        for q in [q for q in table if q not in known]:
            del table[q]
    return WatchTick(views, commands, changed, len(events), caught_up, cursor)


def _resend(stream: WantedStream, state: str) -> Command | None:
    """What a stream in ``state`` needs sent again: its start (the recorded command, with a fresh
    timestamp; rebuilt from the record's fields if it holds none), or its stop."""
    target, now = stream_target(stream.type), time.time()
    if state in RESTART:
        if stream.start is not None:
            return stream.start.model_copy(update={"timestamp": now})
        return Command(
            command="start",
            queue_id=stream.queue_id,
            target=target,
            type=stream.type,
            symbols=list(stream.symbols),
            market=stream.market,
            timestamp=now,
        )
    if state == UNSTOPPED:
        return Command(command="stop", queue_id=stream.queue_id, target=target, timestamp=now)
    return None


# ---- days completed by streams --------------------------------------------------------------------


def historical_type(stream: WantedStream) -> str | None:
    """The load task type whose dataset a stream completes (``ws_candles_5m`` on spot ->
    ``api_candles_5m``; ``ws_agg_trades`` -> ``api_agg_trades``), else None (trades of kind
    ``trade``, books, USD-M candles: no daily asset records them)."""
    interval = ws_candle_interval(stream.type)
    if interval is not None:
        return f"api_candles_{interval}" if stream.market == "spot" else None
    return "api_agg_trades" if stream.type == "ws_agg_trades" else None


def candidate_days(stream: WantedStream, today: date) -> list[date]:
    """The closed days a stream may have covered: from the day it was first started up to yesterday
    (up to the day it was stopped, for a stopped one), at most :data:`LIVE_DAYS_BACK` of them."""
    first = datetime.fromtimestamp(stream.created_at, UTC).date()
    last = today - timedelta(days=1)
    if not stream.running:
        last = min(last, datetime.fromtimestamp(stream.since, UTC).date())
    first = max(first, today - timedelta(days=LIVE_DAYS_BACK))
    return days_between(first, last) if first <= last else []


def loading_days(store: Store, task_type: str) -> set[date]:
    """The days that loads of ``task_type`` still under way cover: their steps own those days."""
    out: set[date] = set()
    for status in _LOADING:
        for r in store.list_tasks(status=status):
            if r.type == task_type and r.time_range:
                first, last = parse_time_range(r.time_range)
                out.update(days_between(first, last))
    return out


@dataclass(frozen=True)
class DayVerdict:
    """Whether the store holds a day of a stream's dataset complete, with the day's figures."""

    day: date
    complete: bool
    figures: Mapping[str, int]
    why: str


def complete_days(
    store: Store, stream: WantedStream, days: Sequence[date], clock_ms: int
) -> list[DayVerdict]:
    """The verdict of each day for the stream's symbols, by its dataset's ledger."""
    interval = ws_candle_interval(stream.type)
    if interval is not None:
        return [_candle_day(store, stream.symbols, interval, d, clock_ms) for d in days]
    if stream.type == "ws_agg_trades":
        return [_agg_day(store, stream.symbols, d) for d in days]
    return []


def _candle_day(store: Store, symbols: Sequence[str], interval: str, day: date, clock_ms: int) -> DayVerdict:
    entries = build_ledger(store, symbols, interval, day, day, clock_ms, spec=CANDLES)
    t = LedgerTotals.of(entries)
    figures = {"expected": t.expected, "stored": t.stored, "downtime": t.downtime, "missing": t.missing}
    short = [f"{e.symbol} ({e.missing})" for e in entries if e.status == MISSING]
    why = "complete" if not short else f"{t.missing} candles missing: {', '.join(short)}"
    return DayVerdict(day, not short, figures, why)


def _agg_day(store: Store, symbols: Sequence[str], day: date) -> DayVerdict:
    """A day of aggregate trades is complete when every id between the last one stored before the day
    and the first one stored after it is there (ids are consecutive: that is the day's whole span)."""
    start = day_start_ms(day)
    expected = stored = 0
    short: list[str] = []
    for symbol in symbols:
        series = (symbol, "agg")
        before = store.order_span(TRADES, series, start - DAY_MS, start)
        after = store.order_span(TRADES, series, start + DAY_MS, start + 2 * DAY_MS)
        if before is None or after is None:
            short.append(f"{symbol} (its trades around the day are not stored)")
            continue
        lo, hi = before[1] + 1, after[0] - 1
        if hi < lo:
            continue  # no trade that day
        entry = check_id_day(store, TRADES, series, day, (lo, hi))
        expected, stored = expected + entry.expected, stored + entry.stored
        if entry.missing:
            short.append(f"{symbol} ({entry.missing})")
    figures = {"expected": expected, "stored": stored, "missing": expected - stored}
    why = "complete" if not short else f"incomplete: {', '.join(short)}"
    return DayVerdict(day, not short, figures, why)
