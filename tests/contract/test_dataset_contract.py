"""The store's generic dataset calls, for every dataset spec (SQLite always, ArangoDB when ARANGO_URL
is set).

Every test runs for each spec of :func:`streamforge_pipelines.datasets.all_specs` (candles of each
market, trades) and for ``ticks``, a spec defined here whose series is the symbol alone and whose time
and order fields differ, against each adapter (the ``store`` fixture of ``conftest.py``). The
documents are built from the spec alone (its fields, types, series, time and order fields,
``choices`` and key function), so a dataset added later is covered by the same checks; what each
call must return is computed here from the documents written (independent truth), not read back
from the store.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import pytest

from streamforge_pipelines import datasets
from streamforge_pipelines.datasets import DatasetSpec, FieldType
from streamforge_pipelines.store import Store, StoreError

T0 = 1_722_470_400_000  # 2024-08-01T00:00:00Z
STEP = 3_600_000  # one document an hour: 40 of them span two UTC days
N = 40


def _tick_key(symbol: str, seq: int) -> str:
    return f"{symbol}:tick:{seq}"


class _NoCodec:
    """The store's dataset calls never use a codec but in ``upsert_pages``, not tested here."""

    kinds = ("ticks",)

    def check(self, value: dict[str, Any]) -> Any:
        raise NotImplementedError

    def count(self, page: Any) -> int:
        raise NotImplementedError

    def queue_id(self, page: Any) -> str:
        raise NotImplementedError

    def docs(self, page: Any) -> list[dict[str, Any]]:
        raise NotImplementedError


TICKS = DatasetSpec(
    name="ticks",
    description="A test-only dataset: one series per symbol, time and order fields apart",
    topic_of=attrgetter("topic_trades"),
    collection="ticks",
    fields={
        "key": "str",
        "symbol": "str",
        "seq": "int",
        "time": "int",
        "value": "str",
        "note": "str?",
        "ref": "int?",
        "up": "bool",
        "source": "str",
    },
    series=("symbol",),
    time_field="time",
    order_field="seq",
    key=_tick_key,
    codec=_NoCodec(),
    ledger="id_ranges",
    task_types=frozenset({"test_ticks"}),
)

SPECS = [*datasets.all_specs(), TICKS]


@pytest.fixture(params=SPECS, ids=lambda spec: spec.name)
def spec(request: pytest.FixtureRequest) -> DatasetSpec:
    return request.param


def series_of(spec: DatasetSpec, symbol: str = "BTCUSDT", variant: int = 0) -> tuple[Any, ...]:
    """A series of ``spec``: the symbol, then a value of each further series field (one of its
    ``choices`` when it has them; ``variant`` picks another one)."""
    values: list[Any] = [symbol]
    for name in spec.series[1:]:
        if name in spec.choices:
            options = sorted(spec.choices[name])
            values.append(options[variant % len(options)])
        elif spec.fields[name].startswith("int"):
            values.append(1 + variant)
        else:
            values.append(f"s{variant}")
    return tuple(values)


def _value(kind: FieldType, i: int, salt: str) -> Any:
    if kind == "str":
        return f"{100 + i % 17}.{i % 10}{salt}"
    if kind == "int":
        return 1000 + i
    if kind == "bool":
        return i % 2 == 0
    if kind == "str?":
        return None if i % 3 == 0 else f"{i}.5{salt}"
    return None if i % 2 else 7 * i  # int?


def doc(spec: DatasetSpec, series: tuple[Any, ...], i: int, salt: str = "", key: str | None = None) -> dict:
    """The ``i``-th document of a series: time ``T0 + i * STEP``; the order value is that time when
    the spec orders by time, else ``500 + i``; every other field a value of its type."""
    time = T0 + i * STEP
    order = time if spec.order_field == spec.time_field else 500 + i
    out: dict[str, Any] = {}
    for name, kind in spec.fields.items():
        if name == "key":
            out[name] = key or spec.key(*series, order)
        elif name in spec.series:
            out[name] = series[spec.series.index(name)]
        elif name == spec.order_field:
            out[name] = order
        elif name == spec.time_field:
            out[name] = time
        elif name in spec.choices:
            out[name] = sorted(spec.choices[name])[0]
        else:
            out[name] = _value(kind, i, salt)
    return out


def docs_of(spec: DatasetSpec, series: tuple[Any, ...], count: int = N, salt: str = "") -> list[dict]:
    return [doc(spec, series, i, salt) for i in range(count)]


def order_of(spec: DatasetSpec, d: dict) -> int:
    return int(d[spec.order_field])


def time_of(spec: DatasetSpec, d: dict) -> int:
    return int(d[spec.time_field])


def utc_day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _str_field(spec: DatasetSpec) -> str:
    """A plain ``str`` field that is neither the key nor a series field (the one a test changes)."""
    return next(n for n, k in spec.fields.items() if k == "str" and n != "key" and n not in spec.series)


def test_upsert_is_idempotent_and_updates(store: Store, spec: DatasetSpec) -> None:
    series = series_of(spec)
    docs = docs_of(spec, series)
    shuffled = list(docs)
    random.Random(11).shuffle(shuffled)
    assert store.upsert(spec, shuffled) == N
    assert store.upsert(spec, docs) == N  # a replay writes the same documents again
    assert store.count(spec, series, T0, T0 + N * STEP) == N
    assert store.read(spec, series, T0, T0 + N * STEP) == docs
    field = _str_field(spec)
    changed = [{**d, field: f"9{d[field]}"} for d in docs[::4]]
    assert store.upsert(spec, changed) == len(changed)
    assert store.count(spec, series, T0, T0 + N * STEP) == N
    stored = store.read(spec, series, T0, T0 + N * STEP)
    assert [d[field].startswith("9") for d in stored] == [i % 4 == 0 for i in range(N)]
    assert stored[1] == docs[1]
    assert store.upsert(spec, []) == 0


def test_read_is_ordered_half_open_per_series_and_keeps_exact_types(store: Store, spec: DatasetSpec) -> None:
    series, other_symbol = series_of(spec), series_of(spec, "ETHUSDT")
    docs = docs_of(spec, series)
    store.upsert(spec, list(reversed(docs)))
    store.upsert(spec, docs_of(spec, other_symbol, salt="e"))
    if len(spec.series) > 1:
        store.upsert(spec, docs_of(spec, series_of(spec, variant=1), salt="v"))
    got = store.read(spec, series, T0 + 5 * STEP, T0 + 10 * STEP)
    assert got == docs[5:10]  # start included, end excluded, ordered by the order field
    for stored, written in zip(got, docs[5:10], strict=True):
        assert list(stored) == list(spec.fields)
        assert [type(v) for v in stored.values()] == [type(v) for v in written.values()]
    assert store.read(spec, series, T0 + STEP, T0 + STEP) == []
    assert store.read(spec, series_of(spec, "NOPEUSDT"), 0, 2**53) == []
    assert store.count(spec, series, T0 + 5 * STEP, T0 + 10 * STEP) == 5
    assert store.count(spec, other_symbol, 0, 2**53) == N
    with pytest.raises(ValueError, match="series"):
        store.read(spec, (*series, "extra"), 0, 2**53)


def test_counts_by_day_across_the_utc_boundary(store: Store, spec: DatasetSpec) -> None:
    start = T0 - 4 * STEP  # 2024-07-31T20:00Z: the series spans three UTC days
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    written: list[dict] = []
    for n, symbol in enumerate(symbols):
        docs = [doc(spec, series_of(spec, symbol), i - 4 + n) for i in range(30)]
        store.upsert(spec, docs)
        written += docs
    rest = series_of(spec)[1:]
    lo, hi = T0 - 2 * STEP, T0 + 20 * STEP
    expected = Counter(
        (d[spec.series[0]], utc_day(time_of(spec, d)))
        for d in written
        if d[spec.series[0]] in ("BTCUSDT", "ETHUSDT") and lo <= time_of(spec, d) < hi
    )
    assert len({day for _, day in expected}) == 2
    assert store.counts_by_day(spec, ["BTCUSDT", "ETHUSDT", "XRPUSDT"], rest, lo, hi) == dict(expected)
    assert store.counts_by_day(spec, [], rest, start, hi) == {}
    if len(spec.series) > 1:
        assert store.counts_by_day(spec, symbols, series_of(spec, variant=1)[1:], 0, 2**53) == {}


def test_duplicates_are_zero_after_replays_and_expose_a_broken_key(store: Store, spec: DatasetSpec) -> None:
    btc, eth = series_of(spec), series_of(spec, "ETHUSDT")
    rest = btc[1:]
    for _ in range(3):
        store.upsert(spec, docs_of(spec, btc) + docs_of(spec, eth))
    assert store.duplicates(spec, ["BTCUSDT", "ETHUSDT"], rest, T0, T0 + N * STEP) == 0
    # A writer with a broken key function stores the same (series, order value) twice.
    again = doc(spec, btc, 7, key=f"{spec.key(*btc, order_of(spec, doc(spec, btc, 7)))}:again")
    store.upsert(spec, [again])
    assert store.duplicates(spec, ["BTCUSDT", "ETHUSDT"], rest, T0, T0 + N * STEP) == 1
    assert store.duplicates(spec, ["ETHUSDT"], rest, T0, T0 + N * STEP) == 0
    assert store.duplicates(spec, ["BTCUSDT"], rest, T0, T0 + 7 * STEP) == 0
    assert store.duplicates(spec, [], rest, T0, T0 + N * STEP) == 0
    assert store.count(spec, btc, T0, T0 + N * STEP) == N + 1


def test_order_values_by_time_and_by_order(store: Store, spec: DatasetSpec) -> None:
    series = series_of(spec)
    docs = docs_of(spec, series)
    store.upsert(spec, docs)
    store.upsert(spec, docs[:5])  # re-upserts: still one value each
    twin = doc(spec, series, 4)  # stored twice (a broken key function): still one value
    store.upsert(spec, [{**twin, "key": f"{twin['key']}:again"}])
    store.upsert(spec, docs_of(spec, series_of(spec, "ETHUSDT")))
    lo, hi = T0 + 3 * STEP, T0 + 12 * STEP
    by_time = sorted(order_of(spec, d) for d in docs if lo <= time_of(spec, d) < hi)
    assert store.order_values(spec, series, lo, hi, by="time") == by_time
    first, end = order_of(spec, docs[10]), order_of(spec, docs[25])
    by_order = sorted(order_of(spec, d) for d in docs if first <= order_of(spec, d) < end)
    assert store.order_values(spec, series, first, end, by="order") == by_order
    assert len(by_order) == 15
    assert store.order_values(spec, series_of(spec, "NOPEUSDT"), 0, 2**53) == []
    with pytest.raises(ValueError, match="by must be"):
        store.order_values(spec, series, lo, hi, by="key")  # type: ignore[arg-type]


def test_order_span(store: Store, spec: DatasetSpec) -> None:
    series = series_of(spec)
    docs = docs_of(spec, series)
    random.Random(5).shuffle(docs)
    store.upsert(spec, docs)
    lo, hi = T0 + 10 * STEP, T0 + 20 * STEP
    inside = [order_of(spec, d) for d in docs if lo <= time_of(spec, d) < hi]
    assert store.order_span(spec, series, lo, hi) == (min(inside), max(inside), len(inside))
    assert store.order_span(spec, series, T0 - 10 * STEP, T0) is None
    assert store.order_span(spec, series_of(spec, "ETHUSDT"), 0, 2**53) is None


_WRONG: dict[str, Any] = {"str": 1.5, "int": "7", "bool": 1, "str?": 2, "int?": "x"}


def _refusals(spec: DatasetSpec) -> list[tuple[str, Any]]:
    """(field, value) pairs the store must refuse: a value of another type for every field, a value
    outside each field's ``choices``, and two invalid keys."""
    out = [(name, _WRONG[kind]) for name, kind in spec.fields.items() if name != "key"]
    out += [(name, "not-a-choice") for name in spec.choices]
    return [*out, ("key", "a/b"), ("key", "")]


def test_bad_documents_are_refused_whole(store: Store, spec: DatasetSpec) -> None:
    series = series_of(spec)
    good, other = doc(spec, series, 1), doc(spec, series, 2)
    for name, value in _refusals(spec):
        with pytest.raises(StoreError):
            store.upsert(spec, [good, {**other, name: value}])
    missing = {k: v for k, v in good.items() if k != spec.time_field}
    with pytest.raises(StoreError, match=f"lacks fields.*{spec.time_field}"):
        store.upsert(spec, [missing])
    assert store.count(spec, series, 0, 2**53) == 0
    assert store.upsert(spec, [{**good, "ignored": True}]) == 1  # extra fields are dropped
    assert store.read(spec, series, 0, 2**53) == [good]
