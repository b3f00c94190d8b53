"""A dataset's documents as the store checks and holds them, derived from its :class:`DatasetSpec`.

Both adapters store a dataset the same way: documents with exactly the spec's fields (extra fields
dropped), each value of the field's type (``str``, ``int``, ``bool``; ``str?`` / ``int?`` allow
``None``), the spec's restricted fields (``choices``) within their sets, and a valid ``key`` (the
document key, ArangoDB's ``_key`` alphabet). :class:`DocumentLayout` checks a batch in bulk, C-level
passes (one ``set(map(type, ...))`` per field type, one regex over the joined keys), so a check
costs little at thousands of documents and only a refused batch is walked row by row to name the
culprit. Prices, volumes and quantities stay the decimal strings the exchange sent: a float is
refused, never turned into one.

:func:`layout_of` returns the (cached) layout of a spec; the adapters build their statements from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, Generic, Literal, NoReturn, TypeVar

from ..datasets import DatasetSpec
from .errors import StoreError
from .names import is_valid_key, keys_valid, validate_collection_name, validate_field_name

_NONE = type(None)
#: The Python types each field type admits (``type(v) in ...``: a bool is not an int here).
ALLOWED_TYPES: dict[str, frozenset[type]] = {
    "str": frozenset({str}),
    "int": frozenset({int}),
    "bool": frozenset({bool}),
    "str?": frozenset({str, _NONE}),
    "int?": frozenset({int, _NONE}),
}
_TYPE_WORDS = {"str": "str", "int": "int", "bool": "bool", "str?": "str or None", "int?": "int or None"}

#: How :meth:`~streamforge_pipelines.store.base.Store.order_values` selects: a time range, or an
#: order range.
OrderBy = Literal["time", "order"]
ORDER_BY: tuple[str, ...] = ("time", "order")


def _types_at(positions: tuple[int, ...]) -> Callable[[list[tuple[Any, ...]]], set[type]]:
    """The set of value types found at ``positions`` of every row (one C-level pass)."""
    if len(positions) == 1:
        one = itemgetter(positions[0])
        return lambda rows: set(map(type, map(one, rows)))
    many = itemgetter(*positions)
    return lambda rows: set(map(type, chain.from_iterable(map(many, rows))))


def _tuple_getter(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        name = names[0]
        return lambda doc: (doc[name],)
    return itemgetter(*names)


class DocumentLayout:
    """What the store needs of one spec: names (validated), field positions and the batch check."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.collection = validate_collection_name(spec.collection)
        self.fields: tuple[str, ...] = tuple(validate_field_name(f) for f in spec.field_names)
        self.types: dict[str, str] = dict(spec.fields)
        if self.types["key"] != "str":
            raise ValueError(f"dataset {spec.name!r}: the key field must be 'str', got {self.types['key']!r}")
        self.series: tuple[str, ...] = spec.series
        self.time_field = spec.time_field
        self.order_field = spec.order_field
        self._getter = _tuple_getter(self.fields)
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(self.fields):
            groups.setdefault(self.types[name], []).append(i)
        self._checks = [(ALLOWED_TYPES[t], _types_at(tuple(at))) for t, at in groups.items()]
        self._choices = [
            (self.fields.index(name), frozenset(allowed), itemgetter(self.fields.index(name)))
            for name, allowed in spec.choices.items()
        ]
        #: Positions of the bool fields (SQLite holds them as 0/1 and reads them back as bool).
        self.bool_at: tuple[int, ...] = tuple(i for i, f in enumerate(self.fields) if self.types[f] == "bool")

    @property
    def index_fields(self) -> list[tuple[str, ...]]:
        """The secondary indexes every adapter keeps: (series..., time field) for the time-range
        queries and, when it is another field, (series..., order field) for the order-range ones."""
        out = [(*self.series, self.time_field)]
        if self.order_field != self.time_field:
            out.append((*self.series, self.order_field))
        return out

    def rows(self, docs: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Check documents and return them as tuples in field order; :class:`StoreError` names the
        first bad document (a missing field, a value of another type, a value outside its
        ``choices``, an invalid key), and the whole batch is refused."""
        try:
            rows = list(map(self._getter, docs))
        except (KeyError, TypeError):
            for i, doc in enumerate(docs):
                missing = [f for f in self.fields if f not in doc]
                if missing:
                    raise StoreError(f"{self.name} #{i} lacks fields {missing}") from None
            raise
        if not rows:
            return rows
        if (
            all(types_in(rows) <= allowed for allowed, types_in in self._checks)
            and all(set(map(get, rows)) <= allowed for _, allowed, get in self._choices)
            and keys_valid(list(map(itemgetter(0), rows)))
        ):
            return rows
        self._raise_bad(rows)

    def _raise_bad(self, rows: Sequence[tuple[Any, ...]]) -> NoReturn:
        for i, row in enumerate(rows):
            for name, value in zip(self.fields, row, strict=True):
                typ = self.types[name]
                if type(value) not in ALLOWED_TYPES[typ]:
                    raise StoreError(
                        f"{self.name} #{i} field {name!r} must be {_TYPE_WORDS[typ]}, "
                        f"got {type(value).__name__} {value!r:.80}"
                    )
            for at, allowed, _ in self._choices:
                if row[at] not in allowed:
                    raise StoreError(
                        f"{self.name} #{i} field {self.fields[at]!r} must be one of {sorted(allowed)}, "
                        f"got {row[at]!r:.80}"
                    )
            if not is_valid_key(row[0]):
                raise StoreError(f"{self.name} #{i} has invalid key {row[0]!r:.300}")
        raise StoreError(f"invalid {self.name} batch")  # pragma: no cover - unreachable

    def document(self, row: Sequence[Any]) -> dict[str, Any]:
        """A stored row as the document written (bools read back as bools)."""
        doc = dict(zip(self.fields, row, strict=True))
        for at in self.bool_at:
            name = self.fields[at]
            if doc[name] is not None:
                doc[name] = bool(doc[name])
        return doc

    def series_values(self, series: Iterable[Any]) -> tuple[Any, ...]:
        """``series`` checked against the spec (one value per series field)."""
        return self.spec.check_series(tuple(series))

    def rest_values(self, rest: Iterable[Any]) -> tuple[Any, ...]:
        """The series values after the first (the first comes as a list of symbols)."""
        values = tuple(rest)
        if len(values) != len(self.series) - 1:
            raise ValueError(
                f"dataset {self.name!r}: after the symbols, a series is {self.series[1:]}, got {values!r}"
            )
        return values


_T = TypeVar("_T")
_CACHE_LOCK = threading.Lock()


class SpecCache(Generic[_T]):
    """Values derived from a spec, computed once per spec object. Keyed by the spec's identity with
    the spec held alongside (so the identity cannot be reused while cached): a spec holds dicts, so
    it cannot be hashed, and comparing whole specs on every call would cost more than the query."""

    def __init__(self, make: Callable[[DatasetSpec], _T]) -> None:
        self._make = make
        self._items: dict[int, tuple[DatasetSpec, _T]] = {}

    def __call__(self, spec: DatasetSpec) -> _T:
        hit = self._items.get(id(spec))
        if hit is not None and hit[0] is spec:
            return hit[1]
        value = self._make(spec)
        with _CACHE_LOCK:
            self._items[id(spec)] = (spec, value)
        return value


#: The layout of a spec (validated names, field positions, the batch check).
layout_of: SpecCache[DocumentLayout] = SpecCache(DocumentLayout)


def check_order_by(by: str) -> OrderBy:
    """``by`` if it is ``time`` or ``order``, else ValueError."""
    if by not in ORDER_BY:
        raise ValueError(f"order_values: by must be one of {ORDER_BY}, got {by!r}")
    return by  # type: ignore[return-value]
