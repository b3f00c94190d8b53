"""Every message StreamForge puts on Kafka: commands, telemetry events and data records.

``queue-control`` carries :class:`Command`, ``queue-events`` carries :class:`Event`, data topics carry
candle records and end markers. The fields of the original design are kept as they were; the
additions are ``schema_version``, ``run_id``, ``partition_key``, ``weight_share`` (commands) and
``event_id``, ``partitions``, ``error``, ``http_429``, ``http_418``, ``retries``,
``weight_used_peak`` (events). Messages written before those fields existed still parse.

Encoding is JSON via orjson. Decoding errors are :class:`ProtocolError` whose message is one line
naming the field and the reason, e.g. ``command.time_range: expected YYYY-MM-DD:YYYY-MM-DD, got '2024'``.

Candle records are the hot path (hundreds of thousands per second), so they are plain dicts checked
by :func:`validate_candle` instead of going through pydantic.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import date
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION = 1

CommandName = Literal["start", "stop", "ping"]
Status = Literal["pending", "started", "loading", "finished", "error", "interrupted"]

#: Producer component names (the part of ``producer`` / ``telemetry_id`` before ``__``).
LOADER_PRODUCER = "loader-producer"
LOADER_CANDLES = "loader-api-candles"
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


class Command(_Message):
    """A ``queue-control`` command addressed to one worker (``target``) about one task."""

    command: CommandName
    queue_id: str = Field(min_length=1)
    target: str = Field(min_length=1)
    symbol: str | None = None
    type: str | None = None
    time_range: str | None = None
    kafka_topic: str | None = None
    collection_name: str | None = None
    telemetry_id: str | None = None
    image: str | None = None
    timestamp: float | str | None = None
    schema_version: int = SCHEMA_VERSION
    run_id: str | None = None
    partition_key: str | None = None
    #: Share (0-1] of the exchange's per-IP weight limit this task may use (docs/rate-limits.md).
    weight_share: float | None = Field(default=None, gt=0, le=1)
    #: Where a candle task reads its days from: ``auto`` (closed days from the bulk archive, the
    #: recent tail from REST), ``rest`` or ``archive`` (archive only). Unset = ``rest``, what a
    #: command meant before there was a choice; the queue-manager always sets it.
    source: Literal["auto", "rest", "archive"] | None = None

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, v: str | None) -> str | None:
        if v is not None and not _SYMBOL.match(v.upper()):
            raise ValueError(f"expected an exchange symbol like BTCUSDT, got {v!r}")
        return None if v is None else v.upper()

    @field_validator("time_range")
    @classmethod
    def _time_range(cls, v: str | None) -> str | None:
        if v is not None:
            parse_time_range(v)
        return v

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v > SCHEMA_VERSION:
            raise ValueError(f"schema_version {v} is newer than this worker understands ({SCHEMA_VERSION})")
        return v

    def days(self) -> tuple[date, date]:
        """First and last day (inclusive) of ``time_range``."""
        if self.time_range is None:
            raise ProtocolError("command.time_range: required for this command")
        return parse_time_range(self.time_range)

    def interval(self) -> str:
        """The candle interval of an ``api_candles_<interval>`` task."""
        m = _CANDLE_TYPE.match(self.type or "")
        if not m:
            raise ProtocolError(f"command.type: expected api_candles_<interval>, got {self.type!r}")
        return m.group(1)


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
    retries: int | None = None
    weight_used_peak: float | None = None
    #: Days a candle loader read from each source, e.g. ``{"archive": 28, "rest": 2}``.
    days_by_source: dict[str, int] | None = None

    @property
    def component(self) -> str:
        """``loader-api-candles`` for producer ``loader-api-candles__a1b2c3``."""
        return self.producer.split("__", 1)[0]


def _one_line(kind: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<message>"
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        if err["type"] == "missing":
            parts.append(f"{kind}.{loc}: required field is missing")
        elif isinstance(got, str | int | float | bool) and "got" not in msg:
            parts.append(f"{kind}.{loc}: {msg}, got {got!r}")
        else:
            parts.append(f"{kind}.{loc}: {msg}")
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
RECORD_END = "end"

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


def decode_record(raw: bytes) -> dict[str, Any]:
    """Parse a data-topic value into a dict with a ``record`` kind; raises :class:`ProtocolError`."""
    value = _json_object("record", raw)
    kind = value.get("record", RECORD_CANDLE)
    if kind == RECORD_END:
        for name in ("queue_id", "partition", "records"):
            if name not in value:
                raise ProtocolError(f"end.{name}: required field is missing")
        return value
    if kind != RECORD_CANDLE:
        raise ProtocolError(f"record.record: unknown record kind {kind!r}")
    return validate_candle(value)


def validate_candle(value: dict[str, Any]) -> dict[str, Any]:
    """Check a candle record's fields and types; returns the store document (with ``key``)."""
    doc: dict[str, Any] = {}
    for name, typ in CANDLE_FIELDS.items():
        v = value.get(name)
        if v is None:
            raise ProtocolError(f"candle.{name}: required field is missing")
        if type(v) is not typ and not (typ is int and type(v) is int):
            raise ProtocolError(f"candle.{name}: expected {typ.__name__}, got {type(v).__name__} {v!r}")
        doc[name] = v
    if doc["open_time"] < 0 or doc["close_time"] < doc["open_time"]:
        raise ProtocolError(f"candle.close_time: {doc['close_time']} is before open_time {doc['open_time']}")
    doc["key"] = candle_key(doc["symbol"], doc["interval"], doc["open_time"])
    return doc
