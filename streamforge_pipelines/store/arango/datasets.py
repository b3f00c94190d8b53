"""The ArangoDB adapter's datasets: one document collection per spec, AQL generated from the spec.

A dataset's collection holds documents with ``_key`` = the document key and exactly the spec's
fields, with persistent indexes on ``(series..., time field)`` and, when it differs, ``(series...,
order field)``, named ``idx_<field>_<field>...`` (for candles and trades the indexes the adapter
created before datasets were specs). Batches go through the bulk import API with
``onDuplicate=update`` (one HTTP request per batch, all-or-nothing with ``complete=true``).

The queries are written from the spec's field names (validated: letters, digits, ``_``); every
value, and the collection, is a bind variable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from arango.collection import StandardCollection

from ...datasets import DatasetSpec
from ..base import Store
from ..documents import OrderBy, SpecCache, check_order_by, layout_of
from .connection import ArangoConnection, arango_errors, persistent_index

_DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _day(day_index: float) -> str:
    return (_EPOCH + timedelta(days=int(day_index))).strftime("%Y-%m-%d")


def _attr(field: str) -> str:
    """A document attribute in AQL, quoted (a validated field name may still be an AQL keyword)."""
    return f"d.`{field}`"


class Queries:
    """The AQL of one dataset (series values bound as ``@s0``, ``@s1`` ...; ranges as ``@lo``, ``@hi``)."""

    def __init__(self, spec: DatasetSpec) -> None:
        layout = self.layout = layout_of(spec)
        time, order = _attr(layout.time_field), _attr(layout.order_field)
        self.indexes = [persistent_index(fields) for fields in layout.index_fields]
        self.series_names = [f"s{i}" for i in range(len(layout.series))]
        series = " AND ".join(f"{_attr(f)} == @s{i}" for i, f in enumerate(layout.series))
        in_time = f"{time} >= @lo AND {time} < @hi"
        self.read = (
            f"FOR d IN @@col FILTER {series} AND {in_time} SORT {order}, d._key RETURN KEEP(d, @fields)"
        )
        self.count = f"FOR d IN @@col FILTER {series} AND {in_time} COLLECT WITH COUNT INTO n RETURN n"
        self.values_by = {
            "time": f"FOR d IN @@col FILTER {series} AND {in_time} COLLECT v = {order} SORT v RETURN v",
            "order": (
                f"FOR d IN @@col FILTER {series} AND {order} >= @lo AND {order} < @hi "
                f"COLLECT v = {order} SORT v RETURN v"
            ),
        }
        self.span = (
            f"FOR d IN @@col FILTER {series} AND {in_time} "
            f"COLLECT AGGREGATE least = MIN({order}), most = MAX({order}), n = COUNT(1) "
            "RETURN [least, most, n]"
        )
        first, rest = _attr(layout.series[0]), layout.series[1:]
        by_symbols = f"{first} IN @symbols" + "".join(
            f" AND {_attr(f)} == @s{i}" for i, f in enumerate(rest, 1)
        )
        self.counts_by_day = (
            f"FOR d IN @@col FILTER {by_symbols} AND {in_time} "
            f"COLLECT symbol = {first}, day = FLOOR({time} / @day_ms) WITH COUNT INTO n "
            "RETURN [symbol, day, n]"
        )
        group = ", ".join(f"g{i} = {_attr(f)}" for i, f in enumerate((*layout.series, layout.order_field)))
        self.duplicates = (
            f"RETURN LENGTH(FOR d IN @@col FILTER {by_symbols} AND {in_time} "
            f"COLLECT {group} WITH COUNT INTO n FILTER n > 1 RETURN 1)"
        )

    def bind(self, series: Sequence[Any], lo: int, hi: int, **more: Any) -> dict[str, Any]:
        values = self.layout.series_values(series)
        return {
            "@col": self.layout.collection,
            **dict(zip(self.series_names, values, strict=True)),
            "lo": lo,
            "hi": hi,
            **more,
        }

    def bind_symbols(self, symbols: list[str], rest: Sequence[Any], **more: Any) -> dict[str, Any]:
        values = self.layout.rest_values(rest)
        named = dict(zip(self.series_names[1:], values, strict=True))
        return {"@col": self.layout.collection, "symbols": symbols, **named, **more}


#: The queries of a spec (built once per spec object).
queries_of: SpecCache[Queries] = SpecCache(Queries)


class ArangoDatasets(ArangoConnection, Store):
    """The dataset half of :class:`~streamforge_pipelines.store.arango.ArangoStore` (its record
    methods stay abstract here)."""

    def _collection(self, aql: Queries) -> StandardCollection:
        return self._ensure_collection(aql.layout.collection, indexes=aql.indexes)

    def _run(self, spec: DatasetSpec, what: str, query: str, bind: dict[str, Any]) -> list[Any]:
        aql = queries_of(spec)
        with arango_errors(f"{what} in {aql.layout.collection!r}"):
            self._collection(aql)
            return self._query(query, bind)

    def upsert(self, spec: DatasetSpec, docs: Sequence[Mapping[str, Any]]) -> int:
        aql = queries_of(spec)
        rows = aql.layout.rows(docs)
        if not rows:
            return 0
        fields = aql.layout.fields
        payload = [{"_key": row[0], **dict(zip(fields, row, strict=True))} for row in rows]
        with arango_errors(f"upsert into {aql.layout.collection!r}"):
            self._import(self._collection(aql), payload)
        return len(rows)

    def read(
        self, spec: DatasetSpec, series: Sequence[Any], start_ms: int, end_ms: int
    ) -> list[dict[str, Any]]:
        aql = queries_of(spec)
        fields = aql.layout.fields
        bind = aql.bind(series, start_ms, end_ms, fields=list(fields))
        docs = self._run(spec, "read", aql.read, bind)
        return [{f: doc.get(f) for f in fields} for doc in docs]

    def count(self, spec: DatasetSpec, series: Sequence[Any], start_ms: int, end_ms: int) -> int:
        aql = queries_of(spec)
        result = self._run(spec, "count", aql.count, aql.bind(series, start_ms, end_ms))
        return int(result[0]) if result else 0

    def _over_symbols(
        self,
        spec: DatasetSpec,
        what: str,
        query: str,
        symbols: Sequence[str],
        rest: Sequence[Any],
        **bind: Any,
    ) -> list[Any] | None:
        """The rows of ``query`` for ``symbols`` and the rest of the series; None for no symbols."""
        aql = queries_of(spec)
        bound = aql.bind_symbols(sorted(set(symbols)), rest, **bind)
        return self._run(spec, what, query, bound) if bound["symbols"] else None

    def counts_by_day(
        self, spec: DatasetSpec, symbols: Sequence[str], rest: Sequence[Any], start_ms: int, end_ms: int
    ) -> dict[tuple[str, str], int]:
        query = queries_of(spec).counts_by_day
        rows = self._over_symbols(
            spec, "daily counts", query, symbols, rest, lo=start_ms, hi=end_ms, day_ms=_DAY_MS
        )
        return {(symbol, _day(day)): int(n) for symbol, day, n in rows or ()}

    def duplicates(
        self, spec: DatasetSpec, symbols: Sequence[str], rest: Sequence[Any], start_ms: int, end_ms: int
    ) -> int:
        query = queries_of(spec).duplicates
        result = self._over_symbols(spec, "duplicate check", query, symbols, rest, lo=start_ms, hi=end_ms)
        return int(result[0]) if result else 0

    def order_values(
        self, spec: DatasetSpec, series: Sequence[Any], lo: int, hi: int, *, by: OrderBy = "time"
    ) -> list[int]:
        aql = queries_of(spec)
        query = aql.values_by[check_order_by(by)]
        return [int(v) for v in self._run(spec, "order values", query, aql.bind(series, lo, hi))]

    def order_span(
        self, spec: DatasetSpec, series: Sequence[Any], start_ms: int, end_ms: int
    ) -> tuple[int, int, int] | None:
        aql = queries_of(spec)
        result = self._run(spec, "order span", aql.span, aql.bind(series, start_ms, end_ms))
        if not result or not result[0][2]:
            return None
        lo, hi, n = result[0]
        return int(lo), int(hi), int(n)
