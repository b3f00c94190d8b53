"""What the connector's record validation costs per candle (and per trade), on realistic pages.

The connector checks every candle page it consumes (:func:`~streamforge_pipelines.protocol.check_candle_page`)
on the hot path (hundreds of thousands of candles per second). This measures, in one run:

1. **type-only (before)** — the check as it was before it validated values: header strings, row
   shapes, the types of every column and ``0 <= open_time <= close_time`` (copied below: the same
   passes, shorter error lines);
2. **full (now)** — the current check: also integer ranges, decimal strings (format, length,
   positive prices), ``low <= open, close <= high``, the symbol and interval;
3. the same for a trades page (:func:`~streamforge_pipelines.protocol.validate_trade_page`, documents
   included) and for a single candle record (:func:`~streamforge_pipelines.protocol.validate_candle`).

Pages come from the exchange simulator's market model (1000 ``1m`` klines of BTCUSDT, 1000
aggregate trades) and from the real Binance capture in ``tests/fixtures/binance`` (10 klines tiled to
1000 consecutive minutes); each is decoded from JSON first, as the connector sees it. Prints µs per
candle (best of ``--repeat`` runs, before and now timed alternately) and one JSON line.
``python -m bench.record_check [--repeat 15] [--number 50]``.
"""

from __future__ import annotations

import argparse
import re
import timeit
from collections.abc import Callable
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from streamforge_pipelines.protocol import (
    ProtocolError,
    candle_from_kline,
    candle_page,
    check_candle_page,
    encode_record,
    trade_page,
    validate_candle,
    validate_trade_page,
)
from streamforge_pipelines.simulator.market import Market

FIXTURE = (
    Path(__file__).resolve().parent.parent
    / "tests/fixtures/binance/spot_rest_klines_BTCUSDT_1m_nautilus.json"
)
START_MS = 1_700_000_040_000  # 2023-11-14, a fixed minute: the same page every run
NOW_MS = 1_800_000_000_000

# ---- the check before it validated values (its passes as they were, for the baseline) ------------

_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")
_INTERVAL = re.compile(r"^[1-9][0-9]{0,2}[smhdwM]$")
_PAGE_HEADER = ("symbol", "interval", "source", "queue_id")
_page_ints = itemgetter(0, 6, 8)
_page_strs = itemgetter(1, 2, 3, 4, 5, 7, 9, 10)


def type_only_check(value: dict[str, Any]) -> tuple[str, str, str, str, list[list[Any]]]:
    """``check_candle_page`` before this change: types and ``0 <= open_time <= close_time`` only."""
    for name in _PAGE_HEADER:
        v = value.get(name)
        if type(v) is not str or not v:
            raise ProtocolError(f"candles.{name}: expected a non-empty str, got {v!r}")
    symbol, interval, source, queue_id = (value[n] for n in _PAGE_HEADER)
    if not _SYMBOL.match(symbol):
        raise ProtocolError("candles.symbol")
    if not _INTERVAL.match(interval):
        raise ProtocolError("candles.interval")
    rows = value.get("rows")
    if type(rows) is not list:
        raise ProtocolError("candles.rows")
    ok = all(type(r) is list and len(r) == 11 for r in rows)
    if ok and rows:
        ok = set(map(type, chain.from_iterable(map(_page_ints, rows)))) == {int} and set(
            map(type, chain.from_iterable(map(_page_strs, rows)))
        ) == {str}
        ok = ok and all(0 <= r[0] <= r[6] for r in rows)
    if not ok:
        raise ProtocolError("candles.rows")
    return symbol, interval, source, queue_id, rows


# ---- pages ----------------------------------------------------------------------------------------


def _decoded(record: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(encode_record(record))


def simulator_page(market: Market) -> dict[str, Any]:
    rows = market.klines("BTCUSDT", "1m", START_MS, None, 1000, NOW_MS)
    return _decoded(
        candle_page(rows, "BTCUSDT", "1m", "binance-rest", "wf-btcusdt-api_candles_1m-20231114-a1b2c3")
    )


def binance_page() -> dict[str, Any]:
    """The capture's 10 real klines tiled to 1000 consecutive minutes (values as Binance wrote them)."""
    real = orjson.loads(FIXTURE.read_bytes())
    first = real[0][0]
    rows = [
        [first + i * 60_000, *r[1:6], first + i * 60_000 + 59_999, *r[7:]] for i, r in enumerate(real * 100)
    ]
    return _decoded(
        candle_page(rows, "BTCUSDT", "1m", "binance-rest", "wf-btcusdt-api_candles_1m-20211022-a1b2c3")
    )


def simulator_trades(market: Market) -> dict[str, Any]:
    aggs = market.agg_trades("BTCUSDT", NOW_MS, limit=1000, start_ms=START_MS)
    rows = [[a["a"], a["p"], a["q"], a["f"], a["l"], a["T"], a["m"]] for a in aggs]
    return _decoded(
        trade_page(rows, "BTCUSDT", "agg", "binance-rest", "wf-btcusdt-api_agg_trades-20231114-a1b2c3")
    )


def per_item_us(fn: Callable[[], Any], items: int, number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number / items * 1e6


def paired_us(
    a: Callable[[], Any], b: Callable[[], Any], items: int, number: int, repeat: int
) -> tuple[float, float]:
    """Best µs per item of ``a`` and of ``b``, timed alternately so that load from other processes
    during the run weighs on both alike."""
    best_a = best_b = float("inf")
    for _ in range(repeat):
        best_a = min(best_a, timeit.timeit(a, number=number))
        best_b = min(best_b, timeit.timeit(b, number=number))
    return best_a / number / items * 1e6, best_b / number / items * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=50)
    args = parser.parse_args()
    market = Market(7)
    out: dict[str, Any] = {}
    for name, page in (("simulator", simulator_page(market)), ("binance", binance_page())):
        n = len(page["rows"])
        assert check_candle_page(page)[4] == type_only_check(page)[4]  # both accept it
        before, now = paired_us(
            lambda p=page: type_only_check(p),
            lambda p=page: check_candle_page(p),
            n,
            args.number,
            args.repeat,
        )
        out[name] = {"candles": n, "type_only_us": round(before, 3), "full_us": round(now, 3)}
        print(
            f"candle page ({name}, {n} rows): type-only {before:.3f} µs/candle, full {now:.3f} µs/candle, "
            f"+{now - before:.3f} µs/candle"
        )
    trades = simulator_trades(market)
    n = len(trades["rows"])
    t = per_item_us(lambda: validate_trade_page(trades), n, args.number, args.repeat)
    out["trades"] = {"trades": n, "full_us_with_docs": round(t, 3)}
    print(f"trades page (simulator aggTrades, {n} rows): {t:.3f} µs/trade (documents built)")
    single = _decoded(candle_from_kline(binance_page()["rows"][0], "BTCUSDT", "1m", "binance-rest", "wf-q"))
    s = per_item_us(lambda: validate_candle(single), 1, args.number * 100, args.repeat)
    out["single_candle_us"] = round(s, 3)
    print(f"single candle record: {s:.3f} µs")
    print(orjson.dumps(out).decode())


if __name__ == "__main__":
    main()
