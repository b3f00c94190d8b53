"""Data records for the poison tests: real klines, every malformed kind, a reference validator and
hypothesis strategies of arbitrary and near-valid records.

The reference validator (:func:`reference_accepts`) is written from the specification of a data
record (what the store can hold), one value at a time with :class:`~decimal.Decimal` and plain
regular expressions, independently of the protocol's bulk checks; tests compare the decoder's
verdict with it.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "binance"
#: Ten real BTCUSDT 1m klines as Binance's REST API returned them (without the unused 12th field).
REAL_ROWS: list[list[Any]] = [
    r[:11] for r in orjson.loads((FIXTURES / "spot_rest_klines_BTCUSDT_1m_nautilus.json").read_bytes())
]
MINUTE_MS = 60_000
MAX_INT = 2**63 - 1
#: Binance's kline intervals, written out here (not imported from the code under test).
INTERVALS = frozenset(
    ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M")
)
#: Valid rows beyond the capture: an empty minute (open = high = low = close, volume zero), a row
#: crossing a power of ten, prices with different numbers of decimals, integers without a point.
EDGE_ROWS: list[list[Any]] = [
    [
        0,
        "60719.27000000",
        "60719.27000000",
        "60719.27000000",
        "60719.27000000",
        "0.00000000",
        59_999,
        "0.00000000",
        0,
        "0.00000000",
        "0.00000000",
    ],
    [
        0,
        "9999.50000000",
        "10000.50000000",
        "9999.00000000",
        "10000.00000000",
        "1.00000000",
        59_999,
        "10000.00000000",
        3,
        "0.50000000",
        "5000.00000000",
    ],
    [0, "1.5", "1.50", "1.5000", "1.5", "2", 59_999, "3", 1, "0", "0"],
    [0, "7", "8", "6", "7", "0", 59_999, "0", 0, "0", "0"],
]


def klines(start_ms: int, count: int, rows: list[list[Any]] | None = None) -> list[list[Any]]:
    """``count`` consecutive 1m klines from ``start_ms``: the real rows (or ``rows``) cycled, re-timed."""
    source = rows or REAL_ROWS
    out = []
    for i in range(count):
        r = list(source[i % len(source)])
        r[0] = start_ms + i * MINUTE_MS
        r[6] = r[0] + MINUTE_MS - 1
        out.append(r)
    return out


def page_record(
    rows: list[list[Any]], symbol: str = "BTCUSDT", queue_id: str = "wf-poison", **header: Any
) -> dict[str, Any]:
    return {
        "record": "candles",
        "symbol": symbol,
        "interval": "1m",
        "source": "binance-rest",
        "queue_id": queue_id,
        "rows": rows,
        **header,
    }


def candle_record(
    row: list[Any], symbol: str = "BTCUSDT", queue_id: str = "wf-poison", **fields: Any
) -> dict[str, Any]:
    names = (
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
    return {
        "record": "candle",
        "symbol": symbol,
        "interval": "1m",
        **dict(zip(names, row, strict=True)),
        "source": "binance-rest",
        "queue_id": queue_id,
        **fields,
    }


def agg_rows(first_id: int, count: int, time_ms: int = 1_741_564_802_990) -> list[list[Any]]:
    return [
        [first_id + i, "4.18300000", "11.51000000", 3 * i, 3 * i + 2, time_ms + i, i % 2 == 0]
        for i in range(count)
    ]


def trade_rows(first_id: int, count: int, time_ms: int = 1_741_564_802_990) -> list[list[Any]]:
    return [
        [
            first_id + i,
            "4.18300000",
            "0.00000000" if i == 0 else "1.25000000",
            "5.22875000",
            time_ms + i,
            i % 3 == 0,
        ]
        for i in range(count)
    ]


def trades_record(
    rows: list[list[Any]],
    kind: str = "agg",
    symbol: str = "TINYUSDT",
    queue_id: str = "wf-poison",
    **header: Any,
) -> dict[str, Any]:
    return {
        "record": "trades",
        "symbol": symbol,
        "kind": kind,
        "source": "binance-rest",
        "queue_id": queue_id,
        "rows": rows,
        **header,
    }


# ---- every malformed kind ------------------------------------------------------------------------


@dataclass(frozen=True)
class Malformed:
    """A bad record: which data topic it goes to (``candles`` / ``trades``), its bytes, and the start
    of the reason the dead letter must carry (naming the field)."""

    name: str
    topic: str
    value: bytes
    reason: str


def _with(row: list[Any], at: int, value: Any) -> list[Any]:
    out = list(row)
    out[at] = value
    return out


def malformed_records(start_ms: int) -> list[Malformed]:
    """Every malformed kind of the hardening issue, on the page and the single-record paths, candles
    and trades (times from ``start_ms``, so keys do not collide with good records elsewhere)."""
    rows = klines(start_ms, 4)
    r = rows[2]  # the bad row of a page is its third
    OPEN, HIGH, LOW, CLOSE, TRADES, CLOSE_T, OPEN_T = 1, 2, 3, 4, 8, 6, 0
    low_above_high = _with(_with(r, HIGH, "60000.00000000"), LOW, "60700.00000000")
    cases: list[tuple[str, str, dict[str, Any] | bytes, str]] = [
        (
            "page negative price",
            "candles",
            page_record([*rows[:2], _with(r, OPEN, "-60685.22000000"), *rows[3:]]),
            "candles.rows[2].open:",
        ),
        (
            "page empty price",
            "candles",
            page_record([*rows[:2], _with(r, HIGH, ""), *rows[3:]]),
            "candles.rows[2].high:",
        ),
        (
            "page NaN price",
            "candles",
            page_record([*rows[:2], _with(r, LOW, "NaN"), *rows[3:]]),
            "candles.rows[2].low:",
        ),
        (
            "page non-numeric price",
            "candles",
            page_record([*rows[:2], _with(r, CLOSE, "sixty thousand"), *rows[3:]]),
            "candles.rows[2].close:",
        ),
        (
            "page 5000-digit price",
            "candles",
            page_record([*rows[:2], _with(r, HIGH, "9" * 5000), *rows[3:]]),
            "candles.rows[2].high:",
        ),
        (
            "page high below low",
            "candles",
            page_record([*rows[:2], low_above_high, *rows[3:]]),
            "candles.rows[2].high:",
        ),
        (
            "page negative trade count",
            "candles",
            page_record([*rows[:2], _with(r, TRADES, -7), *rows[3:]]),
            "candles.rows[2].trades:",
        ),
        (
            "page trades = 2**63 (OverflowError)",
            "candles",
            page_record([*rows[:2], _with(r, TRADES, 2**63), *rows[3:]]),
            "candles.rows[2].trades:",
        ),
        (
            "page open_time = 2**63",
            "candles",
            page_record([_with(_with(rows[0], OPEN_T, 2**63), CLOSE_T, 2**63 + 59_999)]),
            "candles.rows[0].open_time:",
        ),
        ("page lower-case symbol", "candles", page_record(rows, symbol="btcusdt"), "candles.symbol:"),
        ("page empty symbol", "candles", page_record(rows, symbol=""), "candles.symbol:"),
        ("page unknown interval", "candles", page_record(rows, interval="7m"), "candles.interval:"),
        ("page 900 KB queue_id", "candles", page_record(rows, queue_id="q" * 900_000), "candles.queue_id:"),
        ("single negative price", "candles", candle_record(_with(r, OPEN, "-1")), "candle.open:"),
        ("single empty price", "candles", candle_record(_with(r, LOW, "")), "candle.low:"),
        ("single NaN price", "candles", candle_record(_with(r, CLOSE, "NaN")), "candle.close:"),
        ("single non-numeric price", "candles", candle_record(_with(r, OPEN, "12a")), "candle.open:"),
        ("single 5000-digit price", "candles", candle_record(_with(r, HIGH, "1" * 5000)), "candle.high:"),
        ("single high below low", "candles", candle_record(low_above_high), "candle.high:"),
        ("single negative trade count", "candles", candle_record(_with(r, TRADES, -1)), "candle.trades:"),
        (
            "single close_time = 2**64-1 (OverflowError)",
            "candles",
            candle_record(_with(r, CLOSE_T, 2**64 - 1)),
            "candle.close_time:",
        ),
        ("single lower-case symbol", "candles", candle_record(r, symbol="btcusdt"), "candle.symbol:"),
        ("single empty symbol", "candles", candle_record(r, symbol=""), "candle.symbol:"),
        ("single unknown interval", "candles", candle_record(r, interval="7m"), "candle.interval:"),
        ("single 900 KB queue_id", "candles", candle_record(r, queue_id="q" * 900_000), "candle.queue_id:"),
        ("candles not JSON", "candles", b"\xff\xfe{not json at all", "record: not valid JSON"),
        (
            "trades negative price",
            "trades",
            trades_record([*agg_rows(10, 3)[:1], _with(agg_rows(10, 3)[1], 1, "-4.18")]),
            "trades.rows[1].price:",
        ),
        (
            "trades empty price",
            "trades",
            trades_record([_with(agg_rows(10, 1)[0], 1, "")]),
            "trades.rows[0].price:",
        ),
        (
            "trades NaN quantity",
            "trades",
            trades_record([_with(trade_rows(10, 1)[0], 2, "NaN")], kind="trade"),
            "trades.rows[0].qty:",
        ),
        (
            "trades non-numeric quote_qty",
            "trades",
            trades_record([_with(trade_rows(10, 1)[0], 3, "lots")], kind="trade"),
            "trades.rows[0].quote_qty:",
        ),
        (
            "trades 5000-digit price",
            "trades",
            trades_record([_with(agg_rows(10, 1)[0], 1, "4" * 5000)]),
            "trades.rows[0].price:",
        ),
        (
            "trades id = 2**63 (OverflowError)",
            "trades",
            trades_record([_with(agg_rows(10, 1)[0], 0, 2**63)]),
            "trades.rows[0].id:",
        ),
        (
            "trades time = 2**64-1 (OverflowError)",
            "trades",
            trades_record([_with(trade_rows(10, 1)[0], 4, 2**64 - 1)], kind="trade"),
            "trades.rows[0].time:",
        ),
        (
            "trades negative first trade id",
            "trades",
            trades_record([_with(agg_rows(10, 1)[0], 3, -1)]),
            "trades.rows[0].first_trade_id:",
        ),
        (
            "trades lower-case symbol",
            "trades",
            trades_record(agg_rows(10, 2), symbol="tinyusdt"),
            "trades.symbol:",
        ),
        ("trades empty symbol", "trades", trades_record(agg_rows(10, 2), symbol=""), "trades.symbol:"),
        (
            "trades 900 KB queue_id",
            "trades",
            trades_record(agg_rows(10, 2), queue_id="q" * 900_000),
            "trades.queue_id:",
        ),
        (
            "trades is_buyer_maker not a bool",
            "trades",
            trades_record([_with(agg_rows(10, 1)[0], 6, "yes")]),
            "trades.rows[0].is_buyer_maker:",
        ),
        ("trades not JSON", "trades", b"\x00\x01\x02garbage", "record: not valid JSON"),
    ]
    return [
        Malformed(n, t, v if isinstance(v, bytes) else orjson.dumps(v), reason) for n, t, v, reason in cases
    ]


# ---- the reference validator ---------------------------------------------------------------------

_SYMBOL = re.compile(r"[A-Z0-9]{2,20}")
_DECIMAL = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")


def _int(v: Any) -> bool:
    return type(v) is int and 0 <= v <= MAX_INT


def _dec(v: Any) -> bool:
    return type(v) is str and _DECIMAL.fullmatch(v) is not None


def _price(v: Any) -> bool:
    return _dec(v) and Decimal(v) > 0


def _ident(v: Any) -> bool:
    return type(v) is str and 1 <= len(v) <= 200


def _candle_values_ok(r: list[Any]) -> bool:
    open_time, o, h, lo, c, v, close_time, q, n, tb, tq = r
    return (
        all(_int(x) for x in (open_time, close_time, n))
        and close_time >= open_time
        and all(_price(x) for x in (o, h, lo, c))
        and all(_dec(x) for x in (v, q, tb, tq))
        and Decimal(lo) <= Decimal(o) <= Decimal(h)
        and Decimal(lo) <= Decimal(c) <= Decimal(h)
    )


def _header_ok(value: dict[str, Any], second: str, allowed: frozenset[str] | tuple[str, ...]) -> bool:
    symbol = value.get("symbol")
    return (
        type(symbol) is str
        and _SYMBOL.fullmatch(symbol) is not None
        and value.get(second) in allowed
        and _ident(value.get("source"))
        and _ident(value.get("queue_id"))
    )


def _page_ok(value: dict[str, Any]) -> bool:
    rows = value.get("rows")
    return (
        _header_ok(value, "interval", INTERVALS)
        and type(rows) is list
        and all(type(r) is list and len(r) == 11 and _candle_values_ok(r) for r in rows)
        and all(a[0] < b[0] for a, b in itertools.pairwise(rows))
    )


def _single_ok(value: dict[str, Any]) -> bool:
    names = (
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
    return _header_ok(value, "interval", INTERVALS) and _candle_values_ok([value.get(n) for n in names])


def _trade_row_ok(r: Any, kind: str) -> bool:
    if kind == "agg":
        if type(r) is not list or len(r) != 7:
            return False
        ident, price, qty, first, last, time_ms, maker = r
        return (
            all(_int(x) for x in (ident, first, last, time_ms))
            and first <= last
            and _price(price)
            and _dec(qty)
            and type(maker) is bool
        )
    if type(r) is not list or len(r) != 6:
        return False
    ident, price, qty, quote, time_ms, maker = r
    return (
        _int(ident) and _int(time_ms) and _price(price) and _dec(qty) and _dec(quote) and type(maker) is bool
    )


def _trades_ok(value: dict[str, Any]) -> bool:
    rows = value.get("rows")
    if not (_header_ok(value, "kind", ("agg", "trade")) and type(rows) is list):
        return False
    kind = value["kind"]
    return all(_trade_row_ok(r, kind) for r in rows) and all(a[0] < b[0] for a, b in itertools.pairwise(rows))


def _end_ok(value: dict[str, Any]) -> bool:
    return _ident(value.get("queue_id")) and _int(value.get("partition")) and _int(value.get("records"))


_KINDS: dict[Any, Callable[[dict[str, Any]], bool]] = {
    "candles": _page_ok,
    "candle": _single_ok,
    "trades": _trades_ok,
    "end": _end_ok,
}


def reference_accepts(raw: bytes) -> bool:
    """Whether a data-topic value is valid, by the specification (see the module docstring)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(value, dict):
        return False
    check = (
        _KINDS.get(value.get("record", "candle")) if isinstance(value.get("record", "candle"), str) else None
    )
    return check is not None and check(value)


# ---- hypothesis strategies -----------------------------------------------------------------------

#: Integers around every boundary that matters, and any in the 64-bit range orjson writes.
INTS = st.one_of(
    st.sampled_from([0, 1, -1, 59_999, MAX_INT, MAX_INT + 1, 2**64 - 1, -(2**63), 1_634_943_780_000]),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
)
#: Decimal strings, valid and near-valid (NaN, signs, exponents, points astray, too long, other digits).
DECIMALS = st.one_of(
    st.sampled_from(
        [
            "0",
            "0.00000000",
            "1",
            "-1",
            "",
            "NaN",
            "nan",
            "inf",
            "Infinity",
            "1e5",
            "1E-5",
            " 1",
            "1 ",
            "+1",
            "1.",
            ".5",
            "1.2.3",
            "1,5",
            "1_000",
            "١٢",
            "0x10",
            "9" * 20,
            "9" * 21,
            "1." + "0" * 20,
            "1." + "0" * 21,
            "9" * 5000,
            "abc",
            "60000.00000000",
            "60800.00000000",
            "60700.00000000",
        ]
    ),
    st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,9})?", fullmatch=True),
    st.text(max_size=12),
)
#: Header strings: symbols, intervals, kinds, identifiers, valid and not.
TEXTS = st.one_of(
    st.sampled_from(
        [
            "BTCUSDT",
            "btcusdt",
            "",
            "B",
            "A" * 20,
            "A" * 21,
            "BTC USDT",
            "BTCUSDT\n",
            "1m",
            "7m",
            "1M",
            "1mo",
            "agg",
            "trade",
            "tick",
            "x" * 200,
            "x" * 201,
            "'); DROP TABLE candles; --",
        ]
    ),
    st.text(max_size=25),
)
OTHERS = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(min_value=-9, max_value=9), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(min_value=-9, max_value=9), max_size=2),
)
ANY_VALUE = st.one_of(INTS, DECIMALS, TEXTS, OTHERS)
JSON = st.recursive(
    st.one_of(
        st.none(), st.booleans(), INTS, st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)

_HEADERS = {
    "candles": ("symbol", "interval", "source", "queue_id"),
    "trades": ("symbol", "kind", "source", "queue_id"),
}


@st.composite
def _mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with up to three changes: a row value, a header field, a field removed or added, a
    row cut or lengthened, the rows replaced."""
    value = orjson.loads(orjson.dumps(base))  # a deep copy
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        rows = value.get("rows")
        what = draw(st.sampled_from(["row", "row", "row", "field", "drop", "extra", "shape", "rows"]))
        if what == "row" and isinstance(rows, list) and rows and isinstance(rows[0], list):
            row = rows[draw(st.integers(min_value=0, max_value=len(rows) - 1))]
            if isinstance(row, list) and row:
                at = draw(st.integers(min_value=0, max_value=len(row) - 1))
                row[at] = draw(
                    INTS if type(row[at]) is int else DECIMALS if type(row[at]) is str else ANY_VALUE
                )
        elif what == "field" or (what == "row" and "rows" not in value):
            name = draw(st.sampled_from(sorted(value)))
            current = value[name]
            value[name] = draw(
                INTS
                if type(current) is int
                else DECIMALS
                if name in ("open", "high", "low", "close", "volume")
                else TEXTS
                if type(current) is str
                else ANY_VALUE
            )
        elif what == "drop" and value:
            value.pop(draw(st.sampled_from(sorted(value))))
        elif what == "extra":
            value[draw(st.text(max_size=6))] = draw(ANY_VALUE)
        elif what == "shape" and isinstance(rows, list) and rows and isinstance(rows[-1], list):
            if draw(st.booleans()) or not rows[-1]:
                rows[-1].append(draw(ANY_VALUE))
            else:
                rows[-1].pop()
        elif what == "rows":
            value["rows"] = draw(JSON)
    return value


def _bases(start_ms: int) -> list[dict[str, Any]]:
    from streamforge_pipelines.protocol import end_marker

    return [
        page_record(klines(start_ms, 5)),
        page_record(klines(start_ms, len(EDGE_ROWS), EDGE_ROWS)),
        candle_record(klines(start_ms, 1)[0]),
        candle_record(klines(start_ms, 1, EDGE_ROWS[1:2])[0]),
        trades_record(agg_rows(100, 4)),
        trades_record(trade_rows(100, 4), kind="trade"),
        end_marker("wf-poison", "loader-api-candles__abc123", 0, 10),
    ]


def near_valid_records(start_ms: int = 1_634_943_780_000) -> st.SearchStrategy[dict[str, Any]]:
    """Valid records of every kind with up to three changes each (most of them refused)."""
    return st.sampled_from(_bases(start_ms)).flatmap(_mutated)


def data_values(start_ms: int = 1_634_943_780_000) -> st.SearchStrategy[bytes]:
    """Data-topic values: arbitrary bytes, arbitrary JSON, JSON objects with a ``record`` kind,
    valid records and near-valid records of every kind."""
    return st.one_of(
        st.binary(max_size=120),
        st.sampled_from(_bases(start_ms)).map(orjson.dumps),
        JSON.map(orjson.dumps),
        st.fixed_dictionaries(
            {"record": st.sampled_from(["candle", "candles", "trades", "end", "weird"])},
            optional={"rows": JSON, "symbol": TEXTS, "queue_id": TEXTS},
        ).map(orjson.dumps),
        near_valid_records(start_ms).map(orjson.dumps),
        near_valid_records(start_ms).map(orjson.dumps),
    )


# ---- what the store must hold --------------------------------------------------------------------

_KLINE = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "trades")
_KLINE += ("taker_buy_base", "taker_buy_quote")
_AGG = ("id", "price", "qty", "first_trade_id", "last_trade_id", "time", "is_buyer_maker")
_TRADE = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker")
#: Column order of the SQLite tables (the store's schema).
_COLUMNS = {
    "candles": ("key", "symbol", "interval", *_KLINE, "source", "queue_id"),
    "trades": (
        "key",
        "symbol",
        "kind",
        "id",
        "price",
        "qty",
        "quote_qty",
        "first_trade_id",
        "last_trade_id",
        "time",
        "is_buyer_maker",
        "source",
        "queue_id",
    ),
}


def expected_documents(value: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """``(table, documents)`` a valid candle / candles / trades record must leave in the store, from
    its JSON (not from the decoder); ``is_buyer_maker`` as SQLite keeps it (0/1)."""
    kind = value.get("record", "candle")
    if kind == "trades":
        head = {k: value[k] for k in ("symbol", "kind", "source", "queue_id")}
        names = _AGG if value["kind"] == "agg" else _TRADE
        docs = []
        for r in value["rows"]:
            doc = {
                "quote_qty": None,
                "first_trade_id": None,
                "last_trade_id": None,
                **dict(zip(names, r, strict=True)),
            }
            doc["is_buyer_maker"] = int(doc["is_buyer_maker"])
            docs.append({**head, **doc, "key": f"{value['symbol']}:{value['kind']}:{r[0]}"})
        return "trades", docs
    rows = value["rows"] if kind == "candles" else [[value[n] for n in _KLINE]]
    head = {k: value[k] for k in ("symbol", "interval", "source", "queue_id")}
    prefix = f"{head['symbol']}:{head['interval']}:"
    return "candles", [{**head, **dict(zip(_KLINE, r, strict=True)), "key": f"{prefix}{r[0]}"} for r in rows]


def stored_document(path: Path, table: str, key: str) -> dict[str, Any] | None:
    """A document read straight from the SQLite file by key (not through the store's read API)."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(f'SELECT * FROM "{table}" WHERE "key" = ?', (key,)).fetchone()
    finally:
        conn.close()
    return None if row is None else dict(zip(_COLUMNS[table], row, strict=True))
