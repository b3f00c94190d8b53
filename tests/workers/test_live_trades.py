"""loader-ws-trades and live klines against the simulator, with disconnects injected.

The simulator runs minutes of market in seconds (:class:`~live_support.MovingClock`, the same
clock for REST and the streams) and drops every stream connection within a second or two
(``WsConfig.disconnect_rate=1``); a :class:`StreamTask` streams through it into the session broker.
What the tests compare is independent of the code under test: the simulator's market model
(``Market.agg_trades``, ``Market.klines``) over the window the task covered.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from live_support import small_market, stream_for
from prometheus_client import REGISTRY

from streamforge_pipelines.intervals import HOUR_MS, MINUTE_MS
from streamforge_pipelines.protocol import Command, decode_event
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.simulator.ws import WsConfig
from streamforge_pipelines.workers.live.task import StreamTask

T0 = 1_741_608_000_000  # 2025-03-10 12:00 UTC
SPEEDUP = 20.0
SYMBOLS = ["ALPHAUSDT", "BETAUSDT"]
CONFIG = small_market(11, ALPHAUSDT=240.0, BETAUSDT=90.0)
#: Every connection is dropped (no close frame) within this many real seconds of opening.
DROPPED = WsConfig(speedup=SPEEDUP, disconnect_rate=1.0, disconnect_within_s=1.5, fault_seed=5)
#: Real seconds each test streams.
STREAM_S = 4.0


def _command(task_type: str, target: str = "loader-ws-trades") -> Command:
    return Command(
        command="start",
        queue_id=f"ws-{task_type}-{uuid.uuid4().hex[:6]}",
        target=target,
        type=task_type,
        symbols=SYMBOLS,
    )


async def _stream(
    settings: Settings, command: Command, seconds: float, ws: WsConfig, start_ms: int = T0
) -> tuple[StreamTask, SimulatorServer]:
    task, sim, _ = await stream_for(settings, command, seconds, config=CONFIG, ws=ws, start_ms=start_ms)
    return task, sim


def test_live_agg_trades_equal_the_exchange_across_disconnects(
    make_settings: Callable[..., Settings], read_docs: Callable[[str, str], Awaitable[list[dict[str, Any]]]]
) -> None:
    settings = make_settings(partitions=2)
    command = _command("ws_agg_trades")

    async def main() -> tuple[StreamTask, SimulatorServer, list[dict[str, Any]]]:
        task, sim = await _stream(settings, command, STREAM_S, DROPPED)
        docs = await read_docs(settings.kafka_bootstrap_servers or "", settings.topic_trades)
        return task, sim, docs

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def gauges() -> tuple[float, ...]:
        return (
            sum(sample("streamforge_stream_gaps_total", type="ws_agg_trades", symbol=s) for s in SYMBOLS),
            sample("streamforge_stream_reconnects_total", type="ws_agg_trades"),
            sample("streamforge_stream_latency_seconds_count", type="ws_agg_trades"),
            sum(sample("streamforge_stream_messages_total", type="ws_agg_trades", symbol=s) for s in SYMBOLS),
        )

    before = gauges()
    task, sim, docs = asyncio.run(main())
    gaps, reconnects, latencies, messages = (a - b for a, b in zip(gauges(), before, strict=True))
    assert (gaps, reconnects, messages) == (task.counts.gaps, task.counts.reconnects, task.counts.messages)
    assert latencies == sum(d["source"] == "ws" for d in docs)  # one observation per live record
    assert task.stats.reconnects >= 2, f"the simulator was to drop every connection: {task.stats}"
    assert task.stats.gaps >= 1 and task.stats.repaired >= 1, (
        f"a disconnect must leave a gap to repair: {task.stats}"
    )
    for symbol in SYMBOLS:
        mine = [d for d in docs if d["symbol"] == symbol]
        assert mine, f"no {symbol} trades streamed"
        counts = Counter(d["id"] for d in mine)
        twice = [i for i, n in counts.items() if n > 1]
        assert not twice, f"{symbol}: ids produced twice: {twice[:10]}"
        ids = sorted(counts)
        first, last = ids[0], ids[-1]
        assert ids == list(range(first, last + 1)), f"{symbol}: ids not contiguous from {first} to {last}"
        truth = sim.market.agg_trades(symbol, T0 + 24 * HOUR_MS, limit=last - first + 1, from_id=first)
        assert [t["a"] for t in truth] == ids
        by_id = {d["id"]: d for d in mine}
        for t in truth:
            d = by_id[t["a"]]
            got = (
                d["price"],
                d["qty"],
                d["first_trade_id"],
                d["last_trade_id"],
                d["time"],
                d["is_buyer_maker"],
            )
            assert got == (t["p"], t["q"], t["f"], t["l"], t["T"], t["m"]), f"{symbol} trade {t['a']}"
        sources = Counter(d["source"] for d in mine)
        assert sources["ws"] > 0
    assert sum(d["source"] == "rest" for d in docs) == task.stats.repaired


def test_restarted_stream_repairs_from_its_checkpoint(
    make_settings: Callable[..., Settings], read_docs: Callable[[str, str], Awaitable[list[dict[str, Any]]]]
) -> None:
    """A task started again under the same queue_id (its worker died) fills the ids it missed while
    it was down from REST, so the two runs together have every id once."""
    settings = make_settings(partitions=2)
    command = _command("ws_agg_trades")
    quiet = WsConfig(speedup=SPEEDUP)

    async def main() -> tuple[StreamTask, list[dict[str, Any]]]:
        await _stream(settings, command, 2.0, quiet)
        # the worker was down for a simulated minute: the market moved on without it
        task, _ = await _stream(settings, command, 2.0, quiet, start_ms=T0 + 2 * MINUTE_MS)
        return task, await read_docs(settings.kafka_bootstrap_servers or "", settings.topic_trades)

    task, docs = asyncio.run(main())
    assert task.stats.repaired > 0, "the second run must fetch what the first did not see"
    for symbol in SYMBOLS:
        counts = Counter(d["id"] for d in docs if d["symbol"] == symbol)
        assert max(counts.values()) == 1, f"{symbol}: an id produced twice"
        ids = sorted(counts)
        assert ids == list(range(ids[0], ids[-1] + 1)), f"{symbol}: the restart left a hole"


def test_heartbeats_carry_the_counts(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(partitions=2)
    command = _command("ws_candles_1m", target="loader-ws-candles")

    async def main() -> list[Any]:
        await _stream(settings, command, 3.5, WsConfig(speedup=SPEEDUP))
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            settings.topic_events,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            events = []
            async with asyncio.timeout(20):
                while not any(e.status == "finished" for e in events):
                    for recs in (await consumer.getmany(timeout_ms=300)).values():
                        events.extend(decode_event(r.value or b"") for r in recs)
            return events
        finally:
            await consumer.stop()

    events = asyncio.run(main())
    statuses = [e.status for e in events if e.queue_id == command.queue_id]
    assert statuses[0] == "started" and statuses[-1] == "finished" and "streaming" in statuses
    beats = [e for e in events if e.status == "streaming"]
    assert beats[-1].stream is not None and beats[-1].stream.messages > 0
    assert beats[-1].stream.symbols == SYMBOLS
    final = events[-1]
    assert final.stream is not None and final.records_written == final.stream.records
    # 4 s at 20x = 80 simulated seconds: at least one closed minute per symbol
    assert final.records_written >= len(SYMBOLS), final
