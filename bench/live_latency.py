"""Live stream end-to-end latency: exchange event time → record on Kafka, at a given message rate.

``python -m bench.live_latency [--rate 1000] [--seconds 30] [--symbols 10]``

The benchmark starts the embedded Tansu broker and the exchange simulator (a child process on the
wall clock, a market whose ``--symbols`` symbols trade ``--rate`` times a second together), then, in
the same run:

1. **baseline — a bare client**: a plain ``websockets`` client on the same ``@trade`` streams for
   ``--seconds``; per message, receive time − the trade's event time ``E``: what the exchange and
   the socket cost before any code of ours runs;
2. **StreamForge** — a ``ws_trades`` :class:`~streamforge_pipelines.workers.live.task.StreamTask`
   for ``--seconds``, producing to a fresh trades topic. *produced*: afterwards every record is read
   back and, per trade, the record's Kafka timestamp (set by the producer when the page was handed
   to Kafka) − the trade time ``T`` (``== E`` for ``@trade``); *consumed*: a consumer following the
   topic during the run, per trade the time it read it − ``T`` (exchange → readable on Kafka,
   through the producer's 5 ms linger, the broker and a fetch).

It prints messages/s achieved, p50 / p99 / max latency of each, what StreamForge adds at p50 and
p99, and the CPU seconds the bench process spent per 1000 messages in each phase; the last line is
the figures as JSON. Nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import websockets
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamforge_pipelines.kafka import ensure_topics_sync, make_producer
from streamforge_pipelines.protocol import Command, decode_record
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.workers.live.task import StreamTask


def _market_config(symbols: int, rate: float) -> dict[str, Any]:
    per_minute = rate * 60 / symbols
    return {
        "seed": 1,
        "symbols": [
            {
                "name": f"LAT{i:02d}USDT",
                "base_price": 10.0 + i,
                "tick_size": "0.001",
                "step_size": "0.01",
                "trades_per_minute": per_minute,
                "quote_volume_per_minute": per_minute * 50,
                "listing": "2024-01-01",
            }
            for i in range(symbols)
        ],
    }


def _quantiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    xs = sorted(xs)
    return {
        "p50_ms": round(statistics.median(xs), 2),
        "p99_ms": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 2),
        "max_ms": round(xs[-1], 2),
    }


async def _bare_client(ws_base: str, names: list[str], seconds: float) -> tuple[list[float], float]:
    lat: list[float] = []
    cpu0 = time.process_time()
    async with websockets.connect(f"{ws_base}/stream?streams={'/'.join(names)}", ping_interval=None) as sock:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                async with asyncio.timeout(max(end - time.monotonic(), 0.01)):
                    raw = await sock.recv()
            except TimeoutError:
                break
            now = time.time() * 1000
            data = orjson.loads(raw).get("data") or {}
            if "E" in data:
                lat.append(now - data["E"])
    return lat, time.process_time() - cpu0


async def _streamforge(
    settings: Settings, symbols: list[str], seconds: float
) -> tuple[StreamTask, float, list[float]]:
    """Run the stream task for ``seconds`` while a consumer reads its topic: per trade, the time it
    was read − its event time (exchange → readable on Kafka)."""
    bootstrap = settings.kafka_bootstrap_servers or ""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    await consumer.topics()
    tps = [
        TopicPartition(settings.topic_trades, p)
        for p in sorted(consumer.partitions_for_topic(settings.topic_trades) or {0})
    ]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    read: list[float] = []
    done = asyncio.Event()

    async def follow() -> None:
        while not done.is_set():
            batch = await consumer.getmany(timeout_ms=50, max_records=10_000)
            now = time.time() * 1000
            for records in batch.values():
                for r in records:
                    docs = decode_record(r.value or b"").get("docs", [])
                    read.extend(now - d["time"] for d in docs if d["source"] == "ws")

    producer = make_producer(bootstrap)
    await producer.start()
    reader = asyncio.create_task(follow())
    try:
        command = Command(
            command="start",
            queue_id=f"bench-{uuid.uuid4().hex[:6]}",
            target="loader-ws-trades",
            type="ws_trades",
            symbols=symbols,
        )
        task = StreamTask(command, settings, producer)
        cpu0 = time.process_time()
        runner = asyncio.create_task(task.run())
        await asyncio.sleep(seconds)
        task.stop()
        await runner
        cpu = time.process_time() - cpu0
        await asyncio.sleep(1.0)  # the last pages reach the reader
        return task, cpu, read
    finally:
        done.set()
        await reader
        await producer.stop()
        await consumer.stop()


async def _produced_latency(bootstrap: str, topic: str) -> list[float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[float] = []
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        empty = 0
        while empty < 3:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            if not any(batch.values()):
                empty += 1
                continue
            empty = 0
            for records in batch.values():
                for r in records:
                    docs = decode_record(r.value or b"").get("docs", [])
                    out.extend(r.timestamp - d["time"] for d in docs if d["source"] == "ws")
    finally:
        await consumer.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live_latency", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="market trades/s, all symbols (1000; achieved rate printed)",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per phase (30)")
    parser.add_argument("--symbols", type=int, default=10, help="symbols (10)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or not 1 <= args.symbols <= 1024:
        parser.error("--rate and --seconds must be positive, --symbols 1..1024")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.pop("ARANGO_URL", None)
    tmp = Path(tempfile.mkdtemp(prefix="streamforge-bench-live-"))
    config = tmp / "market.json"
    config.write_bytes(orjson.dumps(_market_config(args.symbols, args.rate)))
    symbols = [f"LAT{i:02d}USDT" for i in range(args.symbols)]
    base = Settings.from_env(data_dir=tmp / "stack", simulator_config=config)
    with Stack(base, connector=False) as stack:
        live = stack.settings.model_copy(update={"topic_trades": f"bench.live.{uuid.uuid4().hex[:6]}"})
        ensure_topics_sync(live.kafka_bootstrap_servers or "", {live.topic_trades: 4})
        ws_base = live.ws_url("spot") or ""
        names = [f"{s.lower()}@trade" for s in symbols]
        bare, bare_cpu = asyncio.run(_bare_client(ws_base, names, args.seconds))
        task, sf_cpu, consumed = asyncio.run(_streamforge(live, symbols, args.seconds))
        produced = asyncio.run(_produced_latency(live.kafka_bootstrap_servers or "", live.topic_trades))
    b, s, c = _quantiles(bare), _quantiles(produced), _quantiles(consumed)
    result = {
        "bench": "live_latency",
        "rate_target": args.rate,
        "seconds": args.seconds,
        "symbols": args.symbols,
        "bare": {"messages": len(bare), "per_s": round(len(bare) / args.seconds, 1), **b,
                 "cpu_s_per_1k": round(1000 * bare_cpu / max(len(bare), 1), 4)},
        "streamforge": {"messages": task.counts.messages, "records": len(produced),
                        "per_s": round(task.counts.messages / args.seconds, 1), **s,
                        "cpu_s_per_1k": round(1000 * sf_cpu / max(task.counts.messages, 1), 4),
                        "reconnects": task.counts.reconnects, "gaps": task.counts.gaps},
        "consumed": {"records": len(consumed), **c},
        "added_p50_ms": round(s["p50_ms"] - b["p50_ms"], 2),
        "added_p99_ms": round(s["p99_ms"] - b["p99_ms"], 2),
    }  # fmt: skip
    print(f"live latency at {args.rate:g} msg/s target, {args.symbols} symbols, {args.seconds:g} s per phase")
    for name in ("bare", "streamforge"):
        r = result[name]
        print(
            f"  {name:12s} {r['per_s']:8.1f} msg/s   p50 {r['p50_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms"
            f"   max {r['max_ms']:8.2f} ms   cpu {r['cpu_s_per_1k']:.4f} s/1k msgs"
        )
    print(
        f"  StreamForge adds {result['added_p50_ms']:.2f} ms at p50, {result['added_p99_ms']:.2f} ms at p99"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
