"""The trades dataset: aggregate trades (``agg``) and trades (``trade``) of the spot market, one
collection keyed ``BTCUSDT:agg:<id>`` / ``BTCUSDT:trade:<id>``, a series per (symbol, kind)."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from ..protocol import RECORD_TRADES, TRADE_KINDS, TRADE_TASK_TYPES, trade_key, validate_trade_page
from .spec import DatasetSpec, FieldType, TuplePageCodec

#: A checked trades page: its queue_id and its store documents.
TradesPage = tuple[str, list[dict[str, Any]]]

TRADE_DOC_FIELDS: dict[str, FieldType] = {
    "key": "str",
    "symbol": "str",
    "kind": "str",
    "id": "int",
    "price": "str",
    "qty": "str",
    "quote_qty": "str?",
    "first_trade_id": "int?",
    "last_trade_id": "int?",
    "time": "int",
    "is_buyer_maker": "bool",
    "source": "str",
    "queue_id": "str",
}


class TradesCodec(TuplePageCodec):
    """Pages of trade rows (``trades``) — :func:`~streamforge_pipelines.protocol.validate_trade_page`."""

    kinds = (RECORD_TRADES,)
    queue_id_at, rows_at = 0, 1

    def check(self, value: dict[str, Any]) -> TradesPage:
        docs = validate_trade_page(value)
        return value["queue_id"], docs

    def docs(self, page: TradesPage) -> list[dict[str, Any]]:
        return page[1]


TRADES_CODEC = TradesCodec()

TRADES = DatasetSpec(
    name="trades",
    description="Spot aggregate trades (aggTrades) and trades, by id",
    topic_of=attrgetter("topic_trades"),
    collection="trades",
    fields=TRADE_DOC_FIELDS,
    series=("symbol", "kind"),
    time_field="time",
    order_field="id",
    key=trade_key,
    codec=TRADES_CODEC,
    ledger="id_ranges",
    task_types=frozenset(TRADE_TASK_TYPES),
    choices={"kind": frozenset(TRADE_KINDS)},
)
