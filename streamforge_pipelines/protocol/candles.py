"""Candle records: ``candles`` pages (the loaders' hot path) and single ``candle`` records.

A page is one exchange page of kline arrays of one symbol and interval (:func:`candle_page`);
:func:`check_candle_page` checks it in bulk passes over its columns and only walks its rows with the
exact checks (:func:`_candle_problem`) when a pass cannot clear it; :func:`page_docs` builds the
store documents (key :func:`candle_key`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from itertools import chain
from operator import le, lt
from typing import Any

from .checks import (
    MAX_RECORD_INT,
    build_page,
    decimal_problem,
    got,
    int_problem,
    joined,
    joined_decimals,
    joined_positive,
    record_header,
    shape_table,
    show,
    text_problem,
)
from .errors import ProtocolError

RECORD_CANDLE = "candle"
RECORD_CANDLES = "candles"

#: The shape of joined decimals (``"67890.12"`` -> ``"00000.00"``).
_SHAPE = shape_table(b".")

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


def candle_page(
    rows: Sequence[Sequence[Any]], symbol: str, interval: str, source: str, queue_id: str
) -> dict[str, Any]:
    """A ``candles`` record: one page of kline arrays of one symbol and interval."""
    header = {"symbol": symbol, "interval": interval, "source": source, "queue_id": queue_id}
    # REST rows carry a 12th unused field; archive rows come without it
    trimmed = rows if not rows or len(rows[0]) == _PAGE_ROW_LEN else [row[:_PAGE_ROW_LEN] for row in rows]
    return build_page(RECORD_CANDLES, header, trimmed)


def check_candle_page(value: dict[str, Any]) -> tuple[str, str, str, str, list[list[Any]]]:
    """Validate a ``candles`` record; ``(symbol, interval, source, queue_id, rows)`` or a one-line
    :class:`ProtocolError` naming the first bad field and quoting at most a bounded excerpt of it.

    A page holds what the store can hold: an exchange symbol, a known interval, ``source`` and
    ``queue_id`` of at most :data:`~.checks.MAX_RECORD_ID_CHARS` characters; rows of 11 fields whose
    times and trade count are integers from 0 to 2**63-1 with ``close_time >= open_time`` and open
    times increasing from row to row (one candle per key, as the exchange pages them), whose prices
    are positive and volumes non-negative decimal strings (:data:`~.checks.DECIMAL_PATTERN`, at most
    :data:`~.checks.MAX_DECIMAL_DIGITS` digits before and after the point) with
    ``low <= open, close <= high``.

    Checks run as bulk passes over the columns (C-level ``map``/``min``/``max``; the decimal columns
    joined, translated and scanned as bytes; prices compared as strings where that is exact) and only
    when a pass cannot clear the page walk the rows with the exact checks (:func:`_candle_problem`),
    which name the culprit, or find none (a page with a row whose prices differ in length, e.g. from
    9999.5 to 10000.5, is valid, only slower to check). A valid page costs well under a microsecond
    per candle more than checking types alone (``python -m bench.record_check``).
    """
    header = record_header("candles", value, _PAGE_HEADER)
    rows = value.get("rows")
    if type(rows) is not list:
        raise ProtocolError(f"candles.rows: expected a list of kline arrays, got {got(rows)}")
    if rows and not _page_rows_ok(rows):
        problem = _bad_page_row(rows)
        if problem is not None:
            raise ProtocolError(problem)
    return header[0], header[1], header[2], header[3], rows


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
    amounts = joined(chain(v, q, tb, tq))
    return amounts is not None and joined_decimals(amounts) and _prices_ok(o, h, lo, c)


def _prices_ok(open_: Sequence[Any], high: Sequence[Any], low: Sequence[Any], close: Sequence[Any]) -> bool:
    """The four price columns of a candle page in bulk: decimals, above zero, ``low <= open, close <=
    high`` in every row, by string comparison, which is exact where it is used: the columns joined
    have the same shape (digits as ``0``), so the four prices of each row have the same length and
    point position. False (the caller then checks row by row, exactly, as decimals) for a page whose
    prices are not all like that, e.g. a row from 9999.5 to 10000.5."""
    columns = [joined(column) for column in (open_, high, low, close)]
    if None in columns:
        return False
    shape = columns[0].translate(_SHAPE)  # type: ignore[union-attr]
    return (
        all(text.translate(_SHAPE) == shape for text in columns[1:])  # type: ignore[union-attr]
        and joined_decimals(columns[0])  # type: ignore[arg-type]
        and joined_positive(columns[2])  # type: ignore[arg-type]
        and all(map(le, low, open_))
        and all(map(le, open_, high))
        and all(map(le, low, close))
        and all(map(le, close, high))
    )


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
            size = f"{len(r)}" if type(r) is list else got(r)
            return f"candles.rows[{i}]: expected a kline array of {_PAGE_ROW_LEN} fields, got {size}"
        for at, name in enumerate(PAGE_ROW_FIELDS):
            want = int if at in _PAGE_INT_AT else str
            if type(r[at]) is not want:
                return f"candles.rows[{i}].{name}: expected {want.__name__}, got {got(r[at])}"
        if (found := _candle_problem(*r)) is not None:
            return f"candles.rows[{i}].{found[0]}: {found[1]}"
        if i and r[0] <= rows[i - 1][0]:
            before = rows[i - 1][0]
            return f"candles.rows[{i}].open_time: {r[0]} does not follow {before} (open times must increase)"
    return None


def validate_candle(value: dict[str, Any]) -> dict[str, Any]:
    """Check a ``candle`` record as :func:`check_candle_page` checks a page's header and rows (each
    value, one at a time); returns the store document (with ``key``)."""
    doc: dict[str, Any] = {}
    for name, typ in CANDLE_FIELDS.items():
        v = value.get(name)
        if v is None:
            raise ProtocolError(f"candle.{name}: required field is missing")
        if type(v) is not typ:
            raise ProtocolError(f"candle.{name}: expected {typ.__name__}, got {got(v)}")
        if name in _PAGE_HEADER and (problem := text_problem(name, v)) is not None:
            raise ProtocolError(f"candle.{name}: {problem}")
        doc[name] = v
    if (found := _candle_problem(*(doc[name] for name in PAGE_ROW_FIELDS))) is not None:
        raise ProtocolError(f"candle.{found[0]}: {found[1]}")
    doc["key"] = candle_key(doc["symbol"], doc["interval"], doc["open_time"])
    return doc


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
    if (problem := int_problem(open_time)) is not None:
        return "open_time", problem
    if close_time < open_time:
        return "close_time", f"{show(close_time)} is before open_time {open_time}"
    if (problem := int_problem(close_time)) is not None:
        return "close_time", problem
    if (problem := int_problem(trades)) is not None:
        return "trades", problem
    for name, value in (("open", open_), ("high", high), ("low", low), ("close", close)):
        if (problem := decimal_problem(value, positive=True)) is not None:
            return name, problem
    amounts = (
        ("volume", volume),
        ("quote_volume", quote_volume),
        ("taker_buy_base", taker_buy_base),
        ("taker_buy_quote", taker_buy_quote),
    )
    for name, value in amounts:
        if (problem := decimal_problem(value, positive=False)) is not None:
            return name, problem
    return _price_order_problem(open_, high, low, close)


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
