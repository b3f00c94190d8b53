"""The poison test: bad records never stop the connector, and every record is stored or dead-lettered.

On the session broker with a real SQLite store:

* **every malformed kind** of the hardening issue (``record_cases.malformed_records``: bad prices,
  high below low, negative counts, integers SQLite cannot hold, bad symbols and intervals, a 900 KB
  ``queue_id``, non-JSON bytes; single candles, candle pages and trades pages), plus records the
  store itself refuses (a trigger raises for one ``queue_id``: a write error past the decoder), mixed
  into a stream of good records over three partitions: every bad record reaches the dead-letter topic
  once, whole, with a reason naming its field; every good record is stored once with its contents;
  good records sent after the poison are stored too (the connector is still consuming);
* **the store down** (a write lock held by another connection): nothing is dead-lettered, nothing
  committed, the connector stops with the error; restarted, it stores the whole batch;
* **arbitrary records** (hypothesis, derandomized: bytes, JSON, near-valid records of every kind)
  through one connector kept running across examples: each record ends in the store (with its
  contents), in the dead-letter topic, or, for a valid end marker, acknowledged on ``queue-events``,
  as the reference validator says; and the counts add up.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from record_cases import (
    agg_rows,
    candle_record,
    data_values,
    expected_documents,
    klines,
    malformed_records,
    page_record,
    reference_accepts,
    stored_document,
    trade_rows,
    trades_record,
)

from streamforge_pipelines.datasets import CANDLES, TRADES
from streamforge_pipelines.kafka import ensure_topics_sync, make_producer
from streamforge_pipelines.settings import ENV_VARS, Settings
from streamforge_pipelines.store import SqliteStore
from streamforge_pipelines.workers.connector import Connector

PARTITIONS = 3
#: Good records' symbols, one per partition.
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
#: The ``queue_id`` the store's triggers refuse.
STORE_REFUSES = "wf-store-refuses"
REFUSAL = "refused by the poison test"
#: Bound on every wait for the connector (seconds).
WITHIN_S = 90.0


@dataclass
class Sent:
    """A record on a data topic: where it went and what it was."""

    topic: str
    partition: int
    offset: int
    value: bytes

    @property
    def where(self) -> tuple[str, int, int]:
        return self.topic, self.partition, self.offset


def _refuse_in_store(path: Path) -> None:
    """Triggers that make SQLite refuse rows of ``STORE_REFUSES`` (the tables exist first)."""
    store = SqliteStore(path)
    store.count(CANDLES, ("BTCUSDT", "1m"), 0, 1)
    store.count(TRADES, ("BTCUSDT", "agg"), 0, 1)
    store.close()
    conn = sqlite3.connect(path)
    for table in ("candles", "trades"):
        conn.execute(
            f'CREATE TRIGGER "refuse_{table}" BEFORE INSERT ON "{table}" '
            f"WHEN NEW.queue_id = '{STORE_REFUSES}' BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
        )
    conn.commit()
    conn.close()


def _good_records(phase: int) -> list[tuple[str, int, dict[str, Any]]]:
    """(topic role, partition, record): per partition two candle pages, a single candle, an aggTrades
    page and a trades page, with keys no other phase or partition uses."""
    out = []
    for p, symbol in enumerate(SYMBOLS):
        base = 1_650_000_000_000 + phase * 10**10 + p * 10**9
        qid = f"wf-good-{phase}-{p}"
        out += [
            ("candles", p, page_record(klines(base, 5), symbol=symbol, queue_id=qid)),
            ("candles", p, candle_record(klines(base + 10**7, 1)[0], symbol=symbol, queue_id=qid)),
            ("trades", p, trades_record(agg_rows(base // 1000, 3), symbol=symbol, queue_id=qid)),
            ("candles", p, page_record(klines(base + 2 * 10**7, 4), symbol=symbol, queue_id=qid)),
            (
                "trades",
                p,
                trades_record(trade_rows(base // 1000, 2), kind="trade", symbol=symbol, queue_id=qid),
            ),
        ]
    return out


def _store_refused() -> list[tuple[str, dict[str, Any]]]:
    """Valid records whose rows the store's triggers refuse."""
    base = 1_660_000_000_000
    return [
        ("candles", page_record(klines(base, 3), queue_id=STORE_REFUSES)),
        ("candles", candle_record(klines(base + 10**7, 1)[0], queue_id=STORE_REFUSES)),
        ("trades", trades_record(agg_rows(base // 1000, 2), queue_id=STORE_REFUSES)),
    ]


async def _send(bootstrap: str, items: list[tuple[str, int, bytes]]) -> list[Sent]:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        out = []
        for topic, partition, value in items:
            meta = await producer.send_and_wait(topic, value, key=b"poison", partition=partition)
            out.append(Sent(topic, partition, meta.offset, value))
        return out
    finally:
        await producer.stop()


@dataclass
class _Tail:
    """Every record of some topics from their beginning, read on as more arrive."""

    bootstrap: str
    topics: tuple[str, ...]
    records: list[ConsumerRecord] = field(default_factory=list)
    consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> _Tail:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 << 20,
        )
        await self.consumer.start()
        await self.consumer.topics()
        tps = [
            TopicPartition(t, p)
            for t in self.topics
            for p in sorted(self.consumer.partitions_for_topic(t) or {0})
        ]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.consumer is not None
        await self.consumer.stop()

    async def poll(self) -> list[ConsumerRecord]:
        assert self.consumer is not None
        batch = await self.consumer.getmany(timeout_ms=200, max_records=10_000)
        self.records.extend(r for recs in batch.values() for r in recs)
        return self.records


def _dead_letters(records: list[ConsumerRecord]) -> dict[tuple[str, int, int], list[dict[str, Any]]]:
    """Dead letters by the (topic, partition, offset) of the record they copy."""
    out: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for rec in records:
        body = orjson.loads(rec.value)
        out.setdefault((body["topic"], body["partition"], body["offset"]), []).append(body)
    return out


def _missing_documents(path: Path, sent: list[Sent]) -> list[str]:
    """Keys of the documents of ``sent`` not (yet) in the store with their contents."""
    missing = []
    for s in sent:
        table, docs = expected_documents(orjson.loads(s.value))
        missing += [d["key"] for d in docs if stored_document(path, table, d["key"]) != d]
    return missing


def _count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
    finally:
        conn.close()


def _metric(outcome_or_kind: str) -> float:
    name, label = (
        ("streamforge_records_total", "outcome")
        if outcome_or_kind == "dead_lettered"
        else ("streamforge_errors_total", "kind")
    )
    return REGISTRY.get_sample_value(name, {"worker": "arango-connector", label: outcome_or_kind}) or 0.0


async def _until(check: Any, what: str, task: asyncio.Task[Any]) -> None:
    """Poll ``check()`` (async, returns what is still missing) until nothing is, bounded; fails at
    once if the connector stopped."""
    deadline = time.monotonic() + WITHIN_S
    while missing := await check():
        if task.done():
            raise AssertionError(f"the connector stopped while waiting for {what}: {task.exception()!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still missing after {WITHIN_S:.0f}s: {str(missing)[:800]}")
        await asyncio.sleep(0.05)  # the poll interval; lets the connector (same event loop) run


def test_poison_is_dead_lettered_and_the_connector_goes_on(make_settings) -> None:
    cfg = make_settings(partitions=PARTITIONS)
    path = cfg.sqlite_path
    path.parent.mkdir(parents=True, exist_ok=True)
    _refuse_in_store(path)
    role = {"candles": cfg.topic_candles, "trades": cfg.topic_trades}
    malformed = malformed_records(1_700_000_000_000)
    refused = _store_refused()
    bad_items: list[tuple[str, int, bytes]] = [
        (role[m.topic], i % PARTITIONS, m.value) for i, m in enumerate(malformed)
    ]
    bad_items += [(role[t], i % PARTITIONS, orjson.dumps(v)) for i, (t, v) in enumerate(refused)]
    good_items = [(role[t], p, orjson.dumps(v)) for t, p, v in _good_records(1)]
    # interleaved: every partition gets good records before, between and after bad ones
    mixed = [x for pair in itertools.zip_longest(good_items, bad_items) for x in pair if x is not None]
    before = {k: _metric(k) for k in ("dead_lettered", "invalid_record", "write_error")}

    async def main() -> tuple[Any, list[Sent], list[Sent], list[Sent], list[ConsumerRecord]]:
        store = SqliteStore(path)
        connector = Connector(cfg, store)
        stop = asyncio.Event()
        task = asyncio.create_task(connector.run(stop))
        try:
            await asyncio.wait_for(connector.ready.wait(), WITHIN_S)
            sent = await _send(cfg.kafka_bootstrap_servers or "", mixed)
            by_value = {id(v): s for (_, _, v), s in zip(mixed, sent, strict=True)}
            bad = [by_value[id(v)] for _, _, v in bad_items]
            good = [by_value[id(v)] for _, _, v in good_items]
            async with _Tail(
                cfg.kafka_bootstrap_servers or "",
                (cfg.dlq_topic(role["candles"]), cfg.dlq_topic(role["trades"])),
            ) as dlq:

                async def dead_missing() -> list[tuple[str, int, int]]:
                    letters = _dead_letters(await dlq.poll())
                    return [b.where for b in bad if b.where not in letters]

                async def good_missing() -> list[str]:
                    return _missing_documents(path, good)

                await _until(dead_missing, "dead letters of the poison", task)
                await _until(good_missing, "good records mixed with the poison", task)
                # after the poison: more good records on every partition, still consumed
                later = await _send(
                    cfg.kafka_bootstrap_servers or "",
                    [(role[t], p, orjson.dumps(v)) for t, p, v in _good_records(2)],
                )

                async def later_missing() -> list[str]:
                    return _missing_documents(path, later)

                await _until(later_missing, "good records sent after the poison", task)
                assert not task.done(), "the connector stopped"
                for _ in range(3):  # a few more fetches: no dead letter beyond the poison's
                    await dlq.poll()
                dead = list(dlq.records)
        finally:
            stop.set()
            stats = await asyncio.wait_for(task, WITHIN_S)
            store.close()
        return stats, bad, good, later, dead

    stats, bad, good, later, dead = asyncio.run(main())

    letters = _dead_letters(dead)
    assert sorted(letters) == sorted(b.where for b in bad), "dead letters are exactly the bad records"
    assert all(len(copies) == 1 for copies in letters.values()), "a record dead-lettered twice"
    reasons = [m.reason for m in malformed] + [f"store: StoreError: SQLite write failed: {REFUSAL}"] * len(
        refused
    )
    for sent, reason in zip(bad, reasons, strict=True):
        (letter,) = letters[sent.where]
        assert letter["reason"].startswith(reason), (reason, letter["reason"][:300])
        assert len(letter["reason"]) <= 600 and "\n" not in letter["reason"]
        assert letter["value"] == sent.value.decode("utf-8", "replace")  # whole, the 900 KB ones too
        assert letter["key"] == "poison" and letter["connector"].startswith("arango-connector__")
    # every good record stored once with its contents, nothing else stored
    expected = [expected_documents(orjson.loads(s.value)) for s in good + later]
    candles = sum(len(d) for t, d in expected if t == "candles")
    trades = sum(len(d) for t, d in expected if t == "trades")
    assert (_count(path, "candles"), _count(path, "trades")) == (candles, trades)
    assert stats.stored == candles + trades
    assert (stats.dead_lettered, stats.write_errors) == (len(bad), len(refused))
    after = {k: _metric(k) for k in before}
    assert after["dead_lettered"] - before["dead_lettered"] == len(bad)
    assert after["invalid_record"] - before["invalid_record"] == len(malformed)
    assert after["write_error"] - before["write_error"] == len(refused)


def test_store_down_dead_letters_nothing_and_the_batch_replays(make_settings) -> None:
    cfg = make_settings(partitions=2)
    path = cfg.sqlite_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with SqliteStore(path) as store:
        store.count(CANDLES, ("BTCUSDT", "1m"), 0, 1)  # the table exists: the failure is the upsert's
    items = [
        (cfg.topic_candles, p, orjson.dumps(v)) for t, p, v in _good_records(3) if t == "candles" and p < 2
    ]
    before = _metric("store_unavailable")
    locker = sqlite3.connect(path)
    locker.execute("BEGIN IMMEDIATE")  # another writer holds the database: SQLite says "database is locked"

    async def first_run() -> tuple[BaseException | None, list[Sent]]:
        store = SqliteStore(path, busy_timeout_s=0.2)
        stop = asyncio.Event()
        task = asyncio.create_task(Connector(cfg, store).run(stop))
        try:
            sent = await _send(cfg.kafka_bootstrap_servers or "", items)
            done, _ = await asyncio.wait({task}, timeout=WITHIN_S)
            assert done, "the connector went on with the store down"
            return task.exception(), sent
        finally:
            stop.set()
            store.close()

    error, sent = asyncio.run(first_run())
    locker.rollback()
    locker.close()
    assert error is not None and "database is locked" in str(error), error
    assert _metric("store_unavailable") - before == 1
    assert _count(path, "candles") == 0

    async def second_run() -> tuple[list[str], list[ConsumerRecord]]:
        bootstrap = cfg.kafka_bootstrap_servers or ""
        store = SqliteStore(path)
        stop = asyncio.Event()
        connector = Connector(cfg, store)
        task = asyncio.create_task(connector.run(stop))
        try:

            async def missing() -> list[str]:
                return _missing_documents(path, sent)

            await _until(missing, "the replayed batch", task)
            async with _Tail(bootstrap, (cfg.dlq_topic(cfg.topic_candles),)) as dlq:
                for _ in range(3):
                    await dlq.poll()
            return await missing(), dlq.records
        finally:
            stop.set()
            await asyncio.wait_for(task, WITHIN_S)
            store.close()

    missing, dead = asyncio.run(second_run())
    assert missing == [] and dead == [], "the store's failure dead-lettered good records"
    assert _count(path, "candles") == sum(len(expected_documents(orjson.loads(s.value))[1]) for s in sent)


# ---- arbitrary records through one running connector --------------------------------------------


class _ConnectorProcess:
    """The real connector worker (``streamforge worker connector``) in its own process, kept across
    hypothesis examples (joining a consumer group takes seconds)."""

    def __init__(self, cfg: Settings, log_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
        env.update(cfg.to_env(), METRICS_PORT="0", LOG_LEVEL="INFO")
        self.log_path = log_path
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamforge_pipelines.cli", "worker", "connector"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def error(self) -> str:
        """The end of the worker's log."""
        return self.log_path.read_text(errors="replace")[-1500:]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(WITHIN_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@dataclass
class _Live:
    cfg: Settings
    path: Path
    runner: _ConnectorProcess
    examples: Iterator[int]


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Live]:
    suffix = uuid.uuid4().hex[:10]
    cfg = Settings.from_env(
        {},
        data_dir=tmp_path_factory.mktemp("poison-live"),
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_control=f"queue-control.{suffix}",
        topic_events=f"queue-events.{suffix}",
        topic_candles=f"sf.candles.v1.{suffix}",
        topic_candles_usdm=f"sf.candles-usdm.v1.{suffix}",
        topic_trades=f"sf.trades.v1.{suffix}",
        topic_checkpoints=f"sf.checkpoints.v1.{suffix}",
        data_partitions=2,
        consumer_group=f"connector-{suffix}",
    )
    ensure_topics_sync(kafka_bootstrap, cfg.topics())
    runner = _ConnectorProcess(cfg, cfg.data_dir / "connector.log")
    try:
        yield _Live(cfg, cfg.sqlite_path, runner, itertools.count())
    finally:
        code = runner.stop()
        assert code == 0, f"the connector exited {code}: {runner.error}"


_VALID_SYMBOL = re.compile(r"[A-Z0-9]{2,20}")


def _own_symbol(raw: bytes, example: int, index: int) -> tuple[bytes, bool]:
    """The record with a valid symbol (and an end marker with a valid ``queue_id``) given one of its
    own, valid still (the verdict is unchanged), so that no two records share a key or an
    acknowledgement; and whether it is an end marker."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw, False
    if not isinstance(value, dict):
        return raw, False
    symbol, queue_id, marker = value.get("symbol"), value.get("queue_id"), value.get("record") == "end"
    if isinstance(symbol, str) and _VALID_SYMBOL.fullmatch(symbol):
        value["symbol"] = f"E{example}N{index}X"
    if marker and isinstance(queue_id, str) and 1 <= len(queue_id) <= 200:  # acknowledged by queue_id
        value["queue_id"] = f"wf-E{example}N{index}"
    return orjson.dumps(value), marker


async def _settle(
    cfg: Settings, runner: _ConnectorProcess, markers: set[str]
) -> tuple[set[str], list[ConsumerRecord]]:
    """Wait (bounded) for the acknowledgement of the closing end markers: the connector acknowledges a
    marker after it committed, so every record before it is stored or dead-lettered by then. Then
    every dead letter and every acknowledged marker so far."""
    bootstrap = cfg.kafka_bootstrap_servers or ""
    async with _Tail(bootstrap, (cfg.topic_events,)) as events:
        deadline = time.monotonic() + WITHIN_S
        while not markers <= _finished(await events.poll()):
            assert runner.alive, f"the connector stopped: {runner.error}"
            assert time.monotonic() < deadline, f"end markers not acknowledged after {WITHIN_S:.0f}s"
        acked = _finished(events.records)
    async with _Tail(bootstrap, (cfg.dlq_topic(cfg.topic_candles), cfg.dlq_topic(cfg.topic_trades))) as dlq:
        empty = 0
        while empty < 2:  # read to the end: two fetches with nothing new
            seen = len(dlq.records)
            empty = empty + 1 if len(await dlq.poll()) == seen else 0
    return acked, dlq.records


def _finished(records: list[ConsumerRecord]) -> set[str]:
    """``queue_id`` of every ``finished`` event the connector sent."""
    out = set()
    for rec in records:
        event = orjson.loads(rec.value)
        if event.get("status") == "finished" and str(event.get("producer", "")).startswith(
            "arango-connector"
        ):
            out.add(event.get("queue_id"))
    return out


@settings(
    derandomize=True,
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=st.lists(st.tuples(data_values(), st.booleans()), min_size=15, max_size=40))
def test_arbitrary_records_are_stored_or_dead_lettered(live: _Live, batch: list[tuple[bytes, bool]]) -> None:
    cfg, example = live.cfg, next(live.examples)
    items = []
    for i, (raw, to_trades) in enumerate(batch):
        value, marker = _own_symbol(raw, example, i)
        topic = cfg.topic_trades if to_trades and not marker else cfg.topic_candles
        items.append((topic, i % 2, value))
    # closing end markers, one per partition of each topic, acknowledged once all before them is handled
    closing = {}
    for topic in (cfg.topic_candles, cfg.topic_trades):
        for partition in (0, 1):
            queue_id = f"wf-settle-{example}-{len(closing)}"
            closing[queue_id] = (topic, partition)
            marker = {
                "record": "end",
                "queue_id": queue_id,
                "producer": "test",
                "partition": partition,
                "records": 0,
            }
            items.append((topic, partition, orjson.dumps(marker)))
    sent = asyncio.run(_send(cfg.kafka_bootstrap_servers or "", items))[: len(batch)]
    acked, dead = asyncio.run(_settle(cfg, live.runner, set(closing)))
    letters = _dead_letters(dead)

    outcome: dict[tuple[str, int, int], str] = {}
    rows = 0
    for s in sent:
        valid = reference_accepts(s.value) and _on_its_topic(s, cfg)
        copies = len(letters.get(s.where, []))
        assert copies <= 1, f"{s.where} dead-lettered {copies} times"
        assert (copies == 1) == (not valid), (
            f"{s.where}: dead-lettered={copies == 1}, valid={valid}: {s.value[:300]!r}"
        )
        if not valid:
            outcome[s.where] = "dead-lettered"
            continue
        value = orjson.loads(s.value)
        if value.get("record") == "end":
            assert value["queue_id"] in acked, f"{s.where}: end marker not acknowledged"
            outcome[s.where] = "acknowledged"
            continue
        table, docs = expected_documents(value)
        missing = [d["key"] for d in docs if stored_document(live.path, table, d["key"]) != d]
        assert not missing, f"{s.where}: not stored with its contents: {missing[:5]}"
        outcome[s.where] = "stored"
        rows += len(docs)
    # the counts add up: every record has one outcome; the store holds exactly the stored rows
    assert len(outcome) == len(sent)
    assert sum(1 for o in outcome.values() if o == "dead-lettered") == sum(
        1 for s in sent if s.where in letters
    )
    assert _rows_of_example(live.path, f"E{example}N%") == rows


def _on_its_topic(s: Sent, cfg: Settings) -> bool:
    """Trades pages belong on the trades topic, candles on the candle topic (end markers anywhere)."""
    kind = orjson.loads(s.value).get("record", "candle")
    return kind == "end" or (kind == "trades") == (s.topic == cfg.topic_trades)


def _rows_of_example(path: Path, prefix: str) -> int:
    """Rows of the store whose symbol starts with ``prefix`` (``LIKE``), in the tables that exist."""
    conn = sqlite3.connect(path)
    try:
        tables = {t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return sum(
            int(conn.execute(f'SELECT COUNT(*) FROM "{t}" WHERE "symbol" LIKE ?', (prefix,)).fetchone()[0])
            for t in ("candles", "trades")
            if t in tables
        )
    finally:
        conn.close()


def test_a_dead_letter_carries_the_value_whole_up_to_its_bound() -> None:
    """900 KB goes whole; beyond ``DLQ_MAX_BODY_BYTES`` the first ``DLQ_TRUNCATED_BYTES`` go, marked,
    so the letter stays under the producer's 4 MiB limit (binary bytes grow when escaped)."""
    from streamforge_pipelines.workers.connector import (
        DLQ_MAX_BODY_BYTES,
        DLQ_MAX_KEY_BYTES,
        DLQ_TRUNCATED_BYTES,
        _dead_letter_body,
    )

    def record(value: bytes, key: bytes = b"k") -> ConsumerRecord:
        return ConsumerRecord("sf.candles.v1", 0, 7, 0, 0, key, value, None, len(key), len(value), [])

    whole, _ = _dead_letter_body(record(b"q" * 900_000), "candles.queue_id: too long", "arango-connector__x")
    body = orjson.loads(whole)
    assert body["value"] == "q" * 900_000 and "value_truncated" not in body
    assert set(body) == {"reason", "topic", "partition", "offset", "key", "value", "connector", "timestamp"}
    for raw in (b"q" * (4 << 20), b"\x00" * (1 << 20)):  # too long; short but 6x longer as JSON escapes
        letter, key = _dead_letter_body(
            record(raw, b"x" * 5000), "record: not valid JSON", "arango-connector__x"
        )
        body = orjson.loads(letter)
        assert len(letter) <= DLQ_MAX_BODY_BYTES and body["value_truncated"] is True
        assert body["value_bytes"] == len(raw) and len(body["value"]) == DLQ_TRUNCATED_BYTES
        assert key == b"x" * DLQ_MAX_KEY_BYTES and body["key"] == "x" * DLQ_MAX_KEY_BYTES
