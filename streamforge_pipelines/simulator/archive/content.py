"""The archive's CSV files, computed from the market model: klines, trades and aggTrades, spot and UM.

Spot files have no header and, for periods from 2025-01-01 on, microsecond timestamps; USD-M files
one header row (:data:`FUTURES_KLINES_HEADER`, :data:`FUTURES_TRADES_HEADER`,
:data:`FUTURES_AGG_TRADES_HEADER`) and milliseconds, values at the contract's precision
(:mod:`..usdm`). Trades and aggTrades come as one chunk per day (a month of a busy symbol is ~2 GB of
text), so the server streams them into the zip.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from streamforge_pipelines.intervals import (
    DAY_MS,
    MINUTE_MS,
    count_open_times,
    floor_open_time,
    next_open_time,
)

from ..market import Market, MinuteTrades
from ..symbols import SCALE, format_units_array
from ..usdm import contract, futures_row
from .paths import ArchiveFile, check_market_type, period_bounds, rest_interval, uses_micros

__all__ = [
    "FUTURES_AGG_TRADES_HEADER",
    "FUTURES_KLINES_HEADER",
    "FUTURES_TRADES_HEADER",
    "agg_trades_csv",
    "build_csv",
    "closed_ms",
    "csv_chunks",
    "csv_header",
    "klines_csv",
    "trades_csv",
]

#: Header row of USD-M futures kline files (spot files have none).
FUTURES_KLINES_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)
#: Header rows of USD-M futures trades and aggTrades files (as the real UM files spell them).
FUTURES_TRADES_HEADER = "id,price,qty,quote_qty,time,is_buyer_maker"
FUTURES_AGG_TRADES_HEADER = (
    "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
)


def closed_ms(interval: str, end_ms: int) -> int:
    """The instant at which every candle that opens before ``end_ms`` has closed."""
    return max(end_ms, next_open_time(floor_open_time(end_ms - 1, interval), interval))


def _futures_rows(market: Market, symbol: str, rows: list[list]) -> list[list]:
    """Spot kline rows → the USD-M contract's rows (:mod:`..usdm`: basis, contract precision)."""
    c = contract(market.symbol(symbol))
    return [futures_row(c, r) for r in rows]


def klines_csv(
    market: Market, symbol: str, interval: str, day_or_month: str, *, market_type: str = "spot"
) -> bytes:
    """The kline CSV of ``symbol``/``interval`` for a day (``YYYY-MM-DD``) or a month (``YYYY-MM``).

    Rows are the final REST kline rows of every candle that opens in the period (none before the
    listing or in downtime), ``\n`` line ends. ``interval`` may be spelled as in paths (``1mo``) or
    as in REST (``1M``). Spot: no header, microsecond timestamps for periods from 2025-01-01 on.
    ``market_type="um"``: the USD-M rows of ``/fapi/v1/klines`` (contract precision, no ``1s``)
    after the :data:`FUTURES_KLINES_HEADER` row, milliseconds.
    """
    check_market_type(market_type)
    rest = rest_interval(interval)
    if market_type == "um" and rest == "1s":
        raise ValueError("USD-M futures have no 1s klines")
    start_ms, end_ms = period_bounds(day_or_month)
    n = count_open_times(start_ms, end_ms, rest)
    rows = market.klines(symbol, rest, start_ms, end_ms - 1, n, closed_ms(rest, end_ms)) if n else []
    out = io.StringIO()
    if market_type == "um":
        rows = _futures_rows(market, symbol, rows)
        out.write(FUTURES_KLINES_HEADER + "\n")
    micros = uses_micros(market_type, start_ms)
    for row in rows:
        if micros:
            row = [row[0] * 1000, *row[1:6], row[6] * 1000 + 999, *row[7:]]
        out.write(",".join(map(str, row)))
        out.write("\n")
    return out.getvalue().encode()


def _minutes(market: Market, symbol: str, start_ms: int, end_ms: int) -> Iterator[MinuteTrades]:
    first = max(start_ms, market.symbol(symbol).first_minute_ms)
    for minute in range(first - first % MINUTE_MS, end_ms, MINUTE_MS):
        mt = market.minute_trades(symbol, minute)
        if len(mt):
            yield mt


def _days(start_ms: int, end_ms: int) -> Iterator[tuple[int, int]]:
    for day in range(start_ms, end_ms, DAY_MS):
        yield day, min(day + DAY_MS, end_ms)


def _bools(values: np.ndarray, market_type: str) -> list[str]:
    true, false = ("True", "False") if market_type == "spot" else ("true", "false")
    return [true if v else false for v in values.tolist()]


def _each(render: Callable[[int], str], values: np.ndarray) -> list[str]:
    """``render`` of every value, called once per distinct value (prices repeat a lot)."""
    uniq, inverse = np.unique(values, return_inverse=True)
    text = [render(v) for v in uniq.tolist()]
    return [text[i] for i in inverse.tolist()]


class _UmRender:
    """USD-M rendering of spot trades: :func:`..usdm.contract` prices (basis added) and quantities.

    The same :class:`~..usdm.Contract` helpers render ``/fapi/v1/klines`` and the futures
    ``@aggTrade`` stream, so the three agree character for character.
    """

    def __init__(self, market: Market, symbol: str) -> None:
        spec = market.symbol(symbol)
        self.contract = contract(spec)
        # basis x qty / 1e-8, exact and without int64 overflow: basis is whole ticks, qty whole
        # steps, and tick x step is a multiple of 1e-8 (SymbolSpec checks it).
        self._basis_ticks = self.contract.basis_units // spec.tick_units
        self._step_units = spec.step_units
        self._tick_step = spec.tick_units * spec.step_units // SCALE

    def price(self, spot: np.ndarray) -> list[str]:
        return _each(self.contract.price, spot)

    def qty(self, qty: np.ndarray) -> list[str]:
        return _each(self.contract.qty, qty)

    def quote(self, spot_quote: np.ndarray, qty: np.ndarray) -> list[str]:
        """price x qty at the futures price, 8 decimals (spot quote + basis x qty, exact)."""
        return format_units_array(
            spot_quote + self._basis_ticks * (qty // self._step_units) * self._tick_step
        )


def _trades_chunks(market: Market, symbol: str, day_or_month: str, market_type: str) -> Iterator[bytes]:
    """The trades rows of a period, one chunk per day (a month of a busy symbol is ~2 GB of text).

    No header (see :func:`csv_header`).
    """
    check_market_type(market_type)
    start_ms, end_ms = period_bounds(day_or_month)
    scale = 1000 if uses_micros(market_type, start_ms) else 1
    um = _UmRender(market, symbol) if market_type == "um" else None
    for day_start, day_end in _days(start_ms, end_ms):
        out = io.StringIO()
        for mt in _minutes(market, symbol, day_start, day_end):
            ids = (mt.first_id + np.arange(len(mt))).tolist()
            times = (mt.time * scale).tolist()
            maker = _bools(~mt.buy, market_type)
            if um is None:
                for row in zip(
                    ids,
                    format_units_array(mt.price),
                    format_units_array(mt.qty),
                    format_units_array(mt.quote),
                    times,
                    maker,
                    strict=True,
                ):
                    out.write("%d,%s,%s,%s,%d,%s,True\n" % row)  # noqa: UP031 (fastest for millions of rows)
            else:
                price, qty, quote = um.price(mt.price), um.qty(mt.qty), um.quote(mt.quote, mt.qty)
                for row in zip(ids, price, qty, quote, times, maker, strict=True):
                    out.write("%d,%s,%s,%s,%d,%s\n" % row)  # noqa: UP031
        yield out.getvalue().encode()


def _agg_trades_chunks(market: Market, symbol: str, day_or_month: str, market_type: str) -> Iterator[bytes]:
    """The aggTrades rows of a period, one chunk per day (no header)."""
    check_market_type(market_type)
    start_ms, end_ms = period_bounds(day_or_month)
    scale = 1000 if uses_micros(market_type, start_ms) else 1
    um = _UmRender(market, symbol) if market_type == "um" else None
    for day_start, day_end in _days(start_ms, end_ms):
        out = io.StringIO()
        for mt in _minutes(market, symbol, day_start, day_end):
            starts = mt.agg_start
            ends = np.append(starts[1:], len(mt))
            ids = (mt.first_agg_id + np.arange(len(starts))).tolist()
            qty = np.add.reduceat(mt.qty, starts)
            first = (mt.first_id + starts).tolist()
            last = (mt.first_id + ends - 1).tolist()
            times = (mt.time[starts] * scale).tolist()
            maker = _bools(~mt.buy[starts], market_type)
            if um is None:
                for row in zip(
                    ids,
                    format_units_array(mt.price[starts]),
                    format_units_array(qty),
                    first,
                    last,
                    times,
                    maker,
                    strict=True,
                ):
                    out.write("%d,%s,%s,%d,%d,%d,%s,True\n" % row)  # noqa: UP031
            else:
                for row in zip(
                    ids, um.price(mt.price[starts]), um.qty(qty), first, last, times, maker, strict=True
                ):
                    out.write("%d,%s,%s,%d,%d,%d,%s\n" % row)  # noqa: UP031
        yield out.getvalue().encode()


def csv_header(market_type: str, data_type: str) -> bytes:
    """The header line of a trades / aggTrades file: UM files have one, spot files none."""
    if market_type != "um" or data_type == "klines":
        return b""
    header = FUTURES_TRADES_HEADER if data_type == "trades" else FUTURES_AGG_TRADES_HEADER
    return header.encode() + b"\n"


def trades_csv(market: Market, symbol: str, day_or_month: str, *, market_type: str = "spot") -> bytes:
    """The trades CSV of a day or month, trades in id order.

    Spot: ``id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch``, no header, booleans
    ``True``/``False``. ``market_type="um"``: the :data:`FUTURES_TRADES_HEADER` row, then
    ``id,price,qty,quote_qty,time,is_buyer_maker`` at contract precision, ``true``/``false``,
    milliseconds. A day of a busy symbol is ~1M rows (~1.5 s); a month is ~30x that (the server
    streams it into the zip day by day).
    """
    return csv_header(market_type, "trades") + b"".join(
        _trades_chunks(market, symbol, day_or_month, market_type)
    )


def agg_trades_csv(market: Market, symbol: str, day_or_month: str, *, market_type: str = "spot") -> bytes:
    """The aggTrades CSV of a day or month.

    Spot: ``aggTradeId,price,qty,firstTradeId,lastTradeId,timestamp,isBuyerMaker,isBestMatch``, no
    header. ``market_type="um"``: the :data:`FUTURES_AGG_TRADES_HEADER` row, then the same columns
    without ``isBestMatch``, at contract precision, ``true``/``false``, milliseconds.
    """
    chunks = _agg_trades_chunks(market, symbol, day_or_month, market_type)
    return csv_header(market_type, "aggTrades") + b"".join(chunks)


def csv_chunks(market: Market, file: ArchiveFile) -> Iterable[bytes]:
    if file.data_type == "klines":
        assert file.interval is not None
        data = klines_csv(market, file.symbol, file.interval, file.period, market_type=file.market_type)
        header = len(FUTURES_KLINES_HEADER) + 1 if file.market_type == "um" else 0
        return [data] if len(data) > header else []  # no candles: no file
    if file.data_type == "trades":
        return _trades_chunks(market, file.symbol, file.period, file.market_type)
    return _agg_trades_chunks(market, file.symbol, file.period, file.market_type)


def build_csv(market: Market, file: ArchiveFile) -> bytes:
    """The CSV inside ``file``'s zip (whatever the clock)."""
    return csv_header(file.market_type, file.data_type) + b"".join(csv_chunks(market, file.zip_file))
