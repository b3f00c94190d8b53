"""The candle datasets (klines of the spot and USD-M futures markets): their codec and specs.

Both markets share the document shape, the key (``BTCUSDT:1m:<open_time>``) and the codec; each has
its own topic and collection, because a symbol's spot and futures candles share keys.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from ..intervals import INTERVALS
from ..protocol import (
    PAGE_ROW_FIELDS,
    RECORD_CANDLE,
    RECORD_CANDLES,
    candle_key,
    check_candle_page,
    page_docs,
    validate_candle,
)
from .spec import DatasetSpec, FieldType, PageRows, TuplePageCodec

#: A checked candle page: symbol, interval, source, queue_id and its kline rows.
CandlePage = tuple[str, str, str, str, list[list[Any]]]

CANDLE_DOC_FIELDS: dict[str, FieldType] = {
    "key": "str",
    "symbol": "str",
    "interval": "str",
    "open_time": "int",
    "open": "str",
    "high": "str",
    "low": "str",
    "close": "str",
    "volume": "str",
    "close_time": "int",
    "quote_volume": "str",
    "trades": "int",
    "taker_buy_base": "str",
    "taker_buy_quote": "str",
    "source": "str",
    "queue_id": "str",
}


class CandleCodec(TuplePageCodec):
    """Pages of kline arrays (``candles``) and, from older producers, single candles (``candle``,
    read as a page of one row) — :func:`~streamforge_pipelines.protocol.check_candle_page`."""

    kinds = (RECORD_CANDLES, RECORD_CANDLE)
    queue_id_at, rows_at = 3, 4

    def check(self, value: dict[str, Any]) -> CandlePage:
        if value.get("record", RECORD_CANDLE) == RECORD_CANDLE:
            doc = validate_candle(value)
            row = [doc[f] for f in PAGE_ROW_FIELDS]
            return doc["symbol"], doc["interval"], doc["source"], doc["queue_id"], [row]
        return check_candle_page(value)

    def docs(self, page: CandlePage) -> list[dict[str, Any]]:
        return page_docs(*page)

    def rows(self, page: CandlePage) -> PageRows:
        """The kline rows as they came, under the page's four constants (no documents built)."""
        symbol, interval, source, queue_id, rows = page
        shared = {"symbol": symbol, "interval": interval, "source": source, "queue_id": queue_id}
        return PageRows(shared, PAGE_ROW_FIELDS, rows, f"{symbol}:{interval}:")


CANDLE_CODEC = CandleCodec()
CANDLE_TASK_TYPES = frozenset(f"api_candles_{i}" for i in INTERVALS)


def _candles(name: str, market: str, topic_setting: str, description: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        description=description,
        topic_of=attrgetter(topic_setting),
        collection=name,
        fields=CANDLE_DOC_FIELDS,
        series=("symbol", "interval"),
        time_field="open_time",
        order_field="open_time",
        key=candle_key,
        codec=CANDLE_CODEC,
        ledger="time_grid",
        task_types=CANDLE_TASK_TYPES,
        market=market,
    )


CANDLES = _candles("candles", "spot", "topic_candles", "Spot klines (OHLCV candles) of every interval")
CANDLES_USDM = _candles(
    "candles_usdm", "usdm", "topic_candles_usdm", "USD-M futures klines (OHLCV candles) of every interval"
)
