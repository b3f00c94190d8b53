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

**Layout, by role.** The protocol is the kernel's: it imports only :mod:`~streamforge_pipelines.intervals`
and the standard, pydantic and orjson libraries. Its modules, each importing only those listed
before it (no cycle):

* :mod:`.errors` — :class:`ProtocolError`, :func:`excerpt` (the bounded quote of a refused value)
  and ``json_object``, the first step of every decoder;
* :mod:`.ids` — what every message carries besides its content: ``SCHEMA_VERSION``, component
  names, queue and producer ids, time ranges, :func:`now_s`;
* :mod:`.checks` — the value checks the data records share (decimal strings, store integers,
  header texts, the bulk passes over joined columns) and how a refused value is quoted;
* :mod:`.messages` — the pydantic base of commands and events and the one-line rendering of a
  pydantic validation error;
* :mod:`.commands` — :class:`Command` and its validators, the task types (and the registry of
  datasets' task types), :func:`decode_command`;
* :mod:`.events` — :class:`Event`, :class:`PartitionCount`, :class:`ErrorInfo`, :func:`decode_event`;
* :mod:`.live` — the stream task types, the stream workers' names and the ``book`` page codec
  (imported by :mod:`.commands`, it comes before it);
* :mod:`.candles` — the candle page and record codec (build, check, store documents, key);
* :mod:`.trades` — the trades page codec;
* :mod:`.data` — the data topics' records as a whole: end markers, :func:`encode_record`,
  :func:`decode_record`.

This module is the protocol's public face: code outside the package imports from
``streamforge_pipelines.protocol`` (the names in ``__all__``), never from its modules; tests may
import a private helper from its module (``tests/unit/test_protocol.py`` checks both).
"""

from .candles import (
    CANDLE_FIELDS,
    PAGE_ROW_FIELDS,
    RECORD_CANDLE,
    RECORD_CANDLES,
    candle_from_kline,
    candle_key,
    candle_page,
    check_candle_page,
    page_docs,
    validate_candle,
    validate_candle_page,
)
from .checks import DECIMAL_PATTERN, MAX_DECIMAL_DIGITS, MAX_RECORD_ID_CHARS, MAX_RECORD_INT
from .commands import (
    CLOCK_SLACK_S,
    MAX_COLLECTION_CHARS,
    MAX_ID_CHARS,
    MAX_IMAGE_CHARS,
    MAX_STREAM_SYMBOLS,
    MAX_TOPIC_CHARS,
    MAX_TRADE_ID,
    TIMESTAMP_RANGE_S,
    TRADE_TASK_TYPES,
    Command,
    CommandName,
    decode_command,
    register_task_types,
    task_types,
    unregister_task_types,
)
from .data import RECORD_END, decode_record, encode_record, end_marker
from .errors import EXCERPT_CHARS, ProtocolError, excerpt
from .events import ErrorInfo, Event, PartitionCount, Status, StreamStats, decode_event
from .ids import (
    CONNECTOR,
    LOADER_CANDLES,
    LOADER_PRODUCER,
    LOADER_TRADES,
    QUEUE_MANAGER,
    SCHEMA_VERSION,
    format_time_range,
    make_producer_id,
    make_queue_id,
    new_suffix,
    now_s,
    parse_time_range,
    queue_id_suffix,
)
from .live import (
    BOOK_DIFF_ROW_FIELDS,
    BOOK_MARKETS,
    BOOK_ROW_FIELDS,
    LOADER_WS_CANDLES,
    LOADER_WS_ORDERBOOK,
    LOADER_WS_TARGETS,
    LOADER_WS_TRADES,
    RECORD_BOOK,
    RECORD_BOOK_DIFFS,
    WS_ORDERBOOK,
    WS_TRADE_TASK_TYPES,
    book_diff_page,
    book_key,
    book_page,
    is_stream_type,
    levels_text,
    stream_target,
    validate_book_diff_page,
    validate_book_page,
    ws_candle_interval,
    ws_task_types,
)
from .trades import (
    AGG_ROW_FIELDS,
    RECORD_TRADES,
    TRADE_KINDS,
    TRADE_ROW_FIELDS,
    trade_key,
    trade_page,
    validate_trade_page,
)

__all__ = [
    "AGG_ROW_FIELDS",
    "BOOK_DIFF_ROW_FIELDS",
    "BOOK_MARKETS",
    "BOOK_ROW_FIELDS",
    "CANDLE_FIELDS",
    "CLOCK_SLACK_S",
    "CONNECTOR",
    "DECIMAL_PATTERN",
    "EXCERPT_CHARS",
    "LOADER_CANDLES",
    "LOADER_PRODUCER",
    "LOADER_TRADES",
    "LOADER_WS_CANDLES",
    "LOADER_WS_ORDERBOOK",
    "LOADER_WS_TARGETS",
    "LOADER_WS_TRADES",
    "MAX_COLLECTION_CHARS",
    "MAX_DECIMAL_DIGITS",
    "MAX_ID_CHARS",
    "MAX_IMAGE_CHARS",
    "MAX_RECORD_ID_CHARS",
    "MAX_RECORD_INT",
    "MAX_STREAM_SYMBOLS",
    "MAX_TOPIC_CHARS",
    "MAX_TRADE_ID",
    "PAGE_ROW_FIELDS",
    "QUEUE_MANAGER",
    "RECORD_BOOK",
    "RECORD_BOOK_DIFFS",
    "RECORD_CANDLE",
    "RECORD_CANDLES",
    "RECORD_END",
    "RECORD_TRADES",
    "SCHEMA_VERSION",
    "TIMESTAMP_RANGE_S",
    "TRADE_KINDS",
    "TRADE_ROW_FIELDS",
    "TRADE_TASK_TYPES",
    "WS_ORDERBOOK",
    "WS_TRADE_TASK_TYPES",
    "Command",
    "CommandName",
    "ErrorInfo",
    "Event",
    "PartitionCount",
    "ProtocolError",
    "Status",
    "StreamStats",
    "book_diff_page",
    "book_key",
    "book_page",
    "candle_from_kline",
    "candle_key",
    "candle_page",
    "check_candle_page",
    "decode_command",
    "decode_event",
    "decode_record",
    "encode_record",
    "end_marker",
    "excerpt",
    "format_time_range",
    "is_stream_type",
    "levels_text",
    "make_producer_id",
    "make_queue_id",
    "new_suffix",
    "now_s",
    "page_docs",
    "parse_time_range",
    "queue_id_suffix",
    "register_task_types",
    "stream_target",
    "task_types",
    "trade_key",
    "trade_page",
    "unregister_task_types",
    "validate_book_diff_page",
    "validate_book_page",
    "validate_candle",
    "validate_candle_page",
    "validate_trade_page",
    "ws_candle_interval",
    "ws_task_types",
]
