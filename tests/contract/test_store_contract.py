"""Contract tests for the store adapters (SQLite always, ArangoDB when ARANGO_URL is set).

Every test runs against each adapter through the ``store`` / ``make_store`` fixtures of
``conftest.py``; the data is deterministic (fixed timestamps, a seeded shuffle).
"""

from __future__ import annotations

import dataclasses
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streamforge_pipelines.datasets import CANDLES, TRADES, DatasetSpec
from streamforge_pipelines.protocol import candle_key
from streamforge_pipelines.store import (
    InvalidNameError,
    SqliteStore,
    Store,
    StoreError,
    TaskNotFound,
    TaskRecord,
    open_store,
)

T0 = 1_722_470_400_000  # 2024-08-01T00:00:00Z
FIVE_MIN = 300_000
HOUR = 3_600_000


def placed(spec: DatasetSpec, collection: str) -> DatasetSpec:
    """The same dataset kept in another collection."""
    return dataclasses.replace(spec, collection=collection)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def candle(
    symbol: str,
    open_time: int,
    interval: str = "5m",
    step: int = FIVE_MIN,
    close: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    n = open_time // step
    return {
        "key": key or candle_key(symbol, interval, open_time),
        "symbol": symbol,
        "interval": interval,
        "open_time": open_time,
        "open": f"{64000 + n % 97}.10",
        "high": f"{64100 + n % 89}.20",
        "low": f"{63900 + n % 83}.30",
        "close": close or f"{64050 + n % 79}.40000000",
        "volume": "12.34500000",
        "close_time": open_time + step - 1,
        "quote_volume": "790000.12",
        "trades": 1000 + n % 61,
        "taker_buy_base": "6.10000000",
        "taker_buy_quote": "390000.50",
        "source": "simulator",
        "queue_id": f"wf-{symbol.lower()}-api_candles_{interval}-20240801-a1b2c3",
    }


def series(symbol: str, start: int, count: int, interval: str = "5m", step: int = FIVE_MIN) -> list[dict]:
    return [candle(symbol, start + i * step, interval, step) for i in range(count)]


# -- candles ---------------------------------------------------------------------------------------


def test_upsert_is_idempotent_and_updates(store: Store) -> None:
    docs = series("BTCUSDT", T0, 300)
    assert store.upsert(CANDLES, docs) == 300
    assert store.upsert(CANDLES, docs) == 300
    assert store.count(CANDLES, ("BTCUSDT", "5m"), T0, T0 + 300 * FIVE_MIN) == 300

    changed = [candle("BTCUSDT", T0 + i * FIVE_MIN, close="70000.01000000") for i in range(0, 300, 3)]
    assert store.upsert(CANDLES, changed) == 100
    assert store.count(CANDLES, ("BTCUSDT", "5m"), T0, T0 + 300 * FIVE_MIN) == 300
    stored = store.read(CANDLES, ("BTCUSDT", "5m"), T0, T0 + 300 * FIVE_MIN)
    assert [d["close"] == "70000.01000000" for d in stored] == [i % 3 == 0 for i in range(300)]
    assert stored[1] == docs[1]
    assert store.upsert(CANDLES, []) == 0


def test_read_is_ordered_half_open_and_keeps_exact_shape(store: Store) -> None:
    docs = series("ETHUSDT", T0, 20)
    shuffled = list(docs)
    random.Random(7).shuffle(shuffled)
    store.upsert(CANDLES, shuffled)
    store.upsert(CANDLES, series("BTCUSDT", T0, 20))  # other symbol
    store.upsert(CANDLES, series("ETHUSDT", T0, 20, interval="1m", step=60_000))  # other interval

    got = store.read(CANDLES, ("ETHUSDT", "5m"), T0 + 5 * FIVE_MIN, T0 + 10 * FIVE_MIN)
    assert got == docs[5:10]  # start included, end excluded, ordered by open_time
    for doc in got:
        assert set(doc) == set(CANDLES.field_names)
        assert all(isinstance(doc[f], str) for f in ("open", "high", "low", "close", "volume"))
        assert all(type(doc[f]) is int for f in ("open_time", "close_time", "trades"))
    assert store.read(CANDLES, ("ETHUSDT", "5m"), T0 + FIVE_MIN, T0 + FIVE_MIN) == []
    assert store.read(CANDLES, ("ETHUSDT", "5m"), 0, T0) == []
    assert store.count(CANDLES, ("ETHUSDT", "5m"), T0 + 5 * FIVE_MIN, T0 + 10 * FIVE_MIN) == 5
    assert store.read(CANDLES, ("NOPEUSDT", "5m"), 0, 2**53) == []


def test_counts_by_day_across_utc_boundary(store: Store) -> None:
    start = ms("2024-07-31T20:00:00")
    store.upsert(CANDLES, series("BTCUSDT", start, 8, "1h", HOUR))  # 20:00 .. 03:00
    store.upsert(CANDLES, series("ETHUSDT", start + HOUR, 5, "1h", HOUR))  # 21:00 .. 01:00
    store.upsert(CANDLES, series("SOLUSDT", start, 8, "1h", HOUR))  # not asked for

    counts = store.counts_by_day(
        CANDLES,
        ["BTCUSDT", "ETHUSDT", "XRPUSDT"],
        ("1h",),
        ms("2024-07-31T00:00:00"),
        ms("2024-08-02T00:00:00"),
    )
    assert counts == {
        ("BTCUSDT", "2024-07-31"): 4,
        ("BTCUSDT", "2024-08-01"): 4,
        ("ETHUSDT", "2024-07-31"): 3,
        ("ETHUSDT", "2024-08-01"): 2,
    }
    # The range is half-open on open_time: [22:00, 02:00) holds 22:00, 23:00, 00:00, 01:00.
    counts = store.counts_by_day(
        CANDLES, ["BTCUSDT"], ("1h",), ms("2024-07-31T22:00:00"), ms("2024-08-01T02:00:00")
    )
    assert counts == {("BTCUSDT", "2024-07-31"): 2, ("BTCUSDT", "2024-08-01"): 2}
    assert store.counts_by_day(CANDLES, [], ("1h",), 0, 2**53) == {}
    assert store.counts_by_day(CANDLES, ["BTCUSDT"], ("5m",), 0, 2**53) == {}


def test_duplicate_candle_keys_is_zero_after_reupserts_and_exposes_bad_keys(store: Store) -> None:
    docs = series("BTCUSDT", T0, 50) + series("ETHUSDT", T0, 50)
    for _ in range(3):
        store.upsert(CANDLES, docs)
    assert store.duplicates(CANDLES, ["BTCUSDT", "ETHUSDT"], ("5m",), T0, T0 + 50 * FIVE_MIN) == 0

    # A writer with a broken key function stores the same candle twice: the figure must show it.
    bad = candle("BTCUSDT", T0 + 7 * FIVE_MIN, key=f"BTCUSDT:5m:{T0 + 7 * FIVE_MIN}:again")
    store.upsert(CANDLES, [bad])
    assert store.duplicates(CANDLES, ["BTCUSDT", "ETHUSDT"], ("5m",), T0, T0 + 50 * FIVE_MIN) == 1
    assert store.duplicates(CANDLES, ["ETHUSDT"], ("5m",), T0, T0 + 50 * FIVE_MIN) == 0
    assert store.duplicates(CANDLES, ["BTCUSDT"], ("5m",), T0, T0 + 7 * FIVE_MIN) == 0
    assert store.duplicates(CANDLES, [], ("5m",), T0, T0 + 50 * FIVE_MIN) == 0
    assert store.count(CANDLES, ("BTCUSDT", "5m"), T0, T0 + 50 * FIVE_MIN) == 51


@pytest.mark.parametrize(
    "name", ["candles; DROP", "../x", "", "tasks", "1candles", "x y", 'c"', "a" * 65, "candles\x00"]
)
def test_invalid_collection_names_are_rejected(store: Store, name: str) -> None:
    doc = candle("BTCUSDT", T0)
    with pytest.raises(InvalidNameError):
        store.upsert(placed(CANDLES, name), [doc])
    with pytest.raises(InvalidNameError):
        store.read(placed(CANDLES, name), ("BTCUSDT", "5m"), 0, 2**53)
    with pytest.raises(InvalidNameError):
        store.count(placed(CANDLES, name), ("BTCUSDT", "5m"), 0, 2**53)
    with pytest.raises(InvalidNameError):
        store.counts_by_day(placed(CANDLES, name), ["BTCUSDT"], ("5m",), 0, 2**53)
    with pytest.raises(InvalidNameError):
        store.duplicates(placed(CANDLES, name), ["BTCUSDT"], ("5m",), 0, 2**53)


def test_other_collections_are_separate(store: Store) -> None:
    store.upsert(placed(CANDLES, "candles_sim"), series("BTCUSDT", T0, 10))
    assert store.count(placed(CANDLES, "candles_sim"), ("BTCUSDT", "5m"), T0, T0 + 10 * FIVE_MIN) == 10
    assert store.count(CANDLES, ("BTCUSDT", "5m"), T0, T0 + 10 * FIVE_MIN) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("close", 64000.5), ("open_time", "1722470400000"), ("trades", 1.0), ("key", "a/b"), ("key", "")],
)
def test_bad_candles_are_refused_whole(store: Store, field: str, value: Any) -> None:
    docs = series("BTCUSDT", T0, 3)
    docs[1] = {**docs[1], field: value}
    with pytest.raises(StoreError):
        store.upsert(CANDLES, docs)
    missing = {k: v for k, v in candle("BTCUSDT", T0).items() if k != "volume"}
    with pytest.raises(StoreError, match="volume"):
        store.upsert(CANDLES, [missing])
    assert store.count(CANDLES, ("BTCUSDT", "5m"), 0, 2**53) == 0


def test_extra_fields_are_dropped(store: Store) -> None:
    doc = {**candle("BTCUSDT", T0), "ignored": True}
    store.upsert(CANDLES, [doc])
    assert store.read(CANDLES, ("BTCUSDT", "5m"), T0, T0 + 1) == [candle("BTCUSDT", T0)]


# -- task records ----------------------------------------------------------------------------------


def task(n: int, **overrides: Any) -> TaskRecord:
    values: dict[str, Any] = {
        "queue_id": f"wf-btcusdt-api_candles_5m-2024080{n}-a1b2c{n}",
        "symbol": "BTCUSDT",
        "type": "api_candles_5m",
        "time_range": f"2024-08-0{n}:2024-08-0{n}",
        "run_id": "run-1",
        "partition_key": f"2024-08-0{n}",
        "created_at": 1_722_470_400.0 + n,
        "updated_at": 1_722_470_400.0 + n,
    }
    values.update(overrides)
    return TaskRecord(**values)


def test_task_round_trip_and_replace(store: Store) -> None:
    record = task(
        1,
        status="loading",
        records_expected=288,
        records_written=100,
        partitions={"0": 60, "3": 40},
        message="paging",
        error=None,
    )
    store.put_task(record)
    assert store.get_task(record.queue_id) == record
    assert store.get_task("wf-missing") is None
    assert store.get_task("not a valid/key") is None

    replaced = task(1, status="pending")
    store.put_task(replaced)
    assert store.get_task(record.queue_id) == replaced
    assert len(store.list_tasks()) == 1


def test_task_partitions_are_string_keyed(store: Store) -> None:
    record = task(3, partitions={0: 5, 2: 7})  # Kafka partition numbers as ints
    store.put_task(record)
    assert store.get_task(record.queue_id).partitions == {"0": 5, "2": 7}  # type: ignore[union-attr]
    updated = store.update_task(record.queue_id, partitions={1: 9})
    assert updated.partitions == {"1": 9}
    assert store.get_task(record.queue_id) == updated


def test_update_task(store: Store) -> None:
    record = task(2, partitions={"0": 5, "1": 7})
    store.put_task(record)
    updated = store.update_task(
        record.queue_id, status="finished", records_written=288, partitions={"1": 9}, message=None
    )
    assert updated.status == "finished"
    assert updated.records_written == 288
    assert updated.partitions == {"1": 9}  # replaced, not merged
    assert updated.created_at == record.created_at
    assert updated.updated_at > record.updated_at
    assert store.get_task(record.queue_id) == updated

    again = store.update_task(record.queue_id, error="ValueError: boom", status="failed")
    assert (again.status, again.error, again.records_written) == ("failed", "ValueError: boom", 288)
    cleared = store.update_task(record.queue_id, error=None)
    assert cleared.error is None
    assert store.get_task(record.queue_id) == cleared

    with pytest.raises(TaskNotFound) as info:
        store.update_task("wf-btcusdt-api_candles_5m-20240809-ffffff", status="started")
    assert isinstance(info.value, KeyError)
    with pytest.raises(TaskNotFound):
        store.update_task("bad/key", status="started")
    with pytest.raises(TypeError):
        store.update_task(record.queue_id, stauts="typo")
    with pytest.raises(TypeError):
        store.update_task(record.queue_id, queue_id="other")


def test_list_tasks_filters(store: Store) -> None:
    records = [
        task(1, status="pending"),
        task(2, status="finished"),
        task(3, status="pending", run_id="run-2"),
        task(4, status="pending", run_id=None, partition_key=None),
    ]
    for record in reversed(records):
        store.put_task(record)

    assert store.list_tasks() == records  # ordered by created_at
    assert [t.queue_id for t in store.list_tasks(status="pending")] == [
        records[0].queue_id,
        records[2].queue_id,
        records[3].queue_id,
    ]
    assert store.list_tasks(run_id="run-1") == records[:2]
    assert store.list_tasks(status="pending", run_id="run-1") == records[:1]
    assert store.list_tasks(partition_key="2024-08-03") == records[2:3]
    assert store.list_tasks(status="complete") == []


# -- graph snapshots -------------------------------------------------------------------------------


def test_graph_snapshots_round_trip_and_stay_apart(store: Store) -> None:
    nodes_a = [{"key": "BTCUSDT", "degree": 2, "ret": 0.01}, {"key": "ETHUSDT", "degree": 1, "ret": -0.02}]
    edges_a = [
        {"source": "BTCUSDT", "target": "ETHUSDT", "weight": 0.83, "method": "pearson"},
        {"source": "BTCUSDT", "target": "SOLUSDT", "weight": 0.5, "window": 288},
    ]
    nodes_b = [{"key": "BTCUSDT", "degree": 1, "ret": 0.5}, {"key": "SOLUSDT", "degree": 1, "ret": 0.0}]
    edges_b = [{"source": "SOLUSDT", "target": "BTCUSDT", "weight": -0.25, "method": "spearman"}]

    store.write_graph_snapshot("2024-08-01", nodes_a, edges_a)
    store.write_graph_snapshot("2024-08-02", nodes_b, edges_b)

    nodes, edges = store.read_graph_snapshot("2024-08-01")
    assert nodes == nodes_a
    assert edges == [{**e, "snapshot_id": "2024-08-01"} for e in edges_a]
    nodes, edges = store.read_graph_snapshot("2024-08-02")
    assert nodes == sorted(nodes_b, key=lambda n: n["key"])
    assert edges == [{**e, "snapshot_id": "2024-08-02"} for e in edges_b]

    # Writing a snapshot again replaces it (and leaves the other alone).
    store.write_graph_snapshot("2024-08-01", nodes_a[:1], [])
    assert store.read_graph_snapshot("2024-08-01") == (nodes_a[:1], [])
    assert store.read_graph_snapshot("2024-08-02")[1][0]["weight"] == -0.25
    assert store.read_graph_snapshot("2024-08-03") == ([], [])

    with pytest.raises(InvalidNameError):
        store.write_graph_snapshot("bad/id", nodes_a, edges_a)
    with pytest.raises(StoreError):
        store.write_graph_snapshot("2024-08-04", [{"degree": 1}], [])
    with pytest.raises(StoreError):
        store.write_graph_snapshot("2024-08-04", [], [{"source": "BTCUSDT", "weight": 1.0}])


def test_graph_attributes_become_plain_json(store: Store) -> None:
    np = pytest.importorskip("numpy")
    nodes = [{"key": "BTCUSDT", "ret": np.float64(0.25), "window": (1, 2), "vec": np.array([1.5, 2.5])}]
    edges = [{"source": "BTCUSDT", "target": "ETHUSDT", "weight": np.float32(0.5), "lag": np.int64(3)}]
    store.write_graph_snapshot("s1", nodes, edges)
    got_nodes, got_edges = store.read_graph_snapshot("s1")
    assert got_nodes == [{"key": "BTCUSDT", "ret": 0.25, "window": [1, 2], "vec": [1.5, 2.5]}]
    assert got_edges == [
        {"source": "BTCUSDT", "target": "ETHUSDT", "weight": 0.5, "lag": 3, "snapshot_id": "s1"}
    ]
    assert type(got_edges[0]["weight"]) is float and type(got_edges[0]["lag"]) is int


# -- concurrency and durability --------------------------------------------------------------------


def test_concurrent_use_from_a_thread_pool(store: Store) -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    batches = [(s, series(s, T0 + b * 500 * FIVE_MIN, 500)) for s in symbols for b in range(5)]
    barrier = threading.Barrier(4)

    def work(index: int) -> int:
        if index < 4:
            barrier.wait()
        symbol, docs = batches[index]
        written = store.upsert(CANDLES, docs)
        store.count(CANDLES, (symbol, "5m"), T0, T0 + 10**10)  # reads interleave with writes
        return written

    with ThreadPoolExecutor(max_workers=4) as pool:
        written = sum(pool.map(work, range(len(batches))))
    assert written == 10_000
    end = T0 + 2500 * FIVE_MIN
    for symbol in symbols:
        assert store.count(CANDLES, (symbol, "5m"), T0, end) == 2500
    assert store.duplicates(CANDLES, symbols, ("5m",), T0, end) == 0

    store.put_task(task(1, records_written=0))
    queue_id = task(1).queue_id

    def bump(i: int) -> None:
        store.update_task(queue_id, message=f"step {i}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(bump, range(20)))
    record = store.get_task(queue_id)
    assert record is not None and record.message is not None and record.message.startswith("step ")


def test_durable_after_close_and_reopen(make_store: Any) -> None:
    first: Store = make_store()
    docs = series("BTCUSDT", T0, 100)
    first.upsert(CANDLES, docs)
    first.put_task(task(1, status="complete"))
    first.write_graph_snapshot("2024-08-01", [{"key": "BTCUSDT"}], [])
    first.close()
    first.close()  # closing twice is harmless
    with pytest.raises(StoreError):
        first.count(CANDLES, ("BTCUSDT", "5m"), 0, 2**53)

    with make_store() as second:
        assert second.read(CANDLES, ("BTCUSDT", "5m"), T0, T0 + 100 * FIVE_MIN) == docs
        assert second.get_task(task(1).queue_id) == task(1, status="complete")
        assert second.read_graph_snapshot("2024-08-01") == ([{"key": "BTCUSDT"}], [])


# -- configuration ---------------------------------------------------------------------------------


def test_open_store_defaults_to_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "store.sqlite"
    with open_store(arango_url=None, sqlite_path=path) as store:
        assert isinstance(store, SqliteStore)
        store.upsert(CANDLES, series("BTCUSDT", T0, 3))
    assert path.exists()
    with open_store(arango_url="", sqlite_path=str(path)) as store:
        assert isinstance(store, SqliteStore)
        assert store.count(CANDLES, ("BTCUSDT", "5m"), 0, 2**53) == 3


# -- completeness ledger ---------------------------------------------------------------------------


def test_candle_open_times_are_sorted_distinct_and_ranged(store: Store) -> None:
    docs = series("BTCUSDT", T0, 12)
    random.Random(7).shuffle(docs)
    store.upsert(CANDLES, docs)
    store.upsert(CANDLES, series("ETHUSDT", T0, 3))
    store.upsert(CANDLES, series("BTCUSDT", T0, 2))  # re-upserts: still one open time each
    got = store.order_values(CANDLES, ("BTCUSDT", "5m"), T0 + FIVE_MIN, T0 + 10 * FIVE_MIN, by="time")
    assert got == [T0 + i * FIVE_MIN for i in range(1, 10)]
    assert store.order_values(CANDLES, ("BTCUSDT", "1h"), T0, T0 + HOUR, by="time") == []
    assert store.order_values(CANDLES, ("NOPEUSDT", "5m"), 0, 2**53, by="time") == []


def test_ledger_round_trip_replace_and_range(store: Store) -> None:
    from streamforge_pipelines.store import LEDGER_COLLECTION, LedgerRecord

    with pytest.raises(InvalidNameError, match="reserved"):
        store.upsert(placed(CANDLES, LEDGER_COLLECTION), series("BTCUSDT", T0, 1))
    a = LedgerRecord(
        symbol="BTCUSDT",
        interval="5m",
        day="2024-08-01",
        expected=288,
        stored=270,
        downtime=12,
        missing=6,
        status="missing",
        missing_ranges=[(T0 + 10 * FIVE_MIN, T0 + 16 * FIVE_MIN)],
        downtime_ranges=[(T0 + HOUR, T0 + 2 * HOUR)],
        checked_at=1.5,
    )
    b = LedgerRecord(
        symbol="BTCUSDT", interval="5m", day="2024-08-02", expected=288, stored=288, checked_at=2.0
    )
    c = LedgerRecord(
        symbol="ETHUSDT", interval="5m", day="2024-08-01", expected=288, stored=288, checked_at=3.0
    )
    other = LedgerRecord(
        symbol="BTCUSDT", interval="1h", day="2024-08-01", expected=24, stored=24, checked_at=4.0
    )
    store.put_ledger([c, b, a, other])
    store.put_ledger([])
    assert a.key == "BTCUSDT:5m:2024-08-01"
    assert store.read_ledger(["BTCUSDT", "ETHUSDT"], "5m", "2024-08-01", "2024-08-02") == [a, b, c]
    assert store.read_ledger(["BTCUSDT"], "5m", "2024-08-02", "2024-08-31") == [b]
    assert store.read_ledger(["BTCUSDT"], "1h", "2024-08-01", "2024-08-01") == [other]
    assert store.read_ledger([], "5m", "2024-08-01", "2024-08-02") == []
    fixed = LedgerRecord(
        symbol="BTCUSDT",
        interval="5m",
        day="2024-08-01",
        expected=288,
        stored=276,
        downtime=12,
        status="downtime",
        downtime_ranges=[(T0 + HOUR, T0 + 2 * HOUR)],
        repaired=6,
        checked_at=5.0,
    )
    store.put_ledger([fixed])  # replaced by key
    assert store.read_ledger(["BTCUSDT"], "5m", "2024-08-01", "2024-08-01") == [fixed]


# -- trades (aggTrades and trades) -----------------------------------------------------------------


def trade_doc(symbol: str, kind: str, trade_id: int, t: int, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "key": f"{symbol}:{kind}:{trade_id}",
        "symbol": symbol,
        "kind": kind,
        "id": trade_id,
        "price": "60000.01000000",
        "qty": f"0.{trade_id % 1000:03d}00000",
        "quote_qty": None if kind == "agg" else "600.00010000",
        "first_trade_id": 2 * trade_id if kind == "agg" else None,
        "last_trade_id": 2 * trade_id + 1 if kind == "agg" else None,
        "time": t,
        "is_buyer_maker": trade_id % 2 == 0,
        "source": "binance-rest",
        "queue_id": "wf-q",
    }
    doc.update(overrides)
    return doc


def test_trades_upsert_read_count_span_and_ids(store: Store) -> None:
    aggs = [trade_doc("BTCUSDT", "agg", 100 + i, T0 + 10 * i) for i in range(50)]
    trades = [trade_doc("BTCUSDT", "trade", 100 + i, T0 + 10 * i) for i in range(30)]
    other = [trade_doc("ETHUSDT", "agg", 100 + i, T0 + 10 * i) for i in range(5)]
    shuffled = aggs + trades + other
    random.Random(3).shuffle(shuffled)
    assert store.upsert(TRADES, shuffled) == 85
    assert store.upsert(TRADES, aggs[:10]) == 10  # idempotent by key
    assert store.upsert(TRADES, []) == 0
    assert store.read(TRADES, ("BTCUSDT", "agg"), T0, T0 + 500) == aggs  # exact shape, ordered by id
    assert store.read(TRADES, ("BTCUSDT", "trade"), T0 + 100, T0 + 200) == trades[10:20]  # half-open
    assert store.count(TRADES, ("BTCUSDT", "agg"), T0, T0 + 10**9) == 50
    assert store.count(TRADES, ("ETHUSDT", "agg"), T0, T0 + 10**9) == 5
    assert store.count(TRADES, ("BTCUSDT", "trade"), T0 + 100, T0 + 200) == 10
    assert store.order_span(TRADES, ("BTCUSDT", "agg"), T0 + 100, T0 + 200) == (110, 119, 10)
    assert store.order_span(TRADES, ("BTCUSDT", "agg"), T0 - 100, T0) is None
    store.upsert(TRADES, [trade_doc("BTCUSDT", "agg", 105, T0 + 50, price="1.00000000")])  # updates
    assert store.read(TRADES, ("BTCUSDT", "agg"), T0 + 50, T0 + 51)[0]["price"] == "1.00000000"
    assert store.order_values(TRADES, ("BTCUSDT", "agg"), 140, 1000, by="order") == list(range(140, 150))
    assert store.order_values(TRADES, ("BTCUSDT", "trade"), 0, 105, by="order") == list(range(100, 105))
    assert store.count(placed(TRADES, "trades_other"), ("BTCUSDT", "agg"), T0, T0 + 10**9) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price", 1.5),
        ("id", "7"),
        ("is_buyer_maker", 1),
        ("kind", "tick"),
        ("key", "bad key"),
        ("quote_qty", 2),
    ],
)
def test_bad_trades_are_refused_whole(store: Store, field: str, value: Any) -> None:
    good = trade_doc("BTCUSDT", "trade", 1, T0)
    bad = {**trade_doc("BTCUSDT", "trade", 2, T0 + 1), field: value}
    with pytest.raises(StoreError):
        store.upsert(TRADES, [good, bad])
    assert store.count(TRADES, ("BTCUSDT", "trade"), T0, T0 + 10) == 0
    with pytest.raises(StoreError, match="lacks fields"):
        store.upsert(TRADES, [{k: v for k, v in good.items() if k != "qty"}])


def test_candle_pages_store_exactly_what_their_documents_store(store: Store) -> None:
    """upsert_pages (the connector's path for candle pages) == upsert of the documents."""
    docs = series("ETHUSDT", ms("2024-08-01T00:00:00"), 30)
    fields = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "trades")
    rows = [[d[f] for f in fields] + [d["taker_buy_base"], d["taker_buy_quote"]] for d in docs]
    page = ("ETHUSDT", "5m", docs[0]["source"], docs[0]["queue_id"], rows)
    assert (
        store.upsert_pages(placed(CANDLES, "paged"), [(*page[:4], rows[:10]), (*page[:4], rows[10:])]) == 30
    )
    store.upsert(placed(CANDLES, "plain"), docs)
    start, end = ms("2024-08-01T00:00:00"), ms("2024-08-02T00:00:00")
    paged = store.read(placed(CANDLES, "paged"), ("ETHUSDT", "5m"), start, end)
    assert paged == store.read(placed(CANDLES, "plain"), ("ETHUSDT", "5m"), start, end) and len(paged) == 30
    assert store.upsert_pages(placed(CANDLES, "paged"), [page]) == 30  # a replayed page changes nothing
    assert store.count(placed(CANDLES, "paged"), ("ETHUSDT", "5m"), start, end) == 30


def test_candle_pages_with_any_text_in_their_constants_store_it_exactly(store: Store) -> None:
    """A page constant with quotes or spaces is stored as given (the SQLite adapter binds it then)."""
    docs = series("ETHUSDT", ms("2024-08-01T00:00:00"), 3)
    fields = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "trades")
    rows = [[d[f] for f in fields] + [d["taker_buy_base"], d["taker_buy_quote"]] for d in docs]
    odd = 'it\'s a "test"; DROP TABLE x; --'
    assert store.upsert_pages(placed(CANDLES, "odd"), [("ETHUSDT", "5m", odd, odd, rows)]) == 3
    got = store.read(
        placed(CANDLES, "odd"), ("ETHUSDT", "5m"), ms("2024-08-01T00:00:00"), ms("2024-08-02T00:00:00")
    )
    assert [(c["source"], c["queue_id"], c["open_time"]) for c in got] == [
        (odd, odd, d["open_time"]) for d in docs
    ]


def test_model_registry_records_round_trip_and_list_in_version_order(make_store: Any) -> None:
    from streamforge_pipelines.store import ModelRecord

    store = make_store()
    assert store.list_model_records() == [] and store.list_model_records("gnn") == []
    versions = ["20261125T211308000001Z-aa", "20261125T211308000002Z-bb", "20261126T000000000000Z-cc"]
    records = [
        ModelRecord(
            name="gnn",
            version=v,
            uri=f"s3://streamforge-models/models/gnn/{v}",
            metrics={"test": {"accuracy": 0.55 + i / 100, "mcc": 0.1, "f1": None}},
            data_range={"start": "2024-08-01T00:00:00+00:00", "end": "2024-08-08T00:00:00+00:00", "n": 7},
            code_version="v0.1.0-3-gabc1234",
            created_at=f"2026-11-2{5 + i}T21:13:08+00:00",
            sha256="0" * 64,
        )
        for i, v in enumerate(versions)
    ]
    for record in (records[2], records[0], records[1]):  # written out of order
        store.put_model_record(record)
    store.put_model_record(ModelRecord(name="mlp", version=versions[0], uri="file:///m"))
    assert make_store().list_model_records("gnn") == records  # another handle sees them, in order
    assert [r.name for r in store.list_model_records()] == ["gnn", "gnn", "gnn", "mlp"]
    store.put_model_record(ModelRecord(name="gnn", version=versions[0], uri="file:///moved"))  # replaces
    assert store.list_model_records("gnn")[0].uri == "file:///moved"
    assert len(store.list_model_records("gnn")) == 3
    with pytest.raises(InvalidNameError):
        store.put_model_record(ModelRecord(name="bad name", version="v", uri="file:///x"))
    with pytest.raises(InvalidNameError, match="reserved"):
        store.upsert(placed(CANDLES, "models"), [candle("BTCUSDT", T0)])


def test_list_graph_snapshots_by_prefix_and_range(store: Store) -> None:
    assert store.list_graph_snapshots() == []
    ids = [
        "corr:1m:pearson:20240801T0100Z",
        "corr:1m:pearson:20240801T0000Z",
        "corr:1m:pearson:20240802T0000Z",
    ]
    for sid in ids:
        store.write_graph_snapshot(sid, [{"key": "BTCUSDT"}], [])
    store.write_graph_snapshot(
        "corr:5m:pearson:20240801T0000Z", [], [{"source": "A", "target": "B", "weight": 1}]
    )
    store.write_graph_snapshot("other", [{"key": "BTCUSDT"}], [])
    assert store.list_graph_snapshots("corr:1m:pearson:") == sorted(ids)
    assert store.list_graph_snapshots("corr:") == [*sorted(ids), "corr:5m:pearson:20240801T0000Z"]
    got = store.list_graph_snapshots(
        "corr:1m:pearson:", start="corr:1m:pearson:20240801T0030Z", end="corr:1m:pearson:20240802T0000Z"
    )
    assert got == ["corr:1m:pearson:20240801T0100Z"]
    assert len(store.list_graph_snapshots()) == 5
    assert store.list_graph_snapshots("nothing") == []


def test_arango_snapshots_form_the_correlations_named_graph(store: Store) -> None:
    """ArangoDB only: the snapshot's edges live in the named graph ``correlations`` (``assets``
    vertices, ``relations`` edges), so a graph traversal filtered by snapshot finds them."""
    from streamforge_pipelines.store.arango import ArangoStore

    if not isinstance(store, ArangoStore):
        pytest.skip("the named graph is ArangoDB's")
    edges = [
        {"source": "BTCUSDT", "target": "ETHUSDT", "weight": 0.8, "lag": 0},
        {"source": "BTCUSDT", "target": "SOLUSDT", "weight": 0.6, "lag": 12},
    ]
    store.write_graph_snapshot("corr:5m:pearson:20240801T0100Z", [{"key": "BTCUSDT"}], edges)
    store.write_graph_snapshot("corr:5m:pearson:20240801T0200Z", [], edges[:1])
    db = store._database()
    (definition,) = db.graph("correlations").edge_definitions()
    assert definition["edge_collection"] == "relations"
    assert definition["from_vertex_collections"] == ["assets"] == definition["to_vertex_collections"]
    found = list(
        db.aql.execute(
            "FOR v, e IN 1..1 OUTBOUND 'assets/BTCUSDT' GRAPH 'correlations' "
            "FILTER e.snapshot_id == @sid SORT v._key RETURN [v._key, e.weight]",
            bind_vars={"sid": "corr:5m:pearson:20240801T0100Z"},
        )
    )
    assert found == [["ETHUSDT", 0.8], ["SOLUSDT", 0.6]]
