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

Trades travel the same way: ``trades`` pages (:func:`trade_page`, :func:`validate_trade_page`) of
aggregate trades or trades of one symbol, for the ``api_agg_trades`` / ``api_trades`` tasks (whose
commands may carry ``id_ranges``: a repair of those ids only).
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from itertools import chain, pairwise
from operator import itemgetter
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

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
    #: Which market a candle task loads: ``spot`` or ``usdm`` (USD-M futures: ``/fapi/v1`` klines,
    #: ``futures/um`` archive files, no ``1s``). Unset = ``spot``, what a command meant before.
    market: Literal["spot", "usdm"] | None = None
    #: Targeted repair: only these open-time ranges ``[start_ms, end_ms)`` (inside ``time_range``)
    #: are fetched, from REST; unset = the whole ``time_range``. See ``streamforge_pipelines.ledger``.
    ranges: list[tuple[int, int]] | None = None
    #: Targeted repair of a trades task (``api_agg_trades`` / ``api_trades``): only these id ranges
    #: ``[first_id, end_id)`` are fetched (``fromId`` pages, REST). See ``trades_ledger``.
    id_ranges: list[tuple[int, int]] | None = None

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, v: str | None) -> str | None:
        if v is not None and not _SYMBOL.match(v.upper()):
            raise ValueError(f"expected an exchange symbol like BTCUSDT, got {v!r}")
        return None if v is None else v.upper()

    @field_validator("market")
    @classmethod
    def _market(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v == "usdm" and info.data.get("type") == "api_candles_1s":
            raise ValueError("USD-M futures have no 1s klines (1s candles exist only on spot)")
        return v

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

    def trade_kind(self) -> str:
        """``agg`` for an ``api_agg_trades`` task, ``trade`` for ``api_trades``."""
        kind = TRADE_TASK_TYPES.get(self.type or "")
        if kind is None:
            raise ProtocolError(f"command.type: expected api_agg_trades or api_trades, got {self.type!r}")
        return kind


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
RECORD_CANDLES = "candles"
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
_PAGE_STR_AT = (1, 2, 3, 4, 5, 7, 9, 10)
_page_ints = itemgetter(*_PAGE_INT_AT)
_page_strs = itemgetter(*_PAGE_STR_AT)
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


_INTERVAL = re.compile(r"^[1-9][0-9]{0,2}[smhdwM]$")


def check_candle_page(value: dict[str, Any]) -> tuple[str, str, str, str, list[list[Any]]]:
    """Validate a ``candles`` record; ``(symbol, interval, source, queue_id, rows)`` or a one-line
    :class:`ProtocolError` naming the first bad field.

    Checks run as bulk passes over the page (types of every integer and string column, close after
    open) and only on failure walk the rows to name the culprit, so a valid page costs well under a
    microsecond per candle.
    """
    for name in _PAGE_HEADER:
        v = value.get(name)
        if type(v) is not str or not v:
            raise ProtocolError(f"candles.{name}: expected a non-empty str, got {v!r}")
    symbol, interval, source, queue_id = (value[n] for n in _PAGE_HEADER)
    if not _SYMBOL.match(symbol):
        raise ProtocolError(f"candles.symbol: expected an exchange symbol like BTCUSDT, got {symbol!r}")
    if not _INTERVAL.match(interval):
        raise ProtocolError(f"candles.interval: expected an interval like 1m, got {interval!r}")
    rows = value.get("rows")
    if type(rows) is not list:
        raise ProtocolError(f"candles.rows: expected a list of kline arrays, got {type(rows).__name__}")
    ok = all(type(r) is list and len(r) == _PAGE_ROW_LEN for r in rows)
    if ok and rows:
        ok = set(map(type, chain.from_iterable(map(_page_ints, rows)))) == {int} and set(
            map(type, chain.from_iterable(map(_page_strs, rows)))
        ) == {str}
        ok = ok and all(0 <= r[0] <= r[6] for r in rows)
    if not ok:
        raise ProtocolError(_bad_page_row(rows))
    return symbol, interval, source, queue_id, rows


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


def _bad_page_row(rows: list[Any]) -> str:
    """The one-line reason the first bad row of a page is bad."""
    for i, r in enumerate(rows):
        if type(r) is not list or len(r) != _PAGE_ROW_LEN:
            got = len(r) if type(r) is list else type(r).__name__
            return f"candles.rows[{i}]: expected a kline array of {_PAGE_ROW_LEN} fields, got {got}"
        for at, name in enumerate(PAGE_ROW_FIELDS):
            want = int if at in _PAGE_INT_AT else str
            if type(r[at]) is not want:
                got = f"{type(r[at]).__name__} {r[at]!r}"
                return f"candles.rows[{i}].{name}: expected {want.__name__}, got {got}"
        if not 0 <= r[0] <= r[6]:
            return f"candles.rows[{i}].close_time: {r[6]} is before open_time {r[0]}"
    return "candles.rows: invalid"


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
        for name in ("queue_id", "partition", "records"):
            if name not in value:
                raise ProtocolError(f"end.{name}: required field is missing")
        return value
    if kind == RECORD_CANDLES:
        page = check_candle_page(value)
        if not page_as_docs:
            return {"record": RECORD_CANDLES, "queue_id": page[3], "page": page, "count": len(page[4])}
        return {"record": RECORD_CANDLES, "queue_id": page[3], "docs": page_docs(*page)}
    if kind == RECORD_TRADES:
        docs = validate_trade_page(value)
        return {"record": RECORD_TRADES, "queue_id": value["queue_id"], "kind": value["kind"], "docs": docs}
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

    Bulk passes like :func:`validate_candle_page`: types of every int, string and bool column, then
    ids strictly increasing (a page is consecutive ids in id order). A document has the fields of
    :data:`streamforge_pipelines.store.base.TRADE_FIELDS`; the kind's absent fields are ``None``
    (``quote_qty`` of an aggregate trade, ``first_trade_id`` / ``last_trade_id`` of a trade).
    """
    for name in _TRADE_HEADER:
        v = value.get(name)
        if type(v) is not str or not v:
            raise ProtocolError(f"trades.{name}: expected a non-empty str, got {v!r}")
    kind = value["kind"]
    if kind not in _TRADE_ROW_SHAPE:
        raise ProtocolError(f"trades.kind: expected one of {', '.join(TRADE_KINDS)}, got {kind!r}")
    size, int_at, str_at, bool_at = _TRADE_ROW_SHAPE[kind]
    rows = value.get("rows")
    if type(rows) is not list:
        raise ProtocolError(f"trades.rows: expected a list of trade arrays, got {type(rows).__name__}")
    ok = all(type(r) is list and len(r) == size for r in rows)
    if ok and rows:
        ints, strs = itemgetter(*int_at), itemgetter(*str_at)
        ok = (
            set(map(type, chain.from_iterable(map(ints, rows)))) == {int}
            and set(map(type, chain.from_iterable(map(strs, rows)))) == {str}
            and {type(r[bool_at]) for r in rows} == {bool}
            and all(r[0] >= 0 for r in rows[:1])
            and all(a[0] < b[0] for a, b in pairwise(rows))
        )
    if not ok:
        raise ProtocolError(_bad_trade_row(rows, kind))
    symbol, _, source, queue_id = (value[n] for n in _TRADE_HEADER)
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


def _bad_trade_row(rows: Any, kind: str) -> str:
    """The one-line reason the first bad row of a trades page is bad."""
    size, int_at, _, bool_at = _TRADE_ROW_SHAPE[kind]
    names = AGG_ROW_FIELDS if kind == "agg" else TRADE_ROW_FIELDS
    if type(rows) is not list:
        return "trades.rows: expected a list"
    for i, r in enumerate(rows):
        if type(r) is not list or len(r) != size:
            got = len(r) if type(r) is list else type(r).__name__
            return f"trades.rows[{i}]: expected a {kind} array of {size} fields, got {got}"
        for at, name in enumerate(names):
            want = int if at in int_at else bool if at == bool_at else str
            if type(r[at]) is not want:
                got = f"{type(r[at]).__name__} {r[at]!r}"
                return f"trades.rows[{i}].{name}: expected {want.__name__}, got {got}"
        if r[0] < 0:
            return f"trades.rows[{i}].id: negative id {r[0]}"
        if i and r[0] <= rows[i - 1][0]:
            return f"trades.rows[{i}].id: {r[0]} does not follow {rows[i - 1][0]} (ids must increase)"
    return "trades.rows: invalid"
