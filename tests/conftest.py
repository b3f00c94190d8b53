"""Session fixtures of the whole test suite: one real Kafka-compatible broker, fresh topics per test.

``kafka_bootstrap`` starts one embedded Tansu broker for the session (its log lands under pytest's
temporary directory). Set ``STREAMFORGE_TEST_KAFKA`` to a bootstrap string to run the suite against
an existing cluster instead. ``kafka_topics(partitions)`` creates a fresh, uniquely named set of
StreamForge topics, so tests sharing the broker never see each other's messages.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from streamforge_pipelines.embedded.broker import EmbeddedBroker
from streamforge_pipelines.kafka import ensure_topics_sync

#: Role -> topic name, as returned by the ``kafka_topics`` factory.
TopicFactory = Callable[..., dict[str, str]]


@pytest.fixture(autouse=True)
def _exchange_limits_read_per_test() -> None:
    """Each test's clients read the exchange's published limit as a new process would (the client
    caches it per exchange URL for the process), so request counts do not depend on test order."""
    from streamforge_pipelines.workers.exchange_client import forget_exchange_limits

    forget_exchange_limits()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of the session's broker (embedded Tansu unless STREAMFORGE_TEST_KAFKA)."""
    external = os.environ.get("STREAMFORGE_TEST_KAFKA", "").strip()
    if external:
        yield external
        return
    broker = EmbeddedBroker(log_dir=tmp_path_factory.mktemp("tansu"))
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def kafka_topics(kafka_bootstrap: str) -> TopicFactory:
    """Factory: ``kafka_topics(partitions=4)`` -> {"control", "events", "candles", "dlq", "candles_usdm",
    "trades", "checkpoints", "book", "book_diffs"} -> topic.

    Names follow the production ones (``queue-control``, ``queue-events``, ``sf.candles.v1`` and its
    ``.dlq``, ...) with a unique suffix, so no two tests share a topic; partitions follow
    ``Settings.topics()``: 1 for control, events, checkpoints and the dead-letter topics,
    ``partitions`` for the data topics.
    """

    def make(partitions: int = 4) -> dict[str, str]:
        suffix = uuid.uuid4().hex[:10]
        candles = f"sf.candles.v1.{suffix}"
        names = {
            "control": f"queue-control.{suffix}",
            "events": f"queue-events.{suffix}",
            "candles": candles,
            "dlq": f"{candles}.dlq",
            "candles_usdm": f"sf.candles-usdm.v1.{suffix}",
            "trades": f"sf.trades.v1.{suffix}",
            "checkpoints": f"sf.checkpoints.v1.{suffix}",
            "book": f"sf.book.v1.{suffix}",
            "book_diffs": f"sf.book-diffs.v1.{suffix}",
        }
        counts = {role: 1 for role in names} | {"candles": partitions, "candles_usdm": partitions}
        counts["trades"] = counts["book"] = counts["book_diffs"] = partitions
        wanted = {names[role]: counts[role] for role in names}
        wanted.update({f"{names[r]}.dlq": 1 for r in ("candles_usdm", "trades", "book", "book_diffs")})
        ensure_topics_sync(kafka_bootstrap, wanted)
        return names

    return make


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """Put ``os.environ`` back as it was (code under test exports settings for Dagster)."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def make_settings(tmp_path, kafka_bootstrap: str, kafka_topics: TopicFactory, restore_environ: None):
    """Factory of :class:`Settings` on the session broker with fresh topics and a fresh data dir.

    ``DAGSTER_HOME`` points into the test's temporary directory. The exchange stays unset, so a
    :class:`Stack` built from these settings starts the simulator (and the connector) for the test.
    """
    from streamforge_pipelines.settings import Settings

    def make(partitions: int = 4, **overrides: object) -> Settings:
        topics = kafka_topics(partitions)
        os.environ["DAGSTER_HOME"] = str(tmp_path / "dagster")
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "kafka_bootstrap_servers": kafka_bootstrap,
            "topic_control": topics["control"],
            "topic_events": topics["events"],
            "topic_candles": topics["candles"],
            "topic_candles_usdm": topics["candles_usdm"],
            "topic_trades": topics["trades"],
            "topic_checkpoints": topics["checkpoints"],
            "topic_book": topics["book"],
            "topic_book_diffs": topics["book_diffs"],
            "data_partitions": partitions,
            "consumer_group": f"connector-{uuid.uuid4().hex[:8]}",
            # its own loader group too: joining one that earlier tests' loaders were members of
            # waits for them to rejoin or time out (seconds per test)
            "loader_group": f"loader-{uuid.uuid4().hex[:8]}",
            # a joining loader waits half of it, a killed one's commands move after all of it
            "loader_session_timeout_s": 5.0,
            "task_timeout_s": 120.0,
            "task_stall_s": 60.0,
        }
        values.update(overrides)
        return Settings.from_env({}, **values)

    return make


async def read_data_docs(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every record of a data topic as store documents, in partition then offset order: single
    candles as they are, candle and trade pages expanded, end markers left out. Reads until two
    empty fetches (never trusts end offsets: Tansu's are wrong)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streamforge_pipelines.protocol import RECORD_END, decode_record

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[dict[str, Any]] = []
        empty = 0
        while empty < 2:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            if not any(batches.values()):
                empty += 1
                continue
            empty = 0
            for tp in sorted(batches, key=lambda t: t.partition):
                for message in batches[tp]:
                    value = decode_record(message.value or b"")
                    if "docs" in value:
                        out.extend(value["docs"])
                    elif value.get("record") != RECORD_END:
                        out.append(value)
        return out
    finally:
        await consumer.stop()


@pytest.fixture(scope="session")
def read_docs() -> Callable[[str, str], Awaitable[list[dict[str, Any]]]]:
    """``await read_docs(bootstrap, topic)``: :func:`read_data_docs`."""
    return read_data_docs
