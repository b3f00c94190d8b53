"""A dataset added by a spec, a codec and a loader, all defined in this test and nowhere else.

``toy_ticks`` is a made-up dataset: per symbol and UTC day, ``TICKS_PER_DAY`` ticks with consecutive
sequence numbers (``seq``), a time and a decimal ``value``. The test registers its spec
(:func:`streamforge_pipelines.datasets.register`) and its loader
(:func:`streamforge_pipelines.workers.register_loader`) and nothing else changes: the one command
builder makes its commands, the queue-manager runs them in process through the one dispatcher and
the one task wrapper, the loader produces codec pages to the dataset's topic on the session broker,
the connector routes the topic to the spec, checks the pages with the spec's codec and writes them
with the store's generic calls into a SQLite table built from the spec's fields, and the id-range
ledger finds the one tick the loader held back; a repair task (``id_ranges``) fetches it and the
ledger is then complete. Bad pages are dead-lettered with the codec's one-line reason.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from streamforge_pipelines import datasets, queue_manager
from streamforge_pipelines.datasets import DatasetSpec
from streamforge_pipelines.intervals import DAY_MS, day_start_ms
from streamforge_pipelines.kafka import ensure_topics_sync, make_producer
from streamforge_pipelines.protocol import (
    Command,
    ProtocolError,
    encode_record,
)
from streamforge_pipelines.queue_manager import build_commands
from streamforge_pipelines.queue_manager.tracking import COMPLETE
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.store import store_from_settings
from streamforge_pipelines.workers import (
    LoadResult,
    TaskRun,
    WeightGovernor,
    register_loader,
    send_end_markers,
    unregister_loader,
)
from streamforge_pipelines.workers.connector import Connector

TASK_TYPE = "toy_ticks"
TICKS_PER_DAY = 240
DAYS = (date(2024, 3, 1), date(2024, 3, 2))
SYMBOLS = ("TOYUSD", "TOYEUR")
#: The loader holds back this tick of the first symbol's first day on a whole-range task (a gap).
HELD_BACK_SEQ = 17
WITHIN_S = 90.0


def tick_key(symbol: str, seq: int) -> str:
    return f"{symbol}:tick:{seq}"


def seq_of(day: date, i: int) -> int:
    """Consecutive sequence numbers across days: day index x TICKS_PER_DAY + i."""
    return (day - DAYS[0]).days * TICKS_PER_DAY + i


class TickCodec:
    """``{"record": "toy_ticks", "symbol", "source", "queue_id", "rows": [[seq, time, value], ...]}``."""

    kinds = ("toy_ticks",)

    def check(self, value: dict[str, Any]) -> tuple[str, str, str, list[list[Any]]]:
        header = []
        for name in ("symbol", "source", "queue_id"):
            v = value.get(name)
            if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,200}", v):
                raise ProtocolError(f"toy_ticks.{name}: expected an identifier, got {v!r:.60}")
            header.append(v)
        rows = value.get("rows")
        if not isinstance(rows, list):
            raise ProtocolError("toy_ticks.rows: expected a list")
        for i, row in enumerate(rows):
            if not (isinstance(row, list) and len(row) == 3):
                raise ProtocolError(f"toy_ticks.rows[{i}]: expected [seq, time, value]")
            seq, time_ms, v = row
            if type(seq) is not int or type(time_ms) is not int or not 0 <= seq < 2**63:
                raise ProtocolError(f"toy_ticks.rows[{i}].seq: expected an integer")
            if not isinstance(v, str) or not re.fullmatch(r"[0-9]{1,20}(\.[0-9]{1,20})?", v):
                raise ProtocolError(f"toy_ticks.rows[{i}].value: expected a decimal string, got {v!r:.60}")
        return header[0], header[1], header[2], rows

    def count(self, page: tuple[str, str, str, list[list[Any]]]) -> int:
        return len(page[3])

    def queue_id(self, page: tuple[str, str, str, list[list[Any]]]) -> str:
        return page[2]

    def docs(self, page: tuple[str, str, str, list[list[Any]]]) -> list[dict[str, Any]]:
        symbol, source, queue_id, rows = page
        return [
            {
                "key": tick_key(symbol, seq),
                "symbol": symbol,
                "seq": seq,
                "time": time_ms,
                "value": v,
                "source": source,
                "queue_id": queue_id,
            }
            for seq, time_ms, v in rows
        ]


def toy_spec(topic: str) -> DatasetSpec:
    return DatasetSpec(
        name="toy_ticks",
        description="Made-up ticks, defined only in a test",
        topic_of=lambda _settings: topic,
        collection="toy_ticks",
        fields={
            "key": "str",
            "symbol": "str",
            "seq": "int",
            "time": "int",
            "value": "str",
            "source": "str",
            "queue_id": "str",
        },
        series=("symbol",),
        time_field="time",
        order_field="seq",
        key=tick_key,
        codec=TickCodec(),
        ledger="id_ranges",
        task_types=frozenset({TASK_TYPE}),
    )


class NoClients:
    """The toy loader asks no exchange."""

    def account(self, result: LoadResult, governor: WeightGovernor) -> None:
        result.requests = 0


class TickLoader:
    """Produces each day's ticks (all of them, or only a repair's ``id_ranges``) and end markers."""

    worker = "loader-toy-ticks"
    task_types = frozenset({TASK_TYPE})

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec

    def dataset(self, command: Command) -> DatasetSpec:
        return self.spec

    def prepare(self, command: Command, settings: Settings, topic: str, checkpoints: Any) -> tuple[str, None]:
        if command.symbol is None:
            raise ValueError("command.symbol: required for a toy task")
        return f"{command.symbol} ticks {command.time_range}", None

    @asynccontextmanager
    async def clients(
        self, command: Command, settings: Settings, governor: WeightGovernor
    ) -> AsyncIterator[NoClients]:
        yield NoClients()

    async def load(self, run: TaskRun) -> None:
        command, result = run.command, run.result
        assert command.symbol is not None
        first, last = command.days()
        wanted = command.id_ranges
        key = command.symbol.encode()
        sent = []
        day = first
        while day <= last:
            rows = []
            for i in range(TICKS_PER_DAY):
                seq = seq_of(day, i)
                if wanted is None and command.symbol == SYMBOLS[0] and seq == HELD_BACK_SEQ:
                    continue
                if wanted is not None and not any(a <= seq < b for a, b in wanted):
                    continue
                rows.append(
                    [seq, day_start_ms(day) + i * (DAY_MS // TICKS_PER_DAY), f"{100 + seq % 7}.{seq % 10}"]
                )
            if rows:
                page = {
                    "record": "toy_ticks",
                    "symbol": command.symbol,
                    "source": "toy",
                    "queue_id": command.queue_id,
                }
                value = encode_record(page | {"rows": rows})
                sent.append((len(rows), await run.producer.send(run.topic, value, key=key)))
                result.pages += 1
            day += timedelta(days=1)
        for n, future in sent:
            metadata = await future
            result.partitions[metadata.partition] = result.partitions.get(metadata.partition, 0) + n
            result.records += n
        await send_end_markers(run, self.worker, key)

    def finished(self, run: TaskRun) -> tuple[str, dict[str, Any]]:
        return f"{run.result.records} ticks", {}


@dataclass(frozen=True)
class ToyRequest:
    """The queue-manager request of the toy dataset (what ``build_commands`` reads)."""

    symbols: tuple[str, ...]
    first: date
    last: date
    spec: DatasetSpec
    run_id: str | None = "toy-run"
    partition_key: str | None = None
    source: str = "rest"
    task_type: str = TASK_TYPE

    def series(self, symbol: str) -> tuple[str, ...]:
        return (symbol,)


@pytest.fixture
def toy(make_settings) -> Iterator[tuple[Settings, DatasetSpec]]:
    settings = make_settings(partitions=2)
    topic = f"sf.toy-ticks.v1.{uuid.uuid4().hex[:10]}"
    ensure_topics_sync(settings.kafka_bootstrap_servers or "", {topic: 2, settings.dlq_topic(topic): 1})
    spec = datasets.register(toy_spec(topic))
    loader = TickLoader(spec)
    register_loader(loader)
    try:
        yield settings, spec
    finally:
        unregister_loader(loader)
        datasets.unregister(spec.name)


def test_a_dataset_defined_by_spec_codec_and_loader_flows_to_the_ledger(toy) -> None:
    """The queue-manager's one ``load`` runs the toy request end to end: commands, the loader in
    process, the connector, the id-range ledger (spans from the store: the toy request has no
    exchange to ask), one round of ``id_ranges`` repair that fetches the held-back tick."""
    settings, spec = toy
    request = ToyRequest(SYMBOLS, DAYS[0], DAYS[-1], spec)
    commands = build_commands(request, settings)
    assert {c.kafka_topic for c in commands} == {spec.topic(settings)}
    assert {c.collection_name for c in commands} == {"toy_ticks"}
    assert {c.type for c in commands} == {TASK_TYPE}

    async def main() -> tuple[Any, Any]:
        with store_from_settings(settings) as store:
            stop = asyncio.Event()
            connector = asyncio.create_task(Connector(settings, store).run(stop))
            try:
                # without repair: the ledger shows the gap the loader left
                unrepaired = await queue_manager.load(request, settings, store, repair=False)
                report = await queue_manager.load(request, settings, store)
            finally:
                stop.set()
                await asyncio.wait_for(connector, WITHIN_S)
            return unrepaired, report

    unrepaired, report = asyncio.run(asyncio.wait_for(main(), WITHIN_S * 2))
    assert set(unrepaired.tasks.values()) == {COMPLETE}, unrepaired.errors
    assert unrepaired.loaded == len(SYMBOLS) * len(DAYS) * TICKS_PER_DAY - 1
    gaps = {(e.symbol, e.day): e.missing_ranges for e in unrepaired.ledger if e.missing_ranges}
    assert gaps == {(SYMBOLS[0], DAYS[0].isoformat()): [(HELD_BACK_SEQ, HELD_BACK_SEQ + 1)]}
    assert unrepaired.missing == 1 and unrepaired.repaired == 0
    # the second load writes every tick again (idempotent keys) except the held-back one; the repair
    # round fetches that one by id
    assert set(report.tasks.values()) == {COMPLETE}, report.errors
    assert report.repaired == 1 and report.missing == 0 and not report.failed
    assert [(e.symbol, e.day, e.status, e.stored) for e in report.ledger] == [
        (s, d.isoformat(), "complete", TICKS_PER_DAY) for s in SYMBOLS for d in DAYS
    ]

    with store_from_settings(settings) as store:
        docs = store.read(spec, (SYMBOLS[0],), day_start_ms(DAYS[0]), day_start_ms(DAYS[-1]) + DAY_MS)
        assert [d["seq"] for d in docs] == list(range(len(DAYS) * TICKS_PER_DAY))
        # the held-back tick was written by the repair task, its neighbours by the second whole-range task
        assert docs[HELD_BACK_SEQ - 1]["queue_id"] in report.tasks
        assert docs[HELD_BACK_SEQ]["queue_id"] not in report.tasks | unrepaired.tasks
        assert {k: v for k, v in docs[HELD_BACK_SEQ].items() if k != "queue_id"} == {
            "key": tick_key(SYMBOLS[0], HELD_BACK_SEQ),
            "symbol": SYMBOLS[0],
            "seq": HELD_BACK_SEQ,
            "time": day_start_ms(DAYS[0]) + HELD_BACK_SEQ * (DAY_MS // TICKS_PER_DAY),
            "value": f"{100 + HELD_BACK_SEQ % 7}.{HELD_BACK_SEQ % 10}",
            "source": "toy",
        }
        assert (
            store.duplicates(spec, SYMBOLS, (), day_start_ms(DAYS[0]), day_start_ms(DAYS[-1]) + DAY_MS) == 0
        )


def test_a_bad_toy_page_is_dead_lettered_with_the_codecs_reason(toy) -> None:
    settings, spec = toy
    topic = spec.topic(settings)
    bad = {
        "record": "toy_ticks",
        "symbol": "TOYUSD",
        "source": "toy",
        "queue_id": "q1",
        "rows": [[1, 2, "-3"]],
    }
    good = bad | {"rows": [[1, 2, "3.5"]]}

    async def main() -> tuple[list[dict[str, Any]], int]:
        producer = make_producer(settings.kafka_bootstrap_servers or "")
        await producer.start()
        try:
            for value in (bad, good):
                await producer.send_and_wait(topic, orjson.dumps(value), key=b"TOYUSD")
        finally:
            await producer.stop()
        with store_from_settings(settings) as store:
            stop = asyncio.Event()
            connector = asyncio.create_task(Connector(settings, store).run(stop))
            consumer = AIOKafkaConsumer(
                settings.dlq_topic(topic),
                bootstrap_servers=settings.kafka_bootstrap_servers,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
            )
            await consumer.start()
            try:
                letters: list[dict[str, Any]] = []
                async with asyncio.timeout(WITHIN_S):
                    while not letters or store.count(spec, ("TOYUSD",), 0, 10) < 1:
                        batch = await consumer.getmany(timeout_ms=500)
                        letters.extend(orjson.loads(r.value) for rs in batch.values() for r in rs)
                stored = store.count(spec, ("TOYUSD",), 0, 10)
            finally:
                await consumer.stop()
                stop.set()
                await asyncio.wait_for(connector, WITHIN_S)
        return letters, stored

    letters, stored = asyncio.run(main())
    assert [letter["reason"] for letter in letters] == [
        "toy_ticks.rows[0].value: expected a decimal string, got '-3'"
    ]
    assert stored == 1
