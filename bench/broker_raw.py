"""Raw Kafka throughput with aiokafka: the ceiling the StreamForge pipeline is measured against.

:func:`measure_raw` produces ``n`` keyed messages of ``payload_size`` bytes to a fresh topic (sends
issued back to back, their futures gathered in chunks) and reads them back with one consumer
(``getmany``, partitions assigned directly, so no group join is timed), and reports both rates in
messages per second. The producer uses the settings of StreamForge's workers (acks=all, linger 5
ms, 1 MiB batches).

``python -m bench.broker_raw`` (or ``python bench/broker_raw.py``) runs it against
``KAFKA_BOOTSTRAP_SERVERS``, or against an embedded Tansu broker started for the run when that is
unset, and prints a small table and one JSON line. The end-to-end benchmark imports
:func:`measure_raw` to print the raw figures beside the pipeline's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamforge_pipelines.embedded.broker import EmbeddedBroker
from streamforge_pipelines.kafka import ensure_topics

log = logging.getLogger(__name__)

#: Futures gathered at a time while producing.
_CHUNK = 10_000
#: Distinct keys (symbols) the messages are spread over.
_KEYS = 64


async def measure_raw(
    bootstrap: str, n: int = 200_000, payload_size: int = 200, partitions: int = 4
) -> dict[str, Any]:
    """Produce then consume ``n`` messages on a fresh topic; return the rates (msgs/s) and timings."""
    if n < 1 or payload_size < 0 or partitions < 1:
        raise ValueError("n and partitions must be >= 1 and payload_size >= 0")
    topic = f"bench.raw.{uuid.uuid4().hex[:10]}"
    await ensure_topics(bootstrap, {topic: partitions})
    payload = (b"0123456789abcdef" * (payload_size // 16 + 1))[:payload_size]
    keys = [f"SYM{i:03d}USDT".encode() for i in range(_KEYS)]

    produce_s = await _produce(bootstrap, topic, n, payload, keys)
    consume_s = await _consume(bootstrap, topic, n, partitions, timeout_s=max(60.0, n / 5_000))

    mib = n * payload_size / (1 << 20)
    result = {
        "bootstrap": bootstrap,
        "topic": topic,
        "messages": n,
        "payload_bytes": payload_size,
        "partitions": partitions,
        "produce_s": round(produce_s, 3),
        "consume_s": round(consume_s, 3),
        "produce_msgs_per_s": round(n / produce_s),
        "consume_msgs_per_s": round(n / consume_s),
        "produce_mib_per_s": round(mib / produce_s, 1),
        "consume_mib_per_s": round(mib / consume_s, 1),
    }
    log.info("raw kafka: %s", result)
    return result


async def _produce(bootstrap: str, topic: str, n: int, payload: bytes, keys: list[bytes]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    try:
        # Warm-up: metadata fetched and connections open before the clock starts.
        await producer.send_and_wait(topic, payload, key=keys[0])
        started = time.perf_counter()
        futures: list[asyncio.Future[Any]] = []
        for i in range(n - 1):
            futures.append(await producer.send(topic, payload, key=keys[i % len(keys)]))
            if len(futures) >= _CHUNK:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, n: int, partitions: int, *, timeout_s: float) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        deadline = started + timeout_s
        while seen < n:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"consumed {seen} of {n} messages from {topic} in {timeout_s:.0f}s")
            batch = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            seen += sum(len(records) for records in batch.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


# ---- command line --------------------------------------------------------------------------------


def _run(coro: Coroutine[Any, Any, dict[str, Any]], use_uvloop: bool) -> dict[str, Any]:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broker_raw", description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--messages", type=int, default=200_000)
    parser.add_argument("--payload-size", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--no-uvloop", action="store_true", help="plain asyncio loop (default: uvloop)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    broker: EmbeddedBroker | None = None
    if not bootstrap:
        broker = EmbeddedBroker()
        bootstrap = broker.start()
    try:
        result = _run(
            measure_raw(bootstrap, args.messages, args.payload_size, args.partitions), not args.no_uvloop
        )
    finally:
        if broker is not None:
            broker.stop()
    result["broker"] = "embedded tansu" if broker is not None else "external"
    result["loop"] = "asyncio" if args.no_uvloop else "uvloop"
    result["python"] = platform.python_version()

    print(f"raw kafka on {bootstrap} ({result['broker']}, {result['loop']})")
    print(f"  {args.messages:,} msgs x {args.payload_size} B, {args.partitions} partitions")
    print(f"  {'':8} {'msgs/s':>10} {'MiB/s':>7} {'seconds':>8}")
    for side in ("produce", "consume"):
        print(
            f"  {side:8} {result[f'{side}_msgs_per_s']:>10,} {result[f'{side}_mib_per_s']:>7} "
            f"{result[f'{side}_s']:>8}"
        )
    print(json.dumps({"bench": "broker_raw", **result}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
