"""Every message StreamForge puts on Kafka: commands, telemetry events and data records.

``queue-control`` carries :class:`Command`, ``queue-events`` carries :class:`Event`, data topics carry
candle records and end markers. The fields of the original design are kept as they were; the
additions are ``schema_version``, ``run_id``, ``partition_key``, ``weight_share``, ``ranges``,
``market`` (commands) and ``event_id``, ``partitions``, ``error``, ``http_429``, ``http_418``, ``retries``,
``weight_used_peak``, ``empty_ranges`` (events). Messages written before those fields existed still parse.

Encoding is JSON via orjson. Decoding errors are :class:`ProtocolError` whose message is one line
naming the field and the reason, e.g. ``command.time_range: expected YYYY-MM-DD:YYYY-MM-DD, got '2024'``.

Candle data is the hot path (hundreds of thousands of candles per second), so it travels as plain
dicts checked by :func:`validate_candle` / :func:`validate_candle_page` instead of going through
pydantic. Loaders send **candle pages** (``record: "candles"``): one message per exchange page of at
most a page's worth of candles of one symbol and interval, each candle the exchange's kline array
without its unused last field. One message per page instead of per candle cuts the per-candle cost
of producing, fetching and decoding (measured in ``bench/``). Single ``candle`` records remain valid.
A data record decodes only if the store can hold it as it is meant (:func:`check_candle_page` has
the list: integer ranges, positive decimal prices, ``low <= open, close <= high``, exchange symbols,
known intervals, bounded strings ...); :func:`decode_record` raises nothing but a one-line
:class:`ProtocolError` naming the field, e.g. ``candles.rows[2].high: 60000.0 is below low 60700.0``,
which the connector puts in the record's dead letter.

Trades travel the same way: ``trades`` pages (:func:`trade_page`, :func:`validate_trade_page`) of
aggregate trades or trades of one symbol, for the ``api_agg_trades`` / ``api_trades`` tasks (whose
commands may carry ``id_ranges``: a repair of those ids only).
"""

from __future__ import annotations

import math
import re
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import chain
from operator import le, lt
from typing import Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .intervals import DAILY_INTERVALS, FIRST_DATE, FIRST_DAY, INTERVALS, day_range_ms

SCHEMA_VERSION = 1

CommandName = Literal["start", "stop", "ping"]
Status = Literal["pending", "started", "loading", "finished", "error", "interrupted"]

#: Producer component names (the part of ``producer`` / ``telemetry_id`` before ``__``).
LOADER_PRODUCER = "loader-producer"
LOADER_CANDLES = "loader-api-candles"
LOADER_TRADES = "loader-api-trades"
CONNECTOR = "arango-connector"
QUEUE_MANAGER = "queue-manager"

_TIME_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2}):(\d{4}-\d{2}-\d{2})$")
_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")
_CANDLE_TYPE = re.compile(r"^api_candles_(\w+)$")


class ProtocolError(ValueError):
    """A message that does not follow the protocol. ``str(err)`` is one line naming the field."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))


#: Longest identifier a command may carry (``queue_id``, ``target``, ``telemetry_id``, ``run_id``,
#: ``partition_key``): :func:`make_queue_id` writes about 50 characters, a Dagster run id 36.
MAX_ID_CHARS = 200
#: Longest ``image`` reference (registry, path, tag and digest).
MAX_IMAGE_CHARS = 512
#: Kafka's own limits on a topic name: at most 249 characters of ``[A-Za-z0-9._-]``, not ``.``/``..``.
MAX_TOPIC_CHARS = 249
_TOPIC = re.compile(r"^[A-Za-z0-9._-]+$")
#: ArangoDB's limit on a collection name.
MAX_COLLECTION_CHARS = 256
#: Largest trade id a repair may name: a signed 64-bit integer, what the store holds.
MAX_TRADE_ID = 2**63 - 1
#: ``timestamp`` in epoch seconds: 2000-01-01 up to 2100-01-01 (a larger number is milliseconds).
TIMESTAMP_RANGE_S = (946_684_800.0, 4_102_444_800.0)
#: The last day of a ``time_range`` may be today (UTC) as seen by a clock this much ahead of the
#: validating machine's: a command written just after midnight elsewhere is not refused here.
CLOCK_SLACK_S = 3600.0
#: An error line quotes at most this many characters of the value it refuses (:func:`excerpt`).
EXCERPT_CHARS = 60


class _Refused(ValueError):
    """A validator's reason, naming the field it is about (``ranges[2]``) and the value it refuses.

    Pydantic keeps the exception in the error's context, so :func:`_one_line` can name that field even
    for a check of the whole command, whose error pydantic itself locates nowhere.
    """

    def __init__(self, field: str, reason: str, value: Any = ...) -> None:
        super().__init__(reason)
        self.field = field
        self.value = value


def task_types() -> frozenset[str]:
    """Every ``type`` a loader carries out: ``api_candles_<interval>`` and the trade task types."""
    return frozenset(f"api_candles_{i}" for i in INTERVALS) | frozenset(TRADE_TASK_TYPES)


def _today_utc() -> date:
    return datetime.fromtimestamp(now_s() + CLOCK_SLACK_S, UTC).date()


class Command(_Message):
    """A ``queue-control`` command addressed to one worker (``target``) about one task.

    **The one validator of commands**: ``streamforge validate-command``, the loader-producer (which
    decodes every message it consumes) and the queue-manager (which builds commands with
    ``Command(...)``) all go through this model, and it refuses, first, everything a loader would
    refuse of a command's content: what it accepts, a loader can run. A ``start`` command needs a
    ``type`` a loader has (``api_candles_<interval>`` of :data:`~.intervals.INTERVALS`,
    ``api_agg_trades``, ``api_trades``), a ``symbol`` and a ``time_range`` from
    :data:`~.intervals.FIRST_DAY` to today (UTC; a later day has not begun, so it has no data);
    ``ranges`` only on candle tasks and ``id_ranges`` only on trades tasks, each sorted,
    non-overlapping and inside the ``time_range``; ``market=usdm`` neither on ``1s`` nor on trades;
    ``source=archive`` only for intervals with daily archive files. ``stop`` and ``ping`` commands need
    only ``queue_id`` and ``target``; what they carry besides is checked the same way. Unknown
    fields are refused (a misspelt field silently dropped would change the task), strings are
    bounded, and an error is one line naming the field and quoting at most :data:`EXCERPT_CHARS`
    characters of the value. Built in code, a bad command raises the same one-line
    :class:`ProtocolError` as a decoded one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: CommandName
    queue_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    target: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    symbol: str | None = None
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
    #: are fetched, from REST; unset = the whole ``time_range``. See ``streamforge_pipelines.ledger``.
    ranges: list[tuple[StrictInt, StrictInt]] | None = None
    #: Targeted repair of a trades task (``api_agg_trades`` / ``api_trades``): only these id ranges
    #: ``[first_id, end_id)`` are fetched (``fromId`` pages, REST). See ``trades_ledger``.
    id_ranges: list[tuple[StrictInt, StrictInt]] | None = None

    def __init__(self, **data: Any) -> None:
        """Checked as a decoded command is; a bad one raises the same one-line :class:`ProtocolError`."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ProtocolError(_one_line("command", exc)) from None

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, v: str | None) -> str | None:
        if v is not None and (len(v) > 20 or not _SYMBOL.match(v.upper())):
            raise ValueError("expected an exchange symbol like BTCUSDT")
        return None if v is None else v.upper()

    @field_validator("type")
    @classmethod
    def _type(cls, v: str | None) -> str | None:
        if v is not None and v not in task_types():
            raise ValueError(
                f"no loader for this type; expected api_candles_<interval> ({', '.join(INTERVALS)}), "
                f"{' or '.join(TRADE_TASK_TYPES)}"
            )
        return v

    @field_validator("time_range")
    @classmethod
    def _time_range(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = _TIME_RANGE.match(v)
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
        if v == "usdm" and info.data.get("type") == "api_candles_1s":
            raise ValueError("USD-M futures have no 1s klines (1s candles exist only on spot)")
        if v not in (None, "spot") and info.data.get("type") in TRADE_TASK_TYPES:
            raise ValueError("the trades loader reads spot trades only")
        return v

    @field_validator("ranges")
    @classmethod
    def _ranges(cls, v: list[tuple[int, int]] | None, info: ValidationInfo) -> list[tuple[int, int]] | None:
        if v is None:
            return v
        task_type = info.data.get("type")
        if task_type is not None and not _CANDLE_TYPE.match(task_type):
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
        if task_type is not None and task_type not in TRADE_TASK_TYPES:
            raise ValueError(f"only {' and '.join(TRADE_TASK_TYPES)} tasks take id_ranges")
        if info.data.get("ranges") is not None:
            raise ValueError("a command takes ranges or id_ranges, not both")
        _check_ranges("id_ranges", v, (0, MAX_TRADE_ID), "trade ids", info.data.get("source"))
        return v

    @model_validator(mode="after")
    def _start_needs_a_task(self) -> Command:
        """A ``start`` command names a task a loader can carry out (the loaders refuse it otherwise)."""
        if self.command == "start":
            for name in ("type", "symbol", "time_range"):
                if getattr(self, name) is None:
                    raise _Refused(name, "required for a start command")
        return self

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


def _check_ranges(
    field: str, ranges: list[tuple[int, int]], span: tuple[int, int] | None, of: str, source: str | None
) -> None:
    """``[start, end)`` ranges of a repair: at least one, each non-empty, sorted without overlaps
    (touching is fine), inside ``span`` (``of`` what, for the message) when known; fetched from
    REST, so not with ``source=archive``."""
    if not ranges:
        raise _Refused(field, "a repair needs at least one range (unset it to load the whole time_range)", [])
    if source == "archive":
        raise _Refused(field, "a repair is fetched from REST: source must be rest or auto, not archive")
    prev_end = None
    for i, (a, b) in enumerate(ranges):
        where = f"{field}[{i}]"
        if a >= b:
            raise _Refused(where, "a range must end after it starts", [a, b])
        if prev_end is not None and a < prev_end:
            reason = f"ranges must be sorted and must not overlap (the one before ends at {prev_end})"
            raise _Refused(where, reason, [a, b])
        if span is not None and (a < span[0] or b > span[1]):
            raise _Refused(where, f"outside {of} [{span[0]}, {span[1]})", [a, b])
        prev_end = b


class PartitionCount(_Message):
    """Records a producer wrote to (or a consumer stored from) one partition of a data topic."""

    partition: int = Field(ge=0)
    records: int = Field(ge=0)
    offset: int | None = None


class ErrorInfo(_Message):
    type: str
    detail: str


class Event(_Message):
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

    @property
    def component(self) -> str:
        """``loader-api-candles`` for producer ``loader-api-candles__a1b2c3``."""
        return self.producer.split("__", 1)[0]


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters and marked ``… (N chars)`` when longer: an error
    line quotes a bounded part of what it refuses (a 1 MB field is not echoed back)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[:limit]}… ({size} chars)"


#: An error line names at most this many problems of one message, then how many more there are.
_MAX_PROBLEMS = 3


def _where(loc: tuple[int | str, ...]) -> str:
    """``ranges[0][1]`` for pydantic's ``("ranges", 0, 1)``; bounded (an unknown field's name can be long)."""
    out = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "<message>"
    return out if len(out) <= EXCERPT_CHARS else f"{out[:EXCERPT_CHARS]}…"


def _one_line(kind: str, exc: ValidationError) -> str:
    """``command.<field>: <reason>, got <excerpt>`` per problem, ``; ``-joined: one bounded line."""
    parts = []
    errors = exc.errors()
    for err in errors[:_MAX_PROBLEMS]:
        loc, got = _where(err["loc"]), err.get("input", ...)
        msg = err["msg"].removeprefix("Value error, ")
        refused = (err.get("ctx") or {}).get("error")
        if isinstance(refused, ProtocolError):  # Command.__init__'s line (validation calls __init__)
            parts.append(str(refused))
            continue
        if isinstance(refused, _Refused):  # a check of several fields names the one it is about
            loc, msg, got = refused.field, str(refused), refused.value
        if err["type"] == "missing":
            parts.append(f"{kind}.{loc}: required field is missing")
        elif err["type"] == "extra_forbidden":
            parts.append(f"{kind}.{loc}: unknown field, got {excerpt(got)}")
        elif got is ...:
            parts.append(f"{kind}.{loc}: {msg[:300]}")
        else:
            parts.append(f"{kind}.{loc}: {msg[:300]}, got {excerpt(got)}")
    if len(errors) > _MAX_PROBLEMS:
        parts.append(f"and {len(errors) - _MAX_PROBLEMS} more")
    return "; ".join(parts)


def _json_object(kind: str, raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` parsed as a JSON object, or a one-line :class:`ProtocolError` saying why not."""
    if isinstance(raw, bytes | str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"{kind}: not valid JSON ({exc})") from None
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"{kind}: expected a JSON object, got {type(raw).__name__}")
    return dict(raw)


def _decode(kind: str, model: type[_Message], raw: bytes | str | Mapping[str, Any]) -> Any:
    value = _json_object(kind, raw)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ProtocolError(_one_line(kind, exc)) from None


def decode_command(raw: bytes | str | Mapping[str, Any]) -> Command:
    """Parse a ``queue-control`` message; raises :class:`ProtocolError` naming the bad field."""
    return _decode("command", Command, raw)


def decode_event(raw: bytes | str | Mapping[str, Any]) -> Event:
    """Parse a ``queue-events`` message; raises :class:`ProtocolError` naming the bad field."""
    return _decode("event", Event, raw)


# ---- identifiers --------------------------------------------------------------------------------


def new_suffix() -> str:
    """The 6 hex digits shared by a task's ``queue_id`` and its workers' ``telemetry_id``."""
    return secrets.token_hex(3)


def make_queue_id(symbol: str, task_type: str, first_day: date, suffix: str | None = None) -> str:
    """``wf-btcusdt-api_candles_5m-20240801-a1b2c3``."""
    return f"wf-{symbol.lower()}-{task_type}-{first_day:%Y%m%d}-{suffix or new_suffix()}"


def queue_id_suffix(queue_id: str) -> str:
    return queue_id.rsplit("-", 1)[-1]


def make_producer_id(component: str, suffix: str) -> str:
    """``loader-api-candles__a1b2c3``."""
    return f"{component}__{suffix}"


def format_time_range(first: date, last: date) -> str:
    return f"{first:%Y-%m-%d}:{last:%Y-%m-%d}"


def parse_time_range(value: str) -> tuple[date, date]:
    """``2024-08-01:2024-08-07`` -> (first, last) days, both inclusive."""
    m = _TIME_RANGE.match(value)
    if not m:
        raise ValueError(f"expected YYYY-MM-DD:YYYY-MM-DD, got {value!r}")
    try:
        first, last = date.fromisoformat(m.group(1)), date.fromisoformat(m.group(2))
    except ValueError as exc:
        raise ValueError(f"{exc} in {value!r}") from None
    if last < first:
        raise ValueError(f"end day before start day in {value!r}")
    return first, last


def now_s() -> float:
    return time.time()


# ---- data records -------------------------------------------------------------------------------

RECORD_CANDLE = "candle"
RECORD_CANDLES = "candles"
RECORD_END = "end"

# What a data record may hold is what the store can hold: the connector writes what decodes, so
# anything the store would refuse (an int beyond SQLite's INTEGER: OverflowError) or store as if it
# were right (a NaN price, high < low) is refused here, with a one-line reason naming the field.

#: Largest time, id or count a data record may carry: SQLite's INTEGER is a signed 64-bit number.
MAX_RECORD_INT = 2**63 - 1
#: Most digits a decimal string (price, volume, quantity) has before and after its point, so at most
#: 41 characters: the exchange writes 8 decimals and at most about 12 digits before the point.
MAX_DECIMAL_DIGITS = 20
#: Longest ``source`` / ``queue_id`` of a data record (as a command's identifiers, :data:`MAX_ID_CHARS`).
MAX_RECORD_ID_CHARS = 200
#: The exchange's decimal strings: ASCII digits, then optionally a point and ASCII digits
#: (``"67890.12000000"``, ``"0.00000000"``, ``"7"``); no sign, exponent, NaN, spaces or separators.
DECIMAL_PATTERN = rf"[0-9]{{1,{MAX_DECIMAL_DIGITS}}}(?:\.[0-9]{{1,{MAX_DECIMAL_DIGITS}}})?"
_DECIMAL = re.compile(DECIMAL_PATTERN)
_NONZERO_DIGIT = re.compile(r"[1-9]")
_KNOWN_INTERVALS = frozenset(INTERVALS)
_ASCII_DIGITS = b"0123456789"


def _shape_table(point: bytes) -> bytes:
    """A ``bytes.translate`` table: ASCII digits to ``0``, ``,`` kept, ``.`` to ``point``, else ``x``."""
    table = bytearray(b"x" * 256)
    table[ord("0") : ord("9") + 1] = b"0" * 10
    table[ord(",")] = ord(",")
    table[ord(".")] = point[0]
    return bytes(table)


#: The shape of joined decimals (``"67890.12"`` -> ``"00000.00"``), and the same with points as ``,``.
_SHAPE = _shape_table(b".")
_FLAT_SHAPE = _shape_table(b",")
_LONG_RUN = b"0" * (MAX_DECIMAL_DIGITS + 1)
_INT_RANGE = "an integer from 0 to 2**63-1"


def _show(value: Any) -> str:
    """A bounded quote of a refused value: :func:`excerpt`, but a container by its size and a huge
    int by its bits (their ``repr`` can be long or fail)."""
    if isinstance(value, list | dict):
        return f"a {type(value).__name__} of {len(value)}"
    if type(value) is int and value.bit_length() > 128:
        return f"an int of {value.bit_length()} bits"
    return excerpt(value)


def _got(value: Any) -> str:
    return f"{type(value).__name__} {_show(value)}"


def _text_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid ``symbol`` / ``interval`` / ``source`` / ``queue_id`` of a data
    record (a non-empty str; an exchange symbol; a known interval; bounded), or None."""
    if type(value) is not str or not value:
        return f"expected a non-empty str, got {_got(value)}"
    if name == "symbol" and not _SYMBOL.fullmatch(value):
        return f"expected an exchange symbol like BTCUSDT (2-20 of A-Z, 0-9), got {excerpt(value)}"
    if name == "interval" and value not in _KNOWN_INTERVALS:
        return f"expected one of {', '.join(INTERVALS)}, got {excerpt(value)}"
    if len(value) > MAX_RECORD_ID_CHARS:
        return f"expected at most {MAX_RECORD_ID_CHARS} characters, got {excerpt(value)}"
    return None


def _int_problem(value: int) -> str | None:
    """Why a time, id or count (already an int) does not fit the store, or None."""
    return None if 0 <= value <= MAX_RECORD_INT else f"expected {_INT_RANGE}, got {_show(value)}"


def _decimal_problem(value: str, *, positive: bool) -> str | None:
    """Why ``value`` (already a str) is not a :data:`DECIMAL_PATTERN` decimal string (and, for a
    price, above zero), or None."""
    if not _DECIMAL.fullmatch(value):
        sign = "positive" if positive else "non-negative"
        return (
            f"expected a {sign} decimal string like 67890.12000000 (at most {MAX_DECIMAL_DIGITS} digits "
            f"before and after the point), got {excerpt(value)}"
        )
    if positive and not _NONZERO_DIGIT.search(value):
        return f"expected a positive price, got {excerpt(value)}"
    return None


def _price_order_problem(open_: str, high: str, low: str, close: str) -> tuple[str, str] | None:
    """``(field, reason)`` unless ``low <= open, close <= high`` (exact, as decimals), else None."""
    lo, hi = Decimal(low), Decimal(high)
    if lo > hi:
        return "high", f"{high} is below low {low}"
    if not lo <= Decimal(open_) <= hi:
        return "open", f"{open_} is outside [low, high] = [{low}, {high}]"
    if not lo <= Decimal(close) <= hi:
        return "close", f"{close} is outside [low, high] = [{low}, {high}]"
    return None


def _candle_problem(
    open_time: int,
    open_: str,
    high: str,
    low: str,
    close: str,
    volume: str,
    close_time: int,
    quote_volume: str,
    trades: int,
    taker_buy_base: str,
    taker_buy_quote: str,
) -> tuple[str, str] | None:
    """``(field, reason)`` of the first bad value of a candle whose fields have the right types, else
    None: the exact checks (:func:`check_candle_page` runs them in bulk first)."""
    if (problem := _int_problem(open_time)) is not None:
        return "open_time", problem
    if close_time < open_time:
        return "close_time", f"{_show(close_time)} is before open_time {open_time}"
    if (problem := _int_problem(close_time)) is not None:
        return "close_time", problem
    if (problem := _int_problem(trades)) is not None:
        return "trades", problem
    for name, value in (("open", open_), ("high", high), ("low", low), ("close", close)):
        if (problem := _decimal_problem(value, positive=True)) is not None:
            return name, problem
    amounts = (
        ("volume", volume),
        ("quote_volume", quote_volume),
        ("taker_buy_base", taker_buy_base),
        ("taker_buy_quote", taker_buy_quote),
    )
    for name, value in amounts:
        if (problem := _decimal_problem(value, positive=False)) is not None:
            return name, problem
    return _price_order_problem(open_, high, low, close)


def _joined_decimals(joined: bytes) -> bool:
    """Whether every field of ``joined`` (strings joined by ``,``, ASCII) matches
    :data:`DECIMAL_PATTERN`, in a few C-level passes instead of a regex match per value: with digits
    as ``0`` and points as ``,`` only ``0`` and ``,`` remain, never two ``,`` in a row nor one at
    either end (no empty field, a point only between digits), no run of more than
    :data:`MAX_DECIMAL_DIGITS` digits; without its digits, no field has two points."""
    flat = joined.translate(_FLAT_SHAPE)
    return (
        b"x" not in flat
        and b",," not in flat
        and flat[:1] == b"0"
        and flat[-1:] == b"0"
        and _LONG_RUN not in flat
        and b".." not in joined.translate(None, _ASCII_DIGITS)
    )


def _joined_positive(joined: bytes) -> bool:
    """Whether no field of ``joined`` (decimals joined by ``,``) is zero: each keeps a digit 1-9."""
    nonzero = joined.translate(None, b"0.")
    return b",," not in nonzero and nonzero[:1] not in (b"", b",") and nonzero[-1:] != b","


def _joined(column: Iterable[Any]) -> bytes | None:
    """Page column(s) of strings joined by ``,`` as ASCII bytes; None if one is not an ASCII str."""
    try:
        return ",".join(column).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        return None


def _prices_ok(open_: Sequence[Any], high: Sequence[Any], low: Sequence[Any], close: Sequence[Any]) -> bool:
    """The four price columns of a candle page in bulk: decimals, above zero, ``low <= open, close <=
    high`` in every row, by string comparison, which is exact where it is used: the columns joined
    have the same shape (digits as ``0``), so the four prices of each row have the same length and
    point position. False (the caller then checks row by row, exactly, as decimals) for a page whose
    prices are not all like that, e.g. a row from 9999.5 to 10000.5."""
    joined = [_joined(column) for column in (open_, high, low, close)]
    if None in joined:
        return False
    shape = joined[0].translate(_SHAPE)  # type: ignore[union-attr]
    return (
        all(text.translate(_SHAPE) == shape for text in joined[1:])  # type: ignore[union-attr]
        and _joined_decimals(joined[0])  # type: ignore[arg-type]
        and _joined_positive(joined[2])  # type: ignore[arg-type]
        and all(map(le, low, open_))
        and all(map(le, open_, high))
        and all(map(le, low, close))
        and all(map(le, close, high))
    )


#: Candle fields and their JSON types, in the order of Binance's kline array.
CANDLE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "symbol": str,
    "interval": str,
    "open_time": int,
    "open": str,
    "high": str,
    "low": str,
    "close": str,
    "volume": str,
    "close_time": int,
    "quote_volume": str,
    "trades": int,
    "taker_buy_base": str,
    "taker_buy_quote": str,
    "source": str,
    "queue_id": str,
}


def candle_key(symbol: str, interval: str, open_time: int) -> str:
    """Deterministic document key: ``BTCUSDT:5m:1722470400000``."""
    return f"{symbol}:{interval}:{open_time}"


def candle_from_kline(
    row: list[Any], symbol: str, interval: str, source: str, queue_id: str
) -> dict[str, Any]:
    """A data record from one 12-field Binance kline array (decimal strings kept as strings)."""
    return {
        "record": RECORD_CANDLE,
        "symbol": symbol,
        "interval": interval,
        "open_time": row[0],
        "open": row[1],
        "high": row[2],
        "low": row[3],
        "close": row[4],
        "volume": row[5],
        "close_time": row[6],
        "quote_volume": row[7],
        "trades": row[8],
        "taker_buy_base": row[9],
        "taker_buy_quote": row[10],
        "source": source,
        "queue_id": queue_id,
    }


#: Fields of one row of a candle page: Binance's kline array without its unused 12th field.
PAGE_ROW_FIELDS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base",
    "taker_buy_quote",
)
_PAGE_ROW_LEN = len(PAGE_ROW_FIELDS)
_PAGE_INT_AT = (0, 6, 8)
_PAGE_HEADER = ("symbol", "interval", "source", "queue_id")


def candle_page(
    rows: Sequence[Sequence[Any]], symbol: str, interval: str, source: str, queue_id: str
) -> dict[str, Any]:
    """A ``candles`` record: one page of kline arrays of one symbol and interval."""
    return {
        "record": RECORD_CANDLES,
        "symbol": symbol,
        "interval": interval,
        "source": source,
        "queue_id": queue_id,
        # REST rows carry a 12th unused field; archive rows come without it
        "rows": rows if not rows or len(rows[0]) == _PAGE_ROW_LEN else [row[:_PAGE_ROW_LEN] for row in rows],
    }


def check_candle_page(value: dict[str, Any]) -> tuple[str, str, str, str, list[list[Any]]]:
    """Validate a ``candles`` record; ``(symbol, interval, source, queue_id, rows)`` or a one-line
    :class:`ProtocolError` naming the first bad field and quoting at most a bounded excerpt of it.

    A page holds what the store can hold: an exchange symbol, a known interval, ``source`` and
    ``queue_id`` of at most :data:`MAX_RECORD_ID_CHARS` characters; rows of 11 fields whose times and
    trade count are integers from 0 to 2**63-1 with ``close_time >= open_time`` and open times
    increasing from row to row (one candle per key, as the exchange pages them), whose prices are
    positive and volumes non-negative decimal strings (:data:`DECIMAL_PATTERN`, at most
    :data:`MAX_DECIMAL_DIGITS` digits before and after the point) with ``low <= open, close <= high``.

    Checks run as bulk passes over the columns (C-level ``map``/``min``/``max``; the decimal columns
    joined, translated and scanned as bytes; prices compared as strings where that is exact) and only
    when a pass cannot clear the page walk the rows with the exact checks (:func:`_candle_problem`),
    which name the culprit, or find none (a page with a row whose prices differ in length, e.g. from
    9999.5 to 10000.5, is valid, only slower to check). A valid page costs well under a microsecond
    per candle more than checking types alone (``python -m bench.record_check``).
    """
    header = _record_header("candles", value, _PAGE_HEADER)
    rows = value.get("rows")
    if type(rows) is not list:
        raise ProtocolError(f"candles.rows: expected a list of kline arrays, got {_got(rows)}")
    if rows and not _page_rows_ok(rows):
        problem = _bad_page_row(rows)
        if problem is not None:
            raise ProtocolError(problem)
    return header[0], header[1], header[2], header[3], rows


def _record_header(kind: str, value: Mapping[str, Any], names: tuple[str, ...]) -> list[str]:
    """The header strings of a page (``symbol``, ``interval`` / ``kind``, ``source``, ``queue_id``),
    each checked by :func:`_text_problem`; a :class:`ProtocolError` naming the first bad one."""
    out = []
    for name in names:
        v = value.get(name)
        if (problem := _text_problem(name, v)) is not None:
            raise ProtocolError(f"{kind}.{name}: {problem}")
        out.append(v)
    return out


def _page_rows_ok(rows: list[Any]) -> bool:
    """Whether the bulk passes clear every row of a non-empty candle page (:func:`check_candle_page`)."""
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {_PAGE_ROW_LEN}:
        return False
    opens, o, h, lo, c, v, closes, q, trades, tb, tq = zip(*rows, strict=True)
    if set(map(type, chain(opens, closes, trades))) != {int}:
        return False
    if not (
        min(opens) >= 0
        and max(closes) <= MAX_RECORD_INT
        and all(map(le, opens, closes))
        and all(map(lt, opens, opens[1:]))
        and min(trades) >= 0
        and max(trades) <= MAX_RECORD_INT
    ):
        return False
    amounts = _joined(chain(v, q, tb, tq))
    return amounts is not None and _joined_decimals(amounts) and _prices_ok(o, h, lo, c)


def page_docs(
    symbol: str, interval: str, source: str, queue_id: str, rows: Sequence[Sequence[Any]]
) -> list[dict[str, Any]]:
    """The store documents (with ``key``) of the rows of a checked candle page."""
    prefix = f"{symbol}:{interval}:"
    return [
        {
            "symbol": symbol,
            "interval": interval,
            "open_time": r[0],
            "open": r[1],
            "high": r[2],
            "low": r[3],
            "close": r[4],
            "volume": r[5],
            "close_time": r[6],
            "quote_volume": r[7],
            "trades": r[8],
            "taker_buy_base": r[9],
            "taker_buy_quote": r[10],
            "source": source,
            "queue_id": queue_id,
            "key": f"{prefix}{r[0]}",
        }
        for r in rows
    ]


def validate_candle_page(value: dict[str, Any]) -> list[dict[str, Any]]:
    """The store documents of a ``candles`` record (:func:`check_candle_page`, :func:`page_docs`)."""
    return page_docs(*check_candle_page(value))


def _bad_page_row(rows: list[Any]) -> str | None:
    """The one-line reason the first bad row of a page is bad (exact checks, row by row), or None
    when every row is valid after all."""
    for i, r in enumerate(rows):
        if type(r) is not list or len(r) != _PAGE_ROW_LEN:
            got = f"{len(r)}" if type(r) is list else _got(r)
            return f"candles.rows[{i}]: expected a kline array of {_PAGE_ROW_LEN} fields, got {got}"
        for at, name in enumerate(PAGE_ROW_FIELDS):
            want = int if at in _PAGE_INT_AT else str
            if type(r[at]) is not want:
                return f"candles.rows[{i}].{name}: expected {want.__name__}, got {_got(r[at])}"
        if (found := _candle_problem(*r)) is not None:
            return f"candles.rows[{i}].{found[0]}: {found[1]}"
        if i and r[0] <= rows[i - 1][0]:
            before = rows[i - 1][0]
            return f"candles.rows[{i}].open_time: {r[0]} does not follow {before} (open times must increase)"
    return None


def end_marker(queue_id: str, producer: str, partition: int, records: int) -> dict[str, Any]:
    """The last record a loader writes for its task to one partition."""
    return {
        "record": RECORD_END,
        "schema_version": SCHEMA_VERSION,
        "queue_id": queue_id,
        "producer": producer,
        "partition": partition,
        "records": records,
        "timestamp": now_s(),
    }


def encode_record(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(record)


def decode_record(raw: bytes, *, page_as_docs: bool = True) -> dict[str, Any]:
    """Parse a data-topic value; raises :class:`ProtocolError` naming the bad field.

    Returns the end marker, the store document of a ``candle`` (with ``key``), for a page
    ``{"record": "candles", "queue_id": ..., "docs": [store documents]}``, and for a trades page
    ``{"record": "trades", "queue_id": ..., "kind": "agg" | "trade", "docs": [store documents]}``.
    With ``page_as_docs=False`` a candle page comes as ``{"record": "candles", "queue_id": ...,
    "page": (symbol, interval, source, queue_id, rows), "count": n}``: checked, but no documents
    built, for :meth:`~streamforge_pipelines.store.base.Store.upsert_candle_pages`.
    """
    value = _json_object("record", raw)
    kind = value.get("record", RECORD_CANDLE)
    if kind == RECORD_END:
        return _check_end_marker(value)
    if kind == RECORD_CANDLES:
        page = check_candle_page(value)
        if not page_as_docs:
            return {"record": RECORD_CANDLES, "queue_id": page[3], "page": page, "count": len(page[4])}
        return {"record": RECORD_CANDLES, "queue_id": page[3], "docs": page_docs(*page)}
    if kind == RECORD_TRADES:
        docs = validate_trade_page(value)
        return {"record": RECORD_TRADES, "queue_id": value["queue_id"], "kind": value["kind"], "docs": docs}
    if kind != RECORD_CANDLE:
        raise ProtocolError(f"record.record: unknown record kind {_show(kind)}")
    return validate_candle(value)


def _check_end_marker(value: dict[str, Any]) -> dict[str, Any]:
    """An end marker with a valid ``queue_id`` and integer ``partition`` / ``records`` (the connector
    acknowledges it on ``queue-events`` with them)."""
    for name in ("queue_id", "partition", "records"):
        if name not in value:
            raise ProtocolError(f"end.{name}: required field is missing")
    if (problem := _text_problem("queue_id", value["queue_id"])) is not None:
        raise ProtocolError(f"end.queue_id: {problem}")
    for name in ("partition", "records"):
        v = value[name]
        if type(v) is not int or not 0 <= v <= MAX_RECORD_INT:
            raise ProtocolError(f"end.{name}: expected {_INT_RANGE}, got {_got(v)}")
    return value


def validate_candle(value: dict[str, Any]) -> dict[str, Any]:
    """Check a ``candle`` record as :func:`check_candle_page` checks a page's header and rows (each
    value, one at a time); returns the store document (with ``key``)."""
    doc: dict[str, Any] = {}
    for name, typ in CANDLE_FIELDS.items():
        v = value.get(name)
        if v is None:
            raise ProtocolError(f"candle.{name}: required field is missing")
        if type(v) is not typ:
            raise ProtocolError(f"candle.{name}: expected {typ.__name__}, got {_got(v)}")
        if name in _PAGE_HEADER and (problem := _text_problem(name, v)) is not None:
            raise ProtocolError(f"candle.{name}: {problem}")
        doc[name] = v
    if (found := _candle_problem(*(doc[name] for name in PAGE_ROW_FIELDS))) is not None:
        raise ProtocolError(f"candle.{found[0]}: {found[1]}")
    doc["key"] = candle_key(doc["symbol"], doc["interval"], doc["open_time"])
    return doc


# ---- trades (aggTrades and trades) --------------------------------------------------------------

RECORD_TRADES = "trades"
#: Task type -> trade kind: ``api_agg_trades`` (``/api/v3/aggTrades``) and ``api_trades``
#: (``/api/v3/historicalTrades``).
TRADE_TASK_TYPES: dict[str, str] = {"api_agg_trades": "agg", "api_trades": "trade"}
TRADE_KINDS: tuple[str, ...] = ("agg", "trade")
#: Fields of one row of a trades page of each kind (the exchange's element, in this order).
AGG_ROW_FIELDS: tuple[str, ...] = (
    "id",
    "price",
    "qty",
    "first_trade_id",
    "last_trade_id",
    "time",
    "is_buyer_maker",
)
TRADE_ROW_FIELDS: tuple[str, ...] = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker")
#: Per kind: row length, positions of the int columns, of the decimal-string columns, of the bool.
_TRADE_ROW_SHAPE: dict[str, tuple[int, tuple[int, ...], tuple[int, ...], int]] = {
    "agg": (7, (0, 3, 4, 5), (1, 2), 6),
    "trade": (6, (0, 4), (1, 2, 3), 5),
}
_TRADE_HEADER = ("symbol", "kind", "source", "queue_id")


def trade_key(symbol: str, kind: str, trade_id: int) -> str:
    """Deterministic document key: ``BTCUSDT:agg:123456`` / ``BTCUSDT:trade:123456``."""
    return f"{symbol}:{kind}:{trade_id}"


def trade_page(
    rows: Sequence[Sequence[Any]], symbol: str, kind: str, source: str, queue_id: str
) -> dict[str, Any]:
    """A ``trades`` record: one page of trade rows (:data:`AGG_ROW_FIELDS` / :data:`TRADE_ROW_FIELDS`)."""
    return {
        "record": RECORD_TRADES,
        "symbol": symbol,
        "kind": kind,
        "source": source,
        "queue_id": queue_id,
        "rows": [list(r) for r in rows],
    }


def validate_trade_page(value: dict[str, Any]) -> list[dict[str, Any]]:
    """The store documents of a ``trades`` record; :class:`ProtocolError` naming the first bad field.

    Checked as :func:`check_candle_page` checks candles, in bulk passes over the columns first: an
    exchange symbol, a known ``kind``, bounded ``source`` / ``queue_id``; ids, trade ids and times
    integers from 0 to 2**63-1, ids strictly increasing (a page is consecutive ids in id order),
    ``first_trade_id <= last_trade_id``; a positive ``price`` and non-negative ``qty`` /
    ``quote_qty`` (:data:`DECIMAL_PATTERN`);
    ``is_buyer_maker`` a bool. A document has the fields of
    :data:`streamforge_pipelines.store.base.TRADE_FIELDS`; the kind's absent fields are ``None``
    (``quote_qty`` of an aggregate trade, ``first_trade_id`` / ``last_trade_id`` of a trade).
    """
    symbol, kind, source, queue_id = _record_header("trades", value, _TRADE_HEADER)
    if kind not in _TRADE_ROW_SHAPE:
        raise ProtocolError(f"trades.kind: expected one of {', '.join(TRADE_KINDS)}, got {excerpt(kind)}")
    rows = value.get("rows")
    if type(rows) is not list:
        raise ProtocolError(f"trades.rows: expected a list of trade arrays, got {_got(rows)}")
    if rows and not _trade_rows_ok(rows, kind):
        problem = _bad_trade_row(rows, kind)
        if problem is not None:
            raise ProtocolError(problem)
    prefix = f"{symbol}:{kind}:"
    if kind == "agg":
        return [
            {
                "key": f"{prefix}{r[0]}",
                "symbol": symbol,
                "kind": kind,
                "id": r[0],
                "price": r[1],
                "qty": r[2],
                "quote_qty": None,
                "first_trade_id": r[3],
                "last_trade_id": r[4],
                "time": r[5],
                "is_buyer_maker": r[6],
                "source": source,
                "queue_id": queue_id,
            }
            for r in rows
        ]
    return [
        {
            "key": f"{prefix}{r[0]}",
            "symbol": symbol,
            "kind": kind,
            "id": r[0],
            "price": r[1],
            "qty": r[2],
            "quote_qty": r[3],
            "first_trade_id": None,
            "last_trade_id": None,
            "time": r[4],
            "is_buyer_maker": r[5],
            "source": source,
            "queue_id": queue_id,
        }
        for r in rows
    ]


def _trade_rows_ok(rows: list[Any], kind: str) -> bool:
    """Whether the bulk passes clear every row of a non-empty trades page (:func:`validate_trade_page`)."""
    size, int_at, str_at, bool_at = _TRADE_ROW_SHAPE[kind]
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {size}:
        return False
    cols = list(zip(*rows, strict=True))
    ints = [cols[at] for at in int_at]
    if set(map(type, chain.from_iterable(ints))) != {int} or set(map(type, cols[bool_at])) != {bool}:
        return False
    ids = cols[0]
    if not (
        min(map(min, ints)) >= 0
        and max(map(max, ints)) <= MAX_RECORD_INT
        and all(map(lt, ids, ids[1:]))
        and (kind != "agg" or all(map(le, cols[3], cols[4])))
    ):
        return False
    price, amounts = _joined(cols[str_at[0]]), _joined(chain.from_iterable(cols[at] for at in str_at[1:]))
    return (
        price is not None
        and amounts is not None
        and _joined_decimals(price)
        and _joined_positive(price)
        and _joined_decimals(amounts)
    )


def _bad_trade_row(rows: list[Any], kind: str) -> str | None:
    """The one-line reason the first bad row of a trades page is bad (exact checks, row by row), or
    None when every row is valid after all."""
    size, int_at, str_at, bool_at = _TRADE_ROW_SHAPE[kind]
    names = AGG_ROW_FIELDS if kind == "agg" else TRADE_ROW_FIELDS
    for i, r in enumerate(rows):
        if type(r) is not list or len(r) != size:
            got = f"{len(r)}" if type(r) is list else _got(r)
            return f"trades.rows[{i}]: expected a {kind} array of {size} fields, got {got}"
        for at, name in enumerate(names):
            want = int if at in int_at else bool if at == bool_at else str
            if type(r[at]) is not want:
                return f"trades.rows[{i}].{name}: expected {want.__name__}, got {_got(r[at])}"
        for at in int_at:
            if (problem := _int_problem(r[at])) is not None:
                return f"trades.rows[{i}].{names[at]}: {problem}"
        if i and r[0] <= rows[i - 1][0]:
            return f"trades.rows[{i}].id: {r[0]} does not follow {rows[i - 1][0]} (ids must increase)"
        if kind == "agg" and r[3] > r[4]:
            return f"trades.rows[{i}].last_trade_id: {r[4]} is before first_trade_id {r[3]}"
        for at in str_at:
            if (problem := _decimal_problem(r[at], positive=at == str_at[0])) is not None:
                return f"trades.rows[{i}].{names[at]}: {problem}"
    return None
