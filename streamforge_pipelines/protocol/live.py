"""Live streams: the stream task types and the ``book`` page (top-of-book snapshots).

A stream task is a long-running ``start`` command (no ``time_range``; ``symbols`` instead of one
``symbol``) that a stream worker (``loader-ws-*``) carries out until a ``stop`` with the same
``queue_id`` arrives. Its types mirror the historical ones, so a live record lands where the
historical one does, under the same key:

* ``ws_agg_trades`` / ``ws_trades`` — ``<s>@aggTrade`` / ``<s>@trade`` as ``trades`` pages
  (:mod:`.trades`) of kind ``agg`` / ``trade``;
* ``ws_candles_<interval>`` — the closed klines (``x`` true) of ``<s>@kline_<interval>`` as
  ``candles`` pages (:mod:`.candles`), spot or USD-M;
* ``ws_orderbook`` — the books kept from ``<s>@depth@100ms`` (checked against ``<s>@bookTicker``),
  as ``book`` pages: top-N snapshots, one row per snapshot; optionally (``LIVE_BOOK_DIFFS``) the
  diff events each live book applied, in order, as ``book_diffs`` pages.

A ``book`` row is ``[update_id, time, bids, asks]``: the book's last applied update id, the
exchange's event time (ms) of that update, and the levels best first as JSON text
(``[["67890.12","0.5"], ...]``), so a store of plain fields holds it as it is. A ``book_diffs``
row is ``[first_update_id, update_id, time, bids, asks]``: one applied event's ``U``, ``u``, ``E``
and its changed levels (quantity ``"0"`` removes a level); from a snapshot row at update id ``n``,
the diff rows after ``n`` rebuild the book.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..intervals import INTERVALS
from .checks import build_page, got, int_problem, record_header
from .errors import ProtocolError, excerpt

#: Stream task type -> trade kind (as :data:`~.commands.TRADE_TASK_TYPES` for the REST tasks).
WS_TRADE_TASK_TYPES: dict[str, str] = {"ws_agg_trades": "agg", "ws_trades": "trade"}
WS_ORDERBOOK = "ws_orderbook"
_WS_CANDLE_TYPE = re.compile(r"^ws_candles_(\w+)$")

#: Stream worker component names (``target`` of their commands, ``producer`` prefix of their events).
LOADER_WS_TRADES = "loader-ws-trades"
LOADER_WS_CANDLES = "loader-ws-candles"
LOADER_WS_ORDERBOOK = "loader-ws-orderbook"
LOADER_WS_TARGETS: tuple[str, ...] = (LOADER_WS_TRADES, LOADER_WS_CANDLES, LOADER_WS_ORDERBOOK)

RECORD_BOOK = "book"
BOOK_ROW_FIELDS: tuple[str, ...] = ("update_id", "time", "bids", "asks")
RECORD_BOOK_DIFFS = "book_diffs"
BOOK_DIFF_ROW_FIELDS: tuple[str, ...] = ("first_update_id", "update_id", "time", "bids", "asks")
BOOK_MARKETS: tuple[str, ...] = ("spot", "usdm")
_BOOK_HEADER = ("symbol", "market", "source", "queue_id")


def ws_task_types() -> frozenset[str]:
    """Every stream task type: ``ws_agg_trades``, ``ws_trades``, ``ws_candles_<i>``, ``ws_orderbook``."""
    return frozenset(WS_TRADE_TASK_TYPES) | {f"ws_candles_{i}" for i in INTERVALS} | {WS_ORDERBOOK}


def is_stream_type(task_type: str | None) -> bool:
    """Whether ``task_type`` names a live stream task (a long-running one, without a time range)."""
    return task_type is not None and task_type.startswith("ws_")


def ws_candle_interval(task_type: str) -> str | None:
    """The interval of a ``ws_candles_<interval>`` type, else None."""
    m = _WS_CANDLE_TYPE.match(task_type)
    return m.group(1) if m else None


def stream_target(task_type: str) -> str:
    """The stream worker component that carries out ``task_type``."""
    if task_type in WS_TRADE_TASK_TYPES:
        return LOADER_WS_TRADES
    if task_type == WS_ORDERBOOK:
        return LOADER_WS_ORDERBOOK
    if ws_candle_interval(task_type) is not None:
        return LOADER_WS_CANDLES
    raise ProtocolError(f"command.type: not a stream task type: {excerpt(task_type)}")


def book_key(symbol: str, market: str, update_id: int) -> str:
    """Deterministic document key: ``BTCUSDT:spot:9876543210``."""
    return f"{symbol}:{market}:{update_id}"


def levels_text(levels: list[list[str]]) -> str:
    """Book levels as the JSON text a ``book`` row carries."""
    return orjson.dumps(levels).decode()


def book_page(rows: list[list[Any]], symbol: str, market: str, source: str, queue_id: str) -> dict[str, Any]:
    """A ``book`` record: top-N snapshots of one symbol's book (rows of :data:`BOOK_ROW_FIELDS`)."""
    header = {"symbol": symbol, "market": market, "source": source, "queue_id": queue_id}
    return build_page(RECORD_BOOK, header, rows)


def book_diff_page(
    rows: list[list[Any]], symbol: str, market: str, source: str, queue_id: str
) -> dict[str, Any]:
    """A ``book_diffs`` record: diff events one symbol's live book applied, in order (rows of
    :data:`BOOK_DIFF_ROW_FIELDS`)."""
    header = {"symbol": symbol, "market": market, "source": source, "queue_id": queue_id}
    return build_page(RECORD_BOOK_DIFFS, header, rows)


def validate_book_page(value: dict[str, Any]) -> list[dict[str, Any]]:
    """The store documents of a ``book`` record; :class:`ProtocolError` naming the first bad field.

    An exchange symbol, a known market, bounded ``source`` / ``queue_id``; per row an update id and a
    time from 0 to 2**63-1, update ids strictly increasing, and ``bids`` / ``asks`` JSON text of
    ``[price, qty]`` string pairs."""
    return _book_docs(RECORD_BOOK, BOOK_ROW_FIELDS, value)


def validate_book_diff_page(value: dict[str, Any]) -> list[dict[str, Any]]:
    """The store documents of a ``book_diffs`` record, checked as a ``book`` record is (with
    ``first_update_id <= update_id`` besides)."""
    return _book_docs(RECORD_BOOK_DIFFS, BOOK_DIFF_ROW_FIELDS, value)


def _book_docs(kind: str, fields: tuple[str, ...], value: dict[str, Any]) -> list[dict[str, Any]]:
    symbol, market, source, queue_id = record_header(kind, value, _BOOK_HEADER)
    if market not in BOOK_MARKETS:
        raise ProtocolError(
            f"{kind}.market: expected one of {', '.join(BOOK_MARKETS)}, got {excerpt(market)}"
        )
    rows = value.get("rows")
    if type(rows) is not list:
        raise ProtocolError(f"{kind}.rows: expected a list of arrays, got {got(rows)}")
    n_ints = len(fields) - 2
    docs = []
    prev: int | None = None
    for i, r in enumerate(rows):
        if type(r) is not list or len(r) != len(fields):
            raise ProtocolError(f"{kind}.rows[{i}]: expected [{', '.join(fields)}], got {got(r)}")
        for name, v in zip(fields[:n_ints], r[:n_ints], strict=True):
            if type(v) is not int:
                raise ProtocolError(f"{kind}.rows[{i}].{name}: expected int, got {got(v)}")
            if (problem := int_problem(v)) is not None:
                raise ProtocolError(f"{kind}.rows[{i}].{name}: {problem}")
        doc = dict(zip(fields, r, strict=True))
        update_id = doc["update_id"]
        if prev is not None and update_id <= prev:
            raise ProtocolError(f"{kind}.rows[{i}].update_id: {update_id} does not follow {prev}")
        if doc.get("first_update_id", update_id) > update_id:
            raise ProtocolError(f"{kind}.rows[{i}].first_update_id: after update_id {update_id}")
        prev = update_id
        for name in ("bids", "asks"):
            if not _levels_ok(doc[name]):
                raise ProtocolError(f"{kind}.rows[{i}].{name}: expected JSON text of [price, qty] pairs")
        docs.append(
            {
                "key": book_key(symbol, market, update_id),
                "symbol": symbol,
                "market": market,
                **doc,
                "source": source,
                "queue_id": queue_id,
            }
        )
    return docs


def _levels_ok(text: Any) -> bool:
    if type(text) is not str:
        return False
    try:
        levels = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return type(levels) is list and all(
        type(lv) is list and len(lv) == 2 and type(lv[0]) is str and type(lv[1]) is str for lv in levels
    )
