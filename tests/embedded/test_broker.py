"""The embedded Tansu broker and the topic helper, against real broker processes.

Every wait is bounded and fails with a message saying what was missing; nothing sleeps to
synchronise.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.metadata import MetadataRequest

from streamforge_pipelines.embedded.broker import BrokerStartError, EmbeddedBroker
from streamforge_pipelines.kafka import KafkaNotReadyError, ensure_topics_sync, wait_ready

N_MESSAGES = 1000
N_KEYS = 25


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Partitions per topic from metadata, without letting the broker auto-create anything."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        node = client.get_random_node()
        response = await client.send(node, MetadataRequest(topics, allow_auto_topic_creation=False))
        return {
            t["topic"]: len(t["partitions"]) for t in response.to_object()["topics"] if t["error_code"] == 0
        }
    finally:
        await client.close()


# ---- life cycle ----------------------------------------------------------------------------------


def test_start_answer_stop(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_dir=tmp_path)
    with pytest.raises(RuntimeError, match="start"):
        _ = broker.bootstrap_servers  # no port before start
    assert not broker.running

    bootstrap = broker.start()
    try:
        assert broker.running
        assert broker.port > 0
        assert bootstrap == f"127.0.0.1:{broker.port}" == broker.bootstrap_servers
        assert broker.start() == bootstrap  # starting a running broker is a no-op
        assert asyncio.run(wait_ready(bootstrap, 10)) == 1
        assert broker.log_path is not None and broker.log_path.parent == tmp_path
        pid = broker.pid
        assert pid is not None and _pid_alive(pid)
    finally:
        broker.stop()

    assert not broker.running
    assert broker.pid is None
    assert not _pid_alive(pid), f"tansu pid {pid} still exists after stop()"
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", broker.port), timeout=2):
        pass
    broker.stop()  # idempotent
    broker.stop()


def test_context_manager_and_restart_keeps_port(tmp_path: Path) -> None:
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        first = broker.bootstrap_servers
    assert not broker.running
    with broker:
        assert broker.bootstrap_servers == first  # a restart reuses the port when it is still free
        assert asyncio.run(wait_ready(broker.bootstrap_servers, 10)) == 1
    assert not broker.running


def test_port_taken_raises_readable_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(port=port, log_dir=tmp_path)
        with pytest.raises(BrokerStartError, match=rf"127\.0\.0\.1:{port} is already in use"):
            broker.start()
        assert not broker.running


def test_early_exit_raises_with_log_tail(tmp_path: Path) -> None:
    # A start timeout far longer than the test's budget: the error can only be the exit, noticed as
    # it happens (a start that waited for the timeout would say "did not answer on ... within 300.0s").
    broker = EmbeddedBroker(log_dir=tmp_path, storage_engine="bogus://nowhere/", start_timeout_s=300.0)
    with pytest.raises(BrokerStartError) as info:
        broker.start()
    message = str(info.value)
    assert "exited with code" in message
    assert "last lines of the broker log" in message
    assert "UnsupportedStorageUrl" in message, message
    assert not broker.running


def test_unstopped_broker_warns_and_dies(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_dir=tmp_path)
    broker.start()
    pid = broker.pid
    assert pid is not None
    with pytest.warns(ResourceWarning, match="never stopped"):
        del broker
        gc.collect()
    assert not _pid_alive(pid)


def test_wait_ready_gives_up_on_a_dead_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(KafkaNotReadyError, match=f"127.0.0.1:{port}"):
            asyncio.run(wait_ready(f"127.0.0.1:{port}", 1.0))  # (a hang is the pytest timeout's)


# ---- topics --------------------------------------------------------------------------------------


def test_ensure_topics_creates_partitions_and_is_idempotent(kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    wanted = {f"t3.{suffix}": 3, f"t1.{suffix}": 1, f"t8.{suffix}": 8}
    ensure_topics_sync(kafka_bootstrap, wanted)
    assert asyncio.run(_partition_counts(kafka_bootstrap, list(wanted))) == wanted

    # Again, plus one new topic: existing ones are fine, the new one is created.
    more = {**wanted, f"t2.{suffix}": 2}
    ensure_topics_sync(kafka_bootstrap, more)
    assert asyncio.run(_partition_counts(kafka_bootstrap, list(more))) == more


def test_ensure_topics_rejects_bad_input(kafka_bootstrap: str) -> None:
    with pytest.raises(ValueError, match="illegal kafka topic name"):
        ensure_topics_sync(kafka_bootstrap, {"no spaces allowed": 1})
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        ensure_topics_sync(kafka_bootstrap, {f"zero.{uuid.uuid4().hex[:8]}": 0})


def test_kafka_topics_fixture(kafka_bootstrap: str, kafka_topics) -> None:
    topics = kafka_topics(partitions=6)
    assert set(topics) == {
        "control",
        "events",
        "candles",
        "dlq",
        "candles_usdm",
        "trades",
        "checkpoints",
        "book",
        "book_diffs",
    }
    assert topics["dlq"] == topics["candles"] + ".dlq"
    counts = asyncio.run(_partition_counts(kafka_bootstrap, list(topics.values())))
    data = {"candles", "candles_usdm", "trades", "book", "book_diffs"}
    assert counts == {name: 6 if role in data else 1 for role, name in topics.items()}
    assert kafka_topics()["candles"] != topics["candles"]  # fresh names per call


# ---- produce and consume -------------------------------------------------------------------------


async def _produce(bootstrap: str, topic: str) -> dict[bytes, set[int]]:
    """Send N_MESSAGES keyed messages (all sends first, then gather); key -> partitions written."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = []
        for i in range(N_MESSAGES):
            key = f"SYM{i % N_KEYS:02d}".encode()
            value = f"{i}".encode()
            futures.append(await producer.send(topic, value, key=key, headers=[("seq", value)]))
        metadata = await asyncio.wait_for(asyncio.gather(*futures), timeout=30)
    finally:
        await producer.stop()
    by_key: dict[bytes, set[int]] = defaultdict(set)
    for i, md in enumerate(metadata):
        by_key[f"SYM{i % N_KEYS:02d}".encode()].add(md.partition)
    return by_key


async def _consume(bootstrap: str, topic: str, group: str, timeout_s: float = 30) -> list:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        # Tansu holds a JoinGroup for half the session timeout; 6 s is the least a real Kafka
        # broker accepts (group.min.session.timeout.ms), so this runs against both.
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    records: list = []
    deadline = time.monotonic() + timeout_s
    await consumer.start()
    try:
        while len(records) < N_MESSAGES and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
        assert len(records) == N_MESSAGES, (
            f"consumed {len(records)} of {N_MESSAGES} messages from {topic} within {timeout_s}s; "
            f"per partition: {dict(Counter(r.partition for r in records))}"
        )
        await consumer.commit()
        next_offsets: dict[int, int] = {}
        for r in records:
            next_offsets[r.partition] = max(next_offsets.get(r.partition, 0), r.offset + 1)
        committed = {p: await consumer.committed(TopicPartition(topic, p)) for p in next_offsets}
        assert committed == next_offsets
        # The high watermark of the fetch responses is the true end of each partition.
        highwater = {p: consumer.highwater(TopicPartition(topic, p)) for p in next_offsets}
        assert highwater == next_offsets
    finally:
        await consumer.stop()
    return records


def test_produce_and_consume_1000_keyed_messages(kafka_bootstrap: str, kafka_topics) -> None:
    topic = kafka_topics(partitions=4)["candles"]
    group = f"test-group-{uuid.uuid4().hex[:8]}"

    written = asyncio.run(_produce(kafka_bootstrap, topic))
    assert all(len(parts) == 1 for parts in written.values()), f"a key went to several partitions: {written}"
    assert len({p for parts in written.values() for p in parts}) > 1, "all keys landed on one partition"

    records = asyncio.run(_consume(kafka_bootstrap, topic, group))
    assert sorted(int(r.value) for r in records) == list(range(N_MESSAGES))
    partitions_by_key: dict[bytes, set[int]] = defaultdict(set)
    seen_by_key: dict[bytes, list[int]] = defaultdict(list)
    for r in records:
        partitions_by_key[r.key].add(r.partition)
        seen_by_key[r.key].append(int(r.value))
        assert dict(r.headers) == {"seq": r.value}
    assert partitions_by_key == written  # consumers see the partitions the producer reported
    for key, values in seen_by_key.items():
        assert values == sorted(values), f"messages of key {key!r} out of order"


@pytest.mark.xfail(
    reason="Tansu 0.6.0 answers ListOffsets(latest) with the last record batch's base offset + 1, "
    "not the log end offset; use the fetch high watermark (consumer.highwater) for lag",
    strict=False,
)
def test_end_offsets_match_the_log_end(kafka_bootstrap: str, kafka_topics) -> None:
    topic = kafka_topics(partitions=1)["candles"]

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20)
        await producer.start()
        try:
            futures = [await producer.send(topic, b"x") for _ in range(10)]  # one batch of 10
            await asyncio.wait_for(asyncio.gather(*futures), timeout=30)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            return (await consumer.end_offsets([tp]))[tp]
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == 10
