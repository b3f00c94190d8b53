"""The data topics' records as a whole: end markers, encoding, and :func:`decode_record`, the one
decoder the connector runs on every data-topic value (it dispatches on ``record`` to the candle,
trades and book codecs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .candles import RECORD_CANDLE, RECORD_CANDLES, check_candle_page, page_docs, validate_candle
from .checks import INT_RANGE, MAX_RECORD_INT, got, show, text_problem
from .errors import ProtocolError, json_object
from .ids import SCHEMA_VERSION, now_s
from .live import RECORD_BOOK, RECORD_BOOK_DIFFS, validate_book_diff_page, validate_book_page
from .trades import RECORD_TRADES, validate_trade_page

RECORD_END = "end"


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
    ``{"record": "trades", "queue_id": ..., "kind": "agg" | "trade", "docs": [store documents]}``, for
    a book (book diffs) page ``{"record": "book" ("book_diffs"), "queue_id": ..., "docs": [store
    documents]}``.
    With ``page_as_docs=False`` a candle page comes as ``{"record": "candles", "queue_id": ...,
    "page": (symbol, interval, source, queue_id, rows), "count": n}``: checked, but no documents
    built (what :meth:`~streamforge_pipelines.store.base.Store.upsert_pages` takes for candles).
    """
    value = json_object("record", raw)
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
    if kind == RECORD_BOOK:
        docs = validate_book_page(value)
        return {"record": RECORD_BOOK, "queue_id": value["queue_id"], "docs": docs}
    if kind == RECORD_BOOK_DIFFS:
        docs = validate_book_diff_page(value)
        return {"record": RECORD_BOOK_DIFFS, "queue_id": value["queue_id"], "docs": docs}
    if kind != RECORD_CANDLE:
        raise ProtocolError(f"record.record: unknown record kind {show(kind)}")
    return validate_candle(value)


def _check_end_marker(value: dict[str, Any]) -> dict[str, Any]:
    """An end marker with a valid ``queue_id`` and integer ``partition`` / ``records`` (the connector
    acknowledges it on ``queue-events`` with them)."""
    for name in ("queue_id", "partition", "records"):
        if name not in value:
            raise ProtocolError(f"end.{name}: required field is missing")
    if (problem := text_problem("queue_id", value["queue_id"])) is not None:
        raise ProtocolError(f"end.queue_id: {problem}")
    for name in ("partition", "records"):
        v = value[name]
        if type(v) is not int or not 0 <= v <= MAX_RECORD_INT:
            raise ProtocolError(f"end.{name}: expected {INT_RANGE}, got {got(v)}")
    return value
