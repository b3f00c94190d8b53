"""The order-book datasets: top-N snapshots of the books the stream worker keeps (``BOOK``) and,
optionally, the diff events they applied (``BOOK_DIFFS``), spot and USD-M, each a collection keyed
``BTCUSDT:spot:<update_id>``, a series per (symbol, market).

Live only: nothing loads it over a time range, so it has no completeness ledger (``ledger="none"``);
its freshness is what is watched.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from ..protocol import (
    BOOK_MARKETS,
    RECORD_BOOK,
    RECORD_BOOK_DIFFS,
    WS_ORDERBOOK,
    book_key,
    validate_book_diff_page,
    validate_book_page,
)
from .spec import DatasetSpec, FieldType, TuplePageCodec

#: A checked book page: its queue_id and its store documents.
BookPage = tuple[str, list[dict[str, Any]]]

BOOK_DOC_FIELDS: dict[str, FieldType] = {
    "key": "str",
    "symbol": "str",
    "market": "str",
    "update_id": "int",
    "time": "int",
    "bids": "str",
    "asks": "str",
    "source": "str",
    "queue_id": "str",
}


#: A diff row's fields: a snapshot's, with the event's first update id before its last.
BOOK_DIFF_DOC_FIELDS: dict[str, FieldType] = {
    **{k: v for k, v in BOOK_DOC_FIELDS.items() if k in ("key", "symbol", "market")},
    "first_update_id": "int",
    **{k: v for k, v in BOOK_DOC_FIELDS.items() if k not in ("key", "symbol", "market")},
}


class BookCodec(TuplePageCodec):
    """Pages of book snapshots (``book``) or of applied diff events (``book_diffs``), checked by
    the protocol's ``validate_book_page`` / ``validate_book_diff_page``."""

    queue_id_at, rows_at = 0, 1

    def __init__(self, kind: str, validate: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> None:
        self.kinds = (kind,)
        self._validate = validate

    def check(self, value: dict[str, Any]) -> BookPage:
        docs = self._validate(value)
        return value["queue_id"], docs

    def docs(self, page: BookPage) -> list[dict[str, Any]]:
        return page[1]


BOOK_CODEC = BookCodec(RECORD_BOOK, validate_book_page)
BOOK_DIFFS_CODEC = BookCodec(RECORD_BOOK_DIFFS, validate_book_diff_page)


def _book_spec(
    name: str, description: str, topic: str, fields: dict[str, FieldType], codec: BookCodec
) -> DatasetSpec:
    """A live book dataset: a series per (symbol, market), ordered by update id, no ledger."""
    return DatasetSpec(
        name=name,
        description=description,
        topic_of=attrgetter(topic),
        collection=name,
        fields=fields,
        series=("symbol", "market"),
        time_field="time",
        order_field="update_id",
        key=book_key,
        codec=codec,
        ledger="none",
        task_types=frozenset({WS_ORDERBOOK}),
        choices={"market": frozenset(BOOK_MARKETS)},
    )


BOOK = _book_spec(
    "book_snapshots",
    "Top-of-book snapshots of the live order books (spot and USD-M), by update id",
    "topic_book",
    BOOK_DOC_FIELDS,
    BOOK_CODEC,
)
BOOK_DIFFS = _book_spec(
    "book_diffs",
    "The diff events the live order books applied, in order (LIVE_BOOK_DIFFS), by update id",
    "topic_book_diffs",
    BOOK_DIFF_DOC_FIELDS,
    BOOK_DIFFS_CODEC,
)
