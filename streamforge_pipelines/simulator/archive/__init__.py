"""The simulator's bulk archive: ``data.binance.vision`` files built from the market model.

``reference/BINANCE_API.md`` section 6 describes the real archive; this package serves the same
paths, file names, zip layout, checksum files and CSV columns, computed on demand from a
:class:`~..market.Market` (so two simulators with the same seed serve byte-identical zips):
:mod:`.paths` is the layout, :mod:`.content` the CSVs, :mod:`.serve` the zips, checksums, cache
and routes.

Paths (``<period>`` is ``YYYY-MM-DD`` for daily files, ``YYYY-MM`` for monthly ones)::

    data/spot/<daily|monthly>/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<period>.zip
    data/spot/<daily|monthly>/trades/<SYMBOL>/<SYMBOL>-trades-<period>.zip
    data/spot/<daily|monthly>/aggTrades/<SYMBOL>/<SYMBOL>-aggTrades-<period>.zip

each with a sibling ``<file>.zip.CHECKSUM`` holding the ``sha256sum`` line of the zip. The month
interval is spelled ``1mo`` in paths (the REST name is ``1M``); daily kline files exist for ``1s`` ..
``1d`` only, ``3d``/``1w``/``1mo`` are monthly only. Each zip holds one CSV with the zip's base name.

CSV contents:

* klines: the REST kline rows of the candles that open in the period, in REST order, no header;
  every candle is final (see availability below).
* trades: ``id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch``; aggTrades:
  ``aggTradeId,price,qty,firstTradeId,lastTradeId,timestamp,isBuyerMaker,isBestMatch``; spot
  booleans are written ``True``/``False``.
* Spot files whose period starts on or after 2025-01-01 carry MICROSECOND timestamps (kline open
  time ``x 1000``, close time ``x 1000 + 999``, trade times ``x 1000``); earlier files milliseconds.

USD-M futures (``data/futures/um/<daily|monthly>/<klines|trades|aggTrades>/...``, same layout as
spot), always in milliseconds, each CSV after one header row:

* klines: the ``/fapi/v1/klines`` rows of the contract :mod:`..usdm` models (the spot candle plus
  a constant basis, contract precision) after :data:`FUTURES_KLINES_HEADER`; no ``1s`` files.
* trades: :data:`FUTURES_TRADES_HEADER` (``id,price,qty,quote_qty,time,is_buyer_maker``) then
  the spot trades (same ids and times) with the price shifted by the basis, price and quantity at
  the contract's precision (:meth:`..usdm.Contract.price` / :meth:`~..usdm.Contract.qty`,
  the helpers ``/fapi/v1/klines`` and the futures ``@aggTrade`` stream use) and ``quote_qty`` =
  price x qty exactly, at 8 decimals (as the futures kline quote volume).
* aggTrades: :data:`FUTURES_AGG_TRADES_HEADER` (``agg_trade_id,price,quantity,first_trade_id,``
  ``last_trade_id,transact_time,is_buyer_maker``), the rows the futures ``@aggTrade`` stream
  sends (same ids, prices, quantities, times), no ``isBestMatch`` column.
* booleans ``true``/``false``.

So the trades of a minute aggregate exactly to that minute's ``/fapi/v1/klines`` candle (open,
high, low, close, volume, quote volume, count, taker buy volumes). The header spellings are those
of the real ``data.binance.vision`` UM files (snake_case, e.g. ``quote_qty``, ``transact_time``),
not the camelCase column names of ``reference/BINANCE_API.md`` section 6, which lists the columns
without their header text. COIN-M files are not served.

Availability (``archive_routes``): a file exists once its period has ended *and* the last candle it
holds has closed (a monthly ``1w``/``3d`` file waits for the week/3-day candle that opens in the
month's last days), plus a configurable delay (default 0). Real Binance publishes daily files the
next day after a delay of several hours (freqtrade assumes up to 2 days) and monthly files on the
first Monday of the following month; pass ``daily_delay_ms``/``monthly_delay_ms`` to model that.
A file whose symbol or interval is unknown, whose period is not yet available, or that would be empty
(before the symbol's listing, wholly in downtime) is an HTTP 404 with an S3-style XML body, as
``data.binance.vision`` (S3 behind CloudFront) answers.
"""

from .content import (
    FUTURES_AGG_TRADES_HEADER,
    FUTURES_KLINES_HEADER,
    FUTURES_TRADES_HEADER,
    agg_trades_csv,
    build_csv,
    klines_csv,
    trades_csv,
)
from .paths import (
    DAILY_INTERVALS,
    MICROS_FROM_MS,
    PATH_INTERVALS,
    ArchiveFile,
    archive_path,
    parse_archive_path,
    period_bounds,
)
from .serve import (
    ArchiveCache,
    add_archive_routes,
    archive_routes,
    available_from_ms,
    build_zip,
    checksum_line,
    zip_bytes,
)

__all__ = [
    "DAILY_INTERVALS",
    "FUTURES_AGG_TRADES_HEADER",
    "FUTURES_KLINES_HEADER",
    "FUTURES_TRADES_HEADER",
    "MICROS_FROM_MS",
    "PATH_INTERVALS",
    "ArchiveCache",
    "ArchiveFile",
    "add_archive_routes",
    "agg_trades_csv",
    "archive_path",
    "archive_routes",
    "available_from_ms",
    "build_csv",
    "build_zip",
    "checksum_line",
    "klines_csv",
    "parse_archive_path",
    "period_bounds",
    "trades_csv",
    "zip_bytes",
]
