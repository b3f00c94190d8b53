"""Trades records: ``trades`` pages of aggregate trades (``agg``) or trades (``trade``) of one symbol.

Loaded by the ``api_agg_trades`` / ``api_trades`` tasks (:data:`~.commands.TRADE_TASK_TYPES`), one
page per at most a page's worth of consecutive ids; checked as candle pages are (bulk passes over the
columns first, the exact row-by-row checks only to name a culprit), with the same value checks
(:mod:`.checks`).
"""

from __future__ import annotations

from collections.abc import Sequence
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
)
from .errors import ProtocolError, excerpt

RECORD_TRADES = "trades"
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
    header = {"symbol": symbol, "kind": kind, "source": source, "queue_id": queue_id}
    return build_page(RECORD_TRADES, header, [list(r) for r in rows])


def validate_trade_page(value: dict[str, Any]) -> list[dict[str, Any]]:
    """The store documents of a ``trades`` record; :class:`ProtocolError` naming the first bad field.

    Checked as :func:`~.candles.check_candle_page` checks candles, in bulk passes over the columns
    first: an exchange symbol, a known ``kind``, bounded ``source`` / ``queue_id``; ids, trade ids and
    times integers from 0 to 2**63-1, ids strictly increasing (a page is consecutive ids in id order),
    ``first_trade_id <= last_trade_id``; a positive ``price`` and non-negative ``qty`` /
    ``quote_qty`` (:data:`~.checks.DECIMAL_PATTERN`);
    ``is_buyer_maker`` a bool. A document has
    the fields of :data:`streamforge_pipelines.datasets.TRADES`; the kind's absent fields are ``None``
    (``quote_qty`` of an aggregate trade, ``first_trade_id`` / ``last_trade_id`` of a trade).
    """
    symbol, kind, source, queue_id = record_header("trades", value, _TRADE_HEADER)
    if kind not in _TRADE_ROW_SHAPE:
        raise ProtocolError(f"trades.kind: expected one of {', '.join(TRADE_KINDS)}, got {excerpt(kind)}")
    rows = value.get("rows")
    if type(rows) is not list:
        raise ProtocolError(f"trades.rows: expected a list of trade arrays, got {got(rows)}")
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
    price, amounts = joined(cols[str_at[0]]), joined(chain.from_iterable(cols[at] for at in str_at[1:]))
    return (
        price is not None
        and amounts is not None
        and joined_decimals(price)
        and joined_positive(price)
        and joined_decimals(amounts)
    )


def _bad_trade_row(rows: list[Any], kind: str) -> str | None:
    """The one-line reason the first bad row of a trades page is bad (exact checks, row by row), or
    None when every row is valid after all."""
    size, int_at, str_at, bool_at = _TRADE_ROW_SHAPE[kind]
    names = AGG_ROW_FIELDS if kind == "agg" else TRADE_ROW_FIELDS
    for i, r in enumerate(rows):
        if type(r) is not list or len(r) != size:
            length = f"{len(r)}" if type(r) is list else got(r)
            return f"trades.rows[{i}]: expected a {kind} array of {size} fields, got {length}"
        for at, name in enumerate(names):
            want = int if at in int_at else bool if at == bool_at else str
            if type(r[at]) is not want:
                return f"trades.rows[{i}].{name}: expected {want.__name__}, got {got(r[at])}"
        for at in int_at:
            if (problem := int_problem(r[at])) is not None:
                return f"trades.rows[{i}].{names[at]}: {problem}"
        if i and r[0] <= rows[i - 1][0]:
            return f"trades.rows[{i}].id: {r[0]} does not follow {rows[i - 1][0]} (ids must increase)"
        if kind == "agg" and r[3] > r[4]:
            return f"trades.rows[{i}].last_trade_id: {r[4]} is before first_trade_id {r[3]}"
        for at in str_at:
            if (problem := decimal_problem(r[at], positive=at == str_at[0])) is not None:
                return f"trades.rows[{i}].{names[at]}: {problem}"
    return None
