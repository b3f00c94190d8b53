"""``queue-control`` commands: :class:`Command`, the one validator of what a loader is asked to do.

A command is refused here, when it is built or decoded, for everything a loader would refuse of its
content (:class:`Command` has the list), so what passes, a loader can run. The task types a loader
carries out are the candle intervals', the trade tasks' (:data:`TRADE_TASK_TYPES`) and those of
datasets registered at run time (:func:`register_task_types`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..intervals import DAILY_INTERVALS, FIRST_DATE, FIRST_DAY, INTERVALS, day_range_ms
from .checks import SYMBOL
from .errors import ProtocolError, excerpt
from .ids import SCHEMA_VERSION, TIME_RANGE, now_s, parse_time_range
from .live import WS_TRADE_TASK_TYPES, is_stream_type, ws_candle_interval, ws_task_types
from .messages import Message, Refused, decode_message, one_line

CommandName = Literal["start", "stop", "ping"]

#: Task type -> trade kind: ``api_agg_trades`` (``/api/v3/aggTrades``) and ``api_trades``
#: (``/api/v3/historicalTrades``).
TRADE_TASK_TYPES: dict[str, str] = {"api_agg_trades": "agg", "api_trades": "trade"}

_CANDLE_TYPE = re.compile(r"^api_candles_(\w+)$")

#: Longest identifier a command may carry (``queue_id``, ``target``, ``telemetry_id``, ``run_id``,
#: ``partition_key``): :func:`~.ids.make_queue_id` writes about 50 characters, a Dagster run id 36.
MAX_ID_CHARS = 200
#: Longest ``image`` reference (registry, path, tag and digest).
MAX_IMAGE_CHARS = 512
#: Kafka's own limits on a topic name: at most 249 characters of ``[A-Za-z0-9._-]``, not ``.``/``..``.
MAX_TOPIC_CHARS = 249
_TOPIC = re.compile(r"^[A-Za-z0-9._-]+$")
#: ArangoDB's limit on a collection name.
MAX_COLLECTION_CHARS = 256
#: Most symbols one stream task may name (its worker shards them over connections).
MAX_STREAM_SYMBOLS = 5000
#: Largest trade id a repair may name: a signed 64-bit integer, what the store holds.
MAX_TRADE_ID = 2**63 - 1
#: ``timestamp`` in epoch seconds: 2000-01-01 up to 2100-01-01 (a larger number is milliseconds).
TIMESTAMP_RANGE_S = (946_684_800.0, 4_102_444_800.0)
#: The last day of a ``time_range`` may be today (UTC) as seen by a clock this much ahead of the
#: validating machine's: a command written just after midnight elsewhere is not refused here.
CLOCK_SLACK_S = 3600.0


#: Task types of datasets registered at run time (:func:`streamforge_pipelines.datasets.register`),
#: and which of them take repair ``ranges`` (time-grid datasets) or ``id_ranges`` (id-range datasets).
_REGISTERED_TASK_TYPES: set[str] = set()
_RANGES_TASK_TYPES: set[str] = set()
_ID_RANGES_TASK_TYPES: set[str] = set()


def task_types() -> frozenset[str]:
    """Every ``type`` a loader carries out: ``api_candles_<interval>``, the trade task types, the
    stream task types (:func:`~.live.ws_task_types`) and those of registered datasets."""
    return (
        frozenset(f"api_candles_{i}" for i in INTERVALS)
        | frozenset(TRADE_TASK_TYPES)
        | ws_task_types()
        | frozenset(_REGISTERED_TASK_TYPES)
    )


def register_task_types(types: Iterable[str], *, repairs: str | None = None) -> None:
    """Accept commands of ``types`` (a registered dataset's task types); ``repairs``: ``"ranges"``
    (time ranges, a time-grid dataset) or ``"id_ranges"`` (an id-range dataset) they may carry."""
    types = set(types)
    _REGISTERED_TASK_TYPES.update(types)
    if repairs == "ranges":
        _RANGES_TASK_TYPES.update(types)
    elif repairs == "id_ranges":
        _ID_RANGES_TASK_TYPES.update(types)


def unregister_task_types(types: Iterable[str]) -> None:
    """Refuse commands of ``types`` again."""
    for registry in (_REGISTERED_TASK_TYPES, _RANGES_TASK_TYPES, _ID_RANGES_TASK_TYPES):
        registry.difference_update(types)


def _today_utc() -> date:
    return datetime.fromtimestamp(now_s() + CLOCK_SLACK_S, UTC).date()


class Command(Message):
    """A ``queue-control`` command addressed to one worker (``target``) about one task.

    **The one validator of commands**: ``streamforge validate-command``, the loader-producer (which
    decodes every message it consumes) and the queue-manager (which builds commands with
    ``Command(...)``) all go through this model, and it refuses, first, everything a loader would
    refuse of a command's content: what it accepts, a loader can run. A ``start`` command needs a
    ``type`` a loader has (``api_candles_<interval>`` of
    :data:`~streamforge_pipelines.intervals.INTERVALS`, ``api_agg_trades``, ``api_trades``, or a
    registered dataset's), a ``symbol`` and a ``time_range`` from
    :data:`~streamforge_pipelines.intervals.FIRST_DAY` to today (UTC; a later day has not begun, so
    it has no data); ``ranges`` only on candle tasks and ``id_ranges`` only on trades tasks, each sorted,
    non-overlapping and inside the ``time_range``; ``market=usdm`` neither on ``1s`` nor on trades;
    ``source=archive`` only for intervals with daily archive files. ``stop`` and ``ping`` commands need
    only ``queue_id`` and ``target``; what they carry besides is checked the same way. Unknown
    fields are refused (a misspelt field silently dropped would change the task), strings are
    bounded, and an error is one line naming the field and quoting at most
    :data:`~.errors.EXCERPT_CHARS` characters of the value. Built in code, a bad command raises the
    same one-line :class:`ProtocolError` as a decoded one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: CommandName
    queue_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    target: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    symbol: str | None = None
    #: The symbols of a stream task (``ws_*`` types), which runs until stopped instead of over a
    #: ``time_range``; a stream task naming one ``symbol`` instead is read as ``symbols=[symbol]``.
    symbols: list[str] | None = Field(default=None, min_length=1, max_length=MAX_STREAM_SYMBOLS)
    type: str | None = None
    time_range: str | None = None
    kafka_topic: str | None = None
    collection_name: str | None = Field(default=None, min_length=1, max_length=MAX_COLLECTION_CHARS)
    telemetry_id: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    image: str | None = Field(default=None, max_length=MAX_IMAGE_CHARS)
    #: When the command was written: epoch seconds, or an ISO-8601 time.
    timestamp: float | str | None = None
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)
    run_id: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    partition_key: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    #: Share (0-1] of the exchange's per-IP weight limit this task may use (docs/rate-limits.md).
    weight_share: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    #: Where a candle task reads its days from: ``auto`` (closed days from the bulk archive, the
    #: recent tail from REST), ``rest`` or ``archive`` (archive only). Unset = ``rest``, what a
    #: command meant before there was a choice; the queue-manager always sets it.
    source: Literal["auto", "rest", "archive"] | None = None
    #: Which market a candle task loads: ``spot`` or ``usdm`` (USD-M futures: ``/fapi/v1`` klines,
    #: ``futures/um`` archive files, no ``1s``). Unset = ``spot``, what a command meant before.
    market: Literal["spot", "usdm"] | None = None
    #: Targeted repair: only these open-time ranges ``[start_ms, end_ms)`` (inside ``time_range``)
    #: are fetched, from REST; unset = the whole ``time_range``. See
    #: ``streamforge_pipelines.queue_manager.ledger``.
    ranges: list[tuple[StrictInt, StrictInt]] | None = None
    #: Targeted repair of a trades task (``api_agg_trades`` / ``api_trades``): only these id ranges
    #: ``[first_id, end_id)`` are fetched (``fromId`` pages, REST). See ``queue_manager.trades_ledger``.
    id_ranges: list[tuple[StrictInt, StrictInt]] | None = None

    def __init__(self, **data: Any) -> None:
        """Checked as a decoded command is; a bad one raises the same one-line :class:`ProtocolError`."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ProtocolError(one_line("command", exc)) from None

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, v: str | None) -> str | None:
        if v is not None and (len(v) > 20 or not SYMBOL.match(v.upper())):
            raise ValueError("expected an exchange symbol like BTCUSDT")
        return None if v is None else v.upper()

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        out: list[str] = []
        for i, s in enumerate(v):
            if not isinstance(s, str) or len(s) > 20 or not SYMBOL.match(s.upper()):
                raise Refused(f"symbols[{i}]", "expected an exchange symbol like BTCUSDT", s)
            out.append(s.upper())
        if len(set(out)) != len(out):
            raise ValueError("a symbol is named twice")
        return out

    @field_validator("type")
    @classmethod
    def _type(cls, v: str | None) -> str | None:
        if v is not None and v not in task_types():
            raise ValueError(
                f"no loader for this type; expected api_candles_<interval> ({', '.join(INTERVALS)}), "
                f"ws_candles_<interval>, {', '.join(sorted(ws_task_types() - _ws_candle_types()))}, "
                f"{' or '.join([*TRADE_TASK_TYPES, *sorted(_REGISTERED_TASK_TYPES)])}"
            )
        return v

    @field_validator("time_range")
    @classmethod
    def _time_range(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = TIME_RANGE.match(v)
        if not m:
            raise ValueError("expected YYYY-MM-DD:YYYY-MM-DD")
        try:
            first, last = date.fromisoformat(m.group(1)), date.fromisoformat(m.group(2))
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if last < first:
            raise ValueError("end day before start day")
        if first < FIRST_DATE:
            raise ValueError(f"starts before {FIRST_DAY}, the first day of Binance spot market data")
        today = _today_utc()
        if last > today:
            raise ValueError(f"ends after today ({today}, UTC): a day that has not begun has no data")
        return v

    @field_validator("kafka_topic")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        if v is not None and (len(v) > MAX_TOPIC_CHARS or not _TOPIC.match(v) or v in (".", "..")):
            raise ValueError(f"expected a Kafka topic name: 1-{MAX_TOPIC_CHARS} characters of A-Za-z0-9._-")
        return v

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp(cls, v: Any) -> Any:
        if v is None:
            return v
        lo, hi = TIMESTAMP_RANGE_S
        if isinstance(v, int | float) and not isinstance(v, bool):
            if not (math.isfinite(v) and lo <= v < hi):
                raise ValueError("expected epoch seconds from 2000 to 2100 (milliseconds are 1000x larger)")
            return v
        if isinstance(v, str) and len(v) <= 64:
            try:
                datetime.fromisoformat(v)
            except ValueError:
                pass
            else:
                return v
        raise ValueError("expected epoch seconds or an ISO-8601 time like 2024-08-01T00:00:00Z")

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v > SCHEMA_VERSION:
            raise ValueError(f"schema_version {v} is newer than this worker understands ({SCHEMA_VERSION})")
        return v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | None, info: ValidationInfo) -> str | None:
        m = _CANDLE_TYPE.match(info.data.get("type") or "")
        if v == "archive" and m and m.group(1) not in DAILY_INTERVALS:
            raise ValueError(f"the archive has no daily {m.group(1)} files: use auto or rest")
        return v

    @field_validator("market")
    @classmethod
    def _market(cls, v: str | None, info: ValidationInfo) -> str | None:
        task_type = info.data.get("type")
        if v == "usdm" and task_type in ("api_candles_1s", "ws_candles_1s"):
            raise ValueError("USD-M futures have no 1s klines (1s candles exist only on spot)")
        if v not in (None, "spot") and (task_type in TRADE_TASK_TYPES or task_type in WS_TRADE_TASK_TYPES):
            raise ValueError("the trades loaders read spot trades only")
        return v

    @field_validator("ranges")
    @classmethod
    def _ranges(cls, v: list[tuple[int, int]] | None, info: ValidationInfo) -> list[tuple[int, int]] | None:
        if v is None:
            return v
        task_type = info.data.get("type")
        if task_type is not None and not (_CANDLE_TYPE.match(task_type) or task_type in _RANGES_TASK_TYPES):
            raise ValueError("only api_candles_<interval> tasks take ranges (trades repairs: id_ranges)")
        time_range = info.data.get("time_range")
        span = None if time_range is None else day_range_ms(*parse_time_range(time_range))
        _check_ranges("ranges", v, span, "the time_range", info.data.get("source"))
        return v

    @field_validator("id_ranges")
    @classmethod
    def _id_ranges(
        cls, v: list[tuple[int, int]] | None, info: ValidationInfo
    ) -> list[tuple[int, int]] | None:
        if v is None:
            return v
        task_type = info.data.get("type")
        if (
            task_type is not None
            and task_type not in TRADE_TASK_TYPES
            and task_type not in _ID_RANGES_TASK_TYPES
        ):
            raise ValueError(f"only {' and '.join(TRADE_TASK_TYPES)} tasks take id_ranges")
        if info.data.get("ranges") is not None:
            raise ValueError("a command takes ranges or id_ranges, not both")
        _check_ranges("id_ranges", v, (0, MAX_TRADE_ID), "trade ids", info.data.get("source"))
        return v

    @model_validator(mode="after")
    def _start_needs_a_task(self) -> Command:
        """A ``start`` command names a task a loader can carry out (the loaders refuse it otherwise): a
        historical task a ``symbol`` and a ``time_range``, a stream task its ``symbols`` (or one
        ``symbol``) and no ``time_range`` (it runs until stopped)."""
        if self.command != "start":
            return self
        if self.type is None:
            raise Refused("type", "required for a start command")
        if is_stream_type(self.type):
            if self.time_range is not None or self.ranges is not None or self.id_ranges is not None:
                raise Refused("time_range", "a stream task runs until stopped: no time_range or ranges")
            if self.symbols is None and self.symbol is None:
                raise Refused("symbols", "required for a stream task")
            return self
        if self.symbols is not None:
            raise Refused("symbols", "only stream tasks (ws_*) take symbols; a load names one symbol")
        for name in ("symbol", "time_range"):
            if getattr(self, name) is None:
                raise Refused(name, "required for a start command")
        return self

    def stream_symbols(self) -> list[str]:
        """The symbols of a stream task: ``symbols``, or ``[symbol]``."""
        if self.symbols is not None:
            return list(self.symbols)
        if self.symbol is not None:
            return [self.symbol]
        raise ProtocolError("command.symbols: required for a stream task")

    def days(self) -> tuple[date, date]:
        """First and last day (inclusive) of ``time_range``."""
        if self.time_range is None:
            raise ProtocolError("command.time_range: required for this command")
        return parse_time_range(self.time_range)

    def interval(self) -> str:
        """The candle interval of an ``api_candles_<interval>`` task."""
        m = _CANDLE_TYPE.match(self.type or "")
        if not m:
            raise ProtocolError(f"command.type: expected api_candles_<interval>, got {excerpt(self.type)}")
        return m.group(1)

    def trade_kind(self) -> str:
        """``agg`` for an ``api_agg_trades`` task, ``trade`` for ``api_trades``."""
        kind = TRADE_TASK_TYPES.get(self.type or "")
        if kind is None:
            got = excerpt(self.type)
            raise ProtocolError(f"command.type: expected api_agg_trades or api_trades, got {got}")
        return kind


def _ws_candle_types() -> frozenset[str]:
    return frozenset(t for t in ws_task_types() if ws_candle_interval(t) is not None)


def _check_ranges(
    field: str, ranges: list[tuple[int, int]], span: tuple[int, int] | None, of: str, source: str | None
) -> None:
    """``[start, end)`` ranges of a repair: at least one, each non-empty, sorted without overlaps
    (touching is fine), inside ``span`` (``of`` what, for the message) when known; fetched from
    REST, so not with ``source=archive``."""
    if not ranges:
        raise Refused(field, "a repair needs at least one range (unset it to load the whole time_range)", [])
    if source == "archive":
        raise Refused(field, "a repair is fetched from REST: source must be rest or auto, not archive")
    prev_end = None
    for i, (a, b) in enumerate(ranges):
        where = f"{field}[{i}]"
        if a >= b:
            raise Refused(where, "a range must end after it starts", [a, b])
        if prev_end is not None and a < prev_end:
            reason = f"ranges must be sorted and must not overlap (the one before ends at {prev_end})"
            raise Refused(where, reason, [a, b])
        if span is not None and (a < span[0] or b > span[1]):
            raise Refused(where, f"outside {of} [{span[0]}, {span[1]})", [a, b])
        prev_end = b


def decode_command(raw: bytes | str | Mapping[str, Any]) -> Command:
    """Parse a ``queue-control`` message; raises :class:`ProtocolError` naming the bad field."""
    return decode_message("command", Command, raw)
